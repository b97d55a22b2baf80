"""Load, validate and expand the city configuration.

    tags.yaml ─┐                        ┌─ every problem, as file:line: who: what, got what
    inventory ─┼─► parse (line marks) ──┼─► schema, item by item (one bad item hides nothing else)
    alarms.yaml┘                        └─► cross references (scan classes, devices, templates, tags,
                                            Modbus register overlaps, alarm rules on the right tag types)
                                                │
                                                ▼
                                           CityConfig (flat TagDef / DeviceDef / EquipmentDef lists)

All problems of one run are collected and raised together as one :class:`ConfigError`; nothing is
reset to a default and no duplicate is dropped.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from scada.config.inventory import read_inventory
from scada.config.model import CityConfig, DeviceDef, EquipmentDef, TagDef
from scada.config.partitions import PartitionDef, PartitionSpec, resolve_partitions
from scada.config.schema import (
    LIMIT_KINDS,
    PROTOCOLS,
    AlarmRuleSpec,
    AlarmsFile,
    DeviceSpec,
    InstanceSpec,
    TagsFile,
    TagSpec,
    TemplateSpec,
)
from scada.config.units import slug
from scada.config.yamlsource import did_you_mean, line_of, load_yaml, one_of
from scada.errors import ConfigError, ConfigProblem

M = TypeVar("M", bound=BaseModel)

#: Connection keys each protocol needs (values may be "{param}" placeholders).
REQUIRED_CONNECTION: dict[str, tuple[str, ...]] = {
    "modbus_tcp": ("host", "port"),
    "modbus_rtu": ("port",),
    "opcua": ("url",),
    "snmp": ("host", "port"),
    "serial_ascii": ("port",),
}

#: Address syntax per protocol, checked without importing any protocol library.
ADDRESS_SYNTAX: dict[str, tuple[re.Pattern[str], str]] = {
    "modbus_tcp": (re.compile(r"^(coil|di|hr|ir):\d{1,5}$"), "coil|di|hr|ir:<offset>, e.g. hr:100"),
    "modbus_rtu": (re.compile(r"^(coil|di|hr|ir):\d{1,5}$"), "coil|di|hr|ir:<offset>, e.g. hr:100"),
    "snmp": (re.compile(r"^\.?\d+(\.\d+)+$"), "a numeric OID, e.g. 1.3.6.1.2.1.1.3.0"),
    "opcua": (re.compile(r"^(ns=\d+|nsu=[^;]+);(i=\d+|s=.+|g=[0-9a-fA-F-]+|b=.+)$"),
              "a node id, e.g. nsu=urn:city:buildings;s=B001/fire/zone1"),
    "serial_ascii": (re.compile(r"^[A-Z][A-Z0-9_]*$"), "an upper-case field name, e.g. MSG"),
}

REGISTER_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "bit": 1}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)[^{}]*\}")


class Problems:
    """The problems of one run, collected (never raised one by one)."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []

    def add(self, file: str, line: int, who: str, what: str) -> None:
        self.items.append(ConfigProblem(file, line, who, what))


def _field_label(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ".".join(parts) if parts else "value"


def _message(model: type[BaseModel], err: Any) -> str:
    loc = tuple(err["loc"])
    field = _field_label(loc)
    kind = err["type"]
    got = err.get("input")
    if kind == "missing":
        return f"'{field}' is required"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        return f"unknown field '{name}'{did_you_mean(name, model.model_fields)}"
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        choices = [c.strip() for c in expected.replace(" or ", ", ").split(",")]
        listed = expected.replace(" or ", ", ")
        return f"'{field}' must be one of {listed}, got {got!r}{did_you_mean(str(got), choices)}"
    ctx = err.get("ctx", {})
    plain = {
        "int_parsing": "must be a whole number",
        "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "string_type": "must be text",
        "dict_type": "must be a mapping",
        "list_type": "must be a list",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be more than {ctx.get('gt')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": "may only contain letters, digits and _ . - (and / { } : in tag names)",
    }
    if kind in plain:
        return f"'{field}' {plain[kind]}, got {got!r}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"'{field}' {msg}, got {got!r}"


def validate_item(model: type[M], data: Any, file: str, tree: Any, loc: tuple[Any, ...],
                  who: str, out: Problems, line: int | None = None) -> M | None:
    """Validate one item; every error goes to ``out`` with its line (``line`` overrides, for CSV rows)."""
    if not isinstance(data, dict):
        kind = ("nothing" if data is None else "a list" if isinstance(data, list)
                else f"{type(data).__name__} {data!r}" if not isinstance(data, str) else f"text {data!r}")
        out.add(file, line if line is not None else line_of(tree, loc), who, f"must be a mapping of fields, got {kind}")
        return None
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        for err in exc.errors():
            where = line if line is not None else line_of(tree, (*loc, *err["loc"]))
            out.add(file, where, who, _message(model, err))
        return None


def _name_of(item: Any, key: str) -> str:
    if isinstance(item, dict) and isinstance(item.get(key), (str, int)):
        return str(item[key])
    return "?"


def _format(text: str, ctx: dict[str, Any]) -> Any:
    """Format a ``{param}`` string. A value that is exactly one placeholder keeps the param's type."""
    m = _PLACEHOLDER.fullmatch(text)
    if m and m.group(0) == "{" + m.group(1) + "}":
        return ctx[m.group(1)]
    return text.format(**ctx)


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    return set()


def _format_deep(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _format(value, ctx)
    if isinstance(value, dict):
        return {k: _format_deep(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_format_deep(v, ctx) for v in value]
    return value


def resolve_endpoint(connection: dict[str, Any], endpoints: dict[str, str]) -> dict[str, Any]:
    """Replace ``endpoint: <name>`` by ``host``/``port`` (or a serial ``port`` path).

    Endpoints are logical names (``modbus-gw-1``) so that the same ``tags.yaml`` serves the demo's
    fixed ports and the tests' OS-assigned ports: the simulator writes the real ones to a JSON file
    that overrides the ``endpoints:`` section.
    """
    name = connection.get("endpoint")
    if name is None:
        return connection
    target = endpoints[str(name)]
    resolved = {k: v for k, v in connection.items() if k != "endpoint"}
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit() and not target.startswith("/"):
        resolved.setdefault("host", host)
        resolved.setdefault("port", int(port))
    else:
        resolved.setdefault("port", target)
    return resolved


def _advance(address: str, steps: int) -> str:
    """``hr:100`` advanced by 3 → ``hr:103``; ``1.3.6.1.5`` → ``1.3.6.1.8``."""
    m = re.search(r"(\d+)$", address)
    if not m:
        return address
    return address[: m.start()] + str(int(m.group(1)) + steps)


class _Template:
    """A validated template with its validated tags and where each was declared."""

    def __init__(self, name: str, spec: TemplateSpec, tags: list[tuple[TagSpec, int]], line: int) -> None:
        self.name = name
        self.spec = spec
        self.tags = tags
        self.line = line
        self.kind = spec.kind or name
        self.raw_tag_names: set[str] = set()
        self.needs: set[str] = _placeholders(spec.connection) | _placeholders(spec.device or "")
        for tag, _ in tags:
            self.needs |= _placeholders(tag.address) - {"i"}
            if isinstance(tag.repeat, str):
                self.needs |= _placeholders(tag.repeat)


def _check_template(name: str, raw: Any, file: str, tree: Any, scan: dict[str, float],
                    devices: dict[str, DeviceSpec], broken_devices: set[str], out: Problems) -> _Template | None:
    loc: tuple[Any, ...] = ("templates", name)
    who = f"template '{name}'"
    spec = validate_item(TemplateSpec, raw, file, tree, loc, who, out)
    if spec is None:
        return None
    line = line_of(tree, loc)
    if spec.scan not in scan:
        out.add(file, line_of(tree, (*loc, "scan")), who,
                f"'scan' must be one of {one_of(scan)}, got {spec.scan!r}{did_you_mean(spec.scan, scan)}")
    if spec.device is None:
        for key in () if "endpoint" in spec.connection else REQUIRED_CONNECTION[spec.protocol]:
            if key not in spec.connection:
                got = sorted(spec.connection) or "nothing"
                out.add(file, line_of(tree, (*loc, "connection")), who,
                        f"protocol {spec.protocol} needs connection '{key}', got {got}")
    elif not _placeholders(spec.device) and spec.device not in broken_devices:
        dev = devices.get(spec.device)
        if dev is None:
            out.add(file, line_of(tree, (*loc, "device")), who,
                    f"'device' must name a declared device, got {spec.device!r}{did_you_mean(spec.device, devices)}")
        elif dev.protocol != spec.protocol:
            out.add(file, line_of(tree, (*loc, "device")), who,
                    f"device '{spec.device}' speaks {dev.protocol}, but the template's protocol is {spec.protocol}")
    tags: list[tuple[TagSpec, int]] = []
    seen: dict[str, int] = {}
    for i, raw_tag in enumerate(spec.tags):
        tloc = (*loc, "tags", i)
        twho = f"{who} tag '{_name_of(raw_tag, 'name')}'"
        tag = validate_item(TagSpec, raw_tag, file, tree, tloc, twho, out)
        if tag is None:
            continue
        tline = line_of(tree, tloc)
        if tag.name in seen:
            out.add(file, tline, twho, f"duplicate tag name (first defined on line {seen[tag.name]})")
            continue
        seen[tag.name] = tline
        ok = _check_tag(tag, spec.protocol, file, tree, tloc, twho, out)
        if tag.scan is not None and tag.scan not in scan:  # slower or faster than the device's: both fine
            ok = False
            out.add(file, line_of(tree, (*tloc, "scan")), twho,
                    f"'scan' must be one of {one_of(scan)}, got {tag.scan!r}{did_you_mean(tag.scan, scan)}")
        elif tag.scan is not None and spec.protocol == "opcua":
            ok = False
            out.add(file, line_of(tree, (*tloc, "scan")), twho,
                    f"'scan' per tag does not apply to OPC UA (its subscription reports changes), got {tag.scan!r}")
        if ok:
            tags.append((tag, tline))
    tm = _Template(name, spec, tags, line)
    tm.raw_tag_names = {_name_of(t, "name") for t in spec.tags}
    return tm


def _check_tag(tag: TagSpec, protocol: str, file: str, tree: Any, loc: tuple[Any, ...], who: str,
               out: Problems) -> bool:
    ok = True

    def bad(field: str, what: str) -> None:
        nonlocal ok
        ok = False
        out.add(file, line_of(tree, (*loc, field)), who, what)

    if "{" not in tag.address:
        pattern, example = ADDRESS_SYNTAX[protocol]
        if not pattern.match(tag.address):
            bad("address", f"'address' for {protocol} must be {example}, got {tag.address!r}")
    if tag.type == "enum" and not tag.enum:
        bad("type", "an enum tag needs an 'enum' map of value: label")
    if tag.type != "enum" and tag.enum:
        bad("enum", f"'enum' only applies to type enum, got type {tag.type!r}")
    if tag.type in ("string", "bool") and tag.deadband:
        bad("deadband", f"'deadband' only applies to numeric tags, got {tag.deadband} on a {tag.type} tag")
    if tag.repeat is not None and not isinstance(tag.repeat, str) and tag.repeat < 1:
        bad("repeat", f"'repeat' must be at least 1, got {tag.repeat}")
    if tag.repeat is not None and "{i" not in tag.name:
        bad("name", f"a repeated tag's name must contain {{i}} (e.g. lamp_{{i:02d}}/level), got {tag.name!r}")
    if tag.repeat is None and "{" in tag.name:
        bad("name", f"only repeated tags may use placeholders in 'name', got {tag.name!r}")
    if protocol in ("modbus_tcp", "modbus_rtu") and "{" not in tag.address:
        table = tag.address.split(":")[0]
        enc = tag.encoding or default_encoding(tag.type, table)
        if tag.type == "string":
            bad("type", "Modbus tags cannot be of type string")
        elif table in ("coil", "di") and enc != "bit":
            bad("encoding", f"'{table}' addresses hold single bits: 'encoding' must be bit, got {enc!r}")
        elif table in ("hr", "ir") and enc == "bit":
            bad("encoding", f"'{table}' addresses hold registers: 'encoding' must be a register type, got 'bit'")
        if table in ("di", "ir") and tag.access == "rw":
            bad("access", f"'{table}' is a read-only Modbus table, got access 'rw'")
    elif tag.encoding in ("bit",) and protocol not in ("modbus_tcp", "modbus_rtu"):
        bad("encoding", f"'encoding' bit only applies to Modbus, got protocol {protocol}")
    return ok


def default_encoding(dtype: str, table: str) -> str:
    """The Modbus encoding a tag gets when it names none (one source for the loader and the driver)."""
    if table in ("coil", "di"):
        return "bit"
    return {"float": "float32", "int": "int16", "bool": "uint16", "enum": "uint16"}.get(dtype, "uint16")


def _expand_equipment(eq_spec: InstanceSpec, tmpl: _Template, source: str, file: str, line: int,
                      devices: dict[str, DeviceDef], scan: dict[str, float], endpoints: dict[str, str],
                      out: Problems, tags: list[TagDef], broken: set[str]) -> EquipmentDef | None:
    who = f"equipment '{eq_spec.id}'"
    spec = tmpl.spec
    ctx: dict[str, Any] = {**eq_spec.identity, **eq_spec.params, "id": eq_spec.id,
                           "commune": eq_spec.commune, "commune_slug": slug(eq_spec.commune),
                           "lat": eq_spec.lat, "lon": eq_spec.lon}
    missing = sorted(tmpl.needs - set(ctx))
    if missing:
        out.add(file, line, who, f"template '{tmpl.name}' needs param(s) {', '.join(missing)}, "
                                 f"got {sorted(eq_spec.params) or 'no params'}")
        return None
    try:
        if spec.device is not None:
            dev_name = str(_format(spec.device, ctx))
            device = devices.get(dev_name)
            if device is None and (dev_name in broken or not _placeholders(spec.device)):
                return None  # already reported once, at the template (or the device)
            if device is None:
                out.add(file, line, who, f"device '{dev_name}' (from template '{tmpl.name}') is not declared"
                                         f"{did_you_mean(dev_name, devices)}")
                return None
        else:
            dev_name = eq_spec.id
            if dev_name in devices:
                out.add(file, line, who,
                        f"id is already used by device '{dev_name}'; ids and device names must be unique")
                return None
            connection = _format_deep(dict(spec.connection), ctx)
            if "endpoint" in connection and str(connection["endpoint"]) not in endpoints:
                out.add(file, line, who, f"unknown endpoint {connection['endpoint']!r}"
                                         f"{did_you_mean(str(connection['endpoint']), endpoints)}")
                return None
            device = DeviceDef(dev_name, spec.protocol, resolve_endpoint(connection, endpoints), spec.scan,
                               scan.get(spec.scan, 0.0), spec.timeout, spec.retries)
            devices[dev_name] = device
    except (KeyError, ValueError, IndexError) as exc:
        out.add(file, line, who, f"cannot format connection of template '{tmpl.name}', got {exc}")
        return None
    prefix = f"{slug(eq_spec.commune)}/{tmpl.kind}/{eq_spec.id}"
    eq = EquipmentDef(eq_spec.id, tmpl.name, tmpl.kind, spec.domain, eq_spec.commune, eq_spec.lat, eq_spec.lon,
                      dev_name, dict(eq_spec.identity), dict(eq_spec.params), prefix, source)
    unit = ctx.get("unit")
    unit_id = unit if isinstance(unit, int) else None
    device.equipment.append(eq.id)
    pattern, example = ADDRESS_SYNTAX[spec.protocol]
    for tag, tline in tmpl.tags:
        count = 1
        if tag.repeat is not None:
            try:
                count = int(_format(tag.repeat, ctx)) if isinstance(tag.repeat, str) else tag.repeat
            except (KeyError, ValueError) as exc:
                out.add(file, line, who, f"'repeat' of tag '{tag.name}' must give a whole number, got {exc}")
                continue
        for i in range(1, count + 1):
            try:
                name = tag.name.format(i=i) if tag.repeat is not None else tag.name
                if "{" in tag.address:
                    address = str(_format(tag.address, {**ctx, "i": i}))
                    if i == 1 and not pattern.match(address):
                        out.add(file, line, who, f"tag '{name}': 'address' for {spec.protocol} must be "
                                                 f"{example}, got {address!r}")
                        break
                else:
                    address = _advance(tag.address, (i - 1) * tag.stride) if i > 1 else tag.address
            except (KeyError, ValueError, IndexError) as exc:
                out.add(file, tline, f"template '{tmpl.name}' tag '{tag.name}'", f"cannot format, got {exc}")
                break
            full = f"{prefix}/{name}"
            tags.append(TagDef(full, eq.id, name, tag.name, dev_name, address, tag.type, tag.encoding,
                               tag.word_order, tag.byte_order, tag.scale, tag.offset, tag.units, tag.deadband,
                               tag.access, tag.enum, tag.description, tag.stale_after, tag.history, unit_id,
                               scan=tag.scan or "", period_s=scan.get(tag.scan, 0.0) if tag.scan else 0.0))
            device.tags.append(full)
    return eq


def _check_modbus_overlaps(tags: list[TagDef], devices: dict[str, DeviceDef],
                           templates: dict[str, _Template], equipment: dict[str, EquipmentDef],
                           file: str, out: Problems) -> None:
    spans: dict[tuple[str, int | None, str], list[tuple[int, int, TagDef]]] = defaultdict(list)
    for t in tags:
        if devices[t.device].protocol not in ("modbus_tcp", "modbus_rtu"):
            continue
        table, _, off = t.address.partition(":")
        enc = t.encoding or default_encoding(t.dtype, table)
        spans[(t.device, t.unit, table)].append((int(off), REGISTER_WIDTH.get(enc, 1), t))
    reported: set[tuple[str, str, str, str]] = set()
    for (device, unit, table), items in spans.items():
        items.sort(key=lambda s: s[0])
        end, holder = -1, None
        for start, width, tag in items:
            if holder is not None and start < end:
                key = (equipment[holder.equipment].template, equipment[tag.equipment].template,
                       holder.template_tag, tag.template_tag)
                if key not in reported:
                    reported.add(key)
                    tmpl = templates.get(equipment[tag.equipment].template)
                    line = next((ln for s, ln in tmpl.tags if s.name == tag.template_tag), 0) if tmpl else 0
                    out.add(file, line, f"tag '{tag.name}'",
                            f"Modbus {table}:{start} overlaps '{holder.name}' ({table}:{end - 1} is its last "
                            f"register) on device '{device}' unit {unit}")
            if start + width > end:
                end, holder = start + width, tag


def _check_alarms(path: Path, templates: dict[str, _Template], tags: list[TagDef],
                  equipment: dict[str, EquipmentDef], out: Problems) -> tuple[list[AlarmRuleSpec], list[str]]:
    file = str(path)
    tree, problems = load_yaml(path)
    out.items.extend(problems)
    if tree is None:
        return [], []
    top = validate_item(AlarmsFile, tree, file, tree, (), "", out)
    if top is None:
        return [], []
    services = list(top.services)
    rules: list[AlarmRuleSpec] = []
    seen: dict[str, int] = {}
    by_tmpl_tags: dict[str, dict[str, TagDef]] = defaultdict(dict)
    for t in tags:  # one example expanded tag per template tag name
        tmpl = equipment[t.equipment].template if t.equipment in equipment else ""
        by_tmpl_tags[tmpl].setdefault(t.tag, t)
    specs_by_tmpl = {name: {s.name: s for s, _ in tm.tags} for name, tm in templates.items()}
    pending_suppress: list[tuple[AlarmRuleSpec, int, str]] = []
    for i, raw in enumerate(top.rules):
        loc: tuple[Any, ...] = ("rules", i)
        who = f"rule '{_name_of(raw, 'name')}'"
        rule = validate_item(AlarmRuleSpec, raw, file, tree, loc, who, out)
        if rule is None:
            continue
        line = line_of(tree, loc)

        def bad(field: str, what: str, _loc: tuple[Any, ...] = loc, _who: str = who) -> None:
            out.add(file, line_of(tree, (*_loc, field)), _who, what)

        if rule.name in seen:
            bad("name", f"duplicate rule name (first defined on line {seen[rule.name]})")
            continue
        if rule.name.startswith("system."):  # the built-in system alarms (scada.alarms.system)
            bad("name", f"rule names starting with 'system.' are reserved for the system's own alarms, "
                        f"got {rule.name!r}")
            continue
        seen[rule.name] = line
        rules.append(rule)
        if rule.service not in services:
            bad("service", f"'service' must be one of {one_of(services)}, got {rule.service!r}"
                           f"{did_you_mean(rule.service, services)}")
        matched: list[TagDef] = []
        if rule.template is not None:
            if rule.template not in templates:
                bad("template", f"unknown template {rule.template!r}{did_you_mean(rule.template, templates)}")
                continue
            spec_names = specs_by_tmpl[rule.template]
            matched = [t for n, t in by_tmpl_tags[rule.template].items() if fnmatch.fnmatchcase(n, rule.tag)]
            if not matched:
                matched_specs = [s for n, s in spec_names.items() if fnmatch.fnmatchcase(n, rule.tag)]
                broken_match = any(fnmatch.fnmatchcase(n, rule.tag) for n in templates[rule.template].raw_tag_names)
                if not matched_specs and broken_match:
                    continue  # the tag exists but is invalid: already reported at the tag
                if not matched_specs:
                    bad("tag", f"no tag of template '{rule.template}' matches {rule.tag!r}"
                               f"{did_you_mean(rule.tag, spec_names)}")
                    continue
                dtypes: set[str] = {s.type for s in matched_specs}
            else:
                dtypes = {t.dtype for t in matched}
        else:
            matched = [t for t in tags if fnmatch.fnmatchcase(t.name, rule.tag)]
            if not matched:
                bad("tag", f"no tag matches {rule.tag!r}{did_you_mean(rule.tag, [t.name for t in tags])}")
                continue
            dtypes = {t.dtype for t in matched}
        if rule.kind in LIMIT_KINDS:
            if rule.limit is None:
                bad("kind", f"a {rule.kind} rule needs a 'limit'")
            non_numeric = sorted(dtypes - {"int", "float"})
            if non_numeric:
                bad("tag", f"a {rule.kind} rule needs numeric (int/float) tags, got {', '.join(non_numeric)} "
                           f"for {rule.tag!r}")
        if rule.kind == "discrete" and rule.value is None and not rule.values:
            bad("kind", "a discrete rule needs 'value' or 'values' (the abnormal state)")
        if rule.kind == "discrete":
            _check_discrete_labels(rule, matched, templates, bad)
        if rule.kind == "deviation":
            if rule.setpoint is None:
                bad("kind", "a deviation rule needs a 'setpoint' tag")
            elif rule.template is not None and rule.setpoint not in specs_by_tmpl[rule.template]:
                bad("setpoint", f"unknown setpoint tag {rule.setpoint!r} in template '{rule.template}'"
                                f"{did_you_mean(rule.setpoint, specs_by_tmpl[rule.template])}")
        if rule.kind == "expression":
            names = specs_by_tmpl.get(rule.template or "", {})
            _check_expression(rule, names, bad)
        if rule.suppressed_by is not None:
            pending_suppress.append((rule, line, who))
    rules_by_name = {r.name: r for r in rules}
    for rule, line, who in pending_suppress:
        target = rules_by_name.get(rule.suppressed_by or "")
        if target is None:
            out.add(file, line, who, f"'suppressed_by' must name another rule, got {rule.suppressed_by!r}"
                                     f"{did_you_mean(rule.suppressed_by or '', rules_by_name)}")
        elif target.name == rule.name:
            out.add(file, line, who, "'suppressed_by' must name another rule, got itself")
        elif target.template != rule.template:
            out.add(file, line, who, f"'suppressed_by' rule '{target.name}' is on template {target.template!r}, "
                                     f"not {rule.template!r}")
    return rules, services


_EXPR_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
               ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.BinOp, ast.Add, ast.Sub, ast.Mult,
               ast.Div, ast.Name, ast.Load, ast.Constant, ast.BitAnd, ast.BitOr)


def _check_expression(rule: AlarmRuleSpec, names: dict[str, TagSpec], bad: Any) -> None:
    if not rule.expression:
        bad("kind", "an expression rule needs an 'expression'")
        return
    try:
        tree = ast.parse(rule.expression, mode="eval")
    except SyntaxError as exc:
        bad("expression", f"'expression' is not a valid expression ({exc.msg}), got {rule.expression!r}")
        return
    labels = {label for spec in names.values() if spec.enum for label in spec.enum.values()}
    for node in ast.walk(tree):
        if not isinstance(node, _EXPR_NODES):
            bad("expression", f"'expression' may only use comparisons, and/or/not, + - * / & | and tag names, "
                              f"got {type(node).__name__} in {rule.expression!r}")
            return
        if isinstance(node, ast.Name) and node.id not in names:
            bad("expression", f"unknown tag {node.id!r} in expression{did_you_mean(node.id, names)}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (bool, int, float)):
            if not isinstance(node.value, str) or node.value not in labels:
                bad("expression", f"constants must be numbers, True/False or an enum label of the template, "
                                  f"got {node.value!r}{did_you_mean(str(node.value), labels)}")


def _check_discrete_labels(rule: AlarmRuleSpec, matched: list[TagDef], templates: dict[str, _Template],
                           bad: Any) -> None:
    """Text values of a discrete rule must be enum labels of the matched tags (``failed``, not ``broken``)."""
    wanted = [v for v in ([rule.value] if rule.value is not None else []) + list(rule.values or [])
              if isinstance(v, str)]
    if not wanted:
        return
    enums = [t.enum for t in matched if t.enum]
    if not enums and rule.template in templates:
        enums = [s.enum for s, _ in templates[rule.template].tags
                 if s.enum and fnmatch.fnmatchcase(s.name, rule.tag)]
    labels = {label for enum in enums for label in enum.values()}
    for v in wanted:
        if v not in labels:
            bad("value" if rule.value is not None else "values",
                f"{v!r} is not a state of {rule.tag!r}; states: {one_of(sorted(labels)) or 'none (not an enum tag)'}"
                f"{did_you_mean(v, labels)}")


def _check_partitions(raw: list[Any], file: str, tree: Any, devices: dict[str, DeviceDef],
                      equipment: dict[str, EquipmentDef], templates: set[str],
                      out: Problems) -> dict[str, PartitionDef]:
    """The ``partitions:`` section (scada.config.partitions): each item's schema here, the rules there."""
    specs: list[tuple[PartitionSpec, int]] = []
    for i, item in enumerate(raw):
        who = f"partition '{_name_of(item, 'name')}'"
        spec = validate_item(PartitionSpec, item, file, tree, ("partitions", i), who, out)
        if spec is not None:
            specs.append((spec, line_of(tree, ("partitions", i))))
    if len(specs) < len(raw):  # a broken item: its devices' placement cannot be judged
        return {}
    partitions, problems = resolve_partitions(specs, devices, equipment, templates, line_of(tree, ("partitions",)))
    for line, who, what in problems:
        out.add(file, line, who, what)
    return partitions


def check_city(tags_path: Path | str, alarms_path: Path | str | None = None,
               endpoint_overrides: dict[str, str] | None = None) -> tuple[CityConfig | None, list[ConfigProblem]]:
    """Validate everything; return (config or None, every problem found).

    ``endpoint_overrides`` replaces entries of the ``endpoints:`` section (the simulator's JSON).
    """
    tags_path = Path(tags_path)
    file = str(tags_path)
    out = Problems()
    tree, problems = load_yaml(tags_path)
    out.items.extend(problems)
    if tree is None:
        if alarms_path is not None:  # still report the alarms file's own syntax/schema problems
            atree, aprob = load_yaml(Path(alarms_path))
            out.items.extend(aprob)
            if atree is not None:
                validate_item(AlarmsFile, atree, str(alarms_path), atree, (), "", out)
        return None, out.items
    top = validate_item(TagsFile, tree, file, tree, (), "", out)
    if top is None:
        return None, out.items
    scan = dict(top.scan_classes)
    endpoints = {**top.endpoints, **(endpoint_overrides or {})}
    for name, period in scan.items():
        if period <= 0:
            out.add(file, line_of(tree, ("scan_classes", name)), f"scan class '{name}'",
                    f"period must be positive, got {period}")
    dev_specs: dict[str, DeviceSpec] = {}
    dev_lines: dict[str, int] = {}
    broken_devices: set[str] = set()  # declared but invalid: reported once, not again at each use
    for i, raw in enumerate(top.devices):
        loc = ("devices", i)
        who = f"device '{_name_of(raw, 'name')}'"
        dev = validate_item(DeviceSpec, raw, file, tree, loc, who, out)
        if dev is None:
            broken_devices.add(_name_of(raw, "name"))
            continue
        line = line_of(tree, loc)
        if dev.name in dev_specs:
            out.add(file, line, who, f"duplicate device name (first defined on line {dev_lines[dev.name]})")
            continue
        if dev.scan not in scan:
            out.add(file, line_of(tree, (*loc, "scan")), who,
                    f"'scan' must be one of {one_of(scan)}, got {dev.scan!r}{did_you_mean(dev.scan, scan)}")
        endpoint = dev.connection.get("endpoint")
        if endpoint is not None and str(endpoint) not in endpoints:
            out.add(file, line_of(tree, (*loc, "connection", "endpoint")), who,
                    f"unknown endpoint {endpoint!r}{did_you_mean(str(endpoint), endpoints)}")
        for key in () if "endpoint" in dev.connection else REQUIRED_CONNECTION[dev.protocol]:
            if key not in dev.connection:
                out.add(file, line_of(tree, (*loc, "connection")), who,
                        f"protocol {dev.protocol} needs connection '{key}', got {sorted(dev.connection) or 'nothing'}")
        dev_specs[dev.name] = dev
        dev_lines[dev.name] = line
    templates: dict[str, _Template] = {}
    for name, raw in top.templates.items():
        tm = _check_template(str(name), raw, file, tree, scan, dev_specs, broken_devices, out)
        if tm is not None:
            templates[str(name)] = tm
    known_templates = set(top.templates)
    devices: dict[str, DeviceDef] = {
        d.name: DeviceDef(d.name, d.protocol, resolve_endpoint(dict(d.connection), endpoints), d.scan,
                          scan.get(d.scan, 0.0), d.timeout, d.retries)
        for d in dev_specs.values()
        if "endpoint" not in d.connection or str(d.connection["endpoint"]) in endpoints
    }
    # equipment: listed instances first, then inventory rows
    entries: list[tuple[InstanceSpec, str, str, int]] = []
    for i, raw in enumerate(top.instances):
        loc = ("instances", i)
        inst = validate_item(InstanceSpec, raw, file, tree, loc, f"instance '{_name_of(raw, 'id')}'", out)
        if inst is not None:
            line = line_of(tree, loc)
            entries.append((inst, f"{file}:{line}", file, line))
    for i, inv in enumerate(top.inventory):
        inv_path = (tags_path.parent / inv.file)
        rows, inv_problems = read_inventory(inv_path, inv.file if not Path(inv.file).is_absolute() else str(inv_path))
        for p in inv_problems:
            out.items.append(p if p.line else ConfigProblem(file, line_of(tree, ("inventory", i, "file")),
                                                            f"inventory '{inv.file}'", p.what))
        for row in rows:
            inst = validate_item(InstanceSpec, row.data, row.file, None, (), f"row {row.data['id']}", out, row.line)
            if inst is not None:
                entries.append((inst, row.source, row.file, row.line))
    equipment: dict[str, EquipmentDef] = {}
    tags: list[TagDef] = []
    for inst, source, efile, eline in entries:
        who = f"equipment '{inst.id}'"
        if inst.id in equipment:
            out.add(efile, eline, who, f"duplicate equipment id (first defined at {equipment[inst.id].source})")
            continue
        tmpl = templates.get(inst.template)
        if tmpl is None:
            if inst.template not in known_templates:  # a broken template is reported once, at the template
                out.add(efile, eline, who,
                        f"unknown template {inst.template!r}{did_you_mean(inst.template, known_templates)}")
            continue
        eq = _expand_equipment(inst, tmpl, source, efile, eline, devices, scan, endpoints, out, tags, broken_devices)
        if eq is not None:
            equipment[eq.id] = eq
    _check_modbus_overlaps(tags, devices, templates, equipment, file, out)
    partitions = _check_partitions(top.partitions, file, tree, devices, equipment, set(top.templates), out)
    rules: list[AlarmRuleSpec] = []
    services: list[str] = []
    files = [tags_path]
    if alarms_path is not None:
        files.append(Path(alarms_path))
        rules, services = _check_alarms(Path(alarms_path), templates, tags, equipment, out)
    if out.items:
        return None, out.items
    config = CityConfig(top.site, top.timezone, scan, {n: t.spec for n, t in templates.items()}, devices,
                        equipment, tags, rules, services, files, lang=top.lang, partitions=partitions)
    return config, []


def load_city(tags_path: Path | str, alarms_path: Path | str | None = None,
              endpoint_overrides: dict[str, str] | None = None) -> CityConfig:
    """Load and validate; raise :class:`ConfigError` with every problem if anything is wrong."""
    config, problems = check_city(tags_path, alarms_path, endpoint_overrides)
    if problems or config is None:
        raise ConfigError(problems)
    return config


__all__ = ["PROTOCOLS", "Problems", "check_city", "load_city", "validate_item"]
