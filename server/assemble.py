"""Which components the server runs, how they are wired to each other, and in which order they start.

    start(server, config, skip=())
      server.open(config)          stores, tag database, hub (server.app)
      alarms     journal + alarm engine          ─┐ reset_at_source ◄── failsafe (the monitor's latch)
      ha         failover election (only with settings ``ha``) ─ may_write ──► failsafe's DriverWriter
      historian  recorder → buffer → backend      │
      poll       field-safety thread (junctions)  │ call / driver ──► failsafe's DriverWriter
                 + scheduler + drivers (the rest) │
      edge       Sparkplug host: partitions with  │ (their devices are not polled here)
                 source: mqtt://… from their edges│ driver ──► failsafe's DriverWriter (a write is a DCMD)
      failsafe   gate, leases, crisis; monitor   ─┘ (stops before the drivers it writes through)
                 attached to the field-safety thread's database
      stale      stale sweeper
      health     health tags                     ◄── historian (buffer level)
      workorders work-order store, crews.yaml    ◄── alarms (events, active alarms, journal)
      hub        WebSocket flusher
      server.started()
    stop(server)   every started component in reverse order (bounded), then server.aclose()

A component that fails to start is reported ``down`` with the reason; the others run. ``skip`` leaves
named components out (reported ``unavailable``): a benchmark that feeds the tag database itself skips
``poll`` and ``stale``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

from scada.config import CityConfig
from server.api import create_intake_app
from server.app import ScadaServer
from server.components.alarms import AlarmComponent
from server.components.base import Component
from server.components.edge import EdgeComponent
from server.components.failsafe import FailsafeComponent
from server.components.ha import HaComponent
from server.components.health import HealthComponent
from server.components.historian import HistorianComponent
from server.components.hub import HubComponent
from server.components.poll import PollComponent
from server.components.stale import StaleComponent
from server.components.workorders import WorkOrderComponent

log = logging.getLogger(__name__)

NAMES = ("alarms", "ha", "historian", "poll", "edge", "failsafe", "stale", "health", "workorders", "hub")


def components(server: ScadaServer) -> list[Component]:
    """Every component, wired, in start order."""
    poll = PollComponent(server)
    ha = HaComponent(server, server.settings.ha, poll) if server.settings.ha is not None else None  # a pair only
    edge = EdgeComponent(server, pair=ha)  # a pair: only the active is the Sparkplug host, its epoch its term
    failsafe = FailsafeComponent(server, poll=poll, may_write=ha.may_write if ha is not None else None,
                                 edge=edge.driver)
    historian = HistorianComponent(server)
    alarms = AlarmComponent(server, reset_at_source=failsafe.reset_at_source)
    return [alarms, *([ha] if ha is not None else []), historian, poll, edge, failsafe,
            StaleComponent(server, before_sweep=poll.safety.flush_if_here),
            HealthComponent(server, historian=historian),
            WorkOrderComponent(server, alarms=alarms, intake_app=create_intake_app), HubComponent(server)]


async def start(server: ScadaServer, config: CityConfig, skip: Collection[str] = (), *, opened: bool = False) -> None:
    """Open the server on ``config`` (unless ``opened``: the caller did, to serve the API meanwhile) and start
    its components in order (see the module docstring)."""
    unknown = set(skip) - set(NAMES)
    if unknown:
        raise ValueError(f"no such component: {', '.join(sorted(unknown))}; components: {', '.join(NAMES)}")
    if not opened:
        server.open(config)
    for comp in components(server):
        st = comp.health()
        if comp.name in skip:
            st.set("unavailable", "not started (left out by the assembler)")
            continue
        try:
            await comp.start(server.config, server.tagdb)
            server.components[comp.name] = comp
        except Exception as exc:  # a broken subsystem must not stop the others (logged, health down)
            log.exception("%s: cannot start", comp.name)
            st.set("down", f"cannot start: {exc!r}")
            with contextlib.suppress(Exception):  # stop whatever it had started; the reason above stands
                await asyncio.wait_for(comp.aclose(), timeout=15)
        if comp.name == "alarms" and server.journal is None and server.status("journal").status == "starting":
            server.status("journal").set(st.status, st.detail)  # the journal is the alarm component's
    server.started()


async def _close(comp: Component, timeout_s: float = 15.0) -> bool:
    try:
        await asyncio.wait_for(comp.aclose(), timeout=timeout_s)
        return True
    except Exception as exc:  # one component's failing stop must not keep the others running (logged)
        log.exception("%s: stop failed", comp.name)
        comp.health().set("down", f"stop failed: {exc!r}")
        return False


async def stop(server: ScadaServer) -> None:
    """Stop the started components in reverse order, then close the server's stores; safe to call twice."""
    for name in reversed(list(server.components)):
        comp = server.components.pop(name)
        if await _close(comp) and comp.name != "hub":
            comp.health().set("stopped")
    await server.aclose()
