"""Work orders (scada.workorders) in the server: the store, crews.yaml, and the alarm engine's events.

    start: crews.yaml (beside tags.yaml; absent: no crews, default SLAs) ─► workorders.sqlite (WAL, FULL)
           ─► WorkOrders façade ─► listen to the alarm component's events
    alarm engine transitions ─► listener (under the engine's lock: only queues the event)
                              ─► every 0.25 s, in a worker thread: WorkOrders.on_alarm_events(batch)
                                 (work_order: auto rules create, an equipment's open order absorbs, back to
                                 normal resolves a done order) ─► links journalled in the alarm journal too
                                 (event ``work_order``: the order and the alarms; the journal's own rows)
    every 5 s: tick ─► resolved orders closed after crews.yaml's auto_close_after without recurrence;
               open orders past their due time ─► system alarm ``system.workorders.sla_breach`` (text: which)
    reload: crews.yaml checked in prepare (a bad one refuses the whole reload), then the new city and crews

The API reaches the façade as ``component.orders`` (:func:`server.routes.workorders.orders_of`); the out-of-
service path of the alarm routes links the alarm to the order it names through it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scada.alarms.states import Event
from scada.config import CityConfig
from scada.errors import ConfigError, Refusal, Refused
from scada.journal import JournalEntry
from scada.tagdb import TagDatabase
from scada.workorders import FILE_NAME, AlarmRef, CrewsConfig, WorkOrder, WorkOrders, WorkOrderStore, check_crews
from server.components.alarms import alarm_view_dict
from server.components.base import SubsystemStatus

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.alarms import AlarmComponent
    from server.reload import Candidate

log = logging.getLogger(__name__)

Json = dict[str, Any]
DRAIN_S = 0.25
TICK_S = 5.0
MAX_DETAIL = 2000


def crews_path(server: ScadaServer) -> Path:
    """crews.yaml beside the tags file (as commands.yaml is)."""
    return Path(server.settings.tags).parent / "crews.yaml"


def load_crews_for(path: Path, config: CityConfig) -> CrewsConfig:
    """The crews of ``path`` checked against ``config``; no file: no crews and the default SLAs."""
    if not path.is_file():
        return CrewsConfig()
    crews, problems = check_crews(path, config)
    if crews is None:
        raise ConfigError(problems)
    return crews


class WorkOrderComponent:
    """The work-order store and façade, fed by the alarm component's events."""

    name = "workorders"

    def __init__(self, server: ScadaServer, alarms: AlarmComponent) -> None:
        self.server = server
        self.alarm_comp = alarms
        self.store: WorkOrderStore | None = None
        self.orders: WorkOrders | None = None
        self.auto_rules: frozenset[str] = frozenset()
        self.queue: deque[Json] = deque()
        self.unlisten: Callable[[], None] | None = None
        self.task: asyncio.Task[None] | None = None
        self._prepared: tuple[CityConfig, CrewsConfig] | None = None
        self._sla_text = ""
        self.processed = 0
        self.auto_closed = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        crews = load_crews_for(crews_path(self.server), config)
        path = self.server.data_dir / FILE_NAME
        store = self.store = await asyncio.to_thread(WorkOrderStore, path)
        self.orders = WorkOrders(store, config, crews, alarms_active=self._alarms_active, on_link=self._journal_link)
        self.auto_rules = _auto_rules(config)
        listeners = self.alarm_comp.listeners  # kept by the alarm component across its reloads
        listeners.append(self._on_alarm)
        self.unlisten = lambda: listeners.remove(self._on_alarm) if self._on_alarm in listeners else None
        self.task = asyncio.create_task(self._run(), name="workorders")
        st = self.health()
        st.set("ok", self._describe(crews))
        st.stats = self.stats

    def _describe(self, crews: CrewsConfig) -> str:
        where = crews.path or "no crews.yaml (default SLAs, no crews)"
        return f"{len(crews.crews)} crews, {len(crews.services)} services from {where}; " \
               f"{len(self.auto_rules)} rule(s) with work_order: auto"

    async def prepare(self, candidate: Candidate, tagdb: TagDatabase) -> None:
        """Check crews.yaml against the new city before anything switches (a problem refuses the reload)."""
        self._prepared = (candidate.config, load_crews_for(crews_path(self.server), candidate.config))

    def discard(self) -> None:
        self._prepared = None

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> Json:
        prepared, self._prepared = self._prepared, None
        crews = prepared[1] if prepared is not None and prepared[0] is new else \
            load_crews_for(crews_path(self.server), new)
        if self.orders is not None:
            self.orders.city, self.orders.crews = new, crews
        self.auto_rules = _auto_rules(new)
        self.health().set("ok", self._describe(crews))
        return {"crews": len(crews.crews), "auto_rules": len(self.auto_rules)}

    def health(self) -> SubsystemStatus:
        return self.server.status("workorders")

    async def aclose(self) -> None:
        if self.unlisten is not None:
            self.unlisten()
            self.unlisten = None
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        self.orders = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None

    def stats(self) -> Json:
        if self.store is None:
            return {}
        orders, changes = self.store.count()
        return {"orders": orders, "changes": changes, "alarm_events": self.processed, "auto_closed": self.auto_closed,
                "queued": len(self.queue)}

    # ------------------------------------------------------------------ alarm engine side
    def alarm_ref(self, alarm_id: str) -> AlarmRef:
        """What an order needs of one alarm, from the running engine; Refused when there is no such alarm."""
        engine = self.alarm_comp.engine
        what = f"work order from alarm {alarm_id!r}"
        if engine is None:
            raise Refused(what, "the alarm engine is not running", Refusal.UNAVAILABLE)
        try:
            view = engine.view(alarm_id)
        except KeyError:
            raise Refused(what, "no such alarm", Refusal.NOT_FOUND) from None
        return AlarmRef.of_view(alarm_view_dict(view))

    def _on_alarm(self, view: Json) -> None:
        """Alarm listener, called under the engine's lock: queue and return (the work runs in _run)."""
        if view.get("equipment"):
            self.queue.append(view)

    def _alarms_active(self, equipment: str) -> Sequence[str]:
        svc = self.server.alarms
        if svc is None:  # no alarm engine: nothing is known to be active (a done order resolves)
            return []
        _, views = svc.active(True, 1000, equipment=equipment)
        return [str(v["id"]) for v in views if v.get("active")]

    def _journal_link(self, links: Sequence[tuple[WorkOrder, Sequence[str]]], user: str, ts_ms: int) -> None:
        """The links in the alarm journal too (what maintenance reads there): one row per order, all in one
        append (one transaction, even for a storm's thousand orders)."""
        journal = self.alarm_comp.journal
        if journal is None:
            return
        rows = []
        for order, alarms in links:
            listed = ", ".join(alarms)
            if len(listed) > MAX_DETAIL:
                listed = listed[:MAX_DETAIL - 40].rsplit(", ", 1)[0] + f" (+{len(alarms)} alarms in all)"
            rows.append(JournalEntry(ts_ms * 1_000_000, Event.WORK_ORDER, user=user, comment=order.equipment,
                                     detail=f"{order.id} ({order.status}): {listed}"))
        journal.append(rows)

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        next_tick = 0.0
        while True:
            await asyncio.sleep(DRAIN_S)
            try:
                await self.drain()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    await self.tick()
            except Exception:  # one failed round must not stop the work orders for good (logged, health)
                log.exception("workorders: processing failed")
                self.health().set("degraded", "processing failed (see the log); retrying")

    async def drain(self) -> int:
        """Process the queued alarm events (one batch, one transaction); the number processed."""
        orders = self.orders
        if orders is None or not self.queue:
            return 0
        batch: list[Json] = []
        while self.queue and len(batch) < 50_000:
            batch.append(self.queue.popleft())
        await asyncio.to_thread(orders.on_alarm_events, batch, self.auto_rules, time.time_ns() // 1_000_000)
        self.processed += len(batch)
        return len(batch)

    async def tick(self) -> None:
        """Auto-close, and the SLA-breach system alarm (raised on the event loop, where the sink is used)."""
        orders = self.orders
        if orders is None:
            return
        closed, overdue = await asyncio.to_thread(orders.tick, time.time_ns() // 1_000_000)
        self.auto_closed += len(closed)
        text = ""
        if overdue:
            overdue.sort(key=lambda o: o.due_ms)
            first = ", ".join(f"{o.id} ({o.equipment})" for o in overdue[:5])
            text = f"{len(overdue)} overdue, first {first}"
        sink = self.server.system_alarms
        if text != self._sla_text and sink is not None:
            sink.raise_("workorders", "sla_breach", active=bool(text), detail=text)
            self._sla_text = text
        if self.health().status == "degraded":
            self.health().set("ok", self._describe(orders.crews))


def _auto_rules(config: CityConfig) -> frozenset[str]:
    return frozenset(r.name for r in config.alarm_rules if r.work_order == "auto")
