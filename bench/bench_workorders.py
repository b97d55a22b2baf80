"""Field operations under load: citizen reports ingested while the server polls the whole city.

    scada sim (child process, the whole city on real protocol servers, night-time start)
        ▲ control API: lamp failures (alarm latency probes)
        │ Modbus/SNMP/OPC UA/serial
    scada server (child process; intake.yaml beside the generated tags.yaml: one channel, no rate limit in the
        │         way: the bench measures the intake, not the limiter; settings intake.listen: the intake's own
        │         listener, thread and event loop, server.components.intake_http)
        │ WebSocket (alarms)             ▲ POST /api/v1/reports (X-Intake-Token) to the intake's own listener
        │                                │ (BENCH_WORKORDERS_VIA=api: to the main API), open loop: each report
        ▼                                │ sent at its Poisson arrival time whatever the answers before it
    this process: a console stamping alarm events · report senders (sim.crews.ReportGenerator's bodies:
                  duplicates, mislocated reports, contacts on half of them) · BENCH_WORKORDERS_LOAD=N: N readers
                  looping on GET /api/v1/tags (every tag, an operator's full table) through both phases: the
                  main event loop kept busy serialising (a loop busy in Python: the intake's own listener escapes
                  a blocked main loop, not one that holds the GIL; docs/workorders.md)

``--baseline-rev`` against a revision without the intake's own listener: ``BENCH_WORKORDERS_VIA=api`` (the
settings then leave ``intake`` out, which such a server would refuse).

Two phases of ``window`` (300 s; 30 s with --quick), each with the same number of lamp failures injected
(different lamps, spread over the window) and their alarms timed as bench_server times them:

1. calm: the day's 630 reports (sim.crews.REPORTS_PER_DAY) spread over the window (a day's volume in five
   minutes: a stronger background than the real one, 630 over 24 h);
2. storm: the same background plus 5,000 reports in the window (a storm's citizens; Poisson arrivals).

Figures: intake latency (scheduled send → answer, so a slow server cannot hide its queue: no coordinated
omission) p50/p99/max per phase, target p99 < 100 ms; answers by status (200, 429, errors); the alarm
latency (injection → console) and its server part (the driver read that raised it → console) in each
phase, and their ratio storm / calm: the same-run baseline for "no alarm latency regression" (≈ 1.0 within
noise; the injection → console figure is dominated by the cabinets' scan period, the server part is the
sensitive one); server CPU in each phase. ``--quick`` runs the demo city (a smoke run); the full run
generates the Dijon city (``scada config generate --scale dijon``) and takes about 20 minutes.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from bench.bench_server import ADMIN, NIGHT, Console
from bench.harness import percentile, print_log_tails, proc_cpu_s, scada_command, stop_children, wait_json
from bench.protocol import Metric, Section

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Work orders"
DEPENDS = ["scada", "server", "drivers", "historian", "failsafe", "sim", "cli", "tags.yaml", "alarms.yaml",
           "commands.yaml", "crews.yaml", "inventory"]
STORM = 5000
TARGET_P99_MS = 100.0


def _options() -> tuple[str, int]:
    """``BENCH_WORKORDERS_VIA`` (intake | api: where the reports go) and ``BENCH_WORKORDERS_LOAD`` (readers)."""
    via = os.environ.get("BENCH_WORKORDERS_VIA", "intake")
    if via not in ("intake", "api"):
        raise ValueError(f"BENCH_WORKORDERS_VIA must be intake or api, got {via!r}")
    return via, int(os.environ.get("BENCH_WORKORDERS_LOAD", "0"))


@dataclass
class Phase:
    name: str
    sent: int = 0
    status: Counter[int | str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    alarm_s: list[float] = field(default_factory=list)
    server_part_ms: list[float] = field(default_factory=list)
    reads_ms: list[float] = field(default_factory=list)  # the main-API readers' requests (BENCH_WORKORDERS_LOAD)
    probes: int = 0
    cpu_pct: float = float("nan")


def _bodies(equipment: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` report bodies from the simulator's citizens: a quarter of the lighting cabinets, a few junctions and
    bollards broken (what citizens see after a storm), duplicates and mislocated reports as it makes them."""
    from sim.crews import ReportGenerator  # the simulator's citizens (a bench may use sim/, the product never)

    rng = random.Random(seed)
    faults = {"lighting_cabinet": "lamp_failure", "junction": "signal_fault", "bollard": "bollard_stuck"}
    models = {e.id: SimpleNamespace(faults={faults[e.template]}) for e in equipment.values()
              if e.template in faults and rng.random() < 0.25}
    gen = ReportGenerator(models, equipment, random.Random(seed + 1), per_day=86400.0 * 100, start=0.0)
    out: list[dict[str, Any]] = []
    t = 0.0
    while len(out) < n:
        t += 10.0
        out += gen.due(t)
    return out[:n]


async def _send(client: httpx.AsyncClient, token: str, bodies: list[dict[str, Any]], window: float,
                phase: Phase, seed: int) -> None:
    """Post ``bodies`` at Poisson arrival times over ``window`` (open loop: one task per report)."""
    rng = random.Random(seed)
    rate = len(bodies) / window
    start = time.monotonic()
    at = 0.0
    tasks = []

    async def one(body: dict[str, Any], due: float) -> None:
        try:
            r = await client.post("/api/v1/reports", json=body, headers={"X-Intake-Token": token})
            phase.status[r.status_code] += 1
        except httpx.HTTPError as exc:
            phase.status[type(exc).__name__] += 1
        phase.latency_ms.append((time.monotonic() - due) * 1000)

    for body in bodies:
        at += rng.expovariate(rate)
        due = start + min(at, window)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(one(body, due)))
        phase.sent += 1
    await asyncio.gather(*tasks)


async def _read_load(api: httpx.AsyncClient, admin: str, until: float, phase: Phase) -> None:
    """One operator reading the whole tag table again and again on the main API until ``until``."""
    while time.monotonic() < until:
        t0 = time.monotonic()
        r = await api.get("/api/v1/tags", params={"pattern": "*", "limit": 50_000},
                          headers={"Authorization": f"Bearer {admin}"})
        r.raise_for_status()
        phase.reads_ms.append((time.monotonic() - t0) * 1000)


async def _probe(ctl: httpx.AsyncClient, watcher: Console, lamps: list[tuple[Any, int]], window: float,
                 period: float, phase: Phase) -> None:
    """Lamp failures spread over the window; their alarms timed on the console (as bench_server)."""
    sent: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    gap = window / max(len(lamps), 1)
    for cab, lamp in lamps:
        alarm_id = f"lamp_failed:{cab.tag_name(f'lamp_{lamp:02d}/status')}"
        await ctl.post("/fault", json={"equipment": cab.id, "fault": "lamp_failure", "params": {"index": lamp}})
        sent[alarm_id], sent_wall[alarm_id] = time.monotonic(), time.time()
        await asyncio.sleep(gap)
    deadline = time.monotonic() + period * 3 + 10
    while time.monotonic() < deadline and not all(a in watcher.alarm_seen for a in sent):
        await asyncio.sleep(0.1)
    phase.probes = len(sent)
    phase.alarm_s = [watcher.alarm_seen[a] - t for a, t in sent.items() if a in watcher.alarm_seen]
    phase.server_part_ms = [(seen - ev / 1000) * 1000 for a in sent
                            for seen, ev in [watcher.alarm_wall.get(a, (0.0, 0))] if ev]


async def _run(quick: bool) -> Section:
    from scada.config import load_city
    from scada.config.generate import generate
    from scada.workorders.intake import hash_token
    from sim.crews import REPORTS_PER_DAY

    scale = "demo" if quick else "dijon"
    window = 30.0 if quick else 300.0
    storm_n = STORM // 10 if quick else STORM
    background_n = round(REPORTS_PER_DAY / (10 if quick else 1))
    probes = 20 if quick else 100
    via, readers = _options()
    work = Path(tempfile.mkdtemp(prefix="bench-workorders-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tags = generate(work / "city", scale, 42, ROOT)
        alarms = tags.parent / "alarms.yaml"
        token = secrets.token_urlsafe(32)
        (tags.parent / "intake.yaml").write_text(
            "radius_m: 150\ncontact_retention: 30d\nchannels:\n"
            f"  bench: {{token_sha256: {hash_token(token)}, per_minute: 1000000, burst: 1000000}}\n",
            encoding="utf-8")
        config = load_city(tags, alarms)
        cabinets = [e for e in config.equipment.values() if e.template == "lighting_cabinet"]
        period = config.devices[cabinets[0].device].period_s
        # distinct (cabinet, lamp) pairs: the first half for the calm phase, the second for the storm
        pairs = [(cabinets[k % len(cabinets)], 1 + k // len(cabinets)) for k in range(2 * probes)]
        env = {**os.environ, "SCADA_ADMIN_USER": ADMIN[0], "SCADA_ADMIN_PASSWORD": ADMIN[1]}
        state = work / "sim"
        state.mkdir()
        scada = scada_command(ROOT)
        sim = subprocess.Popen([*scada, "sim", "--config", str(tags), "--alarms", str(alarms), "--ports", "test",
                                "--state-dir", str(state), "--start", NIGHT],
                               stdout=open(work / "sim.log", "wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        procs.append(sim)
        control = await wait_json(state / "control.json", sim.pid, 900, sim)
        data = work / "data"
        data.mkdir()
        listener = "intake: {listen: {host: 127.0.0.1, port: 0}}\n" if via == "intake" else ""
        (work / "server.yaml").write_text(listener, encoding="utf-8")
        server = subprocess.Popen([*scada, "server", "--tags", str(tags), "--alarms", str(alarms), "--commands",
                                   str(tags.parent / "commands.yaml"), "--endpoints", str(state / "endpoints.json"),
                                   "--data-dir", str(data), "--port", "0", "--historian", "embedded",
                                   "--log-level", "WARNING", "--settings", str(work / "server.yaml")],
                                  stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT, env=env,
                                  stdin=subprocess.DEVNULL, cwd=ROOT)
        procs.append(server)
        url = (await wait_json(data / "server.json", server.pid, 600, server))["url"]
        background = _bodies(config.equipment, 2 * background_n, 7)
        storm = _bodies(config.equipment, storm_n, 8)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as api, \
                httpx.AsyncClient(base_url=control["url"], timeout=60) as ctl:
            while (await api.get("/api/v1/health")).json()["subsystems"]["poll"]["status"] == "starting":
                await asyncio.sleep(0.5)
            intake = (await api.get("/api/v1/health")).json()["subsystems"].get("intake", {})
            if via == "intake" and intake.get("status") != "ok":
                raise RuntimeError(f"the intake's own listener is not serving: {intake}")
            reports = httpx.AsyncClient(base_url=intake["detail"] if via == "intake" else url, timeout=120,
                                        limits=limits)
            login = await api.post("/api/v1/auth/login", json={"user": ADMIN[0], "password": ADMIN[1]})
            admin = login.json()["token"]
            await asyncio.sleep(period * 2)  # every device polled a couple of times
            watcher = Console(url.replace("http", "ws") + "/api/v1/ws", admin, {"alarms": True})
            watcher.start()
            await asyncio.wait_for(watcher.ready.wait(), 120)

            phases = [Phase("calm"), Phase("storm")]
            for k, phase in enumerate(phases):
                c0, t0 = proc_cpu_s(server.pid), time.perf_counter()
                jobs = [_send(reports, token, background[k * background_n:(k + 1) * background_n], window, phase,
                              10 + k),
                        _probe(ctl, watcher, pairs[k * probes:(k + 1) * probes], window, period, phase),
                        *(_read_load(api, admin, time.monotonic() + window, phase) for _ in range(readers))]
                if phase.name == "storm":
                    jobs.append(_send(reports, token, storm, window, phase, 20))
                await asyncio.gather(*jobs)
                phase.cpu_pct = 100 * (proc_cpu_s(server.pid) - c0) / (time.perf_counter() - t0)
                await ctl.post("/clear", json={"equipment": [c.id for c in cabinets], "fault": "lamp_failure"})
                await asyncio.sleep(period + 2)
            health = (await api.get("/api/v1/health", headers={"Authorization": f"Bearer {admin}"})).json()
            wo = health["subsystems"].get("workorders", {}).get("stats", {})
            await watcher.aclose()
            await reports.aclose()
        server.send_signal(signal.SIGTERM)
        server_exit = server.wait(60)
        return _section(scale, config, window, phases, wo, server_exit, quick, via, readers)
    except BaseException:
        print_log_tails(work)
        raise
    finally:
        stop_children(procs)
        shutil.rmtree(work, ignore_errors=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _section(scale: str, config: Any, window: float, phases: list[Phase], wo: dict[str, Any], server_exit: int,
             quick: bool, via: str, readers: int) -> Section:
    calm, storm = phases
    pct = percentile
    target = "the intake's own listener (settings intake.listen)" if via == "intake" else "the main API"
    reads = "" if not readers else " (their requests p50 / p99: " + "; ".join(
        f"{p.name} {pct(p.reads_ms, 50):.0f} / {pct(p.reads_ms, 99):.0f} ms, {len(p.reads_ms)} reads"
        for p in phases) + ")"
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, `python -m bench --only workorders"
        f"{' --quick' if quick else ''}`: the {scale} city ({len(config.equipment):,} equipment, "
        f"{len(config.devices):,} devices, {len(config.tags):,} tags) served by `scada sim` and supervised by "
        f"`scada server` (embedded historian), two processes on the same machine; the reports and the alarm "
        f"console come from the benchmark process. Each phase lasts {window:.0f} s. Reports sent to {target}; "
        f"main-API readers of the whole tag table meanwhile: {readers}{reads}.",
        "",
        "### Intake (scheduled send → answer)",
        "",
        "| phase | reports | p50 | p99 | max | answers | server CPU |",
        "|---|---|---|---|---|---|---|",
        *[f"| {p.name} | {p.sent:,} | {pct(p.latency_ms, 50):.1f} ms | {pct(p.latency_ms, 99):.1f} ms | "
          f"{max(p.latency_ms, default=float('nan')):.1f} ms | "
          f"{', '.join(f'{k}: {v:,}' for k, v in sorted(p.status.items(), key=str))} | "
          f"{p.cpu_pct:.0f} % of one core |" for p in phases],
        "",
        f"Target: p99 < {TARGET_P99_MS:.0f} ms during the storm: "
        f"{'met' if pct(storm.latency_ms, 99) < TARGET_P99_MS else 'NOT met'}. Work-order component after the run: "
        f"{wo.get('orders', '?')} orders, reports {wo.get('reports', {})}.",
        "",
        "### Alarm latency, storm vs calm (same run: the baseline is the calm phase)",
        "",
        "| phase | lamp failures | received | injection → console p50 / p99 | server part p50 / p99 |",
        "|---|---|---|---|---|",
        *[f"| {p.name} | {p.probes} | {len(p.alarm_s)} | {pct(p.alarm_s, 50):.2f} s / {pct(p.alarm_s, 99):.2f} s | "
          f"{pct(p.server_part_ms, 50):.0f} ms / {pct(p.server_part_ms, 99):.0f} ms |" for p in phases],
        f"| ratio storm / calm | | | {_ratio(pct(storm.alarm_s, 50), pct(calm.alarm_s, 50)):.2f} / "
        f"{_ratio(pct(storm.alarm_s, 99), pct(calm.alarm_s, 99)):.2f} | "
        f"{_ratio(pct(storm.server_part_ms, 50), pct(calm.server_part_ms, 50)):.2f} / "
        f"{_ratio(pct(storm.server_part_ms, 99), pct(calm.server_part_ms, 99)):.2f} |",
        "",
        "Injection → console is dominated by the cabinets' scan period (uniform wait for the next poll); the "
        "server part (the driver read that raised the alarm → the console) is what a storm of reports could slow.",
        "",
        f"Server stopped by SIGTERM with exit code {server_exit}.",
    ]
    metrics = {
        "intake p50, storm": Metric(pct(storm.latency_ms, 50), "ms", "lower"),
        "intake p99, storm": Metric(pct(storm.latency_ms, 99), "ms", "lower"),
        "intake p99, calm": Metric(pct(calm.latency_ms, 99), "ms", "lower"),
        "alarm latency p99, storm / calm": Metric(_ratio(pct(storm.alarm_s, 99), pct(calm.alarm_s, 99)), "x", "lower"),
        "alarm server part p99, storm / calm": Metric(
            _ratio(pct(storm.server_part_ms, 99), pct(calm.server_part_ms, 99)), "x", "lower"),
        "alarm server part p99, storm": Metric(pct(storm.server_part_ms, 99), "ms", "lower"),
        "server CPU, storm": Metric(storm.cpu_pct, "% of one core", "lower"),
    }
    return Section("\n".join(lines) + "\n", metrics)


def main(quick: bool = False) -> str:
    return measure(quick).markdown


def measure(quick: bool = False) -> Section:
    return asyncio.run(_run(quick))


if __name__ == "__main__":  # pragma: no cover
    print(main(quick="--quick" in sys.argv))
