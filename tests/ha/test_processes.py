"""Real ``scada server`` processes as a failover pair, one real 3-member etcd, the simulator in the test:

    SIGSTOP the active for longer than its lease → the standby is active within TTL + margin + 2 s; the
    stopped one, resumed, makes no field write (its fence refuses a command sent at the moment it wakes;
    the simulator's own write log has nothing from its connections after it was stopped) and becomes
    standby; kill -9 of the new active → the other takes over within TTL + margin + 2 s.

Which process wrote is read from the simulator's write log (the client's address and port) and the
processes' own sockets (/proc/<pid>/fd → /proc/net/tcp inodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ha.conftest import EtcdCluster, free_port
from tests.ha.test_pair import field_writes, until
from tests.server.conftest import PASSWORDS, ROOT

TTL = 3
MARGIN = 0.5


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of ``pid``'s sockets (Linux /proc)."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


class Server:
    """One ``scada server`` child process with its data directory and settings."""

    def __init__(self, root: Path, name: str, role: str, etcd: EtcdCluster, tags: Path, endpoints: Path,
                 listen_port: int = 0, **ha: Any) -> None:
        self.dir = root / name.replace(" ", "-")
        self.dir.mkdir(parents=True)
        settings = {"data_dir": str(self.dir / "data"), "listen": {"port": listen_port}, "tags": str(tags),
                    "alarms": str(tags.parent / "alarms.yaml"), "historian": {"backend": "none"}, "lang": "en",
                    "endpoints_file": str(endpoints),
                    "ha": {"name": name, "role": role, "etcd": etcd.urls, "lease_ttl_s": TTL, "margin": MARGIN,
                           **ha}}
        (self.dir / "settings.yaml").write_text(json.dumps(settings))  # JSON is YAML
        env = {**os.environ, "SCADA_TEST_PW": PASSWORDS["op"]}
        subprocess.run([sys.executable, "-m", "cli", "users", "--data-dir", str(self.dir / "data"), "add", "op",
                        "--role", "operator", "--password-env", "SCADA_TEST_PW"], check=True, env=env, cwd=ROOT,
                       capture_output=True, timeout=60)
        self.log = (self.dir / "server.log").open("wb")
        # the pair shares one command audit key, as it is provisioned (its audit log is replicated entry by entry)
        self.proc = subprocess.Popen([sys.executable, "-m", "cli", "server", "--settings", str(self.dir / "settings.yaml")],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "SCADA_AUDIT_KEY": f"the-pair-audit-key-of-{root.name}"})
        self.url = ""
        self.ports: set[int] = set()

    def started(self) -> bool:
        """Its API listens (server.json written: its URL noted); fails the test if the process ended."""
        state = self.dir / "data" / "server.json"
        assert self.proc.poll() is None, (self.dir / "server.log").read_text()[-3000:]
        if not state.is_file():
            return False
        self.url = json.loads(state.read_text())["url"]
        return True

    async def ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.started():
            assert time.monotonic() < deadline, "the server did not start"
            await asyncio.sleep(0.2)

    def note_ports(self) -> None:
        if self.proc.poll() is None:
            self.ports |= local_ports(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


async def state_of(c: httpx.AsyncClient, h: dict[str, str]) -> dict[str, Any]:
    r = await c.get("/api/v1/ha", headers=h, timeout=10)  # a server busy starting answers late
    body: dict[str, Any] = r.json()
    return body


@contextlib.asynccontextmanager
async def server_pair(tmp_path: Path, etcd: EtcdCluster, sim: tuple[Any, Path], replicate: bool = False
                      ) -> AsyncIterator[tuple[Any, Server, Server]]:
    """Two ``scada server`` processes (main room primary, failover room standby) on the simulator, stopped at
    the end: (simulator, main, failover). ``replicate``: with the pair's secret and each other's URL (the
    standby fed by the active's stream, an old active rejoining as its standby)."""
    simulator, tags = sim
    endpoints = tmp_path / "sim" / "endpoints.json"
    extra: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    if replicate:
        secret = tmp_path / "pair.secret"
        secret.write_text("the-pair-secret-of-the-trials\n")
        secret.chmod(0o600)
        ports = free_port(), free_port()
        extra = tuple({"secret_file": str(secret), "peer_url": f"http://127.0.0.1:{p}", "listen_port": q}
                      for p, q in ((ports[1], ports[0]), (ports[0], ports[1])))  # type: ignore[assignment]
    a = Server(tmp_path, "main room", "primary", etcd, tags, endpoints, **extra[0])
    b = Server(tmp_path, "failover room", "standby", etcd, tags, endpoints, **extra[1])
    try:
        await a.ready()
        await b.ready()
        yield simulator, a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def servers(tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> AsyncIterator[tuple[Any, Server, Server]]:
    async with server_pair(tmp_path, etcd3, sim) as got:
        yield got


async def login(c: httpx.AsyncClient) -> dict[str, str]:
    r = await c.post("/api/v1/auth/login", json={"user": "op", "password": PASSWORDS["op"]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.mark.slow  # ~90 s on the shared test machine (two full servers start): the slow step
async def test_sigstop_then_kill_of_the_active_process(servers: tuple[Any, Server, Server]) -> None:
    simulator, a, b = servers
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as ca, httpx.AsyncClient(base_url=b.url, timeout=30) as cb:
        ha, hb = await login(ca), await login(cb)

        async def writing(c: httpx.AsyncClient, h: dict[str, str]) -> bool:
            return bool((await state_of(c, h))["may_write"])

        await until("main room writing", lambda: writing(ca, ha), timeout_s=30)
        assert (await state_of(cb, hb))["role"] == "standby"
        cab = "C0001"
        await until("the cabinet polled", lambda: _polled(ca, ha, cab), timeout_s=30)
        r = await ca.post("/api/v1/commands", json={"target": cab, "verb": "set_level", "params": {"level": 100},
                                                    "lease_s": 60}, headers=ha)
        assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
        a.note_ports()
        assert any(w.peer[1] in a.ports for w in field_writes(simulator))  # the log does see the main room

        # SIGSTOP the active for longer than its lease
        a.proc.send_signal(signal.SIGSTOP)
        t_stop, t_stop_ns = time.monotonic(), time.time_ns()
        await until("failover room active", lambda: _role(cb, hb, "active"), timeout_s=TTL + MARGIN + 2)
        took = time.monotonic() - t_stop
        print(f"takeover after SIGSTOP: {took:.2f} s (bound {TTL + MARGIN + 2} s)")  # measured, shown with -s
        assert took <= TTL + MARGIN + 2
        await asyncio.sleep(1.0)
        # resumed: the command sent at the moment it wakes is refused by its fence, nothing reaches the field
        a.proc.send_signal(signal.SIGCONT)
        r = await ca.post("/api/v1/commands", json={"target": cab, "verb": "set_level", "params": {"level": 90},
                                                    "lease_s": 60}, headers=ha)
        assert r.status_code == 503 or r.json()["outcome"] == "rejected", r.text
        await until("main room standby", lambda: _role(ca, ha, "standby"), timeout_s=TTL + 2)
        assert (await state_of(ca, ha))["leader"] == "failover room"
        await asyncio.sleep(TTL)  # its field-lease refresh would fall in here: fenced
        a.note_ports()
        stale = [w for w in field_writes(simulator) if w.ts_ns > t_stop_ns and w.peer[1] in a.ports]
        assert stale == [], stale

        # kill -9 of the new active: the main room takes over
        await until("failover room writing", lambda: writing(cb, hb), timeout_s=TTL + MARGIN + 2)
        b.note_ports()
        b.proc.kill()
        t_kill = time.monotonic()
        await until("main room active again", lambda: _role(ca, ha, "active"), timeout_s=TTL + MARGIN + 2)
        took = time.monotonic() - t_kill
        print(f"takeover after kill -9: {took:.2f} s (bound {TTL + MARGIN + 2} s)")
        assert took <= TTL + MARGIN + 2


async def _role(c: httpx.AsyncClient, h: dict[str, str], role: str) -> bool:
    try:
        return bool((await state_of(c, h))["role"] == role)
    except httpx.HTTPError:
        return False


async def _polled(c: httpx.AsyncClient, h: dict[str, str], cab: str) -> bool:
    r = await c.get(f"/api/v1/equipment/{cab}", headers=h)
    return r.status_code == 200 and any(t.get("quality") == "good" for t in r.json().get("tags", []))
