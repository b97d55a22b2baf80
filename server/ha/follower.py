"""The standby's side of the replication stream (server.ha.replication draws the whole stream): Follower
connects to the active's ``PATH`` (server.ha.wire), applies what comes into a Sink, acknowledges, reconnects.

    hello {fingerprint, journal tip + candidates, set_aside, audit, workorders} ──► the active (server.ha.feed)
    ◄── refused / config       FollowerState.refused (P2 ha/not_in_sync through Sink.on_state); retried
    ◄── diverged {row, ref}    Journal.set_aside_after (its own rows kept in a file), the alarm states as of
                               the common point, Sink.on_set_aside; a new hello at once
    ◄── tags                   junction tags ──► Sink.apply_junctions (the field-safety thread decides first);
                               the rest ──► TagDatabase.apply_readings
    ◄── history                the active's stored points since this standby's last sample (hello gap_from: it
                               was not fed) ──► Sink.backfill (Historian.backfill, at their source times)
    ◄── journal                Journal.insert_copied ──► the alarm engine's states from the rows' carried state
    ◄── state                  Sink.apply_state (server.ha.state.Replica)
    ◄── audit                  AuditLog.append_copied (verbatim: one chain)
    ◄── workorders             PhotoStore.add_copied (the photo files they name), then
                               WorkOrderStore.commit_copied (same changes, same seqs)
    ack {journal, audit, workorders: last applied} ──►

Stale (no frame for ``stale_after_s``) and fresh again are said once each, to the log and to Sink.on_state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from scada.alarms.states import AlarmState, Event, Flag
from scada.errors import Refused
from scada.journal import Journal, RestoredState
from scada.tagdb import Readings, TagDatabase
from scada.workorders.model import Action, Change
from scada.workorders.photos import PhotoStore
from scada.workorders.store import WorkOrderStore
from server.ha.wire import PATH, decode

if TYPE_CHECKING:
    from failsafe.audit import AuditLog
    from scada.alarms.engine import AlarmEngine

log = logging.getLogger(__name__)

STALE_AFTER_S = 2.0  # the standby's stream is stale after this long without a frame
_STATES = {int(s): s for s in AlarmState}


@dataclass
class FollowerState:
    connected: bool = False
    last_frame: float = 0.0  # monotonic
    applied_id: int = 0
    audit_applied: int = 0  # the command audit log's last copied entry (seq)
    wo_applied: int = 0  # the last copied work-order change (seq)
    samples: int = 0
    backfilled: int = 0  # points of the active's historian stored here for a period this standby was not fed
    rows: int = 0
    refused: str = ""
    #: the configuration the active runs, as its last "config" or "refused" frame said ("" before any)
    active_fingerprint: str = ""
    error: str = ""
    stale: bool = True
    history: list[str] = field(default_factory=list)


class Sink(Protocol):
    """Where the standby puts what it receives (server.components.ha_sink.HaSink wires the server's parts)."""

    def tagdb(self) -> TagDatabase: ...

    def journal(self) -> Journal | None: ...

    def engine(self) -> AlarmEngine | None: ...

    def fingerprint(self) -> str: ...

    def audit(self) -> AuditLog | None:
        """The command audit log (None: no fail-safe layer here)."""
        ...

    def workorders(self) -> WorkOrderStore | None: ...

    def photos(self) -> PhotoStore | None:
        """The work orders' photo files (None: no work orders here)."""
        ...

    def backfill(self, indices: npt.NDArray[np.int64], readings: Readings) -> int:
        """Store the active's historian points of a period this standby was not fed (called in a worker
        thread); returns how many were stored (0: no historian here)."""
        ...

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
        self._retry = asyncio.Event()  # set: reconnect now (this standby reloaded), not after the pause
        #: what this standby set aside of its own journal (it diverged): said in the next hello, once accepted
        self.set_aside: dict[str, Any] | None = None
        #: the newest source time of the samples applied here (0: none yet): the next session fills its historian
        #: from there (the period it was not fed)
        self.last_source_ns = 0

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry.wait(), timeout=0.5 if not self.state.refused else 5.0)
            self._retry.clear()

    def retry_now(self) -> None:
        """Reconnect at once (this standby reloaded its configuration: its next hello may be accepted)."""
        self._retry.set()

    async def _session(self) -> None:
        await self.sink.ready()
        journal, audit, orders = self.sink.journal(), self.sink.audit(), self.sink.workorders()
        if journal is None:
            raise RuntimeError("no journal")
        tip = await asyncio.to_thread(journal.tip)
        self._alarms = {int(r[0]): str(r[1]) for r in await asyncio.to_thread(journal.raw_defs_after, 0)}
        rows, defs = await asyncio.to_thread(journal.candidates)
        hello: dict[str, Any] = {"fingerprint": self.sink.fingerprint(), "journal": list(tip),
                                 "candidates": {"rows": rows, "defs": defs}, "set_aside": self.set_aside,
                                 "gap_from": self.last_source_ns or None}
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
                    self.state.active_fingerprint = str(header.get("fingerprint") or "")
                    self.state.connected = False
                    log.error("ha replication from %s refused: %s", self.url, self.state.refused)
                    self.sink.on_state(self.state)
                    return
                if kind == "config":  # the active reloaded another configuration: this one is not fed any more
                    self.state.active_fingerprint = str(header["fingerprint"])
                    self.state.refused = (f"the active server reloaded its configuration (now {header['fingerprint']},"
                                          f" this standby runs {hello['fingerprint']}): reload this standby on the "
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
                if kind == "history":  # stored as they are, at their source times: not the live values
                    idx, readings = self._readings(header, arrays)
                    self.state.backfilled += await asyncio.to_thread(self.sink.backfill, idx, readings)
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
                    await asyncio.to_thread(self._orders, orders, header["rows"], header.get("photos") or [],
                                            arrays[0] if arrays else np.zeros(0, dtype=np.uint8))
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

    def _readings(self, header: dict[str, Any], arrays: list[npt.NDArray[Any]]
                  ) -> tuple[npt.NDArray[np.int64], Readings]:
        """A tags (or history) frame as the main database's indices and their readings."""
        idx, values, qualities, source_ns, receive_ns = arrays
        readings = Readings(int(idx.size))
        readings.values, readings.qualities = values.copy(), qualities.copy()
        readings.source_ns, readings.receive_ns = source_ns.copy(), receive_ns.copy()
        readings.texts = {int(k): v for k, v in header.get("texts", {}).items()}
        ok = np.flatnonzero(idx < len(self.sink.tagdb())).astype(np.int64)  # a frame from a larger database
        return idx[ok].astype(np.int64), readings.take(ok)

    async def _tags(self, header: dict[str, Any], arrays: list[npt.NDArray[Any]]) -> None:
        db = self.sink.tagdb()
        idx, readings = self._readings(header, arrays)
        if idx.size:
            self.last_source_ns = max(self.last_source_ns, int(readings.source_ns.max()))
        # the junctions' tags go through the field-safety thread's database (its monitor decides first, then
        # they reach the main database); the rest straight into the main one
        taken = await self.sink.apply_junctions(idx, readings)
        rest = np.flatnonzero(~taken).astype(np.int64)
        if rest.size:
            db.apply_readings(idx[rest], readings.take(rest))
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

    def _orders(self, orders: WorkOrderStore, rows: list[list[Any]], photos: list[list[Any]],
                body: npt.NDArray[np.uint8]) -> None:
        """The active's work-order changes through the store's own commit (its state machine, its listeners: the
        standby's consoles see them): the same changes in the same order get the same seqs here. The photo files
        they name are stored first (PhotoStore.add_copied: the active's cleaned bytes, checked against their
        name); a purge's change deletes the files it names here too."""
        store = self.sink.photos()
        pos = 0
        for order_id, name, size in photos:
            data = body[pos:pos + int(size)].tobytes()
            pos += int(size)
            if store is not None:
                store.add_copied(str(order_id), str(name), data)
        rows = [r for r in rows if int(r[0]) > self.state.wo_applied]
        if not rows:
            return
        orders.commit_copied([Change(str(r[1]), int(r[2]), str(r[3]), Action(r[4]), r[5], r[6]) for r in rows])
        for r in rows:
            if store is not None and Action(r[4]) is Action.PHOTOS_PURGED:
                for name in r[5].get("photos") or []:
                    with contextlib.suppress(Refused):  # not here (never copied): nothing to delete
                        store.remove(str(r[1]), str(name))
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
