"""System alarms (scada.alarms.system) through the real engine and a real SQLite journal.

The sources (fail-safe monitor and gate, historian buffer) only set tags; these tests check that each
shape of condition behaves as an operator expects: steady conditions come and go, pulses leave an
alarm to acknowledge, latched ones wait for a reset, and priority 1 cannot be shelved.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scada.alarms import AlarmEngine
from scada.alarms.states import AlarmState, Event
from scada.alarms.system import SystemAlarmSink, codes_of, system_tags
from scada.config import load_city
from scada.journal import Journal, JournalQuery
from scada.quality import Sample
from scada.tagdb import TagDatabase

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    db = TagDatabase([*config.tags, *system_tags(config)])
    journal = Journal(tmp_path / "journal.sqlite")
    engine = AlarmEngine(config, db, journal, now_ns=1)
    engine.attach()
    sink = SystemAlarmSink(config, db)
    yield config, db, engine, sink, journal
    journal.close()


def state(engine: AlarmEngine, alarm_id: str) -> AlarmState:
    return engine.view(alarm_id).state


def test_steady_condition_comes_and_goes(rig) -> None:  # type: ignore[no-untyped-def]
    _, _, engine, sink, journal = rig
    assert sink.initialise("historian") == 4
    aid = "system.historian.buffer_high:system/historian/buffer_high"
    assert state(engine, aid) is AlarmState.NORMAL
    assert sink.raise_("historian", "buffer_high", active=True)
    assert state(engine, aid) is AlarmState.UNACK
    engine.acknowledge([aid], "op", time.time_ns()).raise_for_refusal()
    assert sink.raise_("historian", "buffer_high", active=False)
    assert state(engine, aid) is AlarmState.NORMAL
    rows = journal.query(JournalQuery(alarm=(aid,), ascending=True)).rows
    assert [(r.event, r.user) for r in rows] == [(Event.CONDITION_ON, None), (Event.ACKNOWLEDGE, "op"),
                                                 (Event.CONDITION_OFF, None)]
    assert rows[0].priority == 2 and rows[0].service == "system" and rows[0].area == "system"


def test_pulse_leaves_an_alarm_to_acknowledge(rig) -> None:  # type: ignore[no-untyped-def]
    config, db, engine, sink, _ = rig
    cab = next(e for e in config.equipment.values() if e.template == "lighting_cabinet")
    sink.initialise("failsafe")
    aid = f"system.lighting_cabinet.command_not_confirmed:{cab.tag_name('failsafe/command_not_confirmed')}"
    assert sink.raise_("failsafe", "command_not_confirmed", cab.id)
    assert state(engine, aid) is AlarmState.RTN_UNACK  # on, then off at once: the operator must see it
    assert db.read(cab.tag_name("failsafe/command_not_confirmed")).value == 0
    v = engine.view(aid)
    assert v.priority == 3 and v.service == "lighting" and v.equipment == cab.id and cab.id in v.message
    engine.acknowledge([aid], "op", time.time_ns()).raise_for_refusal()
    assert state(engine, aid) is AlarmState.NORMAL


def test_latched_monitor_alarm_needs_a_reset_and_refuses_shelving(rig) -> None:  # type: ignore[no-untyped-def]
    config, _, engine, sink, _ = rig
    sink.initialise("failsafe")
    (jid, code), = codes_of(["failsafe/J002/conflicting_green"])
    assert (jid, code) == ("J002", "conflicting_green")
    aid = f"system.junction.conflicting_green:{config.equipment[jid].tag_name('failsafe/conflicting_green')}"
    sink.raise_("failsafe", code, jid, active=True)
    assert state(engine, aid) is AlarmState.UNACK and engine.view(aid).priority == 1
    refused = engine.shelve([aid], "op", time.time_ns(), reason="noisy", duration_s=600)
    assert not refused.done and "priority-1" in refused.refused[0].reason
    engine.acknowledge([aid], "op", time.time_ns()).raise_for_refusal()
    sink.raise_("failsafe", code, jid, active=False)  # the monitor's own reset
    assert state(engine, aid) is AlarmState.ACKED and "latched" in engine.view(aid).flags
    engine.reset([aid], "maint", time.time_ns()).raise_for_refusal()
    assert state(engine, aid) is AlarmState.NORMAL


def test_unknown_conditions_are_refused_not_lost(rig) -> None:  # type: ignore[no-untyped-def]
    _, _, _, sink, _ = rig
    assert not sink.raise_("failsafe", "no_such_code", "J001")
    assert not sink.raise_("failsafe", "conflicting_green", "NOT-A-JUNCTION")
    assert codes_of(["failsafe/audit/unwritable", "something/else"]) == [("", "audit_unwritable")]
    assert sink.raise_("failsafe", "audit_unwritable", "", active=True)


def test_monitor_fault_flash_is_suppressed_behind_the_citys_own_rule(rig) -> None:  # type: ignore[no-untyped-def]
    """One annunciation per condition: the city's junction_fault_flash rule reads the controller's flash status;
    the field-safety monitor's fault_flash alarm for the same junction is suppressed by design behind it."""
    config, db, engine, sink, _ = rig
    sink.initialise("failsafe")
    junction = config.equipment["J002"]
    own = f"junction_fault_flash:{junction.tag_name('unit_flash_status')}"
    mon = f"system.junction.fault_flash:{junction.tag_name('failsafe/fault_flash')}"
    db.apply_samples([(junction.tag_name("unit_flash_status"), Sample.good(6))])  # mmu flash
    sink.raise_("failsafe", "fault_flash", "J002", active=True)
    assert state(engine, own) is AlarmState.UNACK and state(engine, mon) is AlarmState.UNACK
    assert "suppressed_design" in engine.view(mon).flags and "suppressed_design" not in engine.view(own).flags
    _, listed = engine.alarm_list(equipment="J002")
    assert [v.alarm for v in listed if v.rule.endswith("fault_flash")] == [own]
    # where the controller does not report it (a stale or lost status), the monitor's alarm is the annunciation
    other = next(e for e in config.equipment.values() if e.template == "junction" and e.id != "J002")
    sink.raise_("failsafe", "fault_flash", other.id, active=True)
    solo = f"system.junction.fault_flash:{other.tag_name('failsafe/fault_flash')}"
    assert "suppressed_design" not in engine.view(solo).flags
