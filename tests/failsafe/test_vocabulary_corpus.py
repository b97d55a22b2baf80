"""A corpus of broken ``commands.yaml`` files: each mistake gives exactly the expected `file:line: who: what`.

Every case edits the shipped commands.yaml (text replacements, each of which must apply) and checks it
against the shipped city; the complete, sorted list of problems is asserted, so a regression in the
line marks, in the wording, a missing "did you mean" or a cascade of follow-up errors is caught.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from failsafe.vocabulary import check_vocabulary, load_vocabulary
from scada.errors import ConfigError
from tests.failsafe.conftest import ROOT, city

pytestmark = pytest.mark.usefixtures("english")  # the expected texts are English (tests/conftest.py)

SHIPPED = (ROOT / "commands.yaml").read_text(encoding="utf-8")
ROLES = "viewer, operator, supervisor, maintenance, engineer, administrator, crew, monitor"
RELEASE = "a verb that holds a lease needs 'release' writes (what returns the device to local control at lease end)"


@dataclass
class Case:
    id: str
    edits: list[tuple[str, str]]
    expected: list[str] = field(default_factory=list)


CASES = [
    Case("yaml_syntax", [("  window: 120s ", "  window: [120s ")],
         ["commands.yaml:24: YAML syntax error: expected ',' or ']', but got '<scalar>'"]),
    Case("duplicate_key", [("  global_per_minute: 60\n", "  global_per_minute: 60\n  global_per_minute: 90\n")],
         ["commands.yaml:29: duplicate key 'global_per_minute' (first defined on line 28); remove or rename one"]),
    Case("unknown_role_admin", [("crisis_roles: [supervisor, administrator]", "crisis_roles: [supervisor, admin]")],
         [f"commands.yaml:30: 'crisis_roles' must be one of {ROLES}, got 'admin' (did you mean 'administrator'?)"]),
    Case("unknown_approver_role", [("  approver_roles: [supervisor, administrator]",
                                    "  approver_roles: [supervisor, superviser]")],
         [f"commands.yaml:24: approval: 'approver_roles' must be one of {ROLES}, got 'superviser' "
          "(did you mean 'supervisor'?)"]),
    Case("unknown_verb_role", [("        roles: [operator, supervisor, administrator, monitor]",
                                "        roles: [operator, supervisor, administrator, monitr]")],
         [f"commands.yaml:57: verb 'junction.flash': 'roles' must be one of {ROLES}, got 'monitr' "
          "(did you mean 'monitor'?)"]),
    Case("string_for_a_number", [("  per_user_per_minute: 10", "  per_user_per_minute: ten")],
         ["commands.yaml:27: rate_limits: 'per_user_per_minute' must be a whole number, got 'ten'"]),
    Case("quoted_number_is_text", [("plan: {type: int, min: 1, max: 253}", "plan: {type: int, min: 1, max: '253'}")],
         ["commands.yaml:44: verb 'junction.select_plan' parameter 'plan': 'max' must be a number, got '253'"]),
    Case("quoted_boolean_is_text", [("    critical: true                       # select-before-operate",
                                     "    critical: 'true'")],
         ["commands.yaml:34: type 'junction': 'critical' must be true or false, got 'true'"]),
    Case("unknown_top_level_key", [("rate_limits:  ", "rate_limit:   ")],
         ["commands.yaml:26: unknown field 'rate_limit' (did you mean 'rate_limits'?)"]),
    Case("bad_duration", [("    select_timeout: 15s\n    confirm_timeout: 20s\n    roles: [operator, supervisor, "
                           "administrator]\n    lease: {default: 30min",
                           "    select_timeout: 15 parsecs\n    confirm_timeout: 20s\n    roles: [operator, "
                           "supervisor, administrator]\n    lease: {default: 30min")],
         ["commands.yaml:151: type 'bollard': 'select_timeout' must be a duration like 10s, 500ms, 5min, "
          "got '15 parsecs'"]),
    Case("lease_default_over_max", [("lease: {default: 30min, max: 1h, refresh: 60s}",
                                     "lease: {default: 2h, max: 1h, refresh: 60s}")],
         ["commands.yaml:154: type 'bollard' lease: 'default' must not exceed 'max' (3600 s), got 7200 s"]),
    Case("lease_over_16_bits", [("lease: {default: 1h, max: 12h}", "lease: {default: 1h, max: 20h}")],
         ["commands.yaml:214: type 'panel' lease: 'max' must be at most 65535, got '20h'"]),
    Case("unknown_template", [("  panel:\n    critical: false", "  panels:\n    critical: false")],
         ["commands.yaml:210: type 'panels': 'types' must name equipment templates of tags.yaml (bollard, building, "
          "camera, junction, lighting_cabinet, panel, parking, vehicle), got 'panels' (did you mean 'panel'?)"]),
    Case("verb_writes_a_read_only_tag", [("          - {tag: system_pattern_control, value: \"{plan}\"}\n        refresh:",
                                          "          - {tag: coord_pattern_status, value: \"{plan}\"}\n        refresh:")],
         ["commands.yaml:47: verb 'junction.select_plan': 'tag' must be writable (access rw in tags.yaml), "
          "got 'coord_pattern_status' with access 'r'"]),
    Case("verb_writes_an_unknown_tag", [("          - {tag: message, value: \"{text}\"}",
                                         "          - {tag: mesage, value: \"{text}\"}")],
         ["commands.yaml:221: verb 'panel.show_message': 'tag' must be a tag of template 'panel', got 'mesage' "
          "(did you mean 'message'?)"]),
    Case("heartbeat_on_a_read_only_tag", [("    heartbeat: {tag: heartbeat, period: 15s, scope: leased}   #",
                                           "    heartbeat: {tag: mode, period: 15s, scope: leased}   #")],
         ["commands.yaml:99: type 'lighting_cabinet' heartbeat: 'tag' must be writable (access rw in tags.yaml), "
          "got 'mode' with access 'r'"]),
    Case("interlock_on_a_tag_that_does_not_exist", [("refuse_if: {tag: presence, equals: true}",
                                                     "refuse_if: {tag: presense, equals: true}")],
         ["commands.yaml:160: interlock 'bollard.presence': 'tag' must be a tag of template 'bollard', got 'presense' "
          "(did you mean 'presence'?)"]),
    Case("interlock_on_an_unknown_verb", [("        verbs: [raise]\n", "        verbs: [rise]\n")],
         ["commands.yaml:159: interlock 'bollard.presence': 'verbs' must name verbs of type 'bollard' (adopt, lower, "
          "raise, return_to_local), got 'rise' (did you mean 'raise'?)"]),
    Case("interlock_without_reason", [("        reason: \"bollard reports a fault\"\n", "")],
         ["commands.yaml:162: interlock 'bollard.fault': 'reason' is required"]),
    Case("interlock_requires_an_unknown_param", [("          param: level\n", "          param: levl\n")],
         ["commands.yaml:106: interlock 'lighting_cabinet.road_class_minimum': 'param' must be a parameter of "
          "set_level, adopt (level), got 'levl' (did you mean 'level'?)"]),
    Case("road_class_without_a_minimum", [("M3: 50, ", "")],
         ["commands.yaml:109: interlock 'lighting_cabinet.road_class_minimum': 'table' needs an entry for every "
          "road_class of the equipment (or a 'default'), got equipment 'C0004' (inventory/demo.csv:29) and 3 more "
          "with road_class 'M3'"]),
    Case("unknown_placeholder", [("          - {tag: system_pattern_control, value: \"{plan}\"}\n        refresh:",
                                  "          - {tag: system_pattern_control, value: \"{plna}\"}\n        refresh:")],
         ["commands.yaml:47: verb 'junction.select_plan': a placeholder must name one of address, backup_time, "
          "endpoint, install_date, lease_s, manufacturer, model, name, plan, snmp_version, got '{plna}' (did you mean "
          "'plan'?)"]),
    Case("unknown_key_in_a_write", [("          - {tag: override_remaining, value: \"{lease_s}\", tolerance: 5}\n"
                                     "        refresh:\n          - {tag: override_level",
                                     "          - {tag: override_remaining, value: \"{lease_s}\", tolerence: 5}\n"
                                     "        refresh:\n          - {tag: override_level")],
         ["commands.yaml:118: verb 'lighting_cabinet.set_level': unknown field 'tolerence' (did you mean "
          "'tolerance'?)"]),
    Case("condition_with_two_comparisons", [("          - {tag: mode, not_equals: 1}",
                                             "          - {tag: mode, not_equals: 1, equals: 0}")],
         ["commands.yaml:147: verb 'lighting_cabinet.return_to_schedule': a condition needs exactly one of equals, "
          "not_equals, above, below, at_least, at_most, in, not_in, got equals, not_equals"]),
    Case("safety_typo", [("        safety: increasing\n", "        safety: increasng\n")],
         ["commands.yaml:56: verb 'junction.flash': 'safety' must be one of increasing, neutral, reducing, "
          "got 'increasng' (did you mean 'increasing'?)"]),
    Case("hold_without_release", [("        release:\n          - {tag: message, value: \"\"}\n", "")],
         [f"commands.yaml:217: verb 'panel.show_message': {RELEASE}, got none"]),
    Case("signal_head_verb", [("      return_to_local:\n        lease: end                       # ends",
                               "      force_phase_green:\n        lease: end                       # ends")],
         ["commands.yaml:85: verb 'junction.force_phase_green': no verb may address an individual signal head, "
          "channel, phase or colour (the field controller keeps that authority), got verb name 'force_phase_green'"]),
    Case("compatibility_matrix_naming_an_unknown_phase", [("cross4: {phases: 4, permissive: [[1, 2], [3, 4]]}",
                                                           "cross4: {phases: 4, permissive: [[1, 2], [3, 5]]}")],
         ["commands.yaml:325: layout 'cross4': a permissive pair is two different phases in 1..4, got [3, 5]"]),
    Case("compatibility_matrix_too_many_phases", [("nema8: {phases: 8,", "nema8: {phases: 80,")],
         ["commands.yaml:327: layout 'nema8': 'phases' must be at most 64, got 80"]),
    Case("junction_with_an_unknown_layout", [("  J001: tee\n", "  J001: tea\n")],
         ["commands.yaml:331: junction 'J001': a layout must be one of junctions.layouts (cross4, nema8, tee), "
          "got 'tea' (did you mean 'tee'?)"]),
    Case("junction_not_in_the_city", [("  J024: cross4\n", "  J025: cross4\n")],
         ["commands.yaml:354: junction 'J025': a key of 'junctions' must be a junction of the city or one of "
          "samples_before_flash, conflict_colours, layouts, default, layout_param, got 'J025' (did you mean "
          "'J024'?)"]),
    Case("conflict_colours_without_green", [("  conflict_colours: [green, yellow]", "  conflict_colours: [yellow]")],
         ["commands.yaml:323: junctions: 'conflict_colours' must include green, got ['yellow']"]),
    Case("crisis_step_with_an_unknown_verb", [("      - {target: J005, verb: flash}", "      - {target: J005, verb: flsh}")],
         ["commands.yaml:363: crisis plan 'emergency_corridor_centre': 'verb' must be a verb of type 'junction' "
          "(adopt, flash, return_to_local, select_plan), got 'flsh' (did you mean 'flash'?)"]),
    Case("crisis_step_on_unknown_equipment", [("      - {target: BL01, verb: lower}", "      - {target: BL1, verb: lower}")],
         ["commands.yaml:365: crisis plan 'emergency_corridor_centre': 'target' must be equipment of the city, "
          "got 'BL1' (did you mean 'BL01'?)"]),
    Case("crisis_step_with_a_bad_param", [("      - {target: J009, verb: flash}",
                                           "      - {target: J009, verb: select_plan, params: {plan: 300, pace: 2}}")],
         ["commands.yaml:364: crisis plan 'emergency_corridor_centre': parameter 'plan' must be ≤ 253, got 300",
          "commands.yaml:364: crisis plan 'emergency_corridor_centre': verb 'select_plan' has no parameter 'pace'"]),
    Case("crisis_step_on_equipment_with_no_verbs", [("      - {target: BL01, verb: lower}",
                                                     "      - {target: CAM001, verb: lower}")],
         ["commands.yaml:365: crisis plan 'emergency_corridor_centre': 'target' must be commandable equipment, "
          "got 'CAM001', of type 'camera' which commands.yaml does not list"]),
    Case("verb_nobody_may_use", [("    roles: [operator, supervisor, administrator]\n    lease: {default: 1h, max: 12h}",
                                  "    lease: {default: 1h, max: 12h}")],
         [f"commands.yaml:{line}: verb 'panel.{verb}': no role may use this verb: set 'roles' on the verb or its "
          "type, got none" for line, verb in ((216, "show_message"), (225, "adopt"), (234, "return_to_local"))]),
    Case("several_problems_at_once", [
        ("crisis_roles: [supervisor, administrator]", "crisis_roles: [supervisor, admin]"),
        ("refuse_if: {tag: fault, equals: true}", "refuse_if: {tag: faults, equals: true}"),
        ("  per_user_per_minute: 10", "  per_user_per_minute: 0"),
        ("tee: {phases: 4, permissive: [[1, 2], [2, 3]]}", "tee: {phases: 4, permissive: [[1, 2], [2, 2]]}"),
        ("      - {target: J003, verb: flash}", "      - {target: J003, verb: blink}"),
        ("          text: {type: str, max_length: 100}", "          text: {type: string, max_length: 100}"),
    ], [
        "commands.yaml:27: rate_limits: 'per_user_per_minute' must be at least 1, got 0",
        f"commands.yaml:30: 'crisis_roles' must be one of {ROLES}, got 'admin' (did you mean 'administrator'?)",
        "commands.yaml:164: interlock 'bollard.fault': 'tag' must be a tag of template 'bollard', got 'faults' "
        "(did you mean 'fault'?)",
        "commands.yaml:219: verb 'panel.show_message' parameter 'text': 'type' must be one of int, float, str, "
        "bool, got 'string' (did you mean 'str'?)",
        "commands.yaml:326: layout 'tee': a permissive pair is two different phases in 1..4, got [2, 2]",
        "commands.yaml:362: crisis plan 'emergency_corridor_centre': 'verb' must be a verb of type 'junction' "
        "(adopt, flash, return_to_local, select_plan), got 'blink'",
    ]),
]


def _write(tmp_path: Path, case: Case) -> Path:
    text = SHIPPED
    for old, new in case.edits:
        assert old in text, f"{case.id}: edit does not apply: {old!r}"
        text = text.replace(old, new, 1)
    path = tmp_path / "commands.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_commands_file(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path, case)
    vocab, problems = check_vocabulary(path, city())
    assert vocab is None
    got = [str(p).replace(f"{tmp_path}/", "") for p in sorted(problems)]
    assert got == case.expected
    with pytest.raises(ConfigError) as err:  # the loader refuses the same file, listing the same problems
        load_vocabulary(path, city())
    assert [str(p).replace(f"{tmp_path}/", "") for p in err.value.problems] == case.expected


def test_the_shipped_file_has_no_problem() -> None:
    vocab, problems = check_vocabulary(ROOT / "commands.yaml", city())
    assert problems == [] and vocab is not None
