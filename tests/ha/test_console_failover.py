"""The console follows the failover pair (pytest-qt, offscreen): real ``scada server`` processes replicating
over the pair's stream, one real 3-member etcd, the simulator in its own process (the Qt loop runs this
test, so nothing here may need an asyncio loop to move).

    console (Bridge + hmi.failover.Failover) ── online on the main room, "ACTIVE: main room / STANDBY: ..."
                              an operator acknowledges a bollard fault there (answered once the standby has it)
    kill -9 the main room ──► the failover room takes the lease and polls within 5 s ──► the console shows
                              "ACTIVE: failover room" and gets a fresh snapshot (live data) from it within 10 s;
                              the failover room's journal holds the acknowledgement under the main room's id,
                              without a gap, and the alarm is still acknowledged (not annunciated again)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.alarms.states import Event
from scada.config import load_city
from scada.i18n import get_language, set_language
from tests.ha.conftest import EtcdCluster
from tests.ha.test_processes import Server
from tests.ha.test_replication import journal_rows
from tests.server.conftest import PASSWORDS, ROOT
from tests.server.test_e2e import fast_city

pytest.importorskip("PyQt6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from hmi.bridge import Bridge, wait_reply
from hmi.failover import Failover, Member, detail_text, member_of, pair_status


def wait_for(what: str, check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``scada sim`` in its own process on the fast demo city: (tags.yaml, endpoints.json)."""
    tags = fast_city(tmp_path)
    state = tmp_path / "sim"
    log = (tmp_path / "sim.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "sim", "--config", str(tags), "--alarms",
                             str(tags.parent / "alarms.yaml"), "--ports", "test", "--state-dir", str(state),
                             "--seed", "42"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for("the simulator's endpoints", lambda: (state / "endpoints.json").is_file() or proc.poll() is not None,
                 60)
        assert proc.poll() is None, (tmp_path / "sim.log").read_text()[-2000:]
        yield tags, state / "endpoints.json"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    """The status texts in English (the shipped city's site language is French)."""
    before = get_language()
    set_language("en")
    try:
        yield
    finally:
        set_language(before)


def test_the_status_text_of_the_pair() -> None:
    a = member_of("http://a", {"subsystems": {"ha": {"detail": "main room: active"}}})
    b = member_of("http://b", {"subsystems": {"ha": {"detail": "failover room: standby, active: main room; replicating"}}})
    assert pair_status([b, a]) == (a, "ACTIVE: main room / STANDBY: failover room")
    lost = member_of("http://a", None)
    forced = member_of("http://b", {"subsystems": {"ha": {"detail": "failover room: FORCED ACTIVE by sup (no lease)"}}})
    assert pair_status([lost, forced]) == (forced, "FORCED ACTIVE: failover room / http://a: lost")
    assert pair_status([member_of("http://a", {"subsystems": {}}), b]) == (None, "STARTING: http://a / STANDBY: failover room")
    assert pair_status([lost, b])[0] is None


def test_structured_failover_texts_are_shown_in_the_console_s_language() -> None:
    """The server's /health ha as it sends it (server.components.ha: the English detail and the same as msgids with
    their parameters): the console names the member from the messages and translates each part (French here)."""
    ha = {"status": "degraded", "detail": "failover room: standby, active: main room; replication stale (no frame)",
          "messages": [{"key": "{server}: {role}, active: {active}",
                        "params": {"server": "failover room", "role": "standby", "active": "main room"}},
                       {"key": "replication stale ({why})", "params": {"why": "no frame"}}]}
    assert "; ".join(m["key"].format(**m["params"]) for m in ha["messages"]) == ha["detail"]  # type: ignore[index]
    assert member_of("http://b", {"subsystems": {"ha": ha}}) == Member("http://b", "failover room", "standby")
    assert detail_text(ha) == "failover room: STANDBY, active: main room; replication stale (no frame)"
    forced = {"detail": "x", "messages": [{"key": "{server}: FORCED ACTIVE by {user} (no lease)",
                                           "params": {"server": "main room", "role": "forced_active", "user": "sup"}}]}
    assert member_of("http://a", {"subsystems": {"ha": forced}}).role == "forced active"
    set_language("fr")
    assert detail_text(ha) == "failover room : EN VEILLE, actif : main room; réplication interrompue (no frame)"
    assert detail_text(forced) == "main room : ACTIF FORCÉ par sup (sans bail)"
    # a server without messages: its English detail as it came; a newer server's unknown key: its English
    assert detail_text({"detail": "main room: active"}) == "main room: active"
    assert detail_text({"messages": [{"key": "{server} is {mood}", "params": {"server": "a"}}]}) == "{server} is {mood}"


def test_kill_9_of_the_active_the_console_follows_within_10_s(
        qtbot: Any, tmp_path: Path, etcd3: EtcdCluster, simulator: tuple[Path, Path]) -> None:
    tags, endpoints = simulator
    secret = tmp_path / "pair.secret"
    secret.write_text("the-pair-secret-of-this-test\n")
    secret.chmod(0o600)
    a = Server(tmp_path, "main room", "primary", etcd3, tags, endpoints, secret_file=str(secret))
    b: Server | None = None
    bridge = Bridge("http://127.0.0.1:1")  # re-pointed below: the console is given both servers
    failover: Failover | None = None
    try:
        wait_for("the main room's API", a.started, 60)
        b = Server(tmp_path, "failover room", "standby", etcd3, tags, endpoints, secret_file=str(secret),
                   peer_url=a.url)
        wait_for("the failover room's API", b.started, 60)
        bridge = Bridge(a.url)
        bridge.start()
        assert wait_reply(bridge.login("op", PASSWORDS["op"]), 30).ok
        failover = Failover(bridge, [a.url, b.url], period_s=0.3)
        label = failover.label()
        qtbot.addWidget(label)
        failover.start()
        bridge.set_channel("city", {"tags": ["*/mode"]})
        qtbot.waitUntil(lambda: label.text() == "ACTIVE: main room / STANDBY: failover room", timeout=30_000)
        qtbot.waitUntil(lambda: bridge.state == "online", timeout=30_000)
        assert bridge.url == a.url and failover.switches == 0

        # an operator acknowledges a field alarm on the main room
        bollard = next(e for e in load_city(tags, tags.parent / "alarms.yaml").equipment.values()
                       if e.template == "bollard")
        alarm_id = f"bollard_fault:{bollard.tag_name('fault')}"
        control = json.loads((endpoints.parent / "control.json").read_text())["url"]
        assert httpx.post(f"{control}/fault", json={"equipment": bollard.id, "fault": "bollard_fault"}).is_success

        def state() -> str | None:
            r = wait_reply(bridge.get("/alarms", equipment=bollard.id), 10)
            return next((x["state"] for x in (r.data or {}).get("alarms", []) if x["id"] == alarm_id), None)

        qtbot.waitUntil(lambda: state() == "unack", timeout=20_000)
        assert wait_reply(bridge.post("/alarms/ack", {"ids": [alarm_id]}), 10).ok
        acked = [row for row in journal_rows(a.dir / "data") if row[3] == int(Event.ACKNOWLEDGE)]
        assert acked and acked == [row for row in journal_rows(b.dir / "data") if row[3] == int(Event.ACKNOWLEDGE)]

        a.proc.kill()  # kill -9
        t_kill = time.monotonic()
        bridge.take()
        got: list[Any] = []
        polling: list[float] = []

        def live_on_b() -> bool:
            if not polling:
                poll = httpx.get(b.url + "/api/v1/health", timeout=2).json()["subsystems"]["poll"]
                if "not polling" not in poll["detail"]:
                    polling.append(time.monotonic() - t_kill)
            up = bridge.take()
            got.extend(up.snapshots)
            return "city" in got and bridge.url == b.url and bridge.state == "online" and \
                label.text().startswith("ACTIVE: failover room") and bool(polling)

        qtbot.waitUntil(live_on_b, timeout=10_000)
        took = time.monotonic() - t_kill
        print(f"kill -9 of the active → the new active polling {polling[0]:.2f} s, console live {took:.2f} s")
        assert polling[0] <= 5.0
        assert label.text() == "ACTIVE: failover room / main room: lost" and failover.switches == 1
        r = wait_reply(bridge.get("/ha"), 10)
        assert r.ok and r.data["role"] == "active" and r.data["name"] == "failover room", r.data
        # the journal goes on after the copied rows; the acknowledged alarm stays acknowledged
        qtbot.waitUntil(lambda: journal_rows(b.dir / "data")[-1][0] > acked[-1][0], timeout=10_000)
        rows_b = journal_rows(b.dir / "data")
        assert [row[0] for row in rows_b] == list(range(1, len(rows_b) + 1))
        assert acked[0] in rows_b
        again = [row for row in rows_b if row[0] > acked[-1][0] and row[2] == acked[0][2]]
        assert not any(row[3] == int(Event.CONDITION_ON) for row in again), again
        assert state() == "acked"
    finally:
        if failover is not None:
            failover.stop()
        bridge.stop()
        a.stop()
        if b is not None:
            b.stop()
        for srv in (a, b):
            if srv is not None and (srv.dir / "server.log").is_file():
                print(json.dumps(srv.dir.name), (srv.dir / "server.log").read_text(errors="replace")[-1500:])
