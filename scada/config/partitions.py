"""Partitions: which devices are polled where (in the server, or by an edge poller over MQTT Sparkplug B).

``tags.yaml``::

    partitions:
      - name: east                        # the Sparkplug edge node id (spBv1.0/<site>/.../east)
        communes: [Quetigny, Chevigny-Saint-Sauveur]
        protocols: [modbus_tcp]           # selectors combine: a device must match every one given
        source: mqtt://127.0.0.1:1883     # consumed from the edge through this broker; absent: in-process
      - name: cctv
        templates: [camera]
        source: mqtt://127.0.0.1:1883
      - name: central
        devices: [bms-1, fleet-1]         # an explicit list
      - name: rest
        rest: true                        # every device no other partition takes (at most one such partition)

A device matches ``communes`` when every equipment it serves is in one of them (a shared device serving
several communes is listed explicitly or taken by ``rest``). No ``partitions:`` section: one implicit
in-process partition, the embedded default.

Rules, reported as ``file:line: partition 'x': what, got what`` with every other configuration problem:

    every device in at most one partition, and in exactly one once partitions are declared
    a junction's device never in an edge partition (``source``): the field-safety monitor polls the
        junctions in the server's own loop (server.components.safety), never through an edge
    a partition selects at least one device; names, communes, templates and devices exist

:func:`edge_devices` is what the server leaves to the edges (its poller skips them);
:func:`junction_devices` is the one definition of "a junction's device".

:func:`partition_fingerprint` is what an edge and the server compare (the edge's NBIRTH carries it): a hash
of what the edge polls and publishes — the site, each device's protocol, timing and protocol options, each
tag's name, address, type, encoding, scaling, units, deadband, access and scan period. Not the addresses
where the field is reached (``host``, ``port``: an edge near the field may reach it by another route, the
simulator's endpoints.json overrides them), nor what only the server uses (descriptions, history, alarms).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from scada.config.schema import Name, Protocol, Strict
from scada.config.yamlsource import did_you_mean

if TYPE_CHECKING:
    from scada.config.model import CityConfig, DeviceDef, EquipmentDef

MQTT_SCHEMES = ("mqtt", "mqtts")  # mqtts: TLS (the broker's certificate verified against a CA, docs/sparkplug.md)
DEFAULT_MQTT_PORT, DEFAULT_MQTTS_PORT = 1883, 8883
JUNCTION_TEMPLATE = "junction"


def _mqtt_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in MQTT_SCHEMES:
        raise ValueError(f"must be an mqtt://host:port URL (schemes: {', '.join(MQTT_SCHEMES)}; mqtts: TLS)")
    if not parts.hostname:
        raise ValueError("must name the broker's host (mqtt://host:port)")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be only mqtt://host:port (no path, query or fragment)")
    return v


MqttUrl = Annotated[str, AfterValidator(_mqtt_url)]


class PartitionSpec(Strict):
    name: Name
    communes: list[Annotated[str, Field(min_length=1)]] | None = None
    protocols: list[Protocol] | None = None
    templates: list[Name] | None = None
    devices: list[Name] | None = None
    rest: bool = False
    source: MqttUrl | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Broker:
    """Where an edge partition's data come from: ``mqtt://host:port``, or ``mqtts://host:port`` over TLS."""

    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Broker:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname or "", parts.port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT), tls)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(slots=True)
class PartitionDef:
    name: str
    devices: list[str]  # in configuration order
    source: str | None = None  # mqtt://host:port: polled by an edge; None: in-process
    line: int = 0
    description: str = ""
    selectors: dict[str, Any] = field(default_factory=dict)

    @property
    def broker(self) -> Broker | None:
        return Broker.parse(self.source) if self.source is not None else None

    @property
    def is_edge(self) -> bool:
        return self.source is not None


def junction_devices(config: CityConfig) -> list[str]:
    """Devices serving at least one junction: polled by the field-safety loop, never by an edge."""
    return _junction_devices(config.devices, config.equipment)


def _junction_devices(devices: dict[str, DeviceDef], equipment: dict[str, EquipmentDef]) -> list[str]:
    return [n for n, d in devices.items()
            if any(e in equipment and equipment[e].template == JUNCTION_TEMPLATE for e in d.equipment)]


def edge_devices(config: CityConfig) -> set[str]:
    """Devices polled by an edge (their partition has a ``source``): the server does not poll them."""
    return {n for p in config.partitions.values() if p.is_edge for n in p.devices}


def partition_of(config: CityConfig, device: str) -> PartitionDef | None:
    return next((p for p in config.partitions.values() if device in p.devices), None)


#: connection keys that say where the field is reached, not what is polled (left out of the fingerprint)
_ROUTE_KEYS = frozenset({"host", "port"})
FINGERPRINT_CHARS = 16


def partition_fingerprint(config: CityConfig, partition: str) -> str:
    """The configuration fingerprint of ``partition`` (see the module docstring): the same tags.yaml gives the
    same fingerprint on the edge and the server; a changed tag, address or scan period another one."""
    part = config.partitions[partition]
    by_name = config.tag_by_name()
    items: list[object] = [config.site, part.name]
    for n in part.devices:
        d = config.devices[n]
        items.append([n, d.protocol, {k: v for k, v in sorted(d.connection.items()) if k not in _ROUTE_KEYS},
                      d.period_s, d.timeout_s, d.retries])
        for t in (by_name[name] for name in d.tags):
            items.append([t.name, t.address, t.dtype, t.encoding, t.word_order, t.byte_order, t.scale, t.offset,
                          t.units, t.deadband, t.access, t.unit, t.period_s or d.period_s])
    text = json.dumps(items, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]


# a problem: (line, who, what); the loader adds the file
Problem = tuple[int, str, str]


def resolve_partitions(specs: list[tuple[PartitionSpec, int]], devices: dict[str, DeviceDef],
                       equipment: dict[str, EquipmentDef], templates: set[str],
                       section_line: int) -> tuple[dict[str, PartitionDef], list[Problem]]:
    """The validated ``partitions:`` items (with their lines) → partitions by name, and every problem found.

    ``section_line`` is the line of the ``partitions:`` section (where devices left in none are reported).
    """
    problems: list[Problem] = []
    out: dict[str, PartitionDef] = {}
    communes = {e.commune for e in equipment.values()}
    junctions = set(_junction_devices(devices, equipment))
    owner: dict[str, str] = {}  # device → the partition that took it first
    rest: PartitionDef | None = None
    for spec, line in specs:
        who = f"partition '{spec.name}'"
        if spec.name in out:
            problems.append((line, who, f"duplicate partition name (first defined on line {out[spec.name].line})"))
            continue
        selectors = {k: v for k, v in (("communes", spec.communes), ("protocols", spec.protocols),
                                       ("templates", spec.templates), ("devices", spec.devices)) if v is not None}
        if spec.rest and selectors:
            problems.append((line, who, f"'rest: true' takes every device left; it cannot also select by "
                                        f"{', '.join(selectors)}"))
            continue
        if not spec.rest and not selectors:
            problems.append((line, who, "selects nothing: give communes, protocols, templates, devices or rest: true"))
            continue
        bad = False
        for c in spec.communes or []:
            if c not in communes:
                problems.append((line, who, f"unknown commune {c!r}{did_you_mean(c, communes)}"))
                bad = True
        for t in spec.templates or []:
            if t not in templates:
                problems.append((line, who, f"unknown template {t!r}{did_you_mean(t, templates)}"))
                bad = True
        for d in spec.devices or []:
            if d not in devices:
                problems.append((line, who, f"unknown device {d!r}{did_you_mean(d, devices)}"))
                bad = True
        part = PartitionDef(spec.name, [], spec.source, line, spec.description, selectors)
        out[spec.name] = part
        if spec.rest:
            if rest is not None:
                problems.append((line, who, f"only one partition may take the rest (partition '{rest.name}', "
                                            f"line {rest.line}, does)"))
            rest = part
            continue
        if bad:
            continue
        part.devices = [n for n, d in devices.items() if _matches(spec, d, equipment)]
        if not part.devices:
            problems.append((line, who, f"selects no device ({_describe(selectors)})"))
        for n in part.devices:
            if n in owner:
                problems.append((line, who, f"device '{n}' is already in partition '{owner[n]}' (line "
                                            f"{out[owner[n]].line}): a device is polled in exactly one place"))
            else:
                owner[n] = spec.name
    if rest is not None:
        rest.devices = [n for n in devices if n not in owner]
        owner.update(dict.fromkeys(rest.devices, rest.name))
    if specs:
        left = [n for n in devices if n not in owner]
        if left:
            problems.append((section_line, "partitions", f"{len(left)} device(s) in no partition (every device must "
                                                         f"be in exactly one; add `rest: true` to one), got "
                                                         f"{', '.join(left[:10])}{' ...' if len(left) > 10 else ''}"))
    for part in out.values():
        if part.is_edge:
            inside = [n for n in part.devices if n in junctions]
            if inside:
                problems.append((part.line, f"partition '{part.name}'",
                                 f"junction devices are polled by the server's field-safety monitor, never by an "
                                 f"edge (source {part.source}), got {', '.join(inside[:10])}"
                                 f"{' ...' if len(inside) > 10 else ''}"))
    return out, problems


def _matches(spec: PartitionSpec, dev: DeviceDef, equipment: dict[str, EquipmentDef]) -> bool:
    if spec.devices is not None and dev.name not in spec.devices:
        return False
    if spec.protocols is not None and dev.protocol not in spec.protocols:
        return False
    served = [equipment[e] for e in dev.equipment if e in equipment]
    if spec.communes is not None and not (served and all(e.commune in spec.communes for e in served)):
        return False
    if spec.templates is not None:
        return bool(served) and all(e.template in spec.templates for e in served)
    return True


def _describe(selectors: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in selectors.items())


__all__ = ["Broker", "PartitionDef", "PartitionSpec", "edge_devices", "junction_devices", "partition_fingerprint",
           "partition_of", "resolve_partitions"]
