"""The server as Sparkplug B Host Application: partitions with ``source: mqtt://…`` consumed from their edges.

    tags.yaml partitions ── source: mqtt://b:1883 ──► one SparkplugHost per broker (drivers.sparkplug.host)
                                                         │ DBIRTH / DDATA: one apply per message
                                                         ▼
                                               the tag database's apply_readings (the poller's path)
                                                         │ subscribers: alarms, historian, hub, ...
    NDEATH / DDEATH / broker lost ──► the devices' tags bad_comm, their status lost
                                   ──► CommWatch (server.components.commwatch), every 0.5 s: comm-loss alarms
    STATE spBv1.0/STATE/<host id> online (retained; will: offline) ── the edges publish only while it is online

The poll component skips these devices (scada.config.partitions.edge_devices): one poll per device. No edge
partition: nothing starts (status ``ok``, "no edge partition"). /health ``edge`` shows each edge node:
online, last birth, store-and-forward backlog, sequence gaps, clock skew, its devices' statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from drivers.sparkplug.host import SparkplugHost
from drivers.sparkplug.topics import default_host_id
from scada.config import CityConfig
from scada.config.partitions import Broker
from scada.poll import device_stat_tags
from scada.tagdb import I64, Readings, TagDatabase
from server.components.base import SubsystemStatus
from server.components.commwatch import CommWatch

if TYPE_CHECKING:
    from server.app import ScadaServer

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


class EdgeComponent:
    name = "edge"

    def __init__(self, server: ScadaServer, comm_every_s: float = 0.5) -> None:
        self.server = server
        self.hosts: dict[Broker, SparkplugHost] = {}
        self.tagdb: TagDatabase | None = None
        self.comm: CommWatch | None = None
        self.comm_task: asyncio.Task[None] | None = None
        self.comm_every_s = comm_every_s

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
        host_id = default_host_id(config.site)
        for broker, nodes in wanted.items():
            host = SparkplugHost(broker, host_id, config.site, nodes, tagdb.index, self._apply, self._source_of)
            self.hosts[broker] = host
            host.start()
        if not self.hosts:
            st.set("ok", "no edge partition")
            return
        self.comm = CommWatch(config, tagdb)
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("poll")  # the same comm-loss conditions as the poller's
        self.comm_task = asyncio.create_task(self._comm_loop(), name="edge-comm-watch")
        st.set("ok", f"{sum(len(h.nodes) for h in self.hosts.values())} edge partition(s) via "
                     f"{', '.join(b.url for b in self.hosts)}")

    async def _comm_loop(self) -> None:
        while True:
            try:
                sink, comm = self.server.system_alarms, self.comm
                if sink is not None and comm is not None:
                    statuses = {d: s for h in self.hosts.values() for d, s in h.device_statuses().items()}
                    comm.evaluate(statuses, sink)
                self._status()
            except Exception:  # the watch must survive a bad cycle: it is what says the field is blind (logged)
                log.exception("edge: comm-loss watch failed")
            await asyncio.sleep(self.comm_every_s)

    def _status(self) -> None:
        st = self.server.status("edge")
        offline = sorted(n for h in self.hosts.values() for n, s in h.nodes.items() if not s.online)
        down = [b.url for b, h in self.hosts.items() if not h.connected]
        if down:
            st.set("degraded", f"broker unreachable: {', '.join(down)}")
        elif offline:
            st.set("degraded", f"edge offline: {', '.join(offline)}")
        else:
            st.set("ok", f"{sum(len(h.nodes) for h in self.hosts.values())} edge partition(s) online")

    def stats(self) -> dict[str, Any]:
        return {b.url: h.health() for b, h in self.hosts.items()}

    def health(self) -> SubsystemStatus:
        return self.server.status("edge")

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """A reload: hosts kept per broker (rebound: a node asked to rebirth at its next message), added, stopped."""
        self.tagdb = tagdb
        wanted = _nodes(new)
        stopped = [b for b in self.hosts if b not in wanted]
        for b in stopped:
            await self.hosts.pop(b).aclose()
        started = []
        for broker, nodes in wanted.items():
            host = self.hosts.get(broker)
            if host is None:
                host = SparkplugHost(broker, default_host_id(new.site), new.site, nodes, tagdb.index, self._apply,
                                     self._source_of)
                self.hosts[broker] = host
                host.start()
                started.append(broker.url)
            else:
                host.bind(nodes, tagdb.index)
        if self.comm is not None:
            self.comm.bind(new, tagdb)
        elif self.hosts:
            self.comm = CommWatch(new, tagdb)
            self.comm_task = asyncio.create_task(self._comm_loop(), name="edge-comm-watch")
        return {"brokers": [b.url for b in wanted], "started": started, "stopped": [b.url for b in stopped]}

    async def aclose(self) -> None:
        if self.comm_task is not None:
            self.comm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.comm_task
            self.comm_task = None
        for host in self.hosts.values():
            await host.aclose()
        self.hosts.clear()
