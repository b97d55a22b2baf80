"""SQLite only: trends over a period whose raw data expired are answered from the roll-ups.

A year of irregular 10-minute data (an analogue with bad points, a step tag) goes into a real SQLite file
with daily partitions; ``maintain()`` runs with ``now`` past raw retention (60 days), so raw data exists
only for the last ~2 months and hourly roll-ups before. Queries over the expired part, the boundary and
the raw part are compared with aggregates computed from the original data (count/min/max/last exact,
avg and time-weighted average within float tolerance).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from historian.backend import Aggregates, Points, RetentionPolicy, Series, TagInfo, aggregate_series
from historian.sqlite_backend import SqliteBackend, _twa_cover

NS = 1_000_000_000
HOUR = 3600 * NS
DAY = 24 * HOUR
Y0 = 1_735_689_600 * NS  # 2025-01-01T00:00Z
DAYS = 365
RAW_DAYS = 60
NOW = Y0 + (DAYS + 1) * DAY
HORIZON = NOW - RAW_DAYS * DAY  # partitions ending at or before this are dropped (day aligned)
POLICY = RetentionPolicy(raw_s=RAW_DAYS * 86400, rollup_interval_s=3600, rollup_keep_s=5 * 365 * 86400)


def make_data(seed: int) -> dict[str, Series]:
    rng = np.random.default_rng(seed)
    n = DAYS * 144
    ts = Y0 + np.arange(n, dtype=np.int64) * 600 * NS + rng.integers(0, 500 * NS, n)  # jittered, never on an edge
    power = np.abs(np.cumsum(rng.normal(0, 50, n))) + 1000.0
    q = np.zeros(n, np.uint8)
    bad = rng.random(n) < 0.01
    q[bad] = 2
    power[bad] = np.nan
    ts2 = Y0 + np.sort(rng.choice(np.arange(DAYS * 8, dtype=np.int64), DAYS * 4, replace=False)) * 3 * HOUR + 7 * NS
    state = rng.integers(0, 3, ts2.size).astype(np.float64)
    return {"city/LC001/power": Series("city/LC001/power", ts, power, q),
            "city/LC001/mode": Series("city/LC001/mode", ts2, state, np.zeros(ts2.size, np.uint8))}


STEP = {"city/LC001/power": False, "city/LC001/mode": True}


@dataclass
class Store:
    be: SqliteBackend
    data: dict[str, Series]
    path: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("rollup") / "h.sqlite"
    data = make_data(7)
    be = SqliteBackend(path, retention={"slow": POLICY})
    be.register_tags([TagInfo(t, step=STEP[t], retention="slow") for t in data])
    for name, s in data.items():
        be.write(Points([name], np.zeros(len(s), np.int64), s.ts, s.value, s.quality))
    be.compact()
    stats = be.maintain(NOW)
    assert stats["dropped"] == DAYS - RAW_DAYS + 1 and stats["closed"] == DAYS
    try:
        yield Store(be, data, path)
    finally:
        be.close()


def reference(s: Series, start: int, end: int, interval: int, step: bool) -> tuple[Aggregates, np.ndarray]:
    """Aggregates of the original points, and the time-weighted average of the true signal (the stored
    points on both sides of the range included)."""
    k = int(np.searchsorted(s.ts, start, side="left"))
    before = s.take(slice(max(k - 1, 0), k))
    agg = aggregate_series(s.window(start, end), before, start, end, interval, step)
    nb = len(agg)
    edges = np.append(agg.start, min(start + nb * interval, end)).astype(np.int64)
    twa, _, _ = _twa_cover((s.ts, s.value, s.quality), s.ts, edges, step)
    return agg, twa


def check(got: Aggregates, ref: Aggregates, twa: np.ndarray, sel: slice = slice(None),
          twa_sel: slice = slice(None)) -> None:
    assert got.start[sel].tolist() == ref.start[sel].tolist()
    assert got.count[sel].tolist() == ref.count[sel].tolist()
    for col in ("min", "max", "last"):
        np.testing.assert_array_equal(getattr(got, col)[sel], getattr(ref, col)[sel], err_msg=col)
    np.testing.assert_allclose(got.avg[sel], ref.avg[sel], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got.twa[twa_sel], twa[twa_sel], rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize("tag", list(STEP))
def test_expired_range_at_a_multiple_of_the_rollup_interval_is_exact(store: Store, tag: str) -> None:
    start, end = Y0 + 10 * DAY, Y0 + 100 * DAY  # all expired
    assert store.be.raw(tag, start, end).ts.size == 0
    for interval in (DAY, 6 * HOUR, HOUR, 7 * DAY):
        got = store.be.aggregate(tag, start, end, interval)
        ref, twa = reference(store.data[tag], start, end, interval, STEP[tag])
        assert got.source == "rollup" and got.resolution_ns == 0 and got.raw_from_ns == HORIZON
        check(got, ref, twa)
        assert int(got.count.sum()) == int(ref.count.sum()) > 0


@pytest.mark.parametrize("tag", list(STEP))
def test_boundary_bucket_combines_rollups_and_raw(store: Store, tag: str) -> None:
    # daily buckets offset by 3 h: one bucket is [H - 3 h, H + 21 h), half roll-ups, half raw points
    start, end = HORIZON - 5 * DAY - 3 * HOUR, HORIZON + 5 * DAY - 3 * HOUR
    got = store.be.aggregate(tag, start, end, DAY)
    ref, twa = reference(store.data[tag], start, end, DAY, STEP[tag])
    assert got.source == "mixed" and got.raw_from_ns == HORIZON and got.resolution_ns == 0
    # twa of the last bucket: a raw query holds the value after its last point (no look-ahead), as before
    check(got, ref, twa, twa_sel=slice(0, -1))
    assert store.be.raw(tag, start, end).ts[0] >= HORIZON


@pytest.mark.parametrize("tag", list(STEP))
def test_raw_part_is_unchanged(store: Store, tag: str) -> None:
    start, end = HORIZON + 10 * DAY, HORIZON + 20 * DAY
    got = store.be.aggregate(tag, start, end, HOUR)
    ref, twa = reference(store.data[tag], start, end, HOUR, STEP[tag])
    assert got.source == "raw" and got.raw_from_ns is None
    check(got, ref, twa, twa_sel=slice(0, -1))


@pytest.mark.parametrize("tag", list(STEP))
def test_first_raw_bucket_uses_the_value_kept_at_the_horizon(store: Store, tag: str) -> None:
    # the point before the first kept raw point expired: its value at H comes from the roll-up
    start, end = HORIZON, HORIZON + DAY
    got = store.be.aggregate(tag, start, end, HOUR)
    ref, twa = reference(store.data[tag], start, end, HOUR, STEP[tag])
    assert got.source == "raw"
    check(got, ref, twa, twa_sel=slice(0, -1))
    assert not np.isnan(got.twa[0])


def test_finer_interval_over_expired_data_returns_rollup_buckets(store: Store) -> None:
    tag = "city/LC001/power"
    start, end = HORIZON - 2 * DAY, HORIZON + DAY
    got = store.be.aggregate(tag, start, end, 600 * NS)
    assert got.source == "mixed" and got.resolution_ns == HOUR and got.raw_from_ns == HORIZON
    old = got.start < HORIZON
    assert old.sum() == 48 and np.all(np.diff(got.start[old]) == HOUR)  # hourly, never invented 10-min values
    ref_h, twa_h = reference(store.data[tag], start, HORIZON, HOUR, False)
    n = int(old.sum())
    check(Aggregates(tag, got.start[:n], HOUR, got.count[:n], got.min[:n], got.max[:n], got.avg[:n],
                     got.last[:n], got.twa[:n]), ref_h, twa_h)
    ref_r, twa_r = reference(store.data[tag], HORIZON, end, 600 * NS, False)
    m = len(got) - n
    assert m == 144
    check(Aggregates(tag, got.start[n:], 600 * NS, got.count[n:], got.min[n:], got.max[n:], got.avg[n:],
                     got.last[n:], got.twa[n:]), ref_r, twa_r, twa_sel=slice(0, -1))


def test_unaligned_start_returns_rollup_buckets(store: Store) -> None:
    tag = "city/LC001/power"
    start = Y0 + 50 * DAY + 30 * 60 * NS  # half past: a day bucket would split roll-up hours
    got = store.be.aggregate(tag, start, start + 3 * DAY, DAY)
    assert got.source == "rollup" and got.resolution_ns == HOUR
    assert got.start[0] == start - 30 * 60 * NS and len(got) == 3 * 24 + 1  # the partial hour is shown whole
    ref, twa = reference(store.data[tag], int(got.start[0]), int(got.start[-1]) + HOUR, HOUR, False)
    check(got, ref, twa)


def test_decimate_over_expired_data_returns_min_and_max_per_rollup(store: Store) -> None:
    tag = "city/LC001/power"
    s = store.data[tag]
    start, end = HORIZON - 3 * DAY, HORIZON + DAY
    d = store.be.decimate(tag, start, end, 10_000)  # plenty of pixels: nothing decimated away
    assert d.source == "mixed" and d.resolution_ns == HOUR and d.raw_from_ns == HORIZON
    assert np.all(np.diff(d.ts) > 0)
    old = d.ts < HORIZON
    assert old.sum() <= 2 * 72
    for h in range(72):
        a = start + h * HOUR
        w = s.window(a, a + HOUR)
        vals = w.value[w.quality < 2]
        got = d.value[(d.ts >= a) & (d.ts < a + HOUR)]
        assert got.min() == vals.min() and got.max() == vals.max()
    raw = s.window(HORIZON, end)
    np.testing.assert_array_equal(d.ts[~old], raw.ts)
    np.testing.assert_array_equal(d.value[~old], raw.value)
    # few pixels over the whole year: every pixel holds the min and max of its points, where the points
    # of the expired part are each roll-up hour's min (at its start) and max (at its middle)
    px = 100
    d = store.be.decimate(tag, Y0, NOW, px)
    assert len(d) <= 4 * px and d.source == "mixed"
    r = store.be.rollups(tag, Y0, HORIZON)
    r_ok = r.count > 0
    good = (s.quality < 2) & (s.ts >= HORIZON)
    pts_t = np.concatenate([r.start[r_ok], r.start[r_ok] + HOUR // 2, s.ts[good]])
    pts_v = np.concatenate([r.min[r_ok], r.max[r_ok], s.value[good]])
    pix = (pts_t - Y0) * px // (NOW - Y0)
    dpix = (d.ts - Y0) * px // (NOW - Y0)
    for p in range(px):
        sel = pts_v[pix == p]
        got = d.value[dpix == p]
        if sel.size:
            assert np.nanmin(got) == sel.min() and np.nanmax(got) == sel.max()
    assert np.nanmax(d.value) == np.nanmax(s.value) and np.nanmin(d.value) == np.nanmin(s.value)


def test_expired_only_decimate_is_flagged_rollup(store: Store) -> None:
    d = store.be.decimate("city/LC001/mode", Y0, Y0 + 30 * DAY, 50)
    assert d.source == "rollup" and len(d) > 0 and set(np.unique(d.value).tolist()) <= {0.0, 1.0, 2.0}


def test_horizon_survives_a_reopen(store: Store) -> None:
    tag = "city/LC001/power"
    start, end = Y0 + 200 * DAY, HORIZON + 2 * DAY
    be = SqliteBackend(store.path, retention={"slow": POLICY})
    try:
        got = be.aggregate(tag, start, end, DAY)
        assert got.source == "mixed"
        ref, twa = reference(store.data[tag], start, end, DAY, False)
        check(got, ref, twa, twa_sel=slice(0, -1))
    finally:
        be.close()


def test_late_data_for_an_expired_period_does_not_replace_its_rollups(tmp_path: Path) -> None:
    be = SqliteBackend(tmp_path / "h.sqlite", retention={"default": RetentionPolicy(raw_s=2 * 86400)})
    ts = Y0 + np.arange(0, 5 * 86400, 60, dtype=np.int64) * NS
    be.write(Points(["a"], np.zeros(ts.size, np.int64), ts, np.ones(ts.size), np.zeros(ts.size, np.uint8)))
    be.compact()
    be.maintain(Y0 + 5 * DAY)
    before = be.aggregate("a", Y0, Y0 + DAY, DAY)
    assert before.source == "rollup" and before.count.tolist() == [1440]
    be.write(Points.from_rows([("a", Y0 + 30 * NS, 5.0, 0)]))  # a late point, day 0 long expired
    be.compact()
    be.maintain(Y0 + 5 * DAY + 1)
    after = be.aggregate("a", Y0, Y0 + DAY, DAY)
    assert after.count.tolist() == [1440] and after.max.tolist() == [1.0]
    be.close()
