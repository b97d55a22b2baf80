"""The replication stream of the failover pair: the ACTIVE feeds its STANDBY, which does not poll the field.

One WebSocket from the standby to the active's API (``/api/v1/ha/replication``), authenticated by the pair's
shared secret (settings ``ha.secret_file``, compared in constant time). Binary frames go active → standby,
small JSON acknowledgements come back on the same socket::

    STANDBY (Follower)                                         ACTIVE (Feed)
      hello {fingerprint, journal: [last id, last ref, alarm],  ─►  same configuration?  journal a prefix of mine
             candidates: {rows: [(id, digest)],                   (its newest row and definition the same here)?
                          defs: [(ref, digest)]},                 the newest offered audit entry I hold (the
             set_aside: what it set aside, or null,               common point)? work orders a prefix of mine?
             audit: [seq, hash, key fingerprint, offered],        a set_aside said: journalled here, P2
             workorders: [last seq, order, ts]}                   ha/set_aside (count, file)
                                                               ◄─ refused {why}  (P2 ha/not_in_sync on both)
                                                               ◄─ diverged {row, ref}: the common point
      Journal.set_aside_after (its own rows after it kept in
        journal.standby-<UTC>.sqlite), then a new hello at once
                                                               ◄─ config {fingerprint}: this server reloaded
      not fed any more (P2 ha/not_in_sync); its next hello         (the session ends; the next hello of the
        is refused until it runs the same files                   old configuration is refused: P2 here too)
                                                               ◄─ tags (every tag whose receive time moved
      city tags ──► TagDatabase.apply_readings                     since the last frame: columnar, at most
      junction tags ──► the field-safety thread's database         every 0.1 s; the first frame is all of them)
         (the monitor decides first, then the main database)
                                                               ◄─ journal {defs, rows}: the active's rows
      Journal.insert_copied (same ids and refs) ──► alarm          under their own ids (its sequence), and the
         engine states (acks, shelving, suppression, out of        alarm definitions they reference
         service) from the rows' carried state
                                                               ◄─ state {leases, tickets, users, sessions}
      users ──► UserStore.replace_all; the rest kept               (server.ha.state: when it changed, at most
         for the takeover (server.ha.state.Replica)                every 0.5 s, at once before a sync)
                                                               ◄─ audit {lines, cut | restart}: the command
      AuditLog.append_copied (verbatim: the chain goes on;         audit log's entries after the common point,
        its own entries after the common point set aside)          up to the tip read before the state snapshot
                                                               ◄─ workorders {rows}: the work-order changes
      WorkOrderStore.commit_copied (same changes, same seqs)       after the standby's last one
      ack {journal, audit, workorders: last applied} ──────────►  sync(): an operator action waits for this
                                                               ◄─ beat (every 0.5 s when nothing else moves)

Why this transport: tag values at city scale (10^5 samples per scan period, a storm of 10^5 changes) must not
go through etcd (its requests are limited to 1.5 MB and every write is a raft round to three members); the
API server already terminates TLS and the standby already knows the active's URL. A WebSocket carries the
bulk one way and the acknowledgements of the synchronous operator actions the other way on one connection
(an HTTP stream would need a second request per acknowledgement).

What the stream does not carry (yet): work-order photos, a live configuration reload (docs/ha.md, "What is
left"). The historian is not carried as such: the standby's historian records the streamed samples, which go
through its tag database's apply path like its own polls.

Frame layout (binary)::

    ┌──────────────┬─────────────────────────────┬───────────────────────────────────────────┐
    │ u32 BE: len  │ JSON header (len bytes)     │ arrays, back to back, as the header lists │
    │              │ {"k": "tags", "arrays":     │ indices i8 · values f8 · qualities u1 ·   │
    │              │  [["<i8", n], ...], ...}    │ source_ns i8 · receive_ns i8              │
    └──────────────┴─────────────────────────────┴───────────────────────────────────────────┘
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from scada.alarms.states import AlarmState, Event, Flag
from scada.journal import Journal, RestoredState
from scada.tagdb import Readings, TagDatabase
from scada.workorders.model import Action, Change
from scada.workorders.store import WorkOrderStore

if TYPE_CHECKING:
    from failsafe.audit import AuditLog
    from scada.alarms.engine import AlarmEngine

log = logging.getLogger(__name__)

PATH = "/api/v1/ha/replication"
TAGS_EVERY_S = 0.1  # the active's frame period (tag rows, journal rows)
BEAT_EVERY_S = 0.5  # a frame at least this often, so that a silent stream means a broken one
STALE_AFTER_S = 2.0  # the standby's stream is stale after this long without a frame
JOURNAL_ROWS = 5000  # journal rows per frame (catching up a long journal)
AUDIT_LINES = 2000  # audit entries per frame
WORKORDER_ROWS = 2000  # work-order changes per frame
STATE_EVERY_S = 0.5  # the state snapshot is compared this often (at once when an operator action waits)
_STATES = {int(s): s for s in AlarmState}


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


class Channel(Protocol):
    """The WebSocket as the feed uses it (Starlette's on the active's side)."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive_text(self) -> str: ...


# ---------------------------------------------------------------------- the active's side
class Feed:
    """The active's side: serves one standby at a time (a new connection replaces the old one)."""

    def __init__(self, tagdb: Callable[[], TagDatabase], journal: Callable[[], Journal | None],
                 fingerprint: Callable[[], str], city_tags: Callable[[], int], *,
                 audit: Callable[[], AuditLog | None] = lambda: None,
                 state: Callable[[], dict[str, Any]] | None = None,
                 workorders: Callable[[], WorkOrderStore | None] = lambda: None,
                 on_set_aside: Callable[[dict[str, Any]], None] = lambda info: None) -> None:
        self.tagdb, self.journal, self.fingerprint, self.city_tags = tagdb, journal, fingerprint, city_tags
        self.audit, self.state, self.workorders = audit, state, workorders
        self.on_set_aside = on_set_aside  # a rejoining standby says what of its own journal it set aside
        self.acked_id = 0  # the standby's last applied journal row
        self.sent_id = 0
        self.acked_audit = self.sent_audit = 0  # the command audit log's entries (seq)
        self.acked_wo = self.sent_wo = 0  # the work-order changes (seq)
        self.audit_on = False  # the standby takes the audit log's entries (same key)
        self.connected = False
        self.frames = self.rows_sent = self.samples_sent = 0
        self._acked = asyncio.Condition()
        self._wake = asyncio.Event()
        self._generation = 0
        self.refused = ""  # why the last standby was refused (a configuration or journal mismatch) or what of it
        # is not replicated (another audit key)

    async def serve(self, ws: Channel) -> None:
        """One standby's connection, until it closes (or another one replaces it)."""
        self._generation += 1
        me = self._generation
        hello = json.loads(await asyncio.wait_for(ws.receive_text(), timeout=10))
        journal = self.journal()
        if journal is None:
            raise RuntimeError("ha replication: no journal on the active server")
        why, last_id, last_ref = await self._check(hello, journal)
        fingerprint = self.fingerprint()  # a reload here changes it: the standby is told, then refused (_check)
        if why.startswith("diverged:"):  # its rows after the common point go aside there; it comes back at once
            _, row, ref = why.split(":")
            await ws.send_bytes(encode({"k": "diverged", "row": int(row), "ref": int(ref)}))
            return
        if hello.get("set_aside"):
            self.on_set_aside(dict(hello["set_aside"]))
        audit, orders = self.audit(), self.workorders()
        restart = False  # the standby's audit log shares no entry with this one: it starts over
        cut: int | None = None  # the last entry both hold: the standby sets aside its own after it
        partial = ""  # what is not replicated although the standby is fed (said as the P2 ha/not_in_sync)
        self.audit_on = False
        if not why and audit is not None and hello.get("audit") is not None:
            key, offered = str(hello["audit"][2]), [(int(q), str(h)) for q, h in hello["audit"][3]]
            if key != audit.fingerprint:  # its entries could not be verified there: the rest is still fed
                partial = (f"the command audit log is not replicated: the standby's audit key (fingerprint {key}) "
                           f"is not the active's ({audit.fingerprint}); the pair shares one key")
                log.error("ha replication: %s", partial)
            else:
                common = await asyncio.to_thread(common_point, audit, offered)
                restart = common is None
                cut = common if common is not None and offered and common != offered[0][0] else None
                self.sent_audit = self.acked_audit = common or 0
                self.audit_on = True
        if not why and orders is not None and hello.get("workorders") is not None:
            why = await asyncio.to_thread(_orders_diverged, orders, hello["workorders"])
            self.sent_wo = self.acked_wo = int(hello["workorders"][0])
        if why:
            self.refused = why
            await ws.send_bytes(encode({"k": "refused", "why": why}))
            return
        self.refused = partial
        self.sent_id = self.acked_id = last_id
        sent_ref = last_ref
        state_text, last_state, snap_tip = "", 0.0, 0
        self.connected = True
        reader = asyncio.create_task(self._read_acks(ws, me))
        try:
            db = self.tagdb()
            last_rcv = np.full(self.city_tags(), -1, dtype=np.int64)  # the first frame carries every tag
            last_beat = 0.0
            while me == self._generation and not reader.done():
                woken = self._wake.is_set()
                self._wake.clear()
                sent = more = False  # more: a batch came full (catching up: go on without waiting)
                if self.state is not None and (woken or time.monotonic() - last_state >= STATE_EVERY_S):
                    # the audit tip first, then the snapshot: every audit row sent below describes a change the
                    # standby already holds (sync() then covers leases and approvals with the audit row's ack)
                    tip = audit.last_seq if audit is not None else 0
                    state = await asyncio.to_thread(self.state)
                    text = json.dumps(state, sort_keys=True, default=str)
                    if text != state_text:
                        await ws.send_bytes(encode({"k": "state", "state": state}))
                        state_text, sent = text, True
                    snap_tip, last_state = tip, time.monotonic()
                if audit is not None and self.audit_on and (snap_tip > self.sent_audit or cut is not None):
                    lines = await asyncio.to_thread(audit.lines_after, self.sent_audit, AUDIT_LINES)
                    more = len(lines) >= AUDIT_LINES
                    seqs = [int(json.loads(x)["seq"]) for x in lines]
                    lines = [x for x, q in zip(lines, seqs, strict=True) if q <= snap_tip]
                    if lines or cut is not None:
                        await ws.send_bytes(encode({"k": "audit", "restart": restart, "cut": cut,
                                                    "lines": [x.decode() for x in lines]}))
                        self.sent_audit = seqs[len(lines) - 1] if lines else self.sent_audit
                        restart, cut, sent = False, None, True
                if orders is not None:
                    changes = await asyncio.to_thread(orders.history, None, self.sent_wo, WORKORDER_ROWS)
                    if changes:
                        await ws.send_bytes(encode({"k": "workorders", "rows": [
                            [r.seq, r.change.order_id, r.change.ts_ms, r.change.user, str(r.change.action),
                             dict(r.change.data), r.change.idem] for r in changes]}))
                        self.sent_wo, sent, more = changes[-1].seq, True, more or len(changes) >= WORKORDER_ROWS
                # then the journal (an operator action waits for all three: sync), then the tag rows
                defs = await asyncio.to_thread(journal.raw_defs_after, sent_ref)
                rows = await asyncio.to_thread(journal.raw_rows_after, self.sent_id, JOURNAL_ROWS)
                if defs or rows:
                    await ws.send_bytes(encode({"k": "journal", "defs": defs, "rows": rows}))
                    if defs:
                        sent_ref = int(defs[-1][0])
                    if rows:
                        self.sent_id = int(rows[-1][0])
                    self.rows_sent += len(rows)
                    sent = True
                if self.fingerprint() != fingerprint:  # a reload here: never fed to the old configuration
                    await ws.send_bytes(encode({"k": "config", "fingerprint": self.fingerprint()}))
                    await asyncio.wait({reader}, timeout=2.0)  # the standby reads it and closes (its acks in flight)
                    return
                if db is not self.tagdb():  # a reload built a new tag database: everything again
                    db = self.tagdb()
                    last_rcv = np.full(self.city_tags(), -1, dtype=np.int64)
                frame, last_rcv = tags_frame(db, last_rcv)
                if frame is not None:
                    await ws.send_bytes(frame[0])
                    self.samples_sent += frame[1]
                    sent = True
                now = time.monotonic()
                if sent:
                    self.frames += 1
                    last_beat = now
                elif now - last_beat >= BEAT_EVERY_S:
                    await ws.send_bytes(encode({"k": "beat"}))
                    last_beat = now
                if more or len(rows) >= JOURNAL_ROWS:
                    continue  # catching up: no wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=TAGS_EVERY_S)
        finally:
            if me == self._generation:
                self.connected = False
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            async with self._acked:
                self._acked.notify_all()

    async def _check(self, hello: dict[str, Any], journal: Journal) -> tuple[str, int, int]:
        """Why this standby cannot be fed ("" if it can), and the journal tip it holds (last row, last ref)."""
        try:
            last_id, last_ref, alarm = int(hello["journal"][0]), int(hello["journal"][1]), str(hello["journal"][2])
        except (KeyError, IndexError, TypeError, ValueError):
            return f"not a replication hello: {str(hello)[:200]}", 0, 0
        mine = self.fingerprint()
        if hello.get("fingerprint") != mine:
            return (f"the configurations differ (active {mine}, standby {hello.get('fingerprint')}): the pair does "
                    "not replicate", last_id, last_ref)
        candidates = hello.get("candidates")
        if candidates is not None:  # (id, digest) of its rows and (ref, digest) of its definitions, newest first
            common = await asyncio.to_thread(_journal_common, journal, candidates)
            if common is not None:
                return f"diverged:{common[0]}:{common[1]}", last_id, last_ref
            return "", last_id, last_ref
        if not await asyncio.to_thread(journal.holds, last_id, last_ref, alarm):
            return (f"the standby's journal is not a copy of the active's (its row {last_id} or definition "
                    f"{last_ref} is not the same here): it diverged (an active that lost its lease before its last "
                    "rows were copied); give the standby a copy of this journal", last_id, last_ref)
        return "", last_id, last_ref

    def drop(self) -> None:
        """End the connection being served (the standby reconnects): a resignation, or a test's network cut."""
        self._generation += 1
        self.connected = False
        self._wake.set()

    async def _read_acks(self, ws: Channel, me: int) -> None:
        while me == self._generation:
            msg = json.loads(await ws.receive_text())
            if msg.get("k") == "ack":
                async with self._acked:
                    self.acked_id = max(self.acked_id, int(msg["journal"]))
                    self.acked_audit = max(self.acked_audit, int(msg.get("audit") or 0))
                    self.acked_wo = max(self.acked_wo, int(msg.get("workorders") or 0))
                    self._acked.notify_all()

    async def sync(self, timeout_s: float) -> bool:
        """Wait until the standby holds every journal row, command audit entry (with the leases and approvals
        they describe) and work-order change written so far (an operator action was just answered); False after
        ``timeout_s`` or when no standby is connected."""
        journal, audit, orders = self.journal(), self.audit(), self.workorders()
        if journal is None or not self.connected:
            return False
        target = await asyncio.to_thread(journal.last_id)
        audit_target = audit.last_seq if audit is not None and self.audit_on else 0
        wo_target = (await asyncio.to_thread(orders.count))[1] if orders is not None else 0
        self._wake.set()  # send it now, not at the next period

        def held() -> bool:
            return self.acked_id >= target and self.acked_audit >= audit_target and self.acked_wo >= wo_target

        try:
            async with asyncio.timeout(timeout_s), self._acked:
                await self._acked.wait_for(lambda: held() or not self.connected)
        except TimeoutError:
            return False
        return held()

    def stats(self) -> dict[str, Any]:
        return {"standby_connected": self.connected, "journal_sent": self.sent_id, "journal_acked": self.acked_id,
                "audit_sent": self.sent_audit, "audit_acked": self.acked_audit, "workorders_sent": self.sent_wo,
                "workorders_acked": self.acked_wo, "frames": self.frames, "samples_sent": self.samples_sent,
                "refused": self.refused or None}


def common_point(audit: AuditLog, offered: list[tuple[int, str]]) -> int | None:
    """The newest of the standby's offered audit entries (seq, hash) this log holds the same; None: none
    (the standby's log starts over)."""
    last = audit.last_seq
    for seq, hash_ in offered:
        if seq <= last and audit.holds(seq, hash_):
            return seq
    return None


def _journal_common(journal: Journal, candidates: dict[str, Any]) -> tuple[int, int] | None:
    """None when the standby's journal is a prefix of this one (its newest row and definition are held here the
    same); else the common point (the newest offered row and definition held the same here, 0: none)."""
    rows = [(int(i), str(h)) for i, h in candidates.get("rows") or []]
    defs = [(int(r), str(h)) for r, h in candidates.get("defs") or []]
    mine_rows = journal.digests([i for i, _ in rows])
    mine_defs = journal.def_digests([r for r, _ in defs])
    if all(mine_rows.get(i) == h for i, h in rows[:1]) and all(mine_defs.get(r) == h for r, h in defs[:1]):
        return None
    return (next((i for i, h in rows if mine_rows.get(i) == h), 0),
            next((r for r, h in defs if mine_defs.get(r) == h), 0))


def _orders_diverged(orders: WorkOrderStore, tip: list[Any]) -> str:
    """Why the standby's work-order changes are not a prefix of the active's ("" when they are): its last one,
    ``[seq, order_id, ts_ms]``, must be the same change here."""
    seq = int(tip[0])
    if seq == 0:
        return ""
    rows = orders.history(None, seq - 1, 1)
    if rows and rows[0].seq == seq and [rows[0].change.order_id, rows[0].change.ts_ms] == [tip[1], tip[2]]:
        return ""
    return (f"the standby's work orders are not a copy of the active's (its change {seq} is not the same here): "
            "give the standby a copy of this server's workorders.sqlite")


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


# ---------------------------------------------------------------------- the standby's side
@dataclass
class FollowerState:
    connected: bool = False
    last_frame: float = 0.0  # monotonic
    applied_id: int = 0
    audit_applied: int = 0  # the command audit log's last copied entry (seq)
    wo_applied: int = 0  # the last copied work-order change (seq)
    samples: int = 0
    rows: int = 0
    refused: str = ""
    error: str = ""
    stale: bool = True
    history: list[str] = field(default_factory=list)


class Sink(Protocol):
    """Where the standby puts what it receives (server.components.ha wires the server's parts)."""

    def tagdb(self) -> TagDatabase: ...

    def journal(self) -> Journal | None: ...

    def engine(self) -> AlarmEngine | None: ...

    def fingerprint(self) -> str: ...

    def audit(self) -> AuditLog | None:
        """The command audit log (None: no fail-safe layer here)."""
        ...

    def workorders(self) -> WorkOrderStore | None: ...

    async def ready(self) -> None:
        """Return once the server's components have started (the stores above exist or never will)."""
        ...

    def apply_state(self, state: dict[str, Any]) -> None:
        """A state snapshot of the active (server.ha.state; called in a worker thread)."""
        ...

    async def apply_junctions(self, indices: npt.NDArray[np.int64], readings: Readings) -> npt.NDArray[np.bool_]:
        """Hand the junctions' samples among ``indices`` (main database) to the field-safety thread; returns
        which positions it took."""
        ...

    def on_state(self, state: FollowerState) -> None: ...

    def on_set_aside(self, info: dict[str, Any]) -> None:
        """This standby set aside its own journal rows after the common point (``rows``, ``defs``, ``file``)."""
        ...


class Follower:
    """The standby's side: connect to the active, apply what comes, acknowledge the journal rows; reconnect."""

    def __init__(self, url: str, secret: bytes, sink: Sink, *, stale_after_s: float = STALE_AFTER_S) -> None:
        base = url.rstrip("/")
        self.url = ("wss://" + base[8:] if base.startswith("https://") else
                    "ws://" + base[7:] if base.startswith("http://") else base) + PATH
        self.secret = secret
        self.sink = sink
        self.stale_after_s = stale_after_s
        self.state = FollowerState()
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._alarms: dict[int, str] = {}  # definition ref → alarm id (rule:tag)
        #: what this standby set aside of its own journal (it diverged): said in the next hello, once accepted
        self.set_aside: dict[str, Any] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ha-follower")
        self._watch = asyncio.create_task(self._stale_watch(), name="ha-follower-stale")

    async def aclose(self) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watch = None
        self.state.connected = False

    @property
    def fresh(self) -> bool:
        return self.state.connected and time.monotonic() - self.state.last_frame < self.stale_after_s

    async def _stale_watch(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            stale = not self.fresh
            if stale != self.state.stale:
                self.state.stale = stale
                since = f"for {time.monotonic() - self.state.last_frame:.1f} s" if self.state.last_frame else "yet"
                log.log(logging.ERROR if stale else logging.INFO, "ha replication from %s: %s", self.url,
                        f"stale (no frame {since})" if stale else "fresh again")
                self.sink.on_state(self.state)

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                why = f"{exc.response.status_code} from the active server" if isinstance(exc, InvalidStatus) \
                    else repr(exc)
                if why != self.state.error:
                    log.warning("ha replication from %s: %s", self.url, why)
                self.state.error = why
            except Exception:  # a bug in applying a frame must not end replication for good (logged, retried)
                log.exception("ha replication from %s failed", self.url)
                self.state.error = "internal error (see the log)"
            self.state.connected = False
            self.sink.on_state(self.state)
            await asyncio.sleep(0.5 if not self.state.refused else 5.0)

    async def _session(self) -> None:
        await self.sink.ready()
        journal, audit, orders = self.sink.journal(), self.sink.audit(), self.sink.workorders()
        if journal is None:
            raise RuntimeError("no journal")
        tip = await asyncio.to_thread(journal.tip)
        self._alarms = {int(r[0]): str(r[1]) for r in await asyncio.to_thread(journal.raw_defs_after, 0)}
        rows, defs = await asyncio.to_thread(journal.candidates)
        hello: dict[str, Any] = {"fingerprint": self.sink.fingerprint(), "journal": list(tip),
                                 "candidates": {"rows": rows, "defs": defs}, "set_aside": self.set_aside}
        if audit is not None:
            audit.copy_only = True  # from now on this log is the active's copy: nothing of this server's own
            offered = await asyncio.to_thread(audit.candidates)
            hello["audit"] = [*audit.tip(), audit.fingerprint, offered]
            self.state.audit_applied = hello["audit"][0]
        if orders is not None:
            orders.copy_only = True  # the active's copy: the standby's own writers (geofence, auto-close) refused
            last = await asyncio.to_thread(lambda: orders.history(None, orders.count()[1] - 1, 1))
            hello["workorders"] = [last[0].seq, last[0].change.order_id, last[0].change.ts_ms] if last else [0, "", 0]
            self.state.wo_applied = hello["workorders"][0]
        async with connect(self.url, additional_headers={"Authorization": "Pair " + self.secret.decode()},
                           open_timeout=3, max_size=None, ping_interval=None,
                           # a takeover closes this while the active may be stopped (SIGSTOP): the closing
                           # handshake must not hold the takeover (its default waits 10 s for the peer)
                           close_timeout=0.5) as ws:
            await ws.send(json.dumps(hello))
            self.state.applied_id = tip[0]
            async for frame in ws:
                if not isinstance(frame, bytes):
                    continue
                header, arrays = decode(frame)
                kind = header.get("k")
                if kind == "refused":
                    self.state.refused = str(header.get("why"))
                    self.state.connected = False
                    log.error("ha replication from %s refused: %s", self.url, self.state.refused)
                    self.sink.on_state(self.state)
                    return
                if kind == "config":  # the active reloaded another configuration: this one is not fed any more
                    self.state.refused = (f"the active server reloaded its configuration (now {header['fingerprint']},"
                                          f" this standby runs {hello['fingerprint']}): restart this standby on the "
                                          "same files")
                    self.state.connected = False
                    log.error("ha replication from %s: %s", self.url, self.state.refused)
                    self.sink.on_state(self.state)
                    return
                if kind == "diverged":
                    await self._diverged(journal, int(header["row"]), int(header["ref"]))
                    return
                if not self.state.connected or self.state.refused or self.state.error:
                    self.set_aside = None  # the active took the hello that said it
                    self.state.refused = self.state.error = ""
                    self.state.connected = True
                    log.info("ha replication from %s: connected", self.url)
                self.state.last_frame = time.monotonic()
                if self.state.stale:  # fresh again: said at once (the watch says when it goes stale)
                    self.state.stale = False
                    log.info("ha replication from %s: fresh", self.url)
                    self.sink.on_state(self.state)
                if kind == "tags":
                    await self._tags(header, arrays)
                    continue
                if kind == "state":
                    await asyncio.to_thread(self.sink.apply_state, header["state"])
                    continue
                if kind == "journal":
                    await self._journal(journal, header)
                elif kind == "audit" and audit is not None:
                    await asyncio.to_thread(audit.append_copied, [x.encode() for x in header["lines"]],
                                            bool(header.get("restart")), header.get("cut"))
                    self.state.audit_applied = audit.last_seq
                elif kind == "workorders" and orders is not None:
                    await asyncio.to_thread(self._orders, orders, header["rows"])
                else:
                    continue
                await ws.send(json.dumps({"k": "ack", "journal": self.state.applied_id,
                                          "audit": self.state.audit_applied, "workorders": self.state.wo_applied}))

    async def _diverged(self, journal: Journal, row: int, ref: int) -> None:
        """This standby's journal has rows the active never got (it was the active, and lost its lease before
        they were copied): set them aside (the file kept), then reconnect to copy the active's rows after the
        common point; the next hello says what was set aside (the active journals it, with a P2)."""
        rows, defs, path = await asyncio.to_thread(journal.set_aside_after, row, ref)
        keep = (await asyncio.to_thread(journal.tip))[0]
        self.set_aside = {"rows": rows, "defs": defs, "file": str(path) if path is not None else "",
                          "after": keep}
        log.warning("ha replication from %s: this journal diverged from the active's after row %d: %d rows and %d "
                    "definitions set aside in %s", self.url, keep, rows, defs, path)
        engine = self.sink.engine()
        if engine is not None:  # the alarm states as of the common point; the copied rows bring them up to date
            engine.restore(await asyncio.to_thread(journal.current_states))
        self.sink.on_set_aside(self.set_aside)

    async def _tags(self, header: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> None:
        idx, values, qualities, source_ns, receive_ns = arrays
        db = self.sink.tagdb()
        texts = {int(k): v for k, v in header.get("texts", {}).items()}
        readings = Readings(int(idx.size))
        readings.values, readings.qualities = values.copy(), qualities.copy()
        readings.source_ns, readings.receive_ns = source_ns.copy(), receive_ns.copy()
        readings.texts = texts
        ok = np.flatnonzero(idx < len(db)).astype(np.int64)  # a frame from a larger database: nothing else
        idx, readings = idx[ok].astype(np.int64), subset(readings, ok)
        # the junctions' tags go through the field-safety thread's database (its monitor decides first, then
        # they reach the main database); the rest straight into the main one
        taken = await self.sink.apply_junctions(idx, readings)
        rest = np.flatnonzero(~taken).astype(np.int64)
        if rest.size:
            db.apply_readings(idx[rest], subset(readings, rest))
        self.state.samples += int(idx.size)

    async def _journal(self, journal: Journal, header: dict[str, Any]) -> None:
        defs: list[list[Any]] = header.get("defs") or []
        rows: list[list[Any]] = [r for r in header.get("rows") or [] if int(r[0]) > self.state.applied_id]
        await asyncio.to_thread(journal.insert_copied, defs, rows)
        for d in defs:
            self._alarms[int(d[0])] = str(d[1])
        if rows:
            self.state.applied_id = int(rows[-1][0])
            self.state.rows += len(rows)
            self._states(rows)

    def _orders(self, orders: WorkOrderStore, rows: list[list[Any]]) -> None:
        """The active's work-order changes through the store's own commit (its state machine, its listeners: the
        standby's consoles see them): the same changes in the same order get the same seqs here."""
        rows = [r for r in rows if int(r[0]) > self.state.wo_applied]
        if not rows:
            return
        orders.commit_copied([Change(str(r[1]), int(r[2]), str(r[3]), Action(r[4]), r[5], r[6]) for r in rows])
        last = orders.count()[1]
        if last != int(rows[-1][0]):
            raise RuntimeError(f"the work-order copy is out of step: change {rows[-1][0]} of the active is {last} "
                               "here")
        self.state.wo_applied = last

    def _states(self, rows: list[list[Any]]) -> None:
        """The alarm engine's states from the copied rows: every row carries its alarm's whole state after it
        (scada.journal), so the last row of each alarm is its state, acknowledgements, shelving, suppression
        and out-of-service included."""
        engine = self.sink.engine()
        if engine is None:
            return
        # row: id, ts_ms, ref, event, outcome, state, prev_state, flags, value, quality, user, comment, detail,
        #      until_ms, since_ms
        last: dict[str, RestoredState] = {}
        timed, oos = int(Flag.SHELVED_TIMED), int(Flag.OUT_OF_SERVICE)
        for r in rows:
            ref = r[2]
            alarm = self._alarms.get(int(ref)) if ref is not None else None
            if alarm is None:
                continue
            flags = int(r[7])
            work_order = r[12] if (flags & oos and int(r[3]) == int(Event.REMOVE_FROM_SERVICE)) else None
            if flags & oos and work_order is None and alarm in last:
                work_order = last[alarm].work_order
            last[alarm] = RestoredState(alarm, _STATES[int(r[5])], flags, int(r[1]), r[14],
                                        r[13] if flags & timed else None, work_order)
        if last:
            engine.restore(last)


def subset(r: Readings, pos: npt.NDArray[np.int64]) -> Readings:
    """The readings at positions ``pos`` (texts renumbered)."""
    out = Readings(int(pos.size))
    out.values, out.qualities = r.values[pos], r.qualities[pos]
    out.source_ns, out.receive_ns = r.source_ns[pos], r.receive_ns[pos]
    where = {int(p): k for k, p in enumerate(pos.tolist())}
    out.texts = {where[k]: t for k, t in r.texts.items() if k in where}
    return out
