"""The alarm journal: what maintenance works from. SQLite in WAL mode, append-only, crash-safe.

Every alarm transition and every operator action on alarms (refused requests included) is one row,
with its UTC timestamp in milliseconds. The static description of an alarm (rule, equipment, commune,
area, service, tag, priority, message template) is stored once per alarm *definition* and referenced
by the rows, so a storm of 10^5 transitions writes small rows and never formats a message::

    message_text (append-only): the templates of each message key, one row per language
        key ("<rule>#<digest>") │ lang │ template          a reworded rule is a new key: history keeps its words
                  ▲
    alarm_def (append-only): one row per alarm definition version
        ref │ alarm (rule:tag) │ rule │ kind │ equipment │ commune │ area │ service │ tag │ priority │ message │
        … │ message_key │ params (JSON: the static fields of the message, scada.alarms.messages)
         ▲  a changed rule or inventory adds a new version; older rows keep pointing at the old one
         │
    journal (append-only): one row per transition or operator action
        id │ ts_ms │ ref │ event │ outcome │ state │ prev_state │ flags │ value │ quality │ user │ comment │
        detail │ until_ms │ since_ms

      event: scada.alarms.states.Event code; outcome 0 done, 1 refused (detail = the reason);
      state/prev_state: ISA-18.2 state code; flags: shelved/suppressed/out-of-service/latched bits;
      detail: work-order reference, shelving reason, refusal reason, flood area; until_ms: end of the timed
      shelving in force after the row; since_ms: when the alarm became active (while active). A row thus
      carries the alarm's whole state: its last row is what a restart needs.

Messages in either language: ``message`` is the static text in the site's language when the definition
was registered (what the text search reads); a reader asking another language (:meth:`Journal.query`
``lang=``) gets pass 1 of :mod:`scada.alarms.messages` redone with that language's template of the
definition's key and its params (once per definition and language, cached), then the live value as
always. Definitions written before schema version 2 have no key and read as they were written.

Schema versions (``PRAGMA user_version``): 1 → 2 adds ``alarm_def.message_key``, ``alarm_def.params``
and ``message_text`` in place (ALTER TABLE ADD COLUMN, no row rewritten or lost) when a writer opens
the file; a reader of an older file sees its rows with the columns it lacks as NULL.

Durability: each append is one transaction, committed with ``synchronous=FULL`` before the call
returns; a row whose id was returned survives kill -9 (and power loss, FULL). UPDATE and DELETE are
refused by triggers and the API has no verb for them.

Reading: :meth:`Journal.query` filters by time range, equipment, commune, area, service, priority,
state, event, user and text, newest first, with keyset paging (``JournalPage.next_cursor``);
:meth:`Journal.export_csv` streams a query; :meth:`Journal.follow` returns rows after an id (``tail -f``);
:meth:`Journal.current_states` gives the last known state of every alarm, for the engine's restart.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import numpy.typing as npt

from scada import csvsafe, sqlitestore
from scada.alarms.messages import StaticTemplate, format_value, render_live
from scada.alarms.rules import AlarmInfo, priority_label
from scada.alarms.states import AlarmState, Event, Flag
from scada.errors import StorageError
from scada.format import utc_iso
from scada.format import value as value_for_people
from scada.quality import Quality

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
SCHEMA_VERSION = 2
DONE, REFUSED = 0, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_def (
    ref INTEGER PRIMARY KEY,
    alarm TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    equipment TEXT NOT NULL,
    commune TEXT NOT NULL,
    area TEXT NOT NULL,
    service TEXT NOT NULL,
    tag TEXT NOT NULL,
    priority INTEGER NOT NULL,
    latched INTEGER NOT NULL,
    message TEXT NOT NULL,
    dtype TEXT NOT NULL,
    units TEXT NOT NULL,
    enum TEXT,
    limit_value REAL,
    created_ms INTEGER NOT NULL,
    message_key TEXT,
    params TEXT
);
CREATE INDEX IF NOT EXISTS alarm_def_alarm ON alarm_def(alarm);
CREATE INDEX IF NOT EXISTS alarm_def_equipment ON alarm_def(equipment);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    ref INTEGER REFERENCES alarm_def(ref),
    event INTEGER NOT NULL,
    outcome INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL,
    prev_state INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    value,
    quality INTEGER,
    user TEXT,
    comment TEXT,
    detail TEXT,
    until_ms INTEGER,
    since_ms INTEGER
);
CREATE INDEX IF NOT EXISTS journal_ref_ts ON journal(ref, ts_ms);
CREATE INDEX IF NOT EXISTS journal_ts ON journal(ts_ms);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS alarm_def_no_update BEFORE UPDATE ON alarm_def
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS alarm_def_no_delete BEFORE DELETE ON alarm_def
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TABLE IF NOT EXISTS catalog (
    fingerprint TEXT PRIMARY KEY,
    alarms INTEGER NOT NULL,
    refs BLOB NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS catalog_no_update BEFORE UPDATE ON catalog
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
"""
_MESSAGE_TEXT = """
CREATE TABLE IF NOT EXISTS message_text (
    key TEXT NOT NULL,
    lang TEXT NOT NULL,
    template TEXT NOT NULL,
    PRIMARY KEY (key, lang)
);
CREATE TRIGGER IF NOT EXISTS message_text_no_update BEFORE UPDATE ON message_text
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS message_text_no_delete BEFORE DELETE ON message_text
    BEGIN SELECT RAISE(ABORT, 'the alarm journal is append-only'); END;
"""

_DEF_COLS = ("alarm", "rule", "kind", "equipment", "commune", "area", "service", "tag", "priority", "latched",
             "message", "dtype", "units", "enum", "limit_value", "message_key", "params")
_ROW_COLS = ("ts_ms", "ref", "event", "outcome", "state", "prev_state", "flags", "value", "quality", "user",
             "comment", "detail", "until_ms", "since_ms")
_SELECT = ("SELECT j.id, j.ts_ms, j.event, j.outcome, j.state, j.prev_state, j.flags, j.value, j.quality, j.user, "
           "j.comment, j.detail, j.until_ms, j.since_ms, j.ref FROM journal j")
_JOIN = " LEFT JOIN alarm_def d ON d.ref = j.ref"  # only when a condition reads the definition (text search)
_DEF_READ = ("alarm, rule, kind, equipment, commune, area, service, tag, priority, message, dtype, units, enum, "
             "message_key, params")
BROAD_FILTER = 2000  # more matching definitions than this: walk the time index instead of the per-alarm one

CSV_COLUMNS = ("id", "time_utc", "event", "outcome", "alarm", "rule", "equipment", "commune", "area", "service",
               "tag", "value", "quality", "priority", "state", "prev_state", "flags", "user", "comment", "detail",
               "message")


ms_to_iso = utc_iso  # UTC ISO 8601 with milliseconds (exports): ``2026-11-22T21:56:11.123Z``


_ENUM_JSON: dict[int, tuple[dict[int, str], str]] = {}  # id(enum map) → (map, JSON): tags of a template share one


def _enum_json(enum: dict[int, str] | None) -> str | None:
    if not enum:
        return None
    hit = _ENUM_JSON.get(id(enum))
    if hit is not None and hit[0] is enum:
        return hit[1]
    text = json.dumps({str(k): v for k, v in sorted(enum.items())})
    if len(_ENUM_JSON) > 10_000:
        _ENUM_JSON.clear()
    _ENUM_JSON[id(enum)] = (enum, text)
    return text


def _info_row(info: AlarmInfo) -> tuple[Any, ...]:
    enum = _enum_json(info.enum)
    return (info.alarm, info.rule, info.kind, info.equipment, info.commune, info.area, info.service, info.tag,
            info.priority, int(info.latched), info.message, info.dtype, info.units, enum, info.limit,
            info.message_key or None, info.params or None)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One row to append through the generic path (operator tools, imports, tests)."""

    ts_ns: int
    event: Event
    info: AlarmInfo | None = None
    state: AlarmState = AlarmState.NORMAL
    prev_state: AlarmState = AlarmState.NORMAL
    flags: int = 0
    value: float | str | None = None
    quality: Quality | None = None
    outcome: int = DONE
    user: str | None = None
    comment: str | None = None
    detail: str | None = None
    until_ns: int | None = None
    since_ns: int | None = None  # default: the row's time when it activates the alarm


@dataclass(frozen=True, slots=True)
class JournalBatch:
    """Columnar rows for the engine's fast path (refs from :meth:`Journal.register`)."""

    ref: I64
    ts_ns: I64
    event: npt.NDArray[np.integer[Any]]
    state: npt.NDArray[np.integer[Any]]
    prev_state: npt.NDArray[np.integer[Any]]
    flags: npt.NDArray[np.integer[Any]]
    value: Sequence[float | str | None] | npt.NDArray[np.float64]
    quality: npt.NDArray[np.integer[Any]]
    outcome: npt.NDArray[np.integer[Any]] | None = None
    user: str | None = None
    comment: str | None = None
    detail: Sequence[str | None] | None = None
    until_ns: I64 | None = None  # per row: end of the timed shelving in force (0: none)
    since_ns: I64 | None = None  # per row: when the alarm became active (0: inactive)

    def __len__(self) -> int:
        return int(self.ref.size)


@dataclass(slots=True)
class JournalRow:
    """One journal row as read back, with its alarm definition joined."""

    id: int
    ts_ms: int
    event: Event
    outcome: int
    state: AlarmState
    prev_state: AlarmState
    flags: int
    value: float | str | None
    quality: Quality | None
    user: str | None
    comment: str | None
    detail: str | None
    until_ms: int | None
    alarm: str | None
    rule: str | None
    kind: str | None
    equipment: str | None
    commune: str | None
    area: str | None
    service: str | None
    tag: str | None
    priority: int | None
    message_template: str | None
    dtype: str | None
    units: str | None
    enum: dict[int, str] | None
    since_ms: int | None = None
    lang: str | None = None  # read in this language: its message, with {value} for people (scada.format)

    @property
    def time_utc(self) -> str:
        return ms_to_iso(self.ts_ms)

    @property
    def refused(self) -> bool:
        return self.outcome == REFUSED

    @property
    def value_text(self) -> str:
        if self.value is None and self.alarm is None:
            return ""
        return format_value(self.value if not isinstance(self.value, int) else float(self.value), self.dtype or "float",
                            self.enum)

    @property
    def message(self) -> str:
        if self.message_template is None:
            return self.detail or ""
        q = self.quality.label if self.quality is not None else ""
        if self.lang is not None and self.alarm is not None:
            shown = value_for_people(self.value, self.dtype or "float", "", self.enum, self.lang)
            return render_live(self.message_template, self.value, shown, q)
        return render_live(self.message_template, self.value, self.value_text, q)

    @property
    def flag_labels(self) -> list[str]:
        return Flag.labels(self.flags)

    def csv_row(self) -> list[str]:
        return [str(self.id), self.time_utc, self.event.label, "refused" if self.refused else "done", self.alarm or "",
                self.rule or "", self.equipment or "", self.commune or "", self.area or "", self.service or "",
                self.tag or "", self.value_text, self.quality.label if self.quality is not None else "",
                "" if self.priority is None else priority_label(self.priority), self.state.label,
                self.prev_state.label, "|".join(self.flag_labels), self.user or "", self.comment or "",
                self.detail or "", self.message]


@dataclass(frozen=True, slots=True)
class JournalQuery:
    """Filters (all optional, combined with AND); times are UTC epoch milliseconds, ``end_ms`` excluded."""

    start_ms: int | None = None
    end_ms: int | None = None
    equipment: Sequence[str] = ()
    commune: Sequence[str] = ()
    area: Sequence[str] = ()
    service: Sequence[str] = ()
    priority: Sequence[int] = ()  # 1..4, 5 = diagnostic
    state: Sequence[AlarmState] = ()
    event: Sequence[Event] = ()
    alarm: Sequence[str] = ()
    user: str | None = None
    text: str | None = None  # case-insensitive substring of message, alarm id, comment, detail or user
    refused: bool | None = None
    limit: int = 100
    cursor: tuple[int, int] | None = None  # (ts_ms, id) of the last row of the previous page
    offset: int = 0
    ascending: bool = False


@dataclass(frozen=True, slots=True)
class JournalPage:
    rows: list[JournalRow]
    next_cursor: tuple[int, int] | None  # pass as JournalQuery.cursor for the next page; None at the end
    total: int | None = None


@dataclass(frozen=True, slots=True)
class RestoredState:
    """The last journalled state of one alarm (for the engine's restart)."""

    alarm: str
    state: AlarmState
    flags: int
    ts_ms: int
    active_since_ms: int | None = None
    shelved_until_ms: int | None = None
    work_order: str | None = None


@dataclass(slots=True)
class _DefCache:
    by_row: dict[tuple[Any, ...], int] = field(default_factory=dict)  # definition → ref (any version)
    loaded: bool = False


class Journal:
    """The append-only alarm journal in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, *, readonly: bool = False, synchronous: str = "FULL",
                 mmap_bytes: int = 1 << 30) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._open_args = (synchronous, int(mmap_bytes))  # a failover standby's set-aside reopens the file
        #: a failover standby's copy of the active's journal (server.ha.replication): only the copied rows are
        #: written (insert_copied); a row of its own would take an id of the active's sequence
        self.copy_only = False
        self._lock = threading.RLock()
        self._defs = _DefCache()
        self._def_rows: dict[int, tuple[Any, ...]] = {}  # ref → definition columns, for reading rows
        self._texts: dict[tuple[str, str], StaticTemplate | None] = {}  # (message key, lang) → template
        self._localised: dict[tuple[int, str], str | None] = {}  # (ref, lang) → static message (pass 1)
        self._keys_written: set[str] = set()  # message keys whose templates this process has stored
        self._select = _SELECT
        self._def_read = _DEF_READ
        try:
            self._db = sqlitestore.connect(self.path, "alarm journal", readonly=readonly, synchronous=synchronous)
            if not readonly:
                self._db.execute("PRAGMA cache_size=-131072")
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version not in range(SCHEMA_VERSION + 1):
                    raise StorageError(f"{self.path}: journal schema version {version}, this build reads "
                                       f"{SCHEMA_VERSION} and older")
                self._migrate()
            # reads through a memory map: one equipment's year is ~10,000 rows scattered over the file
            self._db.execute(f"PRAGMA mmap_size={int(mmap_bytes)}")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(journal)")}
            if not columns:
                raise StorageError(f"{self.path}: not an alarm journal (no journal table)")
            if "since_ms" not in columns:  # an older journal opened read-only
                self._select = _SELECT.replace("j.since_ms", "NULL")
            def_columns = {row[1] for row in self._db.execute("PRAGMA table_info(alarm_def)")}
            if "message_key" not in def_columns:  # written before schema version 2, opened read-only
                self._def_read = _DEF_READ.replace("message_key, params", "NULL, NULL")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the alarm journal: {exc}") from exc

    def _migrate(self) -> None:
        """Bring an older file to :data:`SCHEMA_VERSION` in place: columns added, no row rewritten or lost.

        One transaction: a crash half-way leaves the file as it was (SQLite DDL is transactional).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(_SCHEMA + _MESSAGE_TEXT):
                self._db.execute(stmt)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(journal)")}
            if "since_ms" not in columns:  # a journal written before since_ms existed
                self._db.execute("ALTER TABLE journal ADD COLUMN since_ms INTEGER")
            def_columns = {row[1] for row in self._db.execute("PRAGMA table_info(alarm_def)")}
            for col in ("message_key", "params"):  # version 1 → 2: messages readable in either language
                if col not in def_columns:
                    self._db.execute(f"ALTER TABLE alarm_def ADD COLUMN {col} TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:  # even a cancellation must not leave the transaction open: re-raised
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ definitions
    def _load_defs(self) -> None:
        if self._defs.loaded:
            return
        cur = self._db.execute(f"SELECT ref, {', '.join(_DEF_COLS)} FROM alarm_def ORDER BY ref")  # noqa: S608 - column names from _DEF_COLS
        for row in cur:
            self._defs.by_row[tuple(row[1:])] = row[0]
        self._defs.loaded = True

    def register(self, infos: Sequence[AlarmInfo], now_ns: int = 0) -> I64:
        """The definition ref of each alarm; adds a new definition version where anything changed."""
        if self.readonly:
            raise StorageError(f"{self.path}: the journal is open read-only")
        with self._lock:
            try:
                self._load_defs()
                refs = np.zeros(len(infos), dtype=np.int64)
                new: list[tuple[int, tuple[Any, ...]]] = []
                for k, info in enumerate(infos):
                    row = _info_row(info)
                    have = self._defs.by_row.get(row)
                    if have is not None:
                        refs[k] = have
                    else:
                        new.append((k, row))
                if new:
                    # a failover standby's copy holds the active's definitions (copied): it looks them up, a new
                    # one would take a ref of the active's sequence
                    self._not_a_copy()
                    unique = list(dict.fromkeys(row for _, row in new))  # the same definition twice: one ref
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        first = int(self._db.execute("SELECT coalesce(max(ref), 0) + 1 FROM alarm_def").fetchone()[0])
                        created = now_ns // 1_000_000
                        head = f"INSERT INTO alarm_def(ref, {', '.join(_DEF_COLS)}, created_ms) VALUES "  # noqa: S608 - column names from a fixed tuple, values bound
                        one = f"({', '.join('?' * (len(_DEF_COLS) + 2))})"
                        rows = [(first + j, *row, created) for j, row in enumerate(unique)]
                        k = 500
                        full = len(rows) - len(rows) % k
                        for lo in range(0, full, k):
                            self._db.execute(head + ",".join([one] * k), [x for r in rows[lo:lo + k] for x in r])
                        if full < len(rows):
                            self._db.executemany(head + one, rows[full:])
                        # the templates of the message keys met for the first time (a few per rule)
                        keyed: dict[str, dict[str, str]] = {}
                        for k, _ in new:
                            info = infos[k]
                            if info.message_key and info.templates and info.message_key not in self._keys_written:
                                keyed.setdefault(info.message_key, info.templates)
                        self._db.executemany("INSERT OR IGNORE INTO message_text(key, lang, template) VALUES (?, ?, ?)",
                                             [(key, lang, t) for key, tm in keyed.items() for lang, t in tm.items()])
                        self._db.execute("COMMIT")
                        self._keys_written.update(keyed)
                    except BaseException:  # even a cancellation must not leave the transaction open: re-raised
                        self._db.execute("ROLLBACK")
                        raise
                    for j, row in enumerate(unique):
                        self._defs.by_row[row] = first + j
                    for k, row in new:
                        refs[k] = self._defs.by_row[row]
                return refs
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot register alarm definitions: {exc}") from exc

    def register_catalog(self, fingerprint: str, infos: Callable[[], Sequence[AlarmInfo]], now_ns: int = 0) -> I64:
        """Definition refs of a whole alarm catalog; an unchanged catalog (same fingerprint) is looked up
        in one read instead of being described and compared alarm by alarm."""
        if self.readonly:
            raise StorageError(f"{self.path}: the journal is open read-only")
        with self._lock:
            try:
                hit = self._db.execute("SELECT refs FROM catalog WHERE fingerprint = ?", (fingerprint,)).fetchone()
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot read the alarm catalog: {exc}") from exc
            if hit is not None:
                return np.frombuffer(hit[0], dtype=np.int64).copy()
            refs = self.register(infos(), now_ns)
            if self.copy_only:  # the catalog table is the active's lookup cache: not copied, not written here
                return refs
            try:
                self._db.execute("INSERT OR IGNORE INTO catalog(fingerprint, alarms, refs, created_ms) "
                                 "VALUES (?, ?, ?, ?)", (fingerprint, int(refs.size),
                                                         np.ascontiguousarray(refs, dtype=np.int64).tobytes(),
                                                         now_ns // 1_000_000))
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot record the alarm catalog: {exc}") from exc
            return refs

    # ------------------------------------------------------------------ append
    def append(self, entries: Sequence[JournalEntry]) -> list[int]:
        """Append rows (one transaction, durable on return); returns their ids."""
        if not entries:
            return []
        infos = [e.info for e in entries if e.info is not None]
        refs_iter = iter(self.register(infos).tolist() if infos else [])
        rows = []
        for e in entries:
            ref = next(refs_iter) if e.info is not None else None
            since = e.since_ns
            if since is None and e.state.active and not e.prev_state.active:
                since = e.ts_ns
            rows.append((e.ts_ns // 1_000_000, ref, int(e.event), e.outcome, int(e.state), int(e.prev_state),
                         int(e.flags), e.value, None if e.quality is None else int(e.quality), e.user, e.comment,
                         e.detail, None if e.until_ns is None else e.until_ns // 1_000_000,
                         None if not since else since // 1_000_000))
        first, last = self._insert([("rows", None, rows)])
        return list(range(first, last + 1))

    def append_batch(self, batch: JournalBatch) -> tuple[int, int]:
        """Append a columnar batch (one transaction, durable on return); returns (first id, last id).

        The engine's storms go through here: consecutive rows sharing time, event, outcome, states, flags
        and quality (a storm is a few such runs) are written with multi-row INSERTs binding only the
        alarm ref, the value and whichever of since/until varies (sorted by ref inside the run, for the
        index); anything else row by row.
        """
        n = len(batch)
        if n == 0:
            return (0, -1)
        ts = np.asarray(batch.ts_ns, dtype=np.int64) // 1_000_000
        ref = np.asarray(batch.ref, dtype=np.int64)
        outcome = np.zeros(n, dtype=np.int64) if batch.outcome is None else np.asarray(batch.outcome, np.int64)
        key = np.stack([ts, np.asarray(batch.event, np.int64), outcome, np.asarray(batch.state, np.int64),
                        np.asarray(batch.prev_state, np.int64), np.asarray(batch.flags, np.int64),
                        np.asarray(batch.quality, np.int64)])
        zeros = np.zeros(n, dtype=np.int64)
        until = zeros if batch.until_ns is None else np.asarray(batch.until_ns, dtype=np.int64) // 1_000_000
        since = zeros if batch.since_ns is None else np.asarray(batch.since_ns, dtype=np.int64) // 1_000_000
        plain = batch.user is None and batch.comment is None and batch.detail is None and \
            isinstance(batch.value, np.ndarray) and bool((ref > 0).all())
        if isinstance(batch.value, np.ndarray):
            vals = batch.value.astype(object)
            vals[np.isnan(batch.value)] = None
            value: list[Any] = vals.tolist()
        else:
            value = [None if isinstance(v, float) and math.isnan(v) else v for v in batch.value]
        extra = (until, since)
        runs: list[tuple[str, Any, Any]] = []
        if plain:
            cuts = np.flatnonzero((key[:, 1:] != key[:, :-1]).any(axis=0)) + 1
            bounds = [0, *cuts.tolist(), n]
            for lo, hi in itertools.pairwise(bounds):
                if hi - lo < self._FAST_MIN:
                    runs.append(("rows", None, self._rows(batch, key, value, extra, lo, hi)))
                    continue
                order = np.argsort(ref[lo:hi], kind="stable") + lo
                consts: list[Any] = key[:, lo].tolist()
                cols: list[list[Any]] = [ref[order].tolist(), [value[i] for i in order.tolist()]]
                names = ["ref", "value"]
                for name, col in zip(("until_ms", "since_ms"), extra, strict=True):
                    part = col[order]
                    if bool((part == part[0]).all()):
                        consts.append(None if part[0] <= 0 else int(part[0]))
                    else:
                        names.append(name)
                        cols.append([None if x <= 0 else x for x in part.tolist()])
                flat = np.empty(len(cols) * (hi - lo), dtype=object)
                for c, column in enumerate(cols):
                    flat[c::len(cols)] = column
                runs.append(("fast", (tuple(names), consts), flat.tolist()))
        else:
            runs.append(("rows", None, self._rows(batch, key, value, extra, 0, n)))
        return self._insert(runs)

    def _rows(self, batch: JournalBatch, key: npt.NDArray[np.int64], value: list[Any],
              extra: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]], lo: int, hi: int) -> list[tuple[Any, ...]]:
        k = key[:, lo:hi].tolist()
        ref = [None if r <= 0 else r for r in batch.ref[lo:hi].tolist()]
        detail = [None] * (hi - lo) if batch.detail is None else list(batch.detail[lo:hi])
        until = [None if u <= 0 else u for u in extra[0][lo:hi].tolist()]
        since = [None if u <= 0 else u for u in extra[1][lo:hi].tolist()]
        user, comment = batch.user, batch.comment
        return [(k[0][i], ref[i], k[1][i], k[2][i], k[3][i], k[4][i], k[5][i], value[lo + i], k[6][i], user,
                 comment, detail[i], until[i], since[i]) for i in range(hi - lo)]

    _CHUNK = 500  # rows per multi-row INSERT statement (14 parameters each, under SQLite's 32766 limit)
    _FAST_CHUNK = 1000  # rows per multi-row INSERT of a run (2 to 4 parameters each + the shared ones)
    _FAST_MIN = 64  # a run shorter than this goes row by row
    _FAST_CONSTS = ("ts_ms", "event", "outcome", "state", "prev_state", "flags", "quality", "until_ms", "since_ms")
    _fast_cache: ClassVar[dict[tuple[tuple[str, ...], int], str]] = {}

    @classmethod
    def _fast_stmt(cls, names: tuple[str, ...], size: int) -> str:
        """INSERT of ``size`` rows: the run's constants as ?1..?k, the per-row columns after them."""
        stmt = cls._fast_cache.get((names, size))
        if stmt is None:
            consts = [c for c in cls._FAST_CONSTS if c not in names]
            head = f"INSERT INTO journal({', '.join([*consts, *names])}) VALUES "  # noqa: S608 - column names from a fixed tuple, values bound
            first = ",".join(f"?{i + 1}" for i in range(len(consts)))
            base = len(consts) + 1
            w = len(names)
            rows = (f"({first},{','.join(f'?{base + j * w + c}' for c in range(w))})" for j in range(size))
            stmt = head + ",".join(rows)
            if len(cls._fast_cache) > 64:
                cls._fast_cache.clear()
            cls._fast_cache[(names, size)] = stmt
        return stmt

    def _not_a_copy(self) -> None:
        if self.copy_only:
            raise StorageError(f"{self.path}: this journal is the failover standby's copy of the active's: "
                               "rows are written by the active server")

    def _insert(self, runs: list[tuple[str, Any, Any]]) -> tuple[int, int]:
        if self.readonly:
            raise StorageError(f"{self.path}: the journal is open read-only")
        self._not_a_copy()
        width = len(_ROW_COLS)
        head = f"INSERT INTO journal({', '.join(_ROW_COLS)}) VALUES "  # noqa: S608 - column names from a fixed tuple, values bound
        one = "(" + ",".join("?" * width) + ")"
        count = 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    first = int(self._db.execute("SELECT coalesce(max(id), 0) + 1 FROM journal").fetchone()[0])
                    for kind, spec, payload in runs:
                        if kind == "rows":
                            rows: list[tuple[Any, ...]] = payload
                            count += len(rows)
                            k = self._CHUNK
                            full = len(rows) - len(rows) % k
                            if full:
                                stmt = head + ",".join([one] * k)
                                for s in range(0, full, k):
                                    self._db.execute(stmt, [x for r in rows[s:s + k] for x in r])
                            if full < len(rows):
                                self._db.executemany(head + one, rows[full:])
                            continue
                        names, shared = spec  # shared: in _FAST_CONSTS order, without the per-row ones
                        flat: list[Any] = payload
                        w = len(names)
                        m = len(flat) // w
                        count += m
                        for s in range(0, m, self._FAST_CHUNK):
                            size = min(self._FAST_CHUNK, m - s)
                            self._db.execute(self._fast_stmt(names, size), [*shared, *flat[w * s:w * (s + size)]])
                    self._db.execute("COMMIT")
                except BaseException:  # even a cancellation must not leave the transaction open: re-raised
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot append to the alarm journal: {exc}") from exc
        return first, first + count - 1

    # ------------------------------------------------------------------ read
    def last_id(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM journal").fetchone()[0])

    def _where(self, q: JournalQuery) -> tuple[list[str], list[Any], bool]:
        """SQL conditions and parameters; the flag says whether to walk the time index."""
        where: list[str] = []
        params: list[Any] = []
        if q.start_ms is not None:
            where.append("j.ts_ms >= ?")
            params.append(q.start_ms)
        if q.end_ms is not None:
            where.append("j.ts_ms < ?")
            params.append(q.end_ms)
        def_conds: list[str] = []
        def_params: list[Any] = []
        for col, values in (("equipment", q.equipment), ("commune", q.commune), ("area", q.area),
                            ("service", q.service), ("alarm", q.alarm), ("priority", q.priority)):
            if values:
                def_conds.append(f"{col} IN ({', '.join('?' * len(values))})")
                def_params.extend(values)
        broad = True
        if def_conds:
            sub = f"SELECT ref FROM alarm_def WHERE {' AND '.join(def_conds)}"  # noqa: S608 - column names from a fixed tuple; the subquery's values bound
            with self._lock:
                n = int(self._db.execute(f"SELECT count(*) FROM ({sub})", def_params).fetchone()[0])  # noqa: S608 - the subquery built above: fixed columns, values bound
            broad = n > BROAD_FILTER
            where.append(("+j.ref" if broad else "j.ref") + f" IN ({sub})")
            params.extend(def_params)
        if q.state:
            where.append(f"j.state IN ({', '.join('?' * len(q.state))})")
            params.extend(int(s) for s in q.state)
        if q.event:
            where.append(f"j.event IN ({', '.join('?' * len(q.event))})")
            params.extend(int(e) for e in q.event)
        if q.refused is not None:
            where.append("j.outcome = ?")
            params.append(REFUSED if q.refused else DONE)
        if q.user:
            where.append("j.user = ?")
            params.append(q.user)
        if q.text:
            like = "%" + q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            cols = ("d.message", "d.alarm", "j.comment", "j.detail", "j.user")
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in cols) + ")")
            params.extend([like] * 5)
        return where, params, broad

    def query(self, q: JournalQuery, *, with_total: bool = False, lang: str | None = None) -> JournalPage:
        """One page of rows matching ``q``, newest first (``ascending`` for oldest first); messages in ``lang``
        (default: as registered, the site's language)."""
        where, params, _ = self._where(q)
        total: int | None = None
        if with_total:
            sql = "SELECT count(*) FROM journal j" + (_JOIN if q.text else "")  # noqa: S608 - fixed clauses, values bound
            if where:
                sql += " WHERE " + " AND ".join(where)
            with self._lock:
                total = int(self._db.execute(sql, params).fetchone()[0])
        if q.cursor is not None:
            where.append("(j.ts_ms, j.id) > (?, ?)" if q.ascending else "(j.ts_ms, j.id) < (?, ?)")
            params.extend(q.cursor)
        order = "ASC" if q.ascending else "DESC"
        sql = self._select + (_JOIN if q.text else "") + (" WHERE " + " AND ".join(where) if where else "") + \
            f" ORDER BY j.ts_ms {order}, j.id {order} LIMIT ? OFFSET ?"
        params.extend([q.limit + 1, q.offset])
        try:
            with self._lock:
                raw = self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: journal query failed: {exc}") from exc
        more = len(raw) > q.limit
        rows = self._rows_of(raw[:q.limit], lang)
        cursor = (rows[-1].ts_ms, rows[-1].id) if more and rows else None
        return JournalPage(rows, cursor, total)

    def _rows_of(self, raw: list[tuple[Any, ...]], lang: str | None = None) -> list[JournalRow]:
        """Journal tuples → rows, with their definitions from a cache (definitions never change); messages in
        ``lang`` when asked."""
        cache = self._def_rows
        missing = {r[14] for r in raw if r[14] is not None and r[14] not in cache}
        if missing:
            with self._lock:
                got = self._db.execute(f"SELECT ref, {self._def_read} FROM alarm_def WHERE ref IN "  # noqa: S608 - column names from _DEF_READ, values bound
                                       "(SELECT value FROM json_each(?))", (json.dumps(sorted(missing)),)).fetchall()
            if len(cache) > 1_000_000:
                cache.clear()
            for d in got:
                cache[d[0]] = d[1:]
        rows = [_row(r, cache.get(r[14]) if r[14] is not None else None) for r in raw]
        if lang is not None:
            for r, row in zip(raw, rows, strict=True):
                row.lang = lang
                if r[14] is not None:
                    text = self._message_in(int(r[14]), lang)
                    if text is not None:
                        row.message_template = text
        return rows

    def _message_in(self, ref: int, lang: str) -> str | None:
        """Pass 1 of definition ``ref``'s message in ``lang`` (None: no key, or no template in that language)."""
        hit = self._localised.get((ref, lang), ...)
        if hit is not ...:
            return hit
        d = self._def_rows.get(ref)
        text: str | None = None
        if d is not None and d[13]:
            tmpl = self._template(str(d[13]), lang)
            if tmpl is not None:
                params = json.loads(d[14]) if d[14] else {}
                text = tmpl.render(params if isinstance(params, dict) else {})
        if len(self._localised) > 1_000_000:
            self._localised.clear()
        self._localised[(ref, lang)] = text
        return text

    def _template(self, key: str, lang: str) -> StaticTemplate | None:
        if (key, lang) not in self._texts:
            try:
                with self._lock:
                    got = self._db.execute("SELECT template FROM message_text WHERE key = ? AND lang = ?",
                                           (key, lang)).fetchone()
            except sqlite3.Error:  # an older file opened read-only has no message_text: rows read as written
                got = None
            self._texts[(key, lang)] = None if got is None else StaticTemplate(str(got[0]))
        return self._texts[(key, lang)]

    def iter_rows(self, q: JournalQuery, page_size: int = 20_000, lang: str | None = None) -> Iterator[JournalRow]:
        """Every row matching ``q`` (ignoring its limit), page by page."""
        query = JournalQuery(**{**_asdict(q), "limit": page_size, "cursor": q.cursor, "offset": 0})
        while True:
            page = self.query(query, lang=lang)
            yield from page.rows
            if page.next_cursor is None:
                return
            query = JournalQuery(**{**_asdict(query), "cursor": page.next_cursor})

    def export_csv(self, q: JournalQuery, out: IO[str], lang: str | None = None) -> int:
        """Write the rows of ``q`` (all of them, oldest first) as CSV, messages in ``lang``; returns the number
        of rows. Times are UTC, in a column that says so (``time_utc``)."""
        writer = csvsafe.writer(out)  # comments, reasons, work orders are user text: no formulas
        writer.writerow(CSV_COLUMNS)
        n = 0
        for row in self.iter_rows(JournalQuery(**{**_asdict(q), "ascending": True}), lang=lang):
            writer.writerow(row.csv_row())
            n += 1
        return n

    def follow(self, q: JournalQuery, after_id: int, upto_id: int | None = None, limit: int | None = 1000,
               lang: str | None = None) -> list[JournalRow]:
        """Rows with ``after_id < id ≤ upto_id`` that match ``q``, in id order (for ``tail -f``)."""
        where, params, _ = self._where(q)
        where.append("j.id > ?")
        params.append(after_id)
        if upto_id is not None:
            where.append("j.id <= ?")
            params.append(upto_id)
        sql = self._select + (_JOIN if q.text else "") + " WHERE " + " AND ".join(where) + " ORDER BY j.id LIMIT ?"
        params.append(-1 if limit is None else limit)
        with self._lock:
            return self._rows_of(self._db.execute(sql, params).fetchall(), lang)

    # ------------------------------------------------------------------ restart
    def current_states(self) -> dict[str, RestoredState]:
        """Last journalled state of every alarm that is not plain normal (for the engine's restart).

        Every row carries the alarm's state and flags after it, its active-since and timed-shelving end
        (a refused request carries them unchanged), so the last row of each alarm is enough: one pass over
        the (ref, ts) index finds them, inside SQLite. Alarms back to normal with no flag are left out (the
        engine's default). Only the work orders of out-of-service alarms need a look further back.
        """
        sql = """
            WITH last AS (SELECT ref, max(id) AS id FROM journal WHERE ref IS NOT NULL GROUP BY ref),
                 per_alarm AS (SELECT d.alarm AS alarm, max(last.id) AS id FROM last
                               JOIN alarm_def d ON d.ref = last.ref GROUP BY d.alarm)
            SELECT per_alarm.alarm, j.state, j.flags, j.ts_ms, j.since_ms, j.until_ms
            FROM per_alarm JOIN journal j ON j.id = per_alarm.id WHERE j.state != 0 OR j.flags != 0
        """.replace("j.since_ms", "j.since_ms" if self._select is _SELECT else "NULL")
        oos, timed = int(Flag.OUT_OF_SERVICE), int(Flag.SHELVED_TIMED)
        try:
            with self._lock:
                rows = self._db.execute(sql).fetchall()
                need_wo = [r[0] for r in rows if r[2] & oos]
                refs_of: dict[str, list[int]] = {}
                for k in range(0, len(need_wo), 500):
                    chunk = need_wo[k:k + 500]
                    for ref, alarm in self._db.execute(
                            f"SELECT ref, alarm FROM alarm_def WHERE alarm IN ({', '.join('?' * len(chunk))})", chunk):  # noqa: S608 - only placeholders interpolated
                        refs_of.setdefault(alarm, []).append(ref)
                orders = self._last_event(need_wo, (Event.REMOVE_FROM_SERVICE,), "j.detail", refs_of)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot read the current alarm states: {exc}") from exc
        states = _STATES
        return {alarm: RestoredState(alarm, states[state], flags, ts, since, until if flags & timed else None,
                                     orders.get(alarm) if flags & oos else None)
                for alarm, state, flags, ts, since, until in rows}

    def _last_event(self, alarms: list[str], events: tuple[Event, ...], column: str,
                    refs_of: dict[str, list[int]]) -> dict[str, Any]:
        """For each alarm, ``column`` of its latest done row with one of ``events`` (one statement: for each
        definition ref, walk the (ref, ts) index back to the first matching row)."""
        out: dict[str, Any] = {}
        if not alarms:
            return out
        alarm_of = {ref: alarm for alarm in alarms for ref in refs_of.get(alarm, [])}
        ev = ", ".join(str(int(e)) for e in events)
        sql = (f"SELECT r.value, (SELECT j.ts_ms || ' ' || coalesce({column}, '') FROM journal j "  # noqa: S608 - a column the caller names and Event ints; values bound
               f"WHERE j.ref = r.value AND j.event IN ({ev}) AND j.outcome = 0 "
               "ORDER BY j.ts_ms DESC, j.id DESC LIMIT 1) FROM json_each(?) r")
        best: dict[str, tuple[int, str]] = {}
        for ref, hit in self._db.execute(sql, (json.dumps(sorted(alarm_of)),)):
            if hit is None:
                continue
            ts_text, _, v = str(hit).partition(" ")
            alarm = alarm_of[int(ref)]
            if alarm not in best or int(ts_text) > best[alarm][0]:
                best[alarm] = (int(ts_text), v)
        for alarm, (_, v) in best.items():
            out[alarm] = v if v != "" else None
        return out

    def rows_for_kpi(self, start_ms: int | None, end_ms: int | None, q: JournalQuery | None = None
                     ) -> list[tuple[Any, ...]]:
        """(id, ts_ms, event, outcome, state, prev_state, flags, alarm, priority, detail, comment) in id order."""
        base = q or JournalQuery()
        query = JournalQuery(**{**_asdict(base), "start_ms": start_ms, "end_ms": end_ms})
        where, params, _ = self._where(query)
        sql = ("SELECT j.id, j.ts_ms, j.event, j.outcome, j.state, j.prev_state, j.flags, d.alarm, d.priority, "
               "j.detail, j.comment FROM journal j LEFT JOIN alarm_def d ON d.ref = j.ref")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY j.ts_ms, j.id"
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def active_at(self, ts_ms: int, q: JournalQuery | None = None) -> dict[str, int]:
        """Alarms (of the definitions ``q`` selects) whose last row before ``ts_ms`` left them active → since
        when (the row's active-since, or its time for rows written without it)."""
        base = q or JournalQuery()
        def_conds: list[str] = []
        params: list[Any] = [ts_ms]
        for col, values in (("equipment", base.equipment), ("commune", base.commune), ("area", base.area),
                            ("service", base.service), ("alarm", base.alarm), ("priority", base.priority)):
            if values:
                def_conds.append(f"d.{col} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        since = "j.since_ms" if self._select is _SELECT else "NULL"
        sql = f"""
            WITH last AS (SELECT ref, max(id) AS id FROM journal WHERE ref IS NOT NULL AND ts_ms < ? GROUP BY ref),
                 per_alarm AS (SELECT d.alarm AS alarm, max(last.id) AS id FROM last JOIN alarm_def d
                               ON d.ref = last.ref {"WHERE " + " AND ".join(def_conds) if def_conds else ""}
                               GROUP BY d.alarm)
            SELECT per_alarm.alarm, coalesce({since}, j.ts_ms) FROM per_alarm JOIN journal j ON j.id = per_alarm.id
            WHERE j.state IN ({int(AlarmState.UNACK)}, {int(AlarmState.ACKED)})
        """  # noqa: S608 - fixed columns and AlarmState ints; values bound
        try:
            with self._lock:
                return {alarm: int(t) for alarm, t in self._db.execute(sql, params).fetchall()}
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot read the alarms active at {ts_ms}: {exc}") from exc

    # ------------------------------------------------------------------ replication (server.ha.replication)
    # The failover pair's standby keeps a copy of the active's journal: the same rows under the same ids
    # (the active's sequence), so that after a takeover the journal goes on without a gap or a duplicate.
    _RAW_ROW = "id, " + ", ".join(_ROW_COLS)

    def raw_rows_after(self, after_id: int, limit: int = 5000) -> list[tuple[Any, ...]]:
        """Rows with an id above ``after_id`` as stored (``id`` first, then :data:`_ROW_COLS`), in id order."""
        with self._lock:
            return self._db.execute(f"SELECT {self._RAW_ROW} FROM journal WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608 - column names from a fixed tuple
                                    (after_id, limit)).fetchall()

    def raw_defs_after(self, after_ref: int) -> list[tuple[Any, ...]]:
        """Alarm definitions with a ref above ``after_ref`` as stored (ref, :data:`_DEF_COLS`, created_ms)."""
        with self._lock:
            return self._db.execute(f"SELECT ref, {', '.join(_DEF_COLS)}, created_ms FROM alarm_def WHERE ref > ? "  # noqa: S608 - column names from a fixed tuple
                                    "ORDER BY ref", (after_ref,)).fetchall()

    def tip(self) -> tuple[int, int, str]:
        """(last row id, last definition ref, that definition's alarm): what a copy says it holds."""
        with self._lock:
            row = self._db.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()
            ref = self._db.execute("SELECT ref, alarm FROM alarm_def ORDER BY ref DESC LIMIT 1").fetchone()
        return int(row[0]), int(ref[0]) if ref else 0, str(ref[1]) if ref else ""

    def holds(self, row_id: int, ref: int, alarm: str) -> bool:
        """True if this journal has row ``row_id`` (0: none asked) and definition ``ref`` of ``alarm`` (0: none):
        a copy that says it holds them is a prefix of this journal, not a diverged one."""
        with self._lock:
            if row_id and self._db.execute("SELECT 1 FROM journal WHERE id = ?", (row_id,)).fetchone() is None:
                return False
            if ref:
                got = self._db.execute("SELECT alarm FROM alarm_def WHERE ref = ?", (ref,)).fetchone()
                return got is not None and got[0] == alarm
            return True

    def insert_copied(self, defs: Sequence[Sequence[Any]], rows: Sequence[Sequence[Any]]) -> None:
        """Store the active's definitions and rows under their own refs and ids (one transaction, durable on
        return). A ref or id already here raises StorageError: a copy never holds a row twice."""
        if self.readonly:
            raise StorageError(f"{self.path}: the journal is open read-only")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if defs:
                        self._db.executemany(f"INSERT INTO alarm_def(ref, {', '.join(_DEF_COLS)}, created_ms) "  # noqa: S608 - column names from a fixed tuple
                                             f"VALUES ({', '.join('?' * (len(_DEF_COLS) + 2))})", defs)
                    if rows:
                        self._db.executemany(f"INSERT INTO journal({self._RAW_ROW}) "  # noqa: S608 - column names from a fixed tuple
                                             f"VALUES ({', '.join('?' * (len(_ROW_COLS) + 1))})", rows)
                    self._db.execute("COMMIT")
                except BaseException:  # even a cancellation must not leave the transaction open: re-raised
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: cannot store the copied journal rows: {exc}") from exc
            if defs:  # definitions came from elsewhere: the lookup cache is rebuilt on the next register()
                self._defs = _DefCache()

    def candidates(self) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """What a failover standby offers the active to find the last row and definition both journals hold:
        (id, digest) of its rows and (ref, digest) of its definitions, newest first: the newest 64 one by one
        (an old active's own rows are the last few seconds' transitions: the common point is then exact), then
        ever further apart (found to within a factor two: rows the active holds the same may be set aside too)."""
        def walk(top: int) -> list[int]:
            out, k, step = [], top, 1
            while k > 0:
                out.append(k)
                k -= step
                if len(out) >= 64:
                    step *= 2
            return out

        with self._lock:
            last_id, last_ref = (int(x) for x in self._db.execute(
                "SELECT coalesce((SELECT max(id) FROM journal), 0), coalesce((SELECT max(ref) FROM alarm_def), 0)"
            ).fetchone())
        return (sorted(self.digests(walk(last_id)).items(), reverse=True),
                sorted(self.def_digests(walk(last_ref)).items(), reverse=True))

    def digests(self, ids: Sequence[int]) -> dict[int, str]:
        """id → digest of the stored row (its every column): two journals hold the same row iff the digests match."""
        return self._digests(f"SELECT {self._RAW_ROW} FROM journal WHERE id IN ", ids)  # noqa: S608 - fixed columns

    def def_digests(self, refs: Sequence[int]) -> dict[int, str]:
        """ref → digest of the stored alarm definition (every column but when it was registered: two servers that
        registered one catalog hold the same definitions)."""
        return self._digests(f"SELECT ref, {', '.join(_DEF_COLS)} FROM alarm_def WHERE ref IN ", refs)  # noqa: S608 - fixed columns

    def _digests(self, select: str, keys: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self._lock:
            for s in range(0, len(keys), 500):
                chunk = [int(k) for k in keys[s:s + 500]]
                for row in self._db.execute(select + f"({', '.join('?' * len(chunk))})", chunk):
                    out[int(row[0])] = hashlib.sha256(json.dumps(list(row), default=str).encode()).hexdigest()[:32]
        return out

    def set_aside_after(self, row_id: int, ref: int) -> tuple[int, int, Path | None]:
        """A failover standby that diverged from the active (it was the active and wrote rows the new active
        never got): keep the rows up to ``row_id`` and the definitions up to ``ref`` (what both journals hold,
        from :meth:`candidates`), so the active's rows can be copied after them. Nothing is deleted: the whole
        file is moved aside as ``journal.standby-<UTC>.sqlite`` (kept for the record) and a new file takes the
        common part (the rows referencing a later definition go aside too). Returns (rows set aside,
        definitions set aside, the file; None when nothing was after the common point)."""
        if self.readonly:
            raise StorageError(f"{self.path}: the journal is open read-only")
        with self._lock:
            try:
                later = self._db.execute("SELECT min(id) FROM journal WHERE id <= ? AND ref > ?",
                                         (row_id, ref)).fetchone()[0]
                keep = row_id if later is None else int(later) - 1
                rows = int(self._db.execute("SELECT count(*) FROM journal WHERE id > ?", (keep,)).fetchone()[0])
                defs = int(self._db.execute("SELECT count(*) FROM alarm_def WHERE ref > ?", (ref,)).fetchone()[0])
                if not rows and not defs:
                    return 0, 0, None
                aside = self.path.with_name(f"{self.path.stem}.standby-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
                                            f"{self.path.suffix}")
                self._db.close()  # the last connection: its WAL is checkpointed into the file
                for suffix in ("", "-wal", "-shm"):
                    src = self.path.with_name(self.path.name + suffix)
                    if src.exists():
                        os.replace(src, aside.with_name(aside.name + suffix))
                synchronous, mmap_bytes = self._open_args
                self._db = sqlitestore.connect(self.path, "alarm journal", synchronous=synchronous)
                self._db.execute("PRAGMA cache_size=-131072")
                self._migrate()
                self._db.execute(f"PRAGMA mmap_size={mmap_bytes}")
                self._db.execute("ATTACH DATABASE ? AS aside", (str(aside),))
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        cols = f"ref, {', '.join(_DEF_COLS)}, created_ms"
                        self._db.execute(f"INSERT INTO alarm_def({cols}) SELECT {cols} FROM aside.alarm_def "  # noqa: S608 - fixed columns
                                         "WHERE ref <= ? ORDER BY ref", (ref,))
                        self._db.execute(f"INSERT INTO journal({self._RAW_ROW}) SELECT {self._RAW_ROW} FROM "  # noqa: S608 - fixed columns
                                         "aside.journal WHERE id <= ? ORDER BY id", (keep,))
                        self._db.execute("INSERT INTO message_text SELECT key, lang, template FROM aside.message_text")
                        self._db.execute("COMMIT")
                    except BaseException:  # even a cancellation must not leave the transaction open: re-raised
                        self._db.execute("ROLLBACK")
                        raise
                finally:
                    self._db.execute("DETACH DATABASE aside")
            except (sqlite3.Error, OSError) as exc:
                raise StorageError(f"{self.path}: cannot set the standby's own rows aside: {exc}") from exc
            self._defs, self._def_rows, self._localised, self._texts = _DefCache(), {}, {}, {}
            self._keys_written = set()
        log.warning("journal: rows %d.. (%d) and %d definitions of this standby's own set aside in %s: the active's "
                    "rows follow row %d", keep + 1, rows, defs, aside.name, keep)
        return rows, defs, aside

    def time_span(self) -> tuple[int, int] | None:
        with self._lock:
            lo, hi = self._db.execute("SELECT min(ts_ms), max(ts_ms) FROM journal").fetchone()
        return None if lo is None else (int(lo), int(hi))

    def execute_sql(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Raw SQL for diagnostics and tests (writes other than the append path are refused by triggers)."""
        try:
            with self._lock:
                return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}") from exc


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script`` one by one (``executescript`` would commit the transaction it runs in)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""


def _asdict(q: JournalQuery) -> dict[str, Any]:
    return {f: getattr(q, f) for f in JournalQuery.__dataclass_fields__}


_ENUM_PARSED: dict[str, dict[int, str]] = {}
_EVENTS = {int(e): e for e in Event}
_STATES = list(AlarmState)
_QUALITIES = list(Quality)


_NO_DEF: tuple[Any, ...] = (None,) * 15


def _row(r: tuple[Any, ...], d: tuple[Any, ...] | None) -> JournalRow:
    """r: _SELECT columns; d: _DEF_READ columns of its definition (None for a row without alarm)."""
    d = d or _NO_DEF
    enum = None
    if d[12]:
        enum = _ENUM_PARSED.get(d[12])
        if enum is None:
            enum = {int(k): str(v) for k, v in json.loads(d[12]).items()}
            if len(_ENUM_PARSED) < 10_000:
                _ENUM_PARSED[d[12]] = enum
    return JournalRow(r[0], r[1], _EVENTS[r[2]], r[3], _STATES[r[4]], _STATES[r[5]], r[6], r[7],
                      None if r[8] is None else _QUALITIES[r[8]], r[9], r[10], r[11], r[12], d[0], d[1], d[2],
                      d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], enum, r[13])
