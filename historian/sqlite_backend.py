"""Embedded default backend: one SQLite file (WAL), hot log + per-tag chunks, partitioned by period.

Why not one row per point: a 7-day, 1 s trend is 604,800 rows; SQLite needs ~0.3 s just to scan
them (measured), so points are stored as *chunks*: per tag, arrays of timestamps/values/qualities
in one row, clustered by (tag, t0). A trend then reads a few hundred blobs and decodes them with
numpy. Writes cannot wait for a chunk to fill, so they go first to a log (one blob per batch,
committed with ``synchronous=FULL``: durable when ``write`` returns) and are regrouped into chunks
by :meth:`SqliteBackend.compact` (when the log holds ``compact_points`` points or is older than
``compact_age_s``), in the same transaction that deletes them from the log (crash-safe: a point is
either in the log or in a chunk)::

    write(batch) ──▶ log(id, blob)  ──compact──▶  p_<class>_<YYYYMMDD>(tag, t0, cid, t1, n, ts, val, q, txt)
         │           (+ in-memory mirror,          one table per retention class and period:
         │            queried with the chunks)     retention = DROP TABLE
         └─ durable on return

    maintain(now): closed partitions are merged (one chunk per tag) and rolled up into
                   r_<class>(tag, bucket, n, min, max, avg, last, twa); expired partitions are dropped,
                   expired roll-ups deleted.

Chunk encoding: ``ts`` = first + zlib(int64 deltas) (regular scans compress ~100x), ``val`` = raw
float64, ``q`` = one byte when constant else zlib(uint8), ``txt`` = JSON {row: text} or NULL. Equal
(tag, ts) pairs: the last written wins (idempotent replay). Queries for one tag read the partitions of
its retention class overlapping the range, plus the hot log.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from historian.backend import (
    F64,
    I64,
    U8,
    Aggregates,
    Backend,
    BackendUnavailable,
    Capability,
    Points,
    RetentionPolicy,
    Series,
    TagInfo,
    aggregate_series,
    dedupe_order,
)
from historian.names import NameMap

log = logging.getLogger(__name__)

DAY_NS = 86400 * 1_000_000_000
_HDR = struct.Struct("<4sII")  # magic, n, text bytes
_MAGIC = b"HLG1"
CHUNK_MAX = 65536


def encode_log(ids: I64, ts: I64, v: F64, q: U8, text: Mapping[int, str]) -> bytes:
    tb = json.dumps({str(k): s for k, s in text.items()}).encode() if text else b""
    return b"".join([_HDR.pack(_MAGIC, ts.size, len(tb)), ids.astype("<i4").tobytes(), ts.astype("<i8").tobytes(),
                     v.astype("<f8").tobytes(), q.astype(np.uint8).tobytes(), tb])


def decode_log(blob: bytes) -> tuple[I64, I64, F64, U8, dict[int, str]]:
    magic, n, tl = _HDR.unpack_from(blob)
    if magic != _MAGIC:
        raise ValueError("not a historian log record")
    o = _HDR.size
    ids = np.frombuffer(blob, "<i4", n, o).astype(np.int64)
    o += 4 * n
    ts = np.frombuffer(blob, "<i8", n, o).astype(np.int64)
    o += 8 * n
    v = np.frombuffer(blob, "<f8", n, o).astype(np.float64)
    o += 8 * n
    q = np.frombuffer(blob, np.uint8, n, o).copy()
    o += n
    text = {int(k): s for k, s in json.loads(blob[o:o + tl]).items()} if tl else {}
    return ids, ts, v, q, text


def encode_chunk(ts: I64, v: F64, q: U8, texts: list[str | None] | None) -> tuple[bytes, bytes, bytes, bytes | None]:
    tsb = struct.pack("<q", int(ts[0])) + zlib.compress(np.diff(ts).astype("<i8").tobytes(), 1)
    qb = bytes([int(q[0])]) if bool(np.all(q == q[0])) else zlib.compress(q.tobytes(), 1)
    txt = None
    if texts is not None and any(s is not None for s in texts):
        txt = json.dumps({str(i): s for i, s in enumerate(texts) if s is not None}).encode()
    return tsb, v.astype("<f8").tobytes(), qb, txt


def decode_chunk(n: int, tsb: bytes, vb: bytes, qb: bytes, txt: bytes | None) -> tuple[I64, F64, U8, dict[int, str]]:
    first = struct.unpack_from("<q", tsb)[0]
    ts = np.empty(n, np.int64)
    ts[0] = first
    if n > 1:
        np.cumsum(np.frombuffer(zlib.decompress(tsb[8:]), "<i8"), out=ts[1:])
        ts[1:] += first
    v = np.frombuffer(vb, "<f8")
    q = np.full(n, qb[0], np.uint8) if len(qb) == 1 else np.frombuffer(zlib.decompress(qb), np.uint8).copy()
    text = {int(k): s for k, s in json.loads(txt).items()} if txt else {}
    return ts, v, q, text


@dataclass(slots=True)
class _Hot:
    log_id: int
    ids: I64
    ts: I64
    v: F64
    q: U8
    text: dict[int, str]
    wall: float


class SqliteBackend(Backend):
    """Embedded historian store. Thread-safe (one connection behind a lock)."""

    name = "sqlite"
    capabilities = frozenset(Capability)

    def __init__(self, path: str | Path, *, period_s: float = 86400.0, compact_points: int = 1_000_000,
                 compact_age_s: float = 300.0, retention: Mapping[str, RetentionPolicy] | None = None,
                 durable: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.compact_points = compact_points
        self.compact_age_s = compact_age_s
        self.retention: dict[str, RetentionPolicy] = dict(retention or {})
        self._lock = threading.RLock()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.db.execute("PRAGMA cache_size=-65536")
            self.db.executescript("""
                CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS tags(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
                                                step INTEGER NOT NULL DEFAULT 0, klass TEXT NOT NULL DEFAULT 'default');
                CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, wall REAL, payload BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS partitions(name TEXT PRIMARY KEY, klass TEXT NOT NULL,
                                                      start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
                                                      closed INTEGER NOT NULL DEFAULT 0);
            """)
            row = self.db.execute("SELECT value FROM meta WHERE key='period_ns'").fetchone()
            if row is None:
                self.period_ns = int(period_s * 1e9)
                self.db.execute("INSERT INTO meta VALUES('period_ns', ?)", (str(self.period_ns),))
            else:
                self.period_ns = int(row[0])
            self._tag_ids: dict[str, int] = {}
            self._tag_names: dict[int, str] = {}
            self._klass_of: dict[int, str] = {}
            for tid, name, step, klass in self.db.execute("SELECT id, name, step, klass FROM tags"):
                self._tag_ids[name] = tid
                self._tag_names[tid] = name
                self._klass_of[tid] = klass
                self.infos[name] = TagInfo(name, bool(step), klass)
            self._parts: dict[tuple[str, int], str] = {}
            for name, klass, start, _end, _closed in self.db.execute("SELECT * FROM partitions"):
                self._parts[(klass, start // self.period_ns)] = name
            self._names = NameMap(self._tag_ids, self._create_tags)
            self._hot: list[_Hot] = []
            self._hot_points = 0
            self._cid = int(self.db.execute("SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM meta "
                                            "WHERE key='cid'").fetchone()[0])
            for lid, wall, payload in self.db.execute("SELECT id, wall, payload FROM log ORDER BY id"):
                ids, ts, v, q, text = decode_log(payload)
                self._hot.append(_Hot(lid, ids, ts, v, q, text, wall))
                self._hot_points += ts.size
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"historian {self.path}: cannot open: {exc}") from exc
        log.info("historian %s: opened (%d tags, %d points in the log)", self.path, len(self._tag_ids),
                 self._hot_points)

    # ------------------------------------------------------------------ tags
    def _create_tags(self, names: list[str]) -> list[int]:
        ids = []
        for nm in names:
            info = self.infos.get(nm, TagInfo(nm))
            cur = self.db.execute("INSERT INTO tags(name, step, klass) VALUES(?,?,?)", (nm, int(info.step),
                                                                                        info.retention))
            tid = int(cur.lastrowid or 0)
            ids.append(tid)
            self._tag_names[tid] = nm
            self._klass_of[tid] = info.retention
        return ids

    def register_tags(self, infos: Iterable[TagInfo]) -> None:
        with self._lock:
            infos = list(infos)
            super().register_tags(infos)
            rows = []
            for info in infos:
                tid = self._tag_ids.get(info.name)
                if tid is not None and (self._klass_of.get(tid) != info.retention):
                    # the class decides the partition of future data; old data stays where it is
                    self._klass_of[tid] = info.retention
                if tid is not None:
                    rows.append((int(info.step), info.retention, tid))
            if rows:
                self.db.execute("BEGIN")
                self.db.executemany("UPDATE tags SET step=?, klass=? WHERE id=?", rows)
                self.db.execute("COMMIT")

    # ------------------------------------------------------------------ write
    def write(self, points: Points) -> None:
        if not len(points):
            return
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                ids = self._names.ids(points.names, points.tag)
                payload = encode_log(ids, points.ts, points.value, points.quality, points.text)
                wall = time.time()
                cur = self.db.execute("INSERT INTO log(wall, payload) VALUES(?, ?)", (wall, payload))
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                # forget names created in the failed transaction
                raise BackendUnavailable(f"historian {self.path}: write failed: {exc}") from exc
            self._hot.append(_Hot(int(cur.lastrowid or 0), ids, points.ts.astype(np.int64), points.value.astype(
                np.float64), points.quality.astype(np.uint8), dict(points.text), wall))
            self._hot_points += len(points)
            if self._hot_points >= self.compact_points or (wall - self._hot[0].wall) >= self.compact_age_s:
                self.compact()

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        # ids handed out inside the failed transaction are gone: reload the name table
        self._tag_ids.clear()
        self._tag_ids.update({n: i for i, n in self.db.execute("SELECT id, name FROM tags")})
        self._names = NameMap(self._tag_ids, self._create_tags)

    # ------------------------------------------------------------------ compaction
    def _partition(self, klass: str, period: int) -> str:
        key = (klass, period)
        name = self._parts.get(key)
        if name is None:
            day = time.strftime("%Y%m%d_%H%M%S", time.gmtime(period * self.period_ns / 1e9))
            safe = "".join(c if c.isalnum() else "_" for c in klass)
            name = f"p_{safe}_{day}"
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {name}(tag INTEGER, t0 INTEGER, cid INTEGER, t1 INTEGER, "
                            "n INTEGER, ts BLOB, val BLOB, q BLOB, txt BLOB, PRIMARY KEY(tag, t0, cid)) WITHOUT ROWID")
            self.db.execute("INSERT OR IGNORE INTO partitions VALUES(?,?,?,?,0)",
                            (name, klass, period * self.period_ns, (period + 1) * self.period_ns))
            self._parts[key] = name
        return name

    def compact(self) -> int:
        """Move the log into chunks (one transaction); returns the number of points moved."""
        with self._lock:
            if not self._hot:
                return 0
            hot = self._hot
            ids = np.concatenate([h.ids for h in hot])
            ts = np.concatenate([h.ts for h in hot])
            v = np.concatenate([h.v for h in hot])
            q = np.concatenate([h.q for h in hot])
            text: dict[int, str] = {}
            off = 0
            for h in hot:
                for r, s in h.text.items():
                    text[r + off] = s
                off += h.ts.size
            order = np.lexsort((ts, ids))  # stable: equal (tag, ts) keep write order
            ids, ts, v, q = ids[order], ts[order], v[order], q[order]
            dup = np.append((ids[1:] == ids[:-1]) & (ts[1:] == ts[:-1]), False)
            keep = ~dup  # the last written of equal (tag, ts) wins
            pos_of: dict[int, str] = {}
            if text:
                inv = np.empty(order.size, np.int64)
                inv[order] = np.arange(order.size)
                newpos = np.cumsum(keep) - 1
                pos_of = {int(newpos[inv[r]]): s for r, s in text.items() if keep[inv[r]]}
            ids, ts, v, q = ids[keep], ts[keep], v[keep], q[keep]
            period = ts // self.period_ns
            brk = np.flatnonzero((ids[1:] != ids[:-1]) | (period[1:] != period[:-1])) + 1
            starts = np.concatenate([[0], brk]).tolist()
            ends = np.concatenate([brk, [ids.size]]).tolist()
            self._cid += 1
            cid = self._cid
            rows: dict[str, list[tuple[object, ...]]] = {}
            try:
                self.db.execute("BEGIN IMMEDIATE")
                for a, b in zip(starts, ends, strict=True):
                    for a2 in range(a, b, CHUNK_MAX):
                        b2 = min(b, a2 + CHUNK_MAX)
                        tid = int(ids[a2])
                        pname = self._partition(self._klass_of.get(tid, "default"), int(period[a2]))
                        texts = [pos_of.get(r) for r in range(a2, b2)] if pos_of else None
                        tsb, vb, qb, tb = encode_chunk(ts[a2:b2], v[a2:b2], q[a2:b2], texts)
                        rows.setdefault(pname, []).append((tid, int(ts[a2]), cid, int(ts[b2 - 1]), b2 - a2,
                                                           tsb, vb, qb, tb))
                for pname, rr in rows.items():
                    self.db.executemany(f"INSERT OR REPLACE INTO {pname} VALUES(?,?,?,?,?,?,?,?,?)", rr)
                self.db.execute("DELETE FROM log WHERE id <= ?", (hot[-1].log_id,))
                self.db.execute("INSERT OR REPLACE INTO meta VALUES('cid', ?)", (str(cid),))
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise BackendUnavailable(f"historian {self.path}: compaction failed: {exc}") from exc
            self._hot = []
            self._hot_points = 0
            return int(ids.size)

    def flush(self) -> None:
        """Writes are durable on return; flush also compacts the log."""
        self.compact()

    # ------------------------------------------------------------------ reads
    def _tables(self, tid: int, start_ns: int, end_ns: int) -> list[str]:
        klass = self._klass_of.get(tid, "default")
        p0, p1 = start_ns // self.period_ns, (end_ns - 1) // self.period_ns
        return [name for (k, p), name in sorted(self._parts.items()) if k == klass and p0 <= p <= p1]

    def _collect(self, tid: int, tables: list[str], where: str, args: tuple[int, ...],
                 ) -> tuple[list[I64], list[F64], list[U8], list[dict[int, str]]]:
        tss: list[I64] = []
        vs: list[F64] = []
        qs: list[U8] = []
        txts: list[dict[int, str]] = []
        for tb in tables:
            for n, tsb, vb, qb, txt in self.db.execute(
                    f"SELECT n, ts, val, q, txt FROM {tb} WHERE tag=? {where} ORDER BY cid, t0", (tid, *args)):
                t, v, q, text = decode_chunk(n, tsb, vb, qb, txt)
                tss.append(t)
                vs.append(v)
                qs.append(q)
                txts.append(text)
        return tss, vs, qs, txts

    def _series(self, tag: str, tid: int, parts: tuple[list[I64], list[F64], list[U8], list[dict[int, str]]],
                lo: int, hi: int) -> Series:
        tss, vs, qs, txts = parts
        for h in self._hot:
            m = np.flatnonzero(h.ids == tid)
            if m.size:
                tss.append(h.ts[m])
                vs.append(h.v[m])
                qs.append(h.q[m])
                txts.append({j: h.text[int(r)] for j, r in enumerate(m.tolist()) if int(r) in h.text}
                            if h.text else {})
        if not tss:
            return Series.empty(tag)
        ts = np.concatenate(tss)
        v = np.concatenate(vs)
        q = np.concatenate(qs)
        text_all: list[str | None] | None = None
        if any(txts):
            text_all = []
            for t, d in zip(tss, txts, strict=True):
                text_all.extend(d.get(i) for i in range(t.size))
        order = dedupe_order(ts)
        if order is not None:  # overlapping chunks (late data) or hot data out of order
            ts, v, q = ts[order], v[order], q[order]
            if text_all is not None:
                text_all = [text_all[i] for i in order.tolist()]
        a, b = (int(x) for x in np.searchsorted(ts, [lo, hi], side="left"))
        if a > 0 or b < ts.size:
            ts, v, q = ts[a:b], v[a:b], q[a:b]
            if text_all is not None:
                text_all = text_all[a:b]
        return Series(tag, ts, v, q, text_all)

    def tags(self) -> list[str]:
        with self._lock:
            return sorted(self._tag_ids)

    def raw(self, tag: str, start_ns: int, end_ns: int) -> Series:
        with self._lock:
            tid = self._tag_ids.get(tag)
            if tid is None or end_ns <= start_ns:
                return Series.empty(tag)
            parts = self._collect(tid, self._tables(tid, start_ns, end_ns), "AND t0 < ? AND t1 >= ?",
                                  (end_ns, start_ns))
            return self._series(tag, tid, parts, start_ns, end_ns)

    def point_before(self, tag: str, ts_ns: int) -> Series:
        with self._lock:
            tid = self._tag_ids.get(tag)
            if tid is None:
                return Series.empty(tag)
            best: Series | None = None
            hot = self._series(tag, tid, ([], [], [], []), -(2**62), ts_ns + 1)
            if len(hot):
                best = hot.take(slice(len(hot) - 1, len(hot)))
            klass = self._klass_of.get(tid, "default")
            p_hi = ts_ns // self.period_ns
            for (k, p), tb in sorted(self._parts.items(), reverse=True):
                if k != klass or p > p_hi:
                    continue
                if best is not None and (p + 1) * self.period_ns <= int(best.ts[0]):
                    break
                row = self.db.execute(f"SELECT max(t1) FROM {tb} WHERE tag=? AND t1 <= ?", (tid, ts_ns)).fetchone()
                floor = row[0] if row[0] is not None else -(2**62)
                parts = self._collect(tid, [tb], "AND t0 <= ? AND t1 >= ?", (ts_ns, floor))
                s = self._series(tag, tid, parts, floor, ts_ns + 1) if parts[0] else Series.empty(tag)
                s = s if len(s) else Series.empty(tag)
                if len(s) and (best is None or s.ts[-1] > best.ts[0]):
                    best = s.take(slice(len(s) - 1, len(s)))
                if best is not None:
                    break
            return best if best is not None else Series.empty(tag)

    def point_after(self, tag: str, ts_ns: int) -> Series:
        with self._lock:
            tid = self._tag_ids.get(tag)
            if tid is None:
                return Series.empty(tag)
            best: Series | None = None
            hot = self._series(tag, tid, ([], [], [], []), ts_ns + 1, 2**62)
            if len(hot):
                best = hot.take(slice(0, 1))
            klass = self._klass_of.get(tid, "default")
            p_lo = (ts_ns + 1) // self.period_ns
            for (k, p), tb in sorted(self._parts.items()):
                if k != klass or p < p_lo:
                    continue
                if best is not None and p * self.period_ns > int(best.ts[0]):
                    break
                row = self.db.execute(f"SELECT min(t0) FROM {tb} WHERE tag=? AND t0 > ?", (tid, ts_ns)).fetchone()
                ceil = row[0] if row[0] is not None else 2**62
                parts = self._collect(tid, [tb], "AND t1 > ? AND t0 <= ?", (ts_ns, ceil))
                s = self._series(tag, tid, parts, ts_ns + 1, ceil + 1) if parts[0] else Series.empty(tag)
                if len(s) and (best is None or s.ts[0] < best.ts[0]):
                    best = s.take(slice(0, 1))
                if best is not None:
                    break
            return best if best is not None else Series.empty(tag)

    # ------------------------------------------------------------------ retention / downsampling
    def policy(self, klass: str) -> RetentionPolicy:
        return self.retention.get(klass) or self.retention.get("default") or RetentionPolicy()

    def _rollup_table(self, klass: str) -> str:
        safe = "".join(c if c.isalnum() else "_" for c in klass)
        name = f"r_{safe}"
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {name}(tag INTEGER, bucket INTEGER, n INTEGER, vmin REAL, "
                        "vmax REAL, avg REAL, last REAL, twa REAL, PRIMARY KEY(tag, bucket)) WITHOUT ROWID")
        return name

    def maintain(self, now_ns: int) -> dict[str, int]:
        """Close finished partitions (merge chunks, roll up), drop expired partitions and roll-ups."""
        stats = {"closed": 0, "dropped": 0, "rollups_deleted": 0}
        with self._lock:
            if self._hot and (time.time() - self._hot[0].wall >= self.compact_age_s
                              or any(int(h.ts.min()) < now_ns - self.period_ns for h in self._hot)):
                self.compact()
            parts = self.db.execute("SELECT name, klass, start_ns, end_ns, closed FROM partitions").fetchall()
            for name, klass, start, end, closed in parts:
                pol = self.policy(klass)
                if not closed and end <= now_ns:  # roll up before anything expires
                    self._close_partition(name, klass, start, end, pol)
                    stats["closed"] += 1
                if end <= now_ns - int(pol.raw_s * 1e9):
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.execute(f"DROP TABLE IF EXISTS {name}")
                    self.db.execute("DELETE FROM partitions WHERE name=?", (name,))
                    self.db.execute("COMMIT")
                    self._parts.pop((klass, start // self.period_ns), None)
                    stats["dropped"] += 1
            for klass in {k for k, _p in self._parts} | set(self.retention):
                pol = self.policy(klass)
                if pol.rollup_keep_s > 0:
                    rt = self._rollup_table(klass)
                    horizon = now_ns - int(pol.rollup_keep_s * 1e9)
                    cur = self.db.execute(f"DELETE FROM {rt} WHERE bucket < ?", (horizon,))
                    stats["rollups_deleted"] += cur.rowcount
        return stats

    def _close_partition(self, name: str, klass: str, start: int, end: int, pol: RetentionPolicy) -> None:
        tids = [r[0] for r in self.db.execute(f"SELECT DISTINCT tag FROM {name}")]
        interval = int(pol.rollup_interval_s * 1e9)
        roll: list[tuple[object, ...]] = []
        merged: list[tuple[object, ...]] = []
        cid = self._cid + 1
        for tid in tids:
            tag = self._tag_names.get(tid, str(tid))
            s = self._series(tag, tid, self._collect(tid, [name], "", ()), start, end)
            if not len(s):
                continue
            for a in range(0, len(s), CHUNK_MAX):
                b = min(len(s), a + CHUNK_MAX)
                tsb, vb, qb, tb = encode_chunk(s.ts[a:b], s.value[a:b], s.quality[a:b],
                                               s.text[a:b] if s.text else None)
                merged.append((tid, int(s.ts[a]), cid, int(s.ts[b - 1]), b - a, tsb, vb, qb, tb))
            if pol.rollup_keep_s > 0 and interval > 0:
                before = self.point_before(tag, start - 1)
                agg = aggregate_series(s, before, start, end, interval, self.is_step(tag))
                for i in range(len(agg)):
                    roll.append((tid, int(agg.start[i]), int(agg.count[i]), _f(agg.min[i]), _f(agg.max[i]),
                                 _f(agg.avg[i]), _f(agg.last[i]), _f(agg.twa[i])))
        self._cid = cid
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(f"DELETE FROM {name}")
        self.db.executemany(f"INSERT INTO {name} VALUES(?,?,?,?,?,?,?,?,?)", merged)
        if roll:
            rt = self._rollup_table(klass)
            self.db.executemany(f"INSERT OR REPLACE INTO {rt} VALUES(?,?,?,?,?,?,?,?)", roll)
        self.db.execute("UPDATE partitions SET closed=1 WHERE name=?", (name,))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES('cid', ?)", (str(cid),))
        self.db.execute("COMMIT")

    def rollups(self, tag: str, start_ns: int, end_ns: int) -> Aggregates:
        """The downsampled aggregates stored for a tag (kept after raw data expired)."""
        with self._lock:
            tid = self._tag_ids.get(tag)
            klass = self._klass_of.get(tid, "default") if tid is not None else "default"
            pol = self.policy(klass)
            interval = int(pol.rollup_interval_s * 1e9)
            rows = [] if tid is None else self.db.execute(
                f"SELECT bucket, n, vmin, vmax, avg, last, twa FROM {self._rollup_table(klass)} "
                "WHERE tag=? AND bucket >= ? AND bucket < ? ORDER BY bucket", (tid, start_ns, end_ns)).fetchall()
            a = np.array(rows, dtype=np.float64).reshape(-1, 7)
            return Aggregates(tag, a[:, 0].astype(np.int64), interval, a[:, 1].astype(np.int64), a[:, 2], a[:, 3],
                              a[:, 4], a[:, 5], a[:, 6])

    def stats(self) -> dict[str, int]:
        with self._lock:
            chunks = 0
            for tb in self._parts.values():
                chunks += int(self.db.execute(f"SELECT count(*) FROM {tb}").fetchone()[0])
            return {"tags": len(self._tag_ids), "partitions": len(self._parts), "chunks": chunks,
                    "log_points": self._hot_points}

    def close(self) -> None:
        with self._lock:
            try:
                self.db.close()
            except sqlite3.Error:
                pass


def _f(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
