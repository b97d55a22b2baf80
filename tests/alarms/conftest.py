"""Fixtures for the alarm tests: a small city with one rule of every kind, a tag feeder, a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from scada.alarms import AlarmEngine
from scada.config import CityConfig, load_city
from scada.journal import Journal
from scada.quality import Quality
from scada.tagdb import TagDatabase

S = 1_000_000_000
T0 = 1_800_000_000 * S  # 2027-01-15T08:00:00Z

MINI_TAGS = """
site: test-city
scan_classes: {fast: 1s, normal: 10s}
templates:
  station:
    domain: utilities
    protocol: modbus_tcp
    connection: {host: 127.0.0.1, port: 1502, unit: "{unit}"}
    scan: fast
    tags:
      - {name: level, type: float, address: "hr:0", encoding: float32, units: "%"}
      - {name: setpoint, type: float, address: "hr:2", encoding: float32}
      - {name: flow, type: float, address: "hr:4", encoding: float32, units: m3/h}
      - name: mode
        type: enum
        address: "hr:6"
        enum: {0: auto, 1: manual, 2: fault}
      - {name: bits, type: int, address: "hr:7"}
      - {name: fault, type: bool, address: "di:0"}
      - {name: mains_ok, type: bool, address: "di:1"}
      - {name: door, type: bool, address: "di:2"}
      - name: "lamp_{i}/status"
        type: enum
        address: "ir:100"
        repeat: "{lamps}"
        enum: {0: ok, 1: failed}
instances:
  - {id: S1, template: station, commune: Dijon, lat: 47.32, lon: 5.04, identity: {address: 1 rue Alpha}, params: {unit: 1, lamps: 3}}
  - {id: S2, template: station, commune: Dijon, lat: 47.33, lon: 5.05, identity: {address: 2 rue Beta}, params: {unit: 2, lamps: 3}}
  - {id: S3, template: station, commune: Chenôve, lat: 47.29, lon: 5.00, identity: {address: 3 rue Gamma}, params: {unit: 3, lamps: 3}}
"""

MINI_ALARMS = """
services: [utilities, lighting, police]
rules:
  - {name: level_high, template: station, tag: level, kind: high, limit: 80, deadband: 5, priority: 3,
     message: "Station {id} ({commune}, {address}): level {value} {units} above {limit}", service: utilities}
  - {name: level_low, template: station, tag: level, kind: low, limit: 10, deadband: 2, priority: 4, on_delay: 10s,
     message: "Station {id}: level low ({value})", service: utilities}
  - {name: flow_deviation, template: station, tag: flow, kind: deviation, setpoint: setpoint, limit: 10, deadband: 2,
     priority: 3, message: "Station {id}: flow {value} off its setpoint", service: utilities}
  - {name: level_rate, template: station, tag: level, kind: rate_of_change, limit: 50, priority: 4,
     message: "Station {id}: level moves fast", service: utilities}
  - {name: manual_mode, template: station, tag: mode, kind: discrete, value: manual, priority: 4, off_delay: 5s,
     message: "Station {id} in {value} mode", service: utilities}
  - {name: trip, template: station, tag: fault, kind: discrete, value: true, priority: 1, latched: true,
     message: "Station {id} tripped", service: utilities}
  - {name: comm_loss, template: station, tag: mains_ok, kind: bad_quality, priority: 2, on_delay: 3s,
     message: "Station {id}: communication lost ({quality})", service: utilities}
  - {name: mains_lost, template: station, tag: mains_ok, kind: discrete, value: false, priority: 2,
     message: "Station {id}: mains lost", service: lighting}
  - {name: lamp_failed, template: station, tag: "lamp_*/status", kind: discrete, value: 1, priority: diagnostic,
     suppressed_by: mains_lost, message: "Lamp {tag} of {id} failed", service: lighting}
  - {name: intrusion, template: station, tag: door, kind: expression, expression: "door and (bits & 4) and mode != 'fault'",
     priority: 2, message: "Intrusion at {id}", service: police}
"""


def write_city(root: Path, tags: str = MINI_TAGS, alarms: str = MINI_ALARMS) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tags.yaml").write_text(tags, encoding="utf-8")
    (root / "alarms.yaml").write_text(alarms, encoding="utf-8")
    return root / "tags.yaml", root / "alarms.yaml"


@pytest.fixture(scope="session")
def mini_config(tmp_path_factory: pytest.TempPathFactory) -> CityConfig:
    tags, alarms = write_city(tmp_path_factory.mktemp("mini"))
    return load_city(tags, alarms)


class Feeder:
    """Writes values into the tag database by short name (``S1/level``) at a given time."""

    def __init__(self, config: CityConfig, db: TagDatabase) -> None:
        self.config = config
        self.db = db

    def name(self, short: str) -> str:
        eq, _, tag = short.partition("/")
        return self.config.equipment[eq].tag_name(tag)

    def __call__(self, values: dict[str, float], t_ns: int, quality: Quality = Quality.GOOD) -> None:
        idx = self.db.indices([self.name(k) for k in values])
        self.db.apply(idx, np.array(list(values.values()), dtype=np.float64),
                      np.full(len(values), int(quality), dtype=np.uint8), t_ns, t_ns)

    def baseline(self, t_ns: int, overrides: dict[str, float] | None = None) -> None:
        """Every station healthy (level 50, flow = setpoint, auto mode, mains ok, lamps ok), but ``overrides``."""
        values: dict[str, float] = {}
        for eq in self.config.equipment:
            values.update({f"{eq}/level": 50.0, f"{eq}/setpoint": 100.0, f"{eq}/flow": 100.0, f"{eq}/mode": 0,
                           f"{eq}/bits": 0, f"{eq}/fault": 0, f"{eq}/mains_ok": 1, f"{eq}/door": 0})
            for i in range(1, 4):
                values[f"{eq}/lamp_{i}/status"] = 0
        self({**values, **(overrides or {})}, t_ns)


@pytest.fixture
def city(mini_config: CityConfig, tmp_path: Path) -> Iterator[tuple[AlarmEngine, Feeder, Journal]]:
    db = TagDatabase(mini_config.tags)
    journal = Journal(tmp_path / "journal.sqlite")
    engine = AlarmEngine(mini_config, db, journal)
    unsubscribe = engine.attach()
    feed = Feeder(mini_config, db)
    feed.baseline(T0)
    yield engine, feed, journal
    unsubscribe()
    journal.close()


def alarm_id(engine: AlarmEngine, rule: str, short: str) -> str:
    eq, _, tag = short.partition("/")
    return f"{rule}:{engine.config.equipment[eq].tag_name(tag)}"


AlarmIdFn = Callable[[AlarmEngine, str, str], str]
