"""The alarm engine on a small city with one rule of every kind (conftest.MINI_ALARMS)."""

from __future__ import annotations

import numpy as np
import pytest

from scada.alarms import AlarmEngine, AlarmState, Event
from scada.alarms.engine import AlarmActionRefused
from scada.config import CityConfig
from scada.journal import Journal, JournalQuery
from scada.quality import Quality
from scada.tagdb import TagDatabase
from tests.alarms.conftest import T0, Feeder, S, alarm_id

City = tuple[AlarmEngine, Feeder, Journal]


def rows(journal: Journal, alarm: str | None = None, event: Event | None = None) -> list:
    q = JournalQuery(alarm=[alarm] if alarm else (), event=[event] if event else (), limit=10_000, ascending=True)
    return journal.query(q).rows


def state(engine: AlarmEngine, alarm: str) -> AlarmState:
    return engine.view(alarm).state


def test_quiet_city_has_no_alarm(city: City) -> None:
    engine, _, journal = city
    engine.tick(T0 + 60 * S)
    assert engine.summary().unacked == 0
    assert journal.count() == 0


def test_high_limit_with_deadband_and_message(city: City) -> None:
    engine, feed, journal = city
    a = alarm_id(engine, "level_high", "S1/level")
    feed({"S1/level": 81.0}, T0 + S)
    assert state(engine, a) is AlarmState.UNACK
    v = engine.view(a)
    assert v.message == "Station S1 (Dijon, 1 rue Alpha): level 81 % above 80"
    assert (v.area, v.service, v.priority, v.equipment, v.commune) == ("Dijon", "utilities", 3, "S1", "Dijon")
    # noise below the limit but inside the deadband: no clear, so no second activation
    for k, x in enumerate([79.0, 81.5, 76.0, 82.0, 75.5, 80.5]):
        feed({"S1/level": x}, T0 + (2 + k) * S)
    assert state(engine, a) is AlarmState.UNACK
    feed({"S1/level": 74.0}, T0 + 20 * S)  # below limit − deadband
    assert state(engine, a) is AlarmState.RTN_UNACK
    on = rows(journal, a, Event.CONDITION_ON)
    assert len(on) == 1 and on[0].ts_ms == (T0 + S) // 10**6 and on[0].value == 81.0
    assert on[0].message == "Station S1 (Dijon, 1 rue Alpha): level 81 % above 80"
    assert [r.event for r in rows(journal, a)] == [Event.CONDITION_ON, Event.CONDITION_OFF]


def test_noisy_signal_at_the_limit_activates_at_most_once(city: City) -> None:
    """AC-AL-07: noise smaller than the deadband around the limit → one activation."""
    engine, feed, journal = city
    rng = np.random.default_rng(7)
    for k in range(200):
        feed({"S2/level": 80.0 + float(rng.uniform(-4.9, 4.9))}, T0 + (k + 1) * S)
    a = alarm_id(engine, "level_high", "S2/level")
    assert len(rows(journal, a, Event.CONDITION_ON)) <= 1
    assert len(rows(journal, a, Event.CONDITION_OFF)) == 0


def test_on_delay_filters_fleeting_and_activates_at_delay_end(city: City) -> None:
    engine, feed, journal = city
    a = alarm_id(engine, "level_low", "S1/level")  # on_delay 10 s
    feed({"S1/level": 5.0}, T0 + S)
    feed({"S1/level": 20.0}, T0 + 5 * S)  # back before the delay
    engine.tick(T0 + 30 * S)
    assert state(engine, a) is AlarmState.NORMAL and not rows(journal, a)
    feed({"S1/level": 5.0}, T0 + 40 * S)
    engine.tick(T0 + 45 * S)
    assert state(engine, a) is AlarmState.NORMAL
    engine.tick(T0 + 51 * S)  # the tick comes late: the activation is stamped when the delay ended
    assert state(engine, a) is AlarmState.UNACK
    assert rows(journal, a)[0].ts_ms == (T0 + 50 * S) // 10**6


def test_off_delay(city: City) -> None:
    engine, feed, journal = city
    a = alarm_id(engine, "manual_mode", "S1/mode")  # value "manual" (enum label), off_delay 5 s
    feed({"S1/mode": 1}, T0 + S)
    assert state(engine, a) is AlarmState.UNACK
    assert engine.view(a).message == "Station S1 in manual mode"
    feed({"S1/mode": 0}, T0 + 2 * S)
    feed({"S1/mode": 1}, T0 + 4 * S)  # back within the off-delay: still the same activation
    feed({"S1/mode": 0}, T0 + 5 * S)
    engine.tick(T0 + 9 * S)
    assert state(engine, a) is AlarmState.UNACK
    engine.tick(T0 + 10 * S)
    assert state(engine, a) is AlarmState.RTN_UNACK
    assert [r.event for r in rows(journal, a)] == [Event.CONDITION_ON, Event.CONDITION_OFF]
    assert rows(journal, a)[1].ts_ms == (T0 + 10 * S) // 10**6


def test_bad_quality_raises_comm_alarm_never_limit_alarms(city: City) -> None:
    engine, feed, journal = city
    hi = alarm_id(engine, "level_high", "S3/level")
    comm = alarm_id(engine, "comm_loss", "S3/mains_ok")
    names = ["S3/level", "S3/mains_ok", "S3/flow", "S3/fault"]
    # the device is lost; the driver reports the last known / garbage values with BAD_COMM
    feed({"S3/level": 99.0, "S3/mains_ok": 0, "S3/flow": 0.0, "S3/fault": 1}, T0 + S, Quality.BAD_COMM)
    engine.tick(T0 + 10 * S)
    assert state(engine, hi) is AlarmState.NORMAL
    for rule in ("trip", "mains_lost", "flow_deviation", "level_rate"):
        short = {"trip": "S3/fault", "mains_lost": "S3/mains_ok", "flow_deviation": "S3/flow",
                 "level_rate": "S3/level"}[rule]
        assert state(engine, alarm_id(engine, rule, short)) is AlarmState.NORMAL, rule
    assert state(engine, comm) is AlarmState.UNACK
    v = engine.view(comm)
    assert v.message == "Station S3: communication lost (bad_comm)"
    assert rows(journal, comm)[0].ts_ms == (T0 + 4 * S) // 10**6  # on-delay 3 s
    # stale (uncertain) values do not raise limit alarms either
    feed({"S2/level": 99.0}, T0 + 11 * S, Quality.UNCERTAIN)
    assert state(engine, alarm_id(engine, "level_high", "S2/level")) is AlarmState.NORMAL
    # communication back with good values: now the limit alarm is real
    feed({n: v for n, v in zip(names, [99.0, 1, 100.0, 0], strict=True)}, T0 + 20 * S)
    assert state(engine, hi) is AlarmState.UNACK
    assert state(engine, comm) is AlarmState.RTN_UNACK
    assert [r.quality for r in rows(journal, hi)] == [Quality.GOOD]


def test_active_alarm_is_not_cleared_by_stale_values(city: City) -> None:
    engine, feed, _ = city
    hi = alarm_id(engine, "level_high", "S1/level")
    feed({"S1/level": 90.0}, T0 + S)
    feed({"S1/level": 10.0}, T0 + 2 * S, Quality.BAD_COMM)
    assert state(engine, hi) is AlarmState.UNACK
    engine.db.mark_stale(T0 + 100 * S, 5 * S)
    assert state(engine, hi) is AlarmState.UNACK
    feed({"S1/level": 10.0}, T0 + 101 * S)
    assert state(engine, hi) is AlarmState.RTN_UNACK


def test_deviation_rate_and_expression(city: City) -> None:
    engine, feed, _ = city
    dev = alarm_id(engine, "flow_deviation", "S1/flow")
    feed({"S1/flow": 111.0}, T0 + S)
    assert state(engine, dev) is AlarmState.UNACK
    feed({"S1/setpoint": 105.0}, T0 + 2 * S)  # |111 − 105| = 6 < 10 − 2
    assert state(engine, dev) is AlarmState.RTN_UNACK
    rate = alarm_id(engine, "level_rate", "S2/level")  # 50 %/s
    feed({"S2/level": 90.0}, T0 + 10 * S)  # +40 in 10 s
    assert state(engine, rate) is AlarmState.NORMAL
    feed({"S2/level": 50.0}, T0 + 10 * S + S // 2)  # −40 in 0.5 s
    assert state(engine, rate) is AlarmState.UNACK
    engine.tick(T0 + 12 * S)
    assert state(engine, rate) is AlarmState.UNACK
    engine.tick(T0 + 13 * S)  # no change for 2 scan periods (2 s): the rate is zero
    assert state(engine, rate) is AlarmState.RTN_UNACK
    intr = alarm_id(engine, "intrusion", "S3/door")  # door and (bits & 4) and mode != 'fault'
    feed({"S3/door": 1, "S3/bits": 3}, T0 + 20 * S)
    assert state(engine, intr) is AlarmState.NORMAL
    feed({"S3/bits": 6}, T0 + 21 * S)
    assert state(engine, intr) is AlarmState.UNACK
    feed({"S3/mode": 2}, T0 + 22 * S)
    assert state(engine, intr) is AlarmState.RTN_UNACK


def test_latched_alarm_needs_reset(city: City) -> None:
    engine, feed, journal = city
    trip = alarm_id(engine, "trip", "S2/fault")
    feed({"S2/fault": 1}, T0 + S)
    r = engine.reset([trip], "alice", T0 + 2 * S)
    assert not r.ok and "still present" in r.refused[0].reason
    feed({"S2/fault": 0}, T0 + 3 * S)
    v = engine.view(trip)
    assert v.state is AlarmState.UNACK and "latched" in v.flags
    assert engine.acknowledge([trip], "alice", T0 + 4 * S).ok
    assert engine.reset([trip], "bob", T0 + 5 * S, comment="local reset done").ok
    assert state(engine, trip) is AlarmState.NORMAL
    seq = [(r.event, r.state, "latched" in r.flag_labels) for r in rows(journal, trip)]
    assert seq == [
        (Event.CONDITION_ON, AlarmState.UNACK, False),
        (Event.RESET, AlarmState.UNACK, False),  # refused: still present
        (Event.CONDITION_OFF, AlarmState.UNACK, True),  # condition-return time, journalled apart from the reset
        (Event.ACKNOWLEDGE, AlarmState.ACKED, True),
        (Event.RESET, AlarmState.NORMAL, False),
    ]
    reset = rows(journal, trip)[-1]
    assert (reset.user, reset.comment, reset.outcome) == ("bob", "local reset done", 0)


def test_suppression_by_design(city: City) -> None:
    engine, feed, journal = city
    lamp = alarm_id(engine, "lamp_failed", "S1/lamp_2/status")
    mains = alarm_id(engine, "mains_lost", "S1/mains_ok")
    # mains lost and lamps failing in the same batch: the lamps are suppressed from the start
    feed({"S1/mains_ok": 0, "S1/lamp_1/status": 1, "S1/lamp_2/status": 1}, T0 + S)
    assert state(engine, mains) is AlarmState.UNACK
    v = engine.view(lamp)
    assert v.state is AlarmState.UNACK and "suppressed_design" in v.flags  # still evaluated and journalled
    on = rows(journal, lamp, Event.CONDITION_ON)
    assert len(on) == 1 and "suppressed_design" in on[0].flag_labels
    _total, items = engine.alarm_list(include_hidden=False)
    assert lamp not in {i.alarm for i in items}
    assert engine.summary().suppressed == 3  # S1's three lamps
    r = engine.unsuppress([lamp], "alice", T0 + 2 * S)
    assert "by design" in r.refused[0].reason
    # another station's lamp is not suppressed
    feed({"S2/lamp_1/status": 1}, T0 + 3 * S)
    assert "suppressed_design" not in engine.view(alarm_id(engine, "lamp_failed", "S2/lamp_1/status")).flags
    feed({"S1/mains_ok": 1}, T0 + 4 * S)
    assert "suppressed_design" not in engine.view(lamp).flags
    release = rows(journal, lamp, Event.DESIGN_RELEASE)
    assert len(release) == 1 and release[0].ts_ms == (T0 + 4 * S) // 10**6


def test_shelving(city: City) -> None:
    engine, feed, journal = city
    hi = alarm_id(engine, "level_high", "S1/level")
    feed({"S1/level": 90.0}, T0 + S)
    engine.acknowledge([hi], "alice", T0 + 2 * S)
    assert engine.shelve([hi], "alice", T0 + 3 * S, reason="sensor drift, WO-17 planned", duration_s=600).ok
    assert engine.summary().shelved == 1 and hi not in {v.alarm for v in engine.alarm_list()[1]}
    engine.tick(T0 + 602 * S)
    assert engine.view(hi).state is AlarmState.ACKED
    engine.tick(T0 + 603 * S)  # expired while still active: re-annunciated
    v = engine.view(hi)
    assert v.state is AlarmState.UNACK and not v.flags
    exp = rows(journal, hi, Event.SHELVE_EXPIRED)
    assert len(exp) == 1 and exp[0].ts_ms == (T0 + 603 * S) // 10**6
    shelve = rows(journal, hi, Event.SHELVE)[0]
    assert shelve.detail == "sensor drift, WO-17 planned" and shelve.until_ms == (T0 + 603 * S) // 10**6
    # one-shot: ends by itself when the alarm returns to normal
    assert engine.shelve([hi], "bob", T0 + 610 * S, reason="known").ok
    assert "shelved_one_shot" in engine.view(hi).flags
    feed({"S1/level": 50.0}, T0 + 620 * S)
    assert engine.view(hi).flags == [] and engine.view(hi).state is AlarmState.RTN_UNACK
    # priority 1 cannot be shelved; too long is refused; unshelve of a non-shelved alarm is refused
    trip = alarm_id(engine, "trip", "S1/fault")
    assert "priority-1" in engine.shelve([trip], "bob", T0 + 630 * S, reason="x", duration_s=60).refused[0].reason
    assert "maximum" in engine.shelve([hi], "bob", T0 + 630 * S, reason="x", duration_s=9 * 3600).refused[0].reason
    assert "not shelved" in engine.unshelve([hi], "bob", T0 + 630 * S).refused[0].reason


def test_out_of_service_and_operator_suppression(city: City) -> None:
    engine, feed, journal = city
    hi = alarm_id(engine, "level_high", "S2/level")
    r = engine.remove_from_service([hi], "maint", T0 + S, work_order="")
    assert "work-order" in r.refused[0].reason
    assert engine.remove_from_service([hi], "maint", T0 + S, work_order="WO-2027-0042").ok
    feed({"S2/level": 95.0}, T0 + 2 * S)  # still evaluated and journalled, not shown
    v = engine.view(hi)
    assert v.state is AlarmState.UNACK and v.work_order == "WO-2027-0042" and "out_of_service" in v.flags
    assert engine.alarm_list()[0] == 0 and engine.summary().out_of_service == 1
    assert engine.return_to_service([hi], "maint", T0 + 3 * S).ok
    assert engine.alarm_list()[0] == 1
    assert engine.suppress([hi], "alice", T0 + 4 * S, reason="flooded basement known").ok
    assert engine.summary().suppressed == 1
    assert engine.unsuppress([hi], "alice", T0 + 5 * S).ok
    evs = [r.event for r in rows(journal, hi)]
    assert evs == [Event.REMOVE_FROM_SERVICE, Event.REMOVE_FROM_SERVICE, Event.CONDITION_ON,
                   Event.RETURN_TO_SERVICE, Event.SUPPRESS, Event.UNSUPPRESS]
    assert rows(journal, hi)[1].detail == "WO-2027-0042"


@pytest.mark.parametrize("action", ["ack", "ack_again", "shelve_p1", "shelve_no_reason", "shelve_too_long",
                                    "one_shot_inactive", "unshelve", "suppress_no_reason", "unsuppress", "oos_no_wo",
                                    "return", "reset_not_latched", "unknown", "no_user", "nothing_selected",
                                    "ack_area_empty", "authorizer"])
def test_every_refused_action_has_a_reason_and_is_journalled(city: City, action: str) -> None:
    engine, feed, journal = city
    hi = alarm_id(engine, "level_high", "S1/level")
    trip = alarm_id(engine, "trip", "S1/fault")
    feed({"S1/level": 90.0, "S1/fault": 1}, T0 + S)
    t = T0 + 2 * S
    calls = {
        "ack": lambda: engine.acknowledge([alarm_id(engine, "level_low", "S1/level")], "alice", t),
        "ack_again": lambda: (engine.acknowledge([hi], "alice", t), engine.acknowledge([hi], "alice", t))[1],
        "shelve_p1": lambda: engine.shelve([trip], "alice", t, reason="r", duration_s=60),
        "shelve_no_reason": lambda: engine.shelve([hi], "alice", t, reason="", duration_s=60),
        "shelve_too_long": lambda: engine.shelve([hi], "alice", t, reason="r", duration_s=10 * 3600),
        "one_shot_inactive": lambda: engine.shelve([alarm_id(engine, "level_low", "S1/level")], "alice", t,
                                                   reason="r"),
        "unshelve": lambda: engine.unshelve([hi], "alice", t),
        "suppress_no_reason": lambda: engine.suppress([hi], "alice", t, reason=" "),
        "unsuppress": lambda: engine.unsuppress([hi], "alice", t),
        "oos_no_wo": lambda: engine.remove_from_service([hi], "alice", t, work_order=""),
        "return": lambda: engine.return_to_service([hi], "alice", t),
        "reset_not_latched": lambda: engine.reset([hi], "alice", t),
        "unknown": lambda: engine.acknowledge(["no_such_rule:x/y"], "alice", t),
        "no_user": lambda: engine.acknowledge([hi], "", t),
        "nothing_selected": lambda: engine.acknowledge([], "alice", t),
        "ack_area_empty": lambda: engine.acknowledge_area("Chenôve", "alice", t),
        "authorizer": lambda: _with_authorizer(engine, lambda: engine.reset([trip], "alice", t)),
    }
    before = journal.count()
    result = calls[action]()
    assert not result.ok and result.refused
    for r in result.refused:
        assert r.reason.strip()
    with pytest.raises(AlarmActionRefused):
        result.raise_for_refusal()
    if action not in ("nothing_selected", "ack_area_empty"):  # nothing addressed → nothing to journal
        refused = journal.query(JournalQuery(refused=True, limit=10)).rows
        assert refused and journal.count() > before
        assert refused[0].detail and refused[0].outcome == 1


def _with_authorizer(engine: AlarmEngine, call):  # type: ignore[no-untyped-def]
    engine.authorize = lambda user, event, info: "the reset right is needed" if event is Event.RESET else None
    try:
        return call()
    finally:
        engine.authorize = None


def test_acknowledge_selection_and_area(city: City) -> None:
    engine, feed, journal = city
    feed({"S1/level": 90.0, "S2/level": 90.0, "S3/level": 90.0, "S1/mode": 1}, T0 + S)
    assert engine.summary().unacked == 4
    res = engine.acknowledge_area("Dijon", "alice", T0 + 2 * S, comment="seen on CCTV")
    assert sorted(res.done) == sorted([alarm_id(engine, "level_high", "S1/level"),
                                       alarm_id(engine, "level_high", "S2/level"),
                                       alarm_id(engine, "manual_mode", "S1/mode")])
    assert engine.view(alarm_id(engine, "level_high", "S3/level")).state is AlarmState.UNACK
    acks = journal.query(JournalQuery(event=[Event.ACKNOWLEDGE])).rows
    assert {r.user for r in acks} == {"alice"} and {r.comment for r in acks} == {"seen on CCTV"}
    sel = engine.acknowledge([alarm_id(engine, "level_high", "S3/level"), "bogus:x"], "bob", T0 + 3 * S)
    assert len(sel.done) == 1 and sel.refused[0].alarm == "bogus:x"


def test_flood_keeps_priority_one_on_top_and_groups(mini_config: CityConfig, tmp_path) -> None:
    db = TagDatabase(mini_config.tags)
    with Journal(tmp_path / "j.sqlite") as journal:
        engine = AlarmEngine(mini_config, db, journal)
        engine.attach()
        feed = Feeder(mini_config, db)
        feed.baseline(T0)
        # chattering level in Dijon: S1 and S2 go up and down → many annunciations
        t = T0
        for _k in range(8):
            t += 10 * S
            feed({"S1/level": 90.0, "S2/level": 90.0}, t)
            t += 10 * S
            feed({"S1/level": 50.0, "S2/level": 50.0}, t)
        assert engine.flood_areas() == ["Dijon"]
        feed({"S1/fault": 1}, t + S)  # a trip (priority 1) in the middle of the flood
        view = engine.console(area="Dijon")
        assert view.flood and view.critical[0].alarm == alarm_id(engine, "trip", "S1/fault")
        assert view.groups and {g.key for g in view.groups} == {"S1", "S2"}
        assert all(g.top_priority >= 2 for g in view.groups)
        _total, items = engine.alarm_list(area="Dijon")
        assert items[0].priority == 1
        begin = journal.query(JournalQuery(event=[Event.FLOOD_BEGIN])).rows
        assert len(begin) == 1 and begin[0].detail == "Dijon"
        assert engine.console(area="Chenôve").flood is False
        engine.tick(t + 11 * 60 * S)  # 10 min later the window empties
        assert engine.flood_areas() == []
        assert len(journal.query(JournalQuery(event=[Event.FLOOD_END])).rows) == 1


def test_restore_after_restart_keeps_acknowledged(mini_config: CityConfig, tmp_path) -> None:
    path = tmp_path / "j.sqlite"
    db = TagDatabase(mini_config.tags)
    feed = Feeder(mini_config, db)
    with Journal(path) as journal:
        engine = AlarmEngine(mini_config, db, journal)
        engine.attach()
        feed.baseline(T0)
        feed({"S1/level": 90.0, "S2/level": 90.0, "S1/fault": 1, "S3/mode": 1}, T0 + S)
        feed({"S1/fault": 0}, T0 + 2 * S)
        hi1, hi2 = alarm_id(engine, "level_high", "S1/level"), alarm_id(engine, "level_high", "S2/level")
        trip, manual = alarm_id(engine, "trip", "S1/fault"), alarm_id(engine, "manual_mode", "S3/mode")
        engine.acknowledge([hi1, trip], "alice", T0 + 3 * S)
        engine.shelve([manual], "alice", T0 + 4 * S, reason="test", duration_s=3600)
        engine.remove_from_service([hi2], "maint", T0 + 5 * S, work_order="WO-9")
        before = {a: engine.view(a) for a in (hi1, hi2, trip, manual)}
        n_rows = journal.count()
    # a new process: fresh tag database, same journal
    db2 = TagDatabase(mini_config.tags)
    with Journal(path) as journal:
        engine2 = AlarmEngine(mini_config, db2, journal)
        engine2.attach()
        for a, v in before.items():
            after = engine2.view(a)
            assert (after.state, after.flags, after.work_order) == (v.state, v.flags, v.work_order), a
        assert engine2.view(manual).shelved_until_ns == T0 + 3604 * S
        assert engine2.view(hi1).since_ns == T0 + S
        # the same field values come back: no new activation, acknowledged stays acknowledged
        feed2 = Feeder(mini_config, db2)
        feed2.baseline(T0 + 10 * S, {"S1/level": 90.0, "S2/level": 90.0, "S3/mode": 1})
        assert engine2.view(hi1).state is AlarmState.ACKED
        assert journal.query(JournalQuery(event=[Event.CONDITION_ON], start_ms=(T0 + 10 * S) // 10**6)).rows == []
        assert journal.count() == n_rows
        assert engine2.reset([trip], "bob", T0 + 11 * S).ok  # the latched hold survived too


def test_vectorised_engine_matches_the_pure_state_machine(mini_config: CityConfig) -> None:
    """Random field values and operator actions: each alarm's engine status equals a replay of its rows
    through states.transition."""
    from scada.alarms.states import Context, Status, transition

    db = TagDatabase(mini_config.tags)
    engine = AlarmEngine(mini_config, db)
    engine.attach()
    replay: dict[int, Status] = {}
    log: list = []
    engine.subscribe(log.append)
    feed = Feeder(mini_config, db)
    feed.baseline(T0)
    rng = np.random.default_rng(3)
    ids = engine.alarm_ids()
    t = T0
    for _ in range(300):
        t += int(rng.integers(1, 4)) * S
        eq = f"S{int(rng.integers(1, 4))}"
        choice = int(rng.integers(0, 7))
        if choice == 0:
            feed({f"{eq}/level": float(rng.uniform(0, 100))}, t)
        elif choice == 1:
            feed({f"{eq}/fault": float(rng.integers(0, 2)), f"{eq}/mains_ok": float(rng.integers(0, 2))}, t)
        elif choice == 2:
            feed({f"{eq}/lamp_1/status": float(rng.integers(0, 2)), f"{eq}/mode": float(rng.integers(0, 3))}, t)
        elif choice == 3:
            engine.acknowledge(list(rng.choice(ids, 5)), "op", t)
        elif choice == 4:
            engine.shelve(list(rng.choice(ids, 3)), "op", t, reason="r", duration_s=float(rng.integers(1, 30)))
        elif choice == 5:
            engine.reset(list(rng.choice(ids, 5)), "op", t)
        else:
            engine.tick(t)
    for tr in log:
        for k in range(len(tr)):
            i = int(tr.alarm[k])
            if i < 0 or tr.outcome[k]:
                continue
            ev = Event(int(tr.event[k]))
            s = replay.get(i, Status())
            if ev in (Event.DESIGN_SUPPRESS, Event.DESIGN_RELEASE):
                s = Status(s.state, s.held, s.shelving, s.shelved_until_ns, ev is Event.DESIGN_SUPPRESS,
                           s.suppressed_operator, s.out_of_service)
            else:
                r = transition(s, ev, engine.context(i), now_ns=int(tr.ts_ns[k]),
                               until_ns=int(tr.until_ns[k]) if tr.until_ns is not None else 0, user="op",
                               text="r")
                assert isinstance(r, Status), (ev, s, r)
                s = r
            assert int(tr.state[k]) == int(s.state)
            replay[i] = s
    for i, s in replay.items():
        got = engine.status(i)
        assert (got.state, got.held, got.shelving) == (s.state, s.held, s.shelving), engine.catalog.alarm_id(i)
    assert any(s.state is not AlarmState.NORMAL for s in replay.values())
    assert Context  # imported for the replay's contexts


def test_unchanged_city_reuses_its_journal_definitions(mini_config: CityConfig, tmp_path) -> None:
    from scada.config import load_city
    from tests.alarms.conftest import MINI_ALARMS, MINI_TAGS, write_city

    path = tmp_path / "j.sqlite"
    db = TagDatabase(mini_config.tags)
    with Journal(path) as journal:
        refs = AlarmEngine(mini_config, db, journal).refs.copy()
        n_defs = journal.execute_sql("SELECT count(*) FROM alarm_def")[0][0]
        assert n_defs == len(refs) == AlarmEngine(mini_config, db).n
    with Journal(path) as journal:  # restart, same city: one catalog lookup, same refs, nothing added
        assert (AlarmEngine(mini_config, db, journal).refs == refs).all()
        assert journal.execute_sql("SELECT count(*) FROM alarm_def")[0][0] == n_defs
    changed = load_city(*write_city(tmp_path / "changed", MINI_TAGS,
                                     MINI_ALARMS.replace("level {value} {units} above {limit}", "level {value} high")))
    with Journal(path) as journal:  # one rule's message changed: only its 3 alarms get new definitions
        new = AlarmEngine(changed, TagDatabase(changed.tags), journal).refs
        assert journal.execute_sql("SELECT count(*) FROM alarm_def")[0][0] == n_defs + 3
        assert int((new != refs).sum()) == 3
        assert journal.execute_sql("SELECT count(*) FROM catalog")[0][0] == 2


def test_hidden_list_includes_normal_alarms_set_aside_by_an_operator(city: City) -> None:
    engine = city[0]
    hi = alarm_id(engine, "level_high", "S1/level")
    lo = alarm_id(engine, "level_low", "S2/level")
    assert engine.shelve([hi], "alice", T0 + S, reason="maintenance tomorrow", duration_s=3600).ok  # normal, shelved
    assert engine.remove_from_service([lo], "maint", T0 + S, work_order="WO-5").ok
    total, views = engine.alarm_list(include_hidden=True)
    assert total == 2 and {v.alarm for v in views} == {hi, lo}
    assert engine.alarm_list()[0] == 0  # the operator's list proper stays empty
    bulk = engine.views([engine.catalog.index_of(hi), engine.catalog.index_of(lo)])
    assert [v.alarm for v in bulk] == [hi, lo] and bulk[1].work_order == "WO-5"
