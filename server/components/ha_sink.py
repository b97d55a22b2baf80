"""The server's parts as the failover pair's replication stream sees them (server.components.ha assembles it):
the active's Feed reads them, the standby's Follower writes into them (it is the server.ha.follower.Sink).

    HaSink ── tagdb / journal / engine / audit / workorders / photos / historian: the running components' stores,
       │      looked up at each call (a reload replaces the tag database; the stores are made by components started
       │      after ha)
       ├── backfill: the active's historian points of a period this standby was not fed ──► Historian.backfill
       ├── ready: once the server has started and the fail-safe layer has checked its audit log
       ├── state_snapshot (the active's server.ha.state snapshot) · apply_state ──► server.ha.state.Replica
       ├── apply_junctions: the junctions' samples ──► the field-safety thread's database (its monitor
       │      decides first, then hands them on to the main database, as with its own poll); the rest stays
       │      with the Follower, for the main database
       ├── standby_grace: the field-safety watch's start-up grace begins at the standby's first look
       ├── hold · stop_polling / start_polling: a fed standby does not poll the field (the poll component
       │      waits for ``hold`` before its first poll; an old active that became a standby takes its devices
       │      out of both pollers, ``paused``, and back at its next takeover)
       └── on_state / on_set_aside ──► HaComponent (health, the P2 ``ha/not_in_sync``, the rejoin's text)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from historian.service import Historian
from scada.alarms.engine import AlarmEngine
from scada.journal import Journal
from scada.tagdb import Readings, TagDatabase
from scada.workorders.photos import PhotoStore
from scada.workorders.store import WorkOrderStore
from server.ha.follower import FollowerState
from server.ha.state import Replica, snapshot

if TYPE_CHECKING:
    from failsafe.audit import AuditLog
    from server.app import ScadaServer
    from server.components.poll import PollComponent

log = logging.getLogger(__name__)


class HaSink:
    """The stream's view of this server's parts (see the module docstring)."""

    def __init__(self, server: ScadaServer, poll: PollComponent | None, replica: Replica, *,
                 fingerprint: Callable[[], str], on_state: Callable[[FollowerState], None],
                 on_set_aside: Callable[[dict[str, Any]], None]) -> None:
        self.server = server
        self.poll = poll
        self.replica = replica
        self.fingerprint = fingerprint  # the pair's configuration identity (HaComponent.fingerprint)
        self._on_state, self._on_set_aside = on_state, on_set_aside
        self._junction_map: tuple[tuple[int, int], npt.NDArray[np.int64]] | None = None
        self.hold = asyncio.Event()  # set: the poll component may poll the field (handed to it as its ``hold``)
        #: devices whose polling stopped when this (old) active became a replicating standby: (main, junctions)
        self.paused: tuple[list[str], list[str]] | None = None

    def tagdb(self) -> TagDatabase:
        return self.server.tagdb

    def journal(self) -> Journal | None:
        comp = self.server.components.get("alarms")
        journal = getattr(comp, "journal", None)
        return journal if isinstance(journal, Journal) else None

    def engine(self) -> AlarmEngine | None:
        engine = getattr(self.server.components.get("alarms"), "engine", None)
        return engine if isinstance(engine, AlarmEngine) else None

    def audit(self) -> AuditLog | None:
        fs = self.server.failsafe()
        return fs.audit if fs is not None else None

    def workorders(self) -> WorkOrderStore | None:
        store = getattr(self.server.components.get("workorders"), "store", None)
        return store if isinstance(store, WorkOrderStore) else None

    def photos(self) -> PhotoStore | None:
        return PhotoStore(self.server.data_dir) if self.workorders() is not None else None

    def historian(self) -> Historian | None:
        hist = getattr(self.server.components.get("historian"), "hist", None)
        return hist if isinstance(hist, Historian) else None

    def backfill(self, indices: npt.NDArray[np.int64], readings: Readings) -> int:
        hist = self.historian()
        return hist.backfill(indices, readings) if hist is not None else 0

    async def ready(self) -> None:
        while not self.server.started_ns:  # noqa: ASYNC110 - the stores are made by the components started after this one (no event to wait on)
            await asyncio.sleep(0.1)
        # the fail-safe layer's full check of its audit log runs in a worker thread from its start: a copy that
        # starts over sets that log aside, which must not happen under the check (it would read as damage)
        fs = self.server.failsafe()
        if fs is not None:
            await fs.audit_checked()

    def state_snapshot(self) -> dict[str, Any]:
        return snapshot(self.server)

    def apply_state(self, state: dict[str, Any]) -> None:
        self.replica.apply(state)

    def city_tags(self) -> int:
        return len(self.server.config.tags)  # the city's tags come first in the tag database (server.app)

    async def apply_junctions(self, indices: npt.NDArray[np.int64], readings: Readings) -> npt.NDArray[np.bool_]:
        """The junctions' samples into the field-safety thread's database (its monitor decides, then it hands
        them on to the main database, as with its own poll); returns which positions it took."""
        safety = self.poll.safety if self.poll is not None else None
        db = safety.db if safety is not None else None
        taken = np.zeros(indices.size, dtype=bool)
        if safety is None or db is None:
            return taken
        self.standby_grace()
        main = self.server.tagdb
        if self._junction_map is None or self._junction_map[0] != (id(main), id(db)):
            m = np.full(len(main), -1, dtype=np.int64)  # main index → the safety database's (-1: not a junction's)
            for k, name in enumerate(db.names):
                i = main.index.get(name)
                if i is not None:
                    m[i] = k
            self._junction_map = ((id(main), id(db)), m)
        sidx = self._junction_map[1][indices]
        taken = sidx >= 0
        if not taken.any():
            return taken
        pos = np.flatnonzero(taken).astype(np.int64)
        sub, at = readings.take(pos), sidx[pos]

        async def there() -> None:
            db.apply_readings(at, sub)

        await safety.call(there())
        return taken

    def standby_grace(self) -> None:
        """The field-safety watch's start-up grace begins when the standby first looks (its own poll, which sets
        it, is held): from then on a junction without a fresh replicated sample is blind (P1)."""
        safety = self.poll.safety if self.poll is not None else None
        if safety is not None and safety.db is not None and not safety.since_ns:
            now = time.time_ns()
            safety.since_ns = dict.fromkeys(safety.db.junctions, now)

    async def stop_polling(self, name: str) -> None:
        """An old active that became a replicating standby stops polling the field (the stream feeds it, as a
        standby that started so is); the devices start again at its next takeover (:meth:`start_polling`)."""
        polled = self.hold.is_set()
        self.hold.clear()
        poll = self.poll
        if not polled or poll is None or self.paused is not None or poll.poller is None:
            return  # a standby from the start: its first poll is held (the poll component waits for the hold)
        if poll.starting is not None and not poll.starting.done():
            await asyncio.wait({poll.starting}, timeout=30.0)  # its warm-up first (then every device is known)
        main, safety = poll.poller, poll.safety
        names = list(main.devices)
        junctions = list(safety.poller.devices) if safety.poller is not None else []
        if not names and not junctions:
            return
        self.paused = (names, junctions)
        await poll.call(main.remove_devices(names))
        if safety.poller is not None and junctions:
            await safety.call(safety.poller.remove_devices(junctions))
        log.warning("%s: standby: stopped polling %d devices and %d junctions (fed by the active's stream)",
                    name, len(names), len(junctions))

    async def start_polling(self) -> None:
        """This server is active: the poll component polls the field (its first poll, or again: the devices an old
        active stopped polling as a standby)."""
        self.hold.set()
        paused, self.paused = self.paused, None
        poll = self.poll
        if paused is None or poll is None or poll.poller is None:
            return
        main, safety = poll.poller, poll.safety
        if safety.poller is not None and paused[1]:
            await safety.call(safety.poller.add_devices(paused[1]))
        await poll.call(main.add_devices(paused[0]))

    def on_state(self, state: FollowerState) -> None:
        """The standby's stream changed (connected, stale, refused): the watch's grace, then the component."""
        self.standby_grace()
        self._on_state(state)

    def on_set_aside(self, info: dict[str, Any]) -> None:
        """This standby diverged and set its own rows aside (server.ha.follower.Follower)."""
        self._on_set_aside(info)
