"""Alarm store, banner counts and the alarm list (filter, sort, group): pure, no Qt.

    WebSocket snapshot.alarms ──replace()──►  AlarmStore.alarms {id: Alarm}
    WebSocket delta.alarms    ──apply()────►  upsert; an alarm back to normal with no flag is removed
                                 │
                 banner() ◄──────┼──────► rows(AlarmFilter, sort, group)  (the alarm list)
                                 └──────► equipment_levels()              (marker colours on the map)

The store's :attr:`AlarmStore.area` (the console's area of responsibility, :mod:`hmi.models.area`)
bounds what the banner, the list, the map levels and the commune counts see: alarms outside it are
kept (the equipment displays show every alarm of their equipment) but not counted or listed.

ISA-18.2 states as the server names them: ``unack`` (active, unacknowledged), ``acked`` (active,
acknowledged), ``rtn_unack`` (returned to normal, unacknowledged), ``normal``. Orthogonal flags:
shelved, suppressed (by design or by an operator), out of service, latched. Shelved, suppressed and
out-of-service alarms are *hidden* from the operator's list and the map (counted on the banner);
diagnostic events (priority 5) are never annunciated.

:func:`parse_alarm` accepts the server's alarm dict tolerantly (several spellings of state, flags
and times), so the list keeps working while the engine's format settles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hmi.models.area import WHOLE_CITY, Area
from hmi.style import DIAGNOSTIC, priority_text
from scada.format import duration
from scada.i18n import N_, _

STATES = ("unack", "acked", "rtn_unack", "normal")
_STATE_ALIASES = {
    "unack": "unack", "unacked": "unack", "active_unacked": "unack", "unacknowledged": "unack", "active": "unack",
    "acked": "acked", "ack": "acked", "active_acked": "acked", "acknowledged": "acked",
    "rtn_unack": "rtn_unack", "rtn_unacked": "rtn_unack", "clear_unacked": "rtn_unack", "returned": "rtn_unack",
    "normal": "normal", "clear_acked": "normal", "inactive": "normal", "cleared": "normal",
}
_STATE_CODES = {0: "normal", 1: "unack", 2: "acked", 3: "rtn_unack"}
#: how the list names each state (English msgids: the views show them through _())
STATE_TEXT = {"unack": N_("ACTIVE, UNACK"), "acked": N_("ACTIVE, ACKED"), "rtn_unack": N_("RETURNED, UNACK"),
              "normal": N_("NORMAL")}


@dataclass(slots=True)
class Alarm:
    id: str
    priority: int  # 1..4, 5 = diagnostic
    state: str  # unack | acked | rtn_unack | normal
    equipment: str = ""
    commune: str = ""
    area: str = ""
    service: str = ""
    tag: str = ""
    message: str = ""
    value: Any = None
    ts_ms: int = 0  # last transition
    since_ms: int = 0  # active since (first annunciation)
    shelved: bool = False
    suppressed: bool = False
    out_of_service: bool = False
    latched: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ("unack", "acked")

    @property
    def unacked(self) -> bool:
        return self.state in ("unack", "rtn_unack")

    @property
    def hidden(self) -> bool:
        return self.shelved or self.suppressed or self.out_of_service

    @property
    def diagnostic(self) -> bool:
        return self.priority >= DIAGNOSTIC

    @property
    def annunciated(self) -> bool:
        """On the operator's list and the map: not diagnostic, not hidden, not back to normal-and-acked."""
        return not self.diagnostic and not self.hidden and self.state != "normal"

    @property
    def gone(self) -> bool:
        """Nothing left to show or count: normal, acknowledged, no flag."""
        return self.state == "normal" and not self.hidden and not self.latched

    @property
    def flag_text(self) -> str:
        """The flags in words, in the console's language: ``"SHELVED, LATCHED"``."""
        out = []
        if self.shelved:
            out.append(_("SHELVED"))
        if self.suppressed:
            out.append(_("SUPPRESSED"))
        if self.out_of_service:
            out.append(_("OUT OF SERVICE"))
        if self.latched:
            out.append(_("LATCHED"))
        return ", ".join(out)


def _priority(v: Any) -> int:
    if isinstance(v, bool):
        return DIAGNOSTIC
    if isinstance(v, int):
        return v if 1 <= v <= 4 else DIAGNOSTIC
    text = str(v or "").strip().lower()
    if text.isdigit():
        return _priority(int(text))
    return {"critical": 1, "high": 2, "medium": 3, "low": 4}.get(text, DIAGNOSTIC)


def _state(d: dict[str, Any]) -> str:
    s = d.get("state")
    if isinstance(s, int) and not isinstance(s, bool):
        return _STATE_CODES.get(s, "normal")
    if isinstance(s, str) and s.strip().lower() in _STATE_ALIASES:
        return _STATE_ALIASES[s.strip().lower()]
    active = d.get("active")
    acked = d.get("acked", d.get("acknowledged"))
    if isinstance(active, bool):
        if active:
            return "acked" if acked else "unack"
        return "normal" if acked in (True, None) else "rtn_unack"
    return "unack"


def _flags(d: dict[str, Any]) -> set[str]:
    raw = d.get("flags")
    out: set[str] = set()
    if isinstance(raw, str):
        out = {p.strip().lower() for p in raw.replace("|", ",").split(",") if p.strip()}
    elif isinstance(raw, (list, tuple, set)):
        out = {str(p).lower() for p in raw}
    elif isinstance(raw, dict):
        out = {str(k).lower() for k, v in raw.items() if v}
    for key in ("shelved", "suppressed", "out_of_service", "latched"):
        v = d.get(key)
        if v:
            out.add(key)
    shelving = d.get("shelving")
    if isinstance(shelving, str) and shelving.lower() not in ("", "none"):
        out.add("shelved")
    return out


def _ms(d: dict[str, Any], *keys: str) -> int:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return int(v * 1000) if v < 1e11 else int(v)  # seconds or milliseconds
    return 0


def parse_alarm(d: dict[str, Any]) -> Alarm:
    """One server alarm dict → :class:`Alarm` (tolerant of the engine's spellings)."""
    flags = _flags(d)
    aid = str(d.get("id") or d.get("alarm") or d.get("key") or "")
    return Alarm(
        id=aid,
        priority=_priority(d.get("priority")),
        state=_state(d),
        equipment=str(d.get("equipment") or ""),
        commune=str(d.get("commune") or d.get("area") or ""),
        area=str(d.get("area") or d.get("commune") or ""),
        service=str(d.get("service") or ""),
        tag=str(d.get("tag") or ""),
        message=str(d.get("message") or d.get("text") or aid),
        value=d.get("value"),
        ts_ms=_ms(d, "ts_ms", "time_ms", "changed_ms", "last_ms", "ts", "time"),
        since_ms=_ms(d, "since_ms", "active_since_ms", "activated_ms", "first_ms", "ts_ms", "time_ms", "ts"),
        shelved=any(f.startswith("shelved") for f in flags),
        suppressed=any(f.startswith("suppressed") for f in flags),
        out_of_service="out_of_service" in flags,
        latched="latched" in flags,
        raw=d,
    )


_STATIC = {"equipment": ("equipment",), "commune": ("commune", "area"), "area": ("area", "commune"),
           "service": ("service",), "tag": ("tag",), "message": ("message", "text")}


@dataclass(slots=True)
class Banner:
    """What the always-visible banner shows (AC-HMI-06)."""

    unacked: dict[int, int]  # priority → unacknowledged annunciated alarms
    active: dict[int, int]  # priority → active annunciated alarms (acked or not)
    shelved: int
    suppressed: int
    out_of_service: int
    diagnostic: int
    newest_p1: Alarm | None

    @property
    def total_unacked(self) -> int:
        return sum(self.unacked.values())


class AlarmStore:
    """Every alarm the server reports as not normal, by id."""

    def __init__(self) -> None:
        self.alarms: dict[str, Alarm] = {}
        self.version = 0
        self.area: Area = WHOLE_CITY  # the console's area of responsibility (set by the console)

    def in_area(self) -> list[Alarm]:
        """The alarms of the console's area of responsibility (every alarm for the whole city)."""
        if self.area.everything:
            return list(self.alarms.values())
        return [a for a in self.alarms.values() if self.area.accepts(a)]

    def __len__(self) -> int:
        return len(self.alarms)

    def replace(self, items: Iterable[dict[str, Any]]) -> set[str]:
        """A snapshot: the full list. Returns the equipment whose alarms may have changed."""
        old = {a.equipment for a in self.alarms.values()}
        self.alarms = {}
        for d in items:
            a = parse_alarm(d)
            if a.id and not a.gone:
                self.alarms[a.id] = a
        self.version += 1
        return old | {a.equipment for a in self.alarms.values()}

    def apply(self, events: Iterable[dict[str, Any]]) -> set[str]:
        """Deltas (each event is the alarm's new full state). Returns the equipment touched."""
        touched: set[str] = set()
        for d in events:
            a = parse_alarm(d)
            if not a.id:
                continue
            prev = self.alarms.get(a.id)
            if prev is not None:
                touched.add(prev.equipment)
                for attr, keys in _STATIC.items():  # a partial event keeps what we knew
                    if not any(k in d for k in keys):
                        setattr(a, attr, getattr(prev, attr))
                if not a.since_ms:
                    a.since_ms = prev.since_ms
            touched.add(a.equipment)
            if a.gone:
                self.alarms.pop(a.id, None)
            else:
                self.alarms[a.id] = a
        if touched:
            self.version += 1
        return touched

    def get(self, alarm_id: str) -> Alarm | None:
        return self.alarms.get(alarm_id)

    def describe(self, alarm_id: str, named: Callable[[str], str] = str) -> str:
        """An alarm named by its id (``fire_alarm:dijon/building/B003/fire_zone_2``: a work order's alarms) as
        an operator reads it: ``■1 critique — FEU dans B003 (Dijon), …`` while the console holds it; once it is
        gone from the list, the equipment it was on (``named``: the console's "B003 — Centre technique …").
        The id itself is for tooltips."""
        a = self.alarms.get(alarm_id)
        if a is not None:
            return f"{priority_text(a.priority)} — {a.message or named(a.equipment)}"
        parts = alarm_id.partition(":")[2].split("/")  # rule:commune/kind/equipment/tag
        equipment = parts[2] if len(parts) > 3 else ""
        return _("an alarm of {equipment}").format(equipment=named(equipment)) if equipment else _("an alarm")

    # ------------------------------------------------------------------ banner / map
    def banner(self) -> Banner:
        unacked = {p: 0 for p in (1, 2, 3, 4)}
        active = {p: 0 for p in (1, 2, 3, 4)}
        shelved = suppressed = oos = diag = 0
        newest: Alarm | None = None
        for a in self.in_area():
            if a.shelved:
                shelved += 1
            if a.suppressed:
                suppressed += 1
            if a.out_of_service:
                oos += 1
            if a.diagnostic:
                diag += 1 if a.state != "normal" else 0
                continue
            if a.hidden:
                continue
            if a.unacked:
                unacked[a.priority] += 1
            if a.active:
                active[a.priority] += 1
            if a.priority == 1 and (a.active or a.unacked) and (
                    newest is None or (a.since_ms or a.ts_ms) > (newest.since_ms or newest.ts_ms)):
                newest = a
        return Banner(unacked, active, shelved, suppressed, oos, diag, newest)

    def equipment_levels(self, equipment: Iterable[str] | None = None) -> dict[str, int]:
        """Equipment → worst priority (1 = worst) of its annunciated *active* alarms (absent when none)."""
        wanted = None if equipment is None else set(equipment)
        out: dict[str, int] = {}
        for a in self.in_area():
            if not a.annunciated or not a.active or not a.equipment:
                continue
            if wanted is not None and a.equipment not in wanted:
                continue
            cur = out.get(a.equipment)
            if cur is None or a.priority < cur:
                out[a.equipment] = a.priority
        return out

    def of_equipment(self, eq_id: str) -> list[Alarm]:
        return sorted((a for a in self.alarms.values() if a.equipment == eq_id), key=sort_key("priority"))

    def counts_by(self, key: str, domain_of: dict[str, str] | None = None) -> dict[str, dict[int, int]]:
        """Annunciated alarms counted per commune (``key='commune'``), service, or domain (via ``domain_of``)."""
        out: dict[str, dict[int, int]] = {}
        for a in self.in_area():
            if not a.annunciated:
                continue
            if key == "domain":
                k = (domain_of or {}).get(a.equipment, "") or a.service
            else:
                k = str(getattr(a, key, ""))
            bucket = out.setdefault(k, {1: 0, 2: 0, 3: 0, 4: 0})
            bucket[a.priority] += 1
        return out


# ---------------------------------------------------------------------- the alarm list
@dataclass(slots=True)
class AlarmFilter:
    """The alarm list's filters (the same names as the API's ``GET /alarms`` query)."""

    priorities: frozenset[int] = frozenset({1, 2, 3, 4})
    states: frozenset[str] = frozenset({"unack", "acked", "rtn_unack"})
    area: str = ""
    service: str = ""
    equipment: str = ""
    text: str = ""
    show_hidden: bool = False  # shelved / suppressed / out of service (their own lists)
    only_hidden: bool = False

    def accepts(self, a: Alarm) -> bool:
        if a.priority not in self.priorities:
            return False
        if self.only_hidden:
            if not a.hidden:
                return False
        elif a.hidden and not self.show_hidden:
            return False
        if not a.hidden and a.state not in self.states:
            return False
        if self.area and self.area.lower() not in (a.area.lower(), a.commune.lower()):
            return False
        if self.service and self.service != a.service:
            return False
        if self.equipment and self.equipment.lower() not in a.equipment.lower():
            return False
        if self.text:
            t = self.text.lower()
            if t not in a.message.lower() and t not in a.id.lower() and t not in a.equipment.lower():
                return False
        return True


SORTS = (N_("priority"), N_("time"), N_("equipment"), N_("area"), N_("service"), N_("state"))  # keys; shown _(key)
GROUPS = (N_("none"), N_("equipment"), N_("area"), N_("service"), N_("priority"))
_STATE_ORDER = {"unack": 0, "rtn_unack": 1, "acked": 2, "normal": 3}


def sort_key(sort: str) -> Any:
    if sort == "time":
        return lambda a: (-(a.since_ms or a.ts_ms), a.priority, a.id)
    if sort in ("equipment", "area", "service"):
        return lambda a: (getattr(a, sort), a.priority, -(a.since_ms or a.ts_ms), a.id)
    if sort == "state":
        return lambda a: (_STATE_ORDER.get(a.state, 9), a.priority, -(a.since_ms or a.ts_ms), a.id)
    # priority (default): worst first, unacked before acked, newest first
    return lambda a: (a.priority, _STATE_ORDER.get(a.state, 9), -(a.since_ms or a.ts_ms), a.id)


@dataclass(slots=True)
class Group:
    key: str
    alarms: list[Alarm]

    @property
    def worst(self) -> int:
        return min((a.priority for a in self.alarms), default=DIAGNOSTIC)

    @property
    def unacked(self) -> int:
        return sum(1 for a in self.alarms if a.unacked)


def select(store: AlarmStore, flt: AlarmFilter, sort: str = "priority", descending: bool = False) -> list[Alarm]:
    items = [a for a in store.in_area() if flt.accepts(a)]
    items.sort(key=sort_key(sort), reverse=descending)
    return items


def grouped(alarms: list[Alarm], by: str) -> list[Group]:
    """Groups in the order of their worst priority (priority 1 stays on top during a flood), then size."""
    if by == "none":
        return [Group("", alarms)]
    groups: dict[str, list[Alarm]] = {}
    for a in alarms:
        k = f"P{a.priority}" if by == "priority" else str(getattr(a, by, "")) or _("(none)")
        groups.setdefault(k, []).append(a)
    out = [Group(k, v) for k, v in groups.items()]
    out.sort(key=lambda g: (g.worst, -len(g.alarms), g.key))
    return out


def age_text(ms: int, now_ms: int) -> str:
    """How long ago ``ms`` was, the way the room says it (:func:`scada.format.duration`: "12 min", "2 h 05")."""
    if not ms:
        return ""
    return duration(max(0, (now_ms - ms) // 1000))
