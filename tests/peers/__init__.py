"""Independent peers for the test suite: programs that are not ours, talking our protocols.

Debian's net-snmp tools and snmpd, mbpoll, influxd, victoria-metrics and mosquitto, node-opcua (a server and
a client script in this folder) and Eclipse Tahu's sparkplug-payload (sparkplug_host.js), installed by
``npm ci`` here from the committed package-lock.json::

    require_peer("mbpoll", "Debian package mbpoll")  → the program's path
        missing: pytest.skip on a developer's machine, pytest.fail under CI (CI=true): a peer
        test must never pass unnoticed because the CI machine lacked the peer
    require_node_opcua()                             → the node path (node + this folder's node_modules)
    require_node(TAHU)                               → the same for Eclipse Tahu's sparkplug-payload + mqtt
    async with NodeScript("opcua_server.js", "--lifetime", "60") as peer:
        peer.ready                                   the script's first JSON line (its URL, port...)
        await peer.command("morph")                  one line to its stdin, its JSON answer back

A NodeScript child is bounded twice: its own ``--lifetime`` timer, and stdin closing (our end closes
it on exit, and the kernel closes it if the test process dies). Both scripts listen/connect on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest

PEERS_DIR = Path(__file__).resolve().parent
NODE_MODULES = PEERS_DIR / "node_modules"


def under_ci() -> bool:
    """CI runs with CI=true (``.ci/run``): there a missing peer fails the run."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def peer_missing(reason: str) -> NoReturn:
    """Skip the test on a developer's machine; fail it under CI."""
    if under_ci():
        pytest.fail(f"peer missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_peer(program: str, install: str) -> str:
    """The path of ``program``, or skip/fail the test (see :func:`peer_missing`); ``install`` says how to get it."""
    path = shutil.which(program)
    if path is None:
        peer_missing(f"{program} is not installed ({install})")
    return path


NODE_OPCUA = ("node-opcua-server", "node-opcua-client")
#: Eclipse Tahu's Sparkplug B codec and an MQTT client (sparkplug_host.js)
TAHU = ("sparkplug-payload", "mqtt")


def require_node(packages: tuple[str, ...]) -> str:
    """The node executable, with ``packages`` installed in tests/peers (else skip/fail)."""
    node = require_peer("node", "Node.js 20+")
    for package in packages:
        if not (NODE_MODULES / package / "package.json").exists():
            peer_missing(f"{package} is not installed (run `npm ci` in {PEERS_DIR})")
    return node


def require_node_opcua() -> str:
    """The node executable, with node-opcua installed in tests/peers (else skip/fail)."""
    return require_node(NODE_OPCUA)


class NodeScript:
    """A script of this folder run by node: JSON lines on its stdout, one command per stdin line."""

    def __init__(self, script: str, *args: str, start_timeout_s: float = 30.0,
                 packages: tuple[str, ...] = NODE_OPCUA) -> None:
        self.argv = [require_node(packages), str(PEERS_DIR / script), *args]
        self.start_timeout_s = start_timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self._stderr: asyncio.Task[bytes] | None = None

    async def __aenter__(self) -> NodeScript:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=PEERS_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        self._stderr = asyncio.create_task(self.proc.stderr.read())
        try:
            self.ready = await self.line(self.start_timeout_s)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def line(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next JSON line the script prints (node-opcua's own log lines are skipped)."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = await self._stderr if self._stderr is not None else b""
                    raise AssertionError(f"{self.argv[1]} ended (rc {await self.proc.wait()}): "
                                         f"{err.decode(errors='replace')[-2000:]}")
                text = raw.decode(errors="replace").strip()
                if text.startswith("{"):
                    got: dict[str, Any] = json.loads(text)
                    return got

    async def command(self, text: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send one command line and return the script's JSON answer."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.line(timeout_s)

    async def aclose(self) -> None:
        """Close stdin (the script exits), then kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._stderr is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stderr, 5.0)


__all__ = ["NODE_MODULES", "NODE_OPCUA", "PEERS_DIR", "TAHU", "NodeScript", "peer_missing", "require_node",
           "require_node_opcua", "require_peer", "under_ci"]
