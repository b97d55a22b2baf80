"""WebSocket fan-out: tag and alarm changes to consoles, batched, with bounded memory per client.

    TagDatabase ──on_tags(event)──►  per client: dirty bit per subscribed tag (numpy bool column)
    alarm engine ─on_alarm(event)─►  per client: bounded deque of alarm events (overflow ⇒ resync)
                                         │ every `batch_s` (100 ms) the flusher builds ONE delta per
                                         ▼ client from the *current* values of its dirty tags
                                   send queue (≤ `queue` messages) ──► sender task ──► websocket
                                         │ queue full = slow consumer: drop the queued deltas, clear
                                         ▼ the dirty bits, queue one fresh snapshot (reason "resync")

    work-order store ─on_workorders(orders)─► per client subscribed with "workorders": the last state of each
                                         changed order (by id: coalesced like the tags), in the same delta

A storm of 34,000 changes costs one dirty-bit assignment per client per batch and one message per
client per 100 ms, whatever the rate: coalescing keeps the last value, and memory per client is one
byte per tag plus at most `queue` messages. Nothing grows with the change rate.

Protocol (JSON text frames)::

    client → server  {"type": "auth", "token": "..."}           (if no Authorization header was sent)
                     {"type": "subscribe", "tags": ["dijon/lighting/*"], "equipment": ["C0001"],
                      "areas": ["Dijon"], "domains": ["lighting"], "alarms": true, "workorders": true}
                     {"type": "ping"}
    server → client  {"type": "hello", "user": ..., "role": ..., "batch_ms": 100, "server_time_ms": ...}
                     {"type": "snapshot", "seq": 1, "reason": "subscribe"|"resync"|"reload",
                      "tags": [[name, value, quality, source_ms], ...], "alarms": [alarm, ...]}
                     {"type": "delta", "seq": 2, "tags": [[name, value, quality, source_ms], ...],
                      "alarms": [alarm event, ...],
                      "workorders": [{"event": "created"|"changed", id, status, ... as GET /workorders/{id}}]}
                      (the "workorders" key only when the client asked for them and some changed, in a snapshot
                      too: a console subscribes first, then reads GET /workorders, then applies the events by
                      id; after a snapshot of reason "resync" it reads GET /workorders again, since a slow
                      consumer's dropped deltas may have held order events)
                     {"type": "pong"} | {"type": "error", "what": ..., "why": ...}

``seq`` grows by one per message to a client: a gap means the client missed something and should
resubscribe (the server never leaves gaps; it resynchronises instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from scada.config.model import CityConfig
from scada.config.units import slug
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]
AlarmSnapshot = Callable[[], list[dict[str, Any]]]
BoolArray = npt.NDArray[np.bool_]

MAX_ALARM_EVENTS = 2000  # per client between two flushes; beyond that the client gets a fresh alarm list


@dataclass
class Subscription:
    tags: list[str] = field(default_factory=list)
    equipment: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    alarms: bool = True
    workorders: bool = False

    @classmethod
    def parse(cls, msg: dict[str, Any]) -> Subscription:
        def strings(key: str) -> list[str]:
            v = msg.get(key, [])
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"'{key}' must be a list of strings")
            if len(v) > 1000:
                raise ValueError(f"'{key}' may list at most 1000 entries")
            return list(v)

        alarms, workorders = msg.get("alarms", True), msg.get("workorders", False)
        if not isinstance(alarms, bool) or not isinstance(workorders, bool):
            raise ValueError("'alarms' and 'workorders' must be true or false")
        return cls(strings("tags"), strings("equipment"), strings("areas"), strings("domains"), alarms, workorders)


class Client:
    """One connected console: its subscription, dirty bits, pending alarm events and send queue."""

    def __init__(self, cid: int, user: str, send: Send, queue_size: int, n_tags: int) -> None:
        self.id = cid
        self.user = user
        self.send = send
        self.sub: Subscription | None = None
        self.mask: BoolArray = np.zeros(n_tags, dtype=bool)
        self.dirty: BoolArray = np.zeros(n_tags, dtype=bool)
        self.alarm_areas: set[str] = set()
        self.alarm_equipment: set[str] = set()
        self.alarm_events: deque[dict[str, Any]] = deque()
        self.alarm_overflow = False
        self.workorders: dict[str, dict[str, Any]] = {}  # order id → its last state since the last flush
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.seq = 0
        self.resyncs = 0
        self.sent = 0
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self.needs_snapshot: str | None = None


class Hub:
    """Fans tag and alarm changes out to WebSocket clients."""

    def __init__(self, config: CityConfig, tagdb: TagDatabase, batch_s: float = 0.1, queue_size: int = 16,
                 alarm_snapshot: AlarmSnapshot | None = None) -> None:
        self.batch_s = batch_s
        self.queue_size = queue_size
        self.alarm_snapshot: AlarmSnapshot = alarm_snapshot or (lambda: [])
        self.clients: dict[int, Client] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._unsub: Callable[[], None] | None = None
        self.stats = {"deltas": 0, "snapshots": 0, "resyncs": 0, "tag_rows": 0, "alarm_events": 0,
                      "workorder_events": 0}
        self.bind(config, tagdb)

    # ------------------------------------------------------------------ wiring
    def bind(self, config: CityConfig, tagdb: TagDatabase) -> None:
        """(Re)attach to a tag database (after a configuration reload every client gets a snapshot)."""
        if self._unsub is not None:
            self._unsub()
        self.config = config
        self.tagdb = tagdb
        n = len(tagdb)
        eq_area: dict[str, str] = {e.id: e.commune for e in config.equipment.values()}
        eq_domain: dict[str, str] = {e.id: e.domain for e in config.equipment.values()}
        self._area_of_tag = [eq_area.get(t.equipment, "") for t in tagdb.defs]
        self._by_area: dict[str, list[int]] = {}
        self._by_domain: dict[str, list[int]] = {}
        for i, t in enumerate(tagdb.defs):
            area = eq_area.get(t.equipment)
            if area:
                self._by_area.setdefault(area, []).append(i)
                self._by_area.setdefault(slug(area), []).append(i)
            dom = eq_domain.get(t.equipment)
            if dom:
                self._by_domain.setdefault(dom, []).append(i)
        self._kind = np.array([{"bool": 1, "int": 2, "enum": 2, "string": 3}.get(t.dtype, 0) for t in tagdb.defs],
                              dtype=np.uint8)
        with self._lock:
            for c in self.clients.values():
                c.mask = np.zeros(n, dtype=bool)
                c.dirty = np.zeros(n, dtype=bool)
                if c.sub is not None:
                    self._apply_subscription(c, c.sub)
                    c.needs_snapshot = "reload"
        self._unsub = tagdb.subscribe(self.on_tags)

    def _apply_subscription(self, c: Client, sub: Subscription) -> None:
        mask = np.zeros(len(self.tagdb), dtype=bool)
        for pattern in sub.tags:
            mask[self.tagdb.match(pattern)] = True
        for eq in sub.equipment:
            mask[self.tagdb.equipment_indices(eq)] = True
        for area in sub.areas:
            mask[self._by_area.get(area, [])] = True
        for dom in sub.domains:
            mask[self._by_domain.get(dom, [])] = True
        c.mask = mask
        c.dirty = np.zeros(len(self.tagdb), dtype=bool)
        c.alarm_areas = {a for a in sub.areas} | {slug(a) for a in sub.areas}
        c.alarm_equipment = set(sub.equipment)
        c.sub = sub

    def unknown_filters(self, sub: Subscription) -> list[str]:
        """Areas, equipment and domains the configuration does not know (reported to the client)."""
        out = [f"area {a!r}" for a in sub.areas if a not in self._by_area]
        out += [f"equipment {e!r}" for e in sub.equipment if e not in self.config.equipment]
        out += [f"domain {d!r}" for d in sub.domains if d not in self._by_domain]
        return out

    def alarm_wanted(self, c: Client, alarm: dict[str, Any]) -> bool:
        if c.sub is None or not c.sub.alarms:
            return False
        if not c.alarm_areas and not c.alarm_equipment and not c.sub.tags and not c.sub.domains:
            return True
        area = str(alarm.get("area", ""))
        if area in c.alarm_areas or slug(area) in c.alarm_areas:
            return True
        if str(alarm.get("equipment", "")) in c.alarm_equipment:
            return True
        tag = alarm.get("tag")
        if isinstance(tag, str):
            i = self.tagdb.index.get(tag)
            if i is not None and c.mask[i]:
                return True
        return False

    # ------------------------------------------------------------------ inputs (any thread)
    def on_tags(self, event: ChangeEvent) -> None:
        with self._lock:
            for c in self.clients.values():
                if c.sub is not None:
                    idx = event.indices[c.mask[event.indices]]
                    c.dirty[idx] = True

    def on_alarm(self, alarm: dict[str, Any]) -> None:
        with self._lock:
            for c in self.clients.values():
                if self.alarm_wanted(c, alarm):
                    if len(c.alarm_events) >= MAX_ALARM_EVENTS:
                        c.alarm_overflow = True
                        c.alarm_events.clear()
                    elif not c.alarm_overflow:
                        c.alarm_events.append(alarm)

    def on_workorders(self, orders: list[dict[str, Any]]) -> None:
        """Changed work orders (dicts with ``id``), for the clients that subscribed to them; any thread."""
        with self._lock:
            for c in self.clients.values():
                if c.sub is not None and c.sub.workorders:
                    for o in orders:
                        c.workorders[str(o["id"])] = o

    # ------------------------------------------------------------------ clients
    async def connect(self, user: str, send: Send) -> Client:
        with self._lock:
            c = Client(self._next_id, user, send, self.queue_size, len(self.tagdb))
            self._next_id += 1
            self.clients[c.id] = c
        c.task = asyncio.create_task(self._sender(c), name=f"ws-sender-{c.id}")
        return c

    async def disconnect(self, c: Client) -> None:
        with self._lock:
            self.clients.pop(c.id, None)
        if c.task is not None:
            c.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await c.task

    def subscribe(self, c: Client, sub: Subscription) -> None:
        with self._lock:
            self._apply_subscription(c, sub)
            c.alarm_events.clear()
            c.alarm_overflow = False
            c.needs_snapshot = "subscribe"

    def push(self, c: Client, message: dict[str, Any]) -> None:
        """Queue a control message (pong, error) — these may be dropped only by a resync."""
        self._enqueue(c, message)

    # ------------------------------------------------------------------ flushing
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flusher(), name="ws-flusher")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for c in list(self.clients.values()):
            await self.disconnect(c)
        if self._unsub is not None:
            self._unsub()
            self._unsub = None

    async def _flusher(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.flush()
            except Exception:  # one client's failure must not stop the flushes to the others (logged)
                log.exception("websocket flush failed")
            await asyncio.sleep(max(0.0, self.batch_s - (time.monotonic() - started)))

    def flush(self) -> None:
        """Build and queue one message per client with something to send."""
        alarms_cache: list[dict[str, Any]] | None = None
        with self._lock:
            clients = list(self.clients.values())
        for c in clients:
            with self._lock:
                reason = c.needs_snapshot
                c.needs_snapshot = None
                idx = np.flatnonzero(c.dirty)
                c.dirty[idx] = False
                events = list(c.alarm_events)
                c.alarm_events.clear()
                overflow = c.alarm_overflow
                c.alarm_overflow = False
                orders = list(c.workorders.values())
                c.workorders.clear()
            if reason is not None:
                if alarms_cache is None:
                    alarms_cache = self.alarm_snapshot()
                self._snapshot(c, reason, alarms_cache, orders)
                continue
            if overflow:  # too many alarm events to replay: send the current list instead
                if alarms_cache is None:
                    alarms_cache = self.alarm_snapshot()
                self._snapshot(c, "resync", alarms_cache, orders)
                continue
            if idx.size == 0 and not events and not orders:
                continue
            rows = self.rows(idx)
            self.stats["deltas"] += 1
            self.stats["tag_rows"] += len(rows)
            self.stats["alarm_events"] += len(events)
            self.stats["workorder_events"] += len(orders)
            self._enqueue(c, {"type": "delta", "tags": rows, "alarms": events,
                              **({"workorders": orders} if orders else {})})

    def _snapshot(self, c: Client, reason: str, alarms: list[dict[str, Any]], orders: list[dict[str, Any]]) -> None:
        if c.sub is None:
            return
        idx = np.flatnonzero(c.mask)
        wanted = [a for a in alarms if self.alarm_wanted(c, a)]
        self.stats["snapshots"] += 1
        # the orders changed since the last flush ride along (a snapshot holds no order list: GET /workorders)
        self._enqueue(c, {"type": "snapshot", "reason": reason, "tags": self.rows(idx), "alarms": wanted,
                          **({"workorders": orders} if orders else {})})

    def _enqueue(self, c: Client, message: dict[str, Any]) -> None:
        if message["type"] in ("delta", "snapshot"):
            c.seq += 1
            message = {"type": message["type"], "seq": c.seq, **{k: v for k, v in message.items() if k != "type"}}
        text = json.dumps(message, separators=(",", ":"), allow_nan=False, default=str)
        try:
            c.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._resync(c)

    def _resync(self, c: Client) -> None:
        """Slow consumer: drop what is queued and schedule a fresh snapshot for the next flush."""
        dropped = 0
        while not c.queue.empty():
            c.queue.get_nowait()
            dropped += 1
        c.dropped += dropped
        c.resyncs += 1
        self.stats["resyncs"] += 1
        with self._lock:
            c.dirty[:] = False
            c.alarm_events.clear()
            c.needs_snapshot = "resync"
        log.warning("websocket client %d (%s): slow consumer, %d queued messages dropped, resynchronising",
                    c.id, c.user, dropped)

    async def _sender(self, c: Client) -> None:
        while True:
            text = await c.queue.get()
            await c.send(text)
            c.sent += 1

    # ------------------------------------------------------------------ rows
    def rows(self, idx: Iterable[int] | npt.NDArray[np.int64]) -> list[list[Any]]:
        """``[name, value, quality, source_ms]`` for each index, from the current columns."""
        db = self.tagdb
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return []
        values = db.values[idx]
        quals = db.qualities[idx].tolist()
        src = (db.source_ns[idx] // 1_000_000).tolist()
        kinds = self._kind[idx].tolist()
        names = db.names
        out: list[list[Any]] = []
        nan = np.isnan(values)
        vlist = values.tolist()
        labels = QUALITY_LABELS
        for j, i in enumerate(idx.tolist()):
            k = kinds[j]
            v: Any
            if k == 3:
                v = db.strings.get(i) if not nan[j] else None
            elif nan[j]:
                v = None
            elif k == 1:
                v = bool(vlist[j])
            elif k == 2:
                v = int(vlist[j])
            else:
                v = vlist[j]
            out.append([names[i], v, labels[quals[j]], src[j]])
        return out

    def stats_dict(self) -> dict[str, Any]:
        with self._lock:
            clients = [{"id": c.id, "user": c.user, "queued": c.queue.qsize(), "sent": c.sent,
                        "resyncs": c.resyncs, "dropped": c.dropped,
                        "subscribed_tags": int(c.mask.sum())} for c in self.clients.values()]
        return {**self.stats, "clients": clients, "batch_ms": round(self.batch_s * 1000), "queue": self.queue_size}


QUALITY_LABELS = ["good", "uncertain", "bad_comm", "bad_device", "bad_config", *[f"q{i}" for i in range(5, 256)]]

_GLOB = re.compile(r"[*?\[]")


def is_glob(text: str) -> bool:
    return bool(_GLOB.search(text))


def match_any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
