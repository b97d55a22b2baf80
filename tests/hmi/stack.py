"""A real simulator + server for the HMI tests, in a background thread with its own asyncio loop.

    test thread (Qt, pytest-qt)                  stack thread (asyncio)
    ───────────────────────────                  ──────────────────────────────────────────────
    Bridge → HTTP/WebSocket ──────────────────►  uvicorn (server, port 0)
    stack.run(coro) / stack.inject(...) ───────►  sim.runner.Simulator (demo city, port 0, autostep)

The demo city is copied to a temporary directory with faster scan classes (normal 2 s, slow 5 s) so
a lamp failure reaches the console within a couple of seconds. ``restart_server()`` stops and starts
the server on the same port (the console must reconnect by itself). ``simulator=False``: the server alone,
every device pointed at nothing (a console test that needs the server's answers, not the field's);
``settings``: the server's (dotted keys, e.g. ``{"lang": None}``: the site's language, not the tests' English).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from tests.server.conftest import PASSWORDS, nowhere_endpoints, running_server

ROOT = Path(__file__).resolve().parents[2]


def fast_city(dest: Path) -> tuple[Path, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "inventory", dest / "inventory", dirs_exist_ok=True)
    text = (ROOT / "tags.yaml").read_text(encoding="utf-8")
    text = text.replace("normal: 10s", "normal: 2s").replace("slow: 60s", "slow: 5s")
    (dest / "tags.yaml").write_text(text, encoding="utf-8")
    shutil.copy(ROOT / "alarms.yaml", dest / "alarms.yaml")
    shutil.copy(ROOT / "commands.yaml", dest / "commands.yaml")
    return dest / "tags.yaml", dest / "alarms.yaml"


class LiveStack:
    def __init__(self, tmp: Path, historian: str = "embedded", simulator: bool = True,
                 settings: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.historian = historian
        self.simulator = simulator
        self.settings = dict(settings or {})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hmi-test-stack", daemon=True)
        self.sim: Any = None
        self.server: Any = None
        self.url = ""
        self.port = 0
        self._cm: Any = None
        self._sim_cm: Any = None

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        async def go() -> Any:
            return fn(*args, **kw)

        return self.run(go())

    # ------------------------------------------------------------------ start / stop
    def start(self) -> LiveStack:
        self.thread.start()
        self.tags_file, self.alarms_file = fast_city(self.tmp / "city")
        if self.simulator:
            self.run(self._start_sim(), 180)
        self.run(self._start_server(0), 120)
        return self

    async def _start_sim(self) -> None:
        from scada.config import load_city
        from sim.runner import Simulator

        config = load_city(self.tags_file, self.alarms_file)
        self._sim_cm = Simulator(config, seed=42, ports="test", state_dir=self.tmp / "sim", autostep=True)
        self.sim = await self._sim_cm.__aenter__()

    async def _start_server(self, port: int) -> None:
        settings: dict[str, Any] = {"historian.backend": self.historian, "listen.port": port,  # dotted keys
                                    **self.settings}
        endpoints = dict(self.sim.endpoints) if self.sim is not None else nowhere_endpoints(self.tags_file)
        self._cm = running_server(self.tmp / "data", endpoints, tags=self.tags_file, alarms=self.alarms_file,
                                  **settings)
        self.server, self.url = await self._cm.__aenter__()
        self.port = int(self.url.rsplit(":", 1)[1])

    async def _stop_server(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            with contextlib.suppress(Exception):
                await cm.__aexit__(None, None, None)

    def stop_server(self) -> None:
        self.run(self._stop_server(), 90)

    def start_server(self) -> None:
        self.run(self._start_server(self.port), 120)

    def restart_server(self) -> None:
        self.stop_server()
        self.start_server()

    def stop(self) -> None:
        async def down() -> None:
            await self._stop_server()
            if self._sim_cm is not None:
                with contextlib.suppress(Exception):
                    await self._sim_cm.__aexit__(None, None, None)

        try:
            self.run(down(), 120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    # ------------------------------------------------------------------ faults
    def inject(self, eq: str, fault: str, **params: Any) -> None:
        self.call(self.sim.inject, eq, fault, **params)

    def clear(self, eq: str, fault: str | None = None) -> None:
        self.call(self.sim.clear, eq, fault)

    def comm_fault(self, eq: str, kind: str | None, **params: Any) -> None:
        self.run(self.sim.comm_fault(eq, kind, **params))


__all__ = ["PASSWORDS", "LiveStack"]
