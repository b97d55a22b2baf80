"""The compressor: table-driven cases, the reference vs the vectorised bank, and the guarantees
(property-based): linear interpolation between archived points stays within the compression
deviation of every input point, and archived points are never more than max_interval apart."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from historian.compress import NS, CompressorBank, max_reconstruction_error, swinging_door

TOL = 1e-9


def run_bank(t, v, dev, max_ns, min_ns=0, q=None):
    bank = CompressorBank(1)
    bank.configure(0, dev=dev, max_interval_ns=max_ns, min_interval_ns=min_ns, compress=True)
    ts, vs = [], []
    for i, (tt, vv) in enumerate(zip(t, v, strict=True)):
        qq = 0 if q is None else q[i]
        a = bank.process(np.array([0]), np.array([tt]), np.array([vv]), np.array([qq], np.uint8))
        ts.extend(a.ts.tolist())
        vs.extend(a.value.tolist())
    a = bank.flush()
    ts.extend(a.ts.tolist())
    vs.extend(a.value.tolist())
    return np.array(ts, np.int64), np.array(vs)


@pytest.mark.parametrize(("name", "values", "dev", "kept"), [
    ("straight line keeps the ends", [0, 1, 2, 3, 4, 5], 0.1, [0, 5]),
    ("flat line keeps the ends", [7, 7, 7, 7], 0.0, [0, 3]),
    ("a step keeps the corner points", [0, 0, 0, 5, 5, 5], 0.1, [0, 2, 3, 5]),
    ("a spike within dev is dropped", [0, 0, 0.05, 0, 0], 0.1, [0, 4]),
    ("a spike beyond dev is kept", [0, 0, 1, 0, 0], 0.1, [0, 1, 2, 3, 4]),
    ("a single point", [3], 1.0, [0]),
])
def test_table(name, values, dev, kept):
    t = np.arange(len(values), dtype=np.int64) * NS
    keep = swinging_door(t, np.array(values, float), dev)
    assert np.flatnonzero(keep).tolist() == kept, name
    bt, _ = run_bank(t, values, dev, 10**18)
    assert bt.tolist() == t[kept].tolist(), name


def test_textbook_door_overshoot_is_avoided():
    # the textbook test (lo <= hi after adding the point) would keep (10, 10.5) as the end of a line
    # from (0, 0) and be 1.05 off at t=1; the strict test archives (1, 0)
    t = np.array([0, 1, 10, 20], np.int64) * NS
    v = np.array([0.0, 0.0, 10.5, 0.0])
    keep = swinging_door(t, v, 1.0)
    assert max_reconstruction_error(t, v, t[keep], v[keep]) <= 1.0


def test_max_interval_forces_archiving():
    t = np.arange(100, dtype=np.int64) * NS
    keep = swinging_door(t, np.zeros(100), 0.5, max_interval_ns=10 * NS)
    assert np.diff(t[keep]).max() <= 10 * NS


def test_min_interval_drops_fast_inputs():
    t = np.arange(0, 10 * NS, NS // 10, dtype=np.int64)
    v = np.sin(t / NS)
    keep = swinging_door(t, v, 0.0, min_interval_ns=NS)
    assert np.diff(t[keep]).min() >= NS


def test_bank_heartbeat_and_quality_reset():
    bank = CompressorBank(2)
    bank.configure(np.arange(2), dev=1.0, max_interval_ns=10 * NS, compress=np.array([True, False]))
    a = bank.process(np.array([0, 1]), np.array([0, 0]), np.array([1.0, 1.0]), np.array([0, 0], np.uint8))
    assert len(a) == 2  # first points
    hb = bank.tick(35 * NS)
    # compressed tag: the heartbeat at 30 s is held as the snapshot (archived by the next point)
    assert sorted(hb.ts[hb.idx == 0].tolist()) == [10 * NS, 20 * NS]
    assert sorted(hb.ts[hb.idx == 1].tolist()) == [10 * NS, 20 * NS, 30 * NS]
    # a quality change with an old timestamp is moved to now and archived with the held snapshot
    a = bank.process(np.array([0]), np.array([30 * NS]), np.array([1.0]), np.array([2], np.uint8), now_ns=36 * NS)
    assert a.ts.tolist()[-1] == 36 * NS and a.quality.tolist()[-1] == 2
    # an older value change is archived as late, the state untouched
    a = bank.process(np.array([1]), np.array([5 * NS]), np.array([9.0]), np.array([0], np.uint8))
    assert a.late.tolist() == [True]


@st.composite
def signals(draw):
    n = draw(st.integers(2, 120))
    gaps = draw(st.lists(st.integers(1, 5 * NS), min_size=n - 1, max_size=n - 1))
    t = np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64) + draw(st.integers(0, 10**18))
    kind = draw(st.sampled_from(["float", "walk", "steps"]))
    if kind == "float":
        v = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=n, max_size=n))
    elif kind == "walk":
        v = np.cumsum(draw(st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n)))
    else:
        v = np.repeat(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), 1)
    dev = draw(st.sampled_from([0.0, 1e-6, 0.01, 0.5, 2.0, 10.0]))
    max_ns = draw(st.sampled_from([5 * NS, 12 * NS, 60 * NS, 10**18]))
    return t, np.asarray(v, float), dev, max_ns


@settings(max_examples=300, deadline=None)
@given(signals())
def test_property_reconstruction_within_deviation_and_max_gap(sig):
    t, v, dev, max_ns = sig
    keep = swinging_door(t, v, dev, max_interval_ns=max_ns)
    kt, kv = t[keep], v[keep]
    assert keep[0] and keep[-1]
    assert max_reconstruction_error(t, v, kt, kv) <= dev + TOL
    assert np.diff(kt).max(initial=0) <= max_ns  # input gaps are <= 5 s <= max
    # the vectorised bank archives exactly the same points
    bt, bv = run_bank(t, v, dev, max_ns)
    assert bt.tolist() == kt.tolist()
    assert np.array_equal(bv, kv)


@settings(max_examples=100, deadline=None)
@given(signals(), st.integers(6, 30))
def test_property_heartbeats_bound_the_gap_even_with_sparse_input(sig, sparse):
    """Inputs further apart than max: the bank's heartbeats (last value again at last + max) keep
    archived points within max of each other, and reconstruction within dev of the inputs."""
    t, v, dev, _ = sig
    t = t * sparse // 5  # gaps up to 30 s
    max_ns = 5 * NS
    bt, bv = run_bank(t, v, dev, max_ns)
    assert np.diff(bt).max(initial=0) <= max_ns
    assert max_reconstruction_error(t, v, bt, bv) <= dev + TOL
