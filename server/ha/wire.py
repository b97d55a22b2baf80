"""The replication stream's wire (server.ha.replication draws the whole stream): what both sides of the
failover pair agree on before and while the active feeds its standby.

    secrets        read_secret (settings ``ha.secret_file``) · secret_ok: ``Authorization: Pair <secret>`` on
                   the standby's WebSocket to ``PATH``, compared in constant time
    fingerprints   files_fingerprint (the configuration files, by name and content) · layout_fingerprint (the
                   tags' names, types and order, the alarm catalog): a hello with another one is refused
    frames         encode / decode (below) · tags_frame: the city tags whose receive time moved, as one frame
                   (the active, server.ha.feed); the standby takes readings apart with Readings.take ·
                   history_frames: the active's stored points of the period a reconnecting standby was not fed

Frame layout (binary)::

    ┌──────────────┬─────────────────────────────┬───────────────────────────────────────────┐
    │ u32 BE: len  │ JSON header (len bytes)     │ arrays, back to back, as the header lists │
    │              │ {"k": "tags", "arrays":     │ indices i8 · values f8 · qualities u1 ·   │
    │              │  [["<i8", n], ...], ...}    │ source_ns i8 · receive_ns i8              │
    └──────────────┴─────────────────────────────┴───────────────────────────────────────────┘
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from historian.backend import Series
from historian.service import Historian
from scada.tagdb import TagDatabase

PATH = "/api/v1/ha/replication"


def read_secret(path: Any) -> bytes:
    """The pair's shared secret (whitespace around it ignored); ValueError if empty."""
    with open(path, "rb") as f:
        secret = f.read().strip()
    if not secret:
        raise ValueError(f"{path}: the failover pair's secret is empty")
    return secret


def secret_ok(given: str | None, secret: bytes) -> bool:
    """``Authorization: Pair <secret>``, compared in constant time."""
    if not given or not given.startswith("Pair "):
        return False
    return hmac.compare_digest(given[5:].strip().encode(), secret)


def files_fingerprint(paths: Sequence[Path]) -> str:
    """The content of the configuration files a server runs (tags.yaml and what it reads, alarms.yaml,
    commands.yaml), by file name and content (not by path: the two rooms may install them elsewhere). Taken when
    they are loaded (start, an applied reload): a standby that runs other files than the active is refused."""
    h = hashlib.sha256()
    for path in sorted(set(paths), key=lambda p: (p.name, str(p))):
        h.update(path.name.encode() + b"\0")
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            h.update(b"(missing)")
    return h.hexdigest()[:16]


def layout_fingerprint(tagdb: TagDatabase, alarm_catalog: str) -> str:
    """What must be the same on both servers for the stream to mean anything: the tags (names, types, in order:
    the frames carry indices) and the alarm catalog (the journal's definitions)."""
    h = hashlib.sha256()
    for d in tagdb.defs:
        h.update(f"{d.name}\0{d.dtype}\n".encode())
    h.update(alarm_catalog.encode())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------- frames
def encode(header: dict[str, Any], arrays: Sequence[npt.NDArray[Any]] = ()) -> bytes:
    head = dict(header)
    head["arrays"] = [[a.dtype.str, int(a.size)] for a in arrays]
    raw = json.dumps(head, separators=(",", ":")).encode()
    return b"".join([struct.pack(">I", len(raw)), raw, *(np.ascontiguousarray(a).tobytes() for a in arrays)])


def decode(frame: bytes) -> tuple[dict[str, Any], list[npt.NDArray[Any]]]:
    (n,) = struct.unpack_from(">I", frame)
    header: dict[str, Any] = json.loads(frame[4:4 + n])
    arrays: list[npt.NDArray[Any]] = []
    pos = 4 + n
    for dtype, count in header.get("arrays", []):
        dt = np.dtype(dtype)
        arrays.append(np.frombuffer(frame, dtype=dt, count=count, offset=pos))
        pos += dt.itemsize * count
    return header, arrays


def history_frames(historian: Historian, names: Sequence[str], indices: npt.NDArray[np.int64], after_ns: int,
                   before_ns: npt.NDArray[np.int64], max_points: int = 50_000) -> list[tuple[bytes, int]]:
    """The points the active's historian stored for the tags ``indices`` (names ``names[i]``) with a source time
    after ``after_ns`` and before that tag's ``before_ns`` (the sample the stream's first frame carries): the
    standby missed them (no stream), it stores them as they are (Historian.backfill). Frames of at most
    ``max_points``, laid out as a tags frame (receive time = source time)."""
    parts: list[tuple[int, Series]] = []
    out: list[tuple[bytes, int]] = []
    held = 0

    def frame() -> tuple[bytes, int]:
        idx = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in parts])
        texts: dict[str, str] = {}
        pos = 0
        for _, s in parts:
            for k, t in enumerate(s.text or []):
                if t is not None:
                    texts[str(pos + k)] = t
            pos += len(s)
        ts = np.concatenate([s.ts for _, s in parts]).astype(np.int64)
        return encode({"k": "history", "texts": texts},
                      [idx, np.concatenate([s.value for _, s in parts]).astype(np.float64),
                       np.concatenate([s.quality for _, s in parts]).astype(np.uint8), ts, ts]), int(idx.size)

    for i in indices.tolist():
        before = int(before_ns[i])
        if before <= after_ns + 1:
            continue
        series = historian.backend.raw(names[i], after_ns + 1, before - 1)
        series = series.take(np.flatnonzero((series.ts > after_ns) & (series.ts < before)))
        if not len(series):
            continue
        parts.append((i, series))
        held += len(series)
        if held >= max_points:
            out.append(frame())
            parts, held = [], 0
    if parts:
        out.append(frame())
    return out


def tags_frame(db: TagDatabase, last_rcv: npt.NDArray[np.int64]) -> tuple[tuple[bytes, int] | None,
                                                                          npt.NDArray[np.int64]]:
    """The rows of the city's tags (the first ``last_rcv.size``) whose receive time moved since ``last_rcv``:
    every sample the active applied (unchanged values too: the standby's stale checks and its field-safety
    monitor need the receive times), as one frame; and the receive times now."""
    n = last_rcv.size
    rcv = db.receive_ns[:n].copy()  # read first: a row written after this goes in the next frame
    idx = np.flatnonzero(rcv != last_rcv).astype(np.int64)
    if not idx.size:
        return None, rcv
    values = db.values[idx].copy()
    texts: dict[str, str] = {}
    strings = idx[db.is_string[idx]]
    if strings.size:
        values[db.is_string[idx]] = np.nan  # a change counter here: the text goes aside
        for k in np.flatnonzero(db.is_string[idx]).tolist():
            text = db.strings.get(int(idx[k]))
            if text is not None:
                texts[str(k)] = text
    frame = encode({"k": "tags", "texts": texts},
                   [idx, values, db.qualities[idx].copy(), db.source_ns[idx].copy(), rcv[idx]])
    return (frame, int(idx.size)), rcv
