"""Scenarios: a YAML timeline of fault injections that testers replay on the simulator.

::

    name: fire_in_building
    description: fire in a school, the panel faults, a door is forced during the evacuation
    start: "2026-02-10T10:15:00"        # optional: simulation start (Europe/Paris if no offset)
    speed: 10                           # optional: suggested clock speed (``--speed`` wins)
    actions:
      - at: 30s                         # offset from the scenario's start (10, 500ms, 5min, 2h)
        do: inject                      # inject | clear | comm_fault | clear_comm
        fault: fire_alarm               # inject/clear: the model's fault name (clear: omit = all)
        equipment: B003                 # an id or a list of ids ...
        params: {zone: 2}
      - at: 2min
        do: comm_fault
        kind: drop                      # comm_fault: drop | delay (params.delay_s) | corrupt | disconnect
        select: {template: lighting_cabinet, commune: Chenôve, fraction: 0.5}   # ... or a selection

``select`` keys: ``template``, ``kind``, ``domain``, ``commune`` (name or slug; each may be a list),
``ids`` (glob, e.g. ``"C00*"``) narrow the city; then ``count: N`` or ``fraction: 0.8`` picks a
subset, deterministically for the simulator's seed; ``near: B003`` (with ``count``, default 1)
picks the equipment closest to B003 instead ("send the nearest team"). In ``params``, ``to: <id>``
is replaced by that equipment's ``lat``/``lon`` (a vehicle ``dispatch`` to a building). Every problem is reported as
``file:line: who: what, got what`` (like tags.yaml), all of them in one run; with a config the
equipment ids, selections and fault names are checked too.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from scada.config import CityConfig, EquipmentDef
from scada.config.units import parse_duration, slug
from scada.config.yamlsource import did_you_mean, line_of, load_yaml
from scada.errors import ConfigError, ConfigProblem
from sim.fleet import distance_km
from sim.runner import model_class

TZ = ZoneInfo("Europe/Paris")
DO = ("inject", "clear", "comm_fault", "clear_comm")
COMM_KINDS = ("drop", "delay", "corrupt", "disconnect")
SCENARIO_DIR = Path(__file__).parent / "scenarios"

Duration = Annotated[float, BeforeValidator(parse_duration)]
StrOrList = str | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelectSpec(_Strict):
    template: StrOrList | None = None
    kind: StrOrList | None = None
    domain: StrOrList | None = None
    commune: StrOrList | None = None
    ids: str | None = None
    near: str | None = None
    count: Annotated[int, Field(ge=1)] | None = None
    fraction: Annotated[float, Field(gt=0, le=1)] | None = None

    @model_validator(mode="after")
    def _one_pick(self) -> SelectSpec:
        if self.count is not None and self.fraction is not None:
            raise ValueError("give 'count' or 'fraction', not both")
        if self.near is not None and self.fraction is not None:
            raise ValueError("'near' picks the closest 'count' equipment, not a 'fraction'")
        return self


class ActionSpec(_Strict):
    at: Duration
    do: Literal["inject", "clear", "comm_fault", "clear_comm"]
    fault: str | None = None
    kind: Literal["drop", "delay", "corrupt", "disconnect"] | None = None
    equipment: StrOrList | None = None
    select: SelectSpec | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ScenarioSpec(_Strict):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    start: str | None = None
    speed: Annotated[float, Field(gt=0)] | None = None
    actions: list[Any]


@dataclass(frozen=True)
class Action:
    """One resolved action: what to do to which equipment, ``at_s`` after the scenario's start."""

    at_s: float
    do: str
    fault: str | None
    kind: str | None
    equipment: tuple[str, ...]
    params: dict[str, Any]
    source: str  # file:line


@dataclass
class Scenario:
    name: str
    description: str
    start: float | None  # epoch seconds
    speed: float | None
    actions: list[tuple[ActionSpec, str]]  # (spec, "file:line")
    file: str

    def resolve(self, config: CityConfig, seed: int, simulated: set[str] | None = None) -> list[Action]:
        """The actions with their equipment lists (selections picked with ``seed``), in time order."""
        out = []
        for i, (spec, source) in enumerate(self.actions):
            ids = _targets(spec, config, seed, f"{self.name}:{i}")
            if simulated is not None:
                ids = [e for e in ids if e in simulated]
            params = dict(spec.params)
            if isinstance(params.get("to"), str) and params["to"] in config.equipment:  # dispatch to B003
                target = config.equipment[params.pop("to")]
                params.update(lat=target.lat, lon=target.lon)
            out.append(Action(spec.at, spec.do, spec.fault, spec.kind, tuple(ids), params, source))
        return sorted(out, key=lambda a: a.at_s)

    @property
    def duration_s(self) -> float:
        return max((s.at for s, _ in self.actions), default=0.0)


def _as_list(v: StrOrList | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


def _matches(eq: EquipmentDef, sel: SelectSpec) -> bool:
    for attr in ("template", "kind", "domain"):
        wanted = _as_list(getattr(sel, attr))
        if wanted is not None and getattr(eq, attr) not in wanted:
            return False
    communes = _as_list(sel.commune)
    if communes is not None and eq.commune not in communes and slug(eq.commune) not in {slug(c) for c in communes}:
        return False
    return sel.ids is None or fnmatch.fnmatchcase(eq.id, sel.ids)


def _targets(spec: ActionSpec, config: CityConfig, seed: int, salt: str) -> list[str]:
    if spec.equipment is not None:
        return _as_list(spec.equipment) or []
    sel = spec.select
    if sel is None:
        return []
    ids = sorted(e.id for e in config.equipment.values() if _matches(e, sel))
    if sel.near is not None and sel.near in config.equipment:
        ref = config.equipment[sel.near]
        ids.sort(key=lambda i: (distance_km(ref.lat, ref.lon, config.equipment[i].lat, config.equipment[i].lon), i))
        return sorted(ids[: sel.count or 1])
    n = len(ids)
    if sel.count is not None:
        n = min(sel.count, len(ids))
    elif sel.fraction is not None:
        n = max(1, round(sel.fraction * len(ids))) if ids else 0
    if n < len(ids):
        ids = sorted(random.Random(f"{seed}:{salt}").sample(ids, n))
    return ids


def parse_start(text: str) -> float:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=TZ)
    return when.timestamp()


def _message(err: Any) -> str:
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    field = ".".join(loc) or "value"
    kind = err["type"]
    got = err.get("input")
    if kind == "missing":
        return f"'{field}' is required"
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1]}'"
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        choices = [c.strip() for c in expected.replace(" or ", ", ").split(",")]
        return f"'{field}' must be one of {', '.join(choices)}, got {got!r}{did_you_mean(str(got), choices)}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"'{field}' {msg[:1].lower() + msg[1:]}, got {got!r}"


def _fault_names(config: CityConfig, eq_ids: list[str]) -> dict[str, tuple[str, ...]]:
    """template → FAULTS of its model class (for the templates whose class declares them)."""
    out: dict[str, tuple[str, ...]] = {}
    for template in {config.equipment[e].template for e in eq_ids if e in config.equipment}:
        cls = model_class(template)
        faults = getattr(cls, "FAULTS", None) if cls is not None else None
        if faults:
            out[template] = tuple(faults)
    return out


def check_scenario(path: Path | str, config: CityConfig | None = None) -> tuple[Scenario | None, list[ConfigProblem]]:
    """Parse and validate a scenario file; return (scenario or None, every problem found)."""
    path = Path(path)
    file = str(path)
    problems: list[ConfigProblem] = []
    tree, yaml_problems = load_yaml(path)
    if tree is None:
        return None, yaml_problems

    def bad(loc: tuple[Any, ...], who: str, what: str) -> None:
        problems.append(ConfigProblem(file, line_of(tree, loc), who, what))

    if not isinstance(tree, dict):
        kind = "a list" if isinstance(tree, list) else type(tree).__name__
        bad((), "scenario", f"must be a mapping with name and actions, got {kind}")
        return None, problems
    try:
        top = ScenarioSpec.model_validate(dict(tree))
    except ValidationError as exc:
        for err in exc.errors():
            bad(tuple(err["loc"]), "scenario", _message(err))
        return None, sorted(problems)
    start = None
    if top.start is not None:
        try:
            start = parse_start(str(top.start))
        except ValueError:
            bad(("start",), "scenario", f"'start' must be an ISO 8601 date-time like 2026-01-15T22:30:00, "
                                        f"got {top.start!r}")
    actions: list[tuple[ActionSpec, str]] = []
    for i, raw in enumerate(top.actions):
        loc: tuple[Any, ...] = ("actions", i)
        who = f"action {i + 1}"
        if not isinstance(raw, dict):
            bad(loc, who, f"must be a mapping (at, do, ...), got {type(raw).__name__}")
            continue
        try:
            spec = ActionSpec.model_validate(dict(raw))
        except ValidationError as exc:
            for err in exc.errors():
                bad((*loc, *err["loc"]), who, _message(err))
            continue
        ok = True

        def act_bad(field: str, what: str, _loc: tuple[Any, ...] = loc, _who: str = who) -> None:
            nonlocal ok
            ok = False
            bad((*_loc, field), _who, what)

        if (spec.equipment is None) == (spec.select is None):
            act_bad("do", "give exactly one of 'equipment' (ids) or 'select' (a selection)")
        if spec.do == "inject" and not spec.fault:
            act_bad("do", "'inject' needs 'fault' (the model's fault name)")
        if spec.do == "comm_fault" and spec.kind is None:
            act_bad("do", f"'comm_fault' needs 'kind', one of {', '.join(COMM_KINDS)}")
        if spec.do in ("comm_fault", "clear_comm") and spec.fault is not None:
            act_bad("fault", f"'fault' applies to inject/clear, got it on '{spec.do}' (use 'kind')")
        if spec.do in ("inject", "clear", "clear_comm") and spec.kind is not None:
            act_bad("kind", f"'kind' applies to comm_fault, got it on '{spec.do}'")
        if spec.kind == "delay" and "delay_s" not in spec.params:
            act_bad("kind", "a 'delay' comm fault needs params.delay_s")
        if ok and config is not None:
            _check_against_config(spec, config, act_bad)
        if ok:
            actions.append((spec, f"{file}:{line_of(tree, loc)}"))
    if problems:
        return None, sorted(problems)
    return Scenario(top.name, top.description, start, top.speed, actions, file), []


def _check_against_config(spec: ActionSpec, config: CityConfig, bad: Any) -> None:
    if spec.equipment is not None:
        ids = _as_list(spec.equipment) or []
        unknown = [e for e in ids if e not in config.equipment]
        for e in unknown:
            bad("equipment", f"unknown equipment {e!r}{did_you_mean(e, config.equipment)}")
        ids = [e for e in ids if e in config.equipment]
    else:
        assert spec.select is not None
        sel = spec.select
        for attr, choices in (("template", {e.template for e in config.equipment.values()}),
                              ("kind", {e.kind for e in config.equipment.values()}),
                              ("domain", {e.domain for e in config.equipment.values()})):
            for v in _as_list(getattr(sel, attr)) or []:
                if v not in choices:
                    bad("select", f"'{attr}' {v!r} matches no equipment{did_you_mean(v, choices)}")
        if sel.near is not None and sel.near not in config.equipment:
            bad("select", f"'near' must be an equipment id, got {sel.near!r}{did_you_mean(sel.near, config.equipment)}")
        communes = {e.commune for e in config.equipment.values()}
        for c in _as_list(sel.commune) or []:
            if c not in communes and slug(c) not in {slug(x) for x in communes}:
                bad("select", f"'commune' {c!r} has no equipment{did_you_mean(c, communes)}")
        ids = [e.id for e in config.equipment.values() if _matches(e, sel)]
        if not ids:
            bad("select", "the selection matches no equipment")
    to = spec.params.get("to")
    if isinstance(to, str) and to not in config.equipment:
        bad("params", f"'to' must be an equipment id, got {to!r}{did_you_mean(to, config.equipment)}")
    if spec.fault and spec.do in ("inject", "clear"):
        for template, faults in _fault_names(config, ids).items():
            if spec.fault not in faults:
                bad("fault", f"{template} models have no fault {spec.fault!r} (they have {', '.join(faults)})"
                             f"{did_you_mean(spec.fault, faults)}")


def load_scenario(path: Path | str, config: CityConfig | None = None) -> Scenario:
    """Load a scenario; raise :class:`ConfigError` listing every problem. A bare name finds a shipped one."""
    p = Path(path)
    if not p.exists() and p.parent == Path(".") and (SCENARIO_DIR / f"{p.stem}.yaml").exists():
        p = SCENARIO_DIR / f"{p.stem}.yaml"
    scenario, problems = check_scenario(p, config)
    if problems or scenario is None:
        raise ConfigError(problems)
    return scenario


def shipped() -> list[Path]:
    """The scenarios shipped in sim/scenarios/."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))


__all__ = ["COMM_KINDS", "DO", "Action", "Scenario", "check_scenario", "load_scenario", "parse_start", "shipped"]
