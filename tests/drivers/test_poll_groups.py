"""Per-tag scan classes in the poll scheduler: one device, several read groups at their own periods.

A scripted driver (tests.drivers.test_poll.ScriptedDriver) records which points each read asked for, so the
schedule is checked from what was read: the fastest group every tick, slower ones on the same grid and in
the same read, a lost device's every point bad_comm, and its next attempts reading every group.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import pytest

from scada import poll
from scada.config.model import CityConfig, DeviceDef, TagDef
from scada.poll import LOST, OK, Poller, device_stat_tags, percentile
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase
from tests.drivers.test_poll import ScriptedDriver

#: tag → its own scan class period (None: the device's)
OWN = {"status": None, "control": 0.2, "static": 1.0}


class RecordingDriver(ScriptedDriver):
    """Keeps the tag names of every read."""

    def __init__(self, device: DeviceDef) -> None:
        super().__init__(device)
        self.asked: list[frozenset[str]] = []

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        self.asked.append(frozenset(p.tag for p in points))
        return await super().read(points)


def grouped_city(device_period: float = 0.1, own: dict[str, float | None] | None = None) -> CityConfig:
    own = OWN if own is None else own
    tags = [TagDef(f"x/D0/{n}", "D0", n, n, "D0", f"hr:{k}", "int", scan=f"c{p}" if p else "",
                   period_s=p or 0.0) for k, (n, p) in enumerate(own.items())]
    dev = DeviceDef("D0", "test", {}, "dev", device_period, 0.05, 1, [t.name for t in tags], ["D0"])
    classes = {"dev": device_period, **{f"c{p}": p for p in own.values() if p}}
    return CityConfig("test", "UTC", classes, {}, {"D0": dev}, {}, tags, [], [], [])


def rig(cfg: CityConfig) -> tuple[TagDatabase, dict[str, RecordingDriver], Poller]:
    db = TagDatabase(cfg.tags + device_stat_tags(cfg))
    drivers: dict[str, RecordingDriver] = {}

    def factory(dev: DeviceDef) -> RecordingDriver:
        drivers[dev.name] = RecordingDriver(dev)
        return drivers[dev.name]

    return db, drivers, Poller(cfg, factory, db, max_backoff_s=0.4)


def count(asked: list[frozenset[str]], tag: str) -> int:
    return sum(tag in a for a in asked)


async def test_each_group_at_its_period_slower_ones_in_the_same_read() -> None:
    _db, drivers, poller = rig(grouped_city())
    await poller.run_for(2.0)
    await poller.aclose()
    drv = drivers["D0"]
    asked = drv.asked[1:]  # [0] is the warm-up read of every point
    assert drv.asked[0] == frozenset(OWN)
    # 0.1 s, 0.2 s and 1 s over 2 s: ~20, ~10 and ~2 reads (a loaded machine may drop a tick or two)
    assert 16 <= count(asked, "status") <= 22, count(asked, "status")
    assert 8 <= count(asked, "control") <= 11, count(asked, "control")
    assert 2 <= count(asked, "static") <= 3, count(asked, "static")
    # one grid: every read carries the fastest group (no extra read for a slower group's tick)
    assert all("status" in a for a in asked), asked
    assert len(asked) == count(asked, "status")
    # the achieved interval between reads is the fastest group's period
    gaps = [b - a for a, b in itertools.pairwise(drv.read_times[1:])]
    assert abs(percentile(gaps, 50) - 0.1) < 0.02
    st = poller.stats["D0"]
    assert st.status == OK and st.period_s == 0.1 and abs(st.last_period_s - 0.1) < 0.05


async def test_a_tag_faster_than_its_device_sets_the_grid_and_the_grace() -> None:
    cfg = grouped_city(device_period=1.0, own={"slow_default": None, "fast_own": 0.1})
    db, drivers, poller = rig(cfg)
    before = asyncio.get_running_loop().time()
    await poller.start()
    try:
        # the start-up grace counts in the fastest group's period (2 x 0.1 s), not the device's 1 s
        assert poller.stats["D0"].grace_until - before <= 2 * 0.1 + 0.05
        await asyncio.sleep(1.5)
    finally:
        await poller.aclose()
    asked = drivers["D0"].asked[1:]
    assert 12 <= count(asked, "fast_own") <= 16, count(asked, "fast_own")
    assert 1 <= count(asked, "slow_default") <= 2, count(asked, "slow_default")
    assert db.read("x/D0/slow_default").quality is Quality.GOOD


async def test_a_lost_device_has_every_point_bad_and_its_next_attempts_read_every_group() -> None:
    db, drivers, poller = rig(grouped_city())
    await poller.start()
    try:
        drv = drivers["D0"]
        await asyncio.sleep(0.35)
        assert db.read("x/D0/static").quality is Quality.GOOD
        drv.alive = False
        for _ in range(100):  # lost after a failed cycle of the fast group (no grace any more)
            await asyncio.sleep(0.02)
            if poller.stats["D0"].status == LOST:
                break
        assert poller.stats["D0"].status == LOST
        await asyncio.sleep(0.05)
        # the static group was not in the failed cycle, yet its tag is bad_comm too: the device is lost
        assert {db.read(f"x/D0/{t}").quality for t in OWN} == {Quality.BAD_COMM}
        n = len(drv.asked)
        drv.alive = True
        for _ in range(100):
            await asyncio.sleep(0.02)
            if poller.stats["D0"].status == OK:
                break
        assert poller.stats["D0"].status == OK
        # the attempt that recovered it read every group, the static one included
        assert frozenset(OWN) in drv.asked[n:], drv.asked[n:]
        assert {db.read(f"x/D0/{t}").quality for t in OWN} == {Quality.GOOD}
    finally:
        await poller.aclose()


async def test_a_changed_tag_class_restarts_the_device_on_update() -> None:
    cfg = grouped_city()
    db, _drivers, poller = rig(cfg)
    await poller.start()
    try:
        again = await poller.update(grouped_city(), db)
        assert again.kept == ["D0"]
        moved = grouped_city(own={**OWN, "static": 2.0})
        result = await poller.update(moved, TagDatabase(moved.tags + device_stat_tags(moved)))
        assert result.restarted == ["D0"]
    finally:
        await poller.aclose()


async def test_a_burst_of_reloads_is_collected_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poller.update ends with a full garbage collection (the old configuration was frozen), at most one per
    REFREEZE_EVERY_S: the reloads of a burst wait for one deferred collection."""
    monkeypatch.setattr(poll, "REFREEZE_EVERY_S", 0.5)
    cfg = grouped_city()
    db, _drivers, poller = rig(cfg)
    collections: list[float] = []
    real = poller._refreeze_gc

    def counted() -> None:
        collections.append(time.monotonic())
        real()

    monkeypatch.setattr(poller, "_refreeze_gc", counted)
    await poller.start()  # the start's own collection
    try:
        for _ in range(3):  # within 0.5 s of it: deferred, one pending collection for the three
            await poller.update(grouped_city(), TagDatabase(cfg.tags + device_stat_tags(cfg)))
        assert len(collections) == 1
        await asyncio.sleep(0.7)
        assert len(collections) == 2 and collections[1] - collections[0] >= 0.5
        await asyncio.sleep(0.6)  # past the interval: the next reload collects at once
        await poller.update(grouped_city(), db)
        assert len(collections) == 3
    finally:
        await poller.aclose()
