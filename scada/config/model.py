"""The expanded city: what the rest of the system consumes after validation.

Templates and inventory rows are expanded into flat records. Tag names are hierarchical and
stable: ``<commune slug>/<kind>/<equipment id>/<tag>``, e.g. ``dijon/junction/J042/phase_greens``.

Scan classes: a device is read at its own class; a tag may name another one (``scan:`` in the template,
faster or slower), and the poller then reads the device in one read group per period::

    DeviceDef J042  scan safety  period_s 0.5
      TagDef phase_greens         scan ""     period_s 0     → read every 0.5 s (the device's class)
      TagDef system_pattern_...   scan fast   period_s 1.0   → every 1 s (with the 0.5 s group: one read)
      TagDef phase_concurrency_1  scan slow   period_s 60.0  → every 60 s

:func:`period_of` is the one rule for "how often is this tag read" (scada.poll groups a device's
points by it; its fastest group sets the device's grid, comm watch and start-up grace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scada.config.partitions import PartitionDef
from scada.config.schema import AlarmRuleSpec, HistorySpec, TemplateSpec


@dataclass(slots=True)
class TagDef:
    name: str  # dijon/junction/J042/phase_greens
    equipment: str  # J042 (empty for tags not tied to equipment)
    tag: str  # phase_greens, lamp_03/level (the part after the equipment)
    template_tag: str  # the template's tag name before repetition: lamp_{i:02d}/level
    device: str
    address: str
    dtype: str  # bool | int | float | string | enum
    encoding: str | None = None
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    deadband: float = 0.0
    access: str = "r"
    enum: dict[int, str] | None = None
    description: str = ""
    stale_after: int = 3
    history: HistorySpec | None = None
    unit: int | None = None  # device sub-address (Modbus unit id, RS-485 address) when shared
    scan: str = ""  # the tag's own scan class (template ``scan:``); "": its device's
    period_s: float = 0.0  # that class's period; 0: its device's (see period_of)

    @property
    def numeric(self) -> bool:
        return self.dtype in ("int", "float", "bool", "enum")

    @property
    def writable(self) -> bool:
        return self.access == "rw"


@dataclass(slots=True)
class DeviceDef:
    name: str
    protocol: str
    connection: dict[str, Any]
    scan: str
    period_s: float
    timeout_s: float
    retries: int
    tags: list[str] = field(default_factory=list)  # names of the tags read through this device
    equipment: list[str] = field(default_factory=list)


def period_of(tag: TagDef, device: DeviceDef) -> float:
    """How often ``tag`` is read: its own scan class's period, else its device's."""
    return tag.period_s or device.period_s


@dataclass(slots=True)
class EquipmentDef:
    id: str
    template: str
    kind: str
    domain: str
    commune: str
    lat: float
    lon: float
    device: str
    identity: dict[str, Any]
    params: dict[str, Any]
    prefix: str  # dijon/junction/J042
    source: str  # tags.yaml:120 or inventory/demo.csv:row 14

    def tag_name(self, tag: str) -> str:
        return f"{self.prefix}/{tag}"


@dataclass(slots=True)
class CityConfig:
    site: str
    timezone: str
    scan_classes: dict[str, float]
    templates: dict[str, TemplateSpec]
    devices: dict[str, DeviceDef]
    equipment: dict[str, EquipmentDef]
    tags: list[TagDef]
    alarm_rules: list[AlarmRuleSpec]
    services: list[str]
    files: list[Path]
    lang: str = "fr"  # the site's language (tags.yaml ``lang:``): messages, numbers and consoles
    # where devices are polled (tags.yaml ``partitions:``); empty: all in-process (scada.config.partitions)
    partitions: dict[str, PartitionDef] = field(default_factory=dict)

    def tag_by_name(self) -> dict[str, TagDef]:
        return {t.name: t for t in self.tags}
