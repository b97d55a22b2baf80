"""Recorder on a real tag database into the embedded store; SQLite-specific storage behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from historian.backend import RetentionPolicy
from historian.compress import NS, max_reconstruction_error
from historian.recorder import Recorder
from historian.sqlite_backend import SqliteBackend
from scada.config.model import TagDef
from scada.config.schema import HistorySpec
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase

T0 = 1_763_800_000 * NS


def tagdb() -> TagDatabase:
    return TagDatabase([
        TagDef("c/LC1/power", "LC1", "power", "power", "d", "ir:2", "float", deadband=0.0,
               history=HistorySpec(deviation=0.5, max_interval=60)),
        TagDef("c/LC1/mains_ok", "LC1", "mains_ok", "mains_ok", "d", "di:0", "bool"),
        TagDef("c/P1/message", "P1", "message", "message", "d", "MSG", "string"),
        TagDef("c/LC1/mode", "LC1", "mode", "mode", "d", "ir:7", "enum", enum={0: "a", 1: "b"}),
    ])


def test_recorder_compresses_analogue_and_keeps_every_event(tmp_path: Path) -> None:
    db = tagdb()
    be = SqliteBackend(tmp_path / "h.sqlite", compact_points=1000)
    now = [T0]
    rec = Recorder(db, be, clock=lambda: now[0])
    be.register_tags(rec.tag_infos())
    rec.start(thread=False)
    t = T0 + np.arange(600, dtype=np.int64) * NS
    rng = np.random.default_rng(3)
    power = 1000 + 200 * np.sin(np.arange(600) / 50) + rng.normal(0, 0.1, 600)
    for i in range(600):
        now[0] = int(t[i])
        samples = [("c/LC1/power", Sample(float(power[i]), Quality.GOOD, int(t[i]), int(t[i])))]
        if i % 100 == 0:
            samples.append(("c/LC1/mains_ok", Sample(bool(i // 100 % 2), Quality.GOOD, int(t[i]), int(t[i]))))
            samples.append(("c/P1/message", Sample(f"msg {i}", Quality.GOOD, int(t[i]), int(t[i]))))
        db.apply_samples(samples)
        if i % 50 == 0:
            rec.flush()
    # communication lost then back: quality changes are stored
    now[0] = int(t[-1]) + 5 * NS
    db.apply_samples([("c/LC1/power", Sample(None, Quality.BAD_COMM, now[0], now[0]))])
    now[0] += 5 * NS
    db.apply_samples([("c/LC1/power", Sample(1000.0, Quality.GOOD, now[0], now[0]))])
    rec.close()
    s = be.raw("c/LC1/power", 0, 2**62)
    assert len(s) < 600 / 3  # compressed
    good = s.quality == 0
    assert max_reconstruction_error(t, power, s.ts[good][:-1], s.value[good][:-1]) <= 0.5 + 1e-9
    assert np.diff(s.ts).max() <= 60 * NS
    assert s.quality.tolist()[-2:] == [int(Quality.BAD_COMM), 0]
    assert be.raw("c/LC1/mains_ok", 0, 2**62).value.tolist() == [0, 1, 0, 1, 0, 1]
    msg = be.raw("c/P1/message", 0, 2**62)
    assert msg.text == [f"msg {i}" for i in range(0, 600, 100)]
    assert be.is_step("c/LC1/mains_ok") and not be.is_step("c/LC1/power")


def test_heartbeat_stores_a_silent_tag_every_max_interval(tmp_path: Path) -> None:
    db = tagdb()
    be = SqliteBackend(tmp_path / "h.sqlite")
    rec = Recorder(db, be, clock=lambda: T0)
    rec.start(thread=False)
    db.apply_samples([("c/LC1/power", Sample(5.0, Quality.GOOD, T0, T0))])
    rec.tick(T0 + 301 * NS)
    rec.close()
    s = be.raw("c/LC1/power", 0, 2**62)
    assert s.ts.tolist() == [T0 + k * 60 * NS for k in range(6)] and (s.value == 5.0).all()


def test_heartbeats_follow_a_device_clock_that_is_off(tmp_path: Path) -> None:
    """A device 300 days behind (a simulator's clock, a reset RTC): no flood of heartbeats across the offset,
    heartbeats every max_interval in the device's own time base; tags on our clock are unaffected."""
    db = tagdb()
    be = SqliteBackend(tmp_path / "h.sqlite")
    now = [T0]
    rec = Recorder(db, be, clock=lambda: now[0])
    rec.start(thread=False)
    late = T0 - 300 * 86400 * NS
    db.apply_samples([("c/LC1/power", Sample(5.0, Quality.GOOD, late, T0)),
                      ("c/LC1/mode", Sample(1, Quality.GOOD, T0, T0))])
    for k in range(1, 302):
        now[0] = T0 + k * NS
        rec.tick()
    db.apply_samples([("c/LC1/power", Sample(6.0, Quality.GOOD, late + 302 * NS, now[0]))])  # not late data
    rec.close()
    s = be.raw("c/LC1/power", 0, 2**62)
    assert s.ts.tolist() == [late + k * 60 * NS for k in range(6)] + [late + 302 * NS]
    assert s.value.tolist() == [5.0] * 6 + [6.0]
    assert be.raw("c/LC1/mode", 0, 2**62).ts.tolist() == [T0]  # on our clock; 301 s < its 15 min max interval


def test_log_is_durable_and_compaction_is_transparent(tmp_path: Path) -> None:
    from historian.backend import Points

    be = SqliteBackend(tmp_path / "h.sqlite", compact_points=10**9)
    be.write(Points.from_rows([("a", T0 + i, float(i), 0) for i in range(100)]))
    be.close()  # no compaction: the points are only in the log
    be = SqliteBackend(tmp_path / "h.sqlite")
    assert len(be.raw("a", 0, 2**62)) == 100
    assert be.compact() == 100
    be.write(Points.from_rows([("a", T0 + 50, -1.0, 1)]))  # a late correction
    s = be.raw("a", 0, 2**62)
    assert len(s) == 100 and s.value[50] == -1.0
    be.compact()
    assert be.raw("a", 0, 2**62).value[50] == -1.0
    assert be.point_before("a", T0 + 50).value.tolist() == [-1.0]
    assert be.point_after("a", T0 + 50).value.tolist() == [51.0]
    be.close()


def test_retention_drops_old_partitions_and_keeps_rollups(tmp_path: Path) -> None:
    from historian.backend import Points, TagInfo

    day = 86400 * NS
    be = SqliteBackend(tmp_path / "h.sqlite", retention={
        "normal": RetentionPolicy(raw_s=3 * 86400, rollup_interval_s=3600, rollup_keep_s=30 * 86400)})
    be.register_tags([TagInfo("a", retention="normal")])
    start = (T0 // day) * day
    ts = start + np.arange(0, 5 * 86400, 60, dtype=np.int64) * NS  # 5 days at 1 min
    be.write(Points(["a"], np.zeros(ts.size, np.int64), ts, np.ones(ts.size), np.zeros(ts.size, np.uint8)))
    be.compact()
    stats = be.maintain(start + 5 * day + 1)
    assert stats["closed"] == 5 and stats["dropped"] == 2  # days 0-1 expired (end <= now - 3 d)
    assert be.raw("a", 0, start + 2 * day).ts.size == 0
    assert be.raw("a", start + 2 * day, 2**62).ts.size == 3 * 1440
    roll = be.rollups("a", 0, 2**62)
    assert roll.count.tolist() == [60] * 24 * 5 and (roll.twa == 1.0).all()
    be.close()
