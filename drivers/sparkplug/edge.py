"""A Sparkplug B Edge Node: the poll scheduler and drivers for one partition, published over MQTT.

    field ──► drivers (registry) ──► scada.poll.Poller ──► edge TagDatabase (partition's tags + device stats)
                                                                 │ change events (deadbands applied there)
                                                                 ▼
          queue: DDATA per device, by exception ─┬─ broker + primary host online ──► publish (seq 0-255)
                 DDEATH / DBIRTH on a device's     └─ away ──► ForwardStore (SQLite), replayed with is_historical
                 status lost / back

The poller, the driver factory and the tag database are the server's own (server.components.poll builds
them the same way): one poll per device wherever it runs. A metric's alias is its tag's index in the edge's
tag database; its name is the tag's name, the same on the server.

One MQTT session (aiomqtt over paho-mqtt)::

    connect (will: NDEATH with the session's bdSeq, QoS 1) ─► subscribe NCMD, DCMD, STATE/<primary host>
      ─► wait for the host's STATE online (no primary host configured: at once)
      ─► NBIRTH (seq 0, bdSeq, Node Control/Rebirth, Store/Backlog) ─► DBIRTH per device (every metric:
         name, alias, datatype, engUnit, value, Quality, timestamp), DDEATH right after for a lost device
      ─► replay of the store, oldest first (is_historical), then the live queue
      NCMD Node Control/Rebirth, or the host's STATE going online again ─► NBIRTH + DBIRTHs again
      broker gone (a publish not acknowledged) ─► what is queued and the unacknowledged message go to the store;
      reconnect with back-off (0.5 s doubling to 5 s), next bdSeq

Data and births are published at QoS 1, not the QoS 0 that Sparkplug recommends: a message is only
dropped from the queue or the store once the broker has acknowledged it, so that a dying connection
loses nothing (a message in doubt is sent again as historical: the host keeps the newest value).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from drivers.registry import DriverFactory
from drivers.sparkplug import codec
from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.store import ForwardStore
from drivers.sparkplug.topics import Topic, device_topic, node_topic, parse_state, state_topic
from scada.config.model import CityConfig
from scada.config.partitions import Broker
from scada.poll import LOST, REFUSED, Poller, device_stat_tags, stat_tag_name
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

BACKLOG = "Store/Backlog"
REPLAY_BATCH = 200


@dataclass(slots=True)
class _Device:
    name: str
    indices: np.ndarray[Any, np.dtype[np.int64]]  # its tags' and statistics tags' indices in the edge database
    defs: list[codec.MetricDef]
    status_index: int
    dead: bool = False  # a DDEATH was published (or is due) and no DBIRTH since


@dataclass(slots=True)
class EdgeStats:
    sessions: int = 0
    births: int = 0
    published: int = 0
    stored: int = 0
    replayed: int = 0
    rebirth_requests: int = 0
    host_online: bool = False
    connected: bool = False
    last_error: str = ""
    events: deque[str] = field(default_factory=lambda: deque(maxlen=50))


class EdgeNode:
    """Poll the devices of partition ``partition`` of ``config`` and publish them as Sparkplug node ``partition``.

    ``host_id``: the primary host application whose STATE gates publishing (None: publish whenever connected).
    ``store_path``: the store-and-forward SQLite file. ``factory``: the driver factory (default: the registry's).
    """

    def __init__(self, config: CityConfig, partition: str, broker: Broker, store_path: Path, *,
                 host_id: str | None = None, group: str | None = None, factory: DriverFactory | None = None,
                 keepalive_s: int = 5, max_stored: int = 1_000_000, qos: int = 1, username: str | None = None,
                 password: str | None = None) -> None:
        if partition not in config.partitions:
            raise KeyError(f"no partition {partition!r}; partitions: {', '.join(config.partitions) or 'none'}")
        self.config = config
        self.partition = config.partitions[partition]
        self.node = partition
        self.group = group or config.site
        self.broker = broker
        self.host_id = host_id
        self.keepalive_s = keepalive_s
        self.qos = qos
        self.username, self.password = username, password  # the broker's credential of this edge (broker.py)
        names = self.partition.devices
        by_name = config.tag_by_name()
        stat_defs = device_stat_tags(config, names)
        tags = [by_name[t] for n in names for t in config.devices[n].tags]
        self.db = TagDatabase([*tags, *stat_defs])
        self.factory = factory if factory is not None else DriverFactory(config)
        self.poller = Poller(config, self.factory, self.db, devices=names)
        self.devices: dict[str, _Device] = {}
        self.device_of = np.full(len(self.db), -1, dtype=np.int64)  # tag index → position in self.devices
        for k, n in enumerate(names):
            idx = self.db.indices([*config.devices[n].tags, *(t.name for t in stat_defs if t.device == n)])
            self.devices[n] = _Device(n, idx, [codec.MetricDef.of(self.db.defs[i], int(i)) for i in idx.tolist()],
                                      self.db.index[stat_tag_name(n, "status")])
            self.device_of[idx] = k
        self._order = list(self.devices.values())
        self.store = ForwardStore(store_path, max_rows=max_stored)
        self.queue: deque[tuple[str, str, pb.Payload | None]] = deque()  # (kind, device, payload)
        self.wakeup = asyncio.Event()
        self.stats = EdgeStats()
        self.client: aiomqtt.Client | None = None
        self.host_online = asyncio.Event()
        self.host_session = 0  # the host STATE's timestamp: a new one means a new host session → rebirth
        self.rebirth = False
        self.seq = 0
        self.bd_seq = -1
        self._unsubscribe = self.db.subscribe(self._on_change)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ change events → queue
    def _on_change(self, event: ChangeEvent) -> None:
        """One DDATA per device that changed (its changed metrics only); DDEATH/DBIRTH on a status change."""
        if not len(event):
            return
        now = time.time_ns()
        pos = self.device_of[event.indices]
        for k in np.unique(pos[pos >= 0]).tolist():
            dev = self._order[k]
            mask = pos == k
            sel = event.subset(mask)
            local = {int(i): j for j, i in enumerate(dev.indices.tolist())}
            defs = [dev.defs[local[int(i)]] for i in sel.indices.tolist()]
            texts = {j: str(self.db.strings[int(i)]) for j, i in enumerate(sel.indices.tolist())
                     if self.db.is_string[int(i)] and int(i) in self.db.strings}
            payload = codec.build_metrics(defs, sel.new_values, sel.new_qualities, sel.source_ns, texts,
                                          timestamp_ns=now)
            status_changed = dev.status_index in sel.indices
            status = int(self.db.values[dev.status_index]) if status_changed else None
            if status is not None and status not in (LOST, REFUSED) and dev.dead:
                self.queue.append(("DBIRTH", dev.name, None))  # back: a birth with every current value
                dev.dead = False
                continue
            if not dev.dead:
                self.queue.append(("DDATA", dev.name, payload))
            if status in (LOST, REFUSED) and not dev.dead:
                self.queue.append(("DDEATH", dev.name, None))
                dev.dead = True
        self.wakeup.set()

    # ------------------------------------------------------------------ births
    def _device_birth(self, dev: _Device, now: int) -> pb.Payload:
        idx = dev.indices
        texts = {j: self.db.strings[int(i)] for j, i in enumerate(idx.tolist()) if int(i) in self.db.strings}
        return codec.build_metrics(dev.defs, self.db.values[idx], self.db.qualities[idx], self.db.source_ns[idx],
                                   texts, timestamp_ns=now, birth=True)

    def _node_birth(self, now: int) -> pb.Payload:
        payload = pb.Payload(timestamp=codec.ms(now))
        payload.metrics.extend([codec.node_metric_bd_seq(self.bd_seq, now), codec.node_metric_rebirth(now),
                                pb.Payload.Metric(name=BACKLOG, timestamp=codec.ms(now), datatype=codec.INT64,
                                                  long_value=len(self.store))])
        return payload

    def _next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    async def _send(self, client: aiomqtt.Client, topic: str, payload: pb.Payload) -> None:
        payload.seq = self._next_seq()
        await client.publish(topic, payload.SerializeToString(), qos=self.qos)
        self.stats.published += 1

    async def _births(self, client: aiomqtt.Client) -> None:
        """NBIRTH, then a DBIRTH per device (a DDEATH after it for a device that is lost)."""
        now = time.time_ns()
        self.seq = 0
        await self._send(client, node_topic(self.group, "NBIRTH", self.node), self._node_birth(now))
        for dev in self._order:
            await self._send(client, device_topic(self.group, "DBIRTH", self.node, dev.name),
                             self._device_birth(dev, now))
            status = float(self.db.values[dev.status_index])
            lost = not np.isnan(status) and int(status) in (LOST, REFUSED)
            dev.dead = lost
            if lost:
                await self._send(client, device_topic(self.group, "DDEATH", self.node, dev.name),
                                 pb.Payload(timestamp=codec.ms(now)))
        self.stats.births += 1
        self.rebirth = False
        self.stats.events.append(f"birth bdSeq {self.bd_seq}")
        log.info("%s: NBIRTH (bdSeq %d) and %d DBIRTH sent", self.node, self.bd_seq, len(self._order))

    # ------------------------------------------------------------------ store and forward
    def _spill(self) -> None:
        """Everything queued → the store (DDATA only: births and deaths are re-stated by the next birth)."""
        while self.queue:
            kind, device, payload = self.queue.popleft()
            if kind == "DDATA" and payload is not None:
                self.store.put(device_topic(self.group, "DDATA", self.node, device), payload.SerializeToString())
                self.stats.stored += 1

    async def _replay(self, client: aiomqtt.Client) -> None:
        """The store, oldest first, as historical DDATA; each batch forgotten once acknowledged."""
        while True:
            rows = self.store.oldest(REPLAY_BATCH)
            if not rows:
                return
            for _id, topic, raw in rows:
                await client.publish(topic, codec.set_historical(raw, self._next_seq()), qos=self.qos)
                self.stats.replayed += 1
                self.stats.published += 1
            self.store.drop(rows[-1][0])
            backlog = pb.Payload(timestamp=codec.ms(time.time_ns()))
            backlog.metrics.add(name=BACKLOG, timestamp=backlog.timestamp, datatype=codec.INT64,
                                long_value=len(self.store))
            await self._send(client, node_topic(self.group, "NDATA", self.node), backlog)
            await asyncio.sleep(0)  # let the poller and the listener run between batches

    # ------------------------------------------------------------------ session
    def _will(self) -> aiomqtt.Will:
        death = codec.encode_node([codec.node_metric_bd_seq(self.bd_seq, time.time_ns())],
                                  timestamp_ns=time.time_ns(), seq=None)
        return aiomqtt.Will(node_topic(self.group, "NDEATH", self.node), death, qos=1, retain=False)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = Topic.parse(str(message.topic))
            raw = message.payload if isinstance(message.payload, bytes) else b""
            if topic is None:
                continue
            if topic.kind == "STATE":
                state = parse_state(raw)
                if state is None:
                    continue
                online, session = state
                if online:
                    if session != self.host_session and self.host_online.is_set():
                        self.rebirth = True  # a new host session: it knows nothing of ours
                    self.host_session = session
                    self.host_online.set()
                else:
                    self.host_online.clear()
                self.stats.host_online = online
                self.wakeup.set()
            elif topic.kind == "NCMD" and codec.asks_rebirth(codec.decode(raw)):
                self.rebirth = True
                self.stats.rebirth_requests += 1
                self.stats.events.append("rebirth requested")
                log.info("%s: rebirth requested (NCMD %s)", self.node, codec.REBIRTH)
                self.wakeup.set()

    async def _session(self) -> None:
        self.bd_seq = self.store.next_bd_seq()
        client = aiomqtt.Client(self.broker.host, self.broker.port, identifier=f"edge-{self.group}-{self.node}",
                                username=self.username, password=self.password, will=self._will(),
                                keepalive=self.keepalive_s, clean_session=True, timeout=5)
        async with client:
            self.client = client
            self.stats.connected = True
            self.stats.sessions += 1
            log.info("%s: connected to %s (bdSeq %d)", self.node, self.broker.url, self.bd_seq)
            listener = asyncio.create_task(self._listen(client), name=f"edge-{self.node}-listen")
            listener.add_done_callback(lambda _t: self.wakeup.set())  # a lost connection ends it: wake the sender
            try:
                await client.subscribe(node_topic(self.group, "NCMD", self.node), qos=1)
                await client.subscribe(device_topic(self.group, "DCMD", self.node, "+"), qos=1)
                if self.host_id is not None:
                    self.host_online.clear()
                    await client.subscribe(state_topic(self.host_id), qos=1)
                else:
                    self.host_online.set()
                    self.stats.host_online = True
                await self._serve(client, listener)
            finally:
                listener.cancel()
                await asyncio.wait({listener})  # (not `await listener`: that would swallow our own cancellation)

    async def _serve(self, client: aiomqtt.Client, listener: asyncio.Task[None]) -> None:
        born = False
        while True:
            if listener.done():  # the connection is gone (the listener ends with an MqttError)
                listener.result()
                raise aiomqtt.MqttError("connection lost")
            if not self.host_online.is_set():
                self._spill()
                born = False
            else:
                if not born or self.rebirth:
                    self._spill()  # queued before this birth: older than its values, sent as history after it
                    await self._births(client)
                    await self._replay(client)
                    born = True
                while self.queue and self.host_online.is_set() and not self.rebirth:
                    kind, device, payload = self.queue[0]
                    topic = device_topic(self.group, kind, self.node, device)
                    if kind == "DBIRTH":
                        payload = self._device_birth(self.devices[device], time.time_ns())
                    elif payload is None:
                        payload = pb.Payload(timestamp=codec.ms(time.time_ns()))
                    await self._send(client, topic, payload)  # raises when not acknowledged: the item stays queued
                    self.queue.popleft()
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=1.0)

    async def run(self) -> None:
        """Poll and publish until cancelled; reconnects with back-off, storing while away."""
        await self.poller.start()
        delay = 0.5
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                me = asyncio.current_task()
                if me is not None and me.cancelling():  # aiomqtt turns a cancelled disconnect into an MqttError
                    raise asyncio.CancelledError from exc
                if self.stats.connected or not self.stats.last_error:
                    log.warning("%s: broker %s unreachable (%s); storing, retrying", self.node, self.broker.url, exc)
                self.stats.last_error = str(exc)
                delay = 0.5 if self.stats.connected else min(delay * 2, 5.0)
            finally:
                self.client = None
                self.stats.connected = False
                self.host_online.clear()
                self._spill()
            await asyncio.sleep(delay)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"edge-{self.node}")
        return self._task

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop publishing and polling; what is still queued goes to the store (sent as history next time)."""
        if self._task is not None:
            self._task.cancel()
            _done, stuck = await asyncio.wait({self._task}, timeout=timeout_s)  # bounded: a stop never hangs
            if stuck:
                log.error("%s: the MQTT session did not stop within %.0f s", self.node, timeout_s)
            self._task = None
        self._unsubscribe()
        await self.poller.aclose()
        await self.factory.aclose()
        self._spill()
        self.store.close()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {"node": self.node, "group": self.group, "connected": s.connected, "host_online": s.host_online,
                "bd_seq": self.bd_seq, "sessions": s.sessions, "births": s.births, "published": s.published,
                "stored": s.stored, "replayed": s.replayed, "backlog": len(self.store), "dropped": self.store.dropped,
                "rebirth_requests": s.rebirth_requests, "devices": len(self.devices), "last_error": s.last_error}


__all__ = ["EdgeNode"]
