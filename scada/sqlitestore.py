"""Opening the core's embedded SQLite stores: one way, so every store enforces the same durability rules.

    connect(path, what)                  read-write: the folder made, WAL mode required (refused loudly if
                                         SQLite cannot switch to it), the given synchronous level
    connect(path, what, readonly=True)   read-only (tools reading a live store): the file must exist

The alarm journal (scada.journal), the work-order store and the citizen-report stores (scada.workorders)
open their files here; what each does next (schema, migrations, cache sizes) stays with the store.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scada.errors import StorageError

SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


def connect(path: Path, what: str, *, readonly: bool = False, synchronous: str = "FULL",
            timeout_s: float = 10.0) -> sqlite3.Connection:
    """An autocommit connection usable from several threads (the store holds its own lock); ``what`` names
    the store in errors ("alarm journal", "work-order store")."""
    if readonly:
        if not path.exists():
            raise StorageError(f"{path}: no {what} here")
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False,
                               timeout=timeout_s)
    if synchronous.upper() not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        db.close()
        raise StorageError(f"{path}: cannot switch the {what} to WAL mode (got {mode})")
    db.execute(f"PRAGMA synchronous={synchronous.upper()}")
    return db
