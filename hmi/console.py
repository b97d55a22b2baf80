"""ConsoleModel: the Qt-side model every widget takes in its constructor (napari style).

    Bridge (network, threads) ──dataReady──► ConsoleModel.pull()
                                               │ LiveTags.apply_rows · AlarmStore.replace/apply
                                               │ MapModel.apply_rows / set_alarm_levels
                                               ▼
                 tagsChanged(set[str]) · alarmsChanged() · mapChanged(MapDelta) · staleChanged(bool)
                 sessionChanged() · equipmentLoaded() · healthChanged(dict)
                                               ▼
                                  widgets (banner, lists, synoptics...)

Widgets read the pure models (``console.tags``, ``console.alarms``, ``console.map``...) and act
through the console's methods (``ack``, ``shelve``, ``command``...), which return a bridge
:class:`~hmi.bridge.Reply`. A console without a bridge (``ConsoleModel(None)``) is fully usable for
widget tests: feed it rows and alarms with :meth:`feed` and check the widgets; actions then answer
"not connected".

Sessions: ``sessionEnded(why)`` when the session is over — the operator logged out, or the server
ended it (expiry, idle timeout, password or role changed: see :mod:`hmi.bridge`). The data stay on
screen marked stale, the channels are closed, and the window asks for a login (switch user); the next
login starts everything again (:meth:`start`).

Area of responsibility: :meth:`set_area` bounds the alarm store (:mod:`hmi.models.area`), then the map
levels are recomputed and ``areaChanged`` + ``alarmsChanged`` tell the banner, list, map and annunciator.

One clock: ``GET /config`` names the site's time zone; :meth:`_on_config` makes it the process's
(:func:`scada.format.set_timezone`), so every time a widget shows is in it, and ``siteChanged`` lets
the status bar name it once. The language is the process's too: ``GET /config`` names the one the server
speaks (:meth:`site_language`), which ``scada hmi`` makes the console's after the login and before it builds
the window (:func:`hmi.language.follow_site`), unless ``scada --lang`` / ``$SCADA_LANG`` chose one. While it
follows the server (``follow_language``), ``GET /config`` is read again after a reload or a reconnection (the
bridge says when: :attr:`hmi.bridge.Updates.config_changed`); a language changed there becomes the process's and
``languageChanged`` asks for the window in it (:class:`hmi.window_host.WindowHost` rebuilds it).

Subscriptions: channel ``alarms`` (every alarm, and the work orders' events: ``workordersChanged`` with the
orders by id, ``workordersResync`` after each snapshot of it) from the login on; once the equipment list is known,
``city`` (the luminaires' status, one glob) and ``health1..n`` (the map's health and position tags by
exact name); ``focus`` (the union of what the open displays declare
with :meth:`set_interest`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import numpy as np
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from hmi.bridge import Bridge, Reply
from hmi.models.alarms import AlarmStore
from hmi.models.area import Area
from hmi.models.layouts import Layouts, check_against, load_layouts
from hmi.models.live import EquipmentInfo, LiveTags, Registry, Session
from hmi.models.mapmodel import LAMP_GLOB, MapDelta, MapModel
from scada.format import set_timezone
from scada.i18n import Lang, _, get_language, parse_lang, set_language

log = logging.getLogger(__name__)

HEALTH_PERIOD_MS = 5000


class ConsoleModel(QObject):
    sessionChanged = pyqtSignal()
    sessionEnded = pyqtSignal(str)  # why: "logged out", "session expired…", "role changed…" (ask for a login)
    connectionChanged = pyqtSignal(str, str)
    staleChanged = pyqtSignal(bool)
    equipmentLoaded = pyqtSignal()
    tagsChanged = pyqtSignal(object)  # set[str] of tag names
    alarmsChanged = pyqtSignal()
    mapChanged = pyqtSignal(object)  # MapDelta
    healthChanged = pyqtSignal(dict)
    vocabularyChanged = pyqtSignal()
    message = pyqtSignal(str)  # something the operator should read (status bar)
    openEquipment = pyqtSignal(str)  # navigation request: show the Level-3 display of this equipment
    openTrend = pyqtSignal(list)  # navigation request: trend these tags
    openWorkOrder = pyqtSignal(str)  # navigation request: the work-order list with this order selected
    areaChanged = pyqtSignal()  # the area of responsibility changed (status bar)
    siteChanged = pyqtSignal()  # GET /config answered: the site's time zone is known (status bar)
    languageChanged = pyqtSignal(str)  # following the server, its language changed (a reload): the window again in it
    workordersChanged = pyqtSignal(list)  # work orders the server pushed (dicts as GET /workorders/{id}), by id
    workordersResync = pyqtSignal()  # events may have been missed (a snapshot): read GET /workorders again

    def __init__(self, bridge: Bridge | None, layouts: Layouts | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.session = Session()
        self.tags = LiveTags()
        self.alarms = AlarmStore()
        self.registry = Registry()
        self.map = MapModel([])
        self.health: dict[str, Any] = {}
        self.config_info: dict[str, Any] = {}
        self.vocabulary: dict[str, Any] = {}
        self.vocabulary_error = _("not loaded")
        self.state = "offline"
        self.state_detail = ""
        self.layouts, self.layout_problems = (layouts, []) if layouts is not None else load_layouts()
        self._interests: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self.timings: dict[str, float] = {}
        self.health_requested = False
        self.audible = True  # audible annunciation (hmi.annunciator); scada hmi --no-audible turns it off
        self._t_login = 0.0
        self.last_user = ""  # who was logged in before the session ended (the login dialog offers it)
        self.workorder_syncs = 0  # snapshots of the work-order subscription this session (0: not subscribed yet)
        # the process's language follows the server's (GET /config "lang"): scada hmi without --lang / $SCADA_LANG
        self.follow_language = False
        # the language of the console's texts (its window is built in it): the process's, as this console set it
        # (a server in the same process, as in the tests, may set the process's on its own)
        self.language: Lang = get_language()
        if bridge is not None:
            bridge.dataReady.connect(self.pull)
            bridge.connectionChanged.connect(self._on_connection)
            bridge.loggedIn.connect(self._on_logged_in)
        self._health_timer = QTimer(self)
        self._health_timer.setInterval(HEALTH_PERIOD_MS)
        self._health_timer.timeout.connect(self.refresh_health)

    # ------------------------------------------------------------------ session
    @property
    def stale(self) -> bool:
        return self.tags.stale

    def login(self, user: str, password: str) -> Reply:
        if self.bridge is None:  # an offline model (tests, screenshots) has no server to ask
            raise RuntimeError("console: no bridge to the server")
        self._t_login = time.perf_counter()
        return self.bridge.login(user, password)

    def close(self) -> None:
        """Stop the timers and the bridge (the window is closing)."""
        self._health_timer.stop()
        if self.bridge is not None:
            self.bridge.stop()

    def logout(self) -> None:
        """End this session (the bridge revokes the token and closes the channels); ``sessionEnded`` follows."""
        if self.bridge is not None:
            self.bridge.logout()  # → connectionChanged("logged_out") → _on_connection
        else:
            self._session_over(_("logged out"))

    def _on_logged_in(self, info: dict[str, Any]) -> None:
        if info.get("must_change_password"):
            return  # every route but /auth/password answers 403 until it is changed: start after the change
        first = not self.session.logged_in
        self.session.user = str(info.get("user", ""))
        self.session.role = str(info.get("role", ""))
        self.session.expires_ms = int(info.get("expires_ms", 0))
        if first:
            self.start()

    def start(self) -> None:
        """After the first login: who am I, the city, the vocabulary, then the channels."""
        if self.bridge is None:  # an offline model (tests, screenshots) has no server to ask
            raise RuntimeError("console: no bridge to the server")
        self.bridge.get("/auth/me").finished.connect(self._on_me)
        self.refresh_config()
        self.bridge.get("/equipment", limit=50_000).finished.connect(self._on_equipment)
        self.load_vocabulary()
        self.refresh_health()
        self._health_timer.start()
        # every alarm at once (with tag filters the server would send only the alarms of those tags), and the
        # work orders' events on the same socket (hmi.workorders_view reads the list once this is subscribed)
        self.bridge.set_channel("alarms", {"alarms": True, "workorders": True})

    def _on_me(self, r: Reply) -> None:
        if r.ok and isinstance(r.data, dict):
            self.session = Session(str(r.data["user"]), str(r.data["role"]), frozenset(r.data.get("permissions", [])),
                                   int(r.data.get("expires_ms", 0)))
            self.sessionChanged.emit()

    def refresh_config(self) -> None:
        """Ask ``GET /config`` (at the login, and again when the configuration may have changed)."""
        if self.bridge is not None:
            self.bridge.get("/config").finished.connect(self._on_config)

    def _on_config(self, r: Reply) -> None:
        if r.ok and isinstance(r.data, dict):
            self.config_info = r.data
            zone = r.data.get("timezone")
            if isinstance(zone, str) and zone:
                try:
                    set_timezone(zone)  # one clock: every time on screen in the site's zone
                except ValueError as exc:  # a zone this machine's database lacks: say so, keep the current one
                    self.message.emit(str(exc))
            self.siteChanged.emit()
            self.follow_server_language()

    def use_language(self, lang: Lang) -> None:
        """``lang`` for the console's texts from now on (the process's language, and :attr:`language`)."""
        self.language = set_language(lang)

    def follow_server_language(self) -> bool:
        """While following the server (``follow_language``): its language (``GET /config``) made the console's when
        it differs from the one its texts are in, and ``languageChanged`` emitted. True when the language changed."""
        lang = self.site_language()
        if not self.follow_language or lang is None or lang == self.language:
            return False
        self.use_language(lang)
        log.info("console: the server at %s speaks %s now: so does the console", self.bridge.url if self.bridge
                 else "(none)", lang)
        self.languageChanged.emit(lang)
        return True

    def replay(self) -> None:
        """Tell widgets built now what this console already knows, as if it had just arrived: a window built after
        the login (``scada hmi`` builds it once the server's language is known) connects to signals that may
        have fired already (the equipment list, the configuration, the vocabulary, health, the first values)."""
        self.sessionChanged.emit()
        if self.config_info:
            self.siteChanged.emit()
        if self.vocabulary:
            self.vocabularyChanged.emit()
        if len(self.registry):
            self.equipmentLoaded.emit()
        if self.health:
            self.healthChanged.emit(self.health)
        if self.tags.values:
            self.tagsChanged.emit(set(self.tags.values))
        self.alarmsChanged.emit()
        self.staleChanged.emit(self.stale)
        self.connectionChanged.emit(self.state, self.state_detail)

    def site_language(self) -> Lang | None:
        """The language the server speaks (``GET /config`` ``lang``: its setting, else the site's); None before
        it answered, or when it names one the console has no catalogue for."""
        try:
            return parse_lang(str(self.config_info.get("lang") or ""))
        except ValueError:
            return None

    def load_vocabulary(self) -> None:
        if self.bridge is None:
            return

        def done(r: Reply) -> None:
            if r.ok and isinstance(r.data, dict):
                self.vocabulary, self.vocabulary_error = r.data, ""
            else:
                self.vocabulary, self.vocabulary_error = {}, r.why()
            self.vocabularyChanged.emit()

        self.bridge.get("/commands/vocabulary").finished.connect(done)

    def _on_equipment(self, r: Reply) -> None:
        if not r.ok:
            self.message.emit(_("cannot load the equipment list: {why}").format(why=r.why()))
            return
        self.set_equipment([EquipmentInfo.from_json(d) for d in r.data.get("equipment", [])])
        self.timings["equipment_s"] = time.perf_counter() - self._t_login
        self.timings["equipment_request_s"] = r.timing[1]
        if self.bridge is None:  # an offline model (tests, screenshots) has no server to ask
            raise RuntimeError("console: no bridge to the server")
        self.bridge.set_channel("city", {"tags": [LAMP_GLOB], "alarms": False})
        for name, sub in self.city_channels().items():
            self.bridge.set_channel(name, sub)
        self.health_requested = True
        self._resubscribe_focus()

    def city_channels(self, per_channel: int = 1000) -> dict[str, dict[str, Any]]:
        """The map's health and position tags by exact name, ≤ 1000 per channel (the server's limit per
        subscription): an exact name is a dictionary look-up for the server, a glob a scan of every tag
        name — only the luminaires (channel ``city``), whose count per cabinet we do not know, use one."""
        names = self.map.health_names(self.registry.tag)
        chunks = [names[k:k + per_channel] for k in range(0, len(names), per_channel)]
        return {f"health{k + 1}": {"tags": chunk, "alarms": False} for k, chunk in enumerate(chunks)}

    def set_equipment(self, items: list[EquipmentInfo]) -> None:
        self.registry = Registry(items)
        self.map = MapModel(items)
        if self.tags.values:  # rows that arrived before the equipment list (luminaires): place them now
            self.map.apply_rows(list(self.tags.values.values()))
        problems = check_against(self.layouts, [(e.id, e.template) for e in items])
        if problems:
            self.layout_problems = list(self.layout_problems) + problems
            for p in problems:
                log.warning("layouts: %s", p)
        self.equipmentLoaded.emit()

    # ------------------------------------------------------------------ data from the bridge
    def pull(self) -> None:
        if self.bridge is None:  # an offline model (tests, screenshots) has no server to ask
            raise RuntimeError("console: no bridge to the server")
        up = self.bridge.take()
        self.feed(list(up.rows.values()), up.alarm_snapshot, up.alarm_events)
        for m in up.messages:
            self.message.emit(_("server: {what}: {why}").format(what=m.get("what"), why=m.get("why")))
        if up.workorders:  # the events first: a list read after the snapshot then has the last word
            self.workordersChanged.emit(list(up.workorders.values()))
        if up.workorders_resync:
            self.workorder_syncs += 1
            self.workordersResync.emit()
        if up.config_changed:  # a reload or a reconnection: the site's language or zone may be another now
            self.refresh_config()
        if up.snapshots and "first_snapshot_s" not in self.timings and self._t_login:
            self.timings["first_snapshot_s"] = time.perf_counter() - self._t_login

    def feed(self, rows: list[list[Any]], alarm_snapshot: list[dict[str, Any]] | None = None,
             alarm_events: Iterable[dict[str, Any]] = ()) -> None:
        """Apply rows and alarms (from the bridge, or directly in widget tests) and notify the widgets."""
        for r in rows[:5000]:
            self.registry.learn_prefix(r[0])
        changed = self.tags.apply_rows(rows) if rows else set()
        delta = self.map.apply_rows(rows) if rows else MapDelta()
        touched: set[str] | None = set()
        events = list(alarm_events)
        if alarm_snapshot is not None:
            self.alarms.replace(alarm_snapshot)
            touched = None
        if events:
            t = self.alarms.apply(events)
            if touched is not None:
                touched |= t
        if alarm_snapshot is not None or events:
            ad = self.map.set_alarm_levels(self.alarms.equipment_levels(touched), touched)
            if ad.equipment.size:
                delta.equipment = np.union1d(delta.equipment, ad.equipment)
        if changed:
            self.tagsChanged.emit(changed)
        if delta:
            self.mapChanged.emit(delta)
            if delta.rebuilt and self._t_login:
                self.timings["luminaires_drawn_s"] = time.perf_counter() - self._t_login
                # the city is loaded: move these long-lived objects out of the collector's generations, so
                # a storm's allocations do not trigger scans of the whole heap
                gc.freeze()
        if alarm_snapshot is not None or events:
            self.alarmsChanged.emit()

    def _on_connection(self, state: str, detail: str) -> None:
        if state == "online" and not self.health_requested and self.bridge is not None:
            state, detail = "connecting", _("waiting for the equipment list")  # the map's channels are not open yet
        self.state, self.state_detail = state, detail
        stale = state != "online"
        if stale != self.tags.stale:
            self.tags.stale = stale
            self.staleChanged.emit(stale)
        self.connectionChanged.emit(state, detail)
        if state == "logged_out":
            self._session_over(detail)

    def _session_over(self, why: str) -> None:
        self._health_timer.stop()
        self.health_requested = False  # the next login opens the channels again: "connecting" until then
        self.workorder_syncs = 0  # and subscribes to the work orders again
        was = self.session.user
        self.session = Session()
        self.last_user = was or self.last_user
        self.sessionChanged.emit()
        self.sessionEnded.emit(why or _("logged out"))

    def set_stale(self, stale: bool) -> None:
        """For widget tests without a bridge."""
        self._on_connection("online" if not stale else "reconnecting", "" if not stale else "test")

    # ------------------------------------------------------------------ interests (focus channel)
    def set_interest(self, owner: str, tags: Iterable[str] = (), equipment: Iterable[str] = ()) -> None:
        """What one display needs live (globs and equipment ids); the focus channel subscribes to the union."""
        new = (frozenset(tags), frozenset(equipment))
        if self._interests.get(owner) == new:
            return
        if not new[0] and not new[1]:
            self._interests.pop(owner, None)
        else:
            self._interests[owner] = new
        self._resubscribe_focus()

    def _resubscribe_focus(self) -> None:
        if self.bridge is None or not len(self.registry):
            return
        tags = sorted({t for ts, _ in self._interests.values() for t in ts})[:1000]
        eqs = sorted({e for _, es in self._interests.values() for e in es})[:1000]
        if tags or eqs:
            self.bridge.set_channel("focus", {"tags": tags, "equipment": eqs, "alarms": False})
        else:
            self.bridge.set_channel("focus", None)

    # ------------------------------------------------------------------ health
    def refresh_health(self) -> None:
        if self.bridge is None or not self.bridge.running:
            return

        def done(r: Reply) -> None:
            if r.ok and isinstance(r.data, dict):
                self.health = r.data
                self.healthChanged.emit(r.data)

        self.bridge.get("/health").finished.connect(done)

    def subsystem(self, name: str) -> tuple[str, str]:
        """(status, detail) of a server subsystem from the last /health ("unknown" before the first)."""
        s = (self.health.get("subsystems") or {}).get(name)
        if not isinstance(s, dict):
            return ("unknown", "")
        return (str(s.get("status", "unknown")), str(s.get("detail", "")))

    # ------------------------------------------------------------------ actions (return Replies)
    def _offline(self, method: str, path: str) -> Reply:
        r = Reply(method, path)
        r.error, r.code, r.done = _("not connected to a server"), "offline", True
        QTimer.singleShot(0, lambda: r.finished.emit(r))
        return r

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Reply:
        if self.bridge is None:
            return self._offline(method, path)
        if method == "GET":
            return self.bridge.get(path, **params)
        return self.bridge.request(method, path, params=params or None,
                                   json_body=body if body is not None else {})

    def ack(self, ids: list[str], comment: str = "") -> Reply:
        return self.call("POST", "/alarms/ack", {"ids": ids, "comment": comment})

    def shelve(self, alarm_id: str, reason: str, duration_s: float | None, one_shot: bool = False) -> Reply:
        body: dict[str, Any] = {"reason": reason, "one_shot": one_shot}
        if duration_s:
            body["duration_s"] = duration_s
        return self.call("POST", f"/alarms/{quote(alarm_id, safe='')}/shelve", body)

    def alarm_action(self, alarm_id: str, action: str, body: dict[str, Any]) -> Reply:
        """unshelve | suppress | unsuppress | out-of-service | return-to-service | reset."""
        return self.call("POST", f"/alarms/{quote(alarm_id, safe='')}/{action}", body)

    def set_area(self, area: Area) -> None:
        """Watch only this area: the banner, list, map alarms and annunciation follow at once."""
        if area == self.alarms.area:
            return
        self.alarms.area = area
        self.alarms.version += 1
        delta = self.map.set_alarm_levels(self.alarms.equipment_levels(), None)
        self.areaChanged.emit()
        if delta:
            self.mapChanged.emit(delta)
        self.alarmsChanged.emit()

    # work orders (hmi.workorders_view, hmi.dispatch; the server's routes in server/routes/workorders.py)
    def order_from_alarm(self, alarm_id: str) -> Reply:
        """One click from an alarm: its equipment's open order with the alarm linked, else a new one."""
        return self.call("POST", "/workorders/from-alarm", {"alarm_id": alarm_id})

    def create_order(self, equipment: str, what: str, priority: int = 3) -> Reply:
        return self.call("POST", "/workorders", {"equipment": equipment, "what": what, "priority": priority})

    def open_orders_of(self, equipment: str) -> Reply:
        return self.call("GET", "/workorders", equipment=equipment, open="true")

    def order_action(self, order_id: str, action: str, body: dict[str, Any]) -> Reply:
        """assign | cancel | close | note | … (``POST /workorders/{id}/{action}``)."""
        return self.call("POST", f"/workorders/{quote(order_id, safe='')}/{action}", body)

    def registry_named(self, eq_id: str, address: bool = False) -> str:
        """``"J001 — Carrefour …"``: the id with its name (the registry of now: it is replaced at each login)."""
        return self.registry.named(eq_id, address)

    def domain_of(self) -> dict[str, str]:
        return {e.id: e.domain for e in self.registry.items.values()}
