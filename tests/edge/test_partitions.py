"""Partitions are configuration: `partitions:` in tags.yaml, validated with file:line marks, shown by `scada check`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import check
from scada.config import check_city, load_city
from scada.config.partitions import edge_devices, junction_devices, partition_of
from tests.server.test_e2e import fast_city


def city_with(tmp_path: Path, section: str) -> Path:
    tags = fast_city(tmp_path)
    tags.write_text(tags.read_text() + "\n" + section)
    return tags


def line_of(tags: Path, text: str) -> int:
    return next(k for k, line in enumerate(tags.read_text().splitlines(), 1) if text in line)


def problems(tags: Path) -> list[str]:
    config, found = check_city(tags, tags.parent / "alarms.yaml")
    assert config is None and found
    return [str(p) for p in found]


def test_by_template_commune_protocol_devices_and_rest(tmp_path: Path) -> None:
    tags = city_with(tmp_path, """partitions:
  - name: lighting
    templates: [lighting_cabinet]
    source: mqtt://127.0.0.1:1883
  - name: cctv-dijon
    templates: [camera]
    communes: [Dijon]
    source: mqtt://127.0.0.1:1884
  - name: buses
    protocols: [serial_ascii, modbus_rtu]
  - name: central
    devices: [bms-1, fleet-1]
  - name: rest
    rest: true
""")
    config = load_city(tags, tags.parent / "alarms.yaml")
    parts = config.partitions
    assert list(parts) == ["lighting", "cctv-dijon", "buses", "central", "rest"]
    cams = [e for e in config.equipment.values() if e.template == "camera" and e.commune == "Dijon"]
    assert sorted(parts["cctv-dijon"].devices) == sorted(e.device for e in cams) and cams
    assert parts["buses"].devices == ["panels-bus-1", "parking-bus-1"]
    assert parts["central"].devices == ["bms-1", "fleet-1"]
    # every device in exactly one partition
    placed = [d for p in parts.values() for d in p.devices]
    assert sorted(placed) == sorted(config.devices) and len(placed) == len(set(placed))
    assert edge_devices(config) == {*parts["lighting"].devices, *parts["cctv-dijon"].devices}
    assert set(junction_devices(config)) <= set(parts["rest"].devices)
    assert parts["lighting"].broker is not None and parts["lighting"].broker.port == 1883
    assert not parts["rest"].is_edge
    first = parts["lighting"].devices[0]
    found = partition_of(config, first)
    assert found is not None and found.name == "lighting"


def test_no_partitions_is_the_embedded_default(tmp_path: Path) -> None:
    tags = fast_city(tmp_path)
    config = load_city(tags, tags.parent / "alarms.yaml")
    assert config.partitions == {} and edge_devices(config) == set()


def test_a_junction_is_never_in_an_edge_partition(tmp_path: Path) -> None:
    tags = city_with(tmp_path, """partitions:
  - name: traffic
    protocols: [snmp]
    source: mqtt://127.0.0.1:1883
  - name: rest
    rest: true
""")
    got = problems(tags)
    line = line_of(tags, "- name: traffic")
    assert any(p.startswith(f"{tags}:{line}: partition 'traffic': junction devices are polled by the server's "
                            "field-safety monitor, never by an edge") for p in got), got


def test_every_device_in_exactly_one_partition(tmp_path: Path) -> None:
    tags = city_with(tmp_path, """partitions:
  - name: lighting
    templates: [lighting_cabinet]
  - name: again
    protocols: [modbus_tcp]
""")
    got = problems(tags)
    again = line_of(tags, "- name: again")
    assert any(p.startswith(f"{tags}:{again}: partition 'again': device ") and "is already in partition 'lighting'"
               in p for p in got), got
    section = line_of(tags, "partitions:")
    assert any(p.startswith(f"{tags}:{section}: partitions: ") and "device(s) in no partition" in p and "bms-1" in p
               for p in got), got


@pytest.mark.parametrize(("item", "what"), [
    ("  - {name: x, communes: [Dijonn]}", "unknown commune 'Dijonn' (did you mean 'Dijon'?)"),
    ("  - {name: x, devices: [bms-2]}", "unknown device 'bms-2'"),
    ("  - {name: x, templates: [camera], rest: true}", "'rest: true' takes every device left"),
    ("  - {name: x}", "selects nothing"),
    ("  - {name: x, protocols: [snmp], source: 'http://b:1'}", "'source' must be an mqtt://host:port URL"),
    ("  - {name: x, protocols: [mqtt]}", "'protocols' must be one of"),
    ("  - {name: x, templates: [camera], communes: [Talant]}", "selects no device"),
])
def test_bad_items_are_reported_with_their_line(tmp_path: Path, item: str, what: str) -> None:
    tags = city_with(tmp_path, f"partitions:\n{item}\n  - {{name: rest, rest: true}}\n")
    got = problems(tags)
    line = line_of(tags, "- {name: x")
    assert any(p.startswith(f"{tags}:{line}: partition 'x': ") and what in p for p in got), got


def test_scada_check_reports_the_partitions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tags = city_with(tmp_path, """partitions:
  - {name: lighting, templates: [lighting_cabinet], source: "mqtt://127.0.0.1:1883"}
  - {name: rest, rest: true}
""")
    config = load_city(tags, tags.parent / "alarms.yaml")
    args = argparse.Namespace(tags=str(tags), alarms=str(tags.parent / "alarms.yaml"), commands=None, crews=None,
                              intake=None)
    assert check.main(args) == 0
    out = capsys.readouterr().out
    n = len(config.partitions["lighting"].devices)
    assert f"  partition lighting: {n} devices, edge via mqtt://127.0.0.1:1883" in out
    assert f"  partition rest: {len(config.devices) - n} devices, in-process" in out


def test_scada_edge_refuses_an_unknown_partition_or_one_without_a_broker(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from cli import edge

    tags = city_with(tmp_path, "partitions:\n  - {name: lighting, templates: [lighting_cabinet]}\n"
                               "  - {name: rest, rest: true}\n")
    base = {"config": str(tags), "broker": None, "endpoints": None, "host_id": None, "no_host": False, "store": None,
            "duration": 1.0, "data_dir": tmp_path / "data", "username": None}
    assert edge.main(argparse.Namespace(**base, partition="east")) == 2
    err = capsys.readouterr().err
    assert "no partition 'east'" in err and "(partitions: lighting, rest)" in err
    assert edge.main(argparse.Namespace(**base, partition="lighting")) == 2  # in-process: no source, no --broker
    assert "has no source: give --broker" in capsys.readouterr().err
