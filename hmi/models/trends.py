"""Trend series: historian points + live values → arrays for pyqtgraph, with quality gaps kept visible.

    GET /history/decimated?tag&start&end&pixels   [{t_ms, value, quality}, ...]  (min/max per pixel kept)
    WebSocket rows for the same tag                 appended while "live"
                     │
                     ▼
    Series.t (s), Series.v (NaN where quality is not good → the curve breaks there),
    Series.gaps [(t0, t1)] spans of bad quality → drawn hatched, so a gap is never mistaken for a flat line

:func:`read_out` gives the value at a cursor time (sample-and-hold, with its quality).
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

    def __len__(self) -> int:
        return int(self.t.size)


def from_points(tag: str, points: Iterable[dict[str, Any]], end_s: float | None = None) -> Series:
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
    s = Series(tag, np.array(ts, dtype=np.float64), np.array(vs, dtype=np.float64), qs)
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
    """History, then the live samples newer than the last historical point."""
    if not live.t.size:
        return hist
    last = hist.t[-1] if hist.t.size else -np.inf
    m = live.t > last
    keep_q = [q for q, k in zip(live.q, m.tolist(), strict=False) if k]
    s = Series(hist.tag, np.concatenate([hist.t, live.t[m]]), np.concatenate([hist.v, live.v[m]]), hist.q + keep_q)
    s.gaps = gaps(s.t, s.q)
    return s


def read_out(s: Series, t_s: float) -> tuple[float | None, str]:
    """Value and quality at ``t_s`` (the last sample at or before it)."""
    if not s.t.size or t_s < s.t[0]:
        return None, ""
    i = int(np.searchsorted(s.t, t_s, side="right")) - 1
    q = s.q[i]
    v = s.v[i]
    return (None if np.isnan(v) else float(v)), q


def pixels_for(width_px: int) -> int:
    return max(100, min(20_000, int(width_px)))
