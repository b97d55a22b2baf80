"""The command vocabulary: ``commands.yaml`` loaded, checked against the city, and resolved into writes.

One :class:`TypePolicy` per equipment template (junction, lighting_cabinet, bollard, panel) holds the
verbs an operator may use on that type and the limits that apply to them::

    commands.yaml ──load_yaml (line marks)──► schema, item by item ──► cross references ──► Vocabulary
                                              (failsafe.schema,        (the city: templates,   │
                                               validate_item)           tags, equipment)        │
                                                                                                 ▼
                                                   ├─ types["junction"] : TypePolicy
                                                   │    ├─ critical, select/confirm timeouts, lease caps,
                                                   │    │  heartbeat, blast radius, roles, constants
                                                   │    ├─ interlocks: refuse_if / require (declarative)
                                                   │    └─ verbs["flash"] : VerbSpec
                                                   │         writes ─► [(unit_backup_time, 30),
                                                   │                    (system_pattern_control, 255)]
                                                   │         refresh / release / confirm
                                                   ├─ junctions : per-junction CompatibilityMatrix
                                                   └─ crisis_plans : CrisisPlanSpec

A verb is never more than a list of writes to tags the configuration declares ``access: rw``; there is
no verb for an individual signal head, channel or phase, and every SNMP write must target an OID on
:data:`SNMP_SET_ALLOW_LIST` (systemPatternControl and unitBackupTime). :func:`enumerate_writes` lists
every (type, verb, phase, tag, address) the system can ever issue, so a test can prove it.

Loading is the city configuration's machinery (:mod:`scada.config.yamlsource` line marks, pydantic
models validated one item at a time by :func:`scada.config.loader.validate_item`): every problem of
the file is reported in one run, as ``commands.yaml:42: verb 'junction.flash': what, got what`` with a
"did you mean" on unknown names, and nothing is built unless there is none. One bad item hides nothing
else: the items under it are still checked, and what refers to it (an interlock naming a broken verb)
is not reported a second time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from failsafe.schema import (
    HEARTBEAT_SCOPES,
    JUNCTION_KEYS,
    LEASE_MODES,
    LEASE_S_MAX,
    OPS,
    PARAM_TYPES,
    SAFETY,
    ApprovalEntry,
    BlastRadiusEntry,
    CommandsFile,
    CrisisPlanEntry,
    CrisisStepEntry,
    HeartbeatEntry,
    InterlockEntry,
    JunctionsEntry,
    LeaseEntry,
    MatrixEntry,
    ParamCondition,
    ParamEntry,
    RateLimitsEntry,
    RequireEntry,
    TagCondition,
    ThresholdEntry,
    TypeEntry,
    VerbEntry,
    WriteEntry,
)
from scada.config.loader import Problems, validate_item
from scada.config.model import CityConfig, EquipmentDef
from scada.config.yamlsource import did_you_mean, line_of, load_yaml, one_of
from scada.errors import ConfigError, ConfigProblem
from scada.quality import Value

#: NTCIP 1202 objects the system may SET, and nothing else (standards.md AC-TS-01, docs/contracts.md).
SNMP_SET_ALLOW_LIST: dict[str, str] = {
    "1.3.6.1.4.1.1206.4.2.1.4.14.0": "systemPatternControl",
    "1.3.6.1.4.1.1206.4.2.1.3.3.0": "unitBackupTime",
}

#: Verb names that would address an individual signal head / channel / phase are refused outright.
FORBIDDEN_VERB = re.compile(r"(?:^|_)(phase|channel|head|signal_?group|aspect|load_?switch|lamp|green|red|amber|"
                            r"yellow|force|omit|hold)s?(?:_|$)", re.IGNORECASE)

_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")

__all__ = [
    "FORBIDDEN_VERB", "HEARTBEAT_SCOPES", "LEASE_MODES", "LEASE_S_MAX", "OPS", "PARAM_TYPES", "SAFETY",
    "SNMP_SET_ALLOW_LIST", "BlastRadius", "CompatibilityMatrix", "Condition", "CrisisPlanSpec", "CrisisStep",
    "Heartbeat", "InterlockSpec", "ParamSpec", "PossibleWrite", "Threshold", "TypePolicy", "VerbSpec",
    "Vocabulary", "WriteSpec", "check_vocabulary", "compare", "enumerate_writes", "load_vocabulary",
    "resolve_value",
]


# ---------------------------------------------------------------------------------------------- model
@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # int | float | str | bool
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    choices: tuple[Value, ...] | None = None

    def check(self, value: Any) -> tuple[Value, str | None]:
        """(coerced value, None) or (value, why it is refused)."""
        if value is None:
            return None, f"parameter '{self.name}' is required"
        if self.type in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return value, f"parameter '{self.name}' must be a number, got {value!r}"
            if isinstance(value, float) and not math.isfinite(value):
                return value, f"parameter '{self.name}' must be finite, got {value!r}"
            if self.type == "int":
                if isinstance(value, float) and not value.is_integer():
                    return value, f"parameter '{self.name}' must be a whole number, got {value!r}"
                value = int(value)
            else:
                value = float(value)
            if self.min is not None and value < self.min:
                return value, f"parameter '{self.name}' must be ≥ {self.min:g}, got {value!r}"
            if self.max is not None and value > self.max:
                return value, f"parameter '{self.name}' must be ≤ {self.max:g}, got {value!r}"
        elif self.type == "str":
            if not isinstance(value, str):
                return value, f"parameter '{self.name}' must be text, got {value!r}"
            if self.max_length is not None and len(value) > self.max_length:
                return value, f"parameter '{self.name}' must be at most {self.max_length} characters, got {len(value)}"
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                return value, f"parameter '{self.name}' must not contain control characters"
        elif self.type == "bool":
            if not isinstance(value, bool):
                return value, f"parameter '{self.name}' must be true or false, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return value, f"parameter '{self.name}' must be one of {one_of(self.choices)}, got {value!r}"
        return value, None


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """One write of a verb: a template tag name and a literal or ``{placeholder}`` value."""

    tag: str
    value: Value
    tolerance: float | None = None  # read-back tolerance (lease seconds count down between write and read)

    def resolve(self, ctx: Mapping[str, Value]) -> Value:
        return resolve_value(self.value, ctx)


@dataclass(frozen=True, slots=True)
class Condition:
    """``{tag: presence, equals: true}``: compares a tag's current value (or a parameter) to an operand."""

    subject: str  # tag name (template tag) or parameter name
    op: str
    operand: Any  # literal, "{placeholder}" or a list for in / not_in
    on_param: bool = False

    def holds(self, actual: Value, ctx: Mapping[str, Value]) -> bool:
        want = self.operand
        if isinstance(want, list):
            want = [resolve_value(w, ctx) for w in want]
        else:
            want = resolve_value(want, ctx)
        return compare(actual, self.op, want)

    def describe(self, ctx: Mapping[str, Value] | None = None) -> str:
        want = self.operand
        if ctx is not None:
            want = [resolve_value(w, ctx) for w in want] if isinstance(want, list) else resolve_value(want, ctx)
        return f"{self.subject} {self.op.replace('_', ' ')} {want!r}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A number, or a lookup of an identity field of the equipment in a table (road class → minimum %)."""

    value: float | None = None
    identity: str | None = None
    table: Mapping[str, float] | None = None
    default: float | None = None

    def for_equipment(self, eq: EquipmentDef) -> float | None:
        if self.value is not None:
            return self.value
        key = str(eq.identity.get(self.identity or "", eq.params.get(self.identity or "", "")))
        if self.table is not None and key in self.table:
            return float(self.table[key])
        return self.default


@dataclass(frozen=True, slots=True)
class InterlockSpec:
    """A declarative interlock. Refuse when ``when`` holds (all) and (``refuse_if`` holds or ``require`` fails)."""

    name: str
    verbs: frozenset[str]
    reason: str
    when: tuple[Condition, ...] = ()
    refuse_if: Condition | None = None
    require_param: str | None = None
    require_at_least: Threshold | None = None

    @property
    def input_tags(self) -> tuple[str, ...]:
        tags = [c.subject for c in self.when if not c.on_param]
        if self.refuse_if is not None and not self.refuse_if.on_param:
            tags.append(self.refuse_if.subject)
        return tuple(dict.fromkeys(tags))


@dataclass(frozen=True, slots=True)
class VerbSpec:
    name: str
    type: str
    params: Mapping[str, ParamSpec]
    writes: tuple[WriteSpec, ...]
    refresh: tuple[WriteSpec, ...] = ()
    release: tuple[WriteSpec, ...] = ()
    confirm: tuple[Condition, ...] = ()
    safety: str = "neutral"
    increasing_when: Condition | None = None  # on a parameter: e.g. level at_least 100
    roles: frozenset[str] = frozenset()
    lease: str = "hold"  # hold: the command is a lease; end: ends the active lease (return to local)
    line: int = 0

    def safety_of(self, params: Mapping[str, Value]) -> str:
        if self.increasing_when is not None:
            actual = params.get(self.increasing_when.subject)
            if actual is not None and self.increasing_when.holds(actual, params):
                return "increasing"
        return self.safety

    @property
    def all_writes(self) -> tuple[tuple[str, WriteSpec], ...]:
        return (tuple(("write", w) for w in self.writes) + tuple(("refresh", w) for w in self.refresh)
                + tuple(("release", w) for w in self.release))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    tag: str
    period_s: float
    scope: str = "leased"  # leased: only equipment holding a lease; all: every equipment of the type


@dataclass(frozen=True, slots=True)
class BlastRadius:
    per_command: int = 1
    per_minute: int = 1
    max_with_approval: int = 1


@dataclass(frozen=True, slots=True)
class TypePolicy:
    name: str  # the equipment template
    verbs: Mapping[str, VerbSpec]
    critical: bool = False
    select_timeout_s: float = 15.0
    confirm_timeout_s: float = 30.0
    lease_default_s: float = 900.0
    lease_max_s: float = 3600.0
    refresh_s: float | None = None
    heartbeat: Heartbeat | None = None
    blast: BlastRadius = field(default_factory=BlastRadius)
    roles: frozenset[str] = frozenset()
    constants: Mapping[str, Value] = field(default_factory=dict)
    interlocks: tuple[InterlockSpec, ...] = ()

    def interlocks_for(self, verb: str) -> tuple[InterlockSpec, ...]:
        return tuple(i for i in self.interlocks if verb in i.verbs)


@dataclass(frozen=True, slots=True)
class CompatibilityMatrix:
    """MMU program card: symmetric; pairs not listed as permissive conflict (default conflicting)."""

    phases: int
    permissive: frozenset[frozenset[int]]

    def compatible(self, a: int, b: int) -> bool:
        return a == b or frozenset((a, b)) in self.permissive

    def conflicts(self, active: int) -> list[tuple[int, int]]:
        """Conflicting pairs among the phases set in bitmap ``active`` (bit 0 = phase 1)."""
        on = [p for p in range(1, max(self.phases, active.bit_length()) + 1) if active >> (p - 1) & 1]
        return [(a, b) for i, a in enumerate(on) for b in on[i + 1:] if not self.compatible(a, b)]


@dataclass(frozen=True, slots=True)
class CrisisStep:
    target: str
    verb: str
    params: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CrisisPlanSpec:
    name: str
    description: str
    steps: tuple[CrisisStep, ...]
    lease_s: float | None = None
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Vocabulary:
    types: Mapping[str, TypePolicy]
    approval_window_s: float = 120.0
    approver_roles: frozenset[str] = frozenset({"supervisor", "administrator"})
    rate_per_user: int = 10
    rate_global: int = 60
    crisis_roles: frozenset[str] = frozenset({"supervisor", "administrator"})
    default_matrix: CompatibilityMatrix = CompatibilityMatrix(8, frozenset())
    matrices: Mapping[str, CompatibilityMatrix] = field(default_factory=dict)
    samples_before_flash: int = 2
    crisis_plans: Mapping[str, CrisisPlanSpec] = field(default_factory=dict)
    source: str = "commands.yaml"
    conflict_colours: tuple[str, ...] = ("green", "yellow")
    layouts: Mapping[str, CompatibilityMatrix] = field(default_factory=dict)

    def matrix_for(self, junction: str) -> CompatibilityMatrix:
        return self.matrices.get(junction, self.default_matrix)

    def verb(self, type_name: str, verb: str) -> VerbSpec | None:
        policy = self.types.get(type_name)
        return None if policy is None else policy.verbs.get(verb)


# ---------------------------------------------------------------------------------------------- values
def resolve_value(value: Any, ctx: Mapping[str, Value]) -> Value:
    """``"{plan}"`` → ctx["plan"] (type kept); anything else is a literal. Raises KeyError if unknown."""
    if isinstance(value, str):
        m = _PLACEHOLDER.match(value)
        if m:
            return ctx[m.group(1)]
    return value  # type: ignore[no-any-return]


def compare(actual: Value, op: str, want: Any) -> bool:
    """``actual <op> want``; a missing (None) value never satisfies anything but not_equals/not_in."""
    if op == "equals":
        return _eq(actual, want)
    if op == "not_equals":
        return not _eq(actual, want)
    if op == "in":
        return any(_eq(actual, w) for w in want)
    if op == "not_in":
        return not any(_eq(actual, w) for w in want)
    if actual is None or isinstance(actual, str) or want is None or isinstance(want, str):
        return False
    a, w = float(actual), float(want)
    return {"above": a > w, "below": a < w, "at_least": a >= w, "at_most": a <= w}[op]


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
        return float(a) == float(b)
    return bool(a == b)


# ---------------------------------------------------------------------------------------------- loading
M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]
Tags = dict[str, dict[str, Any]]


class _Load:
    """One run over commands.yaml: the parsed tree (for line marks), the city, the problems found."""

    def __init__(self, path: Path, tree: Any, city: CityConfig | None) -> None:
        self.file = str(path)
        self.tree = tree
        self.city = city
        self.problems = Problems()

    def add(self, loc: Loc, who: str, what: str) -> None:
        self.problems.add(self.file, line_of(self.tree, loc), who, what)

    def item(self, model: type[M], raw: Any, loc: Loc, who: str) -> M | None:
        return validate_item(model, raw, self.file, self.tree, loc, who, self.problems)

    def count(self) -> int:
        return len(self.problems.items)


@dataclass(frozen=True, slots=True)
class _Template:
    """What the city says about the template a type is named after (nothing is checked without a city)."""

    name: str
    tags: Tags | None = None  # template tag name → its raw spec; None: no city to check against
    protocol: str | None = None
    identity_names: frozenset[str] = frozenset()  # identity fields and params of its equipment

    def tag_what(self) -> str:
        return f"a tag of template '{self.name}'"


# The schema declares nested mappings ``Any`` (each is validated on its own, see failsafe.schema); the
# three helpers below give the loader what it may walk into. A value of the wrong kind or a key that is
# not text was already reported by the schema of the item holding it.
def _body(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, dict) else {}


def _mapping(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return {k: v for k, v in value.items() if isinstance(k, str)} if isinstance(value, dict) else {}


def _items(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    return list(value) if isinstance(value, list) else []


def _template_tags(city: CityConfig | None, template: str) -> Tags | None:
    """Template tag name → raw spec (name, access, address...) or None if unknown / no city."""
    if city is None:
        return None
    spec = city.templates.get(template)
    if spec is None:
        return None
    out: Tags = {}
    for raw in spec.tags:
        if isinstance(raw, Mapping) and "name" in raw:
            out[str(raw["name"])] = dict(raw)
    return out


def _roles_of(body: Mapping[str, Any]) -> frozenset[str] | None:
    """The raw ``roles`` list as given (None when absent or not a list, which the schema reports)."""
    roles = body.get("roles")
    return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else None


def _check_placeholders(ld: _Load, value: Any, loc: Loc, who: str, names_ok: frozenset[str]) -> None:
    for v in value if isinstance(value, list) else [value]:
        if not isinstance(v, str):
            continue
        m = _PLACEHOLDER.match(v)
        if m and m.group(1) not in names_ok:
            ld.add(loc, who, f"a placeholder must name one of {one_of(sorted(names_ok))}, got {v!r}"
                             f"{did_you_mean(m.group(1), names_ok)}")
        elif not m and "{" in v:
            ld.add(loc, who, f"a value is a literal or exactly one '{{name}}' placeholder, got {v!r}")


def _writable(ld: _Load, tag: str, loc: Loc, who: str, tmpl: _Template) -> bool:
    """May ``tag`` be written: a tag of the template, declared ``access: rw``, and (SNMP) allow-listed."""
    if tmpl.tags is None:
        return True
    spec = tmpl.tags.get(tag)
    if spec is None:
        ld.add(loc, who, f"'tag' must be {tmpl.tag_what()}, got {tag!r}{did_you_mean(tag, tmpl.tags)}")
        return False
    access = spec.get("access", "r")
    if access != "rw":
        ld.add(loc, who, f"'tag' must be writable (access rw in tags.yaml), got {tag!r} with access {access!r}")
        return False
    if tmpl.protocol == "snmp" and str(spec.get("address")) not in SNMP_SET_ALLOW_LIST:
        ld.add(loc, who, f"SNMP SETs are limited to {one_of(SNMP_SET_ALLOW_LIST.values())}, got {tag!r} "
                         f"({spec.get('address')})")
        return False
    return True


def _writes(ld: _Load, body: Mapping[str, Any], key: str, loc: Loc, who: str, tmpl: _Template,
            names_ok: frozenset[str]) -> tuple[WriteSpec, ...]:
    result: list[WriteSpec] = []
    for i, raw in enumerate(_items(body, key)):
        iloc = (*loc, key, i)
        w = ld.item(WriteEntry, raw, iloc, who)
        if w is None:
            continue
        _check_placeholders(ld, w.value, (*iloc, "value"), who, names_ok)
        if _writable(ld, w.tag, (*iloc, "tag"), who, tmpl):
            result.append(WriteSpec(w.tag, w.value, w.tolerance))
    return tuple(result)


def _condition(ld: _Load, model: type[TagCondition] | type[ParamCondition], raw: Any, loc: Loc, who: str,
               subjects: Mapping[str, Any] | frozenset[str] | None, subject_what: str,
               names_ok: frozenset[str]) -> Condition | None:
    """A tag (or parameter) condition; ``subjects`` are the names it may test (None: not checked)."""
    c = ld.item(model, raw, loc, who)
    if c is None:
        return None
    ops = c.comparisons()
    if len(ops) != 1:
        ld.add(loc, who, f"a condition needs exactly one of {one_of(OPS)}, got {one_of(op for op, _ in ops) or 'none'}")
        return None
    op, operand = ops[0]
    key, subject = ("tag", c.tag) if isinstance(c, TagCondition) else ("param", c.param)
    if operand is None and op not in ("equals", "not_equals"):
        ld.add((*loc, op), who, f"'{op}' needs {'a list' if op in ('in', 'not_in') else 'a number'}, got None")
        return None
    _check_placeholders(ld, operand, (*loc, op), who, names_ok)
    if subjects is not None and subject not in subjects:
        ld.add((*loc, key), who, f"'{key}' must be {subject_what}, got {subject!r}{did_you_mean(subject, subjects)}")
        return None
    return Condition(subject, op, list(operand) if isinstance(operand, list) else operand, on_param=key == "param")


def _params(ld: _Load, body: Mapping[str, Any], loc: Loc, who: str) -> dict[str, ParamSpec]:
    params: dict[str, ParamSpec] = {}
    for name, raw in _mapping(body, "params").items():
        ploc, pwho = (*loc, "params", name), f"{who} parameter '{name}'"
        p = ld.item(ParamEntry, raw, ploc, pwho)
        if p is None:
            continue
        if p.min is not None and p.max is not None and p.min > p.max:
            ld.add((*ploc, "min"), pwho, f"'min' must not exceed 'max' ({p.max:g}), got {p.min:g}")
        params[name] = ParamSpec(name, p.type, p.min, p.max, p.max_length,
                                 None if p.choices is None else tuple(p.choices))
    return params


def _verb(ld: _Load, tmpl: _Template, name: str, raw: Any, constants: frozenset[str],
          type_roles: frozenset[str] | None) -> VerbSpec | None:
    loc: Loc = ("types", tmpl.name, "verbs", name)
    who = f"verb '{tmpl.name}.{name}'"
    if FORBIDDEN_VERB.search(name):
        ld.add(loc, who, "no verb may address an individual signal head, channel, phase or colour "
                         "(the field controller keeps that authority), got verb name " + repr(name))
        return None
    before = ld.count()
    entry = ld.item(VerbEntry, raw, loc, who)
    body = _body(raw)
    params = _params(ld, body, loc, who)
    param_names = frozenset(_mapping(body, "params"))
    names_ok = param_names | constants | tmpl.identity_names | {"lease_s"}
    writes, refresh, release = (_writes(ld, body, key, loc, who, tmpl, names_ok)
                                for key in ("writes", "refresh", "release"))
    confirm: list[Condition] = []
    for i, raw_cond in enumerate(_items(body, "confirm")):
        cond = _condition(ld, TagCondition, raw_cond, (*loc, "confirm", i), who, tmpl.tags, tmpl.tag_what(), names_ok)
        if cond is not None:
            confirm.append(cond)
    increasing = None
    if body.get("increasing_when") is not None:
        increasing = _condition(ld, ParamCondition, body["increasing_when"], (*loc, "increasing_when"), who,
                                param_names, "a parameter of the verb", param_names)
    # checked on the raw item, so that a schema problem elsewhere in the verb does not hide them
    if isinstance(raw, dict) and body.get("lease", "hold") == "hold" and not body.get("release"):
        ld.add(loc, who, "a verb that holds a lease needs 'release' writes (what returns the device to local "
                         "control at lease end), got none")
    if (type_roles if body.get("roles") is None else _roles_of(body)) == frozenset():
        ld.add(loc, who, "no role may use this verb: set 'roles' on the verb or its type, got none")
    if entry is None or ld.count() > before:
        return None
    roles = frozenset(entry.roles) if entry.roles is not None else type_roles
    if roles is None:  # the type's roles are broken (and reported there)
        return None
    return VerbSpec(name, tmpl.name, params, writes, refresh, release, tuple(confirm), entry.safety, increasing,
                    roles, entry.lease, line_of(ld.tree, loc))


def _threshold(ld: _Load, tmpl: _Template, raw: Any, loc: Loc, who: str) -> Threshold | None:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw):
        return Threshold(value=float(raw))
    if not isinstance(raw, dict):
        ld.add(loc, who, f"'at_least' must be a number or {{identity: <field>, table: {{...}}}}, got {raw!r}")
        return None
    t = ld.item(ThresholdEntry, raw, loc, who)
    if t is None:
        return None
    if t.default is None and ld.city is not None:
        # every equipment of the type must find its minimum: one problem per missing key, not per equipment
        missing: dict[str | None, list[EquipmentDef]] = {}
        for eq in ld.city.equipment.values():
            key = eq.identity.get(t.identity, eq.params.get(t.identity))
            if eq.template == tmpl.name and (key is None or str(key) not in t.table):
                missing.setdefault(None if key is None else str(key), []).append(eq)
        for key, eqs in missing.items():
            more = f" and {len(eqs) - 1} more" if len(eqs) > 1 else ""
            what = f"no {t.identity}" if key is None else f"{t.identity} {key!r}"
            ld.add((*loc, "table"), who, f"'table' needs an entry for every {t.identity} of the equipment (or a "
                                         f"'default'), got equipment '{eqs[0].id}' ({eqs[0].source}){more} with {what}")
    return Threshold(identity=t.identity, table=dict(t.table), default=t.default)


def _interlock(ld: _Load, tmpl: _Template, i: int, raw: Any, verbs: Mapping[str, VerbSpec],
               declared: frozenset[str]) -> InterlockSpec | None:
    loc: Loc = ("types", tmpl.name, "interlocks", i)
    body = _body(raw)
    name = body["name"] if isinstance(body.get("name"), str) and body["name"] else f"#{i}"
    who = f"interlock '{tmpl.name}.{name}'"
    before = ld.count()
    entry = ld.item(InterlockEntry, raw, loc, who)
    listed = [v for v in _items(body, "verbs") if isinstance(v, str)]
    for j, v in enumerate(_items(body, "verbs")):
        if isinstance(v, str) and v not in declared:
            ld.add((*loc, "verbs", j), who, f"'verbs' must name verbs of type '{tmpl.name}' "
                                            f"({one_of(sorted(declared))}), got {v!r}{did_you_mean(v, declared)}")
    # the inputs may compare to the verbs' parameters; a broken verb's are unknown (and not reported again)
    param_names = frozenset(p for v in listed if v in verbs for p in verbs[v].params)
    checkable = all(v in verbs for v in listed)
    when_raw = body.get("when")
    if isinstance(when_raw, list):
        when_items: list[tuple[Any, Loc]] = [(w, (*loc, "when", j)) for j, w in enumerate(when_raw)]
    elif when_raw is None or isinstance(when_raw, dict):
        when_items = [] if when_raw is None else [(when_raw, (*loc, "when"))]
    else:
        ld.add((*loc, "when"), who, f"'when' must be a condition or a list of conditions, got {when_raw!r}")
        when_items = []
    when: list[Condition] = []
    for w, wloc in when_items:
        cond = _condition(ld, TagCondition, w, wloc, who, tmpl.tags, tmpl.tag_what(), param_names)
        if cond is not None:
            when.append(cond)
    refuse_if = None
    if body.get("refuse_if") is not None:
        refuse_if = _condition(ld, TagCondition, body["refuse_if"], (*loc, "refuse_if"), who, tmpl.tags,
                               tmpl.tag_what(), param_names)
    req_param: str | None = None
    threshold: Threshold | None = None
    if body.get("require") is not None:
        rloc = (*loc, "require")
        req = ld.item(RequireEntry, body["require"], rloc, who)
        if req is not None:
            if checkable and req.param not in param_names:
                ld.add((*rloc, "param"), who, f"'param' must be a parameter of {one_of(listed) or 'its verbs'} "
                                              f"({one_of(sorted(param_names)) or 'none'}), got {req.param!r}"
                                              f"{did_you_mean(req.param, param_names)}")
            req_param = req.param
            threshold = _threshold(ld, tmpl, req.at_least, (*rloc, "at_least"), who)
    if isinstance(raw, dict) and body.get("refuse_if") is None and body.get("require") is None:
        ld.add(loc, who, "an interlock needs 'refuse_if' or 'require', got neither")
    if entry is None or ld.count() > before:
        return None
    return InterlockSpec(name, frozenset(entry.verbs), entry.reason, tuple(when), refuse_if, req_param, threshold)


def _type_policy(ld: _Load, name: str, raw: Any) -> tuple[TypePolicy | None, frozenset[str] | None]:
    """The policy (None if anything in it is wrong) and the names of the verbs it declares, valid or not
    (None when the type names no template of the city): a crisis step naming a broken verb is not
    reported a second time."""
    loc: Loc = ("types", name)
    who = f"type '{name}'"
    tmpl = _Template(name)
    if ld.city is not None:
        spec = ld.city.templates.get(name)
        if spec is None:
            known = one_of(sorted(ld.city.templates))
            ld.add(loc, who, f"'types' must name equipment templates of tags.yaml ({known}), got {name!r}"
                             f"{did_you_mean(name, ld.city.templates)}")
            return None, None
        identity = frozenset(n for eq in ld.city.equipment.values() if eq.template == name
                             for n in (*eq.identity, *eq.params))
        tmpl = _Template(name, _template_tags(ld.city, name), spec.protocol, identity)
    before = ld.count()
    entry = ld.item(TypeEntry, raw, loc, who)
    body = _body(raw)
    lease = ld.item(LeaseEntry, body["lease"], (*loc, "lease"), f"{who} lease") if "lease" in body else None
    if lease is not None and lease.default > lease.max:
        ld.add((*loc, "lease", "default"), f"{who} lease",
               f"'default' must not exceed 'max' ({lease.max:g} s), got {lease.default:g} s")
    heartbeat = None
    if body.get("heartbeat") is not None:
        hwho = f"{who} heartbeat"
        hb = ld.item(HeartbeatEntry, body["heartbeat"], (*loc, "heartbeat"), hwho)
        if hb is not None and _writable(ld, hb.tag, (*loc, "heartbeat", "tag"), hwho, tmpl):
            heartbeat = Heartbeat(hb.tag, hb.period, hb.scope)
    blast = BlastRadiusEntry()
    if body.get("blast_radius") is not None:
        bwho = f"{who} blast radius"
        blast = ld.item(BlastRadiusEntry, body["blast_radius"], (*loc, "blast_radius"), bwho) or blast
        if blast.max_with_approval is not None and blast.max_with_approval < blast.per_command:
            ld.add((*loc, "blast_radius", "max_with_approval"), bwho,
                   f"'max_with_approval' must be at least 'per_command' ({blast.per_command}), "
                   f"got {blast.max_with_approval}")
    raw_verbs = _mapping(body, "verbs")
    if isinstance(body.get("verbs"), dict) and not body["verbs"]:
        ld.add((*loc, "verbs"), who, "a commandable type needs at least one verb, got none")
    constants = frozenset(_mapping(body, "constants"))
    type_roles = frozenset() if "roles" not in body else _roles_of(body)
    verbs: dict[str, VerbSpec] = {}
    for vname, vraw in raw_verbs.items():
        verb = _verb(ld, tmpl, vname, vraw, constants, type_roles)
        if verb is not None:
            verbs[vname] = verb
    declared = frozenset(raw_verbs)
    interlocks: list[InterlockSpec] = []
    for i, iraw in enumerate(_items(body, "interlocks")):
        interlock = _interlock(ld, tmpl, i, iraw, verbs, declared)
        if interlock is not None:
            interlocks.append(interlock)
    if entry is None or lease is None or ld.count() > before:
        return None, declared
    per_minute = blast.per_command if blast.per_minute is None else blast.per_minute
    max_with_approval = blast.per_command if blast.max_with_approval is None else blast.max_with_approval
    radius = BlastRadius(blast.per_command, per_minute, max_with_approval)
    return TypePolicy(name, verbs, entry.critical, entry.select_timeout, entry.confirm_timeout, lease.default,
                      lease.max, lease.refresh, heartbeat, radius, frozenset(entry.roles), dict(entry.constants),
                      tuple(interlocks)), declared


@dataclass(frozen=True, slots=True)
class _Junctions:
    default: CompatibilityMatrix
    matrices: dict[str, CompatibilityMatrix]
    samples: int
    colours: tuple[str, ...]
    layouts: dict[str, CompatibilityMatrix]


def _matrix(ld: _Load, raw: Any, loc: Loc, who: str, inherit: CompatibilityMatrix | None) -> CompatibilityMatrix | None:
    m = ld.item(MatrixEntry, raw, loc, who)
    if m is None:
        return None
    phases = m.phases if m.phases is not None else inherit.phases if inherit is not None else 8
    pairs: set[frozenset[int]] = set()
    ok = True
    for i, p in enumerate(m.permissive):
        if not (isinstance(p, list) and len(p) == 2 and p[0] != p[1]
                and all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= phases for x in p)):
            ld.add((*loc, "permissive", i), who, f"a permissive pair is two different phases in 1..{phases}, got {p!r}")
            ok = False
            continue
        pairs.add(frozenset(p))
    return CompatibilityMatrix(phases, frozenset(pairs)) if ok else None


def _junctions(ld: _Load, raw: Any) -> _Junctions | None:
    """The monitor's matrices: per junction, its own entry, else its inventory layout, else the default."""
    loc: Loc = ("junctions",)
    entry = JunctionsEntry() if raw is None else ld.item(JunctionsEntry, raw, loc, "junctions")
    body = _body(raw)
    if entry is not None and "green" not in entry.conflict_colours:
        ld.add((*loc, "conflict_colours"), "junctions",
               f"'conflict_colours' must include green, got {list(entry.conflict_colours)!r}")
    declared_layouts = frozenset(_mapping(body, "layouts"))
    layouts: dict[str, CompatibilityMatrix] = {}
    for name, lraw in _mapping(body, "layouts").items():
        m = _matrix(ld, lraw, (*loc, "layouts", name), f"layout '{name}'", None)
        if m is not None:
            layouts[name] = m
    default = CompatibilityMatrix(8, frozenset())
    if body.get("default") is not None:
        default = _matrix(ld, body["default"], (*loc, "default"), "junction default", None) or default
    city = ld.city
    junctions = {e.id: e for e in city.equipment.values() if e.template == "junction"} if city else None
    matrices: dict[str, CompatibilityMatrix] = {}
    for key, mraw in body.items():
        if not isinstance(key, str) or key in JUNCTION_KEYS:
            continue
        who = f"junction '{key}'"
        if junctions is not None and key not in junctions:
            ld.add((*loc, key), who, f"a key of 'junctions' must be a junction of the city or one of "
                                     f"{one_of(JUNCTION_KEYS)}, got {key!r}"
                                     f"{did_you_mean(key, [*JUNCTION_KEYS, *junctions])}")
        elif isinstance(mraw, str):
            if mraw in layouts:
                matrices[key] = layouts[mraw]
            elif mraw not in declared_layouts:  # a broken layout is reported once, at the layout
                known = one_of(sorted(declared_layouts)) or "none"
                ld.add((*loc, key), who, f"a layout must be one of junctions.layouts ({known}), got {mraw!r}"
                                         f"{did_you_mean(mraw, declared_layouts)}")
        elif isinstance(mraw, dict):
            m = _matrix(ld, mraw, (*loc, key), who, default)
            if m is not None:
                matrices[key] = m
        else:
            ld.add((*loc, key), who, f"a junction's entry is a layout name or {{phases: ..., permissive: [...]}}, "
                                     f"got {mraw!r}")
    layout_param = entry.layout_param if entry is not None else "layout"
    for jid, eq in (junctions or {}).items():
        if jid in body:
            continue  # its own entry wins (and was checked above)
        layout = eq.params.get(layout_param, eq.identity.get(layout_param))
        if layout is None or layout == "":
            continue
        if str(layout) in layouts:
            matrices[jid] = layouts[str(layout)]
        elif str(layout) not in declared_layouts:
            ld.add((*loc, "layouts"), f"junction '{jid}'",
                   f"its inventory layout ({eq.source}) must be one of junctions.layouts "
                   f"({one_of(sorted(declared_layouts)) or 'none'}), got {layout!r}"
                   f"{did_you_mean(str(layout), declared_layouts)}")
    if entry is None:
        return None
    return _Junctions(default, matrices, entry.samples_before_flash, tuple(entry.conflict_colours), layouts)


def _crisis_step(ld: _Load, raw: Any, loc: Loc, who: str, types: Mapping[str, TypePolicy],
                 declared: Mapping[str, frozenset[str]]) -> CrisisStep | None:
    step = ld.item(CrisisStepEntry, raw, loc, who)
    if step is None:
        return None
    if ld.city is not None:
        eq = ld.city.equipment.get(step.target)
        if eq is None:
            ld.add((*loc, "target"), who, f"'target' must be equipment of the city, got {step.target!r}"
                                          f"{did_you_mean(step.target, ld.city.equipment)}")
            return None
        verbs = declared.get(eq.template)
        if verbs is None:
            ld.add((*loc, "target"), who, f"'target' must be commandable equipment, got {step.target!r}, of type "
                                          f"{eq.template!r} which commands.yaml does not list")
            return None
        if step.verb not in verbs:
            ld.add((*loc, "verb"), who, f"'verb' must be a verb of type {eq.template!r} ({one_of(sorted(verbs))}), "
                                        f"got {step.verb!r}{did_you_mean(step.verb, verbs)}")
            return None
        policy = types.get(eq.template)
        spec = policy.verbs.get(step.verb) if policy is not None else None
        if spec is not None:  # else: the verb is broken, and reported where it is declared
            for pname, pspec in spec.params.items():
                _, why = pspec.check(step.params.get(pname))
                if why:
                    ld.add((*loc, "params", pname) if pname in step.params else (*loc, "params"), who, why)
            for pname in step.params:
                if pname not in spec.params:
                    ld.add((*loc, "params", pname), who, f"verb {step.verb!r} has no parameter {pname!r}"
                                                         f"{did_you_mean(pname, spec.params)}")
    return CrisisStep(step.target, step.verb, dict(step.params))


def _crisis(ld: _Load, raw: dict[str, Any], types: Mapping[str, TypePolicy], declared: Mapping[str, frozenset[str]],
            default_roles: frozenset[str]) -> dict[str, CrisisPlanSpec]:
    plans: dict[str, CrisisPlanSpec] = {}
    for name, praw in raw.items():
        loc: Loc = ("crisis_plans", name)
        who = f"crisis plan '{name}'"
        before = ld.count()
        entry = ld.item(CrisisPlanEntry, praw, loc, who)
        steps: list[CrisisStep] = []
        for i, sraw in enumerate(_items(_body(praw), "steps")):
            step = _crisis_step(ld, sraw, (*loc, "steps", i), who, types, declared)
            if step is not None:
                steps.append(step)
        if entry is None or ld.count() > before:
            continue
        roles = frozenset(entry.roles) if entry.roles is not None else default_roles
        plans[name] = CrisisPlanSpec(name, entry.description, tuple(steps), entry.lease, roles)
    return plans


def _section(ld: _Load, model: type[M], body: Mapping[str, Any], key: str) -> M | None:
    """A top-level section: absent (or empty) means every default."""
    raw = body.get(key)
    return model() if raw is None else ld.item(model, raw, (key,), key)


def check_vocabulary(path: Path | str, city: CityConfig | None = None) -> tuple[Vocabulary | None, list[ConfigProblem]]:
    """Validate ``commands.yaml`` (against ``city`` when given); return (vocabulary or None, every problem)."""
    path = Path(path)
    tree, problems = load_yaml(path)
    if tree is None:
        return None, problems
    if not isinstance(tree, (dict, list)):  # a lone scalar carries no line mark: it is the whole document
        return None, [ConfigProblem(str(path), 1, "", f"must be a mapping of sections "
                                                      f"({one_of(CommandsFile.model_fields)}), got {tree!r}")]
    ld = _Load(path, tree, city)
    top = ld.item(CommandsFile, tree, (), "")
    body = _body(tree)
    approval = _section(ld, ApprovalEntry, body, "approval")
    rates = _section(ld, RateLimitsEntry, body, "rate_limits")
    types: dict[str, TypePolicy] = {}
    declared: dict[str, frozenset[str]] = {}
    for name, raw in _mapping(body, "types").items():
        policy, verbs = _type_policy(ld, name, raw)
        if verbs is not None:
            declared[name] = verbs
        if policy is not None:
            types[name] = policy
    junctions = _junctions(ld, body.get("junctions"))
    crisis_roles = frozenset(top.crisis_roles) if top is not None else frozenset()
    plans = _crisis(ld, _mapping(body, "crisis_plans"), types, declared, crisis_roles)
    if ld.problems.items or top is None or approval is None or rates is None or junctions is None:
        return None, ld.problems.items
    return Vocabulary(types, approval.window, frozenset(approval.approver_roles), rates.per_user_per_minute,
                      rates.global_per_minute, crisis_roles, junctions.default, junctions.matrices, junctions.samples,
                      plans, str(path), junctions.colours, junctions.layouts), []


def load_vocabulary(path: Path | str, city: CityConfig | None = None) -> Vocabulary:
    """Like :func:`check_vocabulary` but raises :class:`ConfigError` listing every problem."""
    vocab, problems = check_vocabulary(path, city)
    if vocab is None:
        raise ConfigError(problems)
    return vocab


# ---------------------------------------------------------------------------------------------- enumeration
@dataclass(frozen=True, slots=True)
class PossibleWrite:
    type: str
    verb: str
    phase: str  # write | refresh | release | heartbeat
    tag: str
    address: str
    protocol: str


def enumerate_writes(vocab: Vocabulary, city: CityConfig) -> Iterator[PossibleWrite]:
    """Every write the fail-safe layer can ever issue: verbs (write/refresh/release) and heartbeats."""
    for tname, policy in vocab.types.items():
        tmpl = city.templates[tname]
        tags = _template_tags(city, tname) or {}
        for verb in policy.verbs.values():
            for phase, w in verb.all_writes:
                yield PossibleWrite(tname, verb.name, phase, w.tag, str(tags[w.tag]["address"]), tmpl.protocol)
        if policy.heartbeat is not None:
            hb = policy.heartbeat
            yield PossibleWrite(tname, "", "heartbeat", hb.tag, str(tags[hb.tag]["address"]), tmpl.protocol)
