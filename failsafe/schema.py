"""The schema of ``commands.yaml`` (pydantic models, validated item by item like ``tags.yaml``).

::

    approval: {window: 120s, approver_roles: [supervisor, administrator]}     ApprovalEntry
    rate_limits: {per_user_per_minute: 10, global_per_minute: 60}            RateLimitsEntry
    crisis_roles: [supervisor, administrator]
    types:
      junction:                                   TypeEntry (the key is an equipment template)
        lease: {default: 15min, max: 12h, refresh: 10s}                      LeaseEntry
        heartbeat: {tag: heartbeat, period: 15s, scope: leased}             HeartbeatEntry
        blast_radius: {per_command: 1, per_minute: 1, max_with_approval: 20} BlastRadiusEntry
        interlocks:                               InterlockEntry
          - {name: presence, verbs: [raise], refuse_if: {tag: presence, equals: true}, reason: ...}
            (when / refuse_if: TagCondition; require: RequireEntry, at_least: a number or ThresholdEntry)
        verbs:
          select_plan:                            VerbEntry
            params: {plan: {type: int, min: 1, max: 253}}                   ParamEntry
            writes: [{tag: system_pattern_control, value: "{plan}"}]        WriteEntry (also refresh, release)
            confirm: [{tag: coord_pattern_status, equals: "{plan}"}]        TagCondition
            increasing_when: {param: level, at_least: 100}                 ParamCondition
    junctions:                                    JunctionsEntry (other keys: junction ids)
      layouts: {cross4: {phases: 4, permissive: [[1, 2], [3, 4]]}}          MatrixEntry
    crisis_plans:
      emergency_corridor_centre:                  CrisisPlanEntry
        steps: [{target: J003, verb: flash}]                                CrisisStepEntry

Every model is strict (YAML already types its scalars: ``"5"`` is text, not a number, and ``"true"``
is not true) and forbids unknown keys. A mapping nested in another is declared ``Any`` and
validated on its own by :mod:`failsafe.vocabulary` (with :func:`scada.config.loader.validate_item`),
so each problem names its own item (``verb 'junction.flash'``) and an unknown key is matched against
its own model's fields. What needs the city (templates, tags, equipment) or several items at once is
checked there too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from failsafe.types import MONITOR
from scada.config.units import parse_duration
from scada.users import ROLES

#: Who may appear in a ``roles`` list: the users' roles and the field-safety monitor's own role.
KNOWN_ROLES: tuple[str, ...] = (*ROLES, *sorted(MONITOR.roles))

SAFETY = ("increasing", "neutral", "reducing")
LEASE_MODES = ("hold", "end")
PARAM_TYPES = ("int", "float", "str", "bool")
ORDER_OPS = ("above", "below", "at_least", "at_most")
OPS = ("equals", "not_equals", *ORDER_OPS, "in", "not_in")
HEARTBEAT_SCOPES = ("leased", "all")
COLOURS = ("green", "yellow")
LEASE_S_MAX = 65535  # lease seconds are written to 16-bit registers / unitBackupTime
MAX_PHASES = 64  # an MMU program card's phases fit a 64-bit bitmap


def _scalar(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError("must be a single value (a number, text, true or false)")


def _number_or_placeholder(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return value  # a placeholder: checked against the verb's names by the loader
    raise ValueError("must be a number or a '{name}' placeholder")


def _known_role(value: str) -> str:
    if value not in KNOWN_ROLES:
        # the same error as a Literal's, so the loader's message lists the roles and says "did you mean"
        expected = ", ".join(repr(r) for r in KNOWN_ROLES[:-1]) + f" or {KNOWN_ROLES[-1]!r}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]
NumberOrPlaceholder = Annotated[Any, AfterValidator(_number_or_placeholder)]
Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Count = Annotated[int, Field(ge=1)]
Text = Annotated[str, Field(min_length=1)]
Role = Annotated[str, AfterValidator(_known_role)]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ApprovalEntry(Entry):
    window: Duration = 120.0  # the approver must approve within this time of the request
    approver_roles: list[Role] = Field(default_factory=lambda: ["supervisor", "administrator"])


class RateLimitsEntry(Entry):
    per_user_per_minute: Count = 10
    global_per_minute: Count = 60


class LeaseEntry(Entry):
    default: Duration = 900.0
    max: Annotated[float, BeforeValidator(parse_duration), Field(gt=0, le=LEASE_S_MAX)] = 3600.0
    refresh: Duration | None = None


class HeartbeatEntry(Entry):
    tag: Text
    period: Duration = 15.0
    scope: Literal["leased", "all"] = "leased"


class BlastRadiusEntry(Entry):
    per_command: Count = 1
    per_minute: Count | None = None  # default: per_command
    max_with_approval: Count | None = None  # default: per_command


class ParamEntry(Entry):
    type: Literal["int", "float", "str", "bool"]
    min: float | None = None
    max: float | None = None
    max_length: Annotated[int, Field(ge=0)] | None = None
    choices: list[Scalar] | None = None


class WriteEntry(Entry):
    tag: Text
    value: Scalar  # a literal or exactly one "{name}" placeholder
    tolerance: Annotated[float, Field(ge=0)] | None = None  # read-back tolerance


class _Condition(Entry):
    """Exactly one comparison (the loader checks which were given, through ``model_fields_set``)."""

    equals: Scalar | None = None
    not_equals: Scalar | None = None
    above: NumberOrPlaceholder | None = None
    below: NumberOrPlaceholder | None = None
    at_least: NumberOrPlaceholder | None = None
    at_most: NumberOrPlaceholder | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None

    def comparisons(self) -> list[tuple[str, Any]]:
        """The (op, operand) pairs given, in the file's spelling (``in``, not ``in_``)."""
        given = self.model_fields_set
        return [(op, getattr(self, "in_" if op == "in" else op)) for op in OPS
                if ("in_" if op == "in" else op) in given]


class TagCondition(_Condition):
    """On a tag of the equipment: ``{tag: presence, equals: true}``."""

    tag: Text


class ParamCondition(_Condition):
    """On a parameter of the command: ``{param: level, at_least: 100}``."""

    param: Text


class VerbEntry(Entry):
    params: dict[str, Any] = Field(default_factory=dict)  # name → ParamEntry
    writes: list[Any]  # WriteEntry
    refresh: list[Any] = Field(default_factory=list)
    release: list[Any] = Field(default_factory=list)
    confirm: list[Any]  # TagCondition: the read-back that proves the command took effect
    safety: Literal["increasing", "neutral", "reducing"] = "neutral"
    increasing_when: Any = None  # ParamCondition
    roles: list[Role] | None = None  # default: the type's
    lease: Literal["hold", "end"] = "hold"


class ThresholdEntry(Entry):
    """A minimum looked up by an identity field of the equipment: ``{identity: road_class, table: {...}}``."""

    identity: Text
    table: Annotated[dict[str, float], Field(min_length=1)]
    default: float | None = None


class RequireEntry(Entry):
    param: Text
    at_least: Any  # a number or a ThresholdEntry


class InterlockEntry(Entry):
    name: Text | None = None  # default: "#<index>"
    verbs: Annotated[list[Text], Field(min_length=1)]
    when: Any = None  # a TagCondition or a list of them (all must hold)
    refuse_if: Any = None  # TagCondition
    require: Any = None  # RequireEntry
    reason: Text  # shown to the operator on refusal


class TypeEntry(Entry):
    critical: bool = False  # select-before-operate
    select_timeout: Duration = 15.0
    confirm_timeout: Duration = 30.0
    roles: list[Role] = Field(default_factory=list)
    lease: Any  # LeaseEntry: every command is a lease
    heartbeat: Any = None  # HeartbeatEntry
    blast_radius: Any = None  # BlastRadiusEntry
    constants: dict[str, Scalar] = Field(default_factory=dict)
    interlocks: list[Any] = Field(default_factory=list)
    verbs: dict[str, Any]  # name → VerbEntry


class MatrixEntry(Entry):
    phases: Annotated[int, Field(ge=1, le=MAX_PHASES)] | None = None  # default: inherited, else 8
    permissive: list[Any] = Field(default_factory=list)  # pairs [a, b]


Colour = Literal["green", "yellow"]


def _both_colours() -> list[Colour]:
    return ["green", "yellow"]


class JunctionsEntry(Entry):
    """The fixed keys; every other key is a junction id (its matrix or a layout name)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    samples_before_flash: Count = 2
    conflict_colours: list[Colour] = Field(default_factory=_both_colours)
    layouts: dict[str, Any] = Field(default_factory=dict)  # name → MatrixEntry
    default: Any = None  # MatrixEntry
    layout_param: Text = "layout"  # the inventory column naming a junction's layout


class CrisisStepEntry(Entry):
    target: Text
    verb: Text
    params: dict[str, Any] = Field(default_factory=dict)


class CrisisPlanEntry(Entry):
    description: str = ""
    lease: Duration | None = None
    steps: Annotated[list[Any], Field(min_length=1)]  # CrisisStepEntry
    roles: list[Role] | None = None  # default: crisis_roles


class CommandsFile(Entry):
    approval: Any = None  # ApprovalEntry
    rate_limits: Any = None  # RateLimitsEntry
    crisis_roles: list[Role] = Field(default_factory=lambda: ["supervisor", "administrator"])
    types: dict[str, Any] = Field(default_factory=dict)  # template → TypeEntry
    junctions: Any = None  # JunctionsEntry
    crisis_plans: dict[str, Any] = Field(default_factory=dict)  # name → CrisisPlanEntry


JUNCTION_KEYS = tuple(JunctionsEntry.model_fields)
