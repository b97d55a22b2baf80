"""A real Mosquitto for the edge tests (Debian ``mosquitto``), and the demo city split into partitions.

    async with Mosquitto(tmp_path) as broker:     generated config: one listener on 127.0.0.1:<free port>,
        broker.url / broker.port                  anonymous allowed, persistent as the product's broker (its
        await broker.stop(); await broker.start() database in the folder); bounded lifetime (the fixture
                                                  kills it at exit, a watchdog after ``lifetime_s``)

Missing ``mosquitto``: the test is skipped on a developer's machine, failed under CI (tests.peers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import pytest

from drivers.sparkplug.broker import persistence_config
from historian.service import Historian
from scada.config.partitions import Broker
from tests.peers import require_peer
from tests.server.test_e2e import until


def free_port() -> int:
    """A port free on 127.0.0.1 now (Mosquitto cannot report an OS-assigned port back to us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, folder: Path, lifetime_s: float = 240.0) -> None:
        self.program = require_peer("mosquitto", "Debian package mosquitto (.ci/debian-packages.txt)")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.lifetime_s = lifetime_s
        self.proc: asyncio.subprocess.Process | None = None
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{self.persistence()}"
                             f"{self.own_user()}log_dest file {folder / 'mosquitto.log'}\n")

    def persistence(self) -> str:
        """As the product's broker (drivers.sparkplug.broker): its database in this folder, kept across stop/start."""
        return persistence_config(self.folder)

    @staticmethod
    def own_user() -> str:
        """Started as root, Mosquitto drops to user ``mosquitto``, which cannot read pytest's 0700 folders (password
        file, ACL, log): it stays the test's user (the option is ignored when not root)."""
        return f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"

    @property
    def broker(self) -> Broker:
        return Broker("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return self.broker.url

    async def start(self) -> None:
        # `timeout` bounds the daemon even if this test process dies without its cleanup
        self.proc = await asyncio.create_subprocess_exec("timeout", "-s", "KILL", str(int(self.lifetime_s)),
                                                         self.program, "-c", str(self.conf),
                                                         stdout=asyncio.subprocess.DEVNULL,
                                                         stderr=asyncio.subprocess.DEVNULL)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.log()[-2000:]}")

    async def stop(self) -> None:
        """SIGTERM to `timeout`, which hands it on to mosquitto (a SIGKILL could not be handed on)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with Mosquitto(tmp_path / "broker") as broker:
        yield broker


async def assert_in_historian(hist: Historian, past: list[tuple[str, int, float]], timeout_s: float,
                              every_s: float) -> None:
    """Wait until every (tag, source time ns, value) of ``past`` is in ``hist`` at its source time (ms); fail
    naming the first ones still missing."""

    async def missing() -> list[tuple[str, int, float]]:
        out = []
        for name, src, value in past:
            points = await asyncio.to_thread(hist.raw, name, src - 1_000_000, src + 1_000_000, 10)
            if not any(p["t_ms"] == src // 1_000_000 and p["value"] == value for p in points):
                out.append((name, src, value))
        return out

    async def none_missing() -> bool:
        return not await missing()

    try:
        await until("every replayed value in the historian", none_missing, timeout_s, every=every_s)
    except AssertionError:
        raise AssertionError(f"not in the historian: {(await missing())[:5]}") from None
