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
                   r_<class>(tag, bucket, n, min, max, avg, last, twa, cover, vend); then expired
                   partitions are dropped (the raw horizon H of the class, persisted in meta, moves to
                   the end of the last dropped one) and expired roll-ups deleted.

Trends over expired data (``aggregate``, ``decimate``): a query is split at H::

    ──── roll-ups only (raw dropped) ────┃──── raw points ────▶
    start                                H                   end

- An asked bucket made of whole roll-up buckets (interval a multiple of the roll-up interval and start
  on the roll-up grid, e.g. daily or hourly trends) is exact: min of mins, max of maxes, counts summed,
  avg weighted by count, last of lasts, twa weighted by ``cover`` (the good, known time of each roll-up
  bucket). A bucket straddling H combines its roll-ups with the raw points after H; the raw side starts
  from ``vend`` (the reconstructed value kept at H) since the last point before H is gone.
  ``source`` = "rollup" (all before H) or "mixed", ``raw_from_ns`` = H, ``resolution_ns`` = 0.
- Finer or unaligned: the part before H is the stored roll-up buckets themselves (one per roll-up
  interval, the first may start before ``start``), ``resolution_ns`` = the roll-up interval; the raw
  part follows on a grid starting at max(start, H). No finer values are invented.
- ``decimate``: each roll-up bucket before H gives two points, its min at the bucket start and its max at
  its middle (nominal times: when they occurred is not kept), then M4 over those + the raw points;
  flagged like aggregates.
- Roll-ups are computed when a partition closes, looking one point past its end (twa of the last
  segment); if that point was not stored yet, the last segment is held. Late data for a period already
  past H only fills missing roll-up buckets (it never replaces complete ones). A store whose partitions
  were dropped before H was recorded answers from roll-ups after the next drop.

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
import numpy.typing as npt

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
    _segments,
    aggregate_series,
    decimate_series,
    dedupe_order,
)
from historian.names import NameMap

log = logging.getLogger(__name__)

DAY_NS = 86400 * 1_000_000_000
_HDR = struct.Struct("<4sII")  # magic, n, text bytes
_MAGIC = b"HLG1"
CHUNK_MAX = 65536
NEVER = -(2**62)  # "no raw data expired yet"


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
                 durable: bool = True, readonly: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.compact_points = compact_points
        self.compact_age_s = compact_age_s
        self.retention: dict[str, RetentionPolicy] = dict(retention or {})
        self._lock = threading.RLock()
        try:
            if readonly:  # reports: never create nor change a store (a missing file is an error, not an empty store)
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                          check_same_thread=False)
                self.db.execute("SELECT value FROM meta WHERE key='period_ns'")  # not a historian store: fail here
            else:
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
            # per retention class: raw data before this time has been dropped (roll-ups answer there)
            self._horizon: dict[str, int] = {
                k.removeprefix("raw_expired:"): int(v) for k, v in self.db.execute(
                    "SELECT key, value FROM meta WHERE key LIKE 'raw_expired:%'")}
            self._rollup_ok: set[str] = set()
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
                    f"SELECT n, ts, val, q, txt FROM {tb} WHERE tag=? {where} ORDER BY cid, t0", (tid, *args)):  # noqa: S608 - table names from the class name (alnum/_), the clause is the caller's placeholders
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
                row = self.db.execute(f"SELECT max(t1) FROM {tb} WHERE tag=? AND t1 <= ?", (tid, ts_ns)).fetchone()  # noqa: S608 - table name from the class name (alnum/_), values bound
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
                row = self.db.execute(f"SELECT min(t0) FROM {tb} WHERE tag=? AND t0 > ?", (tid, ts_ns)).fetchone()  # noqa: S608 - table name from the class name (alnum/_), values bound
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
        if name in self._rollup_ok:
            return name
        # cover: seconds of the bucket where the signal is known and good (the weight of twa when
        # buckets are combined); vend: the reconstructed value just before the bucket end (NULL when
        # not good): where raw data expired it stands in for the last expired point.
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {name}(tag INTEGER, bucket INTEGER, n INTEGER, vmin REAL, "
                        "vmax REAL, avg REAL, last REAL, twa REAL, cover REAL, vend REAL, "
                        "PRIMARY KEY(tag, bucket)) WITHOUT ROWID")
        cols = {r[1] for r in self.db.execute(f"PRAGMA table_info({name})")}
        for col in ("cover", "vend"):  # stores created before these columns
            if col not in cols:
                self.db.execute(f"ALTER TABLE {name} ADD COLUMN {col} REAL")
        self._rollup_ok.add(name)
        return name

    def maintain(self, now_ns: int) -> dict[str, int]:
        """Close finished partitions (merge chunks, roll up), drop expired partitions and roll-ups."""
        stats = {"closed": 0, "dropped": 0, "rollups_deleted": 0}
        with self._lock:
            if self._hot and (time.time() - self._hot[0].wall >= self.compact_age_s
                              or any(int(h.ts.min()) < now_ns - self.period_ns for h in self._hot)):
                self.compact()
            parts = self.db.execute("SELECT name, klass, start_ns, end_ns, closed FROM partitions "
                                    "ORDER BY start_ns").fetchall()
            # roll up every finished partition before anything expires (a roll-up reads the points on
            # both sides of its partition for the time-weighted average, so no drop in between)
            for name, klass, start, end, closed in parts:
                if not closed and end <= now_ns:
                    self._close_partition(name, klass, start, end, self.policy(klass))
                    stats["closed"] += 1
            for name, klass, start, end, _closed in parts:
                if end <= now_ns - int(self.policy(klass).raw_s * 1e9):
                    key = f"raw_expired:{klass}"
                    horizon = max(self._horizon.get(klass, end), end)
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.execute(f"DROP TABLE IF EXISTS {name}")
                    self.db.execute("DELETE FROM partitions WHERE name=?", (name,))
                    self.db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, str(horizon)))
                    self.db.execute("COMMIT")
                    self._parts.pop((klass, start // self.period_ns), None)
                    self._horizon[klass] = horizon
                    stats["dropped"] += 1
            for klass in {k for k, _p in self._parts} | set(self.retention):
                pol = self.policy(klass)
                if pol.rollup_keep_s > 0:
                    rt = self._rollup_table(klass)
                    horizon = now_ns - int(pol.rollup_keep_s * 1e9)
                    cur = self.db.execute(f"DELETE FROM {rt} WHERE bucket < ?", (horizon,))  # noqa: S608 - table name from the class name (alnum/_), values bound
                    stats["rollups_deleted"] += cur.rowcount
        return stats

    def _close_partition(self, name: str, klass: str, start: int, end: int, pol: RetentionPolicy) -> None:
        tids = [r[0] for r in self.db.execute(f"SELECT DISTINCT tag FROM {name}")]  # noqa: S608 - table name from the class name (alnum/_)
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
                step = self.is_step(tag)
                before = self.point_before(tag, start - 1)
                after = self.point_after(tag, end - 1)  # the twa of the last segment runs towards it
                agg = aggregate_series(s, before, start, end, interval, step)
                edges = _edges(start, end, interval)
                twa, cover, vend = _twa_cover(_join(before, s, after), s.ts, edges, step)
                for i in range(len(agg)):
                    roll.append((tid, int(agg.start[i]), int(agg.count[i]), _f(agg.min[i]), _f(agg.max[i]),
                                 _f(agg.avg[i]), _f(agg.last[i]), _f(twa[i]), float(cover[i]) / 1e9,
                                 _f(vend[i])))
        self._cid = cid
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(f"DELETE FROM {name}")  # noqa: S608 - table name from the class name (alnum/_), values bound
        self.db.executemany(f"INSERT INTO {name} VALUES(?,?,?,?,?,?,?,?,?)", merged)
        if roll:
            rt = self._rollup_table(klass)
            # late data for a period whose raw data already expired: its partial roll-ups must not
            # replace the complete ones computed when the period closed, only fill missing buckets
            verb = "INSERT OR IGNORE" if end <= self._horizon.get(klass, NEVER) else "INSERT OR REPLACE"
            self.db.executemany(f"{verb} INTO {rt} VALUES(?,?,?,?,?,?,?,?,?,?)", roll)
        self.db.execute("UPDATE partitions SET closed=1 WHERE name=?", (name,))
        self.db.execute("INSERT OR REPLACE INTO meta VALUES('cid', ?)", (str(cid),))
        self.db.execute("COMMIT")

    def rollups(self, tag: str, start_ns: int, end_ns: int) -> Aggregates:
        """The downsampled aggregates stored for a tag (kept after raw data expired)."""
        with self._lock:
            tid = self._tag_ids.get(tag)
            klass = self._klass_of.get(tid, "default") if tid is not None else "default"
            r = self._rollup_rows(tid, klass, start_ns, end_ns)
            return Aggregates(tag, r.bucket, r.interval, r.n, r.vmin, r.vmax, r.avg, r.last, r.twa,
                              source="rollup", resolution_ns=r.interval)

    def _rollup_rows(self, tid: int | None, klass: str, start_ns: int, end_ns: int) -> _Rollups:
        """Stored roll-up buckets with ``bucket`` in [start_ns, end_ns), time-ordered, with their ends."""
        interval = int(self.policy(klass).rollup_interval_s * 1e9)
        rows = [] if tid is None or interval <= 0 else self.db.execute(
            f"SELECT bucket, n, vmin, vmax, avg, last, twa, cover, vend FROM {self._rollup_table(klass)} "  # noqa: S608 - table name from the class name (alnum/_), values bound
            "WHERE tag=? AND bucket >= ? AND bucket < ? ORDER BY bucket", (tid, start_ns, end_ns)).fetchall()
        a = np.array(rows, dtype=np.float64).reshape(-1, 9)  # NULL -> nan
        bucket = np.array([r[0] for r in rows], np.int64)
        # a roll-up bucket never crosses its partition's end (the grid restarts at each partition)
        end = np.minimum(bucket + max(interval, 1), (bucket // self.period_ns + 1) * self.period_ns)
        cover = a[:, 7] * 1e9
        nocover = np.isnan(cover)  # stores rolled up before the cover column: assume the whole bucket
        cover[nocover] = np.where(np.isnan(a[nocover, 6]), 0.0, (end[nocover] - bucket[nocover]).astype(float))
        return _Rollups(interval, bucket, end, a[:, 1].astype(np.int64), a[:, 2], a[:, 3], a[:, 4], a[:, 5],
                        a[:, 6], cover, a[:, 8])

    def _expired(self, tag: str, start_ns: int, end_ns: int,
                 ) -> tuple[int, int, _Rollups | None, Series, Series]:
        """Split a query at the raw horizon H of the tag's class: (H, first raw time, roll-ups overlapping
        [start, min(end, H)) or None, raw points in [max(start, H), end), the point before them)."""
        tid = self._tag_ids.get(tag)
        klass = self._klass_of.get(tid, "default") if tid is not None else "default"
        hz = self._horizon.get(klass, NEVER) if tid is not None else NEVER
        lo = max(start_ns, hz)
        roll = None
        if hz > start_ns:
            span = int(self.policy(klass).rollup_interval_s * 1e9)
            roll = self._rollup_rows(tid, klass, start_ns - span, min(end_ns, hz))
            keep = roll.end > start_ns
            roll = roll.take(keep) if not keep.all() else roll
        raw = self.raw(tag, lo, end_ns) if lo < end_ns else Series.empty(tag)
        before = Series.empty(tag)
        if lo < end_ns and (not len(raw) or raw.ts[0] > lo):
            if hz <= start_ns:
                before = self.point_before(tag, lo - 1)
            if not len(before) and hz > NEVER:
                # the last expired point is gone: the roll-up ending at H kept the value there
                last = self._rollup_rows(tid, klass, hz - self.period_ns, hz)
                if len(last) and last.end[-1] == hz and not np.isnan(last.vend[-1]):
                    before = Series(tag, np.array([hz], np.int64), last.vend[-1:].copy(), np.zeros(1, np.uint8))
        return hz, lo, roll, raw, before

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_ns: int, step: bool | None = None) -> Aggregates:
        """Aggregates per interval; where raw data expired, from the roll-ups (see the module docstring)."""
        self.require(Capability.AGGREGATE)
        if interval_ns <= 0 or end_ns <= start_ns:
            raise ValueError("interval must be > 0 and end > start")
        step = self.is_step(tag) if step is None else step
        with self._lock:
            hz, lo, roll, raw, before = self._expired(tag, start_ns, end_ns)
        if roll is None:
            return aggregate_series(raw, before, start_ns, end_ns, interval_ns, step)
        source = "rollup" if lo >= end_ns else "mixed"
        bi = (roll.bucket - start_ns) // interval_ns
        exact = bool(np.all((roll.bucket >= start_ns) & (roll.end <= end_ns)
                            & ((roll.end - 1 - start_ns) // interval_ns == bi)))
        if exact:  # every roll-up bucket lies inside one asked bucket: combine exactly
            edges = _edges(start_ns, end_ns, interval_ns)
            nb = edges.size - 1
            w = aggregate_series(raw, before, start_ns, end_ns, interval_ns, step)
            wtwa, wcover, _ = _twa_cover(_join(before, raw), np.concatenate([before.ts, raw.ts]), edges, step)
            n = roll.n
            has = n > 0
            count = w.count + np.bincount(bi, weights=n, minlength=nb).astype(np.int64)
            rmin = np.full(nb, np.nan)
            rmax = np.full(nb, np.nan)
            np.fmin.at(rmin, bi[has], roll.vmin[has])
            np.fmax.at(rmax, bi[has], roll.vmax[has])
            rsum = np.bincount(bi[has], weights=roll.avg[has] * n[has], minlength=nb)
            wsum = np.where(w.count > 0, w.avg * w.count, 0.0)
            avg = np.full(nb, np.nan)
            pos = count > 0
            avg[pos] = (rsum[pos] + wsum[pos]) / count[pos]
            last = np.full(nb, np.nan)
            last[bi[has]] = roll.last[has]  # time-ordered: the last roll-up of a bucket wins
            last = np.where(w.count > 0, w.last, last)
            tw = ~np.isnan(roll.twa) & (roll.cover > 0)
            rarea = np.bincount(bi[tw], weights=roll.twa[tw] * roll.cover[tw], minlength=nb)
            rcov = np.bincount(bi[tw], weights=roll.cover[tw], minlength=nb)
            warea = np.where(wcover > 0, np.nan_to_num(wtwa) * wcover, 0.0)
            cov = rcov + wcover
            twa = np.full(nb, np.nan)
            twa[cov > 0] = (rarea[cov > 0] + warea[cov > 0]) / cov[cov > 0]
            return Aggregates(tag, edges[:-1].copy(), interval_ns, count, np.fmin(rmin, w.min), np.fmax(rmax, w.max),
                              avg, last, twa, source=source, raw_from_ns=hz)
        # finer than (or not aligned to) the roll-ups: the roll-up buckets themselves, then the raw part
        rw = aggregate_series(raw, before, lo, end_ns, interval_ns, step) if lo < end_ns else None

        if rw is None:
            rw = Aggregates(tag, roll.bucket[:0], interval_ns, roll.n[:0], roll.vmin[:0], roll.vmin[:0],
                            roll.vmin[:0], roll.vmin[:0], roll.vmin[:0])
        return Aggregates(tag, np.concatenate([roll.bucket, rw.start]), interval_ns,
                          np.concatenate([roll.n, rw.count]), np.concatenate([roll.vmin, rw.min]),
                          np.concatenate([roll.vmax, rw.max]), np.concatenate([roll.avg, rw.avg]),
                          np.concatenate([roll.last, rw.last]), np.concatenate([roll.twa, rw.twa]),
                          source=source, resolution_ns=roll.interval, raw_from_ns=hz)

    def decimate(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> Series:
        """M4 over the stored points; where raw data expired, the min and max of each roll-up bucket
        (min at the bucket start, max at its middle: nominal times) stand in for the points."""
        self.require(Capability.DECIMATE)
        if pixels <= 0 or end_ns <= start_ns:
            raise ValueError("pixels must be > 0 and end > start")
        with self._lock:
            hz, lo, roll, raw, _before = self._expired(tag, start_ns, end_ns)
        if roll is None:
            return decimate_series(raw, start_ns, end_ns, pixels)
        r = roll.take(roll.n > 0)
        a = np.maximum(r.bucket, start_ns)
        b = np.minimum(np.minimum(r.end, end_ns), max(hz, start_ns))
        mid = a + (b - a) // 2
        two = (r.vmax != r.vmin) & (mid > a)
        ts = np.concatenate([a, mid[two]])
        v = np.concatenate([r.vmin, r.vmax[two]])
        order = np.argsort(ts, kind="stable")
        ts, v = ts[order], v[order]
        text: list[str | None] | None = None
        if raw.text is not None:
            text = [None] * ts.size
            text.extend(raw.text)
        joined = Series(tag, np.concatenate([ts, raw.ts]), np.concatenate([v, raw.value]),
                        np.concatenate([np.zeros(ts.size, np.uint8), raw.quality]), text)
        d = decimate_series(joined, start_ns, end_ns, pixels)
        return Series(tag, d.ts, d.value, d.quality, d.text, source="rollup" if lo >= end_ns else "mixed",
                      resolution_ns=roll.interval, raw_from_ns=hz)

    def stats(self) -> dict[str, int]:
        with self._lock:
            chunks = 0
            for tb in self._parts.values():
                chunks += int(self.db.execute(f"SELECT count(*) FROM {tb}").fetchone()[0])  # noqa: S608 - table name from the class name (alnum/_)
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


@dataclass(slots=True)
class _Rollups:
    """Stored roll-up buckets of one tag: [bucket, end) each; cover in ns (the twa weight)."""

    interval: int
    bucket: I64
    end: I64
    n: I64
    vmin: F64
    vmax: F64
    avg: F64
    last: F64
    twa: F64
    cover: F64
    vend: F64

    def __len__(self) -> int:
        return int(self.bucket.size)

    def take(self, rows: npt.NDArray[np.bool_]) -> _Rollups:
        return _Rollups(self.interval, self.bucket[rows], self.end[rows], self.n[rows], self.vmin[rows],
                        self.vmax[rows], self.avg[rows], self.last[rows], self.twa[rows], self.cover[rows],
                        self.vend[rows])


def _edges(start_ns: int, end_ns: int, interval_ns: int) -> I64:
    """Bucket edges as :func:`historian.backend.aggregate_series` draws them (last one clipped to end)."""
    nb = int(-(-(end_ns - start_ns) // interval_ns))
    edges = start_ns + np.arange(nb + 1, dtype=np.int64) * interval_ns
    edges[-1] = min(int(edges[-1]), end_ns)
    return edges


def _join(*parts: Series) -> tuple[I64, F64, U8]:
    return (np.concatenate([p.ts for p in parts]), np.concatenate([p.value for p in parts]),
            np.concatenate([p.quality for p in parts]))


def _twa_cover(points: tuple[I64, F64, U8], inner: I64, edges: I64, step: bool) -> tuple[F64, F64, F64]:
    """Per bucket of ``edges``: the time-weighted average of the reconstructed signal (as
    :func:`aggregate_series`), the ns where it is known and good (its weight), and its value just before
    the bucket end (NaN where not good). ``points`` are time-ordered and may reach past both ends."""
    ts, v, q = points
    nb = edges.size - 1
    twa = np.full(nb, np.nan)
    cover = np.zeros(nb)
    vend = np.full(nb, np.nan)
    if ts.size == 0:
        return twa, cover, vend
    inner = inner[(inner > edges[0]) & (inner < edges[-1])]
    bp = np.unique(np.concatenate([edges, inner]))
    left, right, good = _segments(ts, v, q, bp[:-1], bp[1:], step)
    dt = np.diff(bp).astype(np.float64)
    seg = np.clip(np.searchsorted(edges, bp[:-1], side="right") - 1, 0, nb - 1)
    cover = np.bincount(seg, weights=np.where(good, dt, 0.0), minlength=nb).astype(np.float64)
    area = np.bincount(seg, weights=np.where(good, (left + right) / 2 * dt, 0.0), minlength=nb)
    pos = cover > 0
    twa[pos] = area[pos] / cover[pos]
    lastseg = np.searchsorted(bp, edges[1:], side="left") - 1
    return twa, cover, np.where(good[lastseg], right[lastseg], np.nan)
