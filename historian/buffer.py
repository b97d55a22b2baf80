"""Store-and-forward: a disk-backed queue in front of a backend, so nothing is lost while it is down.

::

    submit(points, analogue mask)
       │ queue empty and backend up? ──yes──▶ backend.write() ── ok ──▶ acknowledged (stored)
       │                                          └─ fails ─┐
       ▼                                                    ▼
    buffer.sqlite  queue(seq, analogue, n, nbytes, attempts, payload)   WAL, synchronous=FULL:
       │           acknowledged = committed here (survives kill -9 and power loss)
       ▼
    forwarder thread: oldest entries first ──▶ backend.write(merged) ── ok ──▶ DELETE (same seqs)
                          ├─ BackendUnavailable: keep, back off (0.2 s … 5 s), alarm "backend_down"
                          └─ BatchRejected: retry entry by entry; an entry rejected ``max_rejections``
                             times goes to quarantine.jsonl (+ alarm "quarantine", priority 3)

Order: entries replay in ``seq`` order, so the per-tag order is the submission order. Exactly once:
an entry is deleted only after the backend accepted it; a crash between the two replays it, and the
backends are idempotent on (tag, timestamp), so it is stored once.

Capacity: ``fill_percent`` (payload bytes / capacity) is reported through ``on_fill`` (the server
shows it as a tag); ≥ 80 % raises alarm "buffer_high" (priority 2, cleared below 75 %). When an
entry does not fit, the oldest *analogue* entries are dropped first ("buffer_full", priority 2);
event entries (digital/state/string tags: alarms, commands, states) are never dropped, even beyond
the capacity.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from historian.backend import Backend, BatchRejected, Points
from historian.names import NameMap
from historian.sqlite_backend import decode_log, encode_log
from scada.errors import StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BufferAlarm:
    code: str  # buffer_high | buffer_full | quarantine | backend_down
    priority: int
    active: bool
    message: str


AlarmHook = Callable[[BufferAlarm], None]


class StoreAndForward:
    """Disk-backed buffer + forwarder thread in front of a :class:`Backend`."""

    def __init__(self, backend: Backend, directory: str | Path, *, capacity_bytes: int = 512 * 2**20,
                 max_rejections: int = 3, batch_points: int = 100_000, direct: bool = True,
                 on_alarm: AlarmHook | None = None, on_fill: Callable[[float], None] | None = None,
                 retry_min_s: float = 0.2, retry_max_s: float = 5.0, high_percent: float = 80.0) -> None:
        self.backend = backend
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.capacity_bytes = capacity_bytes
        self.max_rejections = max_rejections
        self.batch_points = batch_points
        self.direct = direct
        self.on_alarm = on_alarm
        self.on_fill = on_fill
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.high_percent = high_percent
        self.quarantine_path = self.dir / "quarantine.jsonl"
        self._lockfile = open(self.dir / "lock", "a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lockfile.close()
            raise StorageError(f"historian buffer {self.dir}: already used by another process") from exc
        self._db_lock = threading.RLock()
        self._fwd_lock = threading.Lock()  # one backend write at a time (direct or replay): keeps order
        self.db = sqlite3.connect(self.dir / "buffer.sqlite", isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
            CREATE TABLE IF NOT EXISTS queue(seq INTEGER PRIMARY KEY AUTOINCREMENT, analogue INTEGER NOT NULL,
                                             n INTEGER NOT NULL, nbytes INTEGER NOT NULL,
                                             attempts INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS counters(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        """)
        self._name_list: list[str] = [""]
        known: dict[str, int] = {}
        for i, name in self.db.execute("SELECT id, name FROM names ORDER BY id"):
            while len(self._name_list) <= i:
                self._name_list.append("")
            self._name_list[i] = name
            known[name] = i
        self._names = NameMap(known, self._create_names)
        row = self.db.execute("SELECT coalesce(sum(nbytes), 0), coalesce(sum(n), 0) FROM queue").fetchone()
        self._bytes, self._points = int(row[0]), int(row[1])
        self.backend_up = True
        self._high = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._single = False
        self.stats = {"direct": 0, "buffered": 0, "replayed": 0, "dropped_points": 0, "quarantined_points": 0}
        for k, v in self.db.execute("SELECT key, value FROM counters"):
            self.stats[k] = v
        if self._points:
            log.info("historian buffer %s: %d points waiting from a previous run", self.dir, self._points)
        self._check_fill()

    # ------------------------------------------------------------------ public state
    @property
    def fill_percent(self) -> float:
        return 100.0 * self._bytes / self.capacity_bytes if self.capacity_bytes else 0.0

    @property
    def pending_points(self) -> int:
        return self._points

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="historian-forwarder", daemon=True)
        self._thread.start()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until the queue is empty (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._points == 0:
                return True
            self._wake.set()
            time.sleep(0.02)
        return self._points == 0

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._db_lock:
            self.db.close()
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
        finally:
            self._lockfile.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # ------------------------------------------------------------------ submit
    def submit(self, points: Points, analogue: npt.NDArray[np.bool_] | None = None) -> None:
        """Store ``points`` (rows flagged in ``analogue`` may be dropped when the buffer is full).

        Returns when the points are durable: in the backend, or committed to the buffer file.
        Raises :class:`StorageError` only if the buffer file itself cannot be written.
        """
        if not len(points):
            return
        if self.direct and self._points == 0 and self.backend_up:
            with self._fwd_lock:
                if self._points == 0:
                    try:
                        self.backend.write(points)
                        self.stats["direct"] += len(points)
                        return
                    except BatchRejected as exc:
                        log.warning("historian buffer: backend rejected a batch (%s); buffering it for retries", exc)
                    except StorageError as exc:
                        self._set_down(str(exc))
                    except Exception as exc:  # a backend bug must not lose data either: buffered, logged, down
                        log.exception("historian buffer: backend write failed")
                        self._set_down(repr(exc))
        self._enqueue(points, analogue)

    def _create_names(self, names: list[str]) -> list[int]:
        ids = []
        for nm in names:
            cur = self.db.execute("INSERT INTO names(name) VALUES(?)", (nm,))
            i = int(cur.lastrowid or 0)
            while len(self._name_list) <= i:
                self._name_list.append("")
            self._name_list[i] = nm
            ids.append(i)
        return ids

    def _enqueue(self, points: Points, analogue: npt.NDArray[np.bool_] | None) -> None:
        mask = np.zeros(len(points), bool) if analogue is None else np.asarray(analogue, bool)
        parts = [(False, points.take(~mask) if mask.any() else points)]
        if mask.any():
            parts.append((True, points.take(mask)))
        with self._db_lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                for is_analogue, p in parts:
                    if not len(p):
                        continue
                    ids = self._names.ids(p.names, p.tag)
                    payload = encode_log(ids, p.ts, p.value, p.quality, p.text)
                    self._make_room(len(payload), is_analogue)
                    if is_analogue and self._bytes + len(payload) > self.capacity_bytes:
                        # nothing older to drop: this analogue batch is the oldest analogue data
                        self._count("dropped_points", len(p))
                        self._alarm("buffer_full", 2, True, f"historian buffer full: dropped {len(p)} analogue points")
                        continue
                    self.db.execute("INSERT INTO queue(analogue, n, nbytes, payload) VALUES(?,?,?,?)",
                                    (int(is_analogue), len(p), len(payload), payload))
                    self._bytes += len(payload)
                    self._points += len(p)
                    self._count("buffered", len(p))
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._reload_counts()
                raise StorageError(f"historian buffer {self.dir}: cannot store a batch: {exc}") from exc
        self._check_fill()
        self._wake.set()

    def _count(self, key: str, n: int) -> None:
        self.stats[key] = self.stats.get(key, 0) + n
        if key in ("dropped_points", "quarantined_points"):
            self.db.execute("INSERT OR REPLACE INTO counters VALUES(?, ?)", (key, self.stats[key]))

    def _reload_counts(self) -> None:
        row = self.db.execute("SELECT coalesce(sum(nbytes), 0), coalesce(sum(n), 0) FROM queue").fetchone()
        self._bytes, self._points = int(row[0]), int(row[1])

    def _make_room(self, nbytes: int, is_analogue: bool) -> None:
        """Drop the oldest analogue entries until ``nbytes`` fit (inside the caller's transaction)."""
        dropped = 0
        while self._bytes + nbytes > self.capacity_bytes:
            row = self.db.execute("SELECT seq, n, nbytes FROM queue WHERE analogue=1 ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                break
            self.db.execute("DELETE FROM queue WHERE seq=?", (row[0],))
            self._bytes -= row[2]
            self._points -= row[1]
            dropped += row[1]
        if dropped:
            self._count("dropped_points", dropped)
            self._alarm("buffer_full", 2, True, f"historian buffer full: dropped the {dropped} oldest analogue points")
        if not is_analogue and self._bytes + nbytes > self.capacity_bytes:
            self._alarm("buffer_full", 2, True, "historian buffer full of events: kept beyond capacity")

    # ------------------------------------------------------------------ forwarder
    def _run(self) -> None:
        backoff = self.retry_min_s
        while not self._stop.is_set():
            try:
                done = self.forward_once()
            except Exception:  # the forwarder thread must outlive any error: it backs off and retries (logged)
                log.exception("historian buffer: forwarder error")
                done = None
            if done is None:  # backend down or error: back off
                self._stop.wait(backoff)
                backoff = min(self.retry_max_s, backoff * 2)
                continue
            backoff = self.retry_min_s
            if done == 0 and self._points == 0:
                self._wake.wait(1.0)
                self._wake.clear()

    def forward_once(self) -> int | None:
        """Replay the oldest entries once: number of points forwarded (0 if the queue is empty or the
        write was rejected), None if the backend is unavailable."""
        with self._db_lock:
            rows = self.db.execute("SELECT seq, n, attempts, payload FROM queue ORDER BY seq LIMIT ?",
                                   (1 if self._single else 10_000,)).fetchall()
        if not rows:
            return 0
        take: list[tuple[int, int, int, bytes]] = []
        total = 0
        for r in rows:
            if take and total + r[1] > self.batch_points:
                break
            take.append(r)
            total += r[1]
        batch = self._decode([r[3] for r in take])
        with self._fwd_lock:
            try:
                self.backend.write(batch)
            except BatchRejected as exc:
                if len(take) > 1:
                    self._single = True  # find the bad entry: one entry per write from now on
                    return 0
                self._rejected(take[0], str(exc))
                return 0
            except StorageError as exc:
                self._set_down(str(exc))
                return None
            except Exception as exc:  # a backend bug must not lose data: the batch stays queued (logged, down)
                log.exception("historian buffer: backend write failed")
                self._set_down(repr(exc))
                return None
            with self._db_lock:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("DELETE FROM queue WHERE seq=?", [(r[0],) for r in take])
                self.db.execute("COMMIT")
                self._reload_counts()
        self._single = False
        self._count("replayed", total)
        self._set_up()
        self._check_fill()
        return total

    def _decode(self, payloads: list[bytes]) -> Points:
        parts = []
        for p in payloads:
            ids, ts, v, q, text = decode_log(p)
            parts.append(Points(self._name_list, ids, ts, v, q, text))
        return Points.concat(parts)

    def _rejected(self, row: tuple[int, int, int, bytes], reason: str) -> None:
        seq, n, attempts, payload = row
        attempts += 1
        with self._db_lock:
            if attempts < self.max_rejections:
                self.db.execute("UPDATE queue SET attempts=? WHERE seq=?", (attempts, seq))
                log.warning("historian buffer: entry %d rejected (%d/%d): %s", seq, attempts, self.max_rejections,
                            reason)
                return
            batch = self._decode([payload])
            rows = [[name, t, v if not (isinstance(v, float) and math.isnan(v)) else None, q]
                    for name, t, v, q in batch.rows()]
            line = json.dumps({"seq": seq, "time_ns": time.time_ns(), "reason": reason, "rows": rows})
            with open(self.quarantine_path, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM queue WHERE seq=?", (seq,))
            self._count("quarantined_points", n)
            self.db.execute("COMMIT")
            self._reload_counts()
        self._single = False
        log.error("historian buffer: entry %d (%d points) quarantined to %s after %d rejections: %s",
                  seq, n, self.quarantine_path, attempts, reason)
        self._alarm("quarantine", 3, True, f"historian: {n} points quarantined ({reason[:200]})")
        self._check_fill()

    def requeue_quarantine(self) -> int:
        """Administrator action: put every quarantined row back in the queue (after a fix); returns rows."""
        if not self.quarantine_path.exists():
            return 0
        rows = []
        with open(self.quarantine_path) as f:
            for line in f:
                if line.strip():
                    rows.extend(json.loads(line)["rows"])
        if rows:
            self._enqueue(Points.from_rows((r[0], r[1], r[2], r[3]) for r in rows), None)
        self.quarantine_path.rename(self.quarantine_path.with_suffix(f".{time.time_ns()}.requeued"))
        return len(rows)

    # ------------------------------------------------------------------ alarms
    def _alarm(self, code: str, priority: int, active: bool, message: str) -> None:
        if self.on_alarm is None:
            return
        try:
            self.on_alarm(BufferAlarm(code, priority, active, message))
        except Exception:  # the owner's hook must not break buffering (logged)
            log.exception("historian buffer: alarm hook failed")

    def _set_down(self, reason: str) -> None:
        if self.backend_up:
            log.warning("historian backend %s: unavailable, buffering to %s (%s)", self.backend.name, self.dir, reason)
            self._alarm("backend_down", 3, True, f"historian backend {self.backend.name} unavailable: {reason[:200]}")
        self.backend_up = False

    def _set_up(self) -> None:
        if not self.backend_up:
            log.warning("historian backend %s: available again", self.backend.name)
            self._alarm("backend_down", 3, False, f"historian backend {self.backend.name} available again")
        self.backend_up = True

    def _check_fill(self) -> None:
        pct = self.fill_percent
        if self.on_fill is not None:
            try:
                self.on_fill(pct)
            except Exception:  # the owner's hook must not break buffering (logged)
                log.exception("historian buffer: fill hook failed")
        if not self._high and pct >= self.high_percent:
            self._high = True
            self._alarm("buffer_high", 2, True, f"historian buffer {pct:.0f} % full")
        elif self._high and pct < self.high_percent - 5:
            self._high = False
            self._alarm("buffer_high", 2, False, f"historian buffer back to {pct:.0f} %")
