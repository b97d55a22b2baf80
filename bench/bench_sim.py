"""Simulator at full scale: start time, RSS, CPU at steady state, the storm burst.

Each scale runs in its own child process (so RSS is the simulator's alone): generate the city, load
it, start ``sim.runner.Simulator`` with every server on port 0, tick at speed 1 (then 60) for a
window and measure the process CPU share, again while ``scada poll`` (a child process: the server's drivers and
scan classes) reads every device (with the poller's own CPU share over the same window: the simulator should
need no more than the server's polling), then inject the storm (mains lost in 80 % of the lighting
cabinets) and time the step that applies it. Baselines measured in the same run: the demo-scale
simulator (ratio full/demo) and a bare asyncua ``Server`` init + start with no variables (the floor
every OPC UA server pays: ratio BMS server / bare server).

``measure`` declares the figures of the largest scale run (dijon; demo with ``quick``) for
``--baseline-rev``. The child runs with cwd = the tree under test, so an older commit's ``sim`` and
``scada.config`` are the ones measured; the bare asyncua server involves no product code (a machine check).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.protocol import Metric, Section

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Simulator"
DEPENDS = ["sim", "scada/config", "tags.yaml", "alarms.yaml", "commands.yaml", "inventory"]

CHILD = r"""
import asyncio, json, logging, random, sys, time
from pathlib import Path

logging.basicConfig(level=logging.ERROR)


def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid):
    import os
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_share(seconds):
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (time.process_time() - c0) / (time.perf_counter() - w0)


async def main(tags, alarms, state, window):
    from scada.config import load_city
    from sim.runner import Simulator
    out = {"rss_imports_mb": rss_mb()}
    t0 = time.perf_counter()
    config = load_city(tags, alarms)
    out["config_s"] = time.perf_counter() - t0
    out["equipment"] = len(config.equipment)
    out["tags"] = len(config.tags)
    out["rss_config_mb"] = rss_mb()
    sim = Simulator(config, seed=42, speed=1.0, ports="test", state_dir=Path(state), control_port=0)
    await sim.start()
    out["timings"] = sim.timings
    out["opcua"] = {name: getattr(srv, "timings", {}) for name, srv in sim.servers.items() if name.startswith("opcua")}
    out["servers"] = len(sim.servers)
    out["rss_started_mb"] = rss_mb()
    await asyncio.sleep(1.0)
    out["cpu_speed1"] = await cpu_share(window)
    # polled: `scada poll` in a child process reads every device of the city at its scan class (the server's
    # drivers and scheduler, no API) while the simulator's CPU share is measured again; the poller's own CPU
    # share over the same window is the "server side" baseline of the same run
    import os, subprocess
    warm = 25.0 if out["equipment"] > 1000 else 4.0
    poll = subprocess.Popen([sys.executable, "-m", "cli", "poll", "--config", tags, "--endpoints",
                             str(Path(state) / "endpoints.json"), "--duration", str(warm + window + 1),
                             "--refresh", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "COLUMNS": "200"})
    await asyncio.sleep(warm)
    p0, w0 = proc_cpu_s(poll.pid), time.perf_counter()
    out["cpu_polled"] = await cpu_share(window)
    out["poller_cpu"] = (proc_cpu_s(poll.pid) - p0) / (time.perf_counter() - w0)  # the same window
    while poll.poll() is None:
        await asyncio.sleep(0.2)
    out["poller_rc"] = poll.returncode
    sim.speed = 60.0
    out["cpu_speed60"] = await cpu_share(window)
    out["steps"] = sim.steps
    out["rss_steady_mb"] = rss_mb()
    cabinets = sorted(e for e, eq in config.equipment.items() if eq.template == "lighting_cabinet")
    storm = random.Random(1).sample(cabinets, round(0.8 * len(cabinets)))
    t0 = time.perf_counter()
    for eq in storm:
        sim.inject(eq, "mains_loss")
    await sim.advance(1.0)
    out["storm_s"] = time.perf_counter() - t0
    out["storm_cabinets"] = len(storm)
    out["storm_luminaires"] = sum(int(config.equipment[e].params.get("luminaires", 0)) for e in storm)
    await sim.aclose()
    print(json.dumps(out))


async def bare():
    from asyncua import Server
    t0 = time.perf_counter()
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/bare")
    await server.start()
    took = time.perf_counter() - t0
    await server.stop()
    print(json.dumps({"bare_opcua_s": took}))


if sys.argv[1] == "bare":
    asyncio.run(bare())
else:
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_sim child failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])  # the child's JSON, as printed
    return result


def _run_scale(scale: str, window: float) -> dict[str, Any]:
    from scada.config.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        tags = generate(Path(tmp) / "city", scale, 42, ROOT)
        return _child(str(tags), str(Path(tmp) / "city" / "alarms.yaml"), str(Path(tmp) / "state"), str(window))


def main(quick: bool = False) -> str:
    return measure(quick).markdown


def measure(quick: bool = False) -> Section:
    window = 3.0 if quick else 15.0
    demo = _run_scale("demo", window)
    full = demo if quick else _run_scale("dijon", window)
    bare = _child("bare")
    rows = [("demo", demo)] if quick else [("demo", demo), ("dijon", full)]
    lines: list[str] = []
    lines.append(f"Every server of the city on 127.0.0.1 port 0, one process; steady state measured over "
                 f"{window:.0f} s per speed with a 1 s tick.")
    lines.append("")
    lines.append("| scale | equipment | servers | config load | models | OPC UA bms | OPC UA fleet | other servers "
                 "| start total | RSS after start | RSS steady | CPU ×1 | CPU ×1 polled | poller CPU | CPU ×60 "
                 "| storm step |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        t: dict[str, float] = r["timings"]
        bms = t.get("server:opcua-bms", 0.0)
        fleet = t.get("server:opcua-fleet", 0.0)
        others = sum(v for k, v in t.items() if k.startswith("server:") and "opcua" not in k)
        lines.append(
            f"| {name} | {r['equipment']:,} | {r['servers']} | {r['config_s']:.2f} s | "
            f"{t['models'] + t['first_step']:.2f} s | {bms:.2f} s | {fleet:.2f} s | {others:.2f} s | "
            f"{t['total']:.2f} s | {r['rss_started_mb']:.0f} MB | {r['rss_steady_mb']:.0f} MB | "
            f"{100 * float(r['cpu_speed1']):.1f} % | {100 * float(r['cpu_polled']):.1f} % | "
            f"{100 * float(r['poller_cpu']):.1f} % | {100 * float(r['cpu_speed60']):.1f} % | "
            f"{1000 * float(r['storm_s']):.0f} ms ({r['storm_cabinets']} cabinets, {r['storm_luminaires']:,} lamps) |")
    lines.append("")
    bare_s = float(bare["bare_opcua_s"])
    ft: dict[str, float] = full["timings"]
    dt_: dict[str, float] = demo["timings"]
    for name, r in rows:
        parts = []
        for server, t in dict(r["opcua"]).items():
            if t:
                parts.append(f"{server} init {t['init']:.2f} s + nodes {t['build']:.2f} s")
        if parts:
            lines.append(f"- {name}: " + "; ".join(parts) + " (init = asyncua's standard address space)")
    lines.append("")
    lines.append(f"Baselines (same run): a bare asyncua server (init + start, no variables) takes {bare_s:.2f} s; "
                 f"the BMS server of the {'demo' if quick else 'full'} city takes "
                 f"{ft.get('server:opcua-bms', 0.0):.2f} s "
                 f"({ft.get('server:opcua-bms', 0.0) / bare_s:.1f}x the bare server). "
                 f"Full-scale start / demo start: {ft['total'] / dt_['total']:.1f}x "
                 f"for {int(full['equipment']) / int(demo['equipment']):.0f}x the equipment.")
    rc = int(full["poller_rc"])
    lines.append(f"Polled: `scada poll` (the server's drivers and scan classes, in a child process) reads every "
                 f"device while the simulator's CPU is measured again; at {'demo' if quick else 'dijon'} scale the "
                 f"simulator polled uses {100 * float(full['cpu_polled']):.1f} % of one core, "
                 f"{float(full['cpu_polled']) / max(float(full['poller_cpu']), 1e-9):.2f}x what the poller uses "
                 f"(target: the simulator needs no more than the server's polling, ≤ 1x)"
                 + ("." if rc == 0 else f"; the poller ended with exit code {rc} (a device lost or refused)."))
    lines.append("")
    scale = "demo" if quick else "dijon"
    metrics = {
        f"{scale}: config load": Metric(float(full["config_s"]), "s", "lower"),
        f"{scale}: start total": Metric(float(ft["total"]), "s", "lower"),
        f"{scale}: OPC UA bms server start": Metric(float(ft.get("server:opcua-bms", 0.0)), "s", "lower"),
        f"{scale}: RSS steady": Metric(float(full["rss_steady_mb"]), "MB", "lower"),
        f"{scale}: CPU at speed 1": Metric(100 * float(full["cpu_speed1"]), "% of one core", "lower"),
        f"{scale}: CPU at speed 60": Metric(100 * float(full["cpu_speed60"]), "% of one core", "lower"),
        f"{scale}: CPU at speed 1, polled": Metric(100 * float(full["cpu_polled"]), "% of one core", "lower"),
        f"{scale}: simulator / poller CPU, polled": Metric(float(full["cpu_polled"]) / max(float(full["poller_cpu"]),
                                                                                         1e-9), "x", "lower"),
        f"{scale}: storm step": Metric(1000 * float(full["storm_s"]), "ms", "lower"),
        "bare asyncua server start (no product code)": Metric(bare_s, "s", "lower"),
    }
    return Section("\n".join(lines), metrics)


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
