"""The poll scheduler (scada.poll) with a scriptable in-process driver (no protocol library).

The protocol drivers are tested against real servers elsewhere; here the driver is a plain object
whose answers the test scripts (alive/dead/slow/refusing), to check scheduling and state handling.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence

import pytest

from scada.config.model import CityConfig, DeviceDef, TagDef
from scada.errors import AuthError, CommError
from scada.poll import OK, Poller, device_stat_tags, percentile, stat_tag_name
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase


class ScriptedDriver:
    """alive: answers; dead: connect refused; slow_s: read takes that long; refuse: AuthError."""

    def __init__(self, device: DeviceDef) -> None:
        self.device = device
        self.alive = True
        self.refuse = False
        self.slow_s = 0.0
        self.fail_next_reads = 0
        self.requests = 0
        self.last_error: Exception | None = None
        self._connected = False
        self.reads = 0
        self.read_times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connects = 0
        self.sink = None
        self.value = 1

    @property
    def connected(self) -> bool:
        return self._connected

    def set_sink(self, sink):  # type: ignore[no-untyped-def]
        self.sink = sink

    async def connect(self) -> None:
        self.connects += 1
        if self.refuse:
            self.last_error = AuthError(f"{self.device.name}: wrong credentials")
            raise self.last_error
        if not self.alive:
            self.last_error = CommError(f"{self.device.name}: connection refused")
            raise self.last_error
        self._connected = True

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.reads += 1
            self.read_times.append(time.monotonic())
            self.requests += 1
            if self.slow_s:
                await asyncio.sleep(self.slow_s)
            if not self.alive or self.fail_next_reads > 0:
                self.fail_next_reads = max(0, self.fail_next_reads - 1)
                self._connected = False
                self.last_error = CommError(f"{self.device.name}: timeout")
                return [Sample.bad(Quality.BAD_COMM)] * len(points)
            return [Sample.good(self.value) for _ in points]
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self._connected = False


def city(n_devices: int, period: float, timeout: float = 0.05, retries: int = 1) -> CityConfig:
    devices: dict[str, DeviceDef] = {}
    tags: list[TagDef] = []
    for k in range(n_devices):
        name = f"D{k}"
        names = []
        for j in range(3):
            t = TagDef(f"x/{name}/t{j}", name, f"t{j}", f"t{j}", name, f"hr:{j}", "int")
            tags.append(t)
            names.append(t.name)
        devices[name] = DeviceDef(name, "test", {}, "fast", period, timeout, retries, names, [name])
    return CityConfig("test", "UTC", {"fast": period}, {}, devices, {}, tags, [], [], [])


def setup(n: int, period: float, **kw: float) -> tuple[CityConfig, TagDatabase, dict[str, ScriptedDriver], Poller]:
    cfg = city(n, period, **kw)  # type: ignore[arg-type]
    db = TagDatabase(cfg.tags + device_stat_tags(cfg))
    drivers: dict[str, ScriptedDriver] = {}

    def factory(dev: DeviceDef) -> ScriptedDriver:
        drivers[dev.name] = ScriptedDriver(dev)
        return drivers[dev.name]

    poller = Poller(cfg, factory, db, max_backoff_s=0.4)
    return cfg, db, drivers, poller


def quality(db: TagDatabase, name: str) -> Quality:
    return db.read(name).quality


async def test_fixed_rate_staggered_and_stats_tags() -> None:
    _cfg, db, drivers, poller = setup(4, 0.1)
    await poller.run_for(1.0)
    await poller.aclose()
    for name, drv in drivers.items():
        assert 10 <= drv.reads <= 12, (name, drv.reads)  # the warm-up cycle + ~10 scheduled ones
        gaps = [b - a for a, b in itertools.pairwise(drv.read_times)]
        assert abs(percentile(gaps, 50) - 0.1) < 0.02
        st = poller.stats[name]
        assert st.status == OK and st.requests == drv.reads and st.errors == 0
        assert percentile(list(st.lateness), 99) < 0.05
        assert db.read(stat_tag_name(name, "status")).value == OK
        assert db.read(stat_tag_name(name, "requests")).value == drv.reads
        assert quality(db, f"x/{name}/t0") is Quality.GOOD
    # staggered: the 4 devices' first reads are spread over the period, not simultaneous
    firsts = sorted(d.read_times[1] for d in drivers.values())  # [0] is the concurrent warm-up cycle
    spread = [b - a for a, b in itertools.pairwise(firsts)]
    assert all(0.01 < s < 0.05 for s in spread), spread


async def test_overruns_counted_never_stacked() -> None:
    _cfg, _db, drivers, poller = setup(1, 0.1, timeout=1.0)
    drv = drivers["D0"]
    drv.slow_s = 0.25  # 2.5 periods per read; the cycle deadline is max(period, timeout) = 1 s
    await poller.run_for(1.0)
    await poller.aclose()
    st = poller.stats["D0"]
    assert drv.max_in_flight == 1
    assert 4 <= drv.reads <= 6
    assert st.overruns >= 2 * (drv.reads - 2)
    gaps = [b - a for a, b in itertools.pairwise(drv.read_times[1:])]  # [0]: the warm-up cycle
    assert all(abs(g - 0.3) < 0.06 for g in gaps), gaps  # next tick of the grid, not stacked


async def test_loss_bad_comm_within_a_period_backoff_and_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scada.poll")
    _cfg, db, drivers, poller = setup(1, 0.1)
    drv = drivers["D0"]
    await poller.start()
    await asyncio.sleep(0.35)
    assert quality(db, "x/D0/t0") is Quality.GOOD
    drv.alive = False
    lost_at = time.monotonic()
    while quality(db, "x/D0/t0") is not Quality.BAD_COMM:
        await asyncio.sleep(0.005)
        # the next cycle (<= 1 period away) finds it dead at once; slack for a loaded machine
        assert time.monotonic() - lost_at < 0.2 + 0.1, "tags must go bad_comm within one scan period"
    assert db.read("x/D0/t0").value == 1  # the last known value is kept
    assert db.read(stat_tag_name("D0", "status")).value == 2
    attempts_before = drv.reads + drv.connects
    await asyncio.sleep(1.5)
    attempts = drv.reads + drv.connects - attempts_before
    # without backoff ~15 cycles x 2 attempts; with backoff 0.1, 0.2, 0.4, 0.4 ... (cap 0.4 s)
    assert attempts <= 14, attempts
    assert poller.stats["D0"].backoff_s == pytest.approx(0.4)
    drv.alive = True
    recovered_at = time.monotonic()
    while quality(db, "x/D0/t0") is not Quality.GOOD:
        await asyncio.sleep(0.005)
        assert time.monotonic() - recovered_at < 0.6
    await asyncio.sleep(0.3)
    await poller.aclose()
    assert db.read(stat_tag_name("D0", "status")).value == OK
    assert poller.stats["D0"].backoff_s == 0
    msgs = [r.getMessage() for r in caplog.records if r.name == "scada.poll" and r.levelno >= logging.WARNING]
    assert len([m for m in msgs if "communication lost" in m]) == 1, msgs
    assert len([m for m in msgs if "recovered" in m]) == 1, msgs
    assert all(m.startswith("D0: ") for m in msgs)


async def test_retry_hides_a_single_failure() -> None:
    _cfg, db, drivers, poller = setup(1, 0.1)
    drv = drivers["D0"]
    await poller.start()
    await asyncio.sleep(0.15)
    drv.fail_next_reads = 1
    await asyncio.sleep(0.2)
    await poller.aclose()
    st = poller.stats["D0"]
    assert st.status == OK and st.errors == 1
    assert quality(db, "x/D0/t1") is Quality.GOOD


async def test_hanging_device_is_cut_at_the_cycle_deadline() -> None:
    _cfg, db, drivers, poller = setup(1, 0.1, timeout=0.05)
    drv = drivers["D0"]
    drv.slow_s = 5.0
    t0 = time.monotonic()
    await poller.start()
    while quality(db, "x/D0/t0") is not Quality.BAD_COMM:
        await asyncio.sleep(0.005)
    # the warm-up cycle has a longer budget: 2 x max(period, timeout) x (retries + 1) = 0.4 s
    assert time.monotonic() - t0 < 1.0  # not the 5 s the read hangs for
    assert "TimeoutError" in poller.stats["D0"].last_error
    await poller.aclose()


async def test_refused_credentials(caplog: pytest.LogCaptureFixture) -> None:
    _cfg, db, drivers, poller = setup(1, 0.1)
    drivers["D0"].refuse = True
    await poller.run_for(0.3)
    await poller.aclose()
    assert db.read(stat_tag_name("D0", "status")).value == 3
    assert quality(db, "x/D0/t2") is Quality.BAD_COMM
    assert drivers["D0"].connects <= 4  # no retry inside a cycle on an auth error, backoff between
    assert any("refused" in r.getMessage() and "wrong credentials" in r.getMessage() for r in caplog.records)


async def test_push_sink_applies_at_once() -> None:
    _cfg, db, drivers, poller = setup(1, 10.0)
    await poller.start()
    await asyncio.sleep(0.05)
    drv = drivers["D0"]
    assert drv.sink is not None
    point = _cfg.tag_by_name()["x/D0/t2"]
    drv.sink([(point, Sample.good(41)), (point, Sample.good(42))])
    assert db.read("x/D0/t2").value == 42
    await poller.aclose()


def test_device_stat_tags() -> None:
    cfg = city(2, 1.0)
    tags = device_stat_tags(cfg)
    names = {t.name for t in tags}
    assert "system/devices/D0/status" in names and "system/devices/D1/latency_ms" in names
    status = next(t for t in tags if t.name == "system/devices/D0/status")
    assert status.dtype == "enum" and status.enum and status.enum[2] == "lost"
    TagDatabase(cfg.tags + tags)  # no duplicates


class SwallowingDriver(ScriptedDriver):
    """A driver whose library eats a cancellation (seen with real protocol stacks under load)."""

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            pass  # the bug being defended against
        return [Sample.good(self.value) for _ in points]


async def test_aclose_stops_even_when_a_driver_swallows_the_cancellation() -> None:
    cfg = city(3, 0.05, timeout=0.5)
    db = TagDatabase(cfg.tags + device_stat_tags(cfg))
    poller = Poller(cfg, SwallowingDriver, db, max_backoff_s=0.4)
    await poller.start()
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await poller.aclose(timeout_s=5.0)
    assert time.monotonic() - t0 < 2.0
    assert all(d.task is None for d in poller._devices.values())
