"""The failover pair: takeover time over N kills (-9), and the replication stream's cost on the active.

    scada sim (child, the city)        etcd (3 members, child processes, free loopback ports)
        ▲ the field                         ▲ the lease
    scada server --ha primary  "main room"      ◄── replication (WebSocket, the pair's secret) ──┐
    scada server --ha standby  "failover room"  ───────────────────────────────────────────────────┘

1. Replication cost, same run: the active alone for ``window`` seconds (CPU of its process from /proc),
   then with a standby fed by its stream for the same window. The difference is the stream's cost.
2. Takeover over ``kills``: with the standby's stream fresh, ``kill -9`` the active; measure until the
   other says ACTIVE (GET /api/v1/ha), until it may write (its fence: TTL + margin after the takeover) and
   until every device has been read by it (/health poll stats: no device ``starting``: the standby did not
   poll). The killed server restarts on a fresh data folder as the new standby (its own journal may hold
   rows the new active never received: docs/ha.md, a diverged copy), and the roles swap.

``measure(quick=True)`` runs the shipped demo city with 3 kills (a smoke run); the full run is the Dijon
city with 20 kills. Consoles being live again is measured by tests/ha/test_console_failover.py (pytest-qt).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import proc_cpu_s, scada_command, wait_json
from bench.protocol import Metric, Section
from cli.run import start_etcd

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Failover pair"
DEPENDS = ["server", "scada", "drivers", "failsafe", "sim", "cli", "tags.yaml", "alarms.yaml", "commands.yaml"]
ADMIN = ("admin", "Failover-Bench-Pass-19")
NIGHT = "2026-01-15T22:00:00"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    name: str
    role: str
    port: int
    data: Path
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Takeover:
    active_s: float
    writing_s: float
    all_read_s: float


@dataclass
class Pair:
    work: Path
    tags: Path
    endpoints: Path
    etcd: list[str]
    secret: Path
    members: list[Member] = field(default_factory=list)

    def spawn(self, m: Member, peer: Member) -> None:
        if m.data.exists():
            shutil.rmtree(m.data)
        # one command audit key for the pair, as it is provisioned (the audit log is replicated entry by entry)
        env = {**os.environ, "SCADA_ADMIN_USER": ADMIN[0], "SCADA_ADMIN_PASSWORD": ADMIN[1],
               "SCADA_AUDIT_KEY": f"the-pair-audit-key-of-{self.work.name}"}
        cmd = [*scada_command(ROOT), "server", "--tags", str(self.tags),
               "--alarms", str(self.tags.parent / "alarms.yaml"), "--commands", str(self.tags.parent / "commands.yaml"),
               "--endpoints", str(self.endpoints),
               "--data-dir", str(m.data), "--port", str(m.port), "--historian", "none", "--log-level", "WARNING",
               "--ha", m.role, "--ha-name", m.name, "--ha-peer", peer.url, "--ha-secret", str(self.secret)]
        for url in self.etcd:
            cmd += ["--ha-etcd", url]
        with open(self.work / f"{m.name.replace(' ', '-')}.log", "ab") as log:
            m.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=ROOT)
        m.token = ""

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
                try:
                    m.proc.wait(30)
                except subprocess.TimeoutExpired:
                    m.proc.kill()
                    m.proc.wait()


async def _get(api: httpx.AsyncClient, m: Member, path: str) -> dict[str, Any] | None:
    """GET with the member's admin session (logging in when needed); None while it does not answer."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        if not m.token:
            r = await api.post(m.url + "/api/v1/auth/login", json={"user": ADMIN[0], "password": ADMIN[1]})
            if r.status_code != 200:
                return None
            m.token = r.json()["token"]
        r = await api.get(m.url + path, headers={"Authorization": f"Bearer {m.token}"})
        if r.status_code == 401:
            m.token = ""
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            return body
    return None


async def _until(what: str, check: Any, timeout_s: float, every: float = 0.05) -> float:
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(every)
    return time.monotonic() - t0


async def _fresh(api: httpx.AsyncClient, standby: Member) -> bool:
    st = await _get(api, standby, "/api/v1/ha")
    return bool(st and st.get("role") == "standby" and (st.get("replication") or {}).get("fresh"))


async def _all_read(api: httpx.AsyncClient, m: Member) -> bool:
    h = await _get(api, m, "/api/v1/health")
    stats = ((h or {}).get("subsystems", {}).get("poll") or {}).get("stats") or {}
    by_status: dict[str, int] = stats.get("by_status", {})
    return bool(stats.get("devices")) and not by_status.get("starting") and sum(by_status.values()) >= stats["devices"]


async def _cpu_over(pid: int, window_s: float) -> float:
    """CPU % of one core used by ``pid`` over ``window_s``."""
    c0, t0 = proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(window_s)
    return 100.0 * (proc_cpu_s(pid) - c0) / (time.monotonic() - t0)


async def _run(quick: bool) -> Section:
    kills = 3 if quick else 20
    window_s = 10.0 if quick else 30.0
    start_s = 120.0 if quick else 600.0
    work = Path(tempfile.mkdtemp(prefix="bench-ha-"))
    sim: subprocess.Popen[bytes] | None = None
    etcd: list[subprocess.Popen[bytes]] = []
    pair: Pair | None = None
    try:
        if quick:
            tags = ROOT / "tags.yaml"
        else:
            from scada.config.generate import generate

            tags = generate(work / "city", "dijon", 42, ROOT)
        state = work / "sim"
        state.mkdir()
        with open(work / "sim.log", "wb") as log:
            sim = subprocess.Popen([*scada_command(ROOT), "sim", "--config", str(tags), "--alarms",
                                    str(tags.parent / "alarms.yaml"), "--ports", "test", "--state-dir", str(state),
                                    "--start", NIGHT], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        await wait_json(state / "control.json", sim.pid, 900, sim)
        clients, peers = tuple(_free_port() for _ in range(3)), tuple(_free_port() for _ in range(3))
        etcd = await asyncio.to_thread(start_etcd, work / "etcd", 30.0, clients, peers)
        secret = work / "pair.secret"
        secret.write_text(secrets.token_urlsafe(32))
        secret.chmod(0o600)
        pair = Pair(work, tags, state / "endpoints.json", [f"http://127.0.0.1:{p}" for p in clients], secret)
        a = Member("main room", "primary", _free_port(), work / "a")
        b = Member("failover room", "standby", _free_port(), work / "b")
        pair.members = [a, b]
        async with httpx.AsyncClient(timeout=10) as api:
            pair.spawn(a, b)
            await _until("the main room reads every device", lambda: _all_read(api, a), start_s, 0.25)
            assert a.proc is not None
            cpu_alone = await _cpu_over(a.proc.pid, window_s)
            pair.spawn(b, a)
            await _until("the failover room's stream fresh", lambda: _fresh(api, b), start_s, 0.25)
            await asyncio.sleep(2.0)  # the first frame (every tag) and the catch-up of the journal behind
            sent0 = ((await _get(api, a, "/api/v1/ha") or {}).get("replication") or {}).get("samples_sent", 0)
            cpu_with = await _cpu_over(a.proc.pid, window_s)
            sent1 = ((await _get(api, a, "/api/v1/ha") or {}).get("replication") or {}).get("samples_sent", 0)
            samples_per_s = (float(sent1) - float(sent0)) / window_s
            results: list[Takeover] = []
            active, standby = a, b
            for _ in range(kills):
                await _until("the standby's stream fresh", lambda s=standby: _fresh(api, s), start_s, 0.25)
                assert active.proc is not None
                active.proc.kill()
                t0 = time.monotonic()
                active.proc.wait()

                async def role(s: Member = standby) -> bool:
                    st = await _get(api, s, "/api/v1/ha")
                    return bool(st and st.get("role") == "active")

                await _until("the standby active", role, 30)
                t_active = time.monotonic() - t0
                t_write = t_read = 0.0
                while not (t_write and t_read):  # both watched together: each at its own moment
                    st = await _get(api, standby, "/api/v1/ha")
                    if not t_write and st and st.get("may_write"):
                        t_write = time.monotonic() - t0
                    if not t_read and await _all_read(api, standby):
                        t_read = time.monotonic() - t0
                    if time.monotonic() - t0 > start_s:
                        raise TimeoutError("the new active neither writing nor reading every device")
                    await asyncio.sleep(0.05)
                results.append(Takeover(t_active, t_write, t_read))
                active.role = "standby"
                pair.spawn(active, standby)  # a fresh data folder: the new standby
                active, standby = standby, active

        def pct(values: list[float], p: float) -> float:
            values = sorted(values)
            return values[min(len(values) - 1, round(p * (len(values) - 1)))]

        rows = []
        for label, vals in (("ACTIVE (the lease taken)", [r.active_s for r in results]),
                            ("first field write allowed (fence)", [r.writing_s for r in results]),
                            ("every device read by the new active", [r.all_read_s for r in results])):
            rows.append(f"| {label} | {statistics.median(vals):.2f} s | {pct(vals, 0.99):.2f} s | {max(vals):.2f} s |")
        scale = "demo" if quick else "dijon"
        lines = [
            f"`scada server --ha` × 2 on the {scale} city, 3 etcd members, `scada sim`, all on this 2-core machine; "
            f"lease TTL 3 s, margin 0.5 s. {kills} × `kill -9` of the active, time from the kill:",
            "",
            "| after the kill | p50 | p99 | max |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Replication cost on the active (its process, /proc, {window_s:.0f} s each, same run): "
            f"{cpu_alone:.1f} % of one core alone, {cpu_with:.1f} % with a standby fed by its stream "
            f"(+{cpu_with - cpu_alone:.1f} points), streaming {samples_per_s:,.0f} samples/s.",
        ]
        metrics = {
            "takeover p50": Metric(statistics.median([r.active_s for r in results]), "s", "lower"),
            "takeover p99": Metric(pct([r.active_s for r in results], 0.99), "s", "lower"),
            "every device read after a kill p50": Metric(statistics.median([r.all_read_s for r in results]), "s",
                                                         "lower"),
            "active CPU alone": Metric(cpu_alone, "%", "lower"),
            "active CPU with a standby": Metric(cpu_with, "%", "lower"),
        }
        return Section("\n".join(lines) + "\n", metrics)
    finally:
        if pair is not None:
            pair.stop()
        for proc in etcd:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(30)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        shutil.rmtree(work, ignore_errors=True)


def measure(quick: bool = False) -> Section:
    return asyncio.run(_run(quick))


def main(quick: bool = False) -> str:
    return measure(quick).markdown


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.bench_ha")
    parser.add_argument("--quick", action="store_true", help="the demo city, 3 kills (a smoke run)")
    print(main(parser.parse_args().quick))
