"""ONE contract suite, run against every backend (as asyncua runs its history tests per backend).

Backends: the embedded SQLite store; InfluxDB 1.6.7 (v1 writes + InfluxQL reads, real influxd);
the InfluxDB v2 write path against VictoriaMetrics (read back through its export API in the test:
the v2 adapter has no query path, there is no Flux here). An operation a backend does not offer is
skipped with the reason, never claimed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from historian.backend import Capability, Points
from tests.historian.conftest import Store

MS = 1_000_000
T0 = 1_763_800_000_000 * MS  # 2025-11-22, ms aligned (VictoriaMetrics keeps ms)


def need(store: Store, cap: Capability, why: str = "") -> None:
    if cap not in store.caps:
        pytest.skip(f"{store.kind}: {cap.value} not supported{': ' + why if why else ''}")


def series_points(store: Store, n: int = 50) -> tuple[str, str, Points]:
    a, b = f"{store.prefix}/city/LC001/power", f"{store.prefix}/city/LC001/mains_ok"
    rows = []
    for i in range(n):
        rows.append((a, T0 + i * 1000 * MS, 100.0 + i * 0.5, 0))
        if i % 10 == 0:
            rows.append((b, T0 + i * 1000 * MS, float(i // 10 % 2), 0))
    return a, b, Points.from_rows(rows)


def test_roundtrip_keeps_order_values_and_qualities(store: Store) -> None:
    a, b, pts = series_points(store)
    store.backend.write(pts)
    s = store.read(a, T0, T0 + 10**12, 50)
    assert len(s) == 50
    assert np.all(np.diff(s.ts) > 0)
    assert s.ts[0] == T0 and s.ts[-1] == T0 + 49 * 1000 * MS
    assert np.allclose(s.value, 100.0 + np.arange(50) * 0.5)
    assert (s.quality == 0).all()
    assert store.read(b, T0, T0 + 10**12, 5).value.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_range_is_half_open(store: Store) -> None:
    a, _, pts = series_points(store)
    store.backend.write(pts)
    store.read(a, T0, T0 + 10**12, 50)
    s = store.read(a, T0 + 10 * 1000 * MS, T0 + 20 * 1000 * MS, 10)
    assert s.ts.tolist() == [T0 + i * 1000 * MS for i in range(10, 20)]


def test_replaying_a_batch_stores_it_once(store: Store) -> None:
    a, _, pts = series_points(store)
    store.backend.write(pts)
    store.backend.write(pts)  # a store-and-forward replay after a crash
    s = store.read(a, T0, T0 + 10**12, 50)
    assert len(s) == 50


def test_bad_quality_without_value_is_stored(store: Store) -> None:
    tag = f"{store.prefix}/x/q"
    store.backend.write(Points.from_rows([(tag, T0, 1.5, 0), (tag, T0 + 1000 * MS, None, 2),
                                          (tag, T0 + 2000 * MS, 2.5, 0)]))
    s = store.read(tag, T0, T0 + 10**12, 3)
    assert s.quality.tolist() == [0, 2, 0]
    assert s.value[0] == 1.5 and math.isnan(s.value[1]) and s.value[2] == 2.5


def test_last_write_wins_for_the_same_timestamp(store: Store) -> None:
    if store.kind == "victoria-v2":
        pytest.skip("VictoriaMetrics deduplicates equal timestamps without a last-write-wins guarantee")
    tag = f"{store.prefix}/x/lww"
    store.backend.write(Points.from_rows([(tag, T0, 1.0, 0)]))
    store.backend.write(Points.from_rows([(tag, T0, 2.0, 1)]))
    s = store.read(tag, T0, T0 + 1)
    assert s.value.tolist() == [2.0] and s.quality.tolist() == [1]


def test_strings_roundtrip(store: Store) -> None:
    need(store, Capability.TEXT)
    if store.kind == "victoria-v2":
        pytest.skip("VictoriaMetrics drops string fields")
    tag = f"{store.prefix}/panel/P01/message"
    texts = ['Route barrée, "déviation"', "a,b=c d\\e", ""]
    store.backend.write(Points.from_rows([(tag, T0 + i * MS, s, 0) for i, s in enumerate(texts)]))
    s = store.read(tag, T0, T0 + 10**9)
    assert s.text == texts


def test_aggregates_per_interval(store: Store) -> None:
    need(store, Capability.AGGREGATE)
    tag = f"{store.prefix}/x/agg"
    # 0..9 at 1 s, then a 10 s bucket: linear ramp
    store.backend.write(Points.from_rows([(tag, T0 + i * 1000 * MS, float(i), 0) for i in range(20)]))
    store.backend.flush()
    agg = store.backend.aggregate(tag, T0, T0 + 20 * 1000 * MS, 10 * 1000 * MS, step=False)
    assert agg.count.tolist() == [10, 10]
    assert agg.min.tolist() == [0.0, 10.0] and agg.max.tolist() == [9.0, 19.0]
    assert agg.avg.tolist() == [4.5, 14.5] and agg.last.tolist() == [9.0, 19.0]
    # time-weighted: the ramp's mean over [0, 10) is 5; the last bucket holds 19 after t=19
    assert agg.twa[0] == pytest.approx(5.0)
    assert agg.twa[1] == pytest.approx((sum(range(10, 19)) + 9 * 0.5 + 19) / 10)
    step = store.backend.aggregate(tag, T0, T0 + 20 * 1000 * MS, 10 * 1000 * MS, step=True)
    assert step.twa[0] == pytest.approx(4.5)


def test_decimation_keeps_min_and_max_of_every_pixel(store: Store) -> None:
    need(store, Capability.DECIMATE)
    tag = f"{store.prefix}/x/dec"
    n = 20_000
    rng = np.random.default_rng(1)
    v = np.cumsum(rng.normal(size=n))
    ts = T0 + np.arange(n, dtype=np.int64) * 100 * MS
    store.backend.write(Points([tag], np.zeros(n, np.int64), ts, v, np.zeros(n, np.uint8)))
    store.backend.flush()
    end = T0 + n * 100 * MS
    d = store.backend.decimate(tag, T0, end, 200)
    assert len(d) <= 4 * 200
    px = (ts - T0) * 200 // (end - T0)
    dpx = (d.ts - T0) * 200 // (end - T0)
    for p in range(200):
        sel = v[px == p]
        got = d.value[dpx == p]
        assert got.min() == sel.min() and got.max() == sel.max()


def test_value_at_interpolates_analogue_and_holds_steps(store: Store) -> None:
    need(store, Capability.VALUE_AT)
    tag = f"{store.prefix}/x/at"
    store.backend.write(Points.from_rows([(tag, T0, 10.0, 0), (tag, T0 + 10_000 * MS, 20.0, 0),
                                          (tag, T0 + 20_000 * MS, 30.0, 2)]))
    store.backend.flush()
    lin = store.backend.value_at(tag, T0 + 2_500 * MS, step=False)
    assert lin.value == pytest.approx(12.5) and lin.interpolated
    assert store.backend.value_at(tag, T0 + 2_500 * MS, step=True).value == 10.0
    # no interpolation towards a bad point; after the last point its value holds
    assert store.backend.value_at(tag, T0 + 15_000 * MS, step=False).value == 20.0
    last = store.backend.value_at(tag, T0 + 99_000 * MS, step=False)
    assert last.value == 30.0 and last.quality == 2
    assert math.isnan(store.backend.value_at(tag, T0 - 1, step=False).value)


def test_large_batch(store: Store) -> None:
    """20,000 points of 100 tags in one write (chunked into several HTTP requests where needed)."""
    tags = [f"{store.prefix}/bulk/{i}" for i in range(100)]
    n = 20_000
    idx = np.arange(n) % 100
    ts = T0 + (np.arange(n) // 100).astype(np.int64) * 1000 * MS
    store.backend.write(Points(tags, idx.astype(np.int64), ts, np.arange(n, dtype=float), np.zeros(n, np.uint8)))
    s = store.read(tags[7], T0, T0 + 10**13, 200)
    assert len(s) == 200 and s.value.tolist() == [float(7 + 100 * k) for k in range(200)]
