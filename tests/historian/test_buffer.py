"""Store-and-forward: outage and replay, quarantine, fill level and full policy, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from historian.backend import Backend, BackendUnavailable, BatchRejected, Points, Series
from historian.buffer import BufferAlarm, StoreAndForward
from historian.influx import InfluxV1Backend
from historian.sqlite_backend import SqliteBackend
from tests.historian.servers import InfluxServer
from tests.peers import require_peer

T0 = 1_763_800_000_000_000_000
MS = 1_000_000
ROOT = Path(__file__).resolve().parents[2]


class Switchable(Backend):
    """A real SQLite store behind a switch: down (unavailable) or refusing some tags (rejected)."""

    name = "switchable"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.inner = SqliteBackend(path)
        self.down = False
        self.refuse: set[str] = set()
        self.writes = 0

    def write(self, points: Points) -> None:
        if self.down:
            raise BackendUnavailable("switched off")
        if self.refuse & set(points.tag_names()):
            raise BatchRejected("field type conflict")
        self.writes += 1
        self.inner.write(points)

    def raw(self, tag: str, start_ns: int, end_ns: int) -> Series:
        return self.inner.raw(tag, start_ns, end_ns)


def batch(tags: list[str], k: int, n_per_tag: int = 1) -> Points:
    rows = [(t, T0 + (k * n_per_tag + j) * MS, float(k * n_per_tag + j), 0) for j in range(n_per_tag) for t in tags]
    return Points.from_rows(rows)


def test_outage_is_buffered_and_replayed_in_order(tmp_path: Path) -> None:
    be = Switchable(tmp_path / "h.sqlite")
    alarms: list[BufferAlarm] = []
    saf = StoreAndForward(be, tmp_path / "buf", on_alarm=alarms.append, retry_min_s=0.01, retry_max_s=0.05)
    saf.start()
    tags = ["a/x", "a/y"]
    try:
        for k in range(10):
            saf.submit(batch(tags, k))
        be.down = True
        for k in range(10, 60):
            saf.submit(batch(tags, k))
        time.sleep(0.2)
        assert saf.pending_points >= 100
        assert [a.code for a in alarms if a.active] == ["backend_down"]
        be.down = False
        assert saf.drain(10)
        for t in tags:
            s = be.raw(t, 0, 2**62)
            assert s.value.tolist() == [float(k) for k in range(60)]  # all, once, in order
        assert saf.stats["direct"] + saf.stats["replayed"] == 120
        assert any(a.code == "backend_down" and not a.active for a in alarms)
    finally:
        saf.close()


def test_rejected_entry_is_quarantined_after_three_attempts(tmp_path: Path) -> None:
    be = Switchable(tmp_path / "h.sqlite")
    alarms: list[BufferAlarm] = []
    saf = StoreAndForward(be, tmp_path / "buf", on_alarm=alarms.append, retry_min_s=0.01, retry_max_s=0.02)
    be.down = True
    saf.submit(batch(["good/a"], 0))
    saf.submit(batch(["bad/b"], 1))
    saf.submit(batch(["good/a"], 2))
    be.down = False
    be.refuse = {"bad/b"}
    saf.start()
    try:
        assert saf.drain(10)
        assert be.raw("good/a", 0, 2**62).value.tolist() == [0.0, 2.0]
        lines = (tmp_path / "buf" / "quarantine.jsonl").read_text().splitlines()
        assert len(lines) == 1
        q = json.loads(lines[0])
        assert q["rows"] == [["bad/b", T0 + MS, 1.0, 0]] and "type conflict" in q["reason"]
        assert saf.stats["quarantined_points"] == 1
        assert [(a.code, a.priority) for a in alarms if a.code == "quarantine"] == [("quarantine", 3)]
        # an administrator fixes the cause and re-plays the quarantine
        be.refuse = set()
        assert saf.requeue_quarantine() == 1
        assert saf.drain(10)
        assert be.raw("bad/b", 0, 2**62).value.tolist() == [1.0]
    finally:
        saf.close()


def test_fill_alarm_and_full_policy_drop_oldest_analogue_never_events(tmp_path: Path) -> None:
    be = Switchable(tmp_path / "h.sqlite")
    be.down = True
    alarms: list[BufferAlarm] = []
    fills: list[float] = []
    saf = StoreAndForward(be, tmp_path / "buf", capacity_bytes=20_000, on_alarm=alarms.append, on_fill=fills.append)
    try:
        ana, ev = ["ana/power"], ["ev/door"]
        k = 0
        while not any(a.code == "buffer_high" for a in alarms):
            saf.submit(batch(ana, k, 20), np.ones(20, bool))
            k += 1
        assert 80 <= fills[-1] < 100
        for j in range(40):
            saf.submit(batch(ana, k + j, 20), np.ones(20, bool))
            saf.submit(batch(ev, j, 5), np.zeros(5, bool))
        assert any(a.code == "buffer_full" for a in alarms)
        assert saf.stats["dropped_points"] > 0
        be.down = False
        saf.start()
        assert saf.drain(10)
        events = be.raw("ev/door", 0, 2**62)
        assert len(events) == 40 * 5  # no event dropped
        analogue = be.raw("ana/power", 0, 2**62)
        kept = analogue.value
        assert len(kept) < (k + 40) * 20 and kept[-1] == (k + 39) * 20 + 19  # the oldest went, the newest stayed
        assert np.all(np.diff(kept) > 0)
    finally:
        saf.close()


def test_buffer_survives_reopen(tmp_path: Path) -> None:
    be = Switchable(tmp_path / "h.sqlite")
    be.down = True
    saf = StoreAndForward(be, tmp_path / "buf")
    saf.submit(batch(["a/b"], 1))
    saf.close()
    saf2 = StoreAndForward(be, tmp_path / "buf")
    assert saf2.pending_points == 1
    with pytest.raises(Exception, match="another process"):
        StoreAndForward(be, tmp_path / "buf")
    be.down = False
    saf2.start()
    assert saf2.drain(5)
    saf2.close()
    assert be.raw("a/b", 0, 2**62).value.tolist() == [1.0]


@pytest.fixture
def own_influx(tmp_path: Path):
    require_peer("influxd", "Debian package influxdb")
    srv = InfluxServer(tmp_path / "influxd")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_influxd_stopped_under_load_every_value_arrives_exactly_once(tmp_path: Path, own_influx: InfluxServer) -> None:
    backend = InfluxV1Backend(own_influx.url, "outage", timeout_s=2.0)
    saf = StoreAndForward(backend, tmp_path / "buf", retry_min_s=0.05, retry_max_s=0.3)
    saf.start()
    tags = [f"load/t{i}" for i in range(20)]
    submitted = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal submitted
        k = 0
        while not stop.is_set():
            saf.submit(batch(tags, k, 5), np.ones(100, bool))
            submitted += 100
            k += 1
            time.sleep(0.005)

    th = threading.Thread(target=load)
    th.start()
    try:
        time.sleep(0.7)
        own_influx.stop()  # the database goes away under load
        time.sleep(1.5)
        assert saf.pending_points > 0 and not saf.backend_up
        own_influx.start()
        time.sleep(0.7)
    finally:
        stop.set()
        th.join()
    assert saf.drain(30)
    saf.close()
    per_tag = submitted // len(tags)
    for t in tags:
        s = backend.raw(t, 0, 2**62)
        assert len(s) == per_tag
        assert s.value.tolist() == [float(i) for i in range(per_tag)]  # order and values intact
    # sender side: every point was written exactly once (directly or by one replay), none dropped
    assert saf.stats["direct"] + saf.stats["replayed"] == submitted
    assert saf.stats["dropped_points"] == 0
    backend.close()


def test_kill_9_writer_loses_no_acknowledged_value(tmp_path: Path, own_influx: InfluxServer) -> None:
    buf = tmp_path / "buf"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.historian._writer"]
    p = subprocess.Popen([*cmd, "write", str(buf), own_influx.url], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                         env=env)
    acked = -1
    stopped = False
    assert p.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        acked = int(line.split()[1])
        if acked == 150 and not stopped:
            own_influx.stop()  # from here on, acknowledged = committed to the buffer file
            stopped = True
        if acked >= 400:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert acked >= 400
    own_influx.start()
    r = subprocess.run([*cmd, "drain", str(buf), own_influx.url], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    assert "drained" in r.stdout, r.stderr
    backend = InfluxV1Backend(own_influx.url, "killtest")
    for i in range(10):
        s = backend.raw(f"kill/tag{i}", 0, 2**62)
        got = set(s.value.astype(int).tolist())
        assert set(range(acked + 1)) <= got  # every acknowledged batch is there
        assert len(s) == len(got)  # once each
    backend.close()
