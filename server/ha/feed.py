"""The active's side of the replication stream (server.ha.replication draws the whole stream): Feed serves one
standby's WebSocket at a time.

    hello ──► _check: the same configuration (server.ha.wire fingerprints)? the standby's journal a prefix of
              this one (_journal_common: else "diverged" with the common point, and the standby sets its own
              rows aside)? the newest offered audit entry held here (common_point)? its work orders a prefix
              (_orders_diverged)? ── no: "refused" {why} (P2 ha/not_in_sync on both)
    then, every TAGS_EVERY_S or at once when woken (sync):
        state     the server.ha.state snapshot when it changed (compared every STATE_EVERY_S), the audit tip
                  read before it
        audit     the command audit log's entries after the common point, up to that tip
        workorders the work-order changes after the standby's last one, with the photo files they name
        journal   rows and the alarm definitions they reference, under their own ids
        config    this server reloaded (its fingerprint moved): the session ends
        history   a standby not fed since a source time (hello ``gap_from``): this historian's points of that
                  period (server.ha.wire.history_frames), HISTORY_TAGS tags per round
        tags      server.ha.wire.tags_frame (every tag whose receive time moved)
        beat      at least every BEAT_EVERY_S
    ◄── ack {journal, audit, workorders}: ``sync()`` lets an operator action's answer go once the standby holds
        everything written so far (bounded by the caller's timeout)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from scada.errors import Refused
from scada.journal import Journal
from scada.tagdb import TagDatabase
from scada.workorders.model import Action
from scada.workorders.photos import PhotoStore
from scada.workorders.store import ChangeRow, WorkOrderStore
from server.ha.wire import encode, history_frames, tags_frame

if TYPE_CHECKING:
    from failsafe.audit import AuditLog
    from historian.service import Historian

log = logging.getLogger(__name__)

TAGS_EVERY_S = 0.1  # the active's frame period (tag rows, journal rows)
BEAT_EVERY_S = 0.5  # a frame at least this often, so that a silent stream means a broken one
JOURNAL_ROWS = 5000  # journal rows per frame (catching up a long journal)
AUDIT_LINES = 2000  # audit entries per frame
WORKORDER_ROWS = 2000  # work-order changes per frame
STATE_EVERY_S = 0.5  # the state snapshot is compared this often (at once when an operator action waits)
HISTORY_TAGS = 2000  # tags whose stored points of a reconnecting standby's gap are read per round
PHOTO_BYTES = 32 << 20  # photo files per frame (a photo is at most 8 MB: scada.workorders.photos.MAX_BYTES)


class Channel(Protocol):
    """The WebSocket as the feed uses it (Starlette's on the active's side)."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive_text(self) -> str: ...


class Feed:
    """The active's side: serves one standby at a time (a new connection replaces the old one)."""

    def __init__(self, tagdb: Callable[[], TagDatabase], journal: Callable[[], Journal | None],
                 fingerprint: Callable[[], str], city_tags: Callable[[], int], *,
                 audit: Callable[[], AuditLog | None] = lambda: None,
                 state: Callable[[], dict[str, Any]] | None = None,
                 workorders: Callable[[], WorkOrderStore | None] = lambda: None,
                 photos: Callable[[], PhotoStore | None] = lambda: None,
                 historian: Callable[[], Historian | None] = lambda: None,
                 on_set_aside: Callable[[dict[str, Any]], None] = lambda info: None) -> None:
        self.tagdb, self.journal, self.fingerprint, self.city_tags = tagdb, journal, fingerprint, city_tags
        self.audit, self.state, self.workorders, self.photos = audit, state, workorders, photos
        self.historian = historian
        self.history_sent = 0  # points of this server's historian sent to fill a reconnecting standby's gap
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
            await ws.send_bytes(encode({"k": "refused", "why": why, "fingerprint": self.fingerprint()}))
            return
        self.refused = partial
        self.sent_id = self.acked_id = last_id
        sent_ref = last_ref
        # the standby was not fed since a source time (its last session's newest sample): this historian's points
        # of that period, tag by tag up to the sample the first tags frame below carries (server.ha.wire)
        gap = await asyncio.to_thread(self._gap, hello.get("gap_from"))
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
                    full = len(changes) >= WORKORDER_ROWS
                    n_read = len(changes)
                    changes, photos, body = await asyncio.to_thread(_with_photos, changes, self.photos())
                    if changes:
                        # the photo files first in the frame: the standby stores them before the changes naming them
                        await ws.send_bytes(encode({"k": "workorders", "photos": photos, "rows": [
                            [r.seq, r.change.order_id, r.change.ts_ms, r.change.user, str(r.change.action),
                             dict(r.change.data), r.change.idem] for r in changes]}, [body]))
                        self.sent_wo, sent = changes[-1].seq, True
                        more = more or full or len(changes) < n_read  # cut by the photos' bytes: go on
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
                if gap is not None:  # HISTORY_TAGS tags per round, between the live frames
                    hist, names, todo, after, before = gap
                    part, todo = todo[:HISTORY_TAGS], todo[HISTORY_TAGS:]
                    for data, count in await asyncio.to_thread(history_frames, hist, names, part, after, before):
                        await ws.send_bytes(data)
                        self.history_sent += count
                        sent = True
                    gap = (hist, names, todo, after, before) if todo.size else None
                    more = more or gap is not None
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

    def _gap(self, gap_from: Any) -> tuple[Historian, list[str], npt.NDArray[np.int64], int,
                                           npt.NDArray[np.int64]] | None:
        """What to send of this server's historian to a standby that was not fed since ``gap_from`` (source time,
        ns; None: nothing): its recorded city tags, and each one's source time now (the first tags frame's)."""
        hist = self.historian()
        if not gap_from or hist is None or hist.recorder is None:
            return None
        db, n = self.tagdb(), self.city_tags()
        todo = np.flatnonzero(hist.recorder.recorded[:n]).astype(np.int64)
        return hist, list(db.names), todo, int(gap_from), db.source_ns[:n].copy()

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
                "history_sent": self.history_sent,
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


def _with_photos(changes: list[ChangeRow], store: PhotoStore | None
                 ) -> tuple[list[ChangeRow], list[list[Any]], npt.NDArray[np.uint8]]:
    """The photo files the work-order changes name (a note with ``photo``: a crew's or a citizen's), as
    ``[order, name, size]`` and their bytes back to back; the changes cut after PHOTO_BYTES of files. A file
    gone meanwhile (purged) is left out: the purge's own change follows."""
    photos: list[list[Any]] = []
    chunks: list[bytes] = []
    total = 0
    for n, r in enumerate(changes):
        name = r.change.data.get("photo") if store is not None and r.change.action is Action.NOTE else None
        if not isinstance(name, str):
            continue
        try:
            data = store.path(r.change.order_id, name).read_bytes() if store is not None else b""
        except (Refused, OSError):
            continue
        if chunks and total + len(data) > PHOTO_BYTES:
            changes = changes[:n]  # the rest in the next frame
            break
        photos.append([r.change.order_id, name, len(data)])
        chunks.append(data)
        total += len(data)
    return changes, photos, np.frombuffer(b"".join(chunks), dtype=np.uint8)


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
