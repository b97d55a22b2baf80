"""The poll scheduler: one asyncio task per device (a serial bus is one device), fixed-rate.

Core code: no protocol import. Drivers come from a factory callable (``drivers.registry.
DriverFactory`` in production) and only need the small interface of :class:`PollDriver`.

A Poller polls the devices it is given (``devices=``, default all), into the tag database it is given:
the server runs two, each device in exactly one (the junctions' in its field-safety thread, into their
own database, server.components.safety; every other device in the main one).

Timeline of one device (period P, staggered start offset o = P * k / n within its scan class; P is the
period of its fastest read group, below)::

    t0+o        t0+o+P       t0+o+2P      t0+o+3P
     │ cycle ──┐ │ cycle ─────────────────┐│           a cycle longer than P: the missed tick(s) are
     │         │ │                        ││           counted as overruns, never queued; the next
     │         │ │                        │└ skipped   cycle starts on the next tick of the grid
     ▼         ▼ ▼                        ▼

Read groups: a tag may name its own scan class (scada.config.model), so one device may be read at
several periods, one read group per period, on one grid (the same start offset; the device's task
wakes at the earliest group due and reads every group due then in ONE cycle: a junction's 0.5 s
status, 1 s control objects and 60 s static objects, ticks merged where they coincide)::

    t0+o      +0.5      +1.0      +1.5      +2.0  ...  +60.0
    status    status    status    status    status      status
              ·         control   ·         control     control + static    (one read each tick)

The comm watch counts in the fastest group's period (a device answers or not as a whole: a cycle of
any group that reaches nothing is a failure; back-off and the start-up grace are in fastest periods).
A failed cycle marks every point of the device bad_comm (not only the groups it was reading), and the
attempts while ``starting`` or ``lost`` read every group, so a recovered device is read in full at
once. Overruns count the missed ticks of the groups the cycle was reading; a slower group whose tick
passed during another group's cycle is read late (at once), never skipped. Statistics stay per device
(``period_ms``: the achieved interval of the fastest group).

One cycle::

    connect() if not connected ──► read(points) ──► points still bad_comm? ──► retry them (device.retries)
          │ (bounded: every cycle ends by start + max(P, timeout); a cut cycle is a comm failure)
          ▼
    readings + the device's statistics tags ──► TagDatabase.apply_readings (one batch per cycle, after the
          next tick is scheduled: the stats carry the cycle's status, backoff and overruns)

Drivers that offer ``read_readings(points) -> Readings`` (drivers.base.Driver does) hand their answers as
numpy columns (values, qualities, timestamps): no Python object per point between the wire and the
tag database. A driver with only ``read(points) -> list[Sample]`` works too (converted once per read).

Device state machine (the comm-status tag ``system/devices/<dev>/status``)::

    starting ──ok──► ok ◄────────── recovery (logged once, INFO)
     │  ▲  │         │
     │  └──┘ fail within the start-up grace: still starting, its tags stay uncertain "not read yet"
     │                                      (scada.quality.NOT_READ_YET), nothing logged as lost
     └──fail after the grace ──┴──► lost ── log once (WARNING), tags bad_comm in that same cycle;
                           │      next attempts back off: P, 2P, 4P ... capped at max_backoff_s
                           └── refused (AuthError: the device rejected our credentials; at once, no grace)

Start-up grace: ``grace_periods`` (2) scan periods of the device from when its polling began (the
poller's start, or its launch by a reload), at most ``warmup_s`` (15 s: a 60 s camera is not left
unknown for two minutes). A device not read yet is ``starting``, never ``lost``, for that long: a
city's first reads are a burst (1,500 devices, one loaded machine) and an answer late by a second is
not a communication loss. A failed attempt in the grace is retried by the grace's end at the latest
(not after a back-off, not on the next tick of a slow grid): that attempt reads it or declares it lost.
A first cycle that ends after the grace (a warm-up cycle longer than two periods) decides at once.

Start order (``start``): every device's warm-up cycle, at most ``warmup_concurrency`` at once, in
configuration order (the field-safety monitor's junctions have a Poller of their own, started before
this one: server.components.safety). ``read_count()`` says how many
devices have had their first answer (/health "starting (n/N devices read)").

A cycle "fails" when the device could not be reached at all (connect failed, or every point came
back bad_comm after the retries). Partial answers (a Modbus exception on one block → bad_device)
are not a communication loss.

Statistics per device (``DeviceStats``) are exposed as extra tags named
``system/devices/<device>/<stat>``; :func:`device_stat_tags` builds their TagDefs for a CityConfig
(the caller adds them to the TagDatabase). Stats: status, requests, errors, overruns, latency_ms,
last_success (epoch s), period_ms (achieved), backoff_s.

Devices can be added, removed or replaced while the poller runs (configuration reload)::

    result = await poller.update(new_config, new_db)       # compare device by device
        stopped    in the old set only   → task cancelled, driver closed, stats dropped
        started    in the new set only   → new driver, task started (its first cycle is a warm-up cycle)
        restarted  read-relevant change  → stopped, then started on the new definition (fresh stats)
                   (protocol, connection, scan, period, timeout, retries, tag list, or a tag's address,
                    dtype, coding, scale, offset, enum, access, unit, or its own scan class or period)
        kept       unchanged             → task and connection untouched; tag indices re-resolved
                                           against ``new_db`` (values keep flowing, no reconnect)

``add_devices`` / ``remove_devices`` do the same for explicit names. Run them on the loop that runs
the poller (the poll thread's loop when the server polls in its own thread).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from scada.config.model import CityConfig, DeviceDef, TagDef, period_of
from scada.quality import Quality, Sample
from scada.tagdb import Readings, TagDatabase

log = logging.getLogger(__name__)

STATUS_ENUM: dict[int, str] = {0: "starting", 1: "ok", 2: "lost", 3: "refused"}
STARTING, OK, LOST, REFUSED = 0, 1, 2, 3

#: stat name → (dtype, units, description)
STATS: dict[str, tuple[str, str, str]] = {
    "status": ("enum", "", "communication status of the device"),
    "requests": ("int", "", "protocol requests sent since start"),
    "errors": ("int", "", "failed attempts (timeouts, refused connections, garbled answers) since start"),
    "overruns": ("int", "", "scan ticks skipped because a cycle ran longer than the period"),
    "latency_ms": ("float", "ms", "duration of the last read cycle"),
    "last_success": ("float", "s", "time of the last successful cycle (epoch seconds)"),
    "period_ms": ("float", "ms", "achieved interval between the last two cycle starts"),
    "backoff_s": ("float", "s", "current retry delay while the device is lost (0 when ok)"),
}

PushSink = Callable[[list[tuple[TagDef, Sample]]], None]


class PollDriver(Protocol):
    """What the scheduler needs from a driver (drivers.base.Driver satisfies it)."""

    @property
    def connected(self) -> bool: ...

    @property
    def requests(self) -> int: ...

    @property
    def last_error(self) -> BaseException | None: ...

    async def connect(self) -> None: ...

    async def read(self, points: Sequence[TagDef]) -> list[Sample]: ...

    async def aclose(self) -> None: ...

    def set_sink(self, sink: PushSink | None) -> None: ...


DriverFactory = Callable[[DeviceDef], PollDriver]


def stat_tag_name(device: str, stat: str) -> str:
    return f"system/devices/{device}/{stat}"


def device_stat_tags(config: CityConfig, devices: Sequence[str] | None = None) -> list[TagDef]:
    """The per-device statistics/comm-status TagDefs (not in tags.yaml; add them to the TagDatabase)."""
    out: list[TagDef] = []
    for name in devices if devices is not None else config.devices:
        for stat, (dtype, units, description) in STATS.items():
            out.append(TagDef(
                name=stat_tag_name(name, stat), equipment="", tag=stat, template_tag=stat, device=name,
                address=f"poll:{stat}", dtype=dtype, units=units, description=f"{name}: {description}",
                enum=dict(STATUS_ENUM) if stat == "status" else None,
            ))
    return out


@dataclass(slots=True)
class DeviceStats:
    """Per-device counters; ``lateness`` keeps the recent start delays (s) for jitter figures."""

    device: str
    period_s: float
    status: int = STARTING
    cycles: int = 0
    requests: int = 0
    errors: int = 0
    overruns: int = 0
    latency_s: float = 0.0
    last_success_ns: int = 0
    last_period_s: float = 0.0
    backoff_s: float = 0.0
    failures_in_row: int = 0
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    last_error: str = ""
    first_read_ns: int = 0  # when the device first answered (0: not read yet)
    grace_until: float = math.inf  # loop time until which a failure leaves it ``starting`` (set when polling begins)

    @property
    def status_label(self) -> str:
        return STATUS_ENUM[self.status]


def _is_auth_error(exc: BaseException | None) -> bool:
    # AuthError lives in scada.errors; the check is by name to keep this duck-typed for test drivers
    return exc is not None and any(c.__name__ == "AuthError" for c in type(exc).__mro__)


_BAD_COMM = int(Quality.BAD_COMM)
_GOOD = int(Quality.GOOD)
_STAT_NAMES = tuple(STATS)
_NO_INDEX = np.zeros(0, dtype=np.int64)

#: TagDef fields a driver reads with: a change to one of them restarts the device on a reload
_READ_FIELDS = ("name", "device", "address", "dtype", "encoding", "word_order", "byte_order", "scale", "offset",
                "enum", "access", "unit", "scan", "period_s")
#: DeviceDef fields that matter for polling
_DEVICE_FIELDS = ("protocol", "connection", "scan", "period_s", "timeout_s", "retries", "tags")
#: at most one full garbage collection after reloads per this many seconds (Poller.update)
REFREEZE_EVERY_S = 10.0
#: a group whose tick is this close is read in the cycle that wakes for an earlier one (the timer may fire a
#: little early, and ticks of periods that are multiples of each other coincide up to float rounding)
_DUE_TOLERANCE_S = 0.005


class _Group:
    """The points of a device read at one period (positions into its points) and the group's next tick."""

    __slots__ = ("next_t", "period", "pos")

    def __init__(self, period: float, pos: npt.NDArray[np.int64]) -> None:
        self.period = period
        self.pos = pos
        self.next_t = 0.0


def _groups(dev: DeviceDef, points: Sequence[TagDef]) -> list[_Group]:
    """One read group per period among the points (fastest first); no points: one empty group at the device's."""
    by_period: dict[float, list[int]] = {}
    for k, t in enumerate(points):
        by_period.setdefault(period_of(t, dev), []).append(k)
    if not by_period:
        return [_Group(dev.period_s, _NO_INDEX)]
    return [_Group(p, np.array(pos, dtype=np.int64)) for p, pos in sorted(by_period.items())]


class _Device:
    __slots__ = ("dev", "driver", "groups", "offset", "points", "reader", "selections", "stat_idx", "stat_pos",
                 "stats", "tag_idx", "task")

    def __init__(self, dev: DeviceDef, points: list[TagDef], driver: PollDriver, offset: float) -> None:
        self.dev = dev
        self.points = points
        self.groups = _groups(dev, points)
        self.selections: dict[tuple[int, ...], npt.NDArray[np.int64]] = {}  # due groups → their points' positions
        self.driver = driver
        self.offset = offset
        self.stats = DeviceStats(dev.name, self.fastest)
        self.task: asyncio.Task[None] | None = None
        reader = getattr(driver, "read_readings", None)
        self.reader: Callable[[Sequence[TagDef]], Any] | None = reader if callable(reader) else None
        self.tag_idx: npt.NDArray[np.int64] = _NO_INDEX
        self.stat_idx: npt.NDArray[np.int64] = _NO_INDEX
        self.stat_pos: npt.NDArray[np.int64] = _NO_INDEX  # which of STATS each stat_idx entry is

    @property
    def fastest(self) -> float:
        """The period of its fastest read group (the grid, the comm watch and the start-up grace count in it)."""
        return self.groups[0].period

    def bind(self, db: TagDatabase) -> None:
        """Resolve the device's tags and statistics tags to indices of ``db`` (KeyError: a tag is missing)."""
        self.tag_idx = db.indices(self.dev.tags)
        name = self.dev.name
        pos = [k for k, s in enumerate(_STAT_NAMES) if stat_tag_name(name, s) in db.index]
        self.stat_pos = np.array(pos, dtype=np.int64)
        self.stat_idx = np.array([db.index[stat_tag_name(name, _STAT_NAMES[k])] for k in pos], dtype=np.int64)


@dataclass(slots=True)
class PollUpdate:
    """What :meth:`Poller.update` (or add/remove) did, device names sorted."""

    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"started": self.started, "stopped": self.stopped, "restarted": self.restarted, "kept": self.kept}


def _read_view(dev: DeviceDef, tag_defs: dict[str, TagDef]) -> tuple[Any, ...]:
    """Everything of a device (and its tags) that a driver reads with: equal views → nothing to restart."""
    tags = tuple(tuple(getattr(tag_defs[t], f) if t in tag_defs else None for f in _READ_FIELDS) for t in dev.tags)
    return (*(getattr(dev, f) if f != "tags" else tuple(dev.tags) for f in _DEVICE_FIELDS), tags)


class Poller:
    """Poll the devices of ``config`` into ``db`` with drivers made by ``factory``.

    ``devices`` restricts to some device names (default: all). ``max_backoff_s`` caps the retry
    delay of a lost device (never below its period). ``stagger`` spreads the first cycles of the
    devices of one scan class over the period so that 1,100 cabinets do not fire together.
    ``grace_periods``: how many of its scan periods a device not read yet stays ``starting`` when it
    does not answer (module docstring).
    """

    def __init__(self, config: CityConfig, factory: DriverFactory, db: TagDatabase, *,
                 devices: Sequence[str] | None = None, max_backoff_s: float = 60.0, stagger: bool = True,
                 warmup_s: float = 15.0, warmup_concurrency: int = 128, freeze_gc: bool = True,
                 grace_periods: float = 2.0) -> None:
        self.config = config
        self.grace_periods = grace_periods
        self.warmup_s = warmup_s
        self.warmup_concurrency = warmup_concurrency
        self.freeze_gc = freeze_gc
        self.factory = factory
        self.db = db
        self.max_backoff_s = max_backoff_s
        self.stagger = stagger
        names = list(devices) if devices is not None else list(config.devices)
        tag_defs = config.tag_by_name()
        self._devices: dict[str, _Device] = {n: self._make(config.devices[n], tag_defs) for n in names}
        offsets = self._offsets({n: d.fastest for n, d in self._devices.items()})
        for n, d in self._devices.items():
            d.offset = offsets[n]
        self._started = False
        self._t0 = 0.0
        self._gate: asyncio.Semaphore | None = None
        self._update_lock: asyncio.Lock | None = None
        self._refrozen_at = -math.inf  # time.monotonic() of the last full collection (_refreeze_gc)
        self._refreeze_later: asyncio.TimerHandle | None = None

    def _offsets(self, fastest: dict[str, float]) -> dict[str, float]:
        """Stagger per grid (the fastest read period, device name → it, in configuration order): device k of
        the n on a grid of period P starts at P * k / n."""
        by_period: dict[float, list[str]] = {}
        for n, period in fastest.items():
            by_period.setdefault(period, []).append(n)
        offsets: dict[str, float] = {}
        for period, members in by_period.items():
            for k, n in enumerate(members):
                offsets[n] = period * k / len(members) if self.stagger else 0.0
        return offsets

    def _make(self, dev: DeviceDef, tag_defs: dict[str, TagDef]) -> _Device:
        points = [tag_defs[t] for t in dev.tags]
        d = _Device(dev, points, self.factory(dev), 0.0)
        d.bind(self.db)
        return d

    # ------------------------------------------------------------------ public
    @property
    def stats(self) -> dict[str, DeviceStats]:
        return {n: d.stats for n, d in self._devices.items()}

    @property
    def drivers(self) -> dict[str, PollDriver]:
        return {n: d.driver for n, d in self._devices.items()}

    @property
    def devices(self) -> list[str]:
        """Names of the devices polled (or to be polled once started)."""
        return list(self._devices)

    def read_count(self) -> tuple[int, int]:
        """(devices that have answered at least once, devices polled)."""
        return sum(1 for d in self._devices.values() if d.stats.first_read_ns), len(self._devices)

    async def start(self, warmup: bool = True) -> None:
        """Start one task per device.

        With ``warmup`` (default) every device first runs one cycle concurrently, with a generous
        deadline (``warmup_s``), before fixed-rate scheduling begins: connection set-up, first
        subscriptions and library warm-up (MIB loading, sessions) then do not count against the
        first scan periods and cause no false "lost" at start-up. At most ``warmup_concurrency``
        warm-up cycles run at once. A device that is really down is reported lost by that first
        cycle. With ``freeze_gc`` (default) the objects alive after the warm-up (configuration, tag
        database, drivers, read plans) are moved out of the cyclic garbage collector
        (``gc.freeze()``) and full collections are made 10x rarer (third GC threshold 100): at
        city scale a full collection stalls the loop for up to a second.
        """
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._gate = asyncio.Semaphore(self.warmup_concurrency)
        began = loop.time()
        for d in self._devices.values():
            d.driver.set_sink(self._push_sink(d))
            d.stats.grace_until = began + self._grace_s(d)
        self._publish_all_stats()
        if self.freeze_gc:
            # the city is alive already: the warm-up's full collections then skip it (at full Dijon each one
            # stalled the loop 0.3-0.7 s, ~1 s per start); _refreeze_gc after the warm-up collects it once
            gc.freeze()
        if warmup and self._devices:
            gate = self._gate

            async def first(d: _Device) -> None:
                async with gate:  # 1,500 devices at once would swamp the gateways and agents
                    start = loop.time()
                    _ok, first_readings, at = await self._cycle(d, start, self._warmup_budget(d))
                    self._apply(d, first_readings, at)

            # configuration order (the semaphore is FIFO): the protocols' gateways and agents share the burst;
            # fastest scan class first measured slower at full Dijon (269 cameras last on one SNMP agent)
            await asyncio.gather(*(first(d) for d in list(self._devices.values())))
        if self.freeze_gc:
            self._refreeze_gc()
        self._t0 = loop.time()
        for d in self._devices.values():
            if d.task is None:
                d.task = asyncio.create_task(self._run(d), name=f"poll:{d.dev.name}")

    def _refreeze_gc(self) -> None:
        # config, tag database, drivers and plans live as long as the process: keep them out of the
        # cyclic GC, whose full collections otherwise stall the loop ~1 s at city scale
        if self._refreeze_later is not None:
            self._refreeze_later.cancel()
            self._refreeze_later = None
        gc.unfreeze()  # a restarted poller (configuration reload): let the old city be collected
        gc.collect()
        gc.freeze()
        self._refrozen_at = time.monotonic()
        # and make full collections rarer: hundreds of reads in flight keep ~10^5 young objects alive
        t0, t1, t2 = gc.get_threshold()
        gc.set_threshold(t0, t1, max(t2, 100))

    def _refreeze_after_reload(self) -> None:
        """One full collection after a reload, at most one per ``REFREEZE_EVERY_S``: a burst of reloads is
        collected once, when the interval has passed (its old configurations stay in memory until then)."""
        wait = self._refrozen_at + REFREEZE_EVERY_S - time.monotonic()
        if wait <= 0:
            self._refreeze_gc()
        elif self._refreeze_later is None:
            self._refreeze_later = asyncio.get_running_loop().call_later(wait, self._refreeze_gc)

    def _grace_s(self, d: _Device) -> float:
        """How long a device not read yet stays ``starting`` when it does not answer (module docstring)."""
        return min(self.grace_periods * d.fastest, self.warmup_s)

    def _warmup_budget(self, d: _Device) -> float:
        """Deadline of the warm-up cycle: twice a normal cycle with all its retries, capped."""
        return min(self.warmup_s, 2 * max(d.fastest, d.dev.timeout_s) * (d.dev.retries + 1))

    async def run_for(self, duration_s: float) -> None:
        """Start (with warm-up) and poll for ``duration_s`` seconds of fixed-rate scheduling."""
        await self.start()
        await asyncio.sleep(duration_s)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop every task and close every driver (concurrently; bounded by ``timeout_s``).

        A driver that does not finish closing in time is logged and left behind: shutting the
        poller down never hangs on one device.
        """
        if self._refreeze_later is not None:
            self._refreeze_later.cancel()
            self._refreeze_later = None
        await self._stop(list(self._devices.values()), timeout_s)
        self._started = False

    async def _stop(self, devices: list[_Device], timeout_s: float) -> None:
        """Cancel the tasks of ``devices`` and close their drivers (bounded by ``timeout_s`` each step)."""
        tasks = [d.task for d in devices if d.task is not None]
        for t in tasks:
            t.cancel()
        stuck: set[asyncio.Task[None]] = set(tasks)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while stuck:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            _done, stuck = await asyncio.wait(stuck, timeout=min(0.5, left))
            for t in stuck:  # a cancellation swallowed inside a driver library: ask again
                t.cancel()
        if stuck:
            for t in stuck:
                where = " <- ".join(f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno})"
                                    for f in t.get_stack(limit=6))
                log.error("%s: poll task did not stop within %.0f s, stuck in %s", t.get_name(), timeout_s, where)
        closers: dict[asyncio.Task[None], str] = {}
        for d in devices:
            d.task = None
            d.driver.set_sink(None)
            closers[asyncio.create_task(self._close_driver(d))] = d.dev.name
        if closers:
            _done, stuck = await asyncio.wait(closers, timeout=timeout_s)
            for t in stuck:
                log.error("%s: driver did not close within %.0f s", closers[t], timeout_s)
                t.cancel()

    @staticmethod
    async def _close_driver(d: _Device) -> None:
        try:
            await d.driver.aclose()
        except Exception:  # a driver's close may raise anything: the others must still close (logged)
            log.exception("%s: closing the driver failed", d.dev.name)

    # ------------------------------------------------------------------ add / remove / update (reload)
    def _lock(self) -> asyncio.Lock:
        if self._update_lock is None:
            self._update_lock = asyncio.Lock()
        return self._update_lock

    async def add_devices(self, names: Iterable[str], *, config: CityConfig | None = None,
                          db: TagDatabase | None = None) -> PollUpdate:
        """Start polling the devices ``names`` of ``config`` (default: the poller's configuration).

        Devices already polled are left alone (reported in ``kept``). With ``db``, the poller moves to
        that tag database (every device's indices re-resolved); it must hold the new devices' tags and
        statistics tags (``device_stat_tags``). Returns at once: a started device runs its warm-up
        cycle in its own task (at most ``warmup_concurrency`` at once), then its fixed-rate schedule.
        """
        async with self._lock():
            cfg = config if config is not None else self.config
            wanted = list(dict.fromkeys(names))
            unknown = [n for n in wanted if n not in cfg.devices]
            if unknown:
                raise KeyError(f"unknown device(s): {', '.join(unknown[:10])}")
            result = PollUpdate()
            if db is not None:
                self._rebind(db)
            if cfg is not self.config:
                self._adopt(cfg)
            result.kept = sorted(n for n in wanted if n in self._devices)
            result.started = sorted(n for n in wanted if n not in self._devices)
            self._launch(cfg, result.started)
            return result

    async def remove_devices(self, names: Iterable[str], *, timeout_s: float = 10.0) -> PollUpdate:
        """Stop polling ``names``: cancel their tasks and close their drivers (bounded by ``timeout_s``).

        Their tags keep their last values and qualities in the tag database (the caller drops them with
        the configuration). Unknown names are ignored.
        """
        async with self._lock():
            gone = [self._devices.pop(n) for n in dict.fromkeys(names) if n in self._devices]
            await self._stop(gone, timeout_s)
            return PollUpdate(stopped=sorted(d.dev.name for d in gone))

    async def update(self, config: CityConfig, db: TagDatabase | None = None, *,
                     devices: Sequence[str] | None = None, factory: DriverFactory | None = None,
                     timeout_s: float = 10.0) -> PollUpdate:
        """Move to ``config`` (and ``db``, the tag database built for it), restarting only what changed.

        ``devices`` restricts the new set (default: every device of ``config``), as in the
        constructor. A device whose read-relevant definition is unchanged keeps its task, driver and
        connection; its tag indices are re-resolved against ``db``. Removed devices are stopped,
        changed ones stopped and started again (a new driver), added ones started (see
        :meth:`add_devices`). ``factory`` (optional) makes the drivers of the started devices from now on.
        Stopping is bounded by ``timeout_s``. With ``freeze_gc`` a running poller ends with one full
        garbage collection (the old configuration and database were frozen by :meth:`start`: a
        collection of up to a second at city scale), at most one per ``REFREEZE_EVERY_S`` (10 s: reloads
        in a burst are collected once, at the end of the interval). Returns the names per outcome.
        """
        async with self._lock():
            new_names = list(devices) if devices is not None else list(config.devices)
            unknown = [n for n in new_names if n not in config.devices]
            if unknown:
                raise KeyError(f"unknown device(s): {', '.join(unknown[:10])}")
            old_defs, new_defs = self.config.tag_by_name(), config.tag_by_name()
            wanted = set(new_names)
            result = PollUpdate()
            for n, d in self._devices.items():
                if n not in wanted:
                    result.stopped.append(n)
                elif _read_view(d.dev, old_defs) != _read_view(config.devices[n], new_defs):
                    result.restarted.append(n)
                else:
                    result.kept.append(n)
            result.started = [n for n in new_names if n not in self._devices]
            gone = [self._devices.pop(n) for n in (*result.stopped, *result.restarted)]
            await self._stop(gone, timeout_s)
            if factory is not None:
                self.factory = factory
            for n in result.kept:  # the new DeviceDef/TagDef objects (equal for reading: same plans)
                d = self._devices[n]
                d.dev = config.devices[n]
                d.points = [new_defs[t] for t in d.dev.tags]
            self._adopt(config)
            if db is not None:
                self._rebind(db)
            self._launch(config, [*result.restarted, *result.started])
            for lst in (result.started, result.stopped, result.restarted, result.kept):
                lst.sort()
            if self.freeze_gc and self._started:
                self._refreeze_after_reload()  # the old configuration and database were frozen: let them be collected
            return result

    def _adopt(self, config: CityConfig) -> None:
        self.config = config

    def _rebind(self, db: TagDatabase) -> None:
        """Point every device at ``db`` (no await in here: a cycle in flight applies to one or the other whole)."""
        for d in self._devices.values():
            d.bind(db)
        self.db = db

    def _launch(self, config: CityConfig, names: Sequence[str]) -> None:
        """Create the devices ``names`` of ``config`` and, if the poller runs, their tasks (warm-up first)."""
        if not names:
            return
        tag_defs = config.tag_by_name()
        made = {n: self._make(config.devices[n], tag_defs) for n in names}  # KeyError before any change
        offsets = self._offsets({n: (made[n] if n in made else self._devices[n]).fastest for n in config.devices
                                 if n in made or n in self._devices})
        for d in made.values():
            d.offset = offsets[d.dev.name]
            self._devices[d.dev.name] = d
            if self._started:
                d.driver.set_sink(self._push_sink(d))
                self._publish_stats(d)
                d.task = asyncio.create_task(self._run(d, warmup=True), name=f"poll:{d.dev.name}")

    # ------------------------------------------------------------------ scheduling
    async def _run(self, d: _Device, warmup: bool = False) -> None:
        loop = asyncio.get_running_loop()
        period = d.fastest
        next_t = self._t0 + d.offset
        if warmup:  # a device started while the others run: one warm-up cycle, then join the grid
            if self._gate is None:  # set by start(); warm-ups only run after it
                raise RuntimeError(f"{d.dev.name}: warm-up before the scheduler started")
            d.stats.grace_until = loop.time() + self._grace_s(d)
            async with self._gate:
                _ok, first_readings, first_at = await self._cycle(d, loop.time(), self._warmup_budget(d))
            self._apply(d, first_readings, first_at)
        now = loop.time()
        if next_t < now:  # the first tick of its grid still to come (not counted as overruns)
            next_t += math.ceil((now - next_t) / period) * period
        if d.stats.status == STARTING and d.stats.failures_in_row:  # a warm-up failed in its grace: retry by its end
            next_t = min(next_t, max(now, d.stats.grace_until))
        groups = d.groups
        for g in groups:  # every group on one grid: first read together, then each at its own period
            g.next_t = next_t
        fastest = groups[0]
        last_start: float | None = None
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                # a library swallowed our CancelledError somewhere in the cycle: honour the request anyway
                raise asyncio.CancelledError
            tick = min(g.next_t for g in groups)
            delay = tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            start = loop.time()
            due = [g for g in groups if g.next_t <= start + _DUE_TOLERANCE_S]
            st = d.stats
            st.lateness.append(max(0.0, start - tick))
            if fastest in due:
                if last_start is not None:
                    st.last_period_s = start - last_start
                    if st.failures_in_row == 0:
                        st.intervals.append(st.last_period_s)
                last_start = start
            readings: Readings | None = None
            at: npt.NDArray[np.int64] | None = None
            try:
                ok, readings, at = await self._cycle(d, start, sel=self._selection(d, due))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a driver must not kill the device's task
                log.exception("%s: poll cycle crashed", d.dev.name)
                ok = False
            now = loop.time()
            if ok:
                for g in due:
                    g.next_t += g.period
                    if now > g.next_t:
                        missed = math.ceil((now - g.next_t) / g.period)
                        st.overruns += missed
                        g.next_t += missed * g.period
            else:  # the next attempt reads every group, after the back-off (in fastest periods)
                st.backoff_s = min(max(self.max_backoff_s, period), period * 2 ** max(0, st.failures_in_row - 1))
                retry = tick + st.backoff_s
                if st.status == STARTING:  # still in its grace: the next attempt by the grace's end at the latest
                    retry = min(retry, st.grace_until)
                if now > retry:
                    retry += math.ceil((now - retry) / period) * period
                for g in groups:
                    g.next_t = retry
            self._apply(d, readings, at)  # values and statistics (status, backoff, overruns) in one batch

    @staticmethod
    def _selection(d: _Device, due: Sequence[_Group]) -> npt.NDArray[np.int64] | None:
        """Positions of the points of the ``due`` groups (None: every point)."""
        if len(due) == len(d.groups):
            return None
        if len(due) == 1:
            return due[0].pos
        key = tuple(id(g) for g in due)
        sel = d.selections.get(key)
        if sel is None:  # a handful of combinations per device (status, status + control ...): built once each
            sel = d.selections[key] = np.sort(np.concatenate([g.pos for g in due]))
        return sel

    async def _cycle(self, d: _Device, start: float, budget_s: float | None = None,
                     sel: npt.NDArray[np.int64] | None = None
                     ) -> tuple[bool, Readings | None, npt.NDArray[np.int64] | None]:
        """One read cycle with retries of the points at positions ``sel`` (None: every point); returns (False on
        communication loss, their readings, the positions the readings are for: None for every point).

        The readings are None for a device still ``starting`` after a failed cycle (in its grace): its tags
        stay uncertain "not read yet" rather than bad_comm. A failed cycle past the grace gives bad_comm for
        every point of the device, whichever groups it was reading (module docstring)."""
        dev = d.dev
        st = d.stats
        drv = d.driver
        loop = asyncio.get_running_loop()
        mine = d.points if sel is None else [d.points[i] for i in sel.tolist()]
        n = len(mine)
        results = Readings(n)  # bad_comm until read
        requests_before = drv.requests
        error: BaseException | None = None
        deadline = start + (budget_s if budget_s is not None else max(d.fastest, dev.timeout_s))
        pending: npt.NDArray[np.int64] | None = None  # None: every point
        try:
            async with asyncio.timeout_at(deadline):
                for attempt in range(dev.retries + 1):
                    if attempt and loop.time() >= deadline:
                        break
                    if not drv.connected:
                        try:
                            await drv.connect()
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:  # noqa: BLE001 - DriverError by contract; anything else is a driver bug
                            error = exc
                            st.errors += 1
                            if _is_auth_error(exc):
                                break
                            continue
                    points = mine if pending is None else [mine[i] for i in pending.tolist()]
                    got = await self._read(d, points)
                    if len(got) != len(points):
                        raise RuntimeError(f"driver returned {len(got)} samples for {len(points)} points")
                    lost = got.qualities == _BAD_COMM
                    if pending is None:
                        results = got
                        still = np.flatnonzero(lost)
                    else:
                        results.put(pending, got)
                        still = pending[lost]
                    if still.size:
                        st.errors += 1
                        error = drv.last_error
                    pending = still
                    if not pending.size:
                        break
        except TimeoutError:
            st.errors += 1
            error = TimeoutError(f"cycle did not finish within {deadline - start:.3g} s")
        end = loop.time()
        st.cycles += 1
        st.requests += drv.requests - requests_before
        st.latency_s = end - start
        results.stamp_unset(time.time_ns())  # points never read: bad_comm now
        reached = bool((results.qualities != _BAD_COMM).any()) if n else error is None
        ok = self._update_status(d, reached, error)
        if st.status == STARTING:
            return ok, None, None
        if not ok and sel is not None:  # the device is lost: every point of it, not only the groups read
            results = Readings(len(d.points))
            results.stamp_unset(time.time_ns())
            return ok, results, None
        return ok, results, sel

    async def _read(self, d: _Device, points: Sequence[TagDef]) -> Readings:
        if d.reader is not None:
            got = await d.reader(points)
            if not isinstance(got, Readings):  # a driver bug: reported by the cycle's crash log, not a wrong apply
                raise TypeError(f"{d.dev.name}: read_readings returned {type(got).__name__}, not Readings")
            return got
        return Readings.from_samples(await d.driver.read(points))

    def _update_status(self, d: _Device, reached: bool, error: BaseException | None) -> bool:
        dev = d.dev
        st = d.stats
        if reached:
            if not st.first_read_ns:
                st.first_read_ns = time.time_ns()
            if st.status != OK:
                if st.status in (LOST, REFUSED):
                    log.warning("%s: communication recovered after %d failed attempt(s)", dev.name,
                                st.failures_in_row)
                else:
                    log.info("%s: communicating", dev.name)
            st.status = OK
            st.failures_in_row = 0
            st.backoff_s = 0.0
            st.last_success_ns = time.time_ns()
            st.last_error = ""
            return True
        new_status = REFUSED if _is_auth_error(error) else LOST
        text = _describe(error)
        if st.status == STARTING and new_status == LOST and asyncio.get_running_loop().time() < st.grace_until:
            st.failures_in_row += 1  # not read yet, in its start-up grace: not a loss (module docstring)
            st.last_error = text
            return False
        if st.status != new_status:
            log.warning("%s: communication %s: %s", dev.name,
                        "refused" if new_status == REFUSED else "lost", text)
        st.status = new_status
        st.failures_in_row += 1
        st.last_error = text
        return False

    # ------------------------------------------------------------------ tag database
    def _apply(self, d: _Device, readings: Readings | None, at: npt.NDArray[np.int64] | None = None) -> None:
        """One batch: the device's readings (if any: of its points at positions ``at``, None: every point) and
        its statistics tags."""
        if self._devices.get(d.dev.name) is not d:
            return  # removed or replaced while its cycle was in flight: its indices may be another database's
        stat_idx, stats = self._stat_readings(d)
        tag_idx = d.tag_idx if at is None else d.tag_idx[at]
        if readings is None:
            idx, batch = stat_idx, stats
        elif not stat_idx.size:
            idx, batch = tag_idx, readings
        else:
            idx, batch = np.concatenate([tag_idx, stat_idx]), Readings.concat([readings, stats])
        if idx.size:
            self.db.apply_readings(idx, batch)

    def _push_sink(self, d: _Device) -> PushSink:
        def sink(batch: list[tuple[TagDef, Sample]]) -> None:
            index = self.db.index  # looked up per batch: a reload may have moved the poller to a new database
            pairs: dict[int, Sample] = {}
            for point, sample in batch:
                i = index.get(point.name)
                if i is not None:
                    pairs[i] = sample  # the newest sample of a tag in one batch wins
            if pairs:
                try:
                    self.db.apply_samples(pairs.items())
                except Exception:  # runs in the driver's callback: a failure must not break its session (logged)
                    log.exception("%s: applying pushed samples failed", d.dev.name)

        return sink

    def _stat_readings(self, d: _Device) -> tuple[npt.NDArray[np.int64], Readings]:
        """The statistics tags of ``d`` (indices, readings); last_success left out until a first success."""
        st = d.stats
        values = np.array([st.status, st.requests, st.errors, st.overruns, round(st.latency_s * 1000, 3),
                           st.last_success_ns / 1e9 if st.last_success_ns else math.nan,
                           round(st.last_period_s * 1000, 3), st.backoff_s], dtype=np.float64)[d.stat_pos]
        idx = d.stat_idx
        if not st.last_success_ns:
            keep = ~np.isnan(values)
            idx, values = idx[keep], values[keep]
        r = Readings(idx.size, Quality.GOOD)
        r.values = values
        now = time.time_ns()
        r.source_ns.fill(now)
        r.receive_ns.fill(now)
        return idx, r

    def _publish_stats(self, d: _Device) -> None:
        self._apply(d, None)

    def _publish_all_stats(self) -> None:
        for d in self._devices.values():
            self._publish_stats(d)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


__all__ = [
    "STATS",
    "STATUS_ENUM",
    "DeviceStats",
    "DriverFactory",
    "PollDriver",
    "PollUpdate",
    "Poller",
    "device_stat_tags",
    "percentile",
    "stat_tag_name",
]
