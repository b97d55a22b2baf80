"""Scenario files: every problem as file:line, all in one run; shipped scenarios load; selections are seeded."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.config import CityConfig, load_city
from scada.errors import ConfigError
from sim.scenarios import check_scenario, load_scenario, shipped

pytestmark = pytest.mark.usefixtures("english")  # the expected texts are English (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def city() -> CityConfig:
    return load_city(ROOT / "tags.yaml")


def problems(tmp_path: Path, text: str, config: CityConfig | None = None) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    scenario, found = check_scenario(path, config)
    assert (scenario is None) == bool(found)
    return [str(p).replace(str(path), "s.yaml") for p in found]


def test_shipped_scenarios_load_against_the_demo_city(city: CityConfig) -> None:
    names = {p.stem for p in shipped()}
    assert {"snow_night", "flood_commune", "fibre_cut", "storm", "fire_in_building"} <= names
    for path in shipped():
        scenario = load_scenario(path, city)
        actions = scenario.resolve(city, seed=42)
        assert actions and all(a.equipment for a in actions), path.name
        assert [a.at_s for a in actions] == sorted(a.at_s for a in actions)


def test_a_bare_name_finds_a_shipped_scenario(city: CityConfig) -> None:
    assert load_scenario("storm", city).name == "storm"


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    assert problems(tmp_path, "name: x\nactions:\n  - at: 1s\n    do: [inject\n") == [
        "s.yaml:5: YAML syntax error: expected ',' or ']', but got '<stream end>'"]


def test_schema_problems_are_all_reported_with_lines(tmp_path: Path) -> None:
    text = (
        "name: bad\n"                                         # 1
        "start: yesterday\n"                                  # 2
        "actions:\n"                                          # 3
        "  - at: soon\n"                                      # 4
        "    do: inject\n"                                    # 5
        "    fault: fire_alarm\n"                             # 6
        "    equipment: B001\n"                               # 7
        "  - at: 1min\n"                                      # 8
        "    do: injct\n"                                     # 9
        "    equipment: B001\n"                               # 10
        "  - at: 2min\n"                                      # 11
        "    do: comm_fault\n"                                # 12
        "    equipment: B001\n"                               # 13
        "  - at: 3min\n"                                      # 14
        "    do: comm_fault\n"                                # 15
        "    kind: delay\n"                                   # 16
        "    select: {template: building}\n"                  # 17
        "  - at: 4min\n"                                      # 18
        "    do: clear\n"                                     # 19
        "    equipment: B001\n"                               # 20
        "    select: {template: building, count: 2, fraction: 0.5}\n"  # 21
        "  - at: 5min\n"                                      # 22
        "    do: inject\n"                                    # 23
        "    fault: fire_alarm\n"                             # 24
        "    equipmnt: B001\n"                                # 25
        "  - just a string\n"                                 # 26
    )
    assert problems(tmp_path, text) == [
        "s.yaml:2: scenario: 'start' must be an ISO 8601 date-time like 2026-01-15T22:30:00, got 'yesterday'",
        "s.yaml:4: action 1: 'at' must be a duration like 10s, 500ms, 5min, got 'soon'",
        "s.yaml:9: action 2: 'do' must be one of inject, clear, comm_fault, clear_comm, got 'injct' "
        "(did you mean 'inject'?)",
        "s.yaml:12: action 3: 'comm_fault' needs 'kind', one of drop, delay, corrupt, disconnect",
        "s.yaml:16: action 4: a 'delay' comm fault needs params.delay_s",
        "s.yaml:21: action 5: 'select' give 'count' or 'fraction', not both, got {'template': 'building', "
        "'count': 2, 'fraction': 0.5}",
        "s.yaml:25: action 6: unknown field 'equipmnt'",
        "s.yaml:26: action 7: must be a mapping (at, do, ...), got str",
    ]


def test_missing_top_level_fields(tmp_path: Path) -> None:
    assert problems(tmp_path, "description: nothing\n") == [
        "s.yaml:1: scenario: 'actions' is required", "s.yaml:1: scenario: 'name' is required"]
    assert problems(tmp_path, "- a\n- b\n") == [
        "s.yaml:1: scenario: must be a mapping with name and actions, got a list"]


def test_checks_against_the_city(tmp_path: Path, city: CityConfig) -> None:
    text = (
        "name: city\n"                                                         # 1
        "actions:\n"                                                           # 2
        "  - {at: 1s, do: inject, fault: fire_alarm, equipment: [B001, B0011]}\n"  # 3
        "  - {at: 2s, do: inject, fault: fire_alrm, equipment: B001}\n"        # 4
        "  - {at: 3s, do: inject, fault: mains_loss, select: {template: lighting_cabnet}}\n"  # 5
        "  - {at: 4s, do: comm_fault, kind: drop, select: {commune: Paris}}\n"  # 6
        "  - {at: 5s, do: inject, fault: fire_alarm, select: {template: building, commune: Talant}}\n"  # 7
        "  - {at: 6s, do: inject, fault: dispatch, select: {template: vehicle, near: B099}, params: {to: B099}}\n"  # 8
    )
    assert problems(tmp_path, text, city) == [
        "s.yaml:3: action 1: unknown equipment 'B0011' (did you mean 'B001'?)",
        "s.yaml:4: action 2: building models have no fault 'fire_alrm' (they have fire_alarm, fire_fault, "
        "intrusion, door_forced, frozen) (did you mean 'fire_alarm'?)",
        "s.yaml:5: action 3: 'template' 'lighting_cabnet' matches no equipment (did you mean 'lighting_cabinet'?)",
        "s.yaml:5: action 3: the selection matches no equipment",
        "s.yaml:6: action 4: 'commune' 'Paris' has no equipment",
        "s.yaml:6: action 4: the selection matches no equipment",
        "s.yaml:7: action 5: the selection matches no equipment",
        "s.yaml:8: action 6: 'near' must be an equipment id, got 'B099' (did you mean 'B009'?)",
        "s.yaml:8: action 6: 'to' must be an equipment id, got 'B099' (did you mean 'B009'?)",
    ]
    with pytest.raises(ConfigError) as err:
        load_scenario(tmp_path / "s.yaml", city)
    assert len(err.value.problems) == 9


def test_selections_are_seeded_and_near_picks_the_closest(tmp_path: Path, city: CityConfig) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: sel\n"
        "actions:\n"
        "  - {at: 0s, do: inject, fault: lamp_failure, select: {template: lighting_cabinet, fraction: 0.5}}\n"
        "  - {at: 0s, do: inject, fault: lamp_failure, select: {kind: lighting, commune: dijon, count: 3}}\n"
        "  - {at: 0s, do: inject, fault: dispatch, select: {template: vehicle, near: B003, count: 2},"
        " params: {to: B003}}\n"
        "  - {at: 0s, do: clear, select: {ids: 'J00*'}}\n",
        encoding="utf-8")
    scenario = load_scenario(path, city)
    a, b, c, d = scenario.resolve(city, seed=1)
    assert len(a.equipment) == 6 and a.equipment == scenario.resolve(city, seed=1)[0].equipment
    assert any(scenario.resolve(city, seed=s)[0].equipment != a.equipment for s in range(2, 6))
    assert len(b.equipment) == 3 and all(city.equipment[e].commune == "Dijon" for e in b.equipment)
    b003 = city.equipment["B003"]
    assert c.params == {"lat": b003.lat, "lon": b003.lon}
    from sim.fleet import distance_km

    dist = sorted((distance_km(b003.lat, b003.lon, v.lat, v.lon), v.id) for v in city.equipment.values()
                  if v.template == "vehicle")
    assert set(c.equipment) == {dist[0][1], dist[1][1]}
    assert d.equipment == tuple(f"J00{i}" for i in range(1, 10))
