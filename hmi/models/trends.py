"""Trend series: historian points + live values → arrays for pyqtgraph, with quality gaps kept visible.

    GET /history/decimated?tag&start&end&pixels   [{t_ms, value, quality}, ...]  (min/max per pixel kept)
    WebSocket rows for the same tag                 appended while "live"
                     │
                     ▼
    Series.t (s), Series.v (NaN where quality is not good → the curve breaks there),
    Series.gaps [(t0, t1)] spans of bad quality → drawn hatched, so a gap is never mistaken for a flat line

What is drawn (:func:`drawn`) and what the cursor reads (:func:`read_out`) are one rule:

    discrete tag (bool, enum, integer state: ``step``)   each value held until the next sample  ┌──┐__
    analogue tag (float)                                  straight line between samples          ╱╲__
                                                          (held up to a bad sample: the gap starts there)
    history → live                                        the last stored value held until the first
                                                          live sample after it (the compressor holds
                                                          its newest point back: never a false ramp)
    last sample → now (:func:`hold_to`)                   held, while the live value is trusted

so a 1200 → 720 W step reads 1200 before the step and 720 from the step to now, as drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
MAX_LIVE_POINTS = 20_000


def _num(v: Any) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    return float("nan")


@dataclass(slots=True)
class Series:
    tag: str
    t: F64 = field(default_factory=lambda: np.zeros(0))
    v: F64 = field(default_factory=lambda: np.zeros(0))
    q: list[str] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    step: bool = False  # discrete: drawn as steps, read as held values

    def __len__(self) -> int:
        return int(self.t.size)


def from_points(tag: str, points: Iterable[dict[str, Any]], end_s: float | None = None, step: bool = False) -> Series:
    """Historian points → series; a bad/uncertain point opens a gap that lasts until the next good one."""
    ts: list[float] = []
    vs: list[float] = []
    qs: list[str] = []
    for p in points:
        t = p.get("t_ms")
        if t is None:
            continue
        q = str(p.get("quality", "good"))
        ts.append(float(t) / 1000.0)
        qs.append(q)
        vs.append(_num(p.get("value")) if q == "good" else float("nan"))
    s = Series(tag, np.array(ts, dtype=np.float64), np.array(vs, dtype=np.float64), qs, step=step)
    s.gaps = gaps(s.t, s.q, end_s)
    return s


def gaps(t: F64, q: list[str], end_s: float | None = None) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    start: float | None = None
    for ti, qi in zip(t.tolist(), q, strict=False):
        if qi != "good" and start is None:
            start = ti
        elif qi == "good" and start is not None:
            out.append((start, ti))
            start = None
    if start is not None:
        out.append((start, end_s if end_s is not None else (float(t[-1]) if t.size else start)))
    return out


def append_live(s: Series, t_s: float, value: Any, quality: str) -> None:
    """Add one live sample (in time order; older ones are ignored)."""
    if s.t.size and t_s < s.t[-1]:
        return
    v = _num(value) if quality == "good" else float("nan")
    s.t = np.append(s.t, t_s)
    s.v = np.append(s.v, v)
    s.q.append(quality)
    if s.t.size > MAX_LIVE_POINTS:
        cut = s.t.size - MAX_LIVE_POINTS
        s.t, s.v, s.q = s.t[cut:], s.v[cut:], s.q[cut:]
    s.gaps = gaps(s.t, s.q)


def merge(hist: Series, live: Series) -> Series:
    """History, then the live samples newer than the last historical point; the last stored value is held
    until the first of them (a sample at the same time: the join is vertical, never a ramp)."""
    if not live.t.size:
        return hist
    last = hist.t[-1] if hist.t.size else -np.inf
    m = live.t > last
    keep_q = [q for q, k in zip(live.q, m.tolist(), strict=False) if k]
    t_new, v_new = live.t[m], live.v[m]
    t_hold, v_hold, q_hold = np.zeros(0), np.zeros(0), []
    if hist.t.size and t_new.size and not hist.step and not np.isnan(hist.v[-1]):
        t_hold, v_hold, q_hold = np.array([t_new[0]]), np.array([hist.v[-1]]), [hist.q[-1]]
    s = Series(hist.tag, np.concatenate([hist.t, t_hold, t_new]), np.concatenate([hist.v, v_hold, v_new]),
               hist.q + q_hold + keep_q, step=hist.step or live.step)
    s.gaps = gaps(s.t, s.q)
    return s


def hold_to(s: Series, t_s: float) -> Series:
    """The series with its last value held until ``t_s`` (the caller knows the value is still current)."""
    if not s.t.size or t_s <= s.t[-1] or np.isnan(s.v[-1]):
        return s
    out = Series(s.tag, np.append(s.t, t_s), np.append(s.v, s.v[-1]), [*s.q, s.q[-1]], list(s.gaps), s.step)
    return out


def drawn(s: Series) -> tuple[F64, F64]:
    """The (x, y) the chart draws: the samples as they are (analogue), or steps (discrete: each value held
    until the next sample's time, then a vertical edge)."""
    if s.t.size < 2:
        return s.t, s.v
    if s.step:
        return np.repeat(s.t, 2)[1:], np.repeat(s.v, 2)[:-1]
    # analogue: a good value is held up to the bad sample that follows it (where the hatched gap starts)
    bad = np.isnan(s.v)
    edge = np.flatnonzero(bad[1:] & ~bad[:-1]) + 1  # first bad sample after a good one
    if not edge.size:
        return s.t, s.v
    return np.insert(s.t, edge, s.t[edge]), np.insert(s.v, edge, s.v[edge - 1])


def read_out(s: Series, t_s: float) -> tuple[float | None, str]:
    """Value and quality at ``t_s`` as :func:`drawn` draws it: held (discrete, or an analogue value before a
    bad sample), interpolated on the line (analogue), with the quality of the last sample at or before it."""
    if not s.t.size or t_s < s.t[0]:
        return None, ""
    i = int(np.searchsorted(s.t, t_s, side="right")) - 1
    q = s.q[i]
    v = float(s.v[i])
    if not s.step and i + 1 < s.t.size and t_s > s.t[i] and not np.isnan(s.v[i + 1]):
        v1, dt = float(s.v[i + 1]), float(s.t[i + 1] - s.t[i])
        v = v + (v1 - v) * (t_s - float(s.t[i])) / dt if dt > 0 else v1
    return (None if np.isnan(v) else v), q


def pixels_for(width_px: int) -> int:
    return max(100, min(20_000, int(width_px)))
