"""Columnar in-memory tag database.

One row per tag, one numpy column per attribute::

    index │ value (float64) │ quality (uint8) │ source_ns (int64) │ receive_ns (int64) │ deadband (float64)
    ──────┼─────────────────┼─────────────────┼───────────────────┼────────────────────┼──────────────────
      0   │ 12.0            │ 0 good          │ 1763...           │ 1763...            │ 0.0
      1   │ nan (never set) │ 4 bad_config    │ 0                 │ 0                  │ 5.0

Numeric, bool and enum values live in ``value`` (bool as 0/1, integers exactly up to 2**53); string
tags keep their text in a side dict and ``value`` holds a change counter. Names map to indices
through a dict; equipment and patterns through precomputed index arrays.

``apply(batch)`` detects changes vectorised (a value change beyond the tag's deadband, a first value,
or any quality change) and publishes one :class:`ChangeEvent` with old and new values and qualities
to subscribers. ``subscribe(callback, tags=None)`` returns the unsubscribe function (as Home
Assistant's state machine). Subscribers run synchronously in the caller's thread, in subscription
order; an exception in one is logged and does not stop the others.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scada.config.model import TagDef
from scada.quality import Quality, Sample, Value

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

NEVER = Quality.BAD_CONFIG  # quality of a tag that never received a sample ("no value yet")


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


Callback = Callable[[ChangeEvent], None]


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
        self._scratch = np.zeros(n, dtype=np.int64)
        self._lock = threading.RLock()

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
        rx = fnmatch.translate(pattern)
        import re

        compiled = re.compile(rx)
        return np.fromiter((i for i, n in enumerate(self.names) if compiled.match(n)), dtype=np.int64)

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
        for callback, mask in list(self._subs):
            ev = event if mask is None else event.subset(mask[event.indices])
            if len(ev) == 0:
                continue
            try:
                callback(ev)
            except Exception:  # a broken subscriber must not stop the others or the poller
                log.exception("tag database subscriber %r failed", callback)

    # ------------------------------------------------------------------ write
    def apply(self, indices: I64, values: F64, qualities: U8, source_ns: I64 | int,
              receive_ns: I64 | int | None = None) -> ChangeEvent:
        """Apply one batch (unique indices); publish and return the changes.

        A tag changes when its quality changes, when it gets its first value, or when its value moves
        by more than its deadband (any difference when the deadband is 0). A bad sample keeps the last
        known value (only the quality changes) unless a value is given.
        """
        indices = np.asarray(indices, dtype=np.int64)
        k = indices.size
        values = np.asarray(values, dtype=np.float64)
        qualities = np.asarray(qualities, dtype=np.uint8)
        if values.shape != (k,) or qualities.shape != (k,):
            raise ValueError(f"batch shapes differ: {k} indices, {values.shape} values, {qualities.shape} qualities")
        now = time.time_ns()
        src = np.broadcast_to(np.asarray(source_ns, dtype=np.int64), (k,))
        rcv = np.broadcast_to(np.asarray(now if receive_ns is None else receive_ns, dtype=np.int64), (k,))
        with self._lock:
            if k:
                if indices.min() < 0 or indices.max() >= len(self):
                    raise IndexError(f"tag index out of range 0..{len(self) - 1}")
                # duplicate check in O(k): the last writer of each slot must be itself
                order = np.arange(k, dtype=np.int64)
                self._scratch[indices] = order
                if not np.array_equal(self._scratch[indices], order):
                    raise ValueError("a batch must not contain the same tag twice")
            old_v = self.values[indices]
            old_q = self.qualities[indices]
            # a bad sample without a value (NaN) keeps the last known value
            keep = np.isnan(values) & (qualities >= Quality.BAD_COMM)
            new_v = np.where(keep, old_v, values)
            diff = np.abs(new_v - old_v)
            db = self.deadband[indices]
            moved = np.where(db > 0, diff > db, diff > 0)
            first = np.isnan(old_v) & ~np.isnan(new_v)
            changed = moved | first | (old_q != qualities)
            # values inside the deadband are not stored: the reference stays the last reported value
            sel = indices[changed]
            self.values[sel] = new_v[changed]
            self.qualities[sel] = qualities[changed]
            self.source_ns[indices] = src
            self.receive_ns[indices] = rcv
            event = ChangeEvent(sel, old_v[changed], new_v[changed], old_q[changed], qualities[changed],
                                np.ascontiguousarray(src[changed]), np.ascontiguousarray(rcv[changed]))
            if event.indices.size:
                self._publish(event)
            return event

    def apply_samples(self, samples: Iterable[tuple[int | str, Sample]]) -> ChangeEvent:
        """Convenience path for drivers: apply (tag, Sample) pairs, strings included."""
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
        return self.apply(np.array(idx, dtype=np.int64), np.array(vals, dtype=np.float64),
                          np.array(quals, dtype=np.uint8), np.array(srcs, dtype=np.int64),
                          np.array(rcvs, dtype=np.int64))

    def _string_value(self, i: int, s: Sample) -> float:
        """Strings: store the text aside; the numeric column carries a change counter."""
        if s.value is None or s.quality.is_bad:
            return float("nan")
        text = str(s.value)
        if self.strings.get(i) == text and not np.isnan(self.values[i]):
            return float(self.values[i])
        self.strings[i] = text
        return float(0 if np.isnan(self.values[i]) else self.values[i] + 1)

    def mark_stale(self, now_ns: int, max_age_ns: I64 | int) -> ChangeEvent:
        """Good tags with no update for longer than ``max_age_ns`` (per tag or global) become uncertain."""
        age = now_ns - self.receive_ns
        stale = (self.qualities == Quality.GOOD) & (self.receive_ns > 0) & (age > max_age_ns)
        idx = np.flatnonzero(stale).astype(np.int64)
        return self.apply(idx, self.values[idx].copy(), np.full(idx.size, int(Quality.UNCERTAIN), dtype=np.uint8),
                          self.source_ns[idx].copy(), self.receive_ns[idx].copy())
