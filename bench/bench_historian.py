"""Historian: durable ingest into the embedded store, 7-day trend query, compression of synthetic signals.

1. Ingest: batches of 20,000 points (10,000 tags) written with :meth:`SqliteBackend.write` (each
   write is a durable commit, ``synchronous=FULL``, well under one second apart), *including* the
   compaction of the log into chunks. Baseline in the same run: the obvious schema, one row per point
   in a table clustered by (tag, ts), one ``INSERT`` per point, committed every second.
2. Trend: one tag, 7 days at 1 s (604,800 points), decimated to 2,000 pixels (M4: first/min/max/last
   per pixel). Baseline: the same query as one SQL ``GROUP BY pixel`` over the row table.
3. Compression: 1,000 tags × 2,000 points of each signal through the vectorised compressor bank
   (deviation 1 % of the signal's span); ratio = input points / archived points; max reconstruction
   error (linear interpolation between archived points) must stay within the deviation.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from historian.backend import Points
from historian.compress import NS, CompressorBank, max_reconstruction_error
from historian.sqlite_backend import SqliteBackend

T0 = 1_763_800_000 * NS


def _ingest(tmp: Path, n_total: int) -> tuple[float, int]:
    n_tags, per = 10_000, 20_000
    names = [f"city/lighting/LC{i:05d}/power" for i in range(n_tags)]
    be = SqliteBackend(tmp / "ingest.sqlite", compact_points=1_000_000)
    rng = np.random.default_rng(0)
    batches = []
    for k in range(n_total // per):
        tag = np.arange(per, dtype=np.int64) % n_tags
        ts = T0 + (k * (per // n_tags) + np.arange(per) // n_tags).astype(np.int64) * NS
        batches.append(Points(names, tag, ts, rng.normal(1000, 50, per), np.zeros(per, np.uint8)))
    t = time.perf_counter()
    for b in batches:
        be.write(b)
    be.compact()
    dt = time.perf_counter() - t
    be.close()
    return n_total / dt, n_total


def _row_baseline(tmp: Path, n: int) -> float:
    db = sqlite3.connect(tmp / "rows.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE s(tag INTEGER, ts INTEGER, value REAL, quality INTEGER, PRIMARY KEY(tag, ts)) "
               "WITHOUT ROWID")
    n_tags = 10_000
    rng = np.random.default_rng(0)
    rows = [(i % n_tags, T0 + (i // n_tags) * NS, float(v), 0) for i, v in enumerate(rng.normal(1000, 50, n))]
    t = time.perf_counter()
    db.execute("BEGIN")
    last = time.perf_counter()
    for r in rows:
        db.execute("INSERT INTO s VALUES(?,?,?,?)", r)
        now = time.perf_counter()
        if now - last >= 1.0:
            db.execute("COMMIT")
            db.execute("BEGIN")
            last = now
    db.execute("COMMIT")
    dt = time.perf_counter() - t
    db.close()
    return n / dt


def _trend(tmp: Path, days: int = 7) -> tuple[float, float, float, int, float]:
    n = days * 86400
    be = SqliteBackend(tmp / "trend.sqlite", compact_points=10**9)
    ts = T0 + np.arange(n, dtype=np.int64) * NS
    v = 1000 + 200 * np.sin(np.arange(n) / 3600) + np.random.default_rng(1).normal(0, 5, n)
    for a in range(0, n, 86400):
        b = min(n, a + 86400)
        be.write(Points(["city/trend"], np.zeros(b - a, np.int64), ts[a:b], v[a:b], np.zeros(b - a, np.uint8)))
    be.compact()
    be.close()
    be = SqliteBackend(tmp / "trend.sqlite")
    end = T0 + n * NS
    t = time.perf_counter()
    d = be.decimate("city/trend", T0, end, 2000)
    first = time.perf_counter() - t
    times = []
    for _ in range(15):
        t = time.perf_counter()
        d = be.decimate("city/trend", T0, end, 2000)
        times.append(time.perf_counter() - t)
    be.close()
    # baseline: row table + GROUP BY pixel in SQL
    db = sqlite3.connect(tmp / "trend_rows.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE s(tag INTEGER, ts INTEGER, value REAL, quality INTEGER, PRIMARY KEY(tag, ts)) "
               "WITHOUT ROWID")
    db.execute("BEGIN")
    db.executemany("INSERT INTO s VALUES(1,?,?,0)", zip(ts.tolist(), v.tolist(), strict=True))
    db.execute("COMMIT")
    width = (end - T0) // 2000
    base = []
    for _ in range(3):
        t = time.perf_counter()
        db.execute("SELECT (ts - ?) / ?, min(value), max(value), count(*) FROM s WHERE tag=1 AND ts >= ? AND ts < ? "
                   "GROUP BY 1", (T0, width, T0, end)).fetchall()
        base.append(time.perf_counter() - t)
    db.close()
    return statistics.median(times), first, max(times), len(d), statistics.median(base)


def _signals(kind: str, n_tags: int, n: int, rng: np.random.Generator) -> np.ndarray:
    i = np.arange(n)[None, :]
    if kind == "sine + noise":
        phase = rng.uniform(0, 6.28, (n_tags, 1))
        return 100 * np.sin(i / 300 + phase) + rng.normal(0, 0.5, (n_tags, n))
    if kind == "steps":
        levels = rng.integers(0, 10, (n_tags, n // 200 + 1)).astype(float) * 10
        return np.repeat(levels, 200, axis=1)[:, :n] + 0.0
    return np.cumsum(rng.normal(0, 1, (n_tags, n)), axis=1)


def _compression(n_tags: int, n: int) -> list[tuple[str, float, float, float, float]]:
    rng = np.random.default_rng(2)
    out = []
    for kind in ("sine + noise", "steps", "random walk"):
        sig = _signals(kind, n_tags, n, rng)
        dev = 0.01 * (sig.max(axis=1) - sig.min(axis=1))
        bank = CompressorBank(n_tags)
        bank.configure(np.arange(n_tags), dev=dev, max_interval_ns=3600 * NS, compress=True)
        idx = np.arange(n_tags, dtype=np.int64)
        q = np.zeros(n_tags, np.uint8)
        kept_t: list[np.ndarray] = []
        kept_i: list[np.ndarray] = []
        kept_v: list[np.ndarray] = []
        t = time.perf_counter()
        for k in range(n):
            a = bank.process(idx, np.full(n_tags, T0 + k * NS, np.int64), sig[:, k], q)
            kept_i.append(a.idx)
            kept_t.append(a.ts)
            kept_v.append(a.value)
        a = bank.flush()
        dt = time.perf_counter() - t
        kept_i.append(a.idx)
        kept_t.append(a.ts)
        kept_v.append(a.value)
        ki, kt, kv = np.concatenate(kept_i), np.concatenate(kept_t), np.concatenate(kept_v)
        ts = T0 + np.arange(n, dtype=np.int64) * NS
        worst = 0.0
        for j in range(n_tags):
            m = ki == j
            order = np.argsort(kt[m])
            err = max_reconstruction_error(ts, sig[j], kt[m][order], kv[m][order])
            worst = max(worst, err / dev[j] if dev[j] > 0 else 0.0)
        out.append((kind, n_tags * n / ki.size, worst, float(np.median(dev)), n_tags * n / dt))
    return out


def main(quick: bool = False) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-historian-") as d:
        tmp = Path(d)
        rate, n_ing = _ingest(tmp, 400_000 if quick else 2_000_000)
        base_rate = _row_baseline(tmp, 100_000 if quick else 400_000)
        med, first, worst, npts, base_q = _trend(tmp, 2 if quick else 7)
        comp = _compression(200 if quick else 1000, 500 if quick else 2000)
    days = 2 if quick else 7
    lines = [
        "## Historian",
        "",
        "### Embedded store (SQLite WAL, chunks), one core",
        "",
        "| measure | embedded store | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|",
        f"| durable ingest, {n_ing:,} values (10,000 tags, batches of 20,000, compaction included) | "
        f"{rate:,.0f} values/s | {base_rate:,.0f} values/s (row per point, INSERT each, commit every 1 s) | "
        f"{rate / base_rate:.1f}x | >= 200,000 values/s: {'met' if rate >= 200_000 else 'NOT met'} |",
        f"| trend: 1 tag, {days} days at 1 s ({days * 86400:,} points) → 2,000 px (M4, {npts:,} points out) | "
        f"median {med * 1000:.1f} ms (first {first * 1000:.1f} ms, worst {worst * 1000:.1f} ms) | "
        f"{base_q * 1000:.1f} ms (row table, SQL GROUP BY pixel) | {base_q / med:.1f}x | "
        f"< 100 ms: {'met' if worst < 0.1 else 'NOT met'} |",
        "",
        "### Compression (swinging door, deviation = 1 % of each signal's span, max interval 1 h)",
        "",
        "| signal | compression ratio | max reconstruction error / deviation | median deviation | "
        "vectorised bank throughput |",
        "|---|---|---|---|---|",
    ]
    for kind, ratio, worst_err, dev, thr in comp:
        lines.append(f"| {kind} | {ratio:.1f} : 1 | {worst_err:.3f} (≤ 1 guaranteed) | {dev:.3g} | "
                     f"{thr:,.0f} values/s |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
