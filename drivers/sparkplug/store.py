"""The edge's disk store-and-forward and its birth/death sequence number (SQLite, via scada.sqlitestore).

    broker or primary host away ──► put(topic, DDATA without seq) ──► forward table (id order = publish order)
    back: NBIRTH + DBIRTHs (current values) ──► oldest(n) replayed with is_historical, seq numbered ──► drop(upto)

``forward`` keeps at most ``max_rows`` messages: beyond, the oldest are dropped and counted, never silently:
``dropped`` (this process), and in ``meta`` the drops no host has been told of yet (the next NBIRTH's
``Store/Dropped``: the host raises its ``edge/store_full`` alarm naming the edge). The edge logs when the store
becomes full. ``meta`` also keeps the last bdSeq, so that a restarted edge goes on from it (a host matches an
NDEATH to the NBIRTH of the same bdSeq: a restart must not reuse the previous session's), and the highest host
epoch the edge has obeyed (a former active host's commands stay refused across an edge restart).

Stored payloads are DDATA whose metrics carry their tag's *name* (the edge adds it when it stores): aliases
belong to one configuration, and a replay after a reload or a restart on another tags.yaml maps the names to
the current aliases.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from scada.sqlitestore import connect

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forward (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class ForwardStore:
    def __init__(self, path: Path, max_rows: int = 1_000_000) -> None:
        self.path = path
        self.max_rows = max_rows
        # NORMAL in WAL: a power cut may lose the last transactions, never corrupt the store; FULL would fsync
        # every DDATA of an outage
        self.db = connect(path, "edge store-and-forward", synchronous="NORMAL")
        self.db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.dropped = 0
        self._count = int(self.db.execute("SELECT count(*) FROM forward").fetchone()[0])

    def __len__(self) -> int:
        return self._count

    def put(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.db.execute("INSERT INTO forward (topic, payload) VALUES (?, ?)", (topic, payload))
            self._count += 1
            if self._count > self.max_rows:  # full: the oldest go (counted), the newest are kept
                over = self._count - self.max_rows
                self.db.execute("DELETE FROM forward WHERE id IN (SELECT id FROM forward ORDER BY id LIMIT ?)",
                                (over,))
                self._count -= over
                if not self.dropped:
                    log.error("%s: store-and-forward full (%d messages): dropping the oldest from now on (counted, "
                              "reported to the host at the next birth)", self.path, self.max_rows)
                self.dropped += over
                self._add_meta("dropped_unreported", over)

    @property
    def full(self) -> bool:
        return self._count >= self.max_rows

    def _meta(self, key: str, default: int = 0) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _add_meta(self, key: str, delta: int) -> None:
        self._set_meta(key, self._meta(key) + delta)

    def unreported_drops(self) -> int:
        """Messages dropped (store full) that no host has been told of yet."""
        with self._lock:
            return self._meta("dropped_unreported")

    def reported(self, n: int) -> None:
        """``n`` drops were told (an NBIRTH carrying them was acknowledged)."""
        with self._lock:
            self._set_meta("dropped_unreported", max(0, self._meta("dropped_unreported") - n))

    def epoch(self) -> int:
        """The highest host epoch obeyed (-1: none yet)."""
        with self._lock:
            return self._meta("host_epoch", -1)

    def set_epoch(self, epoch: int) -> None:
        with self._lock:
            self._set_meta("host_epoch", epoch)

    def oldest(self, n: int) -> list[tuple[int, str, bytes]]:
        with self._lock:
            rows = self.db.execute("SELECT id, topic, payload FROM forward ORDER BY id LIMIT ?", (n,)).fetchall()
        return [(int(i), str(t), bytes(p)) for i, t, p in rows]

    def drop(self, upto: int) -> None:
        """Forget every message up to id ``upto`` (sent)."""
        with self._lock:
            cur = self.db.execute("DELETE FROM forward WHERE id <= ?", (upto,))
            self._count -= max(cur.rowcount, 0)

    def next_bd_seq(self) -> int:
        """The bdSeq of the next MQTT session (0-255, wrapping), remembered across restarts."""
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'bd_seq'").fetchone()
            value = 0 if row is None else (int(row[0]) + 1) % 256
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('bd_seq', ?)", (value,))
            return value

    def close(self) -> None:
        with self._lock:
            self.db.close()
