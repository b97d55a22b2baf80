"""A burst of system alarms (SystemAlarmSink.raise_many) through the real engine and SQLite journal.

A city's start-up or a lost bus raises hundreds of conditions at once: they go to the tag database in
one batch, so the engine runs once and the journal writes one transaction, and the outcome (alarm
states, journal rows) is the same as raising them one by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from scada.alarms import AlarmEngine
from scada.alarms.engine import AlarmView
from scada.alarms.states import AlarmState
from scada.alarms.system import SystemAlarmSink, system_tags
from scada.config import CityConfig, load_city
from scada.journal import Journal, JournalQuery
from scada.tagdb import TagDatabase

ROOT = Path(__file__).resolve().parents[2]

Rig = tuple[CityConfig, AlarmEngine, SystemAlarmSink, Journal, list[int]]


def _rig(path: Path) -> Iterator[Rig]:
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    db = TagDatabase([*config.tags, *system_tags(config)])
    journal = Journal(path)
    engine = AlarmEngine(config, db, journal, now_ns=1)
    engine.attach()
    sink = SystemAlarmSink(config, db)
    sink.initialise("poll")
    sink.initialise("failsafe")
    passes: list[int] = []  # one entry per journalled batch of the engine: its row count
    engine.subscribe(lambda tr: passes.append(len(tr)))
    yield config, engine, sink, journal, passes
    journal.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(tmp_path / "batch.sqlite")


@pytest.fixture
def rig_one_by_one(tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(tmp_path / "one.sqlite")


def _burst(config: CityConfig) -> list[tuple[str, str, bool, str]]:
    cabinets = sorted(e.id for e in config.equipment.values() if e.template == "lighting_cabinet")
    assert len(cabinets) >= 6
    return [("comm_lost", c, True, "") for c in cabinets]


def _views(engine: AlarmEngine) -> list[AlarmView]:
    return engine.views(list(range(engine.n)))


def _rows(journal: Journal) -> Counter[tuple[str, int, int]]:
    rows = journal.query(JournalQuery(limit=10_000)).rows
    return Counter((r.alarm or "", int(r.event), int(r.state)) for r in rows)


def test_a_burst_is_one_engine_pass_and_journals_what_one_by_one_does(rig: Rig, rig_one_by_one: Rig) -> None:
    config, engine, sink, journal, passes = rig
    burst = _burst(config)
    assert sink.raise_many("poll", burst) == len(burst)
    assert passes == [len(burst)]  # one engine pass, one journal batch, a row per condition
    _, engine1, sink1, journal1, passes1 = rig_one_by_one
    for code, equipment, active, _ in burst:
        assert sink1.raise_("poll", code, equipment, active)
    assert len(passes1) == len(burst)
    assert _rows(journal) == _rows(journal1) and len(_rows(journal)) == len(burst)
    for _, equipment, _, _ in burst:
        aid = next(v.alarm for v in _views(engine) if v.equipment == equipment and v.rule.endswith(".comm_lost"))
        assert engine.view(aid).state is AlarmState.UNACK
        assert engine1.view(aid).state is AlarmState.UNACK
    # and cleared as one batch too
    passes.clear()
    assert sink.raise_many("poll", [(c, e, False, "") for c, e, _, _ in burst]) == len(burst)
    cleared = [v.state for v in _views(engine) if v.rule.endswith(".comm_lost") and v.equipment in
               {e for _, e, _, _ in burst}]
    assert len(passes) == 1 and cleared == [AlarmState.RTN_UNACK] * len(burst)


def test_pulses_repeats_and_unknown_conditions_keep_the_one_by_one_outcome(rig: Rig) -> None:
    config, engine, sink, _journal, passes = rig
    cab = sorted(e.id for e in config.equipment.values() if e.template == "lighting_cabinet")[0]
    # a pulse (set, then cleared in a second batch), a condition raised then cleared within the burst (the
    # batch splits there: its rows come in order), an equipment that is not in the city (logged, skipped)
    done = sink.raise_many("failsafe", [("command_not_confirmed", cab, True, ""), ("command_failed", cab, True, ""),
                                        ("command_not_confirmed", "NOT-A-CABINET", True, "")])
    assert done == 2
    assert passes == [2, 2]  # both pulses on, then both off
    for code in ("command_not_confirmed", "command_failed"):
        aid = next(v.alarm for v in _views(engine) if v.equipment == cab and v.rule.endswith(f".{code}"))
        assert engine.view(aid).state is AlarmState.RTN_UNACK  # on and off: the operator must see it
    passes.clear()
    assert sink.raise_many("poll", [("comm_lost", cab, True, ""), ("comm_lost", cab, False, "")]) == 2
    assert passes == [1, 1]
    aid = next(v.alarm for v in _views(engine) if v.equipment == cab and v.rule.endswith(".comm_lost"))
    assert engine.view(aid).state is AlarmState.RTN_UNACK
