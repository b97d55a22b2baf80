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
      a STATE older than the last one seen (its timestamp) is ignored: a failover pair's former active host
         saying offline after the new active said online (Sparkplug 3.0)
      NCMD Node Control/Reload Configuration ─► tags.yaml read again (``loader``); a new partition fingerprint:
         the poller and the tag database rebuilt, NBIRTH + DBIRTHs (the store replays by tag name)
      NCMD Host/Epoch ─► the highest epoch obeyed rises (kept in the store file)
      DCMD ─► accepted only: from the primary host while its STATE is online, with Host/Epoch ≥ the highest
         obeyed, for writable tags of this device (the allow-list) ─► the edge's own driver writes and reads back
         ─► the device re-read into the edge database (DDATA by exception: the written value) ─► NDATA
         Command/Id + Command/Outcome (done, rejected, failed, not_confirmed) + Command/Reason; a refusal is
         logged and answered ``rejected`` with its reason, nothing written
      broker gone (a publish not acknowledged) ─► what is queued and the unacknowledged message go to the store;
      reconnect with back-off (0.5 s doubling to 5 s), next bdSeq

The edge never refreshes a field lease by itself: leases and heartbeats are the host's commands (its lease
manager writes through DCMDs); when the host is gone they lapse and the field goes back to local control.

Data and births are published at QoS 1, not the QoS 0 that Sparkplug recommends: a message is only
dropped from the queue or the store once the broker has acknowledged it (its PUBACK), so that a dying
connection loses nothing; from there the broker's persistence and the host's persistent session carry it
(docs/sparkplug.md, "No value lost at a broker's stop"). A message in doubt is sent again as historical: the
host drops the second copy of an observation it already has (drivers.sparkplug.host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from drivers.base import Driver
from drivers.registry import DriverFactory
from drivers.sparkplug import codec
from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.broker import tls_context
from drivers.sparkplug.store import ForwardStore
from drivers.sparkplug.topics import Topic, device_topic, node_topic, parse_state, state_topic
from scada.config.model import CityConfig, TagDef
from scada.config.partitions import Broker, partition_fingerprint
from scada.errors import DriverError, ScadaError, WriteNotConfirmed
from scada.poll import LOST, REFUSED, Poller, device_stat_tags, stat_tag_name
from scada.quality import Value
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

REPLAY_BATCH = 200
DONE, REJECTED, FAILED, NOT_CONFIRMED = "done", "rejected", "failed", "not_confirmed"


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
    reloads: int = 0
    replay_unknown: int = 0  # stored metrics whose tag is gone (a reload or another tags.yaml): not replayed
    commands: int = 0
    refused: int = 0
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
                 password: str | None = None, loader: Callable[[], CityConfig] | None = None,
                 ca_file: Path | None = None) -> None:
        """``loader`` reads tags.yaml again when a host asks for a reload (None: a reload request is refused).
        ``ca_file``: the CA that signed an ``mqtts://`` broker's certificate (None: the system's)."""
        if partition not in config.partitions:
            raise KeyError(f"no partition {partition!r}; partitions: {', '.join(config.partitions) or 'none'}")
        self.node = partition
        self.group = group or config.site
        self.broker = broker
        self.host_id = host_id
        self.keepalive_s = keepalive_s
        self.qos = qos
        self.username, self.password = username, password  # the broker's credential of this edge (broker.py)
        self.loader = loader
        self.tls = tls_context(broker, ca_file)
        self._factory = factory
        self.store = ForwardStore(store_path, max_rows=max_stored)
        self.queue: deque[tuple[str, str, pb.Payload | None]] = deque()  # (kind, device, payload)
        self.wakeup = asyncio.Event()
        self.stats = EdgeStats()
        self.client: aiomqtt.Client | None = None
        self.host_online = asyncio.Event()
        self.host_session = 0  # the host STATE's timestamp: a new one means a new host session → rebirth
        self.rebirth = False
        self.reload_wanted: str | None = None  # the fingerprint a host asked us to reload to ("" : any)
        self.seq = 0
        self.bd_seq = -1
        self.epoch = self.store.epoch()  # the highest host epoch obeyed (-1: none yet)
        self._commands: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._build(config)

    def _build(self, config: CityConfig) -> None:
        """Everything that follows from the configuration: tag database, poller, devices, allow-list, fingerprint."""
        self.config = config
        self.partition = config.partitions[self.node]
        self.fingerprint = partition_fingerprint(config, self.node)
        names = self.partition.devices
        by_name = config.tag_by_name()
        stat_defs = device_stat_tags(config, names)
        tags = [by_name[t] for n in names for t in config.devices[n].tags]
        self.db = TagDatabase([*tags, *stat_defs])
        self.factory = self._factory if self._factory is not None else DriverFactory(config)
        self.poller = Poller(config, self.factory, self.db, devices=names)
        #: the allow-list: a DCMD may write only these (the partition's tags declared rw), each on its own device
        self.writable: dict[str, TagDef] = {t.name: t for t in tags if t.writable}
        self.devices: dict[str, _Device] = {}
        self.device_of = np.full(len(self.db), -1, dtype=np.int64)  # tag index → position in self.devices
        for k, n in enumerate(names):
            idx = self.db.indices([*config.devices[n].tags, *(t.name for t in stat_defs if t.device == n)])
            self.devices[n] = _Device(n, idx, [codec.MetricDef.of(self.db.defs[i], int(i)) for i in idx.tolist()],
                                      self.db.index[stat_tag_name(n, "status")])
            self.device_of[idx] = k
        self._order = list(self.devices.values())
        self._unsubscribe = self.db.subscribe(self._on_change)

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

    def _node_birth(self, now: int, dropped: int = 0) -> pb.Payload:
        payload = pb.Payload(timestamp=codec.ms(now))
        payload.metrics.extend([codec.node_metric_bd_seq(self.bd_seq, now), codec.node_metric_rebirth(now),
                                codec.node_metric(codec.RELOAD, False, now),
                                codec.node_metric(codec.FINGERPRINT, self.fingerprint, now),
                                codec.node_metric(codec.EPOCH, self.epoch, now),
                                *self._store_metrics(now, dropped),
                                *(codec.node_metric(n, "", now) for n in (codec.COMMAND_ID, codec.COMMAND_OUTCOME,
                                                                          codec.COMMAND_REASON))])
        return payload

    def _store_metrics(self, now: int, dropped: int | None = None) -> list[pb.Payload.Metric]:
        out = [codec.node_metric(codec.BACKLOG, len(self.store), now),
               codec.node_metric(codec.CAPACITY, self.store.max_rows, now)]
        if dropped is not None:
            out.append(codec.node_metric(codec.DROPPED, dropped, now))
        return out

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
        dropped = self.store.unreported_drops()
        await self._send(client, node_topic(self.group, "NBIRTH", self.node), self._node_birth(now, dropped))
        if dropped:
            self.store.reported(dropped)  # the broker has the birth that tells the host
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
            if kind == "DDATA" and payload is not None:  # stored by tag name: aliases are this configuration's
                self.store.put(device_topic(self.group, "DDATA", self.node, device),
                               codec.for_store(payload, self.db.names))
                self.stats.stored += 1

    async def _replay(self, client: aiomqtt.Client) -> None:
        """The store, oldest first, as historical DDATA; each batch forgotten once acknowledged."""
        while True:
            rows = self.store.oldest(REPLAY_BATCH)
            if not rows:
                return
            for _id, topic, raw in rows:
                device = Topic.parse(topic)
                if device is None or device.device not in self.devices:  # a device no longer in the partition
                    self.stats.replay_unknown += 1
                    continue
                payload, unknown = codec.replayed(raw, self._next_seq(), self.db.index)
                self.stats.replay_unknown += unknown
                await client.publish(topic, payload, qos=self.qos)
                self.stats.replayed += 1
                self.stats.published += 1
            self.store.drop(rows[-1][0])
            now = time.time_ns()
            backlog = pb.Payload(timestamp=codec.ms(now))
            backlog.metrics.extend(self._store_metrics(now))
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
                if session < self.host_session:
                    # Sparkplug 3.0: an older STATE is ignored (a pair's former active host saying offline, or its
                    # late will, after the new active said online with a newer timestamp)
                    log.info("%s: ignored an older STATE of %s (%s, %d < %d)", self.node, self.host_id,
                             "online" if online else "offline", session, self.host_session)
                    continue
                if online:
                    if session != self.host_session and self.host_online.is_set():
                        self.rebirth = True  # a new host session: it knows nothing of ours
                    self.host_session = session
                    self.host_online.set()
                else:
                    self.host_online.clear()
                self.stats.host_online = online
                self.wakeup.set()
            elif topic.kind == "NCMD":
                self._node_command(codec.decode(raw))
            elif topic.kind == "DCMD" and topic.device is not None:
                task = asyncio.create_task(self._device_command(topic.device, codec.decode(raw)),
                                           name=f"edge-{self.node}-dcmd")
                self._commands.add(task)
                task.add_done_callback(self._commands.discard)

    def _node_command(self, payload: pb.Payload) -> None:
        """NCMD: a rebirth, a reload of tags.yaml, or the active host's epoch."""
        got = codec.named(payload)
        epoch = got.get(codec.EPOCH)
        if isinstance(epoch, int) and not isinstance(epoch, bool) and self.host_online.is_set():
            self._raise_epoch(epoch, "announced")
        if got.get(codec.RELOAD) is True:
            wanted = got.get(codec.FINGERPRINT)
            self.reload_wanted = wanted if isinstance(wanted, str) else ""
            self.stats.events.append(f"reload requested ({self.reload_wanted or 'any'})")
            log.info("%s: configuration reload requested (host runs %s, we run %s)", self.node,
                     self.reload_wanted or "?", self.fingerprint)
            self.wakeup.set()
        if codec.asks_rebirth(payload):
            self.rebirth = True
            self.stats.rebirth_requests += 1
            self.stats.events.append("rebirth requested")
            log.info("%s: rebirth requested (NCMD %s)", self.node, codec.REBIRTH)
            self.wakeup.set()

    def _raise_epoch(self, epoch: int, how: str) -> None:
        if epoch > self.epoch:
            log.info("%s: host epoch %d %s (was %d): commands of an older epoch are refused from now on", self.node,
                     epoch, how, self.epoch)
            self.epoch = epoch
            self.store.set_epoch(epoch)

    # ------------------------------------------------------------------ commands
    def _refusal(self, device: str, payload: pb.Payload) -> str:
        """Why this DCMD is not obeyed ("" : it is): the host, its epoch, the allow-list."""
        if self.host_id is None:
            return "this edge has no primary host (--no-host): it obeys no command"
        if not self.host_online.is_set():
            return f"the primary host {self.host_id} is not online (its STATE)"
        got = codec.named(payload)
        epoch = got.get(codec.EPOCH)
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            return f"no {codec.EPOCH} metric: not from an active host"
        if epoch < self.epoch:
            return f"stale host epoch {epoch} (the active host's is {self.epoch}): a former active host"
        if device not in self.devices:
            return f"device {device!r} is not in partition {self.node}"
        writes = codec.command_writes(payload)
        if not writes:
            return "no metric to write"
        for name, _datatype, value, text in writes:
            tag = self.writable.get(name)
            if tag is None:
                return f"{name}: not on this edge's allow-list (writable tags of partition {self.node})"
            if tag.device != device:
                return f"{name}: belongs to device {tag.device}, not {device}"
            if text is None and math.isnan(value):
                return f"{name}: no value to write (null)"
        return ""

    async def _device_command(self, device: str, payload: pb.Payload) -> None:
        """One DCMD: checked, written through the edge's own driver, the device re-read, the outcome answered."""
        got = codec.named(payload)
        cid = got.get(codec.COMMAND_ID)
        command_id = cid if isinstance(cid, str) else ""
        self.stats.commands += 1
        why = self._refusal(device, payload)
        if why:
            self.stats.refused += 1
            self.stats.events.append(f"DCMD refused: {why}")
            log.warning("%s: DCMD %s for %s refused: %s", self.node, command_id or "(no id)", device, why)
            self._reply(command_id, REJECTED, why)
            return
        epoch = got[codec.EPOCH]
        if isinstance(epoch, int):  # (checked by _refusal)
            self._raise_epoch(epoch, "seen in a command")
        tol = got.get(codec.COMMAND_TOLERANCE)
        tolerance = float(tol) if isinstance(tol, (int, float)) and not isinstance(tol, bool) else None
        outcome, reason = DONE, ""
        for name, _datatype, value, text in codec.command_writes(payload):
            tag = self.writable[name]
            try:
                await self._write(tag, _typed(tag, value, text), tolerance)
            except WriteNotConfirmed as exc:
                outcome, reason = NOT_CONFIRMED, str(exc)
            except DriverError as exc:
                outcome, reason = FAILED, str(exc)
            if outcome != DONE:
                break
        await self._reread(device)
        log.info("%s: DCMD %s for %s: %s%s", self.node, command_id or "(no id)", device, outcome,
                 f" ({reason})" if reason else "")
        self._reply(command_id, outcome, reason)

    async def _write(self, tag: TagDef, value: Value, tolerance: float | None) -> None:
        driver = self.poller.drivers.get(tag.device)
        if not isinstance(driver, Driver):
            raise DriverError(f"{tag.device}: no driver at this edge")
        try:
            if not driver.connected:
                await driver.connect()
            await driver.write(tag, value, tolerance=tolerance)  # the driver reads back: raises unless confirmed
        except DriverError:
            raise
        except Exception as exc:  # a driver must translate; never let a library error escape the edge (logged)
            log.exception("%s: driver write raised a non-DriverError", tag.name)
            raise DriverError(f"{tag.name}: write failed: {exc!r}") from exc

    async def _reread(self, device: str) -> None:
        """The device's tags read now (not at the next scan): the written value and what it changed (a mode)
        reach the host by exception before the outcome, so its confirmation sees them at once."""
        driver = self.poller.drivers.get(device)
        if not isinstance(driver, Driver):
            return
        by_name = self.config.tag_by_name()
        points = [by_name[t] for t in self.config.devices[device].tags]
        try:
            readings = await driver.read_readings(points)
        except (ScadaError, OSError) as exc:  # the poller's next cycle says it: nothing more to do here
            log.info("%s: read after the write failed (%s)", device, exc)
            return
        if len(readings):
            self.db.apply_readings(self.db.indices([p.name for p in points]), readings)

    def _reply(self, command_id: str, outcome: str, reason: str) -> None:
        now = time.time_ns()
        payload = pb.Payload(timestamp=codec.ms(now))
        payload.metrics.extend([codec.node_metric(codec.COMMAND_ID, command_id, now),
                                codec.node_metric(codec.COMMAND_OUTCOME, outcome, now),
                                codec.node_metric(codec.COMMAND_REASON, reason[:500], now)])
        self.queue.append(("NDATA", "", payload))  # after the DDATA of the re-read: the host sees the value first
        self.wakeup.set()

    # ------------------------------------------------------------------ reload
    async def _reload(self) -> None:
        """Read tags.yaml again (``loader``); a new partition configuration rebuilds the poller and the database."""
        wanted, self.reload_wanted = self.reload_wanted, None
        if self.loader is None:
            log.error("%s: a host asked for a configuration reload, but this edge has no configuration file to "
                      "read again", self.node)
            return
        try:
            config = await asyncio.to_thread(self.loader)
        except (ScadaError, OSError) as exc:
            log.error("%s: configuration reload failed, still running %s: %s", self.node, self.fingerprint, exc)
            return
        if self.node not in config.partitions:
            log.error("%s: configuration reload: no partition %s in it any more; still running %s", self.node,
                      self.node, self.fingerprint)
            return
        fingerprint = partition_fingerprint(config, self.node)
        if wanted and fingerprint != wanted:
            log.error("%s: configuration reloaded as %s, but the host runs %s: this edge's tags.yaml is not the "
                      "host's (the host refuses our data until they match)", self.node, fingerprint, wanted)
        if fingerprint != self.fingerprint:
            log.info("%s: configuration %s → %s: rebuilding the poller", self.node, self.fingerprint, fingerprint)
            self._spill()  # queued data by tag name, replayed after the new birth
            self._unsubscribe()
            await self.poller.aclose()
            if self._factory is None:
                await self.factory.aclose()
            self._build(config)
            await self.poller.start()
            self.stats.reloads += 1
            self.stats.events.append(f"reloaded {fingerprint}")
            self.rebirth = True  # the host learns the new fingerprint from the birth
        else:
            log.info("%s: configuration read again: unchanged (%s)", self.node, fingerprint)

    async def _session(self) -> None:
        self.bd_seq = self.store.next_bd_seq()
        client = aiomqtt.Client(self.broker.host, self.broker.port, identifier=f"edge-{self.group}-{self.node}",
                                username=self.username, password=self.password, will=self._will(),
                                keepalive=self.keepalive_s, clean_session=True, timeout=5, tls_context=self.tls)
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
                    self.host_session = 0  # STATE timestamps compared within one session (the retained one first)
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
                if self.reload_wanted is not None:
                    await self._reload()
                if not born or self.rebirth:
                    self._spill()  # queued before this birth: older than its values, sent as history after it
                    await self._births(client)
                    await self._replay(client)
                    born = True
                while self.queue and self.host_online.is_set() and not self.rebirth:
                    kind, device, payload = self.queue[0]
                    topic = (node_topic(self.group, kind, self.node) if kind == "NDATA"
                             else device_topic(self.group, kind, self.node, device))
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
        for task in list(self._commands):
            task.cancel()
        if self._commands:
            await asyncio.wait(self._commands, timeout=timeout_s)
        self._unsubscribe()
        await self.poller.aclose()
        await self.factory.aclose()
        self._spill()
        self.store.close()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {"node": self.node, "group": self.group, "connected": s.connected, "host_online": s.host_online,
                "bd_seq": self.bd_seq, "sessions": s.sessions, "births": s.births, "published": s.published,
                "stored": s.stored, "replayed": s.replayed, "backlog": len(self.store), "capacity": self.store.max_rows,
                "dropped": self.store.dropped, "replay_unknown": s.replay_unknown,
                "rebirth_requests": s.rebirth_requests, "reloads": s.reloads, "fingerprint": self.fingerprint,
                "epoch": self.epoch, "commands": s.commands, "refused": s.refused, "devices": len(self.devices),
                "last_error": s.last_error}


def _typed(tag: TagDef, value: float, text: str | None) -> Value:
    """A DCMD metric's value as the tag's type (the driver's write takes a Value)."""
    if tag.dtype == "string":
        return text if text is not None else ""
    if tag.dtype == "bool":
        return bool(value)
    if tag.dtype in ("int", "enum"):
        return int(value)
    return float(value)


__all__ = ["EdgeNode"]
