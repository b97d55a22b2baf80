"""Per-tag scan classes in the configuration: a template's tag may name its own class, faster or slower."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.config.loader import check_city, load_city
from scada.config.model import period_of
from scada.tagdb import TagDatabase
from tests.core.conftest import BASE_TAGS, City

ROOT = Path(__file__).resolve().parents[2]


def problems(city: City, tags: str) -> list[str]:
    t, a = city.write(tags=tags)
    _config, found = check_city(t, a)
    return [str(p).replace(str(city.root) + "/", "") for p in found]


def test_a_tag_may_name_a_slower_or_a_faster_class(city: City) -> None:
    tags = BASE_TAGS.replace('      - {name: power, type: float, address: "ir:2", units: W}',
                             '      - {name: power, type: float, address: "ir:2", units: W, scan: fast}') \
                    .replace('      - {name: count, type: int, address: "ir:4", encoding: uint16}',
                             '      - {name: count, type: int, address: "ir:4", encoding: uint16, scan: slow}') \
                    .replace("scan_classes: {fast: 1s, normal: 10s}", "scan_classes: {fast: 1s, normal: 10s, slow: 60s}")
    t, a = city.write(tags=tags)
    config = load_city(t, a)
    by = config.tag_by_name()
    dev = config.devices["C1"]
    assert (by["dijon/cabinet/C1/power"].scan, by["dijon/cabinet/C1/power"].period_s) == ("fast", 1.0)
    assert period_of(by["dijon/cabinet/C1/power"], dev) == 1.0  # faster than the device's 10 s
    assert period_of(by["dijon/cabinet/C1/count"], dev) == 60.0  # slower
    assert (by["dijon/cabinet/C1/mains_ok"].scan, period_of(by["dijon/cabinet/C1/mains_ok"], dev)) == ("", 10.0)
    # staleness counts in the tag's own period: 3 x 1 s, 3 x 60 s, 3 x the device's 10 s
    db = TagDatabase(config.tags)
    limits = db.stale_limits_ns({n: d.period_s for n, d in config.devices.items()})
    got = {n: limits[db.index[f"dijon/cabinet/C1/{n}"]] / 1e9 for n in ("power", "count", "mains_ok")}
    assert got == {"power": 3.0, "count": 180.0, "mains_ok": 30.0}


def test_an_unknown_tag_class_is_reported_with_its_line(city: City) -> None:
    tags = BASE_TAGS.replace('      - {name: power, type: float, address: "ir:2", units: W}',
                             '      - {name: power, type: float, address: "ir:2", units: W, scan: fats}')
    assert problems(city, tags) == [
        "tags.yaml:18: template 'cabinet' tag 'power': 'scan' must be one of fast, normal, got 'fats' "
        "(did you mean 'fast'?)"]


def test_a_tag_class_on_opcua_is_refused(city: City) -> None:
    tags = BASE_TAGS.replace("""instances:""", """  building:
    domain: lighting
    protocol: opcua
    connection: {url: "opc.tcp://127.0.0.1:4840"}
    scan: normal
    tags:
      - {name: fire, type: bool, address: "ns=2;s=fire", scan: fast}
instances:""")
    found = problems(city, tags)
    assert len(found) == 1 and "tag 'fire': 'scan' per tag does not apply to OPC UA" in found[0], found


@pytest.mark.parametrize("tag,period", [("phase_greens", 0.5), ("uptime", 0.5), ("system_pattern_control", 1.0),
                                        ("unit_backup_time", 1.0), ("phase_concurrency_1", 60.0),
                                        ("pattern_cycle_2", 60.0)])
def test_the_shipped_junction_reads_its_status_at_half_a_second(tag: str, period: float) -> None:
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    j = config.equipment["J001"]
    by = config.tag_by_name()
    assert period_of(by[j.tag_name(tag)], config.devices[j.device]) == period
