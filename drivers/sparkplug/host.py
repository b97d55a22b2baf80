"""A Sparkplug B Host Application: edge nodes' births, data and deaths → one columnar apply per message.

    broker ──► spBv1.0/<group>/# ──► SparkplugHost._handle
                 NBIRTH   node online, bdSeq and seq 0 noted, its aliases forgotten (re-learnt from DBIRTHs)
                 DBIRTH   alias → tag index (by the metric's name), datatypes; values applied; device status
                 DDATA    metrics by alias → apply(indices, readings)      (one call per message)
                          is_historical: applied only where newer than the tag's value (old never overwrites live)
                 DDEATH   the device's tags bad_comm, its status lost (→ comm-loss alarm by the caller's watch)
                 NDEATH   (its bdSeq = the NBIRTH's) every device of the node lost, tags bad_comm
                 seq gap / data before a birth ──► NCMD Node Control/Rebirth
    own STATE: spBv1.0/STATE/<host_id> {"online": true, "timestamp"} retained QoS 1 on connect; the will
               says offline with the same timestamp. Broker lost: every node's devices lost (the room is blind).

I/O only through ``apply(indices, readings)`` (the tag database's own path, given by the caller) and the
MQTT client: the host holds no tag values. Device statuses use scada.poll's codes (``status`` of
:class:`DeviceState`), so the caller's comm-loss watch reads them as it reads the poller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import numpy as np

from drivers.sparkplug import codec
from drivers.sparkplug.topics import Topic, group_filter, node_topic, state_payload, state_topic
from scada.config.partitions import Broker
from scada.poll import LOST, OK, STARTING, stat_tag_name
from scada.quality import Quality
from scada.tagdb import I64, Readings

log = logging.getLogger(__name__)

Apply = Callable[[I64, Readings], None]


@dataclass(slots=True)
class DeviceState:
    """A device behind an edge, as the host sees it (``status``: scada.poll's STARTING/OK/LOST/REFUSED)."""

    name: str
    indices: I64  # its tags' and statistics tags' indices in the host's tag database
    data: I64  # its own tags' (not the statistics tags'): bad_comm when it is lost
    status_index: int | None = None  # its ``system/devices/<dev>/status`` tag: set lost when it is lost
    status: int = STARTING
    births: int = 0


@dataclass(slots=True)
class NodeState:
    """One edge node (a partition): what /health shows of it."""

    name: str
    devices: dict[str, DeviceState]
    online: bool = False
    bd_seq: int | None = None
    seq: int | None = None
    last_birth_ns: int = 0
    births: int = 0
    deaths: int = 0
    seq_gaps: int = 0
    rebirths_asked: int = 0
    messages: int = 0
    backlog: int = 0
    historical: int = 0  # historical values received
    historical_live: int = 0  # of which newer than the live value (applied)
    unknown_metrics: int = 0  # metrics whose name is no tag of ours (configuration differs)
    clock_skew_ms: float = 0.0  # the last message's timestamp minus our receive time
    aliases: dict[int, int] = field(default_factory=dict)  # alias → tag index
    datatypes: dict[int, int] = field(default_factory=dict)  # alias → Sparkplug datatype

    def as_dict(self) -> dict[str, Any]:
        return {"online": self.online, "bd_seq": self.bd_seq, "last_birth_ms": self.last_birth_ns // 1_000_000,
                "births": self.births, "deaths": self.deaths, "seq_gaps": self.seq_gaps,
                "rebirths_asked": self.rebirths_asked, "messages": self.messages, "backlog": self.backlog,
                "historical": self.historical, "historical_live": self.historical_live,
                "unknown_metrics": self.unknown_metrics, "clock_skew_ms": round(self.clock_skew_ms, 1),
                "devices": {n: d.status for n, d in self.devices.items()}}


class SparkplugHost:
    """Consume the nodes ``nodes`` (node → {device → its tag names, statistics tags included}) of ``group``.

    ``index`` maps a tag name to its index in the caller's tag database; ``apply`` is that database's apply and
    ``source_of`` its source timestamps of some indices (a replayed value older than them is not applied live).
    """

    def __init__(self, broker: Broker, host_id: str, group: str, nodes: dict[str, dict[str, list[str]]],
                 index: dict[str, int], apply: Apply, source_of: Callable[[I64], I64] | None = None, *,
                 keepalive_s: int = 5, username: str | None = None, password: str | None = None) -> None:
        self.username, self.password = username, password  # the broker's credential of the host (broker.py)
        self.source_of = source_of
        self.broker = broker
        self.host_id = host_id
        self.group = group
        self.index = index
        self.apply = apply
        self.keepalive_s = keepalive_s
        self.nodes: dict[str, NodeState] = {}
        self.bind(nodes, index)
        self.connected = False
        self.session_ms = 0
        self.client: aiomqtt.Client | None = None
        self.last_error = ""
        self.on_history: Callable[[I64, Readings], None] | None = None  # replayed values older than live
        self._task: asyncio.Task[None] | None = None

    def bind(self, nodes: dict[str, dict[str, list[str]]], index: dict[str, int]) -> None:
        """(Re)bind to a configuration: which nodes and devices, and the tag database's indices (a reload)."""
        self.index = index
        old = self.nodes
        self.nodes = {}
        for node, devices in nodes.items():
            state = NodeState(node, {d: _device(d, tags, index) for d, tags in devices.items()})
            prev = old.get(node)
            if prev is not None:  # statuses carry over; aliases are re-learnt at the next birth
                state.online, state.bd_seq = prev.online, prev.bd_seq
                for d, ds in state.devices.items():
                    if d in prev.devices:
                        ds.status = prev.devices[d].status
                state.seq_gaps, state.births, state.deaths = prev.seq_gaps, prev.births, prev.deaths
            self.nodes[node] = state
        for state in self.nodes.values():
            if state.online:
                state.aliases.clear()
                state.seq = None  # the next message asks for a rebirth: the indices have changed

    # ------------------------------------------------------------------ status
    def device_statuses(self) -> dict[str, DeviceState]:
        return {d: ds for n in self.nodes.values() for d, ds in n.devices.items()}

    def health(self) -> dict[str, Any]:
        return {"broker": self.broker.url, "connected": self.connected, "host_id": self.host_id,
                "last_error": self.last_error, "nodes": {n: s.as_dict() for n, s in self.nodes.items()}}

    # ------------------------------------------------------------------ marking
    def _mark_lost(self, devices: Iterable[DeviceState]) -> None:
        """As the poller does for a device it loses: its tags bad_comm (last values kept), its status tag lost."""
        now = time.time_ns()
        data: list[I64] = []
        status: list[int] = []
        for ds in devices:
            ds.status = LOST
            data.append(ds.data)
            if ds.status_index is not None:
                status.append(ds.status_index)
        idx = np.unique(np.concatenate(data)) if data else np.zeros(0, dtype=np.int64)
        n = int(idx.size)
        r = Readings(n + len(status), Quality.BAD_COMM)  # no value: the last known one stays shown
        r.values[n:] = LOST
        r.qualities[n:] = int(Quality.GOOD)  # the status itself is known: lost
        r.stamp_unset(now)
        if len(r):
            self.apply(np.concatenate([idx, np.array(status, dtype=np.int64)]), r)

    def _node_lost(self, node: NodeState, why: str) -> None:
        if node.online:
            log.warning("%s: edge node offline (%s); its devices' tags bad_comm", node.name, why)
        node.online = False
        node.seq = None
        node.aliases.clear()
        node.deaths += 1
        self._mark_lost(node.devices.values())

    # ------------------------------------------------------------------ messages
    async def _rebirth(self, client: aiomqtt.Client, node: NodeState, why: str) -> None:
        node.rebirths_asked += 1
        log.info("%s: asking for a rebirth (%s)", node.name, why)
        await client.publish(node_topic(self.group, "NCMD", node.name), codec.rebirth_request(time.time_ns()), qos=0)

    async def _handle(self, client: aiomqtt.Client, topic: Topic, raw: bytes) -> None:
        node = self.nodes.get(topic.node)
        if node is None or topic.group != self.group:
            return  # another partition's edge, or one not consumed by this server
        now = time.time_ns()
        payload = codec.decode(raw)
        node.messages += 1
        if payload.HasField("timestamp"):
            node.clock_skew_ms = payload.timestamp - now / 1e6
        if topic.kind == "NDEATH":
            bd = codec.bd_seq_of(payload)
            if bd is None or node.bd_seq is None or bd == node.bd_seq:  # an older session's will is ignored
                self._node_lost(node, f"NDEATH bdSeq {bd}")
            return
        if topic.kind == "NBIRTH":
            node.bd_seq = codec.bd_seq_of(payload)
            node.seq = int(payload.seq)
            node.online = True
            node.births += 1
            node.last_birth_ns = now
            node.aliases.clear()
            node.datatypes.clear()
            self._node_metrics(node, payload)
            log.info("%s: NBIRTH (bdSeq %s)", node.name, node.bd_seq)
            return
        if topic.kind in ("NCMD", "DCMD"):
            return
        # every other message carries the next seq of the node's session
        expected = None if node.seq is None else (node.seq + 1) % 256
        got = int(payload.seq) if payload.HasField("seq") else None
        if not node.online or expected is None:
            await self._rebirth(client, node, f"{topic.kind} before any NBIRTH")
            return
        if got != expected:
            node.seq_gaps += 1
            node.seq = got
            await self._rebirth(client, node, f"seq gap: expected {expected}, got {got}")
            return
        node.seq = got
        if topic.kind == "NDATA":
            self._node_metrics(node, payload)
            return
        ds = node.devices.get(topic.device or "")
        if ds is None:
            return
        if topic.kind == "DDEATH":
            self._mark_lost([ds])
            return
        if topic.kind == "DBIRTH":
            self._device_birth(node, ds, payload, now)
        elif topic.kind == "DDATA":
            self._device_data(node, ds, payload, now)

    def _node_metrics(self, node: NodeState, payload: Any) -> None:
        for m in payload.metrics:
            if m.name == "Store/Backlog":
                node.backlog = int(m.long_value)

    def _device_birth(self, node: NodeState, ds: DeviceState, payload: Any, now: int) -> None:
        got = codec.decode_metrics(payload, receive_ns=now)
        keep: list[int] = []
        idx: list[int] = []
        for k, (alias, name, datatype) in enumerate(zip(got.aliases, got.names, got.datatypes, strict=True)):
            i = self.index.get(name)
            if i is None:
                node.unknown_metrics += 1
                continue
            node.aliases[alias] = i
            node.datatypes[alias] = datatype
            keep.append(k)
            idx.append(i)
        ds.births += 1
        self._apply(ds, np.array(idx, dtype=np.int64), _take(got.readings, keep))

    def _device_data(self, node: NodeState, ds: DeviceState, payload: Any, now: int) -> None:
        got = codec.decode_metrics(payload, node.datatypes, receive_ns=now)
        keep: list[int] = []
        idx: list[int] = []
        for k, alias in enumerate(got.aliases):
            i = node.aliases.get(alias)
            if i is None:
                node.unknown_metrics += 1
                continue
            keep.append(k)
            idx.append(i)
        indices, readings = np.array(idx, dtype=np.int64), _take(got.readings, keep)
        hist = np.array([got.historical[k] for k in keep], dtype=bool)
        if hist.any():
            node.historical += int(hist.sum())
            # a replayed value is live only if it is newer than what the tag holds (a birth since has newer ones)
            from_db = self._source_ns(indices)
            old = hist & (readings.source_ns <= from_db)
            node.historical_live += int(hist.sum() - old.sum())
            if old.any():
                if self.on_history is not None:
                    self.on_history(indices[old], _take(readings, np.flatnonzero(old).tolist()))
                live = np.flatnonzero(~old).tolist()
                indices, readings = indices[live], _take(readings, live)
        self._apply(ds, indices, readings)

    def _source_ns(self, indices: I64) -> I64:
        if self.source_of is None:
            return np.zeros(indices.size, dtype=np.int64)
        return self.source_of(indices)

    def _apply(self, ds: DeviceState, indices: I64, readings: Readings) -> None:
        if indices.size:
            indices, readings = _unique_last(indices, readings)
            self.apply(indices, readings)
        status = self.index.get(stat_tag_name(ds.name, "status"))
        if status is not None and status in indices:
            k = int(np.flatnonzero(indices == status)[-1])
            v = readings.values[k]
            ds.status = int(v) if not np.isnan(v) else ds.status
        elif ds.status == LOST and indices.size:
            ds.status = OK  # data again after a death without a status metric (another edge implementation)

    # ------------------------------------------------------------------ session
    async def _session(self) -> None:
        self.session_ms = time.time_ns() // 1_000_000
        will = aiomqtt.Will(state_topic(self.host_id), state_payload(False, self.session_ms), qos=1, retain=True)
        async with aiomqtt.Client(self.broker.host, self.broker.port, identifier=f"host-{self.host_id}",
                                  username=self.username, password=self.password, will=will,
                                  keepalive=self.keepalive_s, clean_session=True, timeout=5) as client:
            self.client = client
            await client.subscribe(group_filter(self.group), qos=1)
            await client.publish(state_topic(self.host_id), state_payload(True, self.session_ms), qos=1, retain=True)
            self.connected = True
            log.info("sparkplug host %s: online on %s (group %s, %d edge nodes)", self.host_id, self.broker.url,
                     self.group, len(self.nodes))
            async for message in client.messages:
                topic = Topic.parse(str(message.topic))
                if topic is None or topic.kind == "STATE":
                    continue
                raw = message.payload if isinstance(message.payload, bytes) else b""
                try:
                    await self._handle(client, topic, raw)
                except aiomqtt.MqttError:
                    raise
                except Exception:  # one malformed message must not stop the consumption of the others (logged)
                    log.exception("%s: cannot handle %s", topic.node, message.topic)

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                me = asyncio.current_task()
                if me is not None and me.cancelling():  # aiomqtt turns a cancelled disconnect into an MqttError
                    raise asyncio.CancelledError from exc
                if self.connected or not self.last_error:
                    log.warning("sparkplug host %s: broker %s lost (%s); edge data marked bad_comm, retrying",
                                self.host_id, self.broker.url, exc)
                self.last_error = str(exc)
                delay = 0.5 if self.connected else min(delay * 2, 5.0)
            finally:
                was = self.connected
                self.connected = False
                self.client = None
                me = asyncio.current_task()
                why = "host stopped" if me is not None and me.cancelling() else "broker connection lost"
                for node in self.nodes.values():
                    if node.online or was:
                        self._node_lost(node, why)
            await asyncio.sleep(delay)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"sparkplug-host-{self.host_id}")
        return self._task

    async def aclose(self, drain_s: float = 0.5) -> None:
        """Stop; says offline first (the will covers a crash, a clean stop says it itself), then goes on consuming
        for ``drain_s``: what an edge published before it saw the offline STATE is applied, not lost (the edges
        store everything after it). A crash has no such drain: what is in flight when the broker publishes the
        will is lost (milliseconds of data, docs/sparkplug.md)."""
        client = self.client
        if client is not None and self.connected:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(client.publish(state_topic(self.host_id), state_payload(False, self.session_ms),
                                                      qos=1, retain=True), timeout=2)
                await asyncio.sleep(drain_s)
        if self._task is not None:
            self._task.cancel()
            _done, stuck = await asyncio.wait({self._task}, timeout=10)  # bounded: a stop never hangs
            if stuck:
                log.error("sparkplug host %s: the MQTT session did not stop within 10 s", self.host_id)
            self._task = None


def _device(name: str, tags: list[str], index: dict[str, int]) -> DeviceState:
    status = stat_tag_name(name, "status")
    stats_prefix = stat_tag_name(name, "")
    return DeviceState(name, np.array([index[t] for t in tags if t in index], dtype=np.int64),
                       np.array([index[t] for t in tags if t in index and not t.startswith(stats_prefix)],
                                dtype=np.int64), index.get(status))


def _take(r: Readings, keep: list[int]) -> Readings:
    """The readings at positions ``keep`` (in that order)."""
    if len(keep) == len(r):
        return r
    pos = np.array(keep, dtype=np.int64)
    out = Readings(len(keep))
    out.values, out.qualities = r.values[pos], r.qualities[pos]
    out.source_ns, out.receive_ns = r.source_ns[pos], r.receive_ns[pos]
    where = {k: j for j, k in enumerate(keep)}
    out.texts = {where[k]: t for k, t in r.texts.items() if k in where}
    return out


def _unique_last(indices: I64, r: Readings) -> tuple[I64, Readings]:
    """One reading per tag (the tag database refuses a batch with a tag twice): the last one wins."""
    if np.unique(indices).size == indices.size:
        return indices, r
    last: dict[int, int] = {int(i): k for k, i in enumerate(indices.tolist())}
    keep = sorted(last.values())
    return indices[keep], _take(r, keep)


__all__ = ["DeviceState", "NodeState", "SparkplugHost"]
