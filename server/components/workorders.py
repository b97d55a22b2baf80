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
    every 1 s: geofence ─► an order en route whose vehicle (its lat/lon tags) is within 50 m of the equipment
               goes "on site" (scada.workorders.dispatch.arrived; user ``system``)
    dispatch (the API): candidates ranked by scada.workorders.dispatch.rank over the same vehicle positions;
               the mission goes to the vehicle through the command gate (server.routes.workorders)
    intake.yaml (beside tags.yaml; absent: no citizen intake) ─► scada.workorders.intake.Intake over the same
               façade (intake.sqlite + contacts.sqlite); every hour: contacts past their retention purged
               settings intake.listen ─► its channels' routes also on their own listener, thread and event loop
               (server.components.intake_http: started after the intake, stopped before it closes; /health
               ``intake``; down: P2 system.workorders.intake_down)
    every hour: the photos of orders closed or cancelled for longer than crews.yaml's photo_retention deleted
               (scada.workorders.photos.purge: a photos_purged change in the order's journal first)
    every commit of the store (whoever wrote: API, alarm events, geofence, intake) ─► the WebSocket hub
               (server.hub.Hub.on_workorders): consoles subscribed with ``"workorders": true`` get each changed
               order, ``{"event": "created"|"changed", ...}`` with the fields of GET /workorders/{id}
    reload: crews.yaml checked in prepare (a bad one refuses the whole reload), then the new city and crews

The API reaches the façade as ``component.orders`` (:func:`server.routes.workorders.orders_of`); the out-of-
service path of the alarm routes links the alarm to the order it names through it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scada.alarms.states import Event
from scada.config import CityConfig
from scada.errors import ConfigError, Refusal, Refused
from scada.format import site_zone
from scada.journal import JournalEntry
from scada.quality import Quality
from scada.tagdb import TagDatabase
from scada.workorders import (
    FILE_NAME,
    Action,
    AlarmRef,
    Change,
    CrewsConfig,
    OrderQuery,
    Status,
    WorkOrder,
    WorkOrders,
    WorkOrderStore,
    check_crews,
)
from scada.workorders.dispatch import Candidate as CrewCandidate
from scada.workorders.dispatch import Fix, arrived, busy_crews, rank
from scada.workorders.intake import CONFIG_FILE as INTAKE_FILE
from scada.workorders.intake import PURGE_EVERY_S, Intake, IntakeConfig, load_intake
from scada.workorders.photos import PhotoStore
from scada.workorders.photos import purge as purge_photos
from server.components.alarms import alarm_view_dict
from server.components.base import SubsystemStatus
from server.components.intake_http import STATUS as INTAKE_STATUS
from server.components.intake_http import IntakeListener, report_down, report_up

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.alarms import AlarmComponent
    from server.reload import Candidate

log = logging.getLogger(__name__)

Json = dict[str, Any]
DRAIN_S = 0.25
TICK_S = 5.0
GEOFENCE_S = 1.0
MAX_DETAIL = 2000


def crews_path(server: ScadaServer) -> Path:
    """crews.yaml beside the tags file (as commands.yaml is)."""
    return Path(server.settings.tags).parent / "crews.yaml"


def intake_path(server: ScadaServer) -> Path:
    return Path(server.settings.tags).parent / INTAKE_FILE


def load_intake_for(path: Path) -> IntakeConfig | None:
    """intake.yaml checked; None when there is none (the intake is off)."""
    return load_intake(path) if path.is_file() else None


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

    def __init__(self, server: ScadaServer, alarms: AlarmComponent,
                 intake_app: Callable[[ScadaServer], Any] | None = None) -> None:
        self.server = server
        self.alarm_comp = alarms
        self.intake_app = intake_app  # the ASGI app of the intake's own listener (server.api.create_intake_app)
        self.listener: IntakeListener | None = None
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
        self.arrivals = 0
        self.intake: Intake | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        crews = load_crews_for(crews_path(self.server), config)
        path = self.server.data_dir / FILE_NAME
        store = self.store = await asyncio.to_thread(WorkOrderStore, path)
        store.listeners.append(self._to_consoles)
        self.orders = WorkOrders(store, config, crews, alarms_active=self._alarms_active, on_link=self._journal_link)
        self.auto_rules = _auto_rules(config)
        intake = load_intake_for(intake_path(self.server))
        if intake is not None:
            self.intake = await asyncio.to_thread(Intake, self.server.data_dir, self.orders, intake)
        await self._start_listener()
        await self.purge(time.time_ns() // 1_000_000)
        listeners = self.alarm_comp.listeners  # kept by the alarm component across its reloads
        listeners.append(self._on_alarm)
        self.unlisten = lambda: listeners.remove(self._on_alarm) if self._on_alarm in listeners else None
        self.task = asyncio.create_task(self._run(), name="workorders")
        st = self.health()
        st.set("ok", self._describe(crews))
        st.stats = self.stats

    async def _start_listener(self) -> None:
        """The intake's own listener when the settings give ``intake.listen``: failing to start is loud (health
        down, system alarm) and leaves the work orders and the main API's intake routes running."""
        opts = self.server.settings.intake
        if opts is None or self.intake_app is None:
            return
        if self.intake is None:
            self.server.status(INTAKE_STATUS).set("unavailable", "no intake.yaml beside tags.yaml: no citizen intake")
            return
        listener = IntakeListener(self.server, self.intake_app(self.server), opts.listen)
        try:
            url = await listener.start()
        except (OSError, RuntimeError) as exc:  # fail loud, keep the rest (the channels can use the main API)
            report_down(self.server, f"cannot listen on {opts.listen.host}:{opts.listen.port}: {exc}")
            return
        self.listener = listener
        report_up(self.server, url)

    def _describe(self, crews: CrewsConfig) -> str:
        where = crews.path or "no crews.yaml (default SLAs, no crews)"
        return f"{len(crews.crews)} crews, {len(crews.services)} services from {where}; " \
               f"{len(self.auto_rules)} rule(s) with work_order: auto"

    async def prepare(self, candidate: Candidate, tagdb: TagDatabase) -> None:
        """Check crews.yaml (against the new city) and intake.yaml before anything switches (a problem refuses
        the reload)."""
        self._prepared = (candidate.config, load_crews_for(crews_path(self.server), candidate.config))
        load_intake_for(intake_path(self.server))  # a bad intake.yaml refuses the reload too

    def discard(self) -> None:
        self._prepared = None

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> Json:
        prepared, self._prepared = self._prepared, None
        crews = prepared[1] if prepared is not None and prepared[0] is new else \
            load_crews_for(crews_path(self.server), new)
        if self.orders is not None:
            self.orders.city, self.orders.crews = new, crews
        self.auto_rules = _auto_rules(new)
        intake = load_intake_for(intake_path(self.server))
        if self.intake is not None and intake is not None:
            self.intake.reconfigure(intake)
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
        if self.listener is not None:  # no new report, the ones in progress answered: then the intake closes
            await self.listener.aclose()
            self.listener = None
            self.server.status(INTAKE_STATUS).set("stopped")
        if self.intake is not None:
            await asyncio.to_thread(self.intake.close)
            self.intake = None
        self.orders = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None

    def stats(self) -> Json:
        if self.store is None:
            return {}
        orders, changes = self.store.count()
        return {"orders": orders, "changes": changes, "alarm_events": self.processed, "auto_closed": self.auto_closed,
                "arrivals": self.arrivals, "queued": len(self.queue),
                **({"reports": self.intake.stats()} if self.intake is not None else {})}

    # ------------------------------------------------------------------ dispatch
    def position(self, vehicle: str) -> Fix | None:
        """A vehicle's live position from the tag database (lat/lon of good quality), else None."""
        tagdb = self.server.tagdb
        eq = self.orders.city.equipment.get(vehicle) if self.orders is not None else None
        if eq is None:
            return None
        try:
            lat, lon = tagdb.read(eq.tag_name("lat")), tagdb.read(eq.tag_name("lon"))
        except KeyError:
            return None
        if lat.quality is not Quality.GOOD or lon.quality is not Quality.GOOD:
            return None
        status: str | None = None
        with contextlib.suppress(KeyError):
            st = tagdb.read(eq.tag_name("status"))
            status = str(st.value) if st.quality is Quality.GOOD else None
        return Fix(float(lat.value), float(lon.value), status)  # type: ignore[arg-type]

    def candidates(self, order_id: str, now_s: float, any_service: bool = False) -> list[CrewCandidate]:
        """The crews for one order, best first (blocking: the store is read; use a worker thread)."""
        orders = self.orders
        if orders is None:
            raise Refused(f"candidates for work order {order_id}", "work orders not available", Refusal.UNAVAILABLE)
        order = orders.get(order_id)
        _, in_field = orders.store.query(OrderQuery(status=[str(s) for s in Status if s.in_field], limit=100_000))
        local = dt.datetime.fromtimestamp(now_s, site_zone())
        return rank(order, orders.crews, busy_crews(in_field, but=order.id), self.position, local,
                    any_service=any_service)

    def geofence(self, now_ms: int) -> list[WorkOrder]:
        """Orders en route whose vehicle has arrived → on site (blocking: use a worker thread)."""
        orders = self.orders
        if orders is None:
            return []
        _, en_route = orders.store.query(OrderQuery(status=[str(Status.EN_ROUTE)], limit=100_000))
        done: list[WorkOrder] = []
        for o in arrived(en_route, self.position):
            try:
                done.append(orders.store.commit([_on_site(o, now_ms)])[-1])
            except Refused:  # the crew acted meanwhile (pressed "on site" itself): nothing to do
                continue
            log.info("%s: vehicle %s within the geofence of %s: on site", o.id, o.vehicle, o.equipment)
        self.arrivals += len(done)
        return done

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

    def _to_consoles(self, changed: Sequence[tuple[WorkOrder, bool]]) -> None:
        """Store listener (the committing thread): the changed orders to the WebSocket hub's subscribers."""
        now = time.time_ns() // 1_000_000
        self.server.hub.on_workorders([{"event": "created" if created else "changed", **o.as_dict(),
                                        "overdue": o.open and o.overdue(now)} for o, created in changed])

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
        next_tick = next_fence = 0.0
        next_purge = time.monotonic() + PURGE_EVERY_S
        while True:
            await asyncio.sleep(DRAIN_S)
            try:
                await self.drain()
                if time.monotonic() >= next_fence:
                    next_fence = time.monotonic() + GEOFENCE_S
                    await asyncio.to_thread(self.geofence, time.time_ns() // 1_000_000)
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + PURGE_EVERY_S
                    await self.purge(time.time_ns() // 1_000_000)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK_S
                    await self.tick()
            except Exception:  # one failed round must not stop the work orders for good (logged, health)
                log.exception("workorders: processing failed")
                self.health().set("degraded", "processing failed (see the log); retrying")

    async def purge(self, now_ms: int) -> None:
        """Retention (in a worker thread): the reporters' contact data past intake.yaml's contact_retention, the
        photos of orders closed for longer than crews.yaml's photo_retention."""
        if self.intake is not None:
            await asyncio.to_thread(self.intake.purge, now_ms)
        if self.orders is not None:
            await asyncio.to_thread(purge_photos, self.orders, PhotoStore(self.server.data_dir), now_ms)

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


def _on_site(order: WorkOrder, now_ms: int) -> Change:
    return Change(order.id, now_ms, "system", Action.ON_SITE,
                  {"text": f"vehicle {order.vehicle} within the geofence of {order.equipment}"})


def _auto_rules(config: CityConfig) -> frozenset[str]:
    return frozenset(r.name for r in config.alarm_rules if r.work_order == "auto")
