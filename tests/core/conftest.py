"""Fixtures for the core tests: a small valid city written to a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

BASE_TAGS = """\
site: test-city
scan_classes: {fast: 1s, normal: 10s}
endpoints:
  mb: 127.0.0.1:15020
devices:
  - name: bus1
    protocol: serial_ascii
    connection: {port: /dev/null}
    scan: normal
templates:
  cabinet:
    domain: lighting
    protocol: modbus_tcp
    connection: {endpoint: mb, unit: "{unit}"}
    scan: normal
    tags:
      - {name: mains_ok, type: bool, address: "di:0"}
      - {name: power, type: float, address: "ir:2", units: W}
      - {name: count, type: int, address: "ir:4", encoding: uint16}
      - {name: "lamp_{i:02d}/status", type: enum, address: "ir:100", stride: 2, repeat: "{n}", enum: {0: ok, 1: failed}}
  panel:
    domain: panels
    protocol: serial_ascii
    device: bus1
    scan: normal
    tags:
      - {name: message, type: string, address: MSG, access: rw}
instances:
  - {id: C1, template: cabinet, commune: Dijon, lat: 47.3, lon: 5.0, params: {unit: 1, n: 3}}
  - {id: P1, template: panel, commune: Dijon, lat: 47.3, lon: 5.0, params: {unit: 1}}
"""

BASE_ALARMS = """\
services: [lighting, panels]
rules:
  - name: mains_lost
    template: cabinet
    tag: mains_ok
    kind: discrete
    value: false
    priority: 2
    message: "Cabinet {id} mains lost"
    service: lighting
  - name: power_high
    template: cabinet
    tag: power
    kind: high
    limit: 100
    priority: 3
    message: "Cabinet {id} power {value}"
    service: lighting
"""


class City:
    """Writes tags.yaml / alarms.yaml (and optional extra files) into a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, tags: str = BASE_TAGS, alarms: str = BASE_ALARMS, **files: str) -> tuple[Path, Path]:
        (self.root / "tags.yaml").write_text(tags, encoding="utf-8")
        (self.root / "alarms.yaml").write_text(alarms, encoding="utf-8")
        for name, text in files.items():
            (self.root / name.replace("__", ".")).write_text(text, encoding="utf-8")
        return self.root / "tags.yaml", self.root / "alarms.yaml"


@pytest.fixture
def city(tmp_path: Path) -> City:
    return City(tmp_path)
