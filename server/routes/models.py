"""The API's request and response bodies (pydantic): what /openapi.json publishes.

Request bodies derive from :class:`Strict` (unknown fields refused) and bound every string and list,
so a request is validated in full before any route code runs. The error body is
:class:`server.routes.errors.ErrorBody`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A request body: unknown fields are refused (a typo is an error, never silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    user: str
    role: str
    expires_ms: int
    must_change_password: bool = Field(False, description="the password was set under an older policy: every "
                                       "route but POST /auth/password and /auth/logout answers 403 "
                                       "password_change_required until it is changed")


class PasswordIn(Strict):
    old: Annotated[str, Field(min_length=1, max_length=1024)]
    new: Annotated[str, Field(min_length=1, max_length=1024)]


class PasswordOut(BaseModel):
    user: str
    sessions_revoked: int = Field(description="the account's other sessions, ended by the change")


class Me(BaseModel):
    user: str
    role: str
    expires_ms: int
    permissions: list[str]


class TagRow(BaseModel):
    name: str
    value: float | int | bool | str | None
    quality: str
    source_ms: int
    receive_ms: int
    units: str = ""
    equipment: str = ""
    reason: str = ""  # what the quality alone does not say: "not read yet" (scada.quality.reason)
    enum: dict[str, str] | None = None  # an enumerated tag's labels by code (tags.yaml), so a value reads as a word


class TagPage(BaseModel):
    total: int
    offset: int
    tags: list[TagRow]


class TagDetail(TagRow):
    device: str
    address: str
    type: str
    access: str
    description: str
    deadband: float


class EquipmentRow(BaseModel):
    id: str
    template: str
    kind: str
    domain: str
    commune: str
    lat: float
    lon: float
    device: str
    # where each luminaire of a lighting cabinet stands (inventory column lamp_positions), lamp_01 first
    lamps: list[tuple[float, float]] = []
    name: str = ""  # the inventory's name and address (identity): shown beside the id in every console view
    address: str = ""


class EquipmentPage(BaseModel):
    total: int
    offset: int
    equipment: list[EquipmentRow]


class EquipmentSheet(EquipmentRow):
    identity: dict[str, Any]
    params: dict[str, Any]
    source: str
    device_protocol: str
    tags: list[TagRow]
    alarms: list[dict[str, Any]]
    alarm_history: list[dict[str, Any]]
    commands: list[dict[str, Any]]
    notes: list[str]


class AckIn(Strict):
    ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=5000)] = Field(
        default_factory=list, description="alarm ids (a selection); or give area")
    area: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="acknowledge every unacknowledged alarm of this area")
    service: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    comment: Annotated[str, Field(max_length=500)] = ""


class ShelveIn(Strict):
    duration_s: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None
    one_shot: bool = False
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class ReasonIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class OutOfServiceIn(Strict):
    work_order: Annotated[str, Field(min_length=1, max_length=100)]
    reason: Annotated[str, Field(max_length=500)] = ""


class CommentIn(Strict):
    comment: Annotated[str, Field(max_length=500)] = ""


class AlarmList(BaseModel):
    total: int
    alarms: list[dict[str, Any]]


class ActionOut(BaseModel):
    action: str
    results: list[dict[str, Any]]


class JournalPage(BaseModel):
    offset: int
    entries: list[dict[str, Any]]


class HistoryOut(BaseModel):
    tag: str
    start_ms: int
    end_ms: int
    points: list[dict[str, Any]]
    source: str = Field("raw", description="raw points, 'rollup' (raw data expired: hourly roll-ups) or 'mixed'")
    resolution_s: float | None = Field(None, description="roll-up bucket width when the request was finer than "
                                                         "what the expired part keeps (no values invented)")
    raw_from_ms: int | None = Field(None, description="values before this time come from the roll-ups")


class CommandIn(Strict):
    target: Annotated[str, Field(min_length=1, max_length=200, description="equipment id, or a group name")]
    verb: Annotated[str, Field(min_length=1, max_length=64)]
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    lease_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    targets: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=5000)] | None = None
    comment: Annotated[str, Field(max_length=500)] = ""


class CommandOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    state: str


class CommandList(BaseModel):
    commands: list[dict[str, Any]]


class PlanList(BaseModel):
    plans: list[dict[str, Any]]


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    created_ms: int


class UserIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Literal["viewer", "operator", "supervisor", "maintenance", "engineer", "administrator"]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class UnlockOut(BaseModel):
    name: str
    was_locked: bool


class UserPatch(Strict):
    role: Literal["viewer", "operator", "supervisor", "maintenance", "engineer", "administrator"] | None = None
    disabled: bool | None = None
    password: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class ReloadOut(BaseModel):
    applied: bool
    generation: int | None = None
    problems: list[str] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)
    subsystems: dict[str, Any] = Field(default_factory=dict)


class ConfigOut(BaseModel):
    site: str
    # the language of the server's texts and pushes (settings lang, else the site's): consoles follow it (a default
    # keeps the field optional in the published schema: the API only grows)
    lang: str = ""
    timezone: str
    generation: int
    loaded_ms: int
    files: list[str]
    equipment: int
    devices: int
    tags: int
    alarm_rules: int
    services: list[str]
    areas: list[str]
    domains: list[str]


class AuditPage(BaseModel):
    records: list[dict[str, Any]]


class BackupOut(BaseModel):
    path: str
    files: list[str]
