"""The work-order store: one SQLite file in the data dir (``workorders.sqlite``), WAL, crash-safe.

::

    changes (append-only: UPDATE and DELETE refused by triggers)       the journal: who, when, what
        seq │ order_id │ ts_ms │ user │ action │ data (JSON) │ status (after) │ idem (UNIQUE)
                                       │ fold (scada.workorders.model.apply)
                                       ▼
    orders (the current state, rewritten with each change, in the same transaction)
        id │ equipment │ service │ commune │ status │ crew │ priority │ created_ms │ due_ms │ doc (JSON)

Durability is the alarm journal's (:mod:`scada.journal`): every :meth:`WorkOrderStore.commit` is one
transaction committed with ``synchronous=FULL`` before it returns, so a change whose result was returned
survives kill -9 (and power loss). ``orders`` is only ever what ``replay(changes)`` gives:
:meth:`WorkOrderStore.verify` checks it.

Listeners: after each commit, every function in :attr:`WorkOrderStore.listeners` gets the orders the commit
changed, each with ``True`` when the commit created it (a retried change changes nothing: not told). They run
in the committing thread, after the transaction, outside the store's lock; what one raises is logged and does not
undo the commit (the server's WebSocket hub is one: server.components.workorders).

Idempotency: a change carrying a key (``idem``) that the journal already holds is not applied again; the
call returns the order as it is, so a crew tablet's retried "done" is recorded once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scada import sqlitestore
from scada.errors import Refused, StorageError
from scada.workorders.model import Action, Change, Status, WorkOrder, apply, replay

log = logging.getLogger(__name__)

FILE_NAME = "workorders.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    idem TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS changes_order ON changes(order_id, seq);
CREATE INDEX IF NOT EXISTS changes_ts ON changes(ts_ms);
CREATE TRIGGER IF NOT EXISTS changes_no_update BEFORE UPDATE ON changes
    BEGIN SELECT RAISE(ABORT, 'the work-order journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS changes_no_delete BEFORE DELETE ON changes
    BEGIN SELECT RAISE(ABORT, 'the work-order journal is append-only'); END;
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    equipment TEXT NOT NULL,
    service TEXT NOT NULL,
    commune TEXT NOT NULL,
    status TEXT NOT NULL,
    crew TEXT,
    priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_equipment ON orders(equipment, status);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status, due_ms);
CREATE INDEX IF NOT EXISTS orders_crew ON orders(crew, status);
CREATE INDEX IF NOT EXISTS orders_created ON orders(created_ms);
"""
OPEN_STATUSES = tuple(str(s) for s in Status if s.open)


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """Filters for :meth:`WorkOrderStore.query` (all optional, combined with AND)."""

    status: Sequence[str] = ()
    open: bool | None = None
    equipment: Sequence[str] = ()
    service: Sequence[str] = ()
    commune: Sequence[str] = ()
    crew: str | None = None
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    limit: int = 1000
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ChangeRow:
    seq: int
    change: Change
    status: Status

    def as_dict(self) -> dict[str, Any]:
        c = self.change
        return {"seq": self.seq, "order_id": c.order_id, "ts_ms": c.ts_ms, "user": c.user, "action": str(c.action),
                "data": dict(c.data), "status": str(self.status)}


#: told after each commit: (order after the commit, created by it), one per order the commit changed
Listener = Callable[[Sequence[tuple[WorkOrder, bool]]], None]


class WorkOrderStore:
    """Work orders and their append-only change journal in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self.listeners: list[Listener] = []
        #: the failover pair's standby: its orders are the active's copy (:meth:`commit_copied` only)
        self.copy_only = False
        self._copying = threading.local()
        try:
            # synchronous FULL: a returned change survives kill -9 and power loss
            self._db = sqlitestore.connect(self.path, "work-order store", readonly=readonly)
            if not readonly:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise StorageError(f"{self.path}: work-order schema version {version}, this build reads "
                                       f"{SCHEMA_VERSION}")
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "changes" not in tables or "orders" not in tables:
                raise StorageError(f"{self.path}: not a work-order store (no changes/orders tables)")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the work-order store: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> WorkOrderStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ write
    def next_number(self) -> int:
        """The number of the next created order (``WO-000042`` is 42): ids are dense, never reused (orders
        are never deleted). Read it inside :meth:`commit`'s function so that no other writer takes it."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM orders").fetchone()[0]) + 1

    def commit(self, changes: Sequence[Change] | Callable[[WorkOrderStore], Sequence[Change]]) -> list[WorkOrder]:
        """Apply ``changes`` in one transaction (all or none) and return each one's order after it.

        ``changes`` may be a function of the store, called inside the transaction (under the store's lock):
        what it reads (the next id, an equipment's open order) cannot be changed by another writer before
        the commit. A change whose ``idem`` key the journal already holds is skipped (its order returned as it
        is). :class:`Refused` from the state machine aborts the whole transaction: nothing changes.
        """
        if self.readonly:
            raise StorageError(f"{self.path}: the work-order store is open read-only")
        if self.copy_only and not getattr(self._copying, "on", False):
            raise StorageError(f"{self.path}: this server is the failover pair's standby: its work orders are the "
                               "active server's copy")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    batch = changes(self) if callable(changes) else changes
                    out: list[WorkOrder] = []
                    cache: dict[str, WorkOrder | None] = {}
                    changed: dict[str, tuple[WorkOrder, bool]] = {}  # the last state of each, and whether new
                    for c in batch:
                        seen = None if c.idem is None else \
                            self._db.execute("SELECT order_id FROM changes WHERE idem = ?", (c.idem,)).fetchone()
                        if seen is not None:  # a retry: the order the first request changed (or created), as it is
                            done = cache.get(seen[0]) or self._get(seen[0])
                            if done is None:
                                raise StorageError(f"{self.path}: change {c.idem!r} recorded without its order")
                            out.append(done)
                            continue
                        order = cache[c.order_id] if c.order_id in cache else self._get(c.order_id)
                        new = apply(order, c)
                        created = order is None or changed.get(c.order_id, (new, False))[1]
                        self._db.execute(
                            "INSERT INTO changes(order_id, ts_ms, user, action, data, status, idem) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (c.order_id, c.ts_ms, c.user, str(c.action), json.dumps(dict(c.data), sort_keys=True),
                             str(new.status), c.idem))
                        self._db.execute(
                            "INSERT OR REPLACE INTO orders(id, equipment, service, commune, status, crew, priority, "
                            "created_ms, due_ms, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (new.id, new.equipment, new.service, new.commune, str(new.status), new.crew, new.priority,
                             new.created_ms, new.due_ms, json.dumps(new.as_dict(), sort_keys=True)))
                        cache[c.order_id] = new
                        changed[c.order_id] = (new, created)
                        out.append(new)
                    self._db.execute("COMMIT")
                except BaseException:  # a refusal or a cancellation must not leave the transaction open
                    self._db.execute("ROLLBACK")
                    raise
            except Refused:
                raise
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot write to the work-order store: {exc}") from exc
        if changed:
            told = list(changed.values())
            for listener in list(self.listeners):
                try:
                    listener(told)
                except Exception:  # a listener's failure must not turn a committed change into an error (logged)
                    log.exception("%s: a work-order listener failed", self.path.name)
        return out

    def commit_copied(self, changes: Sequence[Change]) -> list[WorkOrder]:
        """:meth:`commit` of the active server's changes on the failover pair's standby (server.ha.replication),
        the one writer while :attr:`copy_only`: the same changes in the same order, so the same seqs."""
        self._copying.on = True
        try:
            return self.commit(changes)
        finally:
            self._copying.on = False

    # ------------------------------------------------------------------ read
    def _get(self, order_id: str) -> WorkOrder | None:
        row = self._db.execute("SELECT doc FROM orders WHERE id = ?", (order_id,)).fetchone()
        return WorkOrder.from_dict(json.loads(row[0])) if row else None

    def get(self, order_id: str) -> WorkOrder | None:
        with self._lock:
            return self._get(order_id)

    def open_for(self, equipment: str) -> WorkOrder | None:
        """The equipment's open order (the oldest, should there be several), or None."""
        marks = ", ".join("?" * len(OPEN_STATUSES))
        with self._lock:
            row = self._db.execute(f"SELECT doc FROM orders WHERE equipment = ? AND status IN ({marks}) "  # noqa: S608 - placeholders only
                                   "ORDER BY created_ms, id LIMIT 1", (equipment, *OPEN_STATUSES)).fetchone()
        return WorkOrder.from_dict(json.loads(row[0])) if row else None

    def query(self, q: OrderQuery) -> tuple[int, list[WorkOrder]]:
        """(total matching, one page of orders): overdue-first ordering is the caller's; here by due time."""
        where: list[str] = []
        params: list[Any] = []
        statuses = list(q.status)
        if q.open is not None:
            statuses = [s for s in (statuses or [str(s) for s in Status]) if (s in OPEN_STATUSES) == q.open]
            if not statuses:
                return 0, []
        for col, values in (("status", statuses), ("equipment", q.equipment), ("service", q.service),
                            ("commune", q.commune)):
            if values:
                where.append(f"{col} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if q.crew is not None:
            where.append("crew = ?")
            params.append(q.crew)
        if q.created_from_ms is not None:
            where.append("created_ms >= ?")
            params.append(q.created_from_ms)
        if q.created_to_ms is not None:
            where.append("created_ms < ?")
            params.append(q.created_to_ms)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            total = int(self._db.execute("SELECT count(*) FROM orders" + cond, params).fetchone()[0])  # noqa: S608 - fixed columns, values bound
            rows = self._db.execute("SELECT doc FROM orders" + cond + " ORDER BY due_ms, id LIMIT ? OFFSET ?",  # noqa: S608 - fixed columns, values bound
                                    [*params, q.limit, q.offset]).fetchall()
        return total, [WorkOrder.from_dict(json.loads(r[0])) for r in rows]

    def iter_orders(self, q: OrderQuery = OrderQuery(), page: int = 5000) -> Iterator[WorkOrder]:
        offset = 0
        while True:
            _, rows = self.query(OrderQuery(**{**_fields(q), "limit": page, "offset": offset}))
            yield from rows
            if len(rows) < page:
                return
            offset += page

    def history(self, order_id: str | None = None, after_seq: int = 0, limit: int = 10_000) -> list[ChangeRow]:
        """Journal rows (of one order, or all), in order."""
        sql = "SELECT seq, order_id, ts_ms, user, action, data, status, idem FROM changes WHERE seq > ?"
        params: list[Any] = [after_seq]
        if order_id is not None:
            sql += " AND order_id = ?"
            params.append(order_id)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [ChangeRow(r[0], Change(r[1], r[2], r[3], Action(r[4]), json.loads(r[5]), r[7]), Status(r[6]))
                for r in rows]

    def count(self) -> tuple[int, int]:
        """(orders, journal rows)."""
        with self._lock:
            n = int(self._db.execute("SELECT count(*) FROM orders").fetchone()[0])
            c = int(self._db.execute("SELECT count(*) FROM changes").fetchone()[0])
        return n, c

    def verify(self) -> list[str]:
        """Orders whose stored state differs from the replay of the journal (empty: consistent)."""
        changes: list[Change] = []
        seq = 0
        while True:
            rows = self.history(after_seq=seq)
            if not rows:
                break
            changes.extend(r.change for r in rows)
            seq = rows[-1].seq
        replayed = replay(changes)
        stored = {o.id: o for o in self.iter_orders()}
        return sorted(k for k in set(replayed) | set(stored) if replayed.get(k) != stored.get(k))


def _fields(q: OrderQuery) -> dict[str, Any]:
    return {f: getattr(q, f) for f in OrderQuery.__dataclass_fields__}
