"""A corpus of broken configurations: each mistake gives exactly the expected `file:line: who: what`.

Every case edits the small valid city of conftest.py (a text replacement in tags.yaml or alarms.yaml,
or an extra inventory file) and asserts the complete list of problems, so a regression in the line
marks, in the wording or a cascade of follow-up errors is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scada.config import check_city, load_city
from scada.errors import ConfigError
from tests.core.conftest import BASE_ALARMS, BASE_TAGS, City

pytestmark = pytest.mark.usefixtures("english")  # the expected texts are English (tests/conftest.py)


@dataclass
class Case:
    id: str
    tags: list[tuple[str, str]]
    alarms: list[tuple[str, str]]
    files: dict[str, str] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)


CASES = [
    Case(
        "yaml_syntax",
        tags=[("scan_classes: {fast: 1s, normal: 10s}", "scan_classes: {fast: 1s, normal: 10s")],
        alarms=[],
        files={},
        expected=["tags.yaml:3: YAML syntax error: expected ',' or '}', but got ':'"],
    ),
    Case(
        "duplicate_key",
        tags=[("site: test-city\n", "site: test-city\nsite: other\n")],
        alarms=[],
        files={},
        expected=["tags.yaml:2: duplicate key 'site' (first defined on line 1); remove or rename one"],
    ),
    Case(
        "top_level_list",
        tags=[(BASE_TAGS, "- site\n- scan_classes\n")],
        alarms=[],
        files={},
        expected=["tags.yaml:1: must be a mapping of fields, got a list"],
    ),
    Case(
        "unknown_top_field",
        tags=[("site: test-city\n", "site: test-city\nscan_clases: {}\n")],
        alarms=[],
        files={},
        expected=["tags.yaml:2: unknown field 'scan_clases' (did you mean 'scan_classes'?)"],
    ),
    Case(
        "missing_site",
        tags=[("site: test-city\n", "")],
        alarms=[],
        files={},
        expected=["tags.yaml:1: 'site' is required"],
    ),
    Case(
        "bad_duration",
        tags=[("normal: 10s}", "normal: 10 parsecs}")],
        alarms=[],
        files={},
        expected=["tags.yaml:2: 'scan_classes.normal' must be a duration like 10s, 500ms, 5min, got '10 parsecs'"],
    ),
    Case(
        "zero_period",
        tags=[("fast: 1s,", "fast: 0s,")],
        alarms=[],
        files={},
        expected=["tags.yaml:2: scan class 'fast': period must be positive, got 0.0"],
    ),
    Case(
        "unknown_protocol",
        tags=[("    protocol: serial_ascii\n    connection", "    protocol: serial_asci\n    connection")],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:7: device 'bus1': 'protocol' must be one of modbus_tcp, modbus_rtu, opcua, snmp, serial_ascii, got 'serial_asci' (did you mean 'serial_ascii'?)"
        ],
    ),
    Case(
        "device_unknown_scan",
        tags=[
            (
                "    connection: {port: /dev/null}\n    scan: normal",
                "    connection: {port: /dev/null}\n    scan: quick",
            )
        ],
        alarms=[],
        files={},
        expected=["tags.yaml:9: device 'bus1': 'scan' must be one of fast, normal, got 'quick'"],
    ),
    Case(
        "device_duplicate",
        tags=[
            (
                "devices:\n",
                "devices:\n  - {name: bus1, protocol: serial_ascii, connection: {port: /dev/x}, scan: normal}\n",
            )
        ],
        alarms=[],
        files={},
        expected=["tags.yaml:7: device 'bus1': duplicate device name (first defined on line 6)"],
    ),
    Case(
        "device_missing_connection_key",
        tags=[("connection: {port: /dev/null}", "connection: {baud: 9600}")],
        alarms=[],
        files={},
        expected=["tags.yaml:8: device 'bus1': protocol serial_ascii needs connection 'port', got ['baud']"],
    ),
    Case(
        "device_negative_timeout",
        tags=[("    scan: normal\ntemplates", "    scan: normal\n    timeout: -1\ntemplates")],
        alarms=[],
        files={},
        expected=["tags.yaml:10: device 'bus1': 'timeout' must not be negative, got -1"],
    ),
    Case(
        "retries_not_int",
        tags=[("    scan: normal\ntemplates", "    scan: normal\n    retries: many\ntemplates")],
        alarms=[],
        files={},
        expected=["tags.yaml:10: device 'bus1': 'retries' must be a whole number, got 'many'"],
    ),
    Case(
        "template_unknown_scan",
        tags=[
            (
                'connection: {endpoint: mb, unit: "{unit}"}\n    scan: normal',
                'connection: {endpoint: mb, unit: "{unit}"}\n    scan: fats',
            )
        ],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:15: template 'cabinet': 'scan' must be one of fast, normal, got 'fats' (did you mean 'fast'?)"
        ],
    ),
    Case(
        "tag_bad_type",
        tags=[("{name: power, type: float,", "{name: power, type: flaot,")],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:18: template 'cabinet' tag 'power': 'type' must be one of bool, int, float, string, enum, got 'flaot' (did you mean 'float'?)"
        ],
    ),
    Case(
        "tag_duplicate",
        tags=[("      - {name: count,", '      - {name: power, type: float, address: "ir:20"}\n      - {name: count,')],
        alarms=[],
        files={},
        expected=["tags.yaml:19: template 'cabinet' tag 'power': duplicate tag name (first defined on line 18)"],
    ),
    Case(
        "tag_bad_modbus_address",
        tags=[('address: "ir:2"', 'address: "hx:2"')],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:18: template 'cabinet' tag 'power': 'address' for modbus_tcp must be coil|di|hr|ir:<offset>, e.g. hr:100, got 'hx:2'"
        ],
    ),
    Case(
        "modbus_overlap",
        tags=[('address: "ir:4", encoding: uint16', 'address: "ir:3", encoding: uint16')],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:19: tag 'dijon/cabinet/C1/count': Modbus ir:3 overlaps 'dijon/cabinet/C1/power' (ir:3 is its last register) on device 'C1' unit 1"
        ],
    ),
    Case(
        "enum_without_map",
        tags=[(", enum: {0: ok, 1: failed}}", "}")],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:20: template 'cabinet' tag 'lamp_{i:02d}/status': an enum tag needs an 'enum' map of value: label"
        ],
    ),
    Case(
        "negative_deadband",
        tags=[("units: W}", "units: W, deadband: -1}")],
        alarms=[],
        files={},
        expected=["tags.yaml:18: template 'cabinet' tag 'power': 'deadband' must be at least 0.0, got -1"],
    ),
    Case(
        "bad_access",
        tags=[("access: rw}", "access: write}")],
        alarms=[],
        files={},
        expected=["tags.yaml:27: template 'panel' tag 'message': 'access' must be one of r, rw, got 'write'"],
    ),
    Case(
        "scale_not_number",
        tags=[("units: W}", "units: W, scale: ten}")],
        alarms=[],
        files={},
        expected=["tags.yaml:18: template 'cabinet' tag 'power': 'scale' must be a number, got 'ten'"],
    ),
    Case(
        "coil_with_float",
        tags=[('address: "di:0"}', 'address: "di:0", encoding: float32}')],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:17: template 'cabinet' tag 'mains_ok': 'di' addresses hold single bits: 'encoding' must be bit, got 'float32'"
        ],
    ),
    Case(
        "rw_on_input_register",
        tags=[("units: W}", "units: W, access: rw}")],
        alarms=[],
        files={},
        expected=["tags.yaml:18: template 'cabinet' tag 'power': 'ir' is a read-only Modbus table, got access 'rw'"],
    ),
    Case(
        "unknown_tag_field",
        tags=[("units: W}", "units: W, unit: W}")],
        alarms=[],
        files={},
        expected=["tags.yaml:18: template 'cabinet' tag 'power': unknown field 'unit' (did you mean 'units'?)"],
    ),
    Case(
        "instance_unknown_template",
        tags=[("template: panel, commune", "template: panle, commune")],
        alarms=[],
        files={},
        expected=["tags.yaml:30: equipment 'P1': unknown template 'panle' (did you mean 'panel'?)"],
    ),
    Case(
        "instance_duplicate_id",
        tags=[("{id: P1, template: panel", "{id: C1, template: panel")],
        alarms=[],
        files={},
        expected=["tags.yaml:30: equipment 'C1': duplicate equipment id (first defined at tags.yaml:29)"],
    ),
    Case(
        "instance_bad_lat",
        tags=[("lat: 47.3, lon: 5.0, params: {unit: 1, n: 3}", "lat: 147.3, lon: 5.0, params: {unit: 1, n: 3}")],
        alarms=[],
        files={},
        expected=["tags.yaml:29: instance 'C1': 'lat' must be at most 90.0, got 147.3"],
    ),
    Case(
        "instance_missing_param",
        tags=[("params: {unit: 1, n: 3}", "params: {unit: 1}")],
        alarms=[],
        files={},
        expected=["tags.yaml:29: equipment 'C1': template 'cabinet' needs param(s) n, got ['unit']"],
    ),
    Case(
        "shared_device_unknown",
        tags=[("    device: bus1\n", "    device: bus2\n")],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:24: template 'panel': 'device' must name a declared device, got 'bus2' (did you mean 'bus1'?)"
        ],
    ),
    Case(
        "unknown_endpoint",
        tags=[("connection: {endpoint: mb,", "connection: {endpoint: mbx,")],
        alarms=[],
        files={},
        expected=["tags.yaml:29: equipment 'C1': unknown endpoint 'mbx' (did you mean 'mb'?)"],
    ),
    Case(
        "repeat_name_without_i",
        tags=[('name: "lamp_{i:02d}/status"', 'name: "lamp/status"')],
        alarms=[],
        files={},
        expected=[
            "tags.yaml:20: template 'cabinet' tag 'lamp/status': a repeated tag's name must contain {i} (e.g. lamp_{i:02d}/level), got 'lamp/status'"
        ],
    ),
    Case(
        "inventory_missing_file",
        tags=[("instances:\n", "inventory:\n  - file: missing.csv\ninstances:\n")],
        alarms=[],
        files={},
        expected=["tags.yaml:29: inventory 'missing.csv': inventory file not found"],
    ),
    Case(
        "inventory_bad_lat",
        tags=[("instances:\n", "inventory:\n  - file: inv.csv\ninstances:\n")],
        alarms=[],
        files={
            "inv__csv": "id,type,commune,latitude,longitude,unit\nP2,panel,Dijon,47.3,5.0,2\nP3,panel,Dijon,north,5.0,3\n"
        },
        expected=["inv.csv:3: row P3: 'lat' must be a number, got 'north'"],
    ),
    Case(
        "inventory_unknown_type",
        tags=[("instances:\n", "inventory:\n  - file: inv.csv\ninstances:\n")],
        alarms=[],
        files={"inv__csv": "id,type,commune,latitude,longitude,unit\nP2,pannel,Dijon,47.3,5.0,2\n"},
        expected=["inv.csv:2: equipment 'P2': unknown template 'pannel' (did you mean 'panel'?)"],
    ),
    Case(
        "inventory_duplicate_id",
        tags=[("instances:\n", "inventory:\n  - file: inv.csv\ninstances:\n")],
        alarms=[],
        files={"inv__csv": "id,type,commune,latitude,longitude,unit\nP1,panel,Dijon,47.3,5.0,2\n"},
        expected=["inv.csv:2: equipment 'P1': duplicate equipment id (first defined at tags.yaml:32)"],
    ),
    Case(
        "inventory_bad_header",
        tags=[("instances:\n", "inventory:\n  - file: inv.csv\ninstances:\n")],
        alarms=[],
        files={"inv__csv": "ident,type,commune\nP2,panel,Dijon\n"},
        expected=[
            "inv.csv:1: header must have columns id, type, commune, latitude, longitude, got ident, type, commune"
        ],
    ),
    Case(
        "alarm_unknown_template",
        tags=[],
        alarms=[("    template: cabinet\n    tag: power", "    template: cabnet\n    tag: power")],
        files={},
        expected=["alarms.yaml:12: rule 'power_high': unknown template 'cabnet' (did you mean 'cabinet'?)"],
    ),
    Case(
        "alarm_unknown_tag",
        tags=[],
        alarms=[("tag: power\n", "tag: powr\n")],
        files={},
        expected=[
            "alarms.yaml:13: rule 'power_high': no tag of template 'cabinet' matches 'powr' (did you mean 'power'?)"
        ],
    ),
    Case(
        "alarm_limit_on_bool",
        tags=[],
        alarms=[("tag: power\n", "tag: mains_ok\n")],
        files={},
        expected=[
            "alarms.yaml:13: rule 'power_high': a high rule needs numeric (int/float) tags, got bool for 'mains_ok'"
        ],
    ),
    Case(
        "alarm_missing_limit",
        tags=[],
        alarms=[("    limit: 100\n", "")],
        files={},
        expected=["alarms.yaml:14: rule 'power_high': a high rule needs a 'limit'"],
    ),
    Case(
        "alarm_bad_priority",
        tags=[],
        alarms=[("priority: 3", "priority: 5")],
        files={},
        expected=["alarms.yaml:16: rule 'power_high': 'priority' must be one of 1, 2, 3, 4, diagnostic, got 5"],
    ),
    Case(
        "alarm_duplicate_name",
        tags=[],
        alarms=[("name: power_high", "name: mains_lost")],
        files={},
        expected=["alarms.yaml:11: rule 'mains_lost': duplicate rule name (first defined on line 3)"],
    ),
    Case(
        "alarm_reserved_system_name",
        tags=[],
        alarms=[("name: power_high", "name: system.historian.buffer_high")],
        files={},
        expected=["alarms.yaml:11: rule 'system.historian.buffer_high': rule names starting with 'system.' are "
                  "reserved for the system's own alarms, got 'system.historian.buffer_high'"],
    ),
    Case(
        "alarm_bad_on_delay",
        tags=[],
        alarms=[("    priority: 3\n", "    priority: 3\n    on_delay: soon\n")],
        files={},
        expected=["alarms.yaml:17: rule 'power_high': 'on_delay' must be a duration like 10s, 500ms, 5min, got 'soon'"],
    ),
    Case(
        "alarm_unknown_service",
        tags=[],
        alarms=[
            (
                '    limit: 100\n    priority: 3\n    message: "Cabinet {id} power {value}"\n    service: lighting',
                '    limit: 100\n    priority: 3\n    message: "Cabinet {id} power {value}"\n    service: lightning',
            )
        ],
        files={},
        expected=[
            "alarms.yaml:18: rule 'power_high': 'service' must be one of lighting, panels, got 'lightning' (did you mean 'lighting'?)"
        ],
    ),
    Case(
        "alarm_discrete_without_value",
        tags=[],
        alarms=[("    value: false\n", "")],
        files={},
        expected=["alarms.yaml:6: rule 'mains_lost': a discrete rule needs 'value' or 'values' (the abnormal state)"],
    ),
    Case(
        "alarm_suppressed_by_unknown",
        tags=[],
        alarms=[("    value: false\n", "    value: false\n    suppressed_by: power_hihg\n")],
        files={},
        expected=[
            "alarms.yaml:3: rule 'mains_lost': 'suppressed_by' must name another rule, got 'power_hihg' (did you mean 'power_high'?)"
        ],
    ),
    Case(
        "alarm_bad_expression",
        tags=[],
        alarms=[
            (
                "    kind: discrete\n    value: false\n",
                "    kind: expression\n    expression: \"mains_ok and __import__('os')\"\n",
            )
        ],
        files={},
        expected=[
            "alarms.yaml:7: rule 'mains_lost': 'expression' may only use comparisons, and/or/not, + - * / & | and tag names, got Call in \"mains_ok and __import__('os')\""
        ],
    ),
    Case(
        "alarm_expression_unknown_tag",
        tags=[],
        alarms=[("    kind: discrete\n    value: false\n", '    kind: expression\n    expression: "not mains_okay"\n')],
        files={},
        expected=[
            "alarms.yaml:7: rule 'mains_lost': unknown tag 'mains_okay' in expression (did you mean 'mains_ok'?)"
        ],
    ),
    Case(
        "alarm_discrete_unknown_label",
        tags=[],
        alarms=[("    kind: discrete\n    value: false\n", "    kind: discrete\n    value: broken\n"),
                ("tag: mains_ok\n", "tag: \"lamp_*/status\"\n")],
        files={},
        expected=["alarms.yaml:7: rule 'mains_lost': 'broken' is not a state of 'lamp_*/status'; states: failed, ok"],
    ),
    Case(
        "alarm_expression_bad_constant",
        tags=[],
        alarms=[("    kind: discrete\n    value: false\n", "    kind: expression\n    expression: \"mains_ok == 'on'\"\n")],
        files={},
        expected=["alarms.yaml:7: rule 'mains_lost': constants must be numbers, True/False or an enum label of the "
                  "template, got 'on'"],
    ),
]


def _problems(city: City, case: Case) -> list[str]:
    tags, alarms = BASE_TAGS, BASE_ALARMS
    for old, new in case.tags:
        assert old in tags, f"case {case.id}: edit does not apply"
        tags = tags.replace(old, new, 1)
    for old, new in case.alarms:
        assert old in alarms, f"case {case.id}: edit does not apply"
        alarms = alarms.replace(old, new, 1)
    tags_path, alarms_path = city.write(tags, alarms, **case.files)
    config, problems = check_city(tags_path, alarms_path)
    assert config is None
    return [str(p).replace(f"{city.root}/", "") for p in problems]


def test_corpus_has_at_least_30_distinct_mistakes() -> None:
    assert len({c.id for c in CASES}) >= 30
    assert all(c.expected for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_configuration(city: City, case: Case) -> None:
    assert _problems(city, case) == case.expected


def test_base_city_is_valid(city: City) -> None:
    tags_path, alarms_path = city.write()
    config = load_city(tags_path, alarms_path)
    assert len(config.tags) == 3 + 3 + 1  # cabinet tags, 3 repeated lamps, the panel message
    assert config.devices["C1"].connection == {"host": "127.0.0.1", "port": 15020, "unit": 1}
    assert [t.address for t in config.tags if "lamp_" in t.name] == ["ir:100", "ir:102", "ir:104"]


def test_every_problem_is_reported_in_one_run(city: City) -> None:
    """Several mistakes in both files: all of them come out together, sorted by file and line."""
    tags = (
        BASE_TAGS.replace("scan: quick", "")
        .replace("{name: power, type: float,", "{name: power, type: flaot,")
        .replace("template: panel, commune", "template: panle, commune")
    )
    alarms = BASE_ALARMS.replace("priority: 3", "priority: 7").replace("tag: mains_ok\n", "tag: mains\n")
    tags_path, alarms_path = city.write(tags, alarms)
    with pytest.raises(ConfigError) as info:
        load_city(tags_path, alarms_path)
    text = str(info.value).replace(f"{city.root}/", "")
    assert text.splitlines() == [
        "alarms.yaml:5: rule 'mains_lost': no tag of template 'cabinet' matches 'mains' (did you mean 'mains_ok'?)",
        "alarms.yaml:16: rule 'power_high': 'priority' must be one of 1, 2, 3, 4, diagnostic, got 7",
        "tags.yaml:18: template 'cabinet' tag 'power': 'type' must be one of bool, int, float, string, enum, "
        "got 'flaot' (did you mean 'float'?)",
        "tags.yaml:30: equipment 'P1': unknown template 'panle' (did you mean 'panel'?)",
    ]


def test_endpoint_overrides_repoint_devices(city: City) -> None:
    tags_path, alarms_path = city.write()
    config = load_city(tags_path, alarms_path, endpoint_overrides={"mb": "127.0.0.1:40999"})
    assert config.devices["C1"].connection["port"] == 40999


def test_missing_file(tmp_path: Path) -> None:
    config, problems = check_city(tmp_path / "nope.yaml")
    assert config is None
    assert [p.what for p in problems] == ["file not found"]
