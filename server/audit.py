"""Security audit trail of the server (IEC 62443-3-3 SR 2.8 / 62443-4-2 CR 2.8 audit events).

Each record carries what CR 2.8 asks: timestamp, source, category, type, event id and result::

    audit.sqlite  (append-only: INSERT only, no UPDATE/DELETE path exists in this module)
    ┌────┬─────────┬──────────────────────┬──────────────────┬──────────┬────────────┬─────────┬─────────────┐
    │ id │ ts_ns   │ category             │ type             │ result   │ user       │ source  │ detail JSON │
    └────┴─────────┴──────────────────────┴──────────────────┴──────────┴────────────┴─────────┴─────────────┘

Categories: ``access_control`` (login success/failure, logout, lockout, token expiry), ``request_error``
(refused requests: permission, validation), ``control_system`` (commands, alarm actions, start/stop),
``configuration_change`` (reload applied/refused, users changed), ``backup_restore``, ``audit_log``
(the trail itself opened/closed).

The alarm journal (``scada.journal``) records alarm transitions and operator actions on alarms; the
fail-safe audit log records commands with a hash chain. This trail is the server's own record of
access control and configuration events; the server mirrors each record to the journal when a sink
is attached (``sink``), so maintenance sees logins and reloads next to alarms.

Secrets never reach this trail: ``detail`` is filtered for keys that look like secrets.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CATEGORIES = ("access_control", "request_error", "control_system", "configuration_change", "backup_restore",
              "audit_log")
_SECRET_KEYS = ("password", "token", "secret", "key", "community", "authorization")


def scrub(detail: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``detail`` with any secret-looking value replaced by ``***``."""
    out: dict[str, Any] = {}
    for k, v in detail.items():
        if any(s in k.lower() for s in _SECRET_KEYS):
            out[k] = "***"
        elif isinstance(v, dict):
            out[k] = scrub(v)
        else:
            out[k] = v
    return out


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    ts_ns: int
    category: str
    type: str
    result: str
    user: str
    source: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ts_ns": self.ts_ns, "category": self.category, "type": self.type,
                "result": self.result, "user": self.user, "source": self.source, "detail": self.detail}


Sink = Callable[[AuditRecord], None]


class AuditTrail:
    """Append-only audit records in SQLite (WAL, synchronous=FULL: a record is on disk when ``record`` returns)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, "
            "category TEXT NOT NULL, type TEXT NOT NULL, result TEXT NOT NULL, user TEXT NOT NULL, "
            "source TEXT NOT NULL, detail TEXT NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts_ns)")
        self._lock = threading.Lock()
        self.sinks: list[Sink] = []
        self._closed = False

    def record(self, category: str, type_: str, result: str, user: str = "", source: str = "",
               **detail: Any) -> AuditRecord:
        if category not in CATEGORIES:
            raise ValueError(f"audit category must be one of {', '.join(CATEGORIES)}, got {category!r}")
        clean = scrub(detail)
        ts = time.time_ns()
        with self._lock:
            if self._closed:
                raise RuntimeError("audit trail is closed")
            cur = self._db.execute("INSERT INTO audit (ts_ns, category, type, result, user, source, detail) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (ts, category, type_, result, user, source, json.dumps(clean, default=str)))
            rid = int(cur.lastrowid or 0)
        rec = AuditRecord(rid, ts, category, type_, result, user, source, clean)
        log.info("audit %s/%s %s user=%s source=%s %s", category, type_, result, user or "-", source or "-",
                 json.dumps(clean, default=str))
        for sink in list(self.sinks):
            try:
                sink(rec)
            except Exception:  # the trail is written; a broken mirror must not lose the caller's action
                log.exception("audit sink %r failed", sink)
        return rec

    def query(self, since_ns: int = 0, until_ns: int | None = None, category: str | None = None,
              type_: str | None = None, user: str | None = None, limit: int = 200,
              offset: int = 0) -> list[AuditRecord]:
        sql = "SELECT id, ts_ns, category, type, result, user, source, detail FROM audit WHERE ts_ns >= ?"
        params: list[Any] = [since_ns]
        if until_ns is not None:
            sql += " AND ts_ns < ?"
            params.append(until_ns)
        for col, val in (("category", category), ("type", type_), ("user", user)):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        params += [limit, offset]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [AuditRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
