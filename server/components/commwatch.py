"""Communication loss, for every kind of device, as system alarms (one per lost thing, never one per tag).

    poll scheduler: DeviceStats.status per device ─┐
      (starting ─► ok ◄─► lost / refused)           │  CommWatch.evaluate(now), every 0.5 s on the
    tag database: qualities of the points of each  ─┤  server's loop (the poll component's task)
      equipment on a shared device                  ▼
    ┌───────────────────────────────────────────────────────────────────────────────────────────────┐
    │ <prefix>/poll/comm_lost        the equipment cannot be read: its own device is lost or refuses │
    │                                us, or it alone is silent on a device that answers (every point  │
    │                                of it bad_comm: a panel unplugged from a working RS-485 bus)     │
    │ <prefix>/poll/via_device_lost  (diagnostic, journalled) its *shared* device is lost             │
    │ system/devices/<dev>/device_comm_lost   a shared device (bus, BMS or fleet server) is lost      │
    └───────────────────────────────────────────────────────────────────────────────────────────────┘
                      │ SystemAlarmSink.raise_ (bool tags) ─► alarm engine (built-in rules, scada.alarms.system)

One annunciation per lost thing. A device serving one equipment (a junction's controller, a cabinet, a
bollard) → that equipment's ``comm_lost``. A shared device lost → one ``device_comm_lost`` for the device;
the ``comm_lost`` of each equipment behind it is still set (it is what suppresses the city's own
``bad_quality`` rules by design, scada.alarms.system.city_rules) but is itself suppressed by design behind
``via_device_lost``, so the fleet server going away is one alarm, not 205.

Priorities (scada.alarms.system.COMM_LOSS_PRIORITIES): junction P1 (comm loss blinds the field-safety
monitor), bollard and building P2, the others P3; a shared device takes the most severe of what it serves.

Start-up grace: a device is ``starting`` until its first read, and nothing is raised for it before two of
its scan periods have passed since the watch first saw it (start, or added by a reload): the warm-up read
of a whole city must not flash alarms for devices that simply have not answered yet. An equipment alone
silent on a shared device must stay silent for one scan period of that device before it is lost.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from scada.alarms.system import SystemAlarmSink, shared_devices
from scada.config import CityConfig
from scada.poll import LOST, OK, REFUSED
from scada.quality import Quality
from scada.tagdb import TagDatabase

SOURCE = "poll"
COMM_LOST, VIA_DEVICE, DEVICE_LOST = "comm_lost", "via_device_lost", "device_comm_lost"
GRACE_PERIODS = 2
_BAD_COMM = int(Quality.BAD_COMM)


class StatusLike(Protocol):
    """What the watch reads of scada.poll.DeviceStats."""

    @property
    def status(self) -> int: ...


@dataclass(slots=True)
class _Watched:
    equipment: str
    device: str
    shared: bool
    points: npt.NDArray[np.int64]  # its tags read through its shared device (empty for a device of its own)


class CommWatch:
    """Turns device statuses (and, on shared devices, per-equipment silence) into comm-loss conditions."""

    def __init__(self, config: CityConfig, db: TagDatabase, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.first_seen: dict[str, float] = {}  # device → when the watch first saw it polled
        self.sent: dict[tuple[str, str], bool] = {}  # (code, equipment or device) → last value raised
        self.lost: list[str] = []  # devices lost or refused after their grace, for /health
        self.silent_since: dict[str, float] = {}  # equipment alone silent on a shared device → since when
        self.bind(config, db)

    def bind(self, config: CityConfig, db: TagDatabase) -> None:
        """(Re)bind to a configuration and tag database (start, reload: the tags' values are carried over,
        so what was raised stays known)."""
        self.config, self.db = config, db
        shared = set(shared_devices(config))
        points: dict[str, list[str]] = {}
        for t in config.tags:
            if t.equipment and t.device in shared:
                points.setdefault(t.equipment, []).append(t.name)
        self.watched = [
            _Watched(e.id, e.device, e.device in shared,
                     db.indices([n for n in points.get(e.id, []) if n in db.index]) if e.device in shared
                     else np.zeros(0, dtype=np.int64))
            for e in config.equipment.values() if e.device in config.devices]
        # every shared equipment's points in one array, one segment each: "every point bad_comm and read once"
        # is then one vectorised reduction per evaluation instead of two np.all per equipment (~2,000 at
        # full city, every 0.5 s)
        on_shared = [w for w in self.watched if w.shared and w.points.size]
        segs = [w.points for w in on_shared]
        self._seg_of = {w.equipment: k for k, w in enumerate(on_shared)}
        self._seg_points = np.concatenate(segs) if segs else np.zeros(0, dtype=np.int64)
        self._seg_starts = np.cumsum([0] + [p.size for p in segs[:-1]]).astype(np.int64) if segs else \
            np.zeros(0, dtype=np.int64)
        self.shared = shared
        self.periods = {name: d.period_s for name, d in config.devices.items()}
        self.sent = {k: v for k, v in self.sent.items()
                     if k[1] in config.equipment or k[1] in config.devices}

    def _past_grace(self, device: str, now: float) -> bool:
        seen = self.first_seen.setdefault(device, now)
        return now - seen >= GRACE_PERIODS * self.periods.get(device, 1.0)

    def evaluate(self, stats: Mapping[str, StatusLike], sink: SystemAlarmSink, now: float | None = None) -> int:
        """Compute every condition from ``stats`` (device → its DeviceStats) and raise/clear through ``sink``
        the ones that changed (the sink set every tag to 0 when the alarm engine started: "no condition"
        needs no write). Returns how many changed. A device not in ``stats`` (not polled) raises nothing."""
        now = self.clock() if now is None else now
        for gone in set(self.first_seen) - set(stats):
            del self.first_seen[gone]
        status: dict[str, int] = {}
        for name, st in list(stats.items()):
            status[name] = st.status if self._past_grace(name, now) else -1  # -1: in its start-up grace
        lost = {name for name, s in status.items() if s in (LOST, REFUSED)}
        self.lost = sorted(lost)
        want: dict[tuple[str, str], bool] = {}
        pts = self._seg_points
        silent: list[bool] = []
        if pts.size:
            every_bad = (self.db.qualities[pts] == _BAD_COMM) & (self.db.receive_ns[pts] > 0)
            silent = np.logical_and.reduceat(every_bad, self._seg_starts).tolist()
        for w in self.watched:
            s = status.get(w.device)
            if s is None or s == -1:
                continue
            if not w.shared:
                want[(COMM_LOST, w.equipment)] = w.device in lost
                continue
            seg = self._seg_of.get(w.equipment)
            alone = s == OK and seg is not None and silent[seg]
            # debounce: silent for a whole scan period (one missed answer on a busy bus is not a loss)
            since = self.silent_since.setdefault(w.equipment, now) if alone else self.silent_since.pop(w.equipment, now)
            alone = alone and now - since >= self.periods.get(w.device, 1.0)
            want[(VIA_DEVICE, w.equipment)] = w.device in lost
            want[(COMM_LOST, w.equipment)] = w.device in lost or alone
        for name in self.shared:
            s = status.get(name)
            if s is not None and s != -1:
                want[(DEVICE_LOST, name)] = name in lost
        changed = [(k, v) for k, v in want.items() if self.sent.get(k, False) != v]
        # order: the suppressors (via_device_lost, the device's own alarm) are set before the comm_lost they
        # cover, and cleared after it: an equipment behind a lost bus never flashes its own alarm
        rank = {(VIA_DEVICE, True): 0, (DEVICE_LOST, True): 1, (COMM_LOST, True): 2, (COMM_LOST, False): 3,
                (DEVICE_LOST, False): 4, (VIA_DEVICE, False): 5}
        changed.sort(key=lambda kv: rank[(kv[0][0], kv[1])])
        # one sink batch per rank (one alarm-engine pass and one journal transaction each): a start-up or a
        # lost bus changes hundreds at once, and the order above holds between the batches
        for _rank, group in itertools.groupby(changed, key=lambda kv: rank[(kv[0][0], kv[1])]):
            batch = list(group)
            sink.raise_many(SOURCE, [(code, key, value, "") for (code, key), value in batch])
            self.sent.update(batch)
        return len(changed)
