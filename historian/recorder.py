"""The recorder: tag database changes → compression → batches for the store.

::

    TagDatabase.apply() ──ChangeEvent (poller thread)──▶ Recorder.on_change
                                                            │ CompressorBank.process (vectorised, per tag state)
                                                            ▼
                                                          pending points (memory, lock)
    flush thread, every ≤ flush_interval_s ─────────────────┤ CompressorBank.tick (max-interval heartbeats)
                                                            ▼
                                                          sink.submit(points, analogue mask)   (StoreAndForward)
                                                          or sink.write(points)                 (a Backend)

Analogue tags (float, or int with an explicit compressing history spec) go through the exception
filter + swinging door with their ``history`` settings (deviation, min/max interval; a tag without
a history spec uses its deadband as deviation and 15 min as max interval). bool/enum/state-int/string
tags are stored on every change. Quality changes are always stored. Strings: the text at the time of
the change (the tag database keeps it aside).

Heartbeats run on each tag's own clock. A device whose clock is off from the server's (a simulator on
its simulation clock, an RTU whose real-time clock reset after a power cut) stamps its samples far
from their receive time; ticking those tags at the server's ``now`` would invent a heartbeat every
``max_interval`` across the whole offset (a 10-month offset at 15 min is ~30,000 points per tag, and
the compressor emits at most 1,000 per tag and tick, so the flood lasts minutes and takes a core).
The recorder keeps, per tag, the offset ``receive − source`` of its last change when it exceeds
``clock_tolerance_s`` (0 otherwise) and ticks such tags at ``now − offset``, in their own time base::

    tag on the server's clock   offset 0          heartbeat due when now − last ≥ max_interval
    device clock 10 months late offset ≈ 10 mo.   heartbeat due when (now − offset) − last ≥ max_interval

``close()`` archives the snapshots the compressor still holds and flushes, so a clean stop loses
nothing; a crash loses at most what was not flushed yet (≤ ``flush_interval_s``; what ``flush``
returned for is durable in the store-and-forward buffer).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from historian.backend import Backend, Points, TagInfo, is_analogue
from historian.compress import NS, Archived, CompressorBank
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

DEFAULT_MAX_INTERVAL_S = 900.0


class Sink(Protocol):
    def submit(self, points: Points, analogue: npt.NDArray[np.bool_] | None = None) -> None: ...


class _BackendSink:
    """Adapter: write straight to a backend (no store-and-forward)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def submit(self, points: Points, analogue: npt.NDArray[np.bool_] | None = None) -> None:
        self.backend.write(points)


class Recorder:
    """Subscribes to a :class:`TagDatabase` and hands compressed batches to a sink."""

    def __init__(self, tagdb: TagDatabase, sink: Sink | Backend, *, tags: Iterable[str] | None = None,
                 flush_interval_s: float = 1.0, max_pending: int = 200_000,
                 clock: Callable[[], int] = time.time_ns, clock_tolerance_s: float = 60.0) -> None:
        self.tagdb = tagdb
        self.sink: Sink = _BackendSink(sink) if isinstance(sink, Backend) else sink
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.clock = clock
        n = len(tagdb)
        self.bank = CompressorBank(n)
        self.recorded = np.zeros(n, dtype=bool)
        sel = range(n) if tags is None else tagdb.indices(tags).tolist()
        self.analogue = np.zeros(n, dtype=bool)
        for i in sel:
            d = tagdb.defs[i]
            self.recorded[i] = True
            h = d.history
            analogue = is_analogue(d)
            self.analogue[i] = analogue
            dev = (h.deviation if h is not None else d.deadband) if analogue else 0.0
            max_s = h.max_interval if h is not None else DEFAULT_MAX_INTERVAL_S
            min_s = h.min_interval if h is not None and analogue else 0.0
            self.bank.configure(i, dev=dev, max_interval_ns=int(max_s * NS), min_interval_ns=int(min_s * NS),
                                compress=analogue)
        self.bank.enabled[:] = self.recorded
        # receive − source of each tag's last change when beyond the tolerance (0: the tag is on our clock)
        self.clock_tolerance_ns = int(clock_tolerance_s * NS)
        self.clock_offset_ns = np.zeros(n, dtype=np.int64)
        self._pending: list[Points] = []
        self._pending_n = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.stats = {"changes": 0, "archived": 0, "flushes": 0, "errors": 0}

    def tag_infos(self) -> list[TagInfo]:
        """What to ``register_tags`` on the backend (step for non-analogue tags)."""
        return [TagInfo(self.tagdb.names[i], step=not bool(self.analogue[i]), units=self.tagdb.defs[i].units)
                for i in np.flatnonzero(self.recorded).tolist()]

    # ------------------------------------------------------------------ lifecycle
    def start(self, thread: bool = True) -> None:
        """Subscribe to the tag database (and start the flush thread unless ``thread=False``)."""
        idx = np.flatnonzero(self.recorded).astype(np.int64)
        self._unsubscribe = self.tagdb.subscribe(self.on_change, idx)
        if thread:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="historian-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the sink logs and keeps data; never let the thread die (logged)
                self.stats["errors"] += 1
                log.exception("historian recorder: flush failed")

    def close(self) -> None:
        """Unsubscribe, archive held snapshots, final flush."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            self._add(self.bank.flush())
        self.flush(tick=False)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # ------------------------------------------------------------------ data path
    def on_change(self, event: ChangeEvent) -> None:
        """Tag database subscriber (runs in the poller's thread: vectorised, no I/O)."""
        with self._lock:
            self.stats["changes"] += len(event)
            offset = event.receive_ns - event.source_ns
            offset[np.abs(offset) <= self.clock_tolerance_ns] = 0
            self.clock_offset_ns[event.indices] = offset
            arch = self.bank.process(event.indices, event.source_ns, event.new_values, event.new_qualities,
                                     now_ns=self.clock())
            self._add(arch)
            full = self._pending_n >= self.max_pending
        if full:
            self._wake.set()

    def _add(self, arch: Archived) -> None:
        if not len(arch):
            return
        text: dict[int, str] = {}
        strings = self.tagdb.is_string[arch.idx]
        if strings.any():
            for r in np.flatnonzero(strings).tolist():
                s = self.tagdb.strings.get(int(arch.idx[r]))
                if s is not None:
                    text[r] = s
        self._pending.append(Points(self.tagdb.names, arch.idx, arch.ts, arch.value, arch.quality, text))
        self._pending_n += len(arch)
        self.stats["archived"] += len(arch)

    def tick(self, now_ns: int | None = None) -> None:
        """Max-interval heartbeats, each tag on its own clock (see the module docstring)."""
        now = self.clock() if now_ns is None else now_ns
        with self._lock:
            bank = self.bank
            off = self.clock_offset_ns
            if not off.any():
                self._add(bank.tick(now))
                return
            # the tags on our clock in one bank tick, then one tick per distinct offset (whole seconds;
            # coarser past 64 groups), every other tag masked out meanwhile
            enabled = bank.enabled.copy()
            skewed = np.flatnonzero(enabled & bank.has_pivot & (off != 0))
            res = NS
            groups = off[skewed] // res
            while np.unique(groups).size > 64:  # many differently wrong clocks: coarser groups, bounded work
                res *= 60
                groups = off[skewed] // res
            try:
                bank.enabled[:] = enabled & (off == 0)
                self._add(bank.tick(now))
                for g in np.unique(groups).tolist():
                    members = skewed[groups == g]
                    bank.enabled[:] = False
                    bank.enabled[members] = True
                    self._add(bank.tick(now - int(off[members].max())))
            finally:
                bank.enabled[:] = enabled

    def flush(self, tick: bool = True) -> int:
        """Heartbeats, then hand every pending point to the sink; returns how many. Raises if the sink
        raises (the points are kept and retried on the next flush)."""
        with self._flush_lock:
            if tick:
                self.tick()
            with self._lock:
                parts, self._pending, self._pending_n = self._pending, [], 0
            if not parts:
                return 0
            batch = Points.concat(parts)
            try:
                self.sink.submit(batch, self.analogue[batch.tag])
            except Exception:  # whatever the sink raises, the points are put back first, then it is re-raised
                with self._lock:  # keep them, in order, for the next attempt
                    self._pending[:0] = parts
                    self._pending_n += len(batch)
                raise
            self.stats["flushes"] += 1
            return len(batch)
