"""Exception filter + swinging-door compression: pure functions, no clock, no I/O.

Per tag the archive keeps a *pivot* (the last archived point) and holds back the most recent input
point (the *snapshot*). Every input point narrows a "door" of slopes starting at the pivot::

    value
      │              ....  upper door: hi = min over held points of (v + dev - pv) / (t - pt)
      │      pivot ●──────────────────● snapshot (held, not archived yet)
      │              ''''  lower door: lo = max over held points of (v - dev - pv) / (t - pt)
      └─────────────────────────────────────────── time

A new point (t, v) with slope m = (v - pv) / (t - pt) from the pivot is *inside* when lo <= m <= hi:
the straight line pivot → new point then passes within ``dev`` of every held point. When it is
outside (or more than ``max_interval`` after the pivot) the snapshot is archived and becomes the new
pivot. Because the snapshot is always the point just before the new one, the reconstruction error
(linear interpolation between archived points) is at most ``dev`` for every input point. This is
stricter than the textbook test (``lo <= hi`` after adding the point), which can exceed ``dev`` by a
little when the new point's own door overlaps the old one but its value line does not.

Exception stage (AVEVA PI ExcDev/ExcMin/ExcMax): the *deviation* part is done by the tag database
(TagDef.deadband: a change is published only beyond it); here ``min_interval`` drops inputs that come
sooner than that after the last accepted input, and ``max_interval`` is a heartbeat: when a tag has
not delivered a point for ``max_interval`` the bank feeds its last value again at exactly
``last + max_interval`` (the value cannot have moved beyond the deadband, or the tag database would
have published it). So with the recorder ticking, stored points are never more than ``max_interval``
apart.

Resets: a point whose quality differs from the segment's (a trend must show where data was bad), a
NaN value, or a tag with ``compress=False`` (digital, enum, state integers, strings) is archived
as is, after the held snapshot.

Timestamps that do not advance: a quality-only change carrying an old timestamp (the tag database's
stale marking re-uses the last source time) is moved to ``max(now, last + 1 ns)``; a value change at
the same nanosecond moves to ``last + 1 ns``; an older value change is *late* (e.g. a field buffer
replay) and is archived as is without touching the compressor state.

Two implementations: :func:`swinging_door` (one tag, a plain loop: the reference) and
:class:`CompressorBank` (all tags of the city as numpy columns; a batch holds each tag at most once,
as the tag database's change events do, so one batch is one vectorised step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

NS = 1_000_000_000
NO_MAX = np.iinfo(np.int64).max // 4  # "no maximum interval"
MAX_HEARTBEATS = 1000  # per call: a longer silence is a real gap (the recorder was not running)


def swinging_door(t: Sequence[int] | I64, v: Sequence[float] | F64, dev: float,
                  max_interval_ns: int = NO_MAX, min_interval_ns: int = 0) -> B:
    """Reference swinging door for one tag: which of the input points are archived.

    ``t`` strictly increasing (ns), ``v`` finite. The last point is reported as archived (it is the
    held snapshot; the recorder archives it when the next point or the shutdown comes).
    """
    t = np.asarray(t, dtype=np.int64)
    v = np.asarray(v, dtype=np.float64)
    n = t.size
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    keep[0] = True
    p = 0  # pivot index
    s = -1  # snapshot index (-1: none)
    last_in = 0  # last accepted input
    hi, lo = np.inf, -np.inf
    for i in range(1, n):
        if t[i] - t[last_in] < min_interval_ns:
            continue
        dt = float(t[i] - t[p])
        m = (v[i] - v[p]) / dt
        inside = s < 0 or (lo <= m <= hi)
        if inside and t[i] - t[p] <= max_interval_ns:
            s = i
            hi = min(hi, (v[i] + dev - v[p]) / dt)
            lo = max(lo, (v[i] - dev - v[p]) / dt)
        elif s >= 0:
            keep[s] = True
            p = s
            dt2 = float(t[i] - t[p])
            if t[i] - t[p] > max_interval_ns:
                keep[i] = True
                p, s, hi, lo = i, -1, np.inf, -np.inf
            else:
                s = i
                hi = (v[i] + dev - v[p]) / dt2
                lo = (v[i] - dev - v[p]) / dt2
        else:
            keep[i] = True
            p, s, hi, lo = i, -1, np.inf, -np.inf
        last_in = i
    if s >= 0:
        keep[s] = True
    return keep


@dataclass(slots=True)
class Archived:
    """Points leaving the compressor, in per-tag time order (a tag may appear several times)."""

    idx: I64
    ts: I64
    value: F64
    quality: U8
    late: B  # archived as is because older than the tag's last input

    def __len__(self) -> int:
        return int(self.idx.size)


class _Out:
    def __init__(self) -> None:
        self.parts: list[tuple[I64, I64, F64, U8, bool]] = []

    def add(self, idx: I64, t: I64, v: F64, q: U8, late: bool = False) -> None:
        if idx.size:
            self.parts.append((idx, t, v, q, late))

    def result(self) -> Archived:
        if not self.parts:
            return Archived(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8),
                            np.zeros(0, bool))
        return Archived(
            np.concatenate([p[0] for p in self.parts]),
            np.concatenate([p[1] for p in self.parts]),
            np.concatenate([p[2] for p in self.parts]),
            np.concatenate([p[3] for p in self.parts]),
            np.concatenate([np.full(p[0].size, p[4]) for p in self.parts]),
        )


class CompressorBank:
    """Exception + swinging-door state of every tag, as numpy columns indexed like the tag database.

    ``configure(i, ...)`` sets a tag's options; ``process(idx, t, v, q, now_ns)`` pushes one batch
    (each index at most once) and returns the archived points; ``tick(now_ns)`` emits the max-interval
    heartbeats; ``flush()`` archives every held snapshot (shutdown).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.dev = np.zeros(n)
        self.max_ns = np.full(n, NO_MAX, dtype=np.int64)
        self.min_ns = np.zeros(n, dtype=np.int64)
        self.compress = np.zeros(n, dtype=bool)
        self.enabled = np.ones(n, dtype=bool)
        # pivot (last archived point)
        self.has_pivot = np.zeros(n, dtype=bool)
        self.p_t = np.zeros(n, dtype=np.int64)
        self.p_v = np.zeros(n)
        self.p_q = np.zeros(n, dtype=np.uint8)
        # held snapshot
        self.has_snap = np.zeros(n, dtype=bool)
        self.s_t = np.zeros(n, dtype=np.int64)
        self.s_v = np.zeros(n)
        self.s_q = np.zeros(n, dtype=np.uint8)
        # last accepted input (snapshot if held, else pivot)
        self.in_t = np.zeros(n, dtype=np.int64)
        self.in_v = np.zeros(n)
        self.in_q = np.zeros(n, dtype=np.uint8)
        # the door
        self.hi = np.full(n, np.inf)
        self.lo = np.full(n, -np.inf)

    def configure(self, i: int | I64, *, dev: float | F64 = 0.0, max_interval_ns: int | I64 = NO_MAX,
                  min_interval_ns: int | I64 = 0, compress: bool | B = True) -> None:
        max_ns = np.where(np.asarray(max_interval_ns) <= 0, NO_MAX, max_interval_ns)
        if np.any(np.asarray(min_interval_ns) > max_ns):
            raise ValueError("min_interval must not exceed max_interval")
        if np.any(np.asarray(dev) < 0):
            raise ValueError("compression deviation must be >= 0")
        self.dev[i] = dev
        self.max_ns[i] = max_ns
        self.min_ns[i] = min_interval_ns
        self.compress[i] = compress

    # ------------------------------------------------------------------ batch entry points
    def process(self, idx: I64, t: I64, v: F64, q: U8, now_ns: int = 0) -> Archived:
        idx = np.asarray(idx, dtype=np.int64)
        t = np.array(t, dtype=np.int64, copy=True)
        v = np.asarray(v, dtype=np.float64)
        q = np.asarray(q, dtype=np.uint8)
        out = _Out()
        hp = self.has_pivot[idx]
        last_t = self.in_t[idx]
        le = hp & (t <= last_t)
        if le.any():
            lv = self.in_v[idx]
            same_v = (v == lv) | (np.isnan(v) & np.isnan(lv))
            qual_only = le & (q != self.in_q[idx]) & same_v
            t[qual_only] = np.maximum(now_ns, last_t[qual_only] + 1)
            tie = le & ~qual_only & (t == last_t)
            t[tie] = last_t[tie] + 1
            late = le & ~qual_only & ~tie
            if late.any():
                out.add(idx[late], t[late], v[late], q[late], late=True)
                keep = ~late
                idx, t, v, q = idx[keep], t[keep], v[keep], q[keep]
        self._fill_gaps(idx, t, out)
        self._step(idx, t, v, q, out)
        return out.result()

    def tick(self, now_ns: int) -> Archived:
        """Heartbeats: every tag silent for ``max_interval`` gets its last value again."""
        out = _Out()
        idx = np.flatnonzero(self.has_pivot & self.enabled).astype(np.int64)
        self._fill_gaps(idx, np.full(idx.size, now_ns, dtype=np.int64), out, strict=False)
        return out.result()

    def flush(self) -> Archived:
        """Archive every held snapshot (shutdown: nothing stays in memory)."""
        out = _Out()
        idx = np.flatnonzero(self.has_snap).astype(np.int64)
        out.add(idx, self.s_t[idx].copy(), self.s_v[idx].copy(), self.s_q[idx].copy())
        self._pivot(idx, self.s_t[idx], self.s_v[idx], self.s_q[idx])
        return out.result()

    # ------------------------------------------------------------------ internals
    def _fill_gaps(self, idx: I64, until: I64, out: _Out, strict: bool = True) -> None:
        """Feed ``last + max`` while the tag's next point (at ``until``) is further away than ``max``.

        ``strict``: a point is due at ``until`` (the gap must be below max); otherwise (tick) a
        heartbeat is due as soon as ``until - last >= max``.
        """
        for _ in range(MAX_HEARTBEATS):
            gap = until - self.in_t[idx]
            due = self.has_pivot[idx] & ((gap > self.max_ns[idx]) if strict else (gap >= self.max_ns[idx]))
            if not due.any():
                return
            sel = idx[due]
            self._step(sel, self.in_t[sel] + self.max_ns[sel], self.in_v[sel].copy(), self.in_q[sel].copy(), out)

    def _pivot(self, idx: I64, t: I64, v: F64, q: U8) -> None:
        self.has_pivot[idx] = True
        self.p_t[idx] = t
        self.p_v[idx] = v
        self.p_q[idx] = q
        self.has_snap[idx] = False
        self.hi[idx] = np.inf
        self.lo[idx] = -np.inf

    def _snap(self, idx: I64, t: I64, v: F64, q: U8) -> None:
        self.has_snap[idx] = True
        self.s_t[idx] = t
        self.s_v[idx] = v
        self.s_q[idx] = q

    def _step(self, idx: I64, t: I64, v: F64, q: U8, out: _Out) -> None:
        if idx.size == 0:
            return
        hp = self.has_pivot[idx]
        pt, pv, pq = self.p_t[idx], self.p_v[idx], self.p_q[idx]
        hs = self.has_snap[idx]
        reset = ~hp | ~self.compress[idx] | np.isnan(v) | np.isnan(pv) | (q != pq)
        drop = ~reset & (t - self.in_t[idx] < self.min_ns[idx])
        if drop.any():
            keep = ~drop
            idx, t, v, q, hp, pt, pv, pq, hs, reset = (a[keep] for a in (idx, t, v, q, hp, pt, pv, pq, hs, reset))
        self.in_t[idx] = t
        self.in_v[idx] = v
        self.in_q[idx] = q
        # resets: archive the held snapshot, then the point itself, which becomes the pivot
        if reset.any():
            r = idx[reset]
            rs = hs[reset]
            out.add(r[rs], self.s_t[r[rs]].copy(), self.s_v[r[rs]].copy(), self.s_q[r[rs]].copy())
            out.add(r, t[reset], v[reset], q[reset])
            self._pivot(r, t[reset], v[reset], q[reset])
        n = ~reset
        if not n.any():
            return
        ni, nt, nv, nq, hs = idx[n], t[n], v[n], q[n], hs[n]
        pt, pv = pt[n], pv[n]
        dev = self.dev[ni]
        dt = (nt - pt).astype(np.float64)
        m = (nv - pv) / dt
        inside = ~hs | ((m >= self.lo[ni]) & (m <= self.hi[ni]))
        ok = inside & (nt - pt <= self.max_ns[ni])
        if ok.any():
            oi = ni[ok]
            self._snap(oi, nt[ok], nv[ok], nq[ok])
            self.hi[oi] = np.minimum(self.hi[oi], (nv[ok] + dev[ok] - pv[ok]) / dt[ok])
            self.lo[oi] = np.maximum(self.lo[oi], (nv[ok] - dev[ok] - pv[ok]) / dt[ok])
        bad = ~ok
        if not bad.any():
            return
        # door broken with a held snapshot: archive it, it becomes the pivot
        bs = bad & hs
        if bs.any():
            bi = ni[bs]
            st, sv, sq = self.s_t[bi].copy(), self.s_v[bi].copy(), self.s_q[bi].copy()
            out.add(bi, st, sv, sq)
            self._pivot(bi, st, sv, sq)
            bt, bv, bq, bdev = nt[bs], nv[bs], nq[bs], dev[bs]
            far = bt - st > self.max_ns[bi]
            # the new point is within max of the new pivot: it becomes the snapshot
            near = ~far
            if near.any():
                ki = bi[near]
                dt2 = (bt[near] - st[near]).astype(np.float64)
                self._snap(ki, bt[near], bv[near], bq[near])
                self.hi[ki] = (bv[near] + bdev[near] - sv[near]) / dt2
                self.lo[ki] = (bv[near] - bdev[near] - sv[near]) / dt2
            if far.any():
                fi = bi[far]
                out.add(fi, bt[far], bv[far], bq[far])
                self._pivot(fi, bt[far], bv[far], bq[far])
        # no snapshot and too far from the pivot (an input gap longer than max): archive it
        bn = bad & ~hs
        if bn.any():
            fi = ni[bn]
            out.add(fi, nt[bn], nv[bn], nq[bn])
            self._pivot(fi, nt[bn], nv[bn], nq[bn])


def max_reconstruction_error(t: I64, v: F64, kept_t: I64, kept_v: F64) -> float:
    """Largest |linear interpolation of the kept points - input| over the input points."""
    if t.size == 0:
        return 0.0
    t0 = t[0]
    rec = np.interp((t - t0).astype(np.float64), (kept_t - t0).astype(np.float64), kept_v)
    return float(np.max(np.abs(rec - v)))
