"""The one historian backend interface, its data types and the generic (numpy) query algorithms.

::

    Recorder ──Points──▶ StoreAndForward ──Points──▶ Backend.write()      (raises, never silent)
                                                     Backend.raw()        one tag, [start, end)
                                                     Backend.aggregate()  min/max/avg/last/count/twa per interval
                                                     Backend.decimate()   ≤ 4 points per pixel (M4: first/min/max/last)
                                                     Backend.value_at()   interpolated value at a time
                                                     Backend.maintain()   retention + downsampling

Failures: :class:`BackendUnavailable` (transient: connection refused, timeout, 5xx; retry later) and
:class:`BatchRejected` (the data itself is refused, 4xx; retrying the same batch will not help) are
:class:`scada.errors.StorageError` s. :class:`Unsupported` says a backend cannot do an operation (each
backend lists what it can do in ``capabilities``; no capability is claimed that is not tested).

Times are UTC epoch nanoseconds; ranges are half-open ``[start, end)``. Reconstruction between stored
points is linear for analogue tags and a step (previous value holds) for digital/state tags; a point
with a bad quality starts a segment that is held, not interpolated, and excluded from time-weighted
averages.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from scada.errors import StorageError
from scada.quality import Quality

if TYPE_CHECKING:
    from scada.config.model import CityConfig, TagDef

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

BAD = int(Quality.BAD_COMM)  # qualities >= BAD are bad


class BackendUnavailable(StorageError):
    """The backend cannot be reached or failed transiently; the same batch may succeed later."""


class BatchRejected(StorageError):
    """The backend refused the data itself (bad request, type conflict); retrying will not help."""


class Unsupported(StorageError):
    """The backend does not support this operation (see ``Backend.capabilities``)."""


class Capability(StrEnum):
    WRITE = "write"
    RAW = "raw"
    AGGREGATE = "aggregate"
    DECIMATE = "decimate"
    VALUE_AT = "value_at"
    TEXT = "text"  # string values round-trip
    RETENTION = "retention"
    DOWNSAMPLE = "downsample"


# ---------------------------------------------------------------------------- data types
@dataclass(frozen=True, slots=True)
class TagInfo:
    """What a backend needs to know about a tag."""

    name: str
    step: bool = False  # digital/state: reconstruct by holding the previous value
    retention: str = "default"  # retention class (the scan class by default)
    units: str = ""


def is_analogue(tag: TagDef) -> bool:
    """Analogue (compressed, droppable when the buffer is full): float tags, and integer tags whose
    history explicitly asks for compression with a deviation. bool/enum/string/state integers are
    events: every change stored, never compressed, never dropped."""
    if tag.dtype == "float":
        return tag.history is None or tag.history.compress
    if tag.dtype == "int" and tag.history is not None:
        return tag.history.compress and tag.history.deviation > 0
    return False


def tag_infos(config: CityConfig) -> list[TagInfo]:
    """One :class:`TagInfo` per configured tag; the retention class is the device's scan class."""
    out = []
    for t in config.tags:
        dev = config.devices.get(t.device)
        out.append(TagInfo(t.name, step=not is_analogue(t), retention=dev.scan if dev else "default", units=t.units))
    return out


@dataclass(slots=True)
class Points:
    """A columnar batch of points of any tags: row i is ``names[tag[i]]`` at ``ts[i]``.

    ``names`` may be a shared list (the tag database's ``names``: no copy per batch). ``text`` maps a
    row to its string value (string tags); ``value`` is NaN where there is no numeric value.
    """

    names: Sequence[str]
    tag: I64
    ts: I64
    value: F64
    quality: U8
    text: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts.size)

    @classmethod
    def empty(cls) -> Points:
        return cls([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, int, float | str | None, int]]) -> Points:
        """From ``(tag name, ts_ns, value or text or None, quality)`` rows."""
        names: list[str] = []
        index: dict[str, int] = {}
        tag: list[int] = []
        ts: list[int] = []
        val: list[float] = []
        q: list[int] = []
        text: dict[int, str] = {}
        for row, (name, t, v, qq) in enumerate(rows):
            i = index.get(name)
            if i is None:
                i = index[name] = len(names)
                names.append(name)
            tag.append(i)
            ts.append(int(t))
            if isinstance(v, str):
                text[row] = v
                val.append(math.nan)
            else:
                val.append(math.nan if v is None else float(v))
            q.append(int(qq))
        return cls(names, np.array(tag, np.int64), np.array(ts, np.int64), np.array(val, np.float64),
                   np.array(q, np.uint8), text)

    def take(self, rows: I64 | npt.NDArray[np.bool_]) -> Points:
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, np.int64)
        text: dict[int, str] = {}
        if self.text:
            for new, old in enumerate(rows.tolist()):
                s = self.text.get(old)
                if s is not None:
                    text[new] = s
        return Points(self.names, self.tag[rows], self.ts[rows], self.value[rows], self.quality[rows], text)

    def tag_names(self) -> list[str]:
        names = self.names
        return [names[i] for i in self.tag.tolist()]

    def rows(self) -> Iterable[tuple[str, int, float | str | None, int]]:
        names = self.names
        for r, (i, t, v, q) in enumerate(zip(self.tag.tolist(), self.ts.tolist(), self.value.tolist(),
                                              self.quality.tolist(), strict=True)):
            txt = self.text.get(r)
            yield names[i], t, (txt if txt is not None else (None if math.isnan(v) else v)), q

    @staticmethod
    def concat(parts: Sequence[Points]) -> Points:
        """Concatenate batches (names unified)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Points.empty()
        if all(p.names is parts[0].names for p in parts):
            names: Sequence[str] = parts[0].names
            tags = [p.tag for p in parts]
        else:
            index: dict[str, int] = {}
            names_l: list[str] = []
            tags = []
            for p in parts:
                used = np.unique(p.tag)
                remap = np.zeros(int(used.max()) + 1 if used.size else 0, np.int64)
                for u in used.tolist():
                    nm = p.names[u]
                    j = index.get(nm)
                    if j is None:
                        j = index[nm] = len(names_l)
                        names_l.append(nm)
                    remap[u] = j
                tags.append(remap[p.tag])
            names = names_l
        text: dict[int, str] = {}
        off = 0
        for p in parts:
            for r, s in p.text.items():
                text[r + off] = s
            off += len(p)
        return Points(names, np.concatenate(tags), np.concatenate([p.ts for p in parts]),
                      np.concatenate([p.value for p in parts]), np.concatenate([p.quality for p in parts]), text)


@dataclass(slots=True)
class Series:
    """Stored points of one tag, time-ordered."""

    tag: str
    ts: I64
    value: F64
    quality: U8
    text: list[str | None] | None = None
    # where the points come from: "raw" (stored points), "rollup" (min and max of each roll-up bucket at
    # nominal times, raw data expired) or "mixed" (roll-ups before ``raw_from_ns``, raw after).
    # Operations (take, window) return plain raw-flagged series; backends set these on query results.
    source: str = "raw"
    resolution_ns: int = 0  # width of the roll-up buckets used (0: stored points only)
    raw_from_ns: int | None = None  # points before this time come from roll-ups (None: none do)

    def __len__(self) -> int:
        return int(self.ts.size)

    @classmethod
    def empty(cls, tag: str) -> Series:
        return cls(tag, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8))

    def take(self, rows: I64 | npt.NDArray[np.bool_] | slice) -> Series:
        text = None
        if self.text is not None:
            if isinstance(rows, slice):
                text = self.text[rows]
            else:
                r = np.flatnonzero(rows) if rows.dtype == bool else rows
                text = [self.text[i] for i in r.tolist()]
        return Series(self.tag, self.ts[rows], self.value[rows], self.quality[rows], text)

    def window(self, start_ns: int, end_ns: int) -> Series:
        a, b = np.searchsorted(self.ts, [start_ns, end_ns], side="left")
        return self.take(slice(int(a), int(b)))


@dataclass(slots=True)
class Aggregates:
    """Per-interval aggregates of one tag; arrays have one entry per bucket starting at ``start``.

    Empty buckets have count 0 and NaN elsewhere. ``twa`` is the time-weighted average of the
    reconstructed signal over the part of the bucket where it is known and not bad.
    """

    tag: str
    start: I64
    interval_ns: int
    count: I64
    min: F64
    max: F64
    avg: F64
    last: F64
    twa: F64
    # "raw": computed from stored points; "rollup": from stored roll-ups only (raw data expired);
    # "mixed": roll-ups before ``raw_from_ns``, raw points after (boundary bucket combined).
    source: str = "raw"
    # 0: every bucket is ``interval_ns`` wide as asked. Otherwise the asked interval could not be served
    # exactly from roll-ups (finer, or not aligned to them): the buckets before ``raw_from_ns`` are the
    # stored roll-up buckets themselves, this wide (the backend never invents finer values).
    resolution_ns: int = 0
    raw_from_ns: int | None = None  # buckets before this time come from roll-ups (None: none do)

    def __len__(self) -> int:
        return int(self.start.size)


@dataclass(frozen=True, slots=True)
class ValueAt:
    """The reconstructed value of a tag at ``ts``: interpolated (analogue) or held (step, bad)."""

    tag: str
    ts: int
    value: float
    quality: Quality
    before_ns: int | None  # the stored point used on the left (None: no data before)
    after_ns: int | None
    interpolated: bool
    text: str | None = None


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Raw data kept ``raw_s``; aggregates per ``rollup_interval_s`` kept ``rollup_keep_s`` (0: none)."""

    raw_s: float = 90 * 86400.0
    rollup_interval_s: float = 3600.0
    rollup_keep_s: float = 5 * 365 * 86400.0


# ---------------------------------------------------------------------------- the interface
class Backend(ABC):
    """A historian store. Implementations raise :class:`StorageError` subclasses, never return quietly
    after a failed write. Queries default to numpy algorithms over :meth:`raw`."""

    name: str = "backend"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self) -> None:
        self.infos: dict[str, TagInfo] = {}

    def register_tags(self, infos: Iterable[TagInfo]) -> None:
        """Declare tags (interpolation kind, retention class). Unknown tags: linear, class default."""
        for info in infos:
            self.infos[info.name] = info

    def is_step(self, tag: str) -> bool:
        info = self.infos.get(tag)
        return bool(info and info.step)

    def require(self, cap: Capability) -> None:
        if cap not in self.capabilities:
            raise Unsupported(f"{self.name}: {cap.value} is not supported by this backend")

    @abstractmethod
    def write(self, points: Points) -> None:
        """Store the batch durably, or raise (BackendUnavailable / BatchRejected). Idempotent: writing
        the same (tag, ts) again replaces the point, so a replay after a crash stores it once."""

    def flush(self) -> None:
        """Make every written point durable and visible (no-op where writes are synchronous)."""
        return None

    def tags(self) -> list[str]:
        """Names of the stored tags."""
        raise Unsupported(f"{self.name}: listing tags is not supported")

    def raw(self, tag: str, start_ns: int, end_ns: int) -> Series:
        raise Unsupported(f"{self.name}: raw queries are not supported")

    def point_before(self, tag: str, ts_ns: int) -> Series:
        """The last stored point with ts <= ts_ns (0 or 1 point)."""
        raise Unsupported(f"{self.name}: point_before is not supported")

    def point_after(self, tag: str, ts_ns: int) -> Series:
        """The first stored point with ts > ts_ns (0 or 1 point)."""
        raise Unsupported(f"{self.name}: point_after is not supported")

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_ns: int, step: bool | None = None) -> Aggregates:
        self.require(Capability.AGGREGATE)
        step = self.is_step(tag) if step is None else step
        raw = self.raw(tag, start_ns, end_ns)
        before = self.point_before(tag, start_ns - 1) if not len(raw) or raw.ts[0] > start_ns else Series.empty(tag)
        return aggregate_series(raw, before, start_ns, end_ns, interval_ns, step)

    def decimate(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> Series:
        self.require(Capability.DECIMATE)
        return decimate_series(self.raw(tag, start_ns, end_ns), start_ns, end_ns, pixels)

    def value_at(self, tag: str, ts_ns: int, step: bool | None = None) -> ValueAt:
        self.require(Capability.VALUE_AT)
        step = self.is_step(tag) if step is None else step
        return value_at_series(tag, ts_ns, self.point_before(tag, ts_ns), self.point_after(tag, ts_ns), step)

    def maintain(self, now_ns: int) -> dict[str, int]:
        """Retention and downsampling housekeeping; returns counters (what was dropped/rolled up)."""
        return {}

    def close(self) -> None:
        """Release connections and files."""
        return None


# ---------------------------------------------------------------------------- generic algorithms
def _segments(ts: I64, v: F64, q: U8, a: I64, b: I64, step: bool) -> tuple[F64, F64, npt.NDArray[np.bool_]]:
    """For sub-intervals [a, b) that contain no stored point strictly inside: the reconstructed value
    at ``a``, its limit just before ``b``, and whether the segment is known and good."""
    if ts.size == 0:
        nan = np.full(a.size, np.nan)
        return nan, nan, np.zeros(a.size, bool)
    k = np.searchsorted(ts, a, side="right") - 1  # last point <= a
    known = k >= 0
    kc = np.clip(k, 0, ts.size - 1)
    v0 = v[kc]
    good = known & (q[kc] < BAD) & ~np.isnan(v0)
    left = np.where(known, v0, np.nan)
    right = left.copy()
    if not step:
        nxt = np.minimum(kc + 1, ts.size - 1)
        lin = good & (k + 1 < ts.size) & (q[nxt] < BAD) & ~np.isnan(v[nxt])
        if lin.any():
            t0 = ts[kc[lin]]
            span = (ts[nxt[lin]] - t0).astype(np.float64)
            slope = (v[nxt[lin]] - v0[lin]) / span
            left[lin] = v0[lin] + slope * (a[lin] - t0).astype(np.float64)
            right[lin] = v0[lin] + slope * (b[lin] - t0).astype(np.float64)
    return left, right, good


def aggregate_series(raw: Series, before: Series, start_ns: int, end_ns: int, interval_ns: int,
                     step: bool) -> Aggregates:
    """min/max/avg/last/count of the stored points per bucket + the time-weighted average of the
    reconstructed signal (trapezoids for linear tags, rectangles for step tags)."""
    if interval_ns <= 0 or end_ns <= start_ns:
        raise ValueError("interval must be > 0 and end > start")
    nb = int(-(-(end_ns - start_ns) // interval_ns))
    edges = start_ns + np.arange(nb + 1, dtype=np.int64) * interval_ns
    edges[-1] = min(int(edges[-1]), end_ns)
    starts = edges[:-1].copy()
    count = np.zeros(nb, np.int64)
    vmin = np.full(nb, np.nan)
    vmax = np.full(nb, np.nan)
    avg = np.full(nb, np.nan)
    last = np.full(nb, np.nan)
    ok = ~np.isnan(raw.value) & (raw.quality < BAD)
    if len(raw):
        b = ((raw.ts - start_ns) // interval_ns).astype(np.int64)
        bo, vo = b[ok], raw.value[ok]
        count = np.bincount(bo, minlength=nb).astype(np.int64)
        has = count > 0
        sums = np.bincount(bo, weights=vo, minlength=nb)
        avg[has] = sums[has] / count[has]
        if vo.size:
            mn = np.full(nb, np.inf)
            mx = np.full(nb, -np.inf)
            np.minimum.at(mn, bo, vo)
            np.maximum.at(mx, bo, vo)
            vmin[has], vmax[has] = mn[has], mx[has]
            # last good value per bucket: points are time-ordered, so the last index per bucket wins
            lastidx = np.full(nb, -1, np.int64)
            lastidx[bo] = np.arange(bo.size)
            last[has] = vo[lastidx[has]]
    # time-weighted average: breakpoints = stored points + bucket edges
    all_ts = np.concatenate([before.ts, raw.ts])
    all_v = np.concatenate([before.value, raw.value])
    all_q = np.concatenate([before.quality, raw.quality])
    twa = np.full(nb, np.nan)
    if all_ts.size:
        inner = raw.ts[(raw.ts > start_ns) & (raw.ts < end_ns)]
        bp = np.unique(np.concatenate([edges, inner]))
        left, right, seg_good = _segments(all_ts, all_v, all_q, bp[:-1], bp[1:], step)
        dt = np.diff(bp).astype(np.float64)
        area = (left + right) / 2 * dt
        seg_bucket = np.minimum(((bp[:-1] - start_ns) // interval_ns).astype(np.int64), nb - 1)
        w = np.where(seg_good, dt, 0.0)
        a = np.where(seg_good, area, 0.0)
        wsum = np.bincount(seg_bucket, weights=w, minlength=nb)
        asum = np.bincount(seg_bucket, weights=a, minlength=nb)
        pos = wsum > 0
        twa[pos] = asum[pos] / wsum[pos]
    return Aggregates(raw.tag, starts, interval_ns, count, vmin, vmax, avg, last, twa)


def decimate_series(raw: Series, start_ns: int, end_ns: int, pixels: int) -> Series:
    """M4 decimation: per pixel keep the first, min, max and last stored point (≤ 4 per pixel).

    A line drawn through the result is pixel-identical to one drawn through all points; min and max
    of every pixel are kept. Bad/NaN points are kept as first/last (a trend shows where data is bad).
    ``raw`` must be time-ordered (as every backend returns it).
    """
    n = len(raw)
    if pixels <= 0 or end_ns <= start_ns:
        raise ValueError("pixels must be > 0 and end > start")
    if n <= 4 * pixels:
        return raw
    edges = start_ns + (np.arange(1, pixels, dtype=np.float64) * ((end_ns - start_ns) / pixels)).astype(np.int64)
    bounds = np.searchsorted(raw.ts, edges, side="left")
    first = np.unique(np.concatenate([[0], bounds[(bounds > 0) & (bounds < n)]]))  # non-empty pixels
    lastp = np.append(first[1:] - 1, n - 1)
    v = raw.value
    mn = np.fmin.reduceat(v, first)  # fmin/fmax ignore NaN
    mx = np.fmax.reduceat(v, first)
    marks = np.zeros(n, np.int32)
    marks[first[1:]] = 1
    grp = np.cumsum(marks)

    def first_hit(target: F64) -> I64:
        hits = np.flatnonzero(v == target[grp])
        if hits.size == 0:
            return hits.astype(np.int64)
        g = grp[hits]
        out: I64 = hits[np.append(True, g[1:] != g[:-1])]
        return out

    keep: I64 = np.unique(np.concatenate([first, lastp, first_hit(mn), first_hit(mx)]))
    return raw.take(keep)


def value_at_series(tag: str, ts_ns: int, before: Series, after: Series, step: bool) -> ValueAt:
    if not len(before):
        return ValueAt(tag, ts_ns, math.nan, Quality.BAD_CONFIG, None,
                       int(after.ts[0]) if len(after) else None, False)
    t0, v0, q0 = int(before.ts[0]), float(before.value[0]), Quality(int(before.quality[0]))
    text = before.text[0] if before.text else None
    t1 = int(after.ts[0]) if len(after) else None
    if step or t0 == ts_ns or t1 is None or q0.is_bad or math.isnan(v0):
        return ValueAt(tag, ts_ns, v0, q0, t0, t1, False, text)
    v1, q1 = float(after.value[0]), Quality(int(after.quality[0]))
    if q1.is_bad or math.isnan(v1):
        return ValueAt(tag, ts_ns, v0, q0, t0, t1, False, text)
    v = v0 + (ts_ns - t0) / (t1 - t0) * (v1 - v0)
    return ValueAt(tag, ts_ns, v, max(q0, q1), t0, t1, True, text)


def dedupe_order(ts: I64) -> I64 | None:
    """Row order that sorts by ts (stable) and keeps the last of equal timestamps (last written wins);
    None when ``ts`` is already strictly increasing (nothing to do)."""
    if ts.size < 2 or bool(np.all(ts[1:] > ts[:-1])):
        return None
    order = np.argsort(ts, kind="stable")
    st = ts[order]
    keep = np.append(st[1:] != st[:-1], True)
    out: I64 = order[keep]
    return out
