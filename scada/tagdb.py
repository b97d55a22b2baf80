"""Columnar in-memory tag database.

One row per tag, one numpy column per attribute::

    index │ value (float64) │ quality (uint8) │ source_ns (int64) │ receive_ns (int64) │ deadband (float64)
    ──────┼─────────────────┼─────────────────┼───────────────────┼────────────────────┼──────────────────
      0   │ 12.0            │ 0 good          │ 1763...           │ 1763...            │ 0.0
      1   │ nan (never set) │ 1 uncertain     │ 0                 │ 0                  │ 5.0   ("not read yet")

Numeric, bool and enum values live in ``value`` (bool as 0/1, integers exactly up to 2**53); string
tags keep their text in a side dict and ``value`` holds a change counter. Names map to indices
through a dict; equipment and patterns through precomputed index arrays.

Drivers hand the poller their readings as columns too (:class:`Readings`: one value, quality and two
timestamps per point, texts aside), and ``apply_readings(indices, readings)`` applies them without a
Python object per sample; ``apply_samples`` is the convenience path for lists of ``(tag, Sample)``.

``apply(batch)`` detects changes vectorised (a value change beyond the tag's deadband, a first value,
or any quality change) and publishes one :class:`ChangeEvent` with old and new values and qualities
to subscribers. ``subscribe(callback, tags=None)`` returns the unsubscribe function (as Home
Assistant's state machine). Subscribers run synchronously in the caller's thread, in subscription
order; an exception in one is logged and does not stop the others.

A subscriber may itself write (a subscriber raises a system alarm → a system-alarm tag): such
an apply is never run inside the hand-out. It is queued and applied right after the current dispatch
ends, in the same thread and in the order issued, so every subscriber sees each batch whole and in
order, and no subscriber is re-entered::

    apply(A) ─► subscriber 1 (A) ─► apply(B) inside it: queued, returns an empty event
             ─► subscriber 2 (A)
             ─► dispatch of A ends ─► apply(B) ─► subscriber 1 (B), subscriber 2 (B) ─► ...
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from scada.config.model import TagDef
from scada.quality import Quality, Sample, Value

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

NEVER = Quality.UNCERTAIN  # quality of a tag that never received a sample: "not read yet" (scada.quality.reason)


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """The tags that changed in one applied batch, with old and new values and qualities."""

    indices: I64
    old_values: F64
    new_values: F64
    old_qualities: U8
    new_qualities: U8
    source_ns: I64
    receive_ns: I64

    def __len__(self) -> int:
        return int(self.indices.size)

    def subset(self, mask: npt.NDArray[np.bool_]) -> ChangeEvent:
        return ChangeEvent(self.indices[mask], self.old_values[mask], self.new_values[mask],
                           self.old_qualities[mask], self.new_qualities[mask], self.source_ns[mask],
                           self.receive_ns[mask])

    @staticmethod
    def empty() -> ChangeEvent:
        """No change (also what an apply queued during a hand-out returns: its changes are published later)."""
        i, f, q = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.uint8)
        return ChangeEvent(i, f, f, q, q, i, i)


Callback = Callable[[ChangeEvent], None]


class Readings:
    """One sample per point, as columns: the batch form of ``list[Sample]`` (drivers → poller → tag database).

    ::

        position │ values (f64)        │ qualities (u8) │ source_ns (i64) │ receive_ns (i64)
        ─────────┼─────────────────────┼────────────────┼─────────────────┼─────────────────
           0     │ 230.4               │ 0 good         │ 1763...         │ 1763...
           1     │ nan (no value)      │ 2 bad_comm     │ 1763...         │ 1763...
           2     │ nan (text aside)    │ 0 good         │ 1763...         │ 1763...     texts = {2: "Bonjour"}

    A number, a bool (0/1) or an enum code goes to ``values``; NaN means no value (``Sample.value is
    None``). A text value goes to ``texts`` (its ``values`` slot stays NaN). A new instance is all
    bad_comm with no value and zero timestamps (``stamp_unset`` fills those with one time).
    """

    __slots__ = ("qualities", "receive_ns", "source_ns", "texts", "values")

    def __init__(self, n: int, quality: Quality = Quality.BAD_COMM) -> None:
        self.values: F64 = np.full(n, np.nan)
        self.qualities: U8 = np.full(n, int(quality), dtype=np.uint8)
        self.source_ns: I64 = np.zeros(n, dtype=np.int64)
        self.receive_ns: I64 = np.zeros(n, dtype=np.int64)
        self.texts: dict[int, str] = {}

    def __len__(self) -> int:
        return int(self.values.size)

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> Readings:
        r = cls(len(samples))
        values: list[float] = []
        for k, s in enumerate(samples):
            v = s.value
            if v is None:
                values.append(np.nan)
            elif isinstance(v, str):
                values.append(np.nan)
                r.texts[k] = v
            else:
                values.append(float(v))
        if samples:
            r.values[:] = values
            r.qualities[:] = [int(s.quality) for s in samples]
            r.source_ns[:] = [s.source_ns for s in samples]
            r.receive_ns[:] = [s.receive_ns for s in samples]
        return r

    def samples(self, points: Sequence[TagDef]) -> list[Sample]:
        """Back to ``list[Sample]``, values typed by each point's dtype (bool, int for int/enum, float, str)."""
        out: list[Sample] = []
        texts = self.texts
        for k, (p, v, q, src, rcv) in enumerate(zip(points, self.values.tolist(), self.qualities.tolist(),
                                                    self.source_ns.tolist(), self.receive_ns.tolist(),
                                                    strict=True)):
            value: Value
            if k in texts:
                value = texts[k]
            elif math.isnan(v):  # NaN: no value
                value = None
            elif p.dtype == "bool":
                value = bool(v)
            elif p.dtype in ("int", "enum"):
                value = int(v)
            else:
                value = v
            out.append(Sample(value, Quality(q), src, rcv))
        return out

    def set_bad(self, positions: I64 | slice | list[int], quality: Quality, now_ns: int) -> None:
        """Positions without a value, with ``quality``, stamped ``now_ns``."""
        self.values[positions] = np.nan
        self.qualities[positions] = int(quality)
        self.source_ns[positions] = now_ns
        self.receive_ns[positions] = now_ns
        if self.texts:
            if isinstance(positions, slice):
                positions = list(range(*positions.indices(len(self))))
            for k in np.asarray(positions, dtype=np.int64).tolist():
                self.texts.pop(k, None)

    def take(self, positions: I64) -> Readings:
        """A new batch of the readings at ``positions`` (in that order; texts renumbered)."""
        out = Readings(int(positions.size))
        out.values, out.qualities = self.values[positions], self.qualities[positions]
        out.source_ns, out.receive_ns = self.source_ns[positions], self.receive_ns[positions]
        if self.texts:
            where = {int(p): k for k, p in enumerate(positions.tolist())}
            out.texts = {where[k]: t for k, t in self.texts.items() if k in where}
        return out

    def put(self, positions: I64, other: Readings) -> None:
        """Overwrite ``positions`` with ``other`` (one reading per position, in order)."""
        self.values[positions] = other.values
        self.qualities[positions] = other.qualities
        self.source_ns[positions] = other.source_ns
        self.receive_ns[positions] = other.receive_ns
        if self.texts:
            for k in positions.tolist():
                self.texts.pop(k, None)
        for k, text in other.texts.items():
            self.texts[int(positions[k])] = text

    def stamp_unset(self, now_ns: int) -> None:
        """Give the positions nobody stamped (never read) the time ``now_ns``."""
        unset = self.receive_ns == 0
        if unset.any():
            self.source_ns[unset] = now_ns
            self.receive_ns[unset] = now_ns

    @staticmethod
    def concat(parts: Sequence[Readings]) -> Readings:
        out = Readings(0)
        out.values = np.concatenate([p.values for p in parts])
        out.qualities = np.concatenate([p.qualities for p in parts])
        out.source_ns = np.concatenate([p.source_ns for p in parts])
        out.receive_ns = np.concatenate([p.receive_ns for p in parts])
        base = 0
        for p in parts:
            for k, text in p.texts.items():
                out.texts[base + k] = text
            base += len(p)
        return out


def _stamps(ts: I64, pos: I64 | None, m: int) -> I64:
    """Per-change timestamps from one stamp for the batch or one per sample."""
    if ts.ndim == 0:
        return np.full(m, int(ts), dtype=np.int64)
    return ts.copy() if pos is None else ts[pos]


class TagDatabase:
    """The live value of every tag, columnar, with change events for subscribers."""

    def __init__(self, tags: Sequence[TagDef]) -> None:
        n = len(tags)
        self.defs: list[TagDef] = list(tags)
        self.names: list[str] = [t.name for t in tags]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != n:
            seen: set[str] = set()
            dups = [x for x in self.names if x in seen or seen.add(x)]  # type: ignore[func-returns-value]
            raise ValueError(f"duplicate tag names: {dups[:5]}")
        self.values: F64 = np.full(n, np.nan)
        self.qualities: U8 = np.full(n, int(NEVER), dtype=np.uint8)
        self.source_ns: I64 = np.zeros(n, dtype=np.int64)
        self.receive_ns: I64 = np.zeros(n, dtype=np.int64)
        self.deadband: F64 = np.array([t.deadband for t in tags], dtype=np.float64)
        self.is_string = np.array([t.dtype == "string" for t in tags], dtype=bool)
        self.strings: dict[int, str] = {}
        self._equipment: dict[str, list[int]] = {}
        for i, t in enumerate(tags):
            if t.equipment:
                self._equipment.setdefault(t.equipment, []).append(i)
        self._subs: list[tuple[Callback, npt.NDArray[np.bool_] | None]] = []
        self._patterns: dict[str, I64] = {}  # glob → indices; the tag set never changes after construction
        self._scratch = np.zeros(n, dtype=np.int64)
        self._lock = threading.RLock()
        self._dispatching: int | None = None  # thread id handing out a batch to the subscribers, if any
        self._deferred: deque[Callable[[], object]] = deque()  # applies issued from inside a hand-out
        self._draining = False

    def __len__(self) -> int:
        return len(self.names)

    # ------------------------------------------------------------------ lookup
    def indices(self, names: Iterable[str]) -> I64:
        """Indices of ``names``; raises KeyError naming the first unknown tag."""
        try:
            return np.fromiter((self.index[n] for n in names), dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"unknown tag {exc.args[0]!r}") from None

    def match(self, pattern: str) -> I64:
        """Indices of tags whose name matches a glob on the hierarchy (``dijon/junction/*/phase_greens``)."""
        if not any(c in pattern for c in "*?["):
            i = self.index.get(pattern)
            return np.array([] if i is None else [i], dtype=np.int64)
        cached = self._patterns.get(pattern)
        if cached is None:
            compiled = re.compile(fnmatch.translate(pattern))
            # pre-filter on the two longest literal pieces of the pattern ('/status', 'lighting/'): a C-level
            # substring test rejects most of a 150,000-tag city before the regex runs
            pieces = sorted((p for p in re.split(r"[*?]|\[[^\]]*\]", pattern) if p), key=len, reverse=True)
            a, b = [*pieces, "", ""][:2]
            cached = np.fromiter((i for i, n in enumerate(self.names) if a in n and b in n and compiled.match(n)),
                                 dtype=np.int64)
            cached.flags.writeable = False  # shared by every caller of the same pattern
            if len(self._patterns) >= 512:
                self._patterns.pop(next(iter(self._patterns)))
            self._patterns[pattern] = cached
        return cached

    def equipment_indices(self, equipment: str) -> I64:
        return np.array(self._equipment.get(equipment, []), dtype=np.int64)

    # ------------------------------------------------------------------ read
    def value_of(self, i: int) -> Value:
        """Typed value of tag ``i`` (None if it never received one)."""
        if self.qualities[i] == NEVER and self.receive_ns[i] == 0:
            return None
        if self.is_string[i]:
            return self.strings.get(i)
        v = float(self.values[i])
        if np.isnan(v):
            return None
        dtype = self.defs[i].dtype
        if dtype == "bool":
            return bool(v)
        if dtype in ("int", "enum"):
            return int(v)
        return v

    def read(self, name: str) -> Sample:
        i = self.index[name]
        return Sample(self.value_of(i), Quality(int(self.qualities[i])), int(self.source_ns[i]),
                      int(self.receive_ns[i]))

    def snapshot(self, idx: I64 | Sequence[int]) -> list[tuple[str, Sample]]:
        return [(self.names[int(i)], self.read(self.names[int(i)])) for i in idx]

    def snapshot_pattern(self, pattern: str) -> list[tuple[str, Sample]]:
        return self.snapshot(self.match(pattern))

    def snapshot_equipment(self, equipment: str) -> list[tuple[str, Sample]]:
        return self.snapshot(self.equipment_indices(equipment))

    # ------------------------------------------------------------------ subscribe
    def subscribe(self, callback: Callback, tags: Iterable[str] | I64 | None = None) -> Callable[[], None]:
        """Call ``callback(event)`` on every change (restricted to ``tags`` if given).

        Returns the function that unsubscribes.
        """
        mask: npt.NDArray[np.bool_] | None = None
        if tags is not None:
            mask = np.zeros(len(self), dtype=bool)
            idx = tags if isinstance(tags, np.ndarray) else self.indices(tags)
            mask[idx] = True
        entry = (callback, mask)
        with self._lock:
            self._subs.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subs:
                    self._subs.remove(entry)

        return unsubscribe

    def _publish(self, event: ChangeEvent) -> None:
        self._dispatching = threading.get_ident()
        try:
            for callback, mask in list(self._subs):
                ev = event if mask is None else event.subset(mask[event.indices])
                if len(ev) == 0:
                    continue
                try:
                    callback(ev)
                except Exception:  # a broken subscriber must not stop the others or the poller
                    log.exception("tag database subscriber %r failed", callback)
        finally:
            self._dispatching = None

    def _in_handout(self) -> bool:
        """True when called from a subscriber of this database, in the thread handing a batch out."""
        return self._dispatching == threading.get_ident()

    def _drain(self) -> None:
        """Apply what subscribers wrote during the hand-out(s), in order; called with the lock held."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._deferred:
                self._deferred.popleft()()
        finally:
            self._draining = False

    # ------------------------------------------------------------------ write
    def apply(self, indices: I64, values: F64, qualities: U8, source_ns: I64 | int,
              receive_ns: I64 | int | None = None) -> ChangeEvent:
        """Apply one batch (unique indices); publish and return the changes.

        A tag changes when its quality changes, when it gets its first value, or when its value moves
        by more than its deadband (any difference when the deadband is 0). A bad sample keeps the last
        known value (only the quality changes) unless a value is given.

        Called from inside a subscriber (a write caused by a hand-out), the batch is queued and applied
        once the current hand-out ends; the returned event is then empty.
        """
        if self._in_handout():
            self._deferred.append(partial(self._apply, np.array(indices, dtype=np.int64),
                                          np.array(values, dtype=np.float64), np.array(qualities, dtype=np.uint8),
                                          np.array(source_ns, dtype=np.int64),
                                          None if receive_ns is None else np.array(receive_ns, dtype=np.int64)))
            return ChangeEvent.empty()
        with self._lock:
            event = self._apply(indices, values, qualities, source_ns, receive_ns)
            self._drain()
            return event

    def _apply(self, indices: I64, values: F64, qualities: U8, source_ns: I64 | int,
               receive_ns: I64 | int | None = None) -> ChangeEvent:
        indices = np.asarray(indices, dtype=np.int64)
        k = indices.size
        values = np.asarray(values, dtype=np.float64)
        qualities = np.asarray(qualities, dtype=np.uint8)
        if values.shape != (k,) or qualities.shape != (k,):
            raise ValueError(f"batch shapes differ: {k} indices, {values.shape} values, {qualities.shape} qualities")
        now = time.time_ns()
        src_in = np.asarray(source_ns, dtype=np.int64)
        rcv_in = np.asarray(now if receive_ns is None else receive_ns, dtype=np.int64)
        if src_in.shape not in ((), (k,)) or rcv_in.shape not in ((), (k,)):
            raise ValueError(f"timestamps must be one value or one per sample, got {src_in.shape} / {rcv_in.shape}")
        with self._lock:
            where: slice | I64 = indices
            if k:
                lo, hi = int(indices[0]), int(indices[-1])
                run = hi - lo == k - 1 and lo >= 0 and hi < len(self)
                if run and (k == 1 or bool(np.all(indices[1:] > indices[:-1]))):
                    where = slice(lo, hi + 1)  # a contiguous run (a device's tags, a full cycle): views, no gathers
                else:
                    if indices.min() < 0 or indices.max() >= len(self):
                        raise IndexError(f"tag index out of range 0..{len(self) - 1}")
                    # duplicate check in O(k): the last writer of each slot must be itself
                    order = np.arange(k, dtype=np.int64)
                    self._scratch[indices] = order
                    if not np.array_equal(self._scratch[indices], order):
                        raise ValueError("a batch must not contain the same tag twice")
            old_v = self.values[where]
            old_q = self.qualities[where]
            new_v = values
            bad = qualities >= Quality.BAD_COMM
            if bad.any():  # a bad sample without a value (NaN) keeps the last known value
                new_v = np.where(bad & np.isnan(values), old_v, values)
            diff = new_v - old_v
            np.abs(diff, out=diff)
            # deadband 0 → any difference; NaN compares False, first values are caught below
            changed = diff > self.deadband[where]
            changed |= old_q != qualities
            changed |= np.isnan(old_v) & ~np.isnan(new_v)
            pos = np.flatnonzero(changed)
            m = pos.size
            view = isinstance(where, slice)
            if m == k:  # a storm: everything changed, no gathers needed (copies only where we hold views)
                sel = indices
                event = ChangeEvent(indices, old_v.copy() if view else old_v, new_v.copy(),
                                    old_q.copy() if view else old_q, qualities.copy(),
                                    _stamps(src_in, None, m), _stamps(rcv_in, None, m))
                self.values[where] = event.new_values
                self.qualities[where] = event.new_qualities
            else:
                sel = indices[pos]
                event = ChangeEvent(sel, old_v[pos], new_v[pos], old_q[pos], qualities[pos],
                                    _stamps(src_in, pos, m), _stamps(rcv_in, pos, m))
                # values inside the deadband are not stored: the reference stays the last reported value
                self.values[sel] = event.new_values
                self.qualities[sel] = event.new_qualities
            self.source_ns[where] = src_in
            self.receive_ns[where] = rcv_in
            if sel.size:
                self._publish(event)
            return event

    def apply_samples(self, samples: Iterable[tuple[int | str, Sample]]) -> ChangeEvent:
        """Convenience path for drivers: apply (tag, Sample) pairs, strings included (queued like :meth:`apply`
        when called from inside a subscriber: the texts of string tags change only when it is applied)."""
        if self._in_handout():
            self._deferred.append(partial(self.apply_samples, list(samples)))
            return ChangeEvent.empty()
        with self._lock:
            event = self._apply_samples(samples)
            self._drain()
            return event

    def _apply_samples(self, samples: Iterable[tuple[int | str, Sample]]) -> ChangeEvent:
        idx: list[int] = []
        vals: list[float] = []
        quals: list[int] = []
        srcs: list[int] = []
        rcvs: list[int] = []
        for key, s in samples:
            i = self.index[key] if isinstance(key, str) else int(key)
            if self.is_string[i]:
                vals.append(self._string_value(i, s))
            else:
                vals.append(np.nan if s.value is None or isinstance(s.value, str) else float(s.value))
            idx.append(i)
            quals.append(int(s.quality))
            srcs.append(s.source_ns)
            rcvs.append(s.receive_ns)
        return self._apply(np.array(idx, dtype=np.int64), np.array(vals, dtype=np.float64),
                           np.array(quals, dtype=np.uint8), np.array(srcs, dtype=np.int64),
                           np.array(rcvs, dtype=np.int64))

    def apply_readings(self, indices: I64, readings: Readings) -> ChangeEvent:
        """Apply one reading per tag (``indices[k]`` gets reading ``k``; unique indices); publish the changes.

        The columnar twin of :meth:`apply_samples` (same change detection, deadbands, qualities, string
        handling), without a Python object per sample: what the poll scheduler uses. Queued like
        :meth:`apply` when called from inside a subscriber (``readings`` must then not be reused).
        """
        if self._in_handout():
            self._deferred.append(partial(self.apply_readings, np.array(indices, dtype=np.int64), readings))
            return ChangeEvent.empty()
        indices = np.asarray(indices, dtype=np.int64)
        if indices.shape != (len(readings),):
            raise ValueError(f"batch shapes differ: {indices.shape} indices, {len(readings)} readings")
        values = readings.values
        with self._lock:
            if readings.texts or (indices.size and self.is_string[indices].any()):
                strings = np.flatnonzero(self.is_string[indices])
                if strings.size:
                    values = values.copy()
                    texts = readings.texts
                    for k in strings.tolist():
                        text = texts.get(k)
                        if text is None and not np.isnan(values[k]):
                            v = float(values[k])
                            text = str(int(v)) if v.is_integer() else str(v)
                        values[k] = self._text_value(int(indices[k]), text, int(readings.qualities[k]))
            event = self._apply(indices, values, readings.qualities, readings.source_ns, readings.receive_ns)
            self._drain()
            return event

    def _string_value(self, i: int, s: Sample) -> float:
        """Strings: store the text aside; the numeric column carries a change counter."""
        return self._text_value(i, None if s.value is None else str(s.value), int(s.quality))

    def _text_value(self, i: int, text: str | None, quality: int) -> float:
        if text is None or quality >= Quality.BAD_COMM:
            return float("nan")
        if self.strings.get(i) == text and not np.isnan(self.values[i]):
            return float(self.values[i])
        self.strings[i] = text
        return float(0 if np.isnan(self.values[i]) else self.values[i] + 1)

    def stale_limits_ns(self, periods_s: dict[str, float]) -> I64:
        """Per-tag age after which a good value is stale: ``stale_after`` scan periods of the tag (its own scan
        class, else its device's period in ``periods_s``); a device not in ``periods_s`` is exempt."""
        never = np.iinfo(np.int64).max
        return np.array([(int(t.stale_after * (t.period_s or periods_s[t.device]) * 1e9) or never)
                         if t.device in periods_s else never for t in self.defs], dtype=np.int64)

    def mark_stale(self, now_ns: int, max_age_ns: I64 | int) -> ChangeEvent:
        """Good tags with no update for longer than ``max_age_ns`` (per tag or global) become uncertain."""
        age = now_ns - self.receive_ns
        stale = (self.qualities == Quality.GOOD) & (self.receive_ns > 0) & (age > max_age_ns)
        idx = np.flatnonzero(stale).astype(np.int64)
        return self.apply(idx, self.values[idx].copy(), np.full(idx.size, int(Quality.UNCERTAIN), dtype=np.uint8),
                          self.source_ns[idx].copy(), self.receive_ns[idx].copy())
