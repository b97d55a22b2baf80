"""The poll scheduler: one asyncio task per device (a serial bus is one device), fixed-rate.

Core code: no protocol import. Drivers come from a factory callable (``drivers.registry.
DriverFactory`` in production) and only need the small interface of :class:`PollDriver`.

Timeline of one device (period P, staggered start offset o = P * k / n within its scan class)::

    t0+o        t0+o+P       t0+o+2P      t0+o+3P
     │ cycle ──┐ │ cycle ─────────────────┐│           a cycle longer than P: the missed tick(s) are
     │         │ │                        ││           counted as overruns, never queued; the next
     │         │ │                        │└ skipped   cycle starts on the next tick of the grid
     ▼         ▼ ▼                        ▼

One cycle::

    connect() if not connected ──► read(points) ──► points still bad_comm? ──► retry them (device.retries)
          │ (bounded: every cycle ends by start + max(P, timeout); a cut cycle is a comm failure)
          ▼
    samples + the device's statistics tags ──► TagDatabase.apply_samples (one batch per cycle)

Device state machine (the comm-status tag ``system/devices/<dev>/status``)::

    starting ──ok──► ok ◄────────── recovery (logged once, INFO)
        │            │
        └──fail──────┴──► lost ── log once (WARNING), tags bad_comm in that same cycle;
                           │      next attempts back off: P, 2P, 4P ... capped at max_backoff_s
                           └── refused (AuthError: the device rejected our credentials)

A cycle "fails" when the device could not be reached at all (connect failed, or every point came
back bad_comm after the retries). Partial answers (a Modbus exception on one block → bad_device)
are not a communication loss.

Statistics per device (``DeviceStats``) are exposed as extra tags named
``system/devices/<device>/<stat>``; :func:`device_stat_tags` builds their TagDefs for a CityConfig
(the caller adds them to the TagDatabase). Stats: status, requests, errors, overruns, latency_ms,
last_success (epoch s), period_ms (achieved), backoff_s.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from scada.config.model import CityConfig, DeviceDef, TagDef
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase

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

    @property
    def status_label(self) -> str:
        return STATUS_ENUM[self.status]


def _is_auth_error(exc: BaseException | None) -> bool:
    # AuthError lives in scada.errors; the check is by name to keep this duck-typed for test drivers
    return exc is not None and any(c.__name__ == "AuthError" for c in type(exc).__mro__)


class _Device:
    __slots__ = ("dev", "driver", "offset", "points", "stat_idx", "stats", "tag_idx", "task")

    def __init__(self, dev: DeviceDef, points: list[TagDef], driver: PollDriver, offset: float,
                 tag_idx: list[int], stat_idx: dict[str, int]) -> None:
        self.dev = dev
        self.points = points
        self.driver = driver
        self.offset = offset
        self.tag_idx = tag_idx
        self.stat_idx = stat_idx
        self.stats = DeviceStats(dev.name, dev.period_s)
        self.task: asyncio.Task[None] | None = None


class Poller:
    """Poll the devices of ``config`` into ``db`` with drivers made by ``factory``.

    ``devices`` restricts to some device names (default: all). ``max_backoff_s`` caps the retry
    delay of a lost device (never below its period). ``stagger`` spreads the first cycles of the
    devices of one scan class over the period so that 1,100 cabinets do not fire together.
    """

    def __init__(self, config: CityConfig, factory: DriverFactory, db: TagDatabase, *,
                 devices: Sequence[str] | None = None, max_backoff_s: float = 60.0, stagger: bool = True,
                 warmup_s: float = 15.0, warmup_concurrency: int = 128, freeze_gc: bool = True) -> None:
        self.config = config
        self.warmup_s = warmup_s
        self.warmup_concurrency = warmup_concurrency
        self.freeze_gc = freeze_gc
        self.factory = factory
        self.db = db
        self.max_backoff_s = max_backoff_s
        self.stagger = stagger
        names = list(devices) if devices is not None else list(config.devices)
        tag_defs = config.tag_by_name()
        # stagger per scan class: device k of n starts at P * k / n
        by_class: dict[str, list[str]] = {}
        for n in names:
            by_class.setdefault(config.devices[n].scan, []).append(n)
        offsets: dict[str, float] = {}
        for members in by_class.values():
            for k, n in enumerate(members):
                offsets[n] = config.devices[n].period_s * k / len(members) if stagger else 0.0
        self._devices: dict[str, _Device] = {}
        self._by_tag: dict[str, int] = db.index
        for n in names:
            dev = config.devices[n]
            points = [tag_defs[t] for t in dev.tags]
            tag_idx = [db.index[t] for t in dev.tags]
            stat_idx = {s: db.index[stat_tag_name(n, s)] for s in STATS if stat_tag_name(n, s) in db.index}
            self._devices[n] = _Device(dev, points, factory(dev), offsets[n], tag_idx, stat_idx)
        self._started = False
        self._t0 = 0.0

    # ------------------------------------------------------------------ public
    @property
    def stats(self) -> dict[str, DeviceStats]:
        return {n: d.stats for n, d in self._devices.items()}

    @property
    def drivers(self) -> dict[str, PollDriver]:
        return {n: d.driver for n, d in self._devices.items()}

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
        for d in self._devices.values():
            d.driver.set_sink(self._push_sink(d))
        self._publish_all_stats()
        if warmup and self._devices:
            gate = asyncio.Semaphore(self.warmup_concurrency)

            async def first(d: _Device) -> None:
                async with gate:  # 1,500 devices at once would swamp the gateways and agents
                    await self._cycle(d, loop.time(), self._warmup_budget(d.dev))

            await asyncio.gather(*(first(d) for d in self._devices.values()))
        if self.freeze_gc:
            # config, tag database, drivers and plans live as long as the process: keep them out of the
            # cyclic GC, whose full collections otherwise stall the loop ~1 s at city scale
            gc.unfreeze()  # a restarted poller (configuration reload): let the old city be collected
            gc.collect()
            gc.freeze()
            # and make full collections rarer: hundreds of reads in flight keep ~10^5 young objects alive
            t0, t1, t2 = gc.get_threshold()
            gc.set_threshold(t0, t1, max(t2, 100))
        self._t0 = loop.time()
        for d in self._devices.values():
            d.task = asyncio.create_task(self._run(d), name=f"poll:{d.dev.name}")

    def _warmup_budget(self, dev: DeviceDef) -> float:
        """Deadline of the warm-up cycle: twice a normal cycle with all its retries, capped."""
        return min(self.warmup_s, 2 * max(dev.period_s, dev.timeout_s) * (dev.retries + 1))

    async def run_for(self, duration_s: float) -> None:
        """Start (with warm-up) and poll for ``duration_s`` seconds of fixed-rate scheduling."""
        await self.start()
        await asyncio.sleep(duration_s)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop every task and close every driver (concurrently; bounded by ``timeout_s``).

        A driver that does not finish closing in time is logged and left behind: shutting the
        poller down never hangs on one device.
        """
        tasks = [d.task for d in self._devices.values() if d.task is not None]
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
        for d in self._devices.values():
            d.task = None
            d.driver.set_sink(None)
            closers[asyncio.create_task(self._close_driver(d))] = d.dev.name
        if closers:
            _done, stuck = await asyncio.wait(closers, timeout=timeout_s)
            for t in stuck:
                log.error("%s: driver did not close within %.0f s", closers[t], timeout_s)
                t.cancel()
        self._started = False

    @staticmethod
    async def _close_driver(d: _Device) -> None:
        try:
            await d.driver.aclose()
        except Exception:
            log.exception("%s: closing the driver failed", d.dev.name)

    # ------------------------------------------------------------------ scheduling
    async def _run(self, d: _Device) -> None:
        loop = asyncio.get_running_loop()
        period = d.dev.period_s
        next_t = self._t0 + d.offset
        last_start: float | None = None
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                # a library swallowed our CancelledError somewhere in the cycle: honour the request anyway
                raise asyncio.CancelledError
            delay = next_t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            start = loop.time()
            st = d.stats
            st.lateness.append(max(0.0, start - next_t))
            if last_start is not None:
                st.last_period_s = start - last_start
                if st.failures_in_row == 0:
                    st.intervals.append(st.last_period_s)
            last_start = start
            try:
                ok = await self._cycle(d, start)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a driver must not kill the device's task
                log.exception("%s: poll cycle crashed", d.dev.name)
                ok = False
            now = loop.time()
            if ok:
                next_t += period
            else:
                st.backoff_s = min(max(self.max_backoff_s, period), period * 2 ** max(0, st.failures_in_row - 1))
                next_t = next_t + st.backoff_s
            if now > next_t:
                missed = math.ceil((now - next_t) / period)
                if ok:
                    st.overruns += missed
                next_t += missed * period
            self._publish_stats(d)

    async def _cycle(self, d: _Device, start: float, budget_s: float | None = None) -> bool:
        """One read cycle with retries; applies the samples; returns False on communication loss."""
        dev = d.dev
        st = d.stats
        drv = d.driver
        loop = asyncio.get_running_loop()
        n = len(d.points)
        results: list[Sample | None] = [None] * n
        requests_before = drv.requests
        error: BaseException | None = None
        deadline = start + (budget_s if budget_s is not None else max(dev.period_s, dev.timeout_s))
        pending = list(range(n))
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
                        except Exception as exc:  # DriverError by contract; anything else is a driver bug
                            error = exc
                            st.errors += 1
                            if _is_auth_error(exc):
                                break
                            continue
                    samples = await drv.read([d.points[i] for i in pending])
                    if len(samples) != len(pending):
                        raise RuntimeError(f"driver returned {len(samples)} samples for {len(pending)} points")
                    still: list[int] = []
                    for i, s in zip(pending, samples, strict=True):
                        results[i] = s
                        if s.quality is Quality.BAD_COMM:
                            still.append(i)
                    if still:
                        st.errors += 1
                        error = drv.last_error
                    pending = still
                    if not pending:
                        break
        except TimeoutError:
            st.errors += 1
            error = TimeoutError(f"cycle did not finish within {deadline - start:.3g} s")
        end = loop.time()
        st.cycles += 1
        st.requests += drv.requests - requests_before
        st.latency_s = end - start
        reached = any(s is not None and s.quality is not Quality.BAD_COMM for s in results)
        if n == 0:
            reached = error is None
        bad = Sample.bad(Quality.BAD_COMM)
        samples_out = [s if s is not None else bad for s in results]
        ok = self._update_status(d, reached, error)
        self._apply(d, samples_out)  # the values and the statistics (new status) in one batch
        return ok

    def _update_status(self, d: _Device, reached: bool, error: BaseException | None) -> bool:
        dev = d.dev
        st = d.stats
        if reached:
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
        if st.status != new_status:
            log.warning("%s: communication %s: %s", dev.name,
                        "refused" if new_status == REFUSED else "lost", text)
        st.status = new_status
        st.failures_in_row += 1
        st.last_error = text
        return False

    # ------------------------------------------------------------------ tag database
    def _apply(self, d: _Device, samples: list[Sample]) -> None:
        pairs: list[tuple[int | str, Sample]] = list(zip(d.tag_idx, samples, strict=True))
        pairs.extend(self._stat_samples(d))
        if pairs:
            self.db.apply_samples(pairs)

    def _push_sink(self, d: _Device) -> PushSink:
        index = self._by_tag

        def sink(batch: list[tuple[TagDef, Sample]]) -> None:
            pairs: dict[int, Sample] = {}
            for point, sample in batch:
                i = index.get(point.name)
                if i is not None:
                    pairs[i] = sample  # the newest sample of a tag in one batch wins
            if pairs:
                try:
                    self.db.apply_samples(pairs.items())
                except Exception:
                    log.exception("%s: applying pushed samples failed", d.dev.name)

        return sink

    def _stat_samples(self, d: _Device) -> list[tuple[int | str, Sample]]:
        if not d.stat_idx:
            return []
        st = d.stats
        now = time.time_ns()
        values: dict[str, float | int] = {
            "status": st.status, "requests": st.requests, "errors": st.errors, "overruns": st.overruns,
            "latency_ms": round(st.latency_s * 1000, 3),
            "last_success": st.last_success_ns / 1e9 if st.last_success_ns else math.nan,
            "period_ms": round(st.last_period_s * 1000, 3), "backoff_s": st.backoff_s,
        }
        out: list[tuple[int | str, Sample]] = []
        for stat, i in d.stat_idx.items():
            v = values[stat]
            if isinstance(v, float) and math.isnan(v):
                continue
            out.append((i, Sample(v, Quality.GOOD, now, now)))
        return out

    def _publish_stats(self, d: _Device) -> None:
        pairs = self._stat_samples(d)
        if pairs:
            self.db.apply_samples(pairs)

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
    "Poller",
    "device_stat_tags",
    "percentile",
    "stat_tag_name",
]
