"""The field-safety monitor is isolated from the main event loop (server.components.safety).

Real simulator (SNMP junctions) + real server. The main loop is blocked on purpose (what a blocking API
handler did to it): the junctions are still read on time in the "field-safety" thread, the monitor still
decides on each sample there (a conflicting green injected during the stall is seen during the stall), and
nothing of it is a false comm loss. The watch (main loop) raises "monitor blind at J..." when a junction's
samples stop (SNMP disconnect) or when the safety loop itself stalls, and "monitor not running" when no
monitor runs; a normal start raises none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from failsafe.monitor import FieldSafetyMonitor
from scada.alarms.system import BY_KEY, rule_name
from scada.config import load_city
from scada.config.partitions import junction_devices
from server.app import ScadaServer
from server.components.poll import PollComponent
from server.components.safety import SafetyPoll
from tests.server.conftest import login, running_server
from tests.server.test_e2e import NIGHT, fast_city, until

BLIND = BY_KEY[("failsafe", "monitor_blind")]
NOT_RUNNING = BY_KEY[("failsafe", "monitor_not_running")]


class ThreadSim:
    """The simulator in a thread and event loop of its own: blocking the server's loop must not silence it."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.models = sim.models
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="simulator", daemon=True)
        self.thread.start()

    async def run(self, coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def comm_fault(self, equipment: str, kind: str | None, **params: Any) -> None:
        await self.run(self.sim.comm_fault(equipment, kind, **params))

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self.sim.endpoints)

    async def aclose(self) -> None:
        await self.run(self.sim.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join, 10)
        self.loop.close()


@contextlib.asynccontextmanager
async def threaded_sim(tmp_path: Path, seed: int = 42) -> AsyncIterator[tuple[ThreadSim, Path]]:
    from sim.runner import Simulator  # tests may import sim; the core never does

    tags = fast_city(tmp_path)
    config = load_city(tags, tags.parent / "alarms.yaml")
    sim = Simulator(config, seed=seed, speed=1.0, ports="test", state_dir=tmp_path / "sim", start_time=NIGHT,
                    control_port=None)
    ts = ThreadSim(sim)
    await ts.run(sim.start())
    try:
        yield ts, tags
    finally:
        await ts.aclose()


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[ThreadSim, Path]]:
    async with threaded_sim(tmp_path) as got:
        yield got


def safety_of(server: ScadaServer) -> SafetyPoll:
    poll = server.components["poll"]
    assert isinstance(poll, PollComponent)
    return poll.safety


def blind_alarm_id(server: ScadaServer, junction: str) -> str:
    eq = server.config.equipment[junction]
    return f"{rule_name(BLIND, 'junction')}:{eq.tag_name(BLIND.local_tag)}"


async def active_ids(c: httpx.AsyncClient, h: dict[str, str]) -> set[str]:
    r = await c.get("/api/v1/alarms", headers=h, params={"limit": 5000})
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()["alarms"] if a["active"]}


def sample_during(check: Callable[[], bool], seconds: float, every: float = 0.05) -> list[bool]:
    """Run ``check`` from a plain thread every ``every`` s for ``seconds`` (while the main loop is blocked)."""
    out: list[bool] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(check())
        time.sleep(every)
    return out


async def test_a_blocked_main_loop_does_not_starve_the_monitor(field: tuple[ThreadSim, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        safety = safety_of(server)
        junctions = set(junction_devices(server.config))
        poll = server.components["poll"]
        assert isinstance(poll, PollComponent) and poll.poller is not None and safety.poller is not None
        # polled once: the junction devices by the safety poller only
        assert junctions and set(safety.poller.devices) == junctions
        assert not junctions & set(poll.poller.devices)
        await until("every junction checked", lambda: safety.checking() and all(safety.checking().values()),
                    timeout=60)
        # the main poller's warm-up ends with a full garbage collection, which holds the GIL (every thread)
        await until("the main warm-up", lambda: server.status("poll").status != "starting", timeout=60)
        await asyncio.sleep(1.0)
        assert safety.loop is not None and safety.thread is not None and safety.thread.name == "field-safety"
        # a normal start: no blind / not-running alarm was ever raised
        assert not safety.blind and not safety.not_running
        errors_before = {n: s.errors for n, s in safety.stats.items()}

        # block the main loop for 3 s (what a blocking handler did); watch the monitor from a plain thread
        jid = "J005"
        model = sim.models[jid]
        seen: dict[str, Any] = {}

        def watch() -> None:
            seen["checking"] = sample_during(lambda: all(safety.checking().values()), 3.0)
            mon = safety.monitor
            seen["state"] = mon.view(jid).state if mon is not None else None  # type: ignore[union-attr]

        model.inject("monitor_disabled")
        model.inject("conflicting_green", phases=tuple(range(1, model.phases + 1)))
        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(3.2)  # noqa: ASYNC251 - on purpose: the main loop stalls (no API, no alarm engine, no main poller)
        watcher.join()
        assert seen["checking"] and all(seen["checking"]), "the monitor missed a junction while the main loop slept"
        assert seen["state"] == "conflict", seen  # decided in the safety thread, during the stall
        assert {n: s.errors for n, s in safety.stats.items()} == errors_before  # no false comm loss
        # then the P1 reaches the alarm list
        cg = f"{rule_name(BY_KEY[('failsafe', 'conflicting_green')], 'junction')}:" \
             f"{server.config.equipment[jid].tag_name('failsafe/conflicting_green')}"
        await until("conflicting green P1", lambda: _has(c, h, cg), timeout=10)
        # the monitor's flash request went out from the safety loop to the junction
        await until("flash requested", lambda: model.system_pattern_control == 255, timeout=30)
        model.clear()


async def _has(c: httpx.AsyncClient, h: dict[str, str], alarm_id: str) -> bool:
    return alarm_id in await active_ids(c, h)


async def _lacks(c: httpx.AsyncClient, h: dict[str, str], alarm_id: str) -> bool:
    return alarm_id not in await active_ids(c, h)


async def test_blind_and_not_running_are_p1_within_a_second(field: tuple[ThreadSim, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        safety = safety_of(server)
        await until("every junction checked", lambda: safety.checking() and all(safety.checking().values()),
                    timeout=60)
        # the main poller's warm-up ends with a full garbage collection, which holds the GIL (every thread)
        await until("the main warm-up", lambda: server.status("poll").status != "starting", timeout=60)
        await asyncio.sleep(1.0)
        assert safety.db is not None
        jid = "J003"
        period = safety.db.period_s[jid]
        blind_id = blind_alarm_id(server, jid)
        assert blind_id not in await active_ids(c, h)

        # comm loss at one junction: blind within two periods + 1 s of its last good sample
        await sim.comm_fault(jid, "disconnect")
        last = safety.db.last_good_ns[jid] / 1e9
        await until("blind raised", lambda: jid in safety.blind, timeout=10, every=0.05)
        assert time.time() - last < 2 * period + 1.0
        await until("blind in /alarms", lambda: _has(c, h, blind_id), timeout=5)
        assert set(safety.blind) == {jid}  # the others are seen
        await sim.comm_fault(jid, None)
        await until("blind cleared", lambda: jid not in safety.blind, timeout=30)

        # the safety loop itself stalls (blocked 3 s): its decisions stop, so every junction turns blind two
        # periods after the last sample decided on it (the same limit as any other cause), within 1 s of that,
        # and the reason names the stall (the heartbeat is over 1 s old by then); caught by the main loop's watch
        assert safety.loop is not None
        safety.loop.call_soon_threadsafe(time.sleep, 3.0)
        await until("stall seen", lambda: len(safety.blind) == len(safety.db.junctions),  # type: ignore[union-attr]
                    timeout=5, every=0.05)
        newest = max(safety.db.checked_ns.values()) / 1e9  # the last decision before the stall (still stalled)
        assert time.time() - newest < 2 * period + 1.0
        assert all("stalled" in why for why in safety.blind.values()), safety.blind
        await until("stall over", lambda: not safety.blind, timeout=15)

        # no monitor running: P1 "field-safety monitor not running" within a second
        not_running_id = f"{rule_name(NOT_RUNNING)}:{NOT_RUNNING.tag()}"
        await safety.detach()
        t0 = time.monotonic()
        await until("not running raised", lambda: safety.not_running, timeout=5, every=0.05)
        assert time.monotonic() - t0 < 1.0
        await until("not running in /alarms", lambda: _has(c, h, not_running_id), timeout=5)
        fs = server.components["failsafe"].fs  # type: ignore[attr-defined]
        assert fs is not None and safety.db is not None  # a stopped monitor stays stopped: a new one on the same db
        await safety.attach(FieldSafetyMonitor(server.config, fs.vocab, safety.db, fs.gate))
        await until("running again", lambda: not safety.not_running, timeout=5)
        await asyncio.sleep(0)
