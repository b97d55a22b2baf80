"""The server as Sparkplug B Host Application: partitions with ``source: mqtt://…`` consumed from their edges.

    tags.yaml partitions ── source: mqtt://b:1883 ──► one SparkplugHost per broker (drivers.sparkplug.host)
                                                         │ DBIRTH / DDATA: one apply per message
                                                         ▼
                                               the tag database's apply_readings (the poller's path)
                                                         │ subscribers: alarms, historian, hub, ...
    replayed values older than live (is_historical) ──► the historian's backfill (their source timestamps)
    NDEATH / DDEATH / broker lost ──► the devices' tags bad_comm, their status lost
                                   ──► CommWatch (server.components.commwatch), every 0.5 s: comm-loss alarms
    STATE spBv1.0/STATE/<host id> online (retained; will: offline) ── the edges publish only while it is online

    commands: API ─► fail-safe gate ─► DriverWriter ─► :meth:`EdgeComponent.driver` (an EdgeDeviceDriver per
              edge device) ─► DCMD (Host/Epoch = this server's epoch) ─► the edge's driver ─► NDATA outcome
    session   a single server's MQTT session is persistent under a client id kept in ``<data>/edge/host_client_id``
              (a broker that persists: what it acknowledged to an edge reaches us after its restart)
    epoch     the server's start count (``<data>/edge/host_epoch``, +1 at each start): an edge obeys no command
              of a lower epoch once it has seen ours (a server restarted elsewhere on an old copy of the folder)
    a pair    (``pair``: the HA component) both servers are the same Sparkplug host; only the active is on the
              broker (STATE online; the standby stays off it, silent). The epoch is 2**32 + the create revision of
              the election key this server holds (etcd's revisions only grow: a later active's is always above,
              and every pair epoch is above a single server's start count). Taken over: the key's revision is
              read (its lease ours), then the host connects, says online (newer timestamp), the edges are born
              again to it and hear its epoch. Stepped down: STATE offline (older: ignored by the edges that saw
              the new active), off the broker. Forced active (no etcd): the last term seen (the former active's
              while we were standby), which the edges still obey.
    alarms    system/edge/config_mismatch  an edge's partition fingerprint differs from ours (its data refused)
              system/edge/store_full       an edge's store-and-forward full, or dropped data while we were away
    reload    a partition whose fingerprint changed ─► NCMD Node Control/Reload Configuration to its edge
    broker    its credential and CA from the environment (:func:`broker_credential`: the password from a file or
              a variable, never logged); ``source: mqtts://`` is TLS

The poll component skips these devices (scada.config.partitions.edge_devices): one poll per device. No edge
partition: nothing starts (status ``ok``, "no edge partition"). /health ``edge`` shows each edge node:
online, last birth, configuration fingerprint, store-and-forward backlog, capacity and drops, sequence gaps,
clock skew, commands, its devices' statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.sparkplug.host import EdgeDeviceDriver, NodeState, SparkplugHost
from drivers.sparkplug.topics import default_host_id
from historian.service import Historian
from scada.config import CityConfig
from scada.config.partitions import Broker, partition_fingerprint
from scada.i18n import _
from scada.poll import device_stat_tags
from scada.tagdb import I64, Readings, TagDatabase
from server.components.base import SubsystemStatus
from server.components.commwatch import CommWatch
from server.ha.election import Role
from server.ha.etcd import EtcdClient, EtcdUnavailable

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.ha import HaComponent

log = logging.getLogger(__name__)


def _nodes(config: CityConfig) -> dict[Broker, dict[str, dict[str, list[str]]]]:
    """broker → node (partition) → device → its tag names (data and statistics tags)."""
    out: dict[Broker, dict[str, dict[str, list[str]]]] = {}
    for part in config.partitions.values():
        broker = part.broker
        if broker is None:
            continue
        stats: dict[str, list[str]] = {}
        for t in device_stat_tags(config, part.devices):
            stats.setdefault(t.device, []).append(t.name)
        out.setdefault(broker, {})[part.name] = {d: [*config.devices[d].tags, *stats.get(d, [])]
                                                 for d in part.devices}
    return out


def broker_credential(host_id: str) -> tuple[str | None, str | None, Path | None]:
    """(user, password, CA file) of this server at its brokers, from the environment (never logged):
    ``$SCADA_MQTT_PASSWORD_FILE`` (a file holding the password) or ``$SCADA_MQTT_PASSWORD``; the user is
    ``$SCADA_MQTT_USER``, else the host id (the ACL's, drivers.sparkplug.broker); no password: no credential
    (an anonymous client). ``$SCADA_MQTT_CA``: the CA that signed an ``mqtts://`` broker's certificate."""
    password: str | None = None
    path = os.environ.get("SCADA_MQTT_PASSWORD_FILE")
    if path:
        password = Path(path).read_text().strip()  # an unreadable file fails the start: said, not ignored
    elif os.environ.get("SCADA_MQTT_PASSWORD"):
        password = os.environ["SCADA_MQTT_PASSWORD"]
    user = (os.environ.get("SCADA_MQTT_USER") or host_id) if password else None
    ca = os.environ.get("SCADA_MQTT_CA")
    return user, password, Path(ca) if ca else None


def store_text(node: NodeState) -> str:
    """An edge's store-and-forward condition (NodeState.store_condition) in the server's language."""
    got = node.store_condition
    if got is None:
        return ""
    if got[0] == "full":
        return _("{edge}: store-and-forward full ({count} messages), the oldest being dropped").format(
            edge=node.name, count=got[1])
    return _("{edge}: store-and-forward overflowed while the server was away, {count} oldest messages dropped").format(
        edge=node.name, count=got[1])


def _fingerprints(config: CityConfig) -> dict[str, str]:
    return {p.name: partition_fingerprint(config, p.name) for p in config.partitions.values() if p.is_edge}


EPOCH_FILE = "host_epoch"
CLIENT_ID_FILE = "host_client_id"
RELOAD_GRACE_S = 15.0  # after our reload, an edge has this long to come back with our configuration (no alarm)
RELOAD_RETRY_S = 60.0  # an edge on another configuration is asked to reload it again this often
PAIR_EPOCH_BASE = 1 << 32  # a pair's epochs: above any single server's start count (a site moving to a pair)


class EdgeComponent:
    name = "edge"

    def __init__(self, server: ScadaServer, comm_every_s: float = 0.5, pair: HaComponent | None = None) -> None:
        """``pair``: the failover pair's component (None: a single server, the primary host always, its epoch its
        start count); with it, only the active is the host and its epoch comes from its election term."""
        self.server = server
        self.pair = pair
        self.primary = pair is None  # this server is the Sparkplug primary host now (a pair: the active, its term read)
        self.leader_term = 0  # the election key's create revision last seen (ours, or the active's while standby)
        self._pair_task: asyncio.Task[None] | None = None
        self.hosts: dict[Broker, SparkplugHost] = {}
        self.tagdb: TagDatabase | None = None
        self.comm: CommWatch | None = None
        self.comm_task: asyncio.Task[None] | None = None
        self.comm_every_s = comm_every_s
        self.epoch = 0
        self.drivers: dict[str, EdgeDeviceDriver] = {}  # device → the writer's driver for it
        self.alarm_texts: dict[str, str] = {"config_mismatch": "", "store_full": ""}
        self.backfilled = 0  # historical values written into the historian
        self.not_kept = 0  # historical values older than live with no historian to write them into (counted)
        self.reload_grace_s, self.reload_retry_s = RELOAD_GRACE_S, RELOAD_RETRY_S
        self._grace_until: dict[str, float] = {}  # node → monotonic end of its reload grace
        self._history: asyncio.Queue[tuple[I64, Readings]] = asyncio.Queue()
        self._history_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ ports
    def driver(self, device: str) -> EdgeDeviceDriver | None:
        """The fail-safe writer's driver for ``device`` when an edge polls it (None: not an edge device)."""
        return self.drivers.get(device)

    def _read(self, name: str) -> Any:
        if self.tagdb is None:
            raise RuntimeError("edge: no tag database")
        return self.tagdb.read(name)

    def _bind_drivers(self) -> None:
        self.drivers = {d: EdgeDeviceDriver(host, node, d, self._read)
                        for host in self.hosts.values() for node, state in host.nodes.items() for d in state.devices}

    def _start_epoch(self) -> int:
        """The start count, kept in the data folder (written before any command can carry it); a pair's comes
        from its election (:meth:`_follow_pair`), 0 until this server holds the key."""
        if self.pair is not None:
            return self.epoch
        path = self.server.data_dir / "edge" / EPOCH_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            previous = int(path.read_text().strip() or 0)
        except (OSError, ValueError):
            previous = 0
        epoch = previous + 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{epoch}\n")
        tmp.replace(path)
        return epoch

    def _client_id(self, host_id: str) -> str:
        """This server's own MQTT client id, kept in its data folder: its persistent session on the broker (what an
        edge published while the broker restarted or we were cut off is queued for us). Not for a failover pair:
        a standby stays off the broker, and a persistent session would have the broker queue the whole group's
        traffic for it meanwhile (a pair's host session is a clean one)."""
        path = self.server.data_dir / "edge" / CLIENT_ID_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            kept = path.read_text().strip()
            if kept:
                return kept
        made = f"{host_id}-{uuid.uuid4().hex[:12]}"
        path.write_text(f"{made}\n")
        return made

    def _on_history(self, indices: I64, readings: Readings) -> None:
        """Replayed values older than live: to the historian, off the MQTT loop (a worker thread writes them)."""
        self._history.put_nowait((indices, readings))

    async def _backfill_loop(self) -> None:
        while True:
            indices, readings = await self._history.get()
            hist = self.server.historian
            if not isinstance(hist, Historian):
                self.not_kept += len(readings)  # no historian running (backend none): nothing to keep them in
                continue
            try:
                self.backfilled += await asyncio.to_thread(hist.backfill, indices, readings)
            except Exception:  # the historian's buffer logs and alarms on its own; the host must go on (logged)
                log.exception("edge: historical values not written into the historian")

    def _host(self, broker: Broker, config: CityConfig, nodes: dict[str, dict[str, list[str]]],
              tagdb: TagDatabase) -> SparkplugHost:
        host_id = default_host_id(config.site)
        username, password, ca = broker_credential(host_id)
        host = SparkplugHost(broker, host_id, config.site, nodes, tagdb.index, self._apply, self._source_of,
                             fingerprints=_fingerprints(config), epoch=self.epoch, username=username,
                             password=password, ca_file=ca, active=self._is_primary if self.pair else None,
                             client_id=self._client_id(host_id) if self.pair is None else None)
        host.on_history = self._on_history
        return host

    # ------------------------------------------------------------------ a failover pair
    @property
    def primary_now(self) -> bool:
        """This server is the Sparkplug primary host now (a single server: always; a pair: the active)."""
        return self._is_primary() if self.pair is not None else True

    def _is_primary(self) -> bool:
        """The host's ``active``: this server is the pair's active, its term known (read live: a step-down is
        seen at once by the host, which leaves the broker)."""
        return self.primary and self.pair is not None and self.pair.election.role in (Role.ACTIVE, Role.FORCED)

    async def _set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            log.info("edge: host epoch %d (election term %d)", epoch, epoch - PAIR_EPOCH_BASE)
            self.epoch = epoch
        for host in self.hosts.values():
            await host.set_epoch(epoch)

    async def _follow_pair(self, every_s: float = 0.2, look_every_s: float = 2.0) -> None:
        """Follow the election (its own thread) for the host: the term of the key this server holds → the epoch,
        then primary; standby → not primary, the active's term noted (what a forced active goes on with)."""
        if self.pair is None:
            return
        election = self.pair.election
        etcd = EtcdClient(election.opt.etcd, timeout_s=1.0)
        term_lease, looked = 0, 0.0
        try:
            while True:
                try:
                    role, lease = election.role, election.lease
                    if role is Role.ACTIVE and lease:
                        if lease != term_lease:
                            held = await etcd.held(election.opt.key)
                            if held is not None and held[1] == lease:  # the key is bound to our lease: our term
                                term_lease, self.leader_term = lease, held[2]
                                await self._set_epoch(PAIR_EPOCH_BASE + held[2])
                        self.primary = term_lease == lease
                    elif role is Role.FORCED:
                        await self._set_epoch(PAIR_EPOCH_BASE + self.leader_term)
                        self.primary = True
                    else:
                        self.primary, term_lease = False, 0
                        if time.monotonic() - looked >= look_every_s:
                            looked = time.monotonic()
                            held = await etcd.held(election.opt.key)
                            if held is not None:
                                self.leader_term = max(self.leader_term, held[2])
                except EtcdUnavailable as exc:  # the election says what it means (it steps down on its own)
                    log.debug("edge: etcd unreachable for the term: %s", exc)
                except Exception:  # following the pair must go on (logged)
                    log.exception("edge: following the failover pair failed")
                await asyncio.sleep(every_s)
        finally:
            await etcd.aclose()

    def _apply(self, indices: I64, readings: Readings) -> None:
        if self.tagdb is not None:
            self.tagdb.apply_readings(indices, readings)

    def _source_of(self, indices: I64) -> I64:
        if self.tagdb is None:
            raise RuntimeError("edge: no tag database")
        return self.tagdb.source_ns[indices]

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        self.tagdb = tagdb
        st = self.server.status("edge")
        st.stats = self.stats
        wanted = _nodes(config)
        if not wanted:
            st.set("ok", "no edge partition")
            return
        self.epoch = self._start_epoch()
        if self.pair is not None:
            self._pair_task = asyncio.create_task(self._follow_pair(), name="edge-pair")
        for broker, nodes in wanted.items():
            self.hosts[broker] = host = self._host(broker, config, nodes, tagdb)
            host.start()
            log.info("edge: Sparkplug host %s on %s (%s, epoch %d)", host.host_id, broker.url,
                     f"user {host.username}" if host.username else "anonymous", self.epoch)
        self._bind_drivers()
        self.comm = CommWatch(config, tagdb)
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("poll")  # the same comm-loss conditions as the poller's
            self.server.system_alarms.initialise("edge")
        self.comm_task = asyncio.create_task(self._comm_loop(), name="edge-comm-watch")
        self._history_task = asyncio.create_task(self._backfill_loop(), name="edge-historian-backfill")
        st.set("ok", f"{sum(len(h.nodes) for h in self.hosts.values())} edge partition(s) via "
                     f"{', '.join(b.url for b in self.hosts)}")

    async def _comm_loop(self) -> None:
        while True:
            try:
                sink, comm = self.server.system_alarms, self.comm
                if sink is not None and comm is not None and self.primary:  # a standby does not watch the edges
                    statuses = {d: s for h in self.hosts.values() for d, s in h.device_statuses().items()}
                    comm.evaluate(statuses, sink)
                self._alarms()
                self._status()
                await self._ask_reloads()
            except Exception:  # the watch must survive a bad cycle: it is what says the field is blind (logged)
                log.exception("edge: comm-loss watch failed")
            await asyncio.sleep(self.comm_every_s)

    def _alarms(self) -> None:
        """The edges' configuration and store-and-forward conditions → their system alarms (on change only)."""
        nodes = [s for h in self.hosts.values() for s in h.nodes.values()]
        now = time.monotonic()
        # the alarms' {value}, in the server's language (the journal keeps it as said)
        texts = {"config_mismatch": "; ".join(_("{edge}: the edge runs {edge_fingerprint}, the server {fingerprint}")
                                              .format(edge=s.name, edge_fingerprint=s.fingerprint,
                                                      fingerprint=s.expected)
                                              for s in nodes
                                              if s.config_refused and now >= self._grace_until.get(s.name, 0.0)),
                 "store_full": "; ".join(store_text(s) for s in nodes if s.store_condition)}
        sink = self.server.system_alarms
        for code, text in texts.items():
            if text == self.alarm_texts.get(code):
                continue
            self.alarm_texts[code] = text
            (log.error if text else log.info)("edge: %s %s", code, text or "cleared")
            if sink is not None:
                sink.raise_("edge", code, "", bool(text), detail=text[:300])
        for s in nodes:  # said (the alarm stays in the list until acknowledged, even once the backlog is drained)
            s.drops_unannounced = 0

    async def _ask_reloads(self) -> None:
        """An edge on another configuration is asked to read its own again (it may have been deployed since)."""
        now = time.time_ns()
        for host in self.hosts.values():
            for s in host.nodes.values():
                if s.online and s.config_refused and now - s.reload_asked_ns >= self.reload_retry_s * 1e9:
                    await host.reload(s.name)

    def _status(self) -> None:
        st = self.server.status("edge")
        offline = sorted(n for h in self.hosts.values() for n, s in h.nodes.items() if not s.online)
        down = [b.url for b, h in self.hosts.items() if not h.connected]
        problems = [t for t in self.alarm_texts.values() if t]
        if not self._is_primary() and self.pair is not None:
            st.set("ok", f"{self.pair.election.role.value}: the active server is the Sparkplug host "
                         f"(this one stays off the broker)")
        elif down:
            st.set("degraded", f"broker unreachable: {', '.join(down)}")
        elif offline:
            st.set("degraded", f"edge offline: {', '.join(offline)}")
        elif problems:
            st.set("degraded", "; ".join(problems))
        else:
            st.set("ok", f"{sum(len(h.nodes) for h in self.hosts.values())} edge partition(s) online")

    def stats(self) -> dict[str, Any]:
        """Per broker URL its host's health (nodes...), and ``host``: this server's epoch and history counts."""
        return {**{b.url: h.health() for b, h in self.hosts.items()},
                **({"host": {"epoch": self.epoch, "primary": self.primary_now,
                             "backfilled": self.backfilled, "history_not_kept": self.not_kept}}
                   if self.hosts else {})}

    def health(self) -> SubsystemStatus:
        return self.server.status("edge")

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """A reload: hosts kept per broker (rebound: a node asked to rebirth at its next message), added, stopped;
        an edge whose partition changed is asked to reload its configuration (NCMD)."""
        self.tagdb = tagdb
        wanted = _nodes(new)
        stopped = [b for b in self.hosts if b not in wanted]
        for b in stopped:
            await self.hosts.pop(b).aclose()
        if wanted and not self.epoch and self.pair is None:
            self.epoch = self._start_epoch()
        if wanted and self.pair is not None and self._pair_task is None:
            self._pair_task = asyncio.create_task(self._follow_pair(), name="edge-pair")
        started, reloaded = [], []
        for broker, nodes in wanted.items():
            host = self.hosts.get(broker)
            if host is None:
                self.hosts[broker] = host = self._host(broker, new, nodes, tagdb)
                host.start()
                started.append(broker.url)
            else:
                for node in host.bind(nodes, tagdb.index, _fingerprints(new)):
                    if await host.reload(node):  # else its data stay refused (alarm) until it runs ours
                        reloaded.append(node)
                        self._grace_until[node] = time.monotonic() + self.reload_grace_s
        self._bind_drivers()
        if self.comm is not None:
            self.comm.bind(new, tagdb)
        elif self.hosts:
            self.comm = CommWatch(new, tagdb)
            if self.server.system_alarms is not None:
                self.server.system_alarms.initialise("edge")
            self.comm_task = asyncio.create_task(self._comm_loop(), name="edge-comm-watch")
        if self.hosts and self._history_task is None:
            self._history_task = asyncio.create_task(self._backfill_loop(), name="edge-historian-backfill")
        return {"brokers": [b.url for b in wanted], "started": started, "stopped": [b.url for b in stopped],
                "reload_asked": reloaded}

    async def aclose(self) -> None:
        for task in (self.comm_task, self._history_task, self._pair_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.comm_task = self._history_task = self._pair_task = None
        for host in self.hosts.values():
            await host.aclose()
        self.hosts.clear()
