"""The command vocabulary: ``commands.yaml`` loaded, checked against the city, and resolved into writes.

One :class:`TypePolicy` per equipment template (junction, lighting_cabinet, bollard, panel) holds the
verbs an operator may use on that type and the limits that apply to them::

    commands.yaml ──load_yaml──► checked tree ──► Vocabulary
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

Every problem is reported in one run as ``commands.yaml:42: verb 'junction.flash': what, got what``
(reusing the core's :mod:`scada.config.yamlsource` line marks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scada.config.model import CityConfig, EquipmentDef
from scada.config.units import parse_duration
from scada.config.yamlsource import did_you_mean, line_of, load_yaml, one_of
from scada.errors import ConfigError, ConfigProblem
from scada.quality import Value

#: NTCIP 1202 objects the system may SET, and nothing else (standards.md AC-TS-01, TEAM.md contract).
SNMP_SET_ALLOW_LIST: dict[str, str] = {
    "1.3.6.1.4.1.1206.4.2.1.4.14.0": "systemPatternControl",
    "1.3.6.1.4.1.1206.4.2.1.3.3.0": "unitBackupTime",
}

#: Verb names that would address an individual signal head / channel / phase are refused outright.
FORBIDDEN_VERB = re.compile(r"(?:^|_)(phase|channel|head|signal_?group|aspect|load_?switch|lamp|green|red|amber|"
                            r"yellow|force|omit|hold)s?(?:_|$)", re.IGNORECASE)

SAFETY = ("increasing", "neutral", "reducing")
LEASE_MODES = ("hold", "end")
PARAM_TYPES = ("int", "float", "str", "bool")
OPS = ("equals", "not_equals", "above", "below", "at_least", "at_most", "in", "not_in")
HEARTBEAT_SCOPES = ("leased", "all")
_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
LEASE_S_MAX = 65535  # lease seconds are written to 16-bit registers / unitBackupTime


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
class _Out:
    def __init__(self, file: str, tree: Any) -> None:
        self.file = file
        self.tree = tree
        self.items: list[ConfigProblem] = []

    def add(self, loc: tuple[str | int, ...], who: str, what: str) -> None:
        self.items.append(ConfigProblem(self.file, line_of(self.tree, loc), who, what))


def _duration(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, key: str, default: float | None,
              positive: bool = True) -> float | None:
    if raw is None:
        return default
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        out.add(loc, who, f"'{key}' {exc}, got {raw!r}")
        return default
    if positive and value <= 0:
        out.add(loc, who, f"'{key}' must be positive, got {raw!r}")
        return default
    return value


def _int(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, key: str, default: int, low: int = 0) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        out.add(loc, who, f"'{key}' must be a whole number ≥ {low}, got {raw!r}")
        return default
    return raw


def _map(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, key: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        out.add(loc, who, f"'{key}' must be a mapping, got {type(raw).__name__} {raw!r}")
        return {}
    return raw


def _list(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, key: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        out.add(loc, who, f"'{key}' must be a list, got {type(raw).__name__} {raw!r}")
        return []
    return list(raw)


def _unknown_keys(out: _Out, raw: Mapping[str, Any], allowed: tuple[str, ...], loc: tuple[str | int, ...],
                  who: str) -> None:
    for key in raw:
        if key not in allowed:
            out.add((*loc, key), who, f"unknown key {key!r}{did_you_mean(key, allowed)}; expected one of "
                                      f"{one_of(allowed)}")


def _roles(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, key: str,
           default: frozenset[str]) -> frozenset[str]:
    if raw is None:
        return default
    items = _list(out, raw, loc, who, key)
    bad = [r for r in items if not isinstance(r, str) or not r]
    if bad:
        out.add(loc, who, f"'{key}' must be a list of role names, got {bad[0]!r}")
    return frozenset(str(r) for r in items if isinstance(r, str) and r)


def _template_tags(city: CityConfig | None, template: str) -> dict[str, dict[str, Any]] | None:
    """Template tag name → raw spec (name, access, address...) or None if unknown / no city."""
    if city is None:
        return None
    spec = city.templates.get(template)
    if spec is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    for raw in spec.tags:
        if isinstance(raw, Mapping) and "name" in raw:
            out[str(raw["name"])] = dict(raw)
    return out


def _condition(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, tags: dict[str, dict[str, Any]] | None,
               names_ok: set[str], *, param: bool = False) -> Condition | None:
    raw = _map(out, raw, loc, who, "condition")
    if not raw:
        return None
    subject_key = "param" if param else "tag"
    _unknown_keys(out, raw, (subject_key, *OPS), loc, who)
    subject = raw.get(subject_key)
    if not isinstance(subject, str) or not subject:
        out.add(loc, who, f"a condition needs '{subject_key}', got {dict(raw)!r}")
        return None
    if param:
        if subject not in names_ok:
            out.add((*loc, subject_key), who, f"unknown parameter {subject!r}{did_you_mean(subject, names_ok)}")
    elif tags is not None and subject not in tags:
        out.add((*loc, subject_key), who, f"unknown tag {subject!r}{did_you_mean(subject, tags)}")
    ops = [k for k in raw if k in OPS]
    if len(ops) != 1:
        out.add(loc, who, f"a condition needs exactly one of {one_of(OPS)}, got {ops or 'none'}")
        return None
    op = ops[0]
    operand = raw[op]
    if op in ("in", "not_in"):
        if not isinstance(operand, list):
            out.add((*loc, op), who, f"'{op}' needs a list, got {operand!r}")
            return None
        operand = list(operand)
    _check_placeholders(out, operand, (*loc, op), who, names_ok)
    return Condition(subject, op, operand, on_param=param)


def _check_placeholders(out: _Out, value: Any, loc: tuple[str | int, ...], who: str, names_ok: set[str]) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, str):
            m = _PLACEHOLDER.match(v)
            if m and m.group(1) not in names_ok:
                out.add(loc, who, f"unknown placeholder {v!r}{did_you_mean(m.group(1), names_ok)}; known: "
                                  f"{one_of(sorted(names_ok))}")
            elif not m and "{" in v:
                out.add(loc, who, f"a value is a literal or exactly one '{{name}}' placeholder, got {v!r}")


def _writes(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str, key: str,
            tags: dict[str, dict[str, Any]] | None, protocol: str | None, names_ok: set[str]) -> tuple[WriteSpec, ...]:
    result: list[WriteSpec] = []
    for i, item in enumerate(_list(out, raw, loc, who, key)):
        iloc = (*loc, i)
        if not isinstance(item, Mapping):
            out.add(iloc, who, f"each of '{key}' must be {{tag: ..., value: ...}}, got {item!r}")
            continue
        _unknown_keys(out, item, ("tag", "value", "tolerance"), iloc, who)
        tag = item.get("tag")
        if not isinstance(tag, str) or not tag or "value" not in item:
            out.add(iloc, who, f"each of '{key}' needs 'tag' and 'value', got {dict(item)!r}")
            continue
        value = item["value"]
        if isinstance(value, (list, dict)):
            out.add((*iloc, "value"), who, f"'value' must be a single value, got {value!r}")
            continue
        _check_placeholders(out, value, (*iloc, "value"), who, names_ok)
        tol = item.get("tolerance")
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0):
            out.add((*iloc, "tolerance"), who, f"'tolerance' must be a number ≥ 0, got {tol!r}")
            continue
        if tags is not None:
            spec = tags.get(tag)
            if spec is None:
                out.add((*iloc, "tag"), who, f"unknown tag {tag!r}{did_you_mean(tag, tags)}")
                continue
            if spec.get("access", "r") != "rw":
                out.add((*iloc, "tag"), who, f"tag {tag!r} is not writable (tags.yaml declares access "
                                              f"{spec.get('access', 'r')!r}); only access 'rw' tags may be written")
                continue
            if protocol == "snmp" and str(spec.get("address")) not in SNMP_SET_ALLOW_LIST:
                out.add((*iloc, "tag"), who, f"SNMP SET of {tag!r} ({spec.get('address')}) is outside the allow-list "
                                              f"{one_of(SNMP_SET_ALLOW_LIST.values())}")
                continue
        result.append(WriteSpec(tag, value, None if tol is None else float(tol)))
    return tuple(result)


def _params(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str) -> dict[str, ParamSpec]:
    params: dict[str, ParamSpec] = {}
    for name, spec in _map(out, raw, loc, who, "params").items():
        ploc = (*loc, name)
        pwho = f"{who} parameter '{name}'"
        spec = _map(out, spec, ploc, pwho, "parameter")
        _unknown_keys(out, spec, ("type", "min", "max", "max_length", "choices"), ploc, pwho)
        ptype = spec.get("type")
        if ptype not in PARAM_TYPES:
            out.add((*ploc, "type"), pwho, f"'type' must be one of {one_of(PARAM_TYPES)}, got {ptype!r}"
                                           f"{did_you_mean(str(ptype), PARAM_TYPES)}")
            continue
        lo, hi = spec.get("min"), spec.get("max")
        for k, v in (("min", lo), ("max", hi)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                out.add((*ploc, k), pwho, f"'{k}' must be a number, got {v!r}")
        ml = spec.get("max_length")
        choices = spec.get("choices")
        params[str(name)] = ParamSpec(
            str(name), str(ptype),
            float(lo) if isinstance(lo, (int, float)) and not isinstance(lo, bool) else None,
            float(hi) if isinstance(hi, (int, float)) and not isinstance(hi, bool) else None,
            ml if isinstance(ml, int) and not isinstance(ml, bool) else None,
            tuple(choices) if isinstance(choices, list) else None)
    return params


def _threshold(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str) -> Threshold | None:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return Threshold(value=float(raw))
    spec = _map(out, raw, loc, who, "at_least")
    if not spec:
        return None
    _unknown_keys(out, spec, ("identity", "table", "default"), loc, who)
    ident = spec.get("identity")
    table = _map(out, spec.get("table"), (*loc, "table"), who, "table")
    if not isinstance(ident, str) or not table:
        out.add(loc, who, f"'at_least' is a number or {{identity: <field>, table: {{...}}}}, got {dict(spec)!r}")
        return None
    clean: dict[str, float] = {}
    for k, v in table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            out.add((*loc, "table", k), who, f"table entry {k!r} must be a number, got {v!r}")
        else:
            clean[str(k)] = float(v)
    default = spec.get("default")
    if default is not None and (isinstance(default, bool) or not isinstance(default, (int, float))):
        out.add((*loc, "default"), who, f"'default' must be a number, got {default!r}")
        default = None
    return Threshold(identity=ident, table=clean, default=None if default is None else float(default))


def _type_policy(out: _Out, name: str, raw: Any, city: CityConfig | None) -> TypePolicy | None:
    loc: tuple[str | int, ...] = ("types", name)
    who = f"type '{name}'"
    raw = _map(out, raw, loc, who, name)
    _unknown_keys(out, raw, ("critical", "select_timeout", "confirm_timeout", "roles", "lease", "heartbeat",
                             "blast_radius", "constants", "interlocks", "verbs"), loc, who)
    tags = _template_tags(city, name)
    protocol: str | None = None
    if city is not None:
        tmpl = city.templates.get(name)
        if tmpl is None:
            out.add(loc, who, f"no equipment template {name!r} in the city configuration"
                              f"{did_you_mean(name, city.templates)}; known: {one_of(sorted(city.templates))}")
            return None
        protocol = tmpl.protocol
    critical = raw.get("critical", False)
    if not isinstance(critical, bool):
        out.add((*loc, "critical"), who, f"'critical' must be true or false, got {critical!r}")
        critical = True  # never silently weaken: treat a bad value as the stricter setting (and fail load)
    select_s = _duration(out, raw.get("select_timeout"), (*loc, "select_timeout"), who, "select_timeout", 15.0)
    confirm_s = _duration(out, raw.get("confirm_timeout"), (*loc, "confirm_timeout"), who, "confirm_timeout", 30.0)
    roles = _roles(out, raw.get("roles"), (*loc, "roles"), who, "roles", frozenset())
    lease = _map(out, raw.get("lease"), (*loc, "lease"), who, "lease")
    _unknown_keys(out, lease, ("default", "max", "refresh"), (*loc, "lease"), who)
    if not lease:
        out.add(loc, who, "every type needs 'lease: {default: ..., max: ...}' (every command is a lease), got none")
    lease_default = _duration(out, lease.get("default"), (*loc, "lease", "default"), who, "lease.default", 900.0)
    lease_max = _duration(out, lease.get("max"), (*loc, "lease", "max"), who, "lease.max", 3600.0)
    refresh = _duration(out, lease.get("refresh"), (*loc, "lease", "refresh"), who, "lease.refresh", None)
    if lease_default is not None and lease_max is not None and lease_default > lease_max:
        out.add((*loc, "lease", "default"), who, f"'lease.default' must not exceed 'lease.max' ({lease_max:g} s), "
                                                 f"got {lease_default:g} s")
    if lease_max is not None and lease_max > LEASE_S_MAX:
        out.add((*loc, "lease", "max"), who, f"'lease.max' must be ≤ {LEASE_S_MAX} s (16-bit lease registers), "
                                             f"got {lease_max:g} s")
    hb: Heartbeat | None = None
    hb_raw = _map(out, raw.get("heartbeat"), (*loc, "heartbeat"), who, "heartbeat")
    if hb_raw:
        _unknown_keys(out, hb_raw, ("tag", "period", "scope"), (*loc, "heartbeat"), who)
        hb_tag = hb_raw.get("tag")
        period = _duration(out, hb_raw.get("period"), (*loc, "heartbeat", "period"), who, "heartbeat.period", 15.0)
        scope = hb_raw.get("scope", "leased")
        if scope not in HEARTBEAT_SCOPES:
            out.add((*loc, "heartbeat", "scope"), who, f"'scope' must be one of {one_of(HEARTBEAT_SCOPES)}, "
                                                       f"got {scope!r}")
        if not isinstance(hb_tag, str):
            out.add((*loc, "heartbeat"), who, f"'heartbeat' needs 'tag', got {dict(hb_raw)!r}")
        elif tags is not None and (hb_tag not in tags or tags[hb_tag].get("access", "r") != "rw"):
            out.add((*loc, "heartbeat", "tag"), who, f"heartbeat tag must be a writable tag of the template, "
                                                     f"got {hb_tag!r}{did_you_mean(hb_tag, tags)}")
        else:
            hb = Heartbeat(hb_tag, period or 15.0, str(scope))
    br = _map(out, raw.get("blast_radius"), (*loc, "blast_radius"), who, "blast_radius")
    _unknown_keys(out, br, ("per_command", "per_minute", "max_with_approval"), (*loc, "blast_radius"), who)
    per_command = _int(out, br.get("per_command"), (*loc, "blast_radius", "per_command"), who, "per_command", 1, 1)
    per_minute = _int(out, br.get("per_minute"), (*loc, "blast_radius", "per_minute"), who, "per_minute",
                      per_command, 1)
    max_appr = _int(out, br.get("max_with_approval"), (*loc, "blast_radius", "max_with_approval"), who,
                    "max_with_approval", per_command, 1)
    if max_appr < per_command:
        out.add((*loc, "blast_radius", "max_with_approval"), who,
                f"'max_with_approval' must be ≥ 'per_command' ({per_command}), got {max_appr}")
    constants: dict[str, Value] = {}
    for k, v in _map(out, raw.get("constants"), (*loc, "constants"), who, "constants").items():
        if isinstance(v, (list, dict)):
            out.add((*loc, "constants", k), who, f"constant {k!r} must be a single value, got {v!r}")
        else:
            constants[str(k)] = v
    verbs: dict[str, VerbSpec] = {}
    raw_verbs = _map(out, raw.get("verbs"), (*loc, "verbs"), who, "verbs")
    if not raw_verbs:
        out.add(loc, who, "a commandable type needs at least one verb, got none")
    identity_names: set[str] = set()
    if city is not None:
        for eq in city.equipment.values():
            if eq.template == name:
                identity_names |= set(eq.identity) | set(eq.params)
    for vname, vraw in raw_verbs.items():
        verb = _verb(out, name, str(vname), vraw, tags, protocol, constants, identity_names, roles)
        if verb is not None:
            verbs[verb.name] = verb
    interlocks: list[InterlockSpec] = []
    for i, iraw in enumerate(_list(out, raw.get("interlocks"), (*loc, "interlocks"), who, "interlocks")):
        il = _interlock(out, name, i, iraw, tags, verbs, city)
        if il is not None:
            interlocks.append(il)
    return TypePolicy(name, verbs, bool(critical), select_s or 15.0, confirm_s or 30.0, lease_default or 900.0,
                      lease_max or 3600.0, refresh, hb, BlastRadius(per_command, per_minute, max_appr), roles,
                      constants, tuple(interlocks))


def _verb(out: _Out, type_name: str, name: str, raw: Any, tags: dict[str, dict[str, Any]] | None,
          protocol: str | None, constants: Mapping[str, Value], identity_names: set[str],
          type_roles: frozenset[str]) -> VerbSpec | None:
    loc: tuple[str | int, ...] = ("types", type_name, "verbs", name)
    who = f"verb '{type_name}.{name}'"
    if FORBIDDEN_VERB.search(name):
        out.add(loc, who, "no verb may address an individual signal head, channel, phase or colour "
                          "(the field controller keeps that authority), got verb name " + repr(name))
        return None
    raw = _map(out, raw, loc, who, name)
    _unknown_keys(out, raw, ("params", "writes", "refresh", "release", "confirm", "safety", "increasing_when",
                             "roles", "lease"), loc, who)
    params = _params(out, raw.get("params"), (*loc, "params"), who)
    names_ok = set(params) | set(constants) | identity_names | {"lease_s"}
    writes = _writes(out, raw.get("writes"), (*loc, "writes"), who, "writes", tags, protocol, names_ok)
    if not writes and "writes" not in raw:
        out.add(loc, who, "a verb needs 'writes' (the writes it issues), got none")
    refresh = _writes(out, raw.get("refresh"), (*loc, "refresh"), who, "refresh", tags, protocol, names_ok)
    release = _writes(out, raw.get("release"), (*loc, "release"), who, "release", tags, protocol, names_ok)
    confirm: list[Condition] = []
    for i, c in enumerate(_list(out, raw.get("confirm"), (*loc, "confirm"), who, "confirm")):
        cond = _condition(out, c, (*loc, "confirm", i), who, tags, names_ok)
        if cond is not None:
            confirm.append(cond)
    if not confirm and "confirm" not in raw:
        out.add(loc, who, "a verb needs 'confirm' (the read-back that proves it took effect), got none")
    safety = raw.get("safety", "neutral")
    if safety not in SAFETY:
        out.add((*loc, "safety"), who, f"'safety' must be one of {one_of(SAFETY)}, got {safety!r}"
                                       f"{did_you_mean(str(safety), SAFETY)}")
        safety = "reducing"  # stricter; the load fails anyway
    inc = None
    if raw.get("increasing_when") is not None:
        inc = _condition(out, raw["increasing_when"], (*loc, "increasing_when"), who, tags, set(params), param=True)
    lease = raw.get("lease", "hold")
    if lease not in LEASE_MODES:
        out.add((*loc, "lease"), who, f"'lease' must be one of {one_of(LEASE_MODES)}, got {lease!r}")
        lease = "hold"
    if lease == "hold" and not release:
        out.add(loc, who, "a verb that holds a lease needs 'release' writes (what returns the device to local "
                          "control at lease end), got none")
    roles = _roles(out, raw.get("roles"), (*loc, "roles"), who, "roles", type_roles)
    if not roles:
        out.add(loc, who, "no role may use this verb: set 'roles' on the verb or its type, got none")
    return VerbSpec(name, type_name, params, writes, refresh, release, tuple(confirm), str(safety), inc, roles,
                    str(lease), line_of(out.tree, loc))


def _interlock(out: _Out, type_name: str, i: int, raw: Any, tags: dict[str, dict[str, Any]] | None,
               verbs: Mapping[str, VerbSpec], city: CityConfig | None) -> InterlockSpec | None:
    loc: tuple[str | int, ...] = ("types", type_name, "interlocks", i)
    raw = _map(out, raw, loc, f"interlock {i} of type '{type_name}'", "interlock")
    name = str(raw.get("name", f"#{i}"))
    who = f"interlock '{type_name}.{name}'"
    _unknown_keys(out, raw, ("name", "verbs", "when", "refuse_if", "require", "reason"), loc, who)
    vs = _list(out, raw.get("verbs"), (*loc, "verbs"), who, "verbs")
    if not vs:
        out.add(loc, who, "'verbs' must list the verbs it applies to, got none")
    for v in vs:
        if v not in verbs:
            out.add((*loc, "verbs"), who, f"unknown verb {v!r}{did_you_mean(str(v), verbs)}")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason:
        out.add(loc, who, "'reason' (shown to the operator on refusal) is required, got none")
        reason = name
    param_names: set[str] = set()
    for v in vs:
        if v in verbs:
            param_names |= set(verbs[v].params)
    when_raw = raw.get("when")
    when_items = when_raw if isinstance(when_raw, list) else ([when_raw] if when_raw is not None else [])
    when: list[Condition] = []
    for j, w in enumerate(when_items):
        wloc = (*loc, "when", j) if isinstance(when_raw, list) else (*loc, "when")
        cond = _condition(out, w, wloc, who, tags, param_names)
        if cond is not None:
            when.append(cond)
    refuse_if = None
    if raw.get("refuse_if") is not None:
        refuse_if = _condition(out, raw["refuse_if"], (*loc, "refuse_if"), who, tags, param_names)
    req_param: str | None = None
    threshold: Threshold | None = None
    if raw.get("require") is not None:
        req = _map(out, raw["require"], (*loc, "require"), who, "require")
        _unknown_keys(out, req, ("param", "at_least"), (*loc, "require"), who)
        rp = req.get("param")
        if not isinstance(rp, str) or rp not in param_names:
            out.add((*loc, "require", "param"), who, f"'param' must be a parameter of the verbs, got {rp!r}"
                                                     f"{did_you_mean(str(rp), param_names)}")
        else:
            req_param = rp
        threshold = _threshold(out, req.get("at_least"), (*loc, "require", "at_least"), who)
        if threshold is not None and threshold.identity is not None and threshold.default is None and city:
            for eq in city.equipment.values():
                if eq.template != type_name:
                    continue
                key = eq.identity.get(threshold.identity, eq.params.get(threshold.identity))
                if key is None or str(key) not in (threshold.table or {}):
                    out.add((*loc, "require", "at_least", "table"), who,
                            f"equipment '{eq.id}' ({eq.source}) has {threshold.identity} {key!r} with no entry "
                            f"in the table and no 'default'")
    if refuse_if is None and req_param is None:
        out.add(loc, who, "an interlock needs 'refuse_if' or 'require', got neither")
        return None
    return InterlockSpec(name, frozenset(str(v) for v in vs), reason, tuple(when), refuse_if, req_param, threshold)


JUNCTION_KEYS = ("samples_before_flash", "conflict_colours", "layouts", "default", "layout_param")
COLOURS = ("green", "yellow")


def _junctions(out: _Out, raw: Any, city: CityConfig | None) -> dict[str, Any]:
    loc: tuple[str | int, ...] = ("junctions",)
    raw = _map(out, raw, loc, "junctions", "junctions")
    samples = _int(out, raw.get("samples_before_flash"), (*loc, "samples_before_flash"), "junctions",
                   "samples_before_flash", 2, 1)
    colours = _list(out, raw.get("conflict_colours", list(COLOURS)), (*loc, "conflict_colours"), "junctions",
                    "conflict_colours")
    for c in colours:
        if c not in COLOURS:
            out.add((*loc, "conflict_colours"), "junctions", f"'conflict_colours' must list {one_of(COLOURS)}, "
                                                             f"got {c!r}")
    if "green" not in colours:
        out.add((*loc, "conflict_colours"), "junctions", f"'conflict_colours' must include green, got {colours!r}")
    layouts: dict[str, CompatibilityMatrix] = {}
    for name, lraw in _map(out, raw.get("layouts"), (*loc, "layouts"), "junctions", "layouts").items():
        m = _matrix(out, lraw, (*loc, "layouts", name), f"layout '{name}'", None)
        if m is not None:
            layouts[str(name)] = m
    default = _matrix(out, raw.get("default"), (*loc, "default"), "junction default", None) or \
        CompatibilityMatrix(8, frozenset())
    layout_param = str(raw.get("layout_param", "layout"))
    junctions = {e.id: e for e in city.equipment.values() if e.template == "junction"} if city else None
    matrices: dict[str, CompatibilityMatrix] = {}
    for key, mraw in raw.items():
        if key in JUNCTION_KEYS:
            continue
        who = f"junction '{key}'"
        if junctions is not None and str(key) not in junctions:
            out.add((*loc, key), who, f"no junction {key!r} in the city{did_you_mean(str(key), junctions)}")
            continue
        if isinstance(mraw, str):
            if mraw not in layouts:
                out.add((*loc, key), who, f"unknown layout {mraw!r}{did_you_mean(mraw, layouts)}; layouts: "
                                          f"{one_of(layouts) or 'none'}")
                continue
            matrices[str(key)] = layouts[mraw]
            continue
        m = _matrix(out, mraw, (*loc, key), who, default)
        if m is not None:
            matrices[str(key)] = m
    for jid, eq in (junctions or {}).items():
        if jid in matrices:
            continue
        layout = eq.params.get(layout_param, eq.identity.get(layout_param))
        if layout is None or layout == "":
            continue
        if str(layout) not in layouts:
            out.add((*loc, "layouts"), f"junction '{jid}'",
                    f"inventory ({eq.source}) names layout {layout!r}, which is not under junctions.layouts"
                    f"{did_you_mean(str(layout), layouts)}")
            continue
        matrices[jid] = layouts[str(layout)]
    return {"default": default, "matrices": matrices, "samples": samples, "colours": tuple(str(c) for c in colours),
            "layouts": layouts}


def _matrix(out: _Out, raw: Any, loc: tuple[str | int, ...], who: str,
            inherit: CompatibilityMatrix | None) -> CompatibilityMatrix | None:
    raw = _map(out, raw, loc, who, "matrix")
    if not raw:
        return None
    _unknown_keys(out, raw, ("phases", "permissive"), loc, who)
    phases = _int(out, raw.get("phases"), (*loc, "phases"), who, "phases", inherit.phases if inherit else 8, 1)
    if phases > 64:
        out.add((*loc, "phases"), who, f"'phases' must be ≤ 64, got {phases}")
    pairs: set[frozenset[int]] = set()
    for i, p in enumerate(_list(out, raw.get("permissive"), (*loc, "permissive"), who, "permissive")):
        ok = (isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                          and 1 <= x <= phases for x in p) and p[0] != p[1])
        if not ok:
            out.add((*loc, "permissive", i), who,
                    f"a permissive pair is two different phases in 1..{phases}, got {p!r}")
            continue
        pairs.add(frozenset(p))
    return CompatibilityMatrix(phases, frozenset(pairs))


def _crisis(out: _Out, raw: Any, types: Mapping[str, TypePolicy], city: CityConfig | None,
            default_roles: frozenset[str]) -> dict[str, CrisisPlanSpec]:
    plans: dict[str, CrisisPlanSpec] = {}
    for name, praw in _map(out, raw, ("crisis_plans",), "crisis_plans", "crisis_plans").items():
        loc: tuple[str | int, ...] = ("crisis_plans", name)
        who = f"crisis plan '{name}'"
        praw = _map(out, praw, loc, who, "plan")
        _unknown_keys(out, praw, ("description", "lease", "steps", "roles"), loc, who)
        lease = _duration(out, praw.get("lease"), (*loc, "lease"), who, "lease", None)
        steps: list[CrisisStep] = []
        raw_steps = _list(out, praw.get("steps"), (*loc, "steps"), who, "steps")
        if not raw_steps:
            out.add(loc, who, "a crisis plan needs 'steps', got none")
        for i, s in enumerate(raw_steps):
            sloc = (*loc, "steps", i)
            if not isinstance(s, Mapping):
                out.add(sloc, who, f"a step is {{target: ..., verb: ..., params: {{...}}}}, got {s!r}")
                continue
            _unknown_keys(out, s, ("target", "verb", "params"), sloc, who)
            target, verb = s.get("target"), s.get("verb")
            params = dict(_map(out, s.get("params"), (*sloc, "params"), who, "params"))
            if not isinstance(target, str) or not isinstance(verb, str):
                out.add(sloc, who, f"a step needs 'target' and 'verb', got {dict(s)!r}")
                continue
            if city is not None:
                eq = city.equipment.get(target)
                if eq is None:
                    out.add((*sloc, "target"), who,
                            f"unknown equipment {target!r}{did_you_mean(target, city.equipment)}")
                    continue
                policy = types.get(eq.template)
                if policy is None:
                    out.add((*sloc, "target"), who, f"equipment {target!r} (type {eq.template}) is not commandable")
                    continue
                vs = policy.verbs.get(verb)
                if vs is None:
                    out.add((*sloc, "verb"), who, f"type {eq.template!r} has no verb {verb!r}"
                                                  f"{did_you_mean(verb, policy.verbs)}; known: {one_of(policy.verbs)}")
                    continue
                for pname, pspec in vs.params.items():
                    _, why = pspec.check(params.get(pname))
                    if why:
                        out.add((*sloc, "params"), who, why)
                for pname in params:
                    if pname not in vs.params:
                        out.add((*sloc, "params", pname), who, f"verb {verb!r} has no parameter {pname!r}")
            steps.append(CrisisStep(target, verb, params))
        desc = praw.get("description", "")
        plans[str(name)] = CrisisPlanSpec(str(name), str(desc), tuple(steps), lease,
                                          _roles(out, praw.get("roles"), (*loc, "roles"), who, "roles", default_roles))
    return plans


TOP_KEYS = ("approval", "rate_limits", "crisis_roles", "types", "junctions", "crisis_plans")


def check_vocabulary(path: Path | str, city: CityConfig | None = None) -> tuple[Vocabulary | None, list[ConfigProblem]]:
    """Validate ``commands.yaml`` (against ``city`` when given); return (vocabulary or None, problems)."""
    path = Path(path)
    tree, problems = load_yaml(path)
    if tree is None:
        return None, problems
    out = _Out(str(path), tree)
    out.items.extend(problems)
    if not isinstance(tree, Mapping):
        out.add((), "", f"the top level must be a mapping, got {type(tree).__name__}")
        return None, out.items
    _unknown_keys(out, tree, TOP_KEYS, (), "")
    appr = _map(out, tree.get("approval"), ("approval",), "approval", "approval")
    _unknown_keys(out, appr, ("window", "approver_roles"), ("approval",), "approval")
    window = _duration(out, appr.get("window"), ("approval", "window"), "approval", "window", 120.0) or 120.0
    approvers = _roles(out, appr.get("approver_roles"), ("approval", "approver_roles"), "approval", "approver_roles",
                       frozenset({"supervisor", "administrator"}))
    rl = _map(out, tree.get("rate_limits"), ("rate_limits",), "rate_limits", "rate_limits")
    _unknown_keys(out, rl, ("per_user_per_minute", "global_per_minute"), ("rate_limits",), "rate_limits")
    per_user = _int(out, rl.get("per_user_per_minute"), ("rate_limits", "per_user_per_minute"), "rate_limits",
                    "per_user_per_minute", 10, 1)
    glob = _int(out, rl.get("global_per_minute"), ("rate_limits", "global_per_minute"), "rate_limits",
                "global_per_minute", 60, 1)
    crisis_roles = _roles(out, tree.get("crisis_roles"), ("crisis_roles",), "crisis_roles", "crisis_roles",
                          frozenset({"supervisor", "administrator"}))
    types: dict[str, TypePolicy] = {}
    for name, raw in _map(out, tree.get("types"), ("types",), "types", "types").items():
        policy = _type_policy(out, str(name), raw, city)
        if policy is not None:
            types[policy.name] = policy
    jn = _junctions(out, tree.get("junctions"), city)
    plans = _crisis(out, tree.get("crisis_plans"), types, city, crisis_roles)
    if out.items:
        return None, out.items
    return Vocabulary(types, window, approvers, per_user, glob, crisis_roles, jn["default"], jn["matrices"],
                      jn["samples"], plans, str(path), jn["colours"], jn["layouts"]), []


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
