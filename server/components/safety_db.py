"""The field-safety thread's own pieces: its tag database (the monitor decides first) and the writer's view
of a junction's driver (each call runs on the safety loop).

    safety Poller ──► SafetyTagDatabase.apply_readings / apply_samples
                        1. the monitor's subscriber decides on what changed (TagDatabase hand-out)
                        2. _decided: the monitor observes every junction the batch touched, changed or not,
                           and each junction's last good / last decided receive time is noted (the watch's input)
                        3. hand_on(db, indices, readings): server.components.safety queues the same readings
                           for the main tag database

    failsafe DriverWriter ──► LoopDriver.write ──run_coroutine_threadsafe──► the junction's driver, safety loop

Used by server.components.safety (SafetyPoll), which owns the thread, the loop and the watch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from failsafe.monitor import STATUS_TAGS, FieldSafetyMonitor, status_period_s
from scada.config import CityConfig
from scada.config.model import TagDef
from scada.poll import PollDriver, device_stat_tags
from scada.quality import Quality, Sample, Value
from scada.tagdb import ChangeEvent, Readings, TagDatabase

log = logging.getLogger(__name__)
T = TypeVar("T")


class LoopDriver:
    """A driver living on another event loop: each call runs there (the fail-safe writer's view of a junction)."""

    def __init__(self, driver: PollDriver, loop: asyncio.AbstractEventLoop) -> None:
        self.driver = driver
        self.loop = loop

    @property
    def connected(self) -> bool:
        return self.driver.connected

    async def _on(self, coro: Coroutine[Any, Any, T]) -> T:
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def connect(self) -> None:
        await self._on(self.driver.connect())

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        return await self._on(self.driver.read(points))

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        write = getattr(self.driver, "write", None)
        if write is None:
            raise TypeError(f"{point.device}: the driver cannot write")
        return await self._on(write(point, value, tolerance=tolerance))


class SafetyTagDatabase(TagDatabase):
    """The junction devices' tags: the monitor decides on each batch first, then it is handed on unchanged."""

    def __init__(self, config: CityConfig, devices: Sequence[str],
                 hand_on: Callable[[SafetyTagDatabase, npt.NDArray[np.int64], Readings], None]) -> None:
        defs = config.tag_by_name()
        super().__init__([defs[t] for n in devices for t in config.devices[n].tags if t in defs]
                         + device_stat_tags(config, devices))
        self.hand_on = hand_on
        self.monitor: FieldSafetyMonitor | None = None
        # junction → indices of its status tags here; index of any status tag → its junction
        self.status_idx: dict[str, npt.NDArray[np.int64]] = {}
        self.period_s: dict[str, float] = {}
        owner = np.full(len(self), -1, dtype=np.int64)
        self.junctions: list[str] = []
        wanted = set(devices)
        for eq in config.equipment.values():
            if eq.template != "junction" or eq.device not in wanted:
                continue
            idx = [self.index[eq.tag_name(t)] for t in STATUS_TAGS if eq.tag_name(t) in self.index]
            if not idx:
                continue
            k = len(self.junctions)
            self.junctions.append(eq.id)
            self.status_idx[eq.id] = np.array(idx, dtype=np.int64)
            self.period_s[eq.id] = status_period_s(config, self, eq)  # the status sample's, not the statics'
            owner[idx] = k
        self._owner = owner
        self.last_good_ns: dict[str, int] = {}  # junction → receive time of its last good status sample
        #: junction → receive time of the last good status sample the monitor decided on (a sample that came
        #: while no monitor was attached, or on which the monitor failed, is good but not decided)
        self.checked_ns: dict[str, int] = {}

    def apply_readings(self, indices: npt.NDArray[np.int64], readings: Readings) -> ChangeEvent:
        event = super().apply_readings(indices, readings)  # the monitor's subscriber decides on what changed
        self._decided(np.asarray(indices, dtype=np.int64))
        self.hand_on(self, np.asarray(indices, dtype=np.int64), readings)
        return event

    def apply_samples(self, samples: Iterable[tuple[int | str, Sample]]) -> ChangeEvent:
        pairs = [(self.index[k] if isinstance(k, str) else int(k), s) for k, s in samples]
        event = super().apply_samples(pairs)
        idx = np.array([i for i, _ in pairs], dtype=np.int64)
        self._decided(idx)
        self.hand_on(self, idx, Readings.from_samples([s for _, s in pairs]))
        return event

    def _decided(self, indices: npt.NDArray[np.int64]) -> None:
        """The monitor decides on the junctions' samples whose values did not change too (no change event),
        then the junctions' last good sample times are noted (what the watch and the tests read)."""
        if not indices.size or indices.max() >= len(self):
            return
        owners = self._owner[indices]
        owners = owners[owners >= 0]
        if not owners.size:
            return
        # a poll batch is one junction's device: skip the sort of np.unique then
        first = int(owners[0])
        touched = [first] if bool((owners == first).all()) else np.unique(owners).tolist()
        monitor = self.monitor
        if monitor is not None:
            try:
                monitor.observe(self.junctions[k] for k in touched)
            except Exception:  # the monitor's bug must not stop the junctions' polling (logged; the watch sees it)
                log.exception("field-safety monitor failed on a sample")
                monitor = None
        for k in touched:
            jid = self.junctions[k]
            idx = self.status_idx[jid]
            if bool((self.qualities[idx] == int(Quality.GOOD)).all()):
                self.last_good_ns[jid] = int(self.receive_ns[idx].max())
                if monitor is not None:
                    self.checked_ns[jid] = self.last_good_ns[jid]

    def decide_present(self) -> None:
        """A monitor just attached decides on every junction's present sample: those that came in while none
        was (a reload switched the database or restarted the fail-safe layer) are then decided on, not only
        received; otherwise the watch would count them as seen while the monitor never looked at them."""
        if self.junctions:
            self._decided(np.concatenate([self.status_idx[j] for j in self.junctions]))
