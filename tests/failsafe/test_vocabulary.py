"""commands.yaml: the shipped vocabulary is valid, limited to allow-listed writes, and every mistake is reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from failsafe.vocabulary import FORBIDDEN_VERB, SNMP_SET_ALLOW_LIST, check_vocabulary, enumerate_writes
from scada.config.loader import load_city
from tests.failsafe.conftest import ROOT, city, vocabulary

PROBLEM = re.compile(r"^[^:]+:\d+: .+")


def test_shipped_vocabulary_is_valid() -> None:
    vocab = vocabulary()
    assert set(vocab.types) == {"junction", "lighting_cabinet", "bollard", "panel", "building"}
    assert set(vocab.types["junction"].verbs) == {"select_plan", "flash", "return_to_local"}
    assert set(vocab.types["lighting_cabinet"].verbs) == {"set_level", "return_to_schedule"}
    assert set(vocab.types["bollard"].verbs) == {"lower", "raise", "return_to_local"}
    assert set(vocab.types["panel"].verbs) == {"show_message"}
    assert vocab.types["junction"].blast.per_command == 1 and vocab.types["bollard"].blast.per_command == 1
    assert vocab.types["junction"].critical and vocab.types["bollard"].critical
    assert vocab.types["junction"].select_timeout_s == 15 and vocab.approval_window_s == 120
    assert vocab.types["junction"].verbs["flash"].safety == "increasing"
    assert vocab.types["lighting_cabinet"].verbs["set_level"].safety_of({"level": 100}) == "increasing"
    assert vocab.types["lighting_cabinet"].verbs["set_level"].safety_of({"level": 60}) == "neutral"
    building = vocab.types["building"]
    assert set(building.verbs) == {"arm_intrusion", "disarm_intrusion", "return_to_local"}
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
        ("arm_intrusion", "intrusion_arm_request"), ("disarm_intrusion", "intrusion_arm_request")}


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
    out = [str(p) for p in problems]
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
    assert problems[2] == ("16: verb 'junction.stop_it': SNMP SET of 'phase_omit' (1.3.6.1.4.1.1206.4.2.1.1.5.1.2.1) "
                           "is outside the allow-list systemPatternControl, unitBackupTime")


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
        "7: verb 'building.fake_all_clear': tag 'intrusion_alarm' is not writable (tags.yaml declares access 'r'); "
        "only access 'rw' tags may be written",
        "7: verb 'building.fake_all_clear': tag 'intrusion_armed' is not writable (tags.yaml declares access 'r'); "
        "only access 'rw' tags may be written"], problems


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
    text = "\n".join(problems)
    expected = [
        "8: verb 'junction.flash': 'safety' must be one of increasing, neutral, reducing, got 'increasin' (did you "
        "mean 'increasing'?)",
        "10: verb 'junction.flash': tag 'phase_greens' is not writable (tags.yaml declares access 'r')",
        "11: verb 'junction.flash': unknown tag 'system_pattern_contrl' (did you mean 'system_pattern_control'?)",
        "11: verb 'junction.flash': unknown placeholder '{plann}'",
        "12: verb 'junction.flash': unknown key 'equalz'",
        "verb 'junction.flash': a verb that holds a lease needs 'release' writes",
        "14: type 'lighting_cabinet': 'lease.default' must not exceed 'lease.max' (43200 s), got 46800 s",
        "16: type 'lighting_cabinet': 'per_command' must be a whole number ≥ 1, got 0",
        "19: verb 'lighting_cabinet.set_level' parameter 'level': 'type' must be one of int, float, str, bool, "
        "got 'integer'",
        "type 'parking': a commandable type needs at least one verb, got none",
        "type 'tram': no equipment template 'tram' in the city configuration",
        "junction 'J001': unknown layout 'triangle'",
        "junction 'J999': no junction 'J999' in the city",
        "junction default: a permissive pair is two different phases in 1..4, got [1, 5]",
        "crisis plan 'c1': type 'junction' has no verb 'dance'",
        "crisis plan 'c1': unknown equipment 'XX1'",
    ]
    for e in expected:
        assert e in text, f"missing: {e}\n--- got:\n{text}"


def test_road_class_without_a_minimum_is_a_config_error(tmp_path: Path) -> None:
    text = (ROOT / "commands.yaml").read_text(encoding="utf-8").replace("M3: 50, ", "")
    problems = _problems(tmp_path, text)
    assert any("equipment 'C0004' (inventory/demo.csv:29) has road_class 'M3' with no entry in the table" in p
               for p in problems), problems


@pytest.mark.parametrize("broken", ["types: [", "types:\n  junction: {}\n  junction: {}\n"])
def test_yaml_syntax_errors(tmp_path: Path, broken: str) -> None:
    path = tmp_path / "commands.yaml"
    path.write_text(broken)
    vocab, problems = check_vocabulary(path, city())
    assert vocab is None and problems and problems[0].line > 0
