"""Live tag values, the equipment registry and the session, as the server reports them.

    WebSocket rows  [name, value, quality, source_ms]  ──apply_rows──►  LiveTags.values[name]
    snapshot (per channel)                             ──apply_rows──►  (same: rows overwrite)
    connection lost                                     ──stale=True──►  every view shows "stale"

A value is *trustworthy* only when its quality is ``good`` and the console is connected
(:meth:`LiveTags.trusted`); views draw anything else as "unknown" (never the last value as if it
were current).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hmi.models.journal import word as role_word  # a role in words: the one table of the server's codes
from scada.config.units import slug as _slug  # the server's own rule: one implementation
from scada.i18n import N_, _

Row = Sequence[Any]  # [name, value, quality, source_ms]


@dataclass(slots=True)
class TagValue:
    value: Any
    quality: str
    ts_ms: int

    @property
    def good(self) -> bool:
        return self.quality == "good"


class LiveTags:
    """name → latest row; ``stale`` while the console is disconnected.

    The rows themselves are kept (``[name, value, quality, source_ms]`` as received): a storm of
    34,000 rows is stored without allocating anything; :meth:`get` builds a :class:`TagValue`.
    """

    def __init__(self) -> None:
        self.values: dict[str, Sequence[Any]] = {}
        self.stale = True

    def apply_rows(self, rows: Iterable[Row]) -> set[str]:
        """Apply ``[name, value, quality, source_ms]`` rows; return the names whose value or quality changed."""
        changed: set[str] = set()
        add = changed.add
        values = self.values
        get = values.get
        for row in rows:
            name = row[0]
            old = get(name)
            if old is None or old[1] != row[1] or old[2] != row[2]:
                add(name)
            values[name] = row
        return changed

    def get(self, name: str) -> TagValue | None:
        r = self.values.get(name)
        return None if r is None else TagValue(r[1], str(r[2]), int(r[3] or 0))

    def value(self, name: str, default: Any = None) -> Any:
        r = self.values.get(name)
        return default if r is None else r[1]

    def trusted(self, name: str) -> bool:
        """True when the value is current: good quality and the console connected."""
        r = self.values.get(name)
        return r is not None and r[2] == "good" and not self.stale

    def matching(self, pattern: str) -> list[str]:
        rx = re.compile(fnmatch.translate(pattern))
        return sorted(n for n in self.values if rx.match(n))


@dataclass(frozen=True, slots=True)
class EquipmentInfo:
    id: str
    template: str
    kind: str
    domain: str
    commune: str
    lat: float
    lon: float
    device: str = ""
    lamps: tuple[tuple[float, float], ...] = ()  # a cabinet's luminaires (lat, lon), lamp_01 first
    name: str = ""  # the inventory's name and address (identity): "Carrefour rue des Écoles / rue des Vignes"
    address: str = ""

    @property
    def prefix_glob(self) -> str:
        """Glob of this equipment's tag names (``*/<kind>/<id>``): the commune slug is not needed."""
        return f"*/{self.kind}/{self.id}"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EquipmentInfo:
        return cls(str(d["id"]), str(d.get("template", "")), str(d.get("kind", d.get("template", ""))),
                   str(d.get("domain", "")), str(d.get("commune", "")), float(d.get("lat") or 0.0),
                   float(d.get("lon") or 0.0), str(d.get("device", "")),
                   tuple((float(p[0]), float(p[1])) for p in d.get("lamps") or ()), str(d.get("name") or ""),
                   str(d.get("address") or ""))


class Registry:
    """The city's equipment (from ``GET /api/v1/equipment``) and the tag-name prefix of each."""

    def __init__(self, items: Iterable[EquipmentInfo] = ()) -> None:
        self.items: dict[str, EquipmentInfo] = {e.id: e for e in items}
        self._prefix: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def get(self, eq_id: str) -> EquipmentInfo | None:
        return self.items.get(eq_id)

    def named(self, eq_id: str, address: bool = False) -> str:
        """The id with the equipment's name beside it (and its address with ``address``), as every view shows
        an equipment: ``"J001 — Carrefour rue des Écoles / rue des Vignes"``; the id alone when it has none."""
        e = self.items.get(eq_id)
        if e is None or not (e.name or (address and e.address)):
            return eq_id
        parts = [p for p in (e.name, e.address if address else "") if p]
        return f"{eq_id} — {', '.join(parts)}"

    def of_template(self, template: str, commune: str | None = None) -> list[EquipmentInfo]:
        return [e for e in self.items.values()
                if e.template == template and (commune is None or e.commune == commune)]

    def communes(self) -> list[str]:
        return sorted({e.commune for e in self.items.values()})

    def learn_prefix(self, tag_name: str) -> None:
        """Remember ``<commune slug>/<kind>/<id>`` from a full tag name (the slug rule is the server's)."""
        parts = tag_name.split("/", 3)
        if len(parts) >= 4 and parts[2] in self.items and parts[2] not in self._prefix:
            self._prefix[parts[2]] = "/".join(parts[:3])

    def tag(self, eq_id: str, tag: str) -> str:
        """Full tag name of ``tag`` of equipment ``eq_id`` (learnt from the server's rows; slug guessed before)."""
        prefix = self._prefix.get(eq_id)
        if prefix is None:
            e = self.items.get(eq_id)
            prefix = f"{slug(e.commune)}/{e.kind}/{e.id}" if e is not None else f"?/{eq_id}"
        return f"{prefix}/{tag}"


@functools.cache
def slug(text: str) -> str:
    """The server's commune slug (scada.config.units.slug): lower case ASCII, '-' between words."""
    return _slug(text)


@dataclass(slots=True)
class Session:
    """Who is logged in and what they may do (``GET /api/v1/auth/me``)."""

    user: str = ""
    role: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)
    expires_ms: int = 0

    @property
    def logged_in(self) -> bool:
        return bool(self.user)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def why_not(self, permission: str, what: str = "") -> str:
        """Empty when allowed, else the tooltip that explains why the action is disabled."""
        if not self.logged_in:
            return _("log in to {what}").format(what=what or permission)
        if permission in self.permissions:
            return ""
        holders = PERMISSION_HOLDERS.get(permission, "")
        return (_("your role '{role}' may not {what}").format(role=role_word(self.role), what=what or permission)
                + (" " + _("(needs {roles})").format(roles=_(holders)) if holders else ""))


#: for tooltips only; the server decides (scada.users.PERMISSIONS); English msgids shown through _()
PERMISSION_HOLDERS = {
    "alarm.ack": N_("operator, supervisor, maintenance or administrator"),
    "alarm.shelve": N_("operator, supervisor or administrator"),
    "alarm.suppress": N_("supervisor or administrator"),
    "alarm.out_of_service": N_("maintenance, supervisor or administrator"),
    "alarm.reset": N_("maintenance, supervisor or administrator"),
    "command.operate": N_("operator, supervisor or administrator"),
    "command.approve": N_("supervisor or administrator"),
    "crisis": N_("supervisor or administrator"),
    "audit.read": N_("supervisor or administrator"),
}
