"""commands.yaml: the shipped vocabulary is valid, limited to allow-listed writes, and every mistake is reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from failsafe.vocabulary import FORBIDDEN_VERB, SNMP_SET_ALLOW_LIST, check_vocabulary, enumerate_writes
from scada.config.generate import generate
from scada.config.loader import load_city
from tests.failsafe.conftest import ROOT, city, vocabulary

PROBLEM = re.compile(r"^[^:]+:\d+: .+")


def test_shipped_vocabulary_is_valid() -> None:
    vocab = vocabulary()
    assert set(vocab.types) == {"junction", "lighting_cabinet", "bollard", "panel", "building", "vehicle"}
    assert set(vocab.types["junction"].verbs) == {"select_plan", "flash", "adopt", "return_to_local"}
    assert set(vocab.types["lighting_cabinet"].verbs) == {"set_level", "adopt", "return_to_schedule"}
    assert set(vocab.types["bollard"].verbs) == {"lower", "raise", "adopt", "return_to_local"}
    assert set(vocab.types["panel"].verbs) == {"show_message", "adopt", "return_to_local"}
    assert vocab.types["junction"].blast.per_command == 1 and vocab.types["bollard"].blast.per_command == 1
    assert vocab.types["junction"].critical and vocab.types["bollard"].critical
    assert vocab.types["junction"].select_timeout_s == 15 and vocab.approval_window_s == 120
    assert vocab.types["junction"].verbs["flash"].safety == "increasing"
    assert vocab.types["lighting_cabinet"].verbs["set_level"].safety_of({"level": 100}) == "increasing"
    assert vocab.types["lighting_cabinet"].verbs["set_level"].safety_of({"level": 60}) == "neutral"
    building = vocab.types["building"]
    assert set(building.verbs) == {"arm_intrusion", "disarm_intrusion", "adopt", "return_to_local"}
    assert building.critical and building.blast.per_command == 1
    assert building.verbs["arm_intrusion"].safety == "neutral"
    assert building.verbs["disarm_intrusion"].safety == "reducing"  # second person
    assert building.verbs["return_to_local"].lease == "end"
    assert all(v.release for v in building.verbs.values() if v.lease == "hold")


def test_building_verbs_write_only_the_two_opcua_arming_points() -> None:
    """The BMS is written over OPC UA: only the two rw arming points, never the armed/alarm/door states."""
    writes = [w for w in enumerate_writes(vocabulary(), city()) if w.type == "building"]
    assert {w.protocol for w in writes} == {"opcua"}
    assert {w.address for w in writes} == {"nsu=urn:city:bms;s={id}/intrusion/arm_request",
                                           "nsu=urn:city:bms;s={id}/intrusion/arm_lease"}
    # the lease refresh never re-asserts the request (a building whose first one in disarmed stays local)
    assert {w.tag for w in writes if w.phase == "refresh"} == {"intrusion_arm_lease"}
    assert {(w.verb, w.tag) for w in writes if w.phase == "release"} == {
        ("arm_intrusion", "intrusion_arm_request"), ("disarm_intrusion", "intrusion_arm_request"),
        ("adopt", "intrusion_arm_request")}


def test_every_snmp_set_the_system_can_issue_is_allow_listed() -> None:
    """Named test: enumerate every write of every verb (command, refresh, release) and heartbeat."""
    writes = list(enumerate_writes(vocabulary(), city()))
    snmp = {w.address for w in writes if w.protocol == "snmp"}
    assert snmp, "the junction verbs issue SNMP SETs"
    assert snmp <= set(SNMP_SET_ALLOW_LIST), snmp - set(SNMP_SET_ALLOW_LIST)
    assert {SNMP_SET_ALLOW_LIST[a] for a in snmp} == {"systemPatternControl", "unitBackupTime"}
    # and every write of any protocol targets a tag the configuration declares writable
    by_name = {(t.template_tag, c.template) for c in city().equipment.values() for t in city().tags
               if t.equipment == c.id and t.writable}
    assert all((w.tag, w.type) in by_name for w in writes)


def test_no_verb_addresses_a_signal_head_channel_or_phase() -> None:
    for policy in vocabulary().types.values():
        for verb in policy.verbs:
            assert not FORBIDDEN_VERB.search(verb), verb
    for bad in ("set_phase_green", "channel_on", "force_stage", "hold_phase", "signal_group_red", "green"):
        assert FORBIDDEN_VERB.search(bad), bad


def _city_copy(tmp_path: Path, extra_rw_tag: bool = False) -> Path:
    shutil.copytree(ROOT / "inventory", tmp_path / "inventory")
    text = (ROOT / "tags.yaml").read_text(encoding="utf-8")
    if extra_rw_tag:
        anchor = "      - {name: unit_backup_time,"
        text = text.replace(anchor, "      - {name: phase_omit, type: int, address: 1.3.6.1.4.1.1206.4.2.1.1.5.1.2.1, "
                                    "access: rw}\n" + anchor)
    (tmp_path / "tags.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "tags.yaml"


def _problems(tmp_path: Path, commands: str, extra_rw_tag: bool = False) -> list[str]:
    c = load_city(_city_copy(tmp_path, extra_rw_tag), ROOT / "alarms.yaml")
    path = tmp_path / "commands.yaml"
    path.write_text(commands, encoding="utf-8")
    vocab, problems = check_vocabulary(path, c)
    assert vocab is None
    out = [str(p) for p in sorted(problems)]
    assert all(PROBLEM.match(p) for p in out), out
    return [p.split("commands.yaml:", 1)[1] for p in out]


BASE = """\
types:
  junction:
    critical: true
    roles: [operator]
    lease: {default: 15min, max: 1h, refresh: 10s}
    verbs:
"""


def test_a_signal_head_verb_and_a_non_allow_listed_set_are_refused(tmp_path: Path) -> None:
    problems = _problems(tmp_path, BASE + """\
      set_phase_green:
        writes: [{tag: system_pattern_control, value: 1}]
        release: [{tag: system_pattern_control, value: 0}]
        confirm: [{tag: coord_pattern_status, equals: 1}]
      omit:
        writes: [{tag: phase_omit, value: 255}]
        release: [{tag: phase_omit, value: 0}]
        confirm: [{tag: phase_omit, equals: 255}]
      stop_it:
        writes: [{tag: phase_omit, value: 255}]
        release: [{tag: system_pattern_control, value: 0}]
        confirm: [{tag: coord_pattern_status, equals: 1}]
""", extra_rw_tag=True)
    assert problems[0].startswith("7: verb 'junction.set_phase_green': no verb may address an individual signal head")
    assert problems[1].startswith("11: verb 'junction.omit': no verb may address")
    assert problems[2] == ("16: verb 'junction.stop_it': SNMP SETs are limited to systemPatternControl, unitBackupTime, "
                           "got 'phase_omit' (1.3.6.1.4.1.1206.4.2.1.1.5.1.2.1)")
    assert len(problems) == 3, problems


def test_an_opcua_verb_is_held_to_the_same_rw_rule(tmp_path: Path) -> None:
    """OPC UA has no allow-list of its own: the rw declaration in tags.yaml is the whole rule, and it holds."""
    problems = _problems(tmp_path, """\
types:
  building:
    roles: [operator]
    lease: {default: 1h, max: 2h}
    verbs:
      fake_all_clear:
        writes: [{tag: intrusion_alarm, value: false}, {tag: intrusion_armed, value: true}]
        release: [{tag: intrusion_arm_request, value: 0}]
        confirm: [{tag: intrusion_alarm, equals: false}]
""")
    assert problems == [
        "7: verb 'building.fake_all_clear': 'tag' must be writable (access rw in tags.yaml), got 'intrusion_alarm' "
        "with access 'r'",
        "7: verb 'building.fake_all_clear': 'tag' must be writable (access rw in tags.yaml), got 'intrusion_armed' "
        "with access 'r'"], problems


def test_config_mistakes_are_all_reported_with_lines(tmp_path: Path) -> None:
    problems = _problems(tmp_path, BASE + """\
      flash:
        safety: increasin
        writes:
          - {tag: phase_greens, value: 255}
          - {tag: system_pattern_contrl, value: "{plann}"}
        confirm: [{tag: coord_pattern_status, equalz: 255}]
  lighting_cabinet:
    lease: {default: 13h, max: 12h}
    roles: [operator]
    blast_radius: {per_command: 0}
    verbs:
      set_level:
        params: {level: {type: integer}}
        writes: [{tag: override_level, value: 5}]
        confirm: [{tag: mode, equals: 1}]
  parking:
    roles: [operator]
    lease: {default: 1h, max: 1h}
    verbs: {}
  tram: {}
junctions:
  J001: triangle
  J999: cross4
  default: {phases: 4, permissive: [[1, 5]]}
crisis_plans:
  c1:
    steps: [{target: J001, verb: dance}, {target: XX1, verb: flash}]
""")
    release = "a verb that holds a lease needs 'release' writes (what returns the device to local control at lease end)"
    assert problems == [
        f"7: verb 'junction.flash': {release}, got none",
        "8: verb 'junction.flash': 'safety' must be one of increasing, neutral, reducing, got 'increasin' (did you "
        "mean 'increasing'?)",
        "10: verb 'junction.flash': 'tag' must be writable (access rw in tags.yaml), got 'phase_greens' with access 'r'",
        "11: verb 'junction.flash': 'tag' must be a tag of template 'junction', got 'system_pattern_contrl' (did you "
        "mean 'system_pattern_control'?)",
        "11: verb 'junction.flash': a placeholder must name one of address, endpoint, install_date, lease_s, "
        "manufacturer, model, name, snmp_version, got '{plann}'",
        "12: verb 'junction.flash': unknown field 'equalz' (did you mean 'equals'?)",
        "14: type 'lighting_cabinet' lease: 'default' must not exceed 'max' (43200 s), got 46800 s",
        "16: type 'lighting_cabinet' blast radius: 'per_command' must be at least 1, got 0",
        f"18: verb 'lighting_cabinet.set_level': {release}, got none",
        "19: verb 'lighting_cabinet.set_level' parameter 'level': 'type' must be one of int, float, str, bool, "
        "got 'integer' (did you mean 'int'?)",
        "25: type 'parking': a commandable type needs at least one verb, got none",
        "26: type 'tram': 'types' must name equipment templates of tags.yaml (bollard, building, camera, junction, "
        "lighting_cabinet, panel, parking, vehicle), got 'tram'",
        "28: junction 'J001': a layout must be one of junctions.layouts (none), got 'triangle'",
        "29: junction 'J999': a key of 'junctions' must be a junction of the city or one of samples_before_flash, "
        "conflict_colours, layouts, default, layout_param, got 'J999'",
        "30: junction default: a permissive pair is two different phases in 1..4, got [1, 5]",
        "33: crisis plan 'c1': 'target' must be equipment of the city, got 'XX1'",
        "33: crisis plan 'c1': 'verb' must be a verb of type 'junction' (flash), got 'dance'",
    ], "\n".join(problems)


def test_road_class_without_a_minimum_is_a_config_error(tmp_path: Path) -> None:
    text = (ROOT / "commands.yaml").read_text(encoding="utf-8").replace("M3: 50, ", "")
    problems = _problems(tmp_path, text)
    # one problem per missing key (not one per cabinet: a full-scale city has hundreds of each class)
    assert problems == ["109: interlock 'lighting_cabinet.road_class_minimum': 'table' needs an entry for every "
                        "road_class of the equipment (or a 'default'), got equipment 'C0004' (inventory/demo.csv:29) "
                        "and 3 more with road_class 'M3'"], problems


@pytest.mark.parametrize("broken", ["types: [", "types:\n  junction: {}\n  junction: {}\n"])
def test_yaml_syntax_errors(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "commands.yaml"
    path.write_text(broken)
    vocab, problems = check_vocabulary(path, city())
    assert vocab is None and problems and problems[0].line > 0


def test_the_full_scale_generated_vocabulary_loads(tmp_path: Path) -> None:
    """`scada config generate --scale dijon` writes a commands.yaml that loads against its own city, unchanged."""
    tags = generate(tmp_path, "dijon", 42, ROOT)
    c = load_city(tags, tmp_path / "alarms.yaml")
    vocab, problems = check_vocabulary(tmp_path / "commands.yaml", c)
    assert problems == [] and vocab is not None
    assert set(vocab.types) == set(vocabulary().types)
    junctions = [e for e in c.equipment.values() if e.template == "junction"]
    assert len(junctions) == 113
    # no per-junction list at full scale: every junction takes the matrix of its inventory `layout` column
    assert all(vocab.matrix_for(j.id) is vocab.layouts[str(j.params.get("layout", j.identity.get("layout")))]
               for j in junctions)
