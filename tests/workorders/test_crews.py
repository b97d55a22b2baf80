"""crews.yaml: the shipped one matches the demo inventory; every problem of a broken one is reported with its
line, in one run, by ``scada check`` too."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

from scada.config import CityConfig
from scada.workorders import CrewsConfig, check_crews
from tests.workorders.conftest import ROOT

BROKEN = """\
auto_close_after: soon
services:
  lighting:
    templates: [lighting_cabinet, lamp_post]
    sla: {1: 4h, 5: 1d, 2: fast}
  plumbing:
    templates: []
crews:
  - id: north
    service: lightning
    vehicles: [V006, V099]
    accounts: [crew.north]
    shifts: [{days: [mon, funday], start: "07:00", end: "late"}]
  - id: south
    service: lighting
    vehicles: [V006]
    accounts: [crew.north]
    colour: red
  - id: east
    service: lighting
    vehicles: [V006]
    accounts: [crew.north]
"""


def test_shipped_crews_match_the_demo_inventory(city: CityConfig, crews: CrewsConfig) -> None:
    vehicles = {e.id for e in city.equipment.values() if e.template == "vehicle"}
    assert {v for c in crews.crews.values() for v in c.vehicles} <= vehicles
    assert {c.service for c in crews.crews.values()} <= set(city.services)
    assert crews.service_of("lighting_cabinet") == "lighting" and crews.sla_s("lighting", 1) == 4 * 3600
    day = crews.crews["lighting-day"]
    monday_9 = dt.datetime(2026, 12, 7, 9, 0)
    assert day.on_shift(monday_9) and not day.on_shift(monday_9.replace(hour=16))
    night = crews.crews["lighting-night"]  # 18:00 → 02:00, past midnight
    assert night.on_shift(monday_9.replace(hour=1)) and not night.on_shift(monday_9)
    assert crews.crew_of_account("crew.lighting-day") is day and crews.crew_of_account("op") is None


def test_every_problem_with_its_line(tmp_path: Path, city: CityConfig) -> None:
    path = tmp_path / "crews.yaml"
    path.write_text(BROKEN)
    config, problems = check_crews(path, city)
    assert config is None
    got = [f"{p.line}: {p.who}: {p.what}" for p in problems]
    f = str(path)
    assert all(str(p).startswith(f + ":") for p in problems)
    expected = [
        "1: : 'auto_close_after' must be a duration like 10s, 500ms, 5min, got 'soon'",
        "4: service 'lighting': 'templates' must name templates of the city",
        "5: service 'lighting': 'sla' keys must be priorities 1, 2, 3 or 4, got 5",
        "5: service 'lighting': 'sla.2' must be a duration like 10s, 500ms, 5min, got 'fast'",
        "6: service 'plumbing': not a service of alarms.yaml",
        "10: crew 'north': 'service' must be one of the services above (lighting, plumbing), got 'lightning' "
        "(did you mean 'lighting'?)",
        "11: crew 'north': 'vehicles' must name vehicles of the inventory, got 'V099' (did you mean 'V009'?)",
        "13: crew 'north': 'days' must be one of mon, tue, wed, thu, fri, sat, sun, got 'funday'",
        "13: crew 'north': 'end' must be a time of day like 07:00, got 'late'",
        "18: crew 'south': unknown field 'colour'",
        "21: crew 'east': vehicle 'V006' already belongs to crew 'north'",
        "22: crew 'east': account 'crew.north' already belongs to crew 'north'",
    ]
    for want in expected:
        assert any(g.startswith(want) for g in got), (want, got)
    # an entry that does not validate (south) is not cross-checked: nothing is reported twice
    assert len(problems) == len(expected), got


def test_scada_check_reports_crews_problems(tmp_path: Path) -> None:
    bad = tmp_path / "crews.yaml"
    bad.write_text(BROKEN)
    r = subprocess.run([sys.executable, "-m", "cli", "check", str(ROOT / "tags.yaml"), str(ROOT / "alarms.yaml"),
                        "--crews", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1
    assert f"{bad}:10: crew 'north': 'service' must be one of" in r.stderr
    ok = subprocess.run([sys.executable, "-m", "cli", "check", str(ROOT / "tags.yaml"), str(ROOT / "alarms.yaml")],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_generated_dijon_ships_crews_in_real_communes(tmp_path: Path) -> None:
    """``config generate --scale dijon`` writes a crews.yaml that ``scada check`` passes: every vehicle of the
    inventory in exactly one crew, each crew's vehicles based in the commune it is named after, every service
    crewed; the demo scale keeps the shipped crews.yaml."""
    from scada.config import load_city
    from scada.config.generate import COMMUNES, generate, slug

    tags = generate(tmp_path / "dijon", "dijon", 42, ROOT)
    city = load_city(tags, tags.parent / "alarms.yaml")
    crews, problems = check_crews(tags.parent / "crews.yaml", city)
    assert crews is not None, problems
    vehicles = {e.id: e for e in city.equipment.values() if e.template == "vehicle"}
    used = [v for c in crews.crews.values() for v in c.vehicles]
    assert sorted(used) == sorted(vehicles) and len(vehicles) == 205
    communes = {slug(c[0]): c[0] for c in COMMUNES}
    for crew in crews.crews.values():
        commune = communes[crew.id.split("-", 1)[1].rsplit("-", 1)[0]]
        assert {vehicles[v].commune for v in crew.vehicles} == {commune}, crew
        assert 1 <= len(crew.vehicles) <= 3 and crew.accounts == (f"crew.{crew.id}",)
    assert {c.service for c in crews.crews.values()} == set(crews.services)
    assert len({vehicles[v].commune for v in used}) > 10  # spread over the métropole, not one depot
    r = subprocess.run([sys.executable, "-m", "cli", "check", str(tags), str(tags.parent / "alarms.yaml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    demo = generate(tmp_path / "demo", "demo", 7, ROOT)
    assert (demo.parent / "crews.yaml").read_text(encoding="utf-8") == (ROOT / "crews.yaml").read_text(encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "cli", "check", str(demo), str(demo.parent / "alarms.yaml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
