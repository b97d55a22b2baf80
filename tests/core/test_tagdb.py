"""Tag database: vectorised change detection, deadbands, qualities, subscriptions, lookups."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scada.config.model import TagDef
from scada.quality import NOT_READ_YET, Quality, Sample, reason
from scada.tagdb import ChangeEvent, Readings, TagDatabase

G = int(Quality.GOOD)


def _tag(name: str, dtype: str = "float", deadband: float = 0.0, equipment: str = "E1") -> TagDef:
    return TagDef(name, equipment, name.rsplit("/", 1)[-1], name.rsplit("/", 1)[-1], "dev", "hr:0", dtype,
                  deadband=deadband)


@pytest.fixture
def db() -> TagDatabase:
    return TagDatabase([
        _tag("dijon/lighting/C1/power", deadband=5.0),
        _tag("dijon/lighting/C1/mains_ok", "bool"),
        _tag("dijon/junction/J1/phase_greens", "int", equipment="J1"),
        _tag("dijon/panel/P1/message", "string", equipment="P1"),
    ])


def _apply(db: TagDatabase, idx: list[int], vals: list[float], q: list[int] | None = None) -> ChangeEvent:
    quals = np.array(q if q is not None else [G] * len(idx), dtype=np.uint8)
    return db.apply(np.array(idx), np.array(vals, dtype=float), quals, 1_000)


def test_first_value_is_a_change_and_deadband_filters(db: TagDatabase) -> None:
    ev = _apply(db, [0, 1], [100.0, 1.0])
    assert ev.indices.tolist() == [0, 1]
    assert np.isnan(ev.old_values).all() and ev.new_values.tolist() == [100.0, 1.0]
    assert _apply(db, [0], [104.0]).indices.size == 0  # within the 5 W deadband
    assert db.read("dijon/lighting/C1/power").value == 100.0  # the reference stays the last reported value
    ev = _apply(db, [0], [105.5])
    assert ev.old_values.tolist() == [100.0] and ev.new_values.tolist() == [105.5]


def test_zero_deadband_reports_any_difference(db: TagDatabase) -> None:
    _apply(db, [2], [3])
    assert _apply(db, [2], [3]).indices.size == 0
    assert _apply(db, [2], [7]).new_values.tolist() == [7]


def test_quality_change_is_a_change_and_bad_keeps_last_value(db: TagDatabase) -> None:
    _apply(db, [0], [100.0])
    ev = _apply(db, [0], [np.nan], [int(Quality.BAD_COMM)])
    assert ev.indices.tolist() == [0]
    assert ev.old_qualities.tolist() == [G] and ev.new_qualities.tolist() == [int(Quality.BAD_COMM)]
    sample = db.read("dijon/lighting/C1/power")
    assert sample.quality is Quality.BAD_COMM and sample.value == 100.0


def test_subscribe_filters_and_unsubscribe(db: TagDatabase) -> None:
    everything: list[ChangeEvent] = []
    greens: list[ChangeEvent] = []
    db.subscribe(everything.append)
    unsubscribe = db.subscribe(greens.append, tags=["dijon/junction/J1/phase_greens"])
    _apply(db, [0, 2], [1.0, 5])
    assert [e.indices.tolist() for e in everything] == [[0, 2]]
    assert [e.indices.tolist() for e in greens] == [[2]]
    unsubscribe()
    _apply(db, [2], [6])
    assert len(greens) == 1 and len(everything) == 2


def test_a_failing_subscriber_does_not_stop_others(db: TagDatabase) -> None:
    got: list[ChangeEvent] = []

    def broken(_: ChangeEvent) -> None:
        raise RuntimeError("boom")

    db.subscribe(broken)
    db.subscribe(got.append)
    _apply(db, [1], [1])
    assert len(got) == 1


def test_writes_from_a_subscriber_are_queued_until_the_hand_out_ends(db: TagDatabase) -> None:
    """A subscriber that writes (the field-safety monitor raising an alarm tag) is never re-entered: its
    write is applied after every subscriber has seen the current batch, in the order issued."""
    seen: list[tuple[str, list[int], list[float]]] = []
    depth = [0, 0]  # current, deepest nesting of subscriber calls

    def recorder(who: str) -> Callable[[ChangeEvent], None]:
        def cb(ev: ChangeEvent) -> None:
            depth[0] += 1
            depth[1] = max(depth[1], depth[0])
            seen.append((who, ev.indices.tolist(), ev.new_values.tolist()))
            if who == "monitor" and 0 in ev.indices.tolist():  # an alarm raised from a hand-out: a pulse
                first = db.apply_samples([("dijon/lighting/C1/mains_ok", Sample.good(1))])
                second = db.apply_samples([("dijon/lighting/C1/mains_ok", Sample.good(0))])
                assert len(first) == len(second) == 0  # queued, not applied inside the hand-out
                assert db.read("dijon/lighting/C1/mains_ok").value is None
            depth[0] -= 1
        return cb

    db.subscribe(recorder("monitor"))
    db.subscribe(recorder("alarms"))
    ev = _apply(db, [0], [100.0])
    assert ev.indices.tolist() == [0]
    assert seen == [("monitor", [0], [100.0]), ("alarms", [0], [100.0]),  # the batch, whole, to everyone
                    ("monitor", [1], [1.0]), ("alarms", [1], [1.0]),  # then the queued writes, in order
                    ("monitor", [1], [0.0]), ("alarms", [1], [0.0])]
    assert depth[1] == 1  # no subscriber ever ran inside another's call
    assert db.read("dijon/lighting/C1/mains_ok").value is False


def test_duplicate_indices_are_refused(db: TagDatabase) -> None:
    with pytest.raises(ValueError, match="twice"):
        _apply(db, [0, 0], [1.0, 2.0])
    assert db.read("dijon/lighting/C1/power").value is None  # nothing applied


def test_out_of_range_and_shape_errors(db: TagDatabase) -> None:
    with pytest.raises(IndexError):
        _apply(db, [9], [1.0])
    with pytest.raises(ValueError, match="shapes"):
        db.apply(np.array([0]), np.array([1.0, 2.0]), np.array([G], dtype=np.uint8), 0)


def test_typed_reads_strings_and_lookups(db: TagDatabase) -> None:
    db.apply_samples([("dijon/lighting/C1/mains_ok", Sample.good(True)),
                      ("dijon/junction/J1/phase_greens", Sample.good(5)),
                      ("dijon/panel/P1/message", Sample.good("Travaux rue de la Liberté"))])
    assert db.read("dijon/lighting/C1/mains_ok").value is True
    assert db.read("dijon/junction/J1/phase_greens").value == 5
    assert db.read("dijon/panel/P1/message").value == "Travaux rue de la Liberté"
    same = db.apply_samples([("dijon/panel/P1/message", Sample.good("Travaux rue de la Liberté"))])
    assert len(same) == 0
    changed = db.apply_samples([("dijon/panel/P1/message", Sample.good("Route barrée"))])
    assert len(changed) == 1 and db.read("dijon/panel/P1/message").value == "Route barrée"
    assert [n for n, _ in db.snapshot_pattern("dijon/lighting/*")] == ["dijon/lighting/C1/power",
                                                                       "dijon/lighting/C1/mains_ok"]
    assert [n for n, _ in db.snapshot_equipment("J1")] == ["dijon/junction/J1/phase_greens"]
    never = db.read("dijon/lighting/C1/power")  # never received a value: uncertain, "not read yet"
    assert never.quality is Quality.UNCERTAIN and never.value is None and reason(never.quality, never.receive_ns) == NOT_READ_YET
    with pytest.raises(KeyError, match="unknown tag"):
        db.indices(["nope"])


def test_stale_values_become_uncertain(db: TagDatabase) -> None:
    db.apply(np.array([0, 1]), np.array([1.0, 1.0]), np.array([G, G], dtype=np.uint8), 0, np.array([100, 900]))
    ev = db.mark_stale(now_ns=1_000, max_age_ns=500)
    assert ev.indices.tolist() == [0]
    assert db.read("dijon/lighting/C1/power").quality is Quality.UNCERTAIN
    assert db.read("dijon/lighting/C1/mains_ok").quality is Quality.GOOD


def test_storm_batch_of_every_tag() -> None:
    n = 50_000
    db = TagDatabase([_tag(f"x/lighting/C{i // 30}/lamp_{i % 30}", equipment=f"C{i // 30}") for i in range(n)])
    idx = np.arange(n, dtype=np.int64)
    db.apply(idx, np.zeros(n), np.zeros(n, dtype=np.uint8), 0)
    vals = np.zeros(n)
    vals[::2] = 50.0
    ev = db.apply(idx, vals, np.zeros(n, dtype=np.uint8), 1)
    assert ev.indices.size == n // 2
    assert (ev.new_values == 50.0).all()


def test_contiguous_and_scattered_batches_agree() -> None:
    """The contiguous fast path and the general path give the same events and state."""
    defs = [_tag(f"x/e/E{i}/v", deadband=1.0) for i in range(100)]
    a, b = TagDatabase(defs), TagDatabase(defs)
    rng = np.random.default_rng(7)
    for r in range(20):
        vals = rng.normal(0, 2, 100)
        qual = rng.choice([0, 0, 0, 2], 100).astype(np.uint8)
        stamps = np.arange(100, dtype=np.int64) + r
        ea = a.apply(np.arange(100), vals, qual, stamps)
        perm = rng.permutation(100)
        eb = b.apply(perm, vals[perm], qual[perm], stamps[perm])
        order = np.argsort(eb.indices)
        assert ea.indices.tolist() == eb.indices[order].tolist()
        np.testing.assert_array_equal(ea.new_values, eb.new_values[order])
        np.testing.assert_array_equal(ea.old_qualities, eb.old_qualities[order])
        np.testing.assert_array_equal(ea.source_ns, eb.source_ns[order])
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.qualities, b.qualities)


def test_storm_event_does_not_alias_the_callers_buffers() -> None:
    db = TagDatabase([_tag(f"x/e/E{i}/v") for i in range(10)])
    buf = np.arange(10, dtype=float)
    ev = db.apply(np.arange(10), buf, np.zeros(10, dtype=np.uint8), 5)
    buf[:] = -1
    assert ev.new_values.tolist() == list(range(10))
    assert db.read("x/e/E3/v").value == 3.0


def test_stale_limits_follow_each_devices_scan_period(db: TagDatabase) -> None:
    limits = db.stale_limits_ns({"dev": 10.0})
    assert limits.tolist() == [30_000_000_000] * 4  # stale_after = 3 scan periods of 10 s
    assert db.stale_limits_ns({})[0] == np.iinfo(np.int64).max  # unknown period: never stale


def test_pattern_match_agrees_with_fnmatch_and_is_cached(db: TagDatabase) -> None:
    import fnmatch

    for pattern in ["*", "dijon/*", "*/C1/*", "dijon/lighting/C1/[mp]*", "*/J?/phase_greens", "nothing/*"]:
        expected = [i for i, n in enumerate(db.names) if fnmatch.fnmatchcase(n, pattern)]
        assert db.match(pattern).tolist() == expected
    assert db.match("dijon/*") is db.match("dijon/*")
    assert not db.match("dijon/*").flags.writeable


def test_apply_readings_matches_apply_samples() -> None:
    """The columnar path (poller) and the sample path give the same events, values, texts and qualities."""
    from scada.tagdb import Readings

    defs = [_tag("c/E/power", deadband=2.0), _tag("c/E/ok", "bool"), _tag("c/E/mode", "enum"),
            _tag("c/P/msg", "string"), _tag("c/E/count", "int")]
    a, b = TagDatabase(defs), TagDatabase(defs)
    got_a: list[ChangeEvent] = []
    got_b: list[ChangeEvent] = []
    a.subscribe(got_a.append)
    b.subscribe(got_b.append)
    bad = Quality.BAD_COMM
    rounds = [
        [Sample(10.0, Quality.GOOD, 1, 2), Sample(True, Quality.GOOD, 1, 2), Sample(3, Quality.GOOD, 1, 2),
         Sample("hello", Quality.GOOD, 1, 2), Sample(7, Quality.GOOD, 1, 2)],
        [Sample(11.0, Quality.GOOD, 3, 4), Sample(True, Quality.GOOD, 3, 4), Sample(9, Quality.BAD_DEVICE, 3, 4),
         Sample("hello", Quality.GOOD, 3, 4), Sample(8, Quality.GOOD, 3, 4)],
        [Sample(None, bad, 5, 6), Sample(None, bad, 5, 6), Sample(None, bad, 5, 6), Sample(None, bad, 5, 6),
         Sample(None, bad, 5, 6)],
        [Sample(13.5, Quality.GOOD, 7, 8), Sample(False, Quality.GOOD, 7, 8), Sample(1, Quality.GOOD, 7, 8),
         Sample("world", Quality.GOOD, 7, 8), Sample(None, Quality.UNCERTAIN, 7, 8)],
    ]
    order = np.array([3, 0, 4, 1, 2], dtype=np.int64)  # not contiguous, not sorted
    for samples in rounds:
        picked = [samples[int(i)] for i in order]
        a.apply_samples(list(zip(order.tolist(), picked, strict=True)))
        b.apply_readings(order, Readings.from_samples(picked))
    assert len(got_a) == len(got_b)
    for ea, eb in zip(got_a, got_b, strict=True):
        for f in ("indices", "old_values", "new_values", "old_qualities", "new_qualities", "source_ns", "receive_ns"):
            np.testing.assert_array_equal(getattr(ea, f), getattr(eb, f), err_msg=f)
    assert [a.read(n) for n in a.names] == [b.read(n) for n in b.names]
    assert b.read("c/P/msg").value == "world" and b.read("c/E/mode").value == 1


def test_readings_round_trip_typed_by_dtype() -> None:
    from scada.tagdb import Readings

    defs = [_tag("c/E/power"), _tag("c/E/ok", "bool"), _tag("c/E/mode", "enum"), _tag("c/P/msg", "string")]
    samples = [Sample(1.5, Quality.GOOD, 1, 2), Sample(True, Quality.GOOD, 3, 4), Sample(9, Quality.BAD_DEVICE, 5, 6),
               Sample("txt", Quality.GOOD, 7, 8)]
    back = Readings.from_samples(samples).samples(defs)
    assert back == samples and [type(s.value) for s in back] == [float, bool, int, str]
    r = Readings(3)
    r.stamp_unset(42)
    assert r.samples(defs[:3]) == [Sample(None, Quality.BAD_COMM, 42, 42)] * 3
    with pytest.raises(ValueError, match="shapes"):
        TagDatabase(defs).apply_readings(np.array([0, 1]), Readings(3))


def test_readings_take_selects_in_order_and_renumbers_texts() -> None:
    r = Readings(4, Quality.GOOD)
    r.values[:] = [1.0, np.nan, 3.0, np.nan]
    r.source_ns[:] = [10, 20, 30, 40]
    r.receive_ns[:] = [11, 21, 31, 41]
    r.texts = {1: "un", 3: "trois"}
    got = r.take(np.array([3, 0, 2], dtype=np.int64))
    assert got.values[1:].tolist() == [1.0, 3.0] and np.isnan(got.values[0])
    assert got.source_ns.tolist() == [40, 10, 30] and got.receive_ns.tolist() == [41, 11, 31]
    assert got.texts == {0: "trois"}  # "un" (position 1) was not taken
    got.values[1] = 99.0
    assert r.values[0] == 1.0  # a copy, not a view
