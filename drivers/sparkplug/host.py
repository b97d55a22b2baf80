"""A Sparkplug B Host Application: edge nodes' births, data and deaths → one columnar apply per message.

    broker ──► spBv1.0/<group>/# ──► SparkplugHost._handle
                 NBIRTH   node online, bdSeq and seq 0 noted, its aliases forgotten (re-learnt from DBIRTHs)
                 DBIRTH   alias → tag index (by the metric's name), datatypes; values applied; device status
                 DDATA    metrics by alias → apply(indices, readings)      (one call per message)
                          is_historical: applied only where newer than the tag's value (old never overwrites live)
                          the same observation twice (its tags, source times, values, qualities; or the last seq
                          again) is dropped: an edge replays what the broker did not acknowledge to it
                 (lost)   our broker connection lost: what paho received is handled first (aiomqtt's queue drained),
                          then the devices bad_comm, each node's seq and aliases kept: the messages the broker queued
                          for our persistent session meanwhile (``client_id``) come in next, go to the historian
                 DDEATH   the device's tags bad_comm, its status lost (→ comm-loss alarm by the caller's watch)
                 NDEATH   (its bdSeq = the NBIRTH's) every device of the node lost, tags bad_comm
                 seq gap / data before a birth ──► NCMD Node Control/Rebirth
                 NBIRTH   Config/Fingerprint ≠ ours (an edge on another tags.yaml): its data refused until a birth
                          with ours, its tags bad_config, ``config_refused`` (the server's alarm)
                 NBIRTH   ──► NCMD Host/Epoch: our epoch announced (the edge refuses older epochs from then on)
                 NBIRTH   Store/Dropped: what the edge's store dropped while away (the server's alarm)
                 NDATA    Store/Backlog, Capacity (a full store: the server's alarm);
                          Command/Id + Outcome: the answer to a DCMD of ours (``command``), or a refusal of
                          somebody else's (counted, logged: a former active host still trying)
    command(node, device, tag, value) ──► DCMD (tag by name, Host/Epoch, Command/Id) ──► the NDATA outcome
    EdgeDeviceDriver: the fail-safe writer's driver for a device behind an edge (writes are DCMDs)
    reload(node) ──► NCMD Node Control/Reload Configuration + the fingerprint we run
    own STATE: spBv1.0/STATE/<host_id> {"online": true, "timestamp"} retained QoS 1 on connect; the will
               says offline with the same timestamp. Broker lost: every node's devices lost (the room is blind).
    a pair     both servers are host ``host_id`` (one STATE topic); ``active`` says which one is now. The other
               does not connect at all (no will, no STATE, no NCMD); at takeover it connects and says online
               with a newer timestamp (the edges are born again to it, it announces its higher epoch); an
               active that steps down says offline with its own, older timestamp (ignored by an edge that has
               seen the newer one) and disconnects cleanly (its will is dropped). A STATE on our topic older
               than our session (the former active's late will, retained) is answered by our online STATE again.

I/O only through ``apply(indices, readings)`` (the tag database's own path, given by the caller) and the
MQTT client: the host holds no tag values. Device statuses use scada.poll's codes (``status`` of
:class:`DeviceState`), so the caller's comm-loss watch reads them as it reads the poller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import numpy as np

from drivers.sparkplug import codec
from drivers.sparkplug.broker import tls_context
from drivers.sparkplug.topics import (
    Topic,
    device_topic,
    group_filter,
    node_topic,
    parse_state,
    state_payload,
    state_topic,
)
from scada.config.model import TagDef
from scada.config.partitions import Broker
from scada.errors import CommError, WriteNotAllowed, WriteNotConfirmed
from scada.poll import LOST, OK, STARTING, stat_tag_name
from scada.quality import Quality, Sample, Value
from scada.tagdb import I64, Readings

log = logging.getLogger(__name__)

Apply = Callable[[I64, Readings], None]
T = TypeVar("T")
COMMAND_TIMEOUT_S = 10.0
#: DDATA remembered per edge node to drop a second copy of one (a replay of a message whose PUBACK was lost: the
#: in-doubt messages are the first of a replay); ~0.4 kB each for 10 values
DEDUP_WINDOW = 4096


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
    last_message_ns: int = 0  # when its last message (any kind) reached us
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
    expected: str = ""  # the configuration fingerprint we run for this partition ("" : not checked)
    fingerprint: str | None = None  # the one its last NBIRTH carried (None: none, another implementation)
    config_refused: bool = False  # its last NBIRTH's fingerprint is not ours: its data are not applied
    refused_messages: int = 0
    capacity: int = 0  # its store-and-forward's bound (Store/Capacity)
    dropped: int = 0  # messages its store dropped (oldest first), as reported in its births, summed
    dropped_last: int = 0  # those its last NBIRTH reported (dropped while away)
    drops_unannounced: int = 0  # reported drops no alarm has said yet (the caller sets it to 0 once said)
    commands: int = 0
    command_failures: int = 0  # answered other than done, or not answered
    foreign_refusals: int = 0  # refusals of commands that were not ours (a former active host, another client)
    last_refusal: str = ""
    reloads_asked: int = 0
    edge_epoch: int | None = None  # the highest host epoch the edge obeys (its NBIRTH): above ours, we are refused
    reload_asked_ns: int = 0  # when we last asked it to reload (a mismatch right after is the reload under way)
    rebirth_asked_ns: int = 0  # when we last asked a rebirth for data before any birth
    duplicates: int = 0  # DDATA received a second time (same observation): dropped
    suspended: int = 0  # DDATA of its session before our broker connection was lost, received after: history
    seen: OrderedDict[tuple[Any, ...], None] = field(default_factory=OrderedDict)  # the last DEDUP_WINDOW DDATA
    aliases: dict[int, int] = field(default_factory=dict)  # alias → tag index
    datatypes: dict[int, int] = field(default_factory=dict)  # alias → Sparkplug datatype

    @property
    def store_condition(self) -> tuple[str, int] | None:
        """Why this edge's store-and-forward is an alarm (None: it is not): ("full", messages held) now, or
        ("overflowed", messages dropped) while it replays a store that dropped data while away (its last birth)."""
        if self.capacity and self.backlog >= self.capacity:
            return "full", self.backlog
        if self.drops_unannounced or (self.dropped_last and self.backlog):
            return "overflowed", self.drops_unannounced or self.dropped_last
        return None

    @property
    def store_alarm(self) -> str:
        """:attr:`store_condition` in words (logs and /health; the server's alarm says it in its language)."""
        got = self.store_condition
        if got is None:
            return ""
        if got[0] == "full":
            return f"{self.name}: store-and-forward full ({got[1]} messages), the oldest being dropped"
        return f"{self.name}: store-and-forward overflowed while away, {got[1]} oldest messages dropped"

    def as_dict(self) -> dict[str, Any]:
        return {"online": self.online, "bd_seq": self.bd_seq, "last_birth_ms": self.last_birth_ns // 1_000_000,
                "last_message_ms": self.last_message_ns // 1_000_000,
                "births": self.births, "deaths": self.deaths, "seq_gaps": self.seq_gaps,
                "rebirths_asked": self.rebirths_asked, "messages": self.messages, "backlog": self.backlog,
                "capacity": self.capacity, "dropped": self.dropped, "dropped_last_birth": self.dropped_last,
                "store_alarm": self.store_alarm or None,
                "historical": self.historical, "historical_live": self.historical_live,
                "unknown_metrics": self.unknown_metrics, "clock_skew_ms": round(self.clock_skew_ms, 1),
                "fingerprint": self.fingerprint, "expected_fingerprint": self.expected or None,
                "config_refused": self.config_refused, "refused_messages": self.refused_messages,
                "commands": self.commands, "command_failures": self.command_failures,
                "foreign_refusals": self.foreign_refusals, "last_refusal": self.last_refusal or None,
                "reloads_asked": self.reloads_asked, "edge_epoch": self.edge_epoch, "duplicates": self.duplicates,
                "suspended": self.suspended,
                "devices": {n: d.status for n, d in self.devices.items()}}


class SparkplugHost:
    """Consume the nodes ``nodes`` (node → {device → its tag names, statistics tags included}) of ``group``.

    ``index`` maps a tag name to its index in the caller's tag database; ``apply`` is that database's apply and
    ``source_of`` its source timestamps of some indices (a replayed value older than them is not applied live).
    ``fingerprints``: node → the configuration fingerprint we run for it (absent: not checked). ``epoch``: our
    fencing token (the failover pair's, else the server's start count): the edges obey no command of a lower one.
    ``username``/``password``: our broker credential (broker.py: user ``<host id>``); ``ca_file``: the CA of an
    ``mqtts://`` broker's certificate. ``active``: whether this server is the primary host now (None: always);
    while it is not (a failover pair's standby) it stays off the broker (see the module docstring).
    ``client_id``: this server's own fixed MQTT client id: a persistent session (clean session off, QoS 1
    subscriptions), so that what the broker acknowledged to an edge while we were away, or across its restart
    (a persistent broker), is delivered to us when we are back (None: a random id and a clean session).
    """

    def __init__(self, broker: Broker, host_id: str, group: str, nodes: dict[str, dict[str, list[str]]],
                 index: dict[str, int], apply: Apply, source_of: Callable[[I64], I64] | None = None, *,
                 keepalive_s: int = 5, username: str | None = None, password: str | None = None,
                 fingerprints: dict[str, str] | None = None, epoch: int = 0, ca_file: Path | None = None,
                 active: Callable[[], bool] | None = None, client_id: str | None = None) -> None:
        self.client_id = client_id  # a persistent MQTT session under this id (None: a clean one, a random id)
        self.epoch = epoch
        self.active = active  # False: this server is not the primary host now (a pair's standby): off the broker
        self.stepping_down = False  # our own offline STATE is on its way: not to be answered
        self.tls = tls_context(broker, ca_file)  # mqtts://: the broker verified against ca_file
        self.fingerprints: dict[str, str] = dict(fingerprints or {})
        self.pending: dict[str, asyncio.Future[tuple[str, str]]] = {}  # Command/Id → (outcome, reason)
        self.loop: asyncio.AbstractEventLoop | None = None
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

    def bind(self, nodes: dict[str, dict[str, list[str]]], index: dict[str, int],
             fingerprints: dict[str, str] | None = None) -> list[str]:
        """(Re)bind to a configuration: which nodes and devices, the tag database's indices and the nodes'
        fingerprints (a reload). Returns the online nodes whose fingerprint changed (to :meth:`reload`)."""
        self.index = index
        if fingerprints is not None:
            self.fingerprints = dict(fingerprints)
        old = self.nodes
        self.nodes = {}
        changed = []
        for node, devices in nodes.items():
            state = NodeState(node, {d: _device(d, tags, index) for d, tags in devices.items()},
                              expected=self.fingerprints.get(node, ""))
            prev = old.get(node)
            if prev is not None:  # statuses carry over; aliases are re-learnt at the next birth
                state.online, state.bd_seq = prev.online, prev.bd_seq
                for d, ds in state.devices.items():
                    if d in prev.devices:
                        ds.status = prev.devices[d].status
                for name in ("seq_gaps", "births", "deaths", "fingerprint", "capacity", "backlog", "dropped",
                             "commands", "command_failures", "foreign_refusals", "last_refusal", "reloads_asked",
                             "refused_messages", "duplicates", "suspended"):
                    setattr(state, name, getattr(prev, name))
                state.config_refused = bool(state.expected and state.fingerprint is not None
                                            and state.fingerprint != state.expected)
                if state.online and state.expected != prev.expected:
                    changed.append(node)
            self.nodes[node] = state
        for state in self.nodes.values():
            if state.online:
                state.aliases.clear()
                state.seq = None  # the next message asks for a rebirth: the indices have changed
        return changed

    # ------------------------------------------------------------------ status
    def device_statuses(self) -> dict[str, DeviceState]:
        return {d: ds for n in self.nodes.values() for d, ds in n.devices.items()}

    def health(self) -> dict[str, Any]:
        return {"broker": self.broker.url, "connected": self.connected, "host_id": self.host_id,
                "last_error": self.last_error, "nodes": {n: s.as_dict() for n, s in self.nodes.items()}}

    # ------------------------------------------------------------------ marking
    def _mark_lost(self, devices: Iterable[DeviceState], quality: Quality = Quality.BAD_COMM) -> None:
        """As the poller does for a device it loses: its tags bad_comm (last values kept), its status tag lost.
        ``quality`` bad_config: an edge whose configuration is not ours (its values cannot be trusted)."""
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
        r = Readings(n + len(status), quality)  # no value: the last known one stays shown
        r.values[n:] = LOST
        r.qualities[n:] = int(Quality.GOOD)  # the status itself is known: lost
        r.stamp_unset(now)
        if len(r):
            self.apply(np.concatenate([idx, np.array(status, dtype=np.int64)]), r)

    def _node_lost(self, node: NodeState, why: str, *, resume: bool = False) -> None:
        """``resume``: our broker connection was lost, not the edge's session: its seq and aliases are kept, so
        that its messages the broker queued for us meanwhile are still understood when we are back (as history)."""
        if node.online:
            log.warning("%s: edge node offline (%s); its devices' tags bad_comm", node.name, why)
        node.online = False
        if not resume:
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
        node.last_message_ns = now
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
            metrics = codec.named(payload)
            fp = metrics.get(codec.FINGERPRINT)
            node.fingerprint = fp if isinstance(fp, str) else None
            dropped = metrics.get(codec.DROPPED)
            node.dropped_last = dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else 0
            node.dropped += node.dropped_last
            node.drops_unannounced += node.dropped_last
            self._node_metrics(node, metrics)
            edge_epoch = metrics.get(codec.EPOCH)
            node.edge_epoch = edge_epoch if isinstance(edge_epoch, int) and not isinstance(edge_epoch, bool) else None
            if node.edge_epoch is not None and node.edge_epoch > self.epoch:
                log.error("%s: the edge obeys host epoch %d, ours is %d: it will refuse our commands (another server "
                          "with a higher epoch commanded it; if this server is the only one, its data folder is older "
                          "than the edge's memory: docs/sparkplug.md)", node.name, node.edge_epoch, self.epoch)
            if node.dropped_last:
                log.error("%s: its store-and-forward dropped %d messages (the oldest) while away", node.name,
                          node.dropped_last)
            refused = bool(node.expected and node.fingerprint is not None and node.fingerprint != node.expected)
            if refused and not node.config_refused:
                log.error("%s: configuration fingerprint %s, ours %s: the edge runs another tags.yaml; its data are "
                          "refused until it runs ours", node.name, node.fingerprint, node.expected)
            elif node.config_refused and not refused:
                log.info("%s: configuration fingerprint %s matches ours again", node.name, node.fingerprint)
            node.config_refused = refused
            if refused:
                self._mark_lost(node.devices.values(), Quality.BAD_CONFIG)
            log.info("%s: NBIRTH (bdSeq %s, configuration %s)", node.name, node.bd_seq, node.fingerprint)
            # our epoch, so that the edge refuses a former active host's commands from now on
            await self._announce(client, node.name, now)
            return
        if topic.kind in ("NCMD", "DCMD"):
            return
        # every other message carries the next seq of the node's session (offline with a seq: its session from
        # before our broker connection was lost, queued for us by the broker, see _node_lost)
        expected = None if node.seq is None else (node.seq + 1) % 256
        got = int(payload.seq) if payload.HasField("seq") else None
        if expected is None:
            if now - node.rebirth_asked_ns > 1_000_000_000:  # once, not per message of a queue that waited for us
                node.rebirth_asked_ns = now
                await self._rebirth(client, node, f"{topic.kind} before any NBIRTH")
            return
        if got == node.seq and topic.kind == "DDATA":  # the last message again: the broker redelivering one whose
            node.duplicates += 1                       # PUBACK was lost with our connection (handled already)
            return
        if got != expected:
            node.seq_gaps += 1
            node.seq = got
            await self._rebirth(client, node, f"seq gap: expected {expected}, got {got}")
            return
        node.seq = got
        if topic.kind == "NDATA":
            self._node_data(node, codec.named(payload))
            return
        ds = node.devices.get(topic.device or "")
        if ds is None:
            return
        if node.config_refused:  # another configuration: its aliases, names or scaling may not be ours
            node.refused_messages += 1
            return
        if topic.kind == "DDEATH":
            self._mark_lost([ds])
            return
        if topic.kind == "DBIRTH":
            self._device_birth(node, ds, payload, now)
        elif topic.kind == "DDATA":
            self._device_data(node, ds, payload, now)

    def _node_metrics(self, node: NodeState, got: dict[str, Any]) -> None:
        for name in (codec.BACKLOG, codec.CAPACITY):
            v = got.get(name)
            if isinstance(v, int) and not isinstance(v, bool):
                setattr(node, "backlog" if name == codec.BACKLOG else "capacity", v)

    def _node_data(self, node: NodeState, got: dict[str, Any]) -> None:
        self._node_metrics(node, got)
        cid, outcome = got.get(codec.COMMAND_ID), got.get(codec.COMMAND_OUTCOME)
        if not isinstance(cid, str) or not isinstance(outcome, str) or not outcome:
            return
        reason = str(got.get(codec.COMMAND_REASON) or "")
        waiter = self.pending.pop(cid, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result((outcome, reason))
            return
        if outcome == "rejected":  # a command that was not ours: a former active host (stale epoch), a rogue client
            node.foreign_refusals += 1
            node.last_refusal = reason
            log.warning("%s: refused a command that was not ours (id %s): %s", node.name, cid or "(none)", reason)

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
        indices, readings = np.array(idx, dtype=np.int64), _take(got.readings, keep)
        if node.online:
            self._apply(ds, indices, readings)
        else:  # a device born again in a session queued for us (see _device_data): its values are history
            self._past(indices, readings)

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
        if not _first_time(node, ds.name, int(payload.timestamp), indices, readings):
            node.duplicates += 1  # the same observation again: a replay of a message whose PUBACK was lost
            return
        if not node.online:
            # of the edge's session before our broker connection was lost, queued for us by the broker (a persistent
            # session): the room was blind meanwhile and the tags are bad_comm until the edge's next birth
            node.suspended += 1
            self._past(indices, readings)
            return
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

    def _past(self, indices: I64, readings: Readings) -> None:
        if indices.size and self.on_history is not None:
            self.on_history(indices, readings)

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

    async def _announce(self, client: aiomqtt.Client, node: str, now: int) -> None:
        announce = codec.encode_node([codec.node_metric(codec.EPOCH, self.epoch, now)], timestamp_ns=now, seq=None)
        await client.publish(node_topic(self.group, "NCMD", node), announce, qos=1)

    async def set_epoch(self, epoch: int) -> None:
        """A new fencing token during a session (a forced active that gets the lease): announced to every online
        edge at once (at a birth otherwise)."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        client = self.client
        if client is None or not self.connected:
            return
        now = time.time_ns()
        for node in self.nodes.values():
            if node.online:
                with contextlib.suppress(aiomqtt.MqttError):
                    await self._announce(client, node.name, now)

    def _state(self, raw: bytes) -> bool:
        """A message on our own STATE topic: True when it is not our current online STATE and is older than our
        session (the former active's will, retained after our online): ours is to be said again."""
        got = parse_state(raw)
        if got is None or self.stepping_down:
            return False
        online, ts = got
        return ts < self.session_ms or (ts == self.session_ms and not online)

    # ------------------------------------------------------------------ commands and reload
    async def on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop the MQTT session runs on (a caller on another loop: the poll thread)."""
        loop = self.loop
        if loop is None or loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def command(self, node: str, device: str, tag: TagDef, value: Value, *, tolerance: float | None = None,
                      timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[str, str]:
        """Write ``value`` to ``tag`` of ``device`` behind edge ``node`` (a DCMD fenced by our epoch) and wait for
        its outcome: (done | rejected | failed | not_confirmed, reason). CommError when it cannot be sent or is
        not answered within ``timeout_s`` (the edge may have written: the caller reads back)."""
        client, state = self.client, self.nodes.get(node)
        if client is None or not self.connected:
            raise CommError(f"{device}: broker {self.broker.url} not connected (edge {node})")
        if state is None or not state.online:
            raise CommError(f"{device}: edge {node} offline")
        if state.config_refused:
            raise CommError(f"{device}: edge {node} runs another configuration ({state.fingerprint}, ours "
                            f"{state.expected}): no command is sent to it")
        cid = uuid.uuid4().hex
        text = value if isinstance(value, str) else None
        number = math.nan if value is None or isinstance(value, str) else float(value)
        raw = codec.command_request(tag.name, codec.DATATYPES[tag.dtype], number, text, epoch=self.epoch,
                                    command_id=cid, tolerance=tolerance, timestamp_ns=time.time_ns())
        waiter: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self.pending[cid] = waiter
        state.commands += 1
        try:
            await client.publish(device_topic(self.group, "DCMD", node, device), raw, qos=1)
            return await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            state.command_failures += 1
            raise CommError(f"{tag.name}: no answer from edge {node} within {timeout_s:g} s") from None
        except aiomqtt.MqttError as exc:
            state.command_failures += 1
            raise CommError(f"{tag.name}: DCMD to edge {node} not sent: {exc}") from exc
        finally:
            self.pending.pop(cid, None)

    async def reload(self, node: str) -> bool:
        """Ask edge ``node`` to read its configuration again (we run ``fingerprints[node]`` now); False when it
        cannot be sent (not connected: the edge's next birth shows its fingerprint, refused if not ours)."""
        client, state = self.client, self.nodes.get(node)
        if client is None or state is None:
            return False
        now = time.time_ns()
        state.reloads_asked += 1
        state.reload_asked_ns = now
        log.info("%s: asking the edge to reload its configuration (ours is now %s)", node, state.expected)
        try:
            await client.publish(node_topic(self.group, "NCMD", node),
                                 codec.encode_node([codec.node_metric(codec.RELOAD, True, now),
                                                    codec.node_metric(codec.FINGERPRINT, state.expected, now)],
                                                   timestamp_ns=now, seq=None), qos=1)
        except aiomqtt.MqttError as exc:
            log.warning("%s: reload request not sent: %s", node, exc)
            return False
        return True

    # ------------------------------------------------------------------ session
    def _is_active(self) -> bool:
        return self.active is None or self.active()

    async def _session(self) -> None:
        # a session's timestamp only grows, also across the two servers of a pair (wall clocks in step): the edges
        # take the newest STATE as the primary host's
        self.session_ms = max(time.time_ns() // 1_000_000, self.session_ms + 1)
        self.stepping_down = False
        will = aiomqtt.Will(state_topic(self.host_id), state_payload(False, self.session_ms), qos=1, retain=True)
        # a client id of our own: the two servers of a pair are the same host, and one id would cut the other off
        persistent = self.client_id is not None
        incoming = _KeptQueue.new()
        async with aiomqtt.Client(self.broker.host, self.broker.port,
                                  identifier=self.client_id or f"host-{self.host_id}-{uuid.uuid4().hex[:8]}",
                                  username=self.username, password=self.password, will=will,
                                  keepalive=self.keepalive_s, clean_session=not persistent, timeout=5,
                                  tls_context=self.tls, queue_type=incoming) as client:
            self.client = client
            await client.subscribe(group_filter(self.group), qos=1)
            await client.subscribe(state_topic(self.host_id), qos=1)
            await client.publish(state_topic(self.host_id), state_payload(True, self.session_ms), qos=1, retain=True)
            self.connected = True
            log.info("sparkplug host %s: online on %s (group %s, %d edge nodes, epoch %d)", self.host_id,
                     self.broker.url, self.group, len(self.nodes), self.epoch)
            consumer = asyncio.create_task(self._consume(client), name=f"sparkplug-host-{self.host_id}-consume")
            try:
                while not consumer.done():
                    if not self._is_active():  # a pair's active that stepped down: offline, then a clean leave
                        await self._step_down(client)
                        return
                    await asyncio.wait({consumer}, timeout=0.2)
                consumer.result()  # the connection's end (an MqttError)
            except aiomqtt.MqttError:
                await self._drain(client, incoming.kept)
                raise
            finally:
                consumer.cancel()
                await asyncio.wait({consumer})

    async def _step_down(self, client: aiomqtt.Client) -> None:
        self.stepping_down = True
        log.warning("sparkplug host %s: no longer the active server: STATE offline (session %d), leaving the broker",
                    self.host_id, self.session_ms)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(client.publish(state_topic(self.host_id), state_payload(False, self.session_ms),
                                                  qos=1, retain=True), timeout=2)

    async def _consume(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._dispatch(client, message)

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = Topic.parse(str(message.topic))
        if topic is None:
            return
        raw = message.payload if isinstance(message.payload, bytes) else b""
        if topic.kind == "STATE":
            if topic.node == self.host_id and self._state(raw):
                log.warning("sparkplug host %s: an older STATE on our topic (a former active's will): saying "
                            "online again (session %d)", self.host_id, self.session_ms)
                await client.publish(state_topic(self.host_id), state_payload(True, self.session_ms), qos=1,
                                     retain=True)
            return
        try:
            await self._handle(client, topic, raw)
        except aiomqtt.MqttError:
            raise
        except Exception:  # one malformed message must not stop the consumption of the others (logged)
            log.exception("%s: cannot handle %s", topic.node, message.topic)

    async def _drain(self, client: aiomqtt.Client, queue: asyncio.Queue[aiomqtt.Message] | None) -> None:
        """The connection is gone: the messages paho received before it went are still in aiomqtt's queue, which its
        iterator abandons at a disconnect. paho acknowledged them on receipt (the broker has forgotten them): they
        are handled now, or lost. What they would send (a rebirth request, our epoch) cannot go: dropped."""
        n = 0
        while queue is not None and not queue.empty():
            n += 1
            with contextlib.suppress(aiomqtt.MqttError):
                await self._dispatch(client, queue.get_nowait())
        if n:
            log.info("sparkplug host %s: %d messages received before the connection was lost handled", self.host_id, n)

    async def run(self) -> None:
        delay = 0.5
        while True:
            while not self._is_active():  # noqa: ASYNC110 - a pair's standby, off the broker until it takes over (the role is another thread's: no event to wait on)
                await asyncio.sleep(0.1)
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
                why = ("host stopped" if me is not None and me.cancelling()
                       else "no longer the active server" if self.stepping_down else "broker connection lost")
                for waiter in self.pending.values():  # no answer can come on this session: said now, not in 10 s
                    if not waiter.done():
                        waiter.set_result(("failed", f"{why} before the edge answered"))
                # a persistent session: what the broker queued for us meanwhile comes next (see _node_lost)
                resume = why == "broker connection lost" and self.client_id is not None
                for node in self.nodes.values():
                    if node.online or was:
                        self._node_lost(node, why, resume=resume)
            if self.stepping_down:
                self.stepping_down, delay = False, 0.0  # left on purpose: back as soon as we are active again
            await asyncio.sleep(delay)

    def start(self) -> asyncio.Task[None]:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.run(), name=f"sparkplug-host-{self.host_id}")
        return self._task

    async def aclose(self, drain_s: float = 0.5) -> None:
        """Stop; says offline first (the will covers a crash, a clean stop says it itself), then goes on consuming
        for ``drain_s``: what an edge published before it saw the offline STATE is applied, not lost (the edges
        store everything after it). A crash has no such drain: what is in flight when the broker publishes the
        will is lost (milliseconds of data, docs/sparkplug.md)."""
        client = self.client
        self.stepping_down = True  # our own offline STATE: not to be answered by saying online again
        if client is not None and self.connected:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(client.publish(state_topic(self.host_id), state_payload(False, self.session_ms),
                                                      qos=1, retain=True), timeout=2)
                await asyncio.sleep(drain_s)
                if self.client_id is not None:  # a persistent session: nothing more to queue for a stopped host
                    await asyncio.wait_for(client.unsubscribe(group_filter(self.group)), timeout=2)
        if self._task is not None:
            self._task.cancel()
            _done, stuck = await asyncio.wait({self._task}, timeout=10)  # bounded: a stop never hangs
            if stuck:
                log.error("sparkplug host %s: the MQTT session did not stop within 10 s", self.host_id)
            self._task = None


class EdgeDeviceDriver:
    """The fail-safe writer's driver (failsafe.writer.DriverLike) for a device polled by an edge.

    ``write`` is a DCMD through :meth:`SparkplugHost.command`, run on the host's loop whichever loop calls it;
    the edge's outcome becomes the driver contract's: done → the read-back (the value the edge re-read, applied
    here before its answer), rejected → WriteNotAllowed (nothing written), not_confirmed → WriteNotConfirmed,
    failed or no answer → CommError. ``read`` is this server's latest value of the point (the edge publishes by
    exception, and re-reads the device right after a write): ``read`` is what the tag database holds.
    """

    def __init__(self, host: SparkplugHost, node: str, device: str, read: Callable[[str], Sample]) -> None:
        self.host, self.node, self.device = host, node, device
        self._read = read

    @property
    def connected(self) -> bool:
        state = self.host.nodes.get(self.node)
        return self.host.connected and state is not None and state.online

    async def connect(self) -> None:
        if not self.connected:
            raise CommError(f"{self.device}: edge {self.node} is offline (broker {self.host.broker.url})")

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        return [self._read(p.name) for p in points]

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        outcome, reason = await self.host.on_loop(self.host.command(self.node, self.device, point, value,
                                                                    tolerance=tolerance))
        sample = self._read(point.name)
        if outcome == "done":
            return sample
        if outcome == "rejected":
            raise WriteNotAllowed(f"{point.name}: refused by edge {self.node}: {reason}")
        if outcome == "not_confirmed":
            raise WriteNotConfirmed(f"{point.name}: {reason}", sample)
        raise CommError(f"{point.name}: edge {self.node}: {outcome}: {reason}")


class _KeptQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's incoming queue (its ``queue_type``), kept by the session that made it, to drain it at a disconnect
    (:meth:`SparkplugHost._drain`). :meth:`new` returns a subclass that records its one instance in ``kept``."""

    kept: asyncio.Queue[aiomqtt.Message] | None = None

    @classmethod
    def new(cls) -> type[_KeptQueue]:
        class Session(cls):  # type: ignore[valid-type,misc]
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                type(self).kept = self

        return Session


def _first_time(node: NodeState, device: str, timestamp_ms: int, indices: I64, r: Readings) -> bool:
    """Whether this DDATA is news for ``node``: its observation (the device, the payload's timestamp, each metric's
    tag, source time, value, quality and text) compared exactly with the node's last DEDUP_WINDOW messages. A copy
    sent again (replayed as history with another seq and perhaps other aliases, after its PUBACK was lost; or
    redelivered by the broker) is the same observation: it is applied and historised once."""
    key = (device, timestamp_ms, indices.tobytes(), r.source_ns.tobytes(), r.values.tobytes(), r.qualities.tobytes(),
           tuple(sorted(r.texts.items())) if r.texts else ())
    seen = node.seen
    if key in seen:
        return False
    seen[key] = None
    if len(seen) > DEDUP_WINDOW:
        seen.popitem(last=False)  # the oldest (O(1): a plain dict's first key is a scan past its deleted slots)
    return True


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
    return r.take(np.array(keep, dtype=np.int64))


def _unique_last(indices: I64, r: Readings) -> tuple[I64, Readings]:
    """One reading per tag (the tag database refuses a batch with a tag twice): the last one wins."""
    if np.unique(indices).size == indices.size:
        return indices, r
    last: dict[int, int] = {int(i): k for k, i in enumerate(indices.tolist())}
    keep = sorted(last.values())
    return indices[keep], _take(r, keep)


__all__ = ["DeviceState", "EdgeDeviceDriver", "NodeState", "SparkplugHost"]
