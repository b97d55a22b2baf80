"""The schema of ``tags.yaml`` and ``alarms.yaml`` (pydantic models, validated item by item).

``tags.yaml``::

    site: dijon-metropole
    lang: fr                      # fr | en: the language of the consoles, messages and numbers
    timezone: Europe/Paris        # an IANA zone: every time shown to a person is in it
    scan_classes: {fast: 1s, normal: 10s, slow: 60s}
    devices:                      # shared devices (a serial bus, a gateway); optional
      - {name: panels-bus-1, protocol: serial_ascii, connection: {port: /dev/ttyS0}, scan: normal}
    templates:                    # equipment types
      junction:
        domain: traffic           # the responsible service
        protocol: snmp
        connection: {host: "{host}", port: "{port}"}   # formatted with the instance's params
        scan: fast                # the device's class; a tag may name its own (scan: slow)
        tags:
          - {name: phase_greens, type: int, address: 1.3.6.1.4.1.1206.4.2.1.1.4.1.4.1}
          - {name: pattern_cycle_1, type: int, address: 1.3.6.1.4.1.1206.4.2.1.4.7.1.2.1, scan: slow}
    instances:                    # listed equipment ...
      - {id: J001, template: junction, commune: Dijon, lat: 47.32, lon: 5.04, params: {...}}
    inventory:                    # ... and/or equipment generated from CSV / GeoJSON files
      - file: inventory/demo.csv

Tags of a template may be repeated (``repeat: "{luminaires}"``, ``name: "lamp_{i:02d}/level"``):
the address then either contains ``{i}`` or has its trailing number advanced by ``stride`` per copy.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from scada.config.units import parse_duration
from scada.format import parse_timezone
from scada.i18n import LANGUAGES, Lang

PROTOCOLS = ("modbus_tcp", "modbus_rtu", "opcua", "snmp", "serial_ascii")
DATA_TYPES = ("bool", "int", "float", "string", "enum")
ENCODINGS = ("int16", "uint16", "int32", "uint32", "float32", "float64", "bit", "string")
ALARM_KINDS = (
    "high_high", "high", "low", "low_low", "discrete", "deviation",
    "rate_of_change", "bad_quality", "expression",
)
LIMIT_KINDS = ("high_high", "high", "low", "low_low", "deviation", "rate_of_change")

Protocol = Literal["modbus_tcp", "modbus_rtu", "opcua", "snmp", "serial_ascii"]
DataType = Literal["bool", "int", "float", "string", "enum"]
Encoding = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bit", "string"]


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


Duration = Annotated[float, BeforeValidator(parse_duration)]
Finite = Annotated[float, AfterValidator(_finite)]
NonNegative = Annotated[float, Field(ge=0), AfterValidator(_finite)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
TimeZone = Annotated[str, AfterValidator(lambda v: parse_timezone(v).key)]
Text = Annotated[str, Field(min_length=1)]


def _message(v: object) -> object:
    """One readable problem for a bad alarm message (pydantic would report each branch of the union)."""
    if isinstance(v, dict):
        if not v:
            raise ValueError(f"must give at least one language ({', '.join(LANGUAGES)})")
        for lang, text in v.items():
            if lang not in LANGUAGES:
                raise ValueError(f"must name languages among {', '.join(LANGUAGES)} (not {lang!r})")
            if not isinstance(text, str) or not text:
                raise ValueError(f"the {lang} message must be a non-empty text")
    elif not isinstance(v, str) or not v:
        raise ValueError(f"must be a non-empty text, or one per language {{{': ..., '.join(LANGUAGES)}: ...}}")
    return v


#: an alarm message: one template in the site's language, or one per language ({fr: ..., en: ...})
Message = Annotated[Text | dict[Lang, Text], BeforeValidator(_message)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class HistorySpec(Strict):
    """Historian settings of one tag (see the historian package)."""

    deviation: NonNegative = 0.0  # swinging-door compression deviation, engineering units
    min_interval: Duration = 0.0
    max_interval: Duration = 900.0
    compress: bool = True


class TagSpec(Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_{}:/.\-]+$")]
    type: DataType
    address: Annotated[str, Field(min_length=1)]
    encoding: Encoding | None = None
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    scale: Finite = 1.0
    offset: Finite = 0.0
    units: str = ""
    deadband: NonNegative = 0.0
    access: Literal["r", "rw"] = "r"
    enum: dict[int, str] | None = None
    description: str = ""
    repeat: int | str | None = None
    stride: int = 1
    stale_after: Annotated[int, Field(ge=1)] = 3  # scan periods without update before 'uncertain'
    history: HistorySpec | None = None
    scan: str | None = None  # the tag's own scan class (faster or slower than its device's); default: the device's


class DeviceSpec(Strict):
    name: Name
    protocol: Protocol
    connection: dict[str, Any]
    scan: str
    timeout: Duration = 1.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    description: str = ""


class TemplateSpec(Strict):
    kind: Name | None = None
    domain: Name
    protocol: Protocol
    device: str | None = None  # a shared device name (may use {params}); default: own device
    connection: dict[str, Any] = Field(default_factory=dict)
    scan: str
    timeout: Duration = 1.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1
    description: str = ""
    tags: list[Any]


class InstanceSpec(Strict):
    id: Name
    template: str
    commune: Annotated[str, Field(min_length=1)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    identity: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)


class InventorySpec(Strict):
    file: Annotated[str, Field(min_length=1)]


class TagsFile(Strict):
    site: Name
    lang: Lang = "fr"
    timezone: TimeZone = "Europe/Paris"
    scan_classes: dict[str, Duration]
    endpoints: dict[str, str] = Field(default_factory=dict)  # logical name → host:port or a device path
    devices: list[Any] = Field(default_factory=list)
    templates: dict[str, Any]
    instances: list[Any] = Field(default_factory=list)
    inventory: list[InventorySpec] = Field(default_factory=list)
    partitions: list[Any] = Field(default_factory=list)  # where devices are polled (scada.config.partitions)


class AlarmRuleSpec(Strict):
    name: Name
    template: str | None = None
    tag: Annotated[str, Field(min_length=1)]
    kind: Literal[
        "high_high", "high", "low", "low_low", "discrete", "deviation",
        "rate_of_change", "bad_quality", "expression",
    ]
    limit: Finite | None = None
    value: bool | int | float | str | None = None
    values: list[bool | int | float | str] | None = None
    setpoint: str | None = None
    expression: str | None = None
    priority: Literal[1, 2, 3, 4, "diagnostic"]
    deadband: NonNegative = 0.0
    on_delay: Duration = 0.0
    off_delay: Duration = 0.0
    message: Message
    area: str = "{commune}"
    service: str
    latched: bool = False
    suppressed_by: str | None = None
    description: str = ""
    # auto: the alarm opens a work order (or joins its equipment's open one) once active, after its on-delay
    work_order: Literal["auto", "manual"] = "manual"


class AlarmsFile(Strict):
    services: list[Name]
    rules: list[Any]
