"""``crews.yaml``: the maintenance crews, their service, vehicles, shifts and accounts, and each service's SLA.

::

    auto_close_after: 24h          # resolved orders close by themselves after this long without recurrence
    photo_retention: 365d          # an order's photos are deleted this long after it was closed or cancelled
    services:                      # ServiceEntry per maintenance service (names from alarms.yaml's services)
      lighting:
        templates: [lighting_cabinet]          # the equipment it maintains (a hand-made order's service)
        sla: {1: 4h, 2: 8h, 3: 1d, 4: 3d}      # due time per priority, from the order's creation
    crews:                         # CrewEntry
      - id: lighting-north
        service: lighting
        vehicles: [V006, V011]                 # equipment ids of the inventory's vehicles
        accounts: [crew.lighting-north]        # user accounts (role crew) that see this crew's missions
        shifts: [{days: [mon, tue, wed, thu, fri], start: "07:00", end: "15:00"}]   ShiftEntry

Loaded like ``commands.yaml`` (:mod:`failsafe.vocabulary`): ``scada.config.yamlsource`` line marks, strict
pydantic models validated one item at a time by :func:`scada.config.loader.validate_item`, then the cross
references against the city (a vehicle that is not a vehicle of the inventory, a template the city does
not have, a service alarms.yaml does not list, one account in two crews). Every problem is reported in
one run as ``crews.yaml:12: crew 'lighting-north': 'service' must be one of ..., got 'lightning'``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scada.config.loader import Problems, validate_item
from scada.config.model import CityConfig
from scada.config.schema import Duration, Name
from scada.config.units import parse_duration
from scada.config.yamlsource import did_you_mean, line_of, load_yaml, one_of
from scada.errors import ConfigError, ConfigProblem

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PRIORITIES = (1, 2, 3, 4)
DEFAULT_SLA_S = 24 * 3600.0  # a service crews.yaml does not describe (or no crews.yaml at all)
DEFAULT_AUTO_CLOSE_S = 24 * 3600.0
DEFAULT_PHOTO_RETENTION_S = 365 * 86400.0  # a year: long enough for a claim about the repair


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _clock(value: str) -> str:
    try:
        dt.time.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a time of day like 07:00") from None
    return value


class ShiftEntry(_Strict):
    days: Annotated[list[Day], Field(min_length=1)]
    start: str
    end: str  # before start: the shift runs past midnight

    _check = field_validator("start", "end")(_clock)


class CrewEntry(_Strict):
    id: Name
    service: Name
    vehicles: list[Name] = []
    accounts: list[Name] = []
    shifts: list[Any] = []  # ShiftEntry each, validated on its own (its own line)
    description: str = ""


class ServiceEntry(_Strict):
    templates: list[Name] = []
    sla: dict[Any, Any] = {}  # priority (1..4) → duration, checked item by item


class CrewsFile(_Strict):
    auto_close_after: Duration = DEFAULT_AUTO_CLOSE_S
    photo_retention: Duration = DEFAULT_PHOTO_RETENTION_S
    services: dict[str, Any] = {}
    crews: list[Any] = []


@dataclass(frozen=True, slots=True)
class Shift:
    days: frozenset[str]
    start: dt.time
    end: dt.time

    def covers(self, when: dt.datetime) -> bool:
        """``when`` (local time of the city) falls in this shift."""
        t = when.time()
        day = DAYS[when.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= t < self.end
        yesterday = DAYS[(when.weekday() - 1) % 7]  # past midnight: the shift began the day before
        return (day in self.days and t >= self.start) or (yesterday in self.days and t < self.end)


@dataclass(frozen=True, slots=True)
class Crew:
    id: str
    service: str
    vehicles: tuple[str, ...]
    accounts: tuple[str, ...]
    shifts: tuple[Shift, ...]
    description: str = ""

    def on_shift(self, when: dt.datetime) -> bool:
        """On duty at ``when`` (city local time); a crew without shifts is always on duty."""
        return not self.shifts or any(s.covers(when) for s in self.shifts)


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    name: str
    templates: tuple[str, ...]
    sla_s: Mapping[int, float]  # priority → seconds

    def due_s(self, priority: int) -> float:
        return self.sla_s.get(priority, DEFAULT_SLA_S)


@dataclass(frozen=True, slots=True)
class CrewsConfig:
    """``crews.yaml`` resolved: who maintains what, and how fast it is due."""

    services: Mapping[str, ServicePolicy] = field(default_factory=dict)
    crews: Mapping[str, Crew] = field(default_factory=dict)
    auto_close_after_s: float = DEFAULT_AUTO_CLOSE_S
    path: str = ""
    photo_retention_s: float = DEFAULT_PHOTO_RETENTION_S

    def sla_s(self, service: str, priority: int) -> float:
        policy = self.services.get(service)
        return policy.due_s(priority) if policy is not None else DEFAULT_SLA_S

    def service_of(self, template: str) -> str | None:
        """The service that maintains equipment of ``template`` (None when crews.yaml names none)."""
        return next((s.name for s in self.services.values() if template in s.templates), None)

    def crew_of_account(self, user: str) -> Crew | None:
        return next((c for c in self.crews.values() if user in c.accounts), None)


def check_crews(path: Path | str, city: CityConfig | None = None) -> tuple[CrewsConfig | None, list[ConfigProblem]]:
    """Validate ``crews.yaml`` (against ``city`` when given); (config or None, every problem)."""
    path = Path(path)
    file = str(path)
    tree, problems = load_yaml(path)
    if tree is None:
        return None, problems
    out = Problems()
    if not isinstance(tree, dict):
        return None, [ConfigProblem(file, 1, "", f"must be a mapping of sections ({one_of(CrewsFile.model_fields)}), "
                                                 f"got {type(tree).__name__}")]
    top = validate_item(CrewsFile, tree, file, tree, (), "", out)
    known_services = list(city.services) if city is not None else None
    templates = sorted({e.template for e in city.equipment.values()}) if city is not None else None
    vehicles = sorted(e.id for e in city.equipment.values() if e.template == "vehicle") if city is not None else None

    services: dict[str, ServicePolicy] = {}
    raw_services: dict[Any, Any] = tree["services"] if isinstance(tree.get("services"), dict) else {}
    for name, raw in raw_services.items():
        who = f"service {name!r}"
        loc: tuple[Any, ...] = ("services", name)
        if known_services is not None and name not in known_services:
            out.add(file, line_of(tree, loc), who, f"not a service of alarms.yaml ({one_of(known_services)}), got "
                                                   f"{name!r}{did_you_mean(str(name), known_services)}")
        policy = validate_item(ServiceEntry, raw, file, tree, loc, who, out)
        if policy is None:
            continue
        for t in policy.templates:
            if templates is not None and t not in templates:
                out.add(file, line_of(tree, (*loc, "templates")), who,
                        f"'templates' must name templates of the city ({one_of(templates)}), got {t!r}"
                        f"{did_you_mean(t, templates)}")
        sla: dict[int, float] = {}
        for p, d in policy.sla.items():
            where = line_of(tree, (*loc, "sla", p))
            if isinstance(p, bool) or p not in PRIORITIES:
                out.add(file, where, who, f"'sla' keys must be priorities 1, 2, 3 or 4, got {p!r}")
                continue
            try:
                sla[int(p)] = parse_duration(d)
            except ValueError as exc:
                out.add(file, where, who, f"'sla.{p}' {exc}, got {d!r}")
        services[str(name)] = ServicePolicy(str(name), tuple(policy.templates), sla)

    crews: dict[str, Crew] = {}
    owner: dict[str, str] = {}
    raw_crews: list[Any] = tree["crews"] if isinstance(tree.get("crews"), list) else []
    for k, raw in enumerate(raw_crews):
        cid = raw.get("id") if isinstance(raw, dict) else None
        who = f"crew {cid!r}" if cid else f"crew #{k + 1}"
        loc = ("crews", k)
        entry = validate_item(CrewEntry, raw, file, tree, loc, who, out)
        if entry is None:
            continue
        if entry.id in crews:
            out.add(file, line_of(tree, (*loc, "id")), who, f"duplicate crew id {entry.id!r}")
        if entry.service not in services:
            choices = sorted(services)
            out.add(file, line_of(tree, (*loc, "service")), who,
                    f"'service' must be one of the services above ({one_of(choices)}), got {entry.service!r}"
                    f"{did_you_mean(entry.service, choices)}")
        for j, v in enumerate(entry.vehicles):
            if vehicles is not None and v not in vehicles:
                out.add(file, line_of(tree, (*loc, "vehicles", j)), who,
                        f"'vehicles' must name vehicles of the inventory, got {v!r}{did_you_mean(v, vehicles)}")
            elif v in owner:
                out.add(file, line_of(tree, (*loc, "vehicles", j)), who,
                        f"vehicle {v!r} already belongs to crew {owner[v]!r}")
            owner[v] = entry.id
        for j, a in enumerate(entry.accounts):
            key = f"account:{a}"
            if key in owner:
                out.add(file, line_of(tree, (*loc, "accounts", j)), who,
                        f"account {a!r} already belongs to crew {owner[key]!r}")
            owner[key] = entry.id
        shifts: list[Shift] = []
        for j, rs in enumerate(entry.shifts):
            s = validate_item(ShiftEntry, rs, file, tree, (*loc, "shifts", j), who, out)
            if s is not None:
                shifts.append(Shift(frozenset(s.days), dt.time.fromisoformat(s.start), dt.time.fromisoformat(s.end)))
        crews[entry.id] = Crew(entry.id, entry.service, tuple(entry.vehicles), tuple(entry.accounts), tuple(shifts),
                               entry.description)
    if out.items or top is None:
        return None, out.items
    return CrewsConfig(services, crews, top.auto_close_after, file, top.photo_retention), []


def load_crews(path: Path | str, city: CityConfig | None = None) -> CrewsConfig:
    """Like :func:`check_crews` but raises :class:`ConfigError` listing every problem."""
    config, problems = check_crews(path, city)
    if config is None:
        raise ConfigError(problems)
    return config
