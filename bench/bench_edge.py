"""Edge pollers: a Dijon-size Sparkplug B load through a real Mosquitto into the server's host path, against the
same values applied in-process (the poller's path), same run.

    child: synthetic edges (python -m bench.bench_edge --generate ...)   Mosquitto (Debian, 127.0.0.1, child)
      N edge nodes, Dijon's devices and tags; each device one DDATA  ──►  spBv1.0/<site>/# ──► this process:
      per scan (1 s) with the tags that changed (by exception: CHANGED     SparkplugHost (drivers.sparkplug.host)
      of them), QoS 1, source timestamp = send time                       ─► TagDatabase.apply_readings per message
    baseline (this process, after): the same batches, apply_readings directly (in-process polling's apply)

Measured over the window: values/s applied, this process's CPU (the host: decode + apply) per value, the
in-process apply's CPU per value, the broker's and the synthetic edges' CPU (/proc), source → applied latency
(p50/p99, the source timestamps are milliseconds), seq gaps. 1× and 3× the Dijon rate (3×: three times the
changes per scan). A table extrapolates the measured per-value and per-message costs to 10× and 100× Dijon.

What the synthetic edges are not: the simulator and the drivers (the edge's polling cost is the drivers
bench's; here an edge's CPU is its Sparkplug encode + publish). CHANGED is an assumption (10 % of a device's
tags per 1 s scan), not a measurement of the city: the per-value costs are what to carry over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import numpy as np

from bench.harness import percentile, proc_cpu_s
from bench.protocol import Metric, Section
from drivers.sparkplug import broker as product_broker
from drivers.sparkplug import codec
from drivers.sparkplug.host import SparkplugHost
from drivers.sparkplug.topics import device_topic, node_topic
from scada.config.model import TagDef
from scada.config.partitions import Broker
from scada.quality import Quality
from scada.tagdb import I64, Readings, TagDatabase

TITLE = "Edge pollers (Sparkplug B through Mosquitto)"
DEPENDS = ["drivers/sparkplug", "server/components/edge.py", "scada/tagdb"]

DIJON_DEVICES, DIJON_TAGS = 1512, 154_649  # the full city (BENCHMARKS.md, drivers)
CHANGED = 0.10  # share of a device's tags changing per 1 s scan (an assumption: report by exception)
SITE, HOST_ID = "bench", "scada-bench"
GOOD = int(Quality.GOOD)


def layout(nodes: int, devices: int, tags: int) -> dict[str, dict[str, list[str]]]:
    """node → device → tag names (``devices`` spread over ``nodes``, ``tags`` per device)."""
    out: dict[str, dict[str, list[str]]] = {}
    for d in range(devices):
        node = f"edge{d % nodes}"
        out.setdefault(node, {})[f"D{d:05d}"] = [f"D{d:05d}/t{k:03d}" for k in range(tags)]
    return out


# ---------------------------------------------------------------------- the synthetic edges (child process)
async def _edge(port: int, node: str, devices: dict[str, list[str]], per_scan: int, seconds: float) -> None:
    defs = {d: [codec.MetricDef(n, k, codec.DATATYPES["float"]) for k, n in enumerate(tags)]
            for d, tags in devices.items()}
    seq = 0
    rng = random.Random(node)
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-{node}", keepalive=30) as c:
        now = time.time_ns()
        birth = codec.encode_node([codec.node_metric_bd_seq(0, now)], timestamp_ns=now, seq=0)
        await c.publish(node_topic(SITE, "NBIRTH", node), birth, qos=1)
        for d, ds in defs.items():
            n = len(ds)
            seq = (seq + 1) % 256
            p = codec.build_metrics(ds, np.zeros(n), np.full(n, GOOD, dtype=np.uint8),
                                    np.full(n, now, dtype=np.int64), {}, timestamp_ns=now, seq=seq, birth=True)
            await c.publish(device_topic(SITE, "DBIRTH", node, d), p.SerializeToString(), qos=1)
        await asyncio.sleep(2.0)  # the host has applied the births
        start = time.monotonic()
        scan = 0
        names = list(defs)
        while time.monotonic() - start < seconds:
            for i, d in enumerate(names):  # a device's scan at its own offset within the second
                due = start + scan + i / len(names)
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                ds = defs[d]
                pick = sorted(rng.sample(range(len(ds)), per_scan))
                now = time.time_ns()
                seq = (seq + 1) % 256
                p = codec.build_metrics([ds[k] for k in pick], np.array([rng.random() * 100 for _ in pick]),
                                        np.full(per_scan, GOOD, dtype=np.uint8),
                                        np.full(per_scan, now, dtype=np.int64), {}, timestamp_ns=now, seq=seq)
                await c.publish(device_topic(SITE, "DDATA", node, d), p.SerializeToString(), qos=1)
            scan += 1


async def _generate(port: int, nodes: int, devices: int, tags: int, per_scan: int, seconds: float) -> None:
    await asyncio.gather(*(_edge(port, node, devs, per_scan, seconds)
                           for node, devs in layout(nodes, devices, tags).items()))


# ---------------------------------------------------------------------- the host side (this process)
class Meter:
    """The host's apply, counted: values, per-message latency (source → applied), the batches for the baseline."""

    def __init__(self, db: TagDatabase) -> None:
        self.db = db
        self.on = False
        self.values = 0
        self.latency_ms: list[float] = []
        self.batches: list[tuple[I64, Readings]] = []

    def apply(self, indices: I64, readings: Readings) -> None:
        self.db.apply_readings(indices, readings)
        if self.on:
            self.values += len(readings)
            if len(readings):
                self.latency_ms.append((time.time_ns() - int(readings.source_ns[0])) / 1e6)
            if len(self.batches) < 20_000:
                self.batches.append((indices, readings))


def _persistent() -> bool:
    """The product persists its broker and the host's session (drivers.sparkplug.broker.persistence_config); a
    ``--baseline-rev`` from before that runs as it was then: the A/B measures what "no value lost" costs."""
    return hasattr(product_broker, "persistence_config")


def _persistence(folder: Path) -> str:
    if _persistent():
        return str(product_broker.persistence_config(folder))
    return "persistence false\nmax_queued_messages 100000\n"


def _mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    program = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{_persistence(folder)}"
                    f"log_dest file {folder / 'mosquitto.log'}\n")
    proc = subprocess.Popen([program, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not listen")


async def _run_load(folder: Path, factor: int, nodes: int, devices: int, tags: int, seconds: float
                    ) -> dict[str, float]:
    broker, port = _mosquitto(folder)
    per_scan = max(1, round(tags * CHANGED * factor))
    lay = layout(nodes, devices, tags)
    defs = [TagDef(n, d, "e", "e", "d", "ir:0", "float") for devs in lay.values() for d, ts in devs.items() for n in ts]
    db = TagDatabase(defs)
    meter = Meter(db)
    host = SparkplugHost(Broker("127.0.0.1", port), HOST_ID, SITE, lay, db.index, meter.apply,
                         lambda idx: db.source_ns[idx])
    if _persistent():
        host.client_id = f"{HOST_ID}-bench"  # a persistent session, as the server's
    host.start()
    gen: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(100):
            if host.connected:
                break
            await asyncio.sleep(0.05)
        gen = subprocess.Popen([sys.executable, "-m", "bench.bench_edge", "--generate", str(port), str(nodes),
                                str(devices), str(tags), str(per_scan), str(seconds + 4)], stdout=subprocess.DEVNULL)
        await asyncio.sleep(5.0)  # births applied, the first scans under way
        births = sum(n.births for n in host.nodes.values())
        me, g0, b0 = os.getpid(), proc_cpu_s(gen.pid), proc_cpu_s(broker.pid)
        c0, t0 = proc_cpu_s(me), time.monotonic()
        meter.on = True
        await asyncio.sleep(seconds)
        meter.on = False
        wall = time.monotonic() - t0
        host_cpu, gen_cpu, broker_cpu = proc_cpu_s(me) - c0, proc_cpu_s(gen.pid) - g0, proc_cpu_s(broker.pid) - b0
        gaps = sum(n.seq_gaps for n in host.nodes.values())
        good = int(np.count_nonzero(db.qualities == int(Quality.GOOD)))
    finally:
        await host.aclose(drain_s=0)
        for p in (gen, broker):
            if p is not None and p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
                if p.poll() is None:
                    p.kill()
    if not meter.values or not meter.batches:
        raise RuntimeError(f"no value reached the host (synthetic edges exit code {gen.poll() if gen else None})")
    # baseline: the same batches straight into a tag database (the in-process poller's apply), same process
    base_db = TagDatabase(defs)
    b_cpu0 = time.process_time()
    base_values = 0
    for indices, readings in meter.batches:
        base_db.apply_readings(indices, readings)
        base_values += len(readings)
    base_cpu = time.process_time() - b_cpu0
    rate = meter.values / wall
    return {"factor": factor, "offered": devices * per_scan, "rate": rate, "messages": rate / per_scan,
            "host_us": host_cpu / max(1, meter.values) * 1e6, "host_core": host_cpu / wall,
            "base_us": base_cpu / max(1, base_values) * 1e6,
            "edge_us": gen_cpu / max(1, meter.values) * 1e6, "edge_core": gen_cpu / wall,
            "broker_us_msg": broker_cpu / max(1, meter.values / per_scan) * 1e6, "broker_core": broker_cpu / wall,
            "p50": percentile(meter.latency_ms, 50), "p99": percentile(meter.latency_ms, 99),
            "gaps": gaps, "births": births, "good": good, "tags": len(defs), "per_scan": per_scan}


def measure(quick: bool = False) -> Section:
    nodes, devices, tags, seconds = ((2, 60, 100, 8.0) if quick
                                     else (4, DIJON_DEVICES, DIJON_TAGS // DIJON_DEVICES, 30.0))
    runs = []
    for factor in (1, 3):
        with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
            runs.append(asyncio.run(_run_load(Path(tmp), factor, nodes, devices, tags, seconds)))
    rows = "\n".join(
        f"| {r['factor']}x | {r['offered']:,.0f} | {r['rate']:,.0f} ({r['messages']:,.0f} msg/s) | "
        f"{r['host_us']:.1f} µs ({r['host_core'] * 100:.0f} % of a core) | {r['base_us']:.2f} µs | "
        f"{r['host_us'] / r['base_us']:.1f}x | {r['edge_us']:.1f} µs ({r['edge_core'] * 100:.0f} %) | "
        f"{r['broker_us_msg']:.0f} µs/msg ({r['broker_core'] * 100:.0f} %) | {r['p50']:.0f} / {r['p99']:.0f} ms | "
        f"{r['gaps']} | {r['good']:,}/{r['tags']:,} |" for r in runs)
    one = runs[0]
    host_us, broker_us, per_msg = one["host_us"], one["broker_us_msg"], one["per_scan"]
    dijon_rate = DIJON_DEVICES * round((DIJON_TAGS // DIJON_DEVICES) * CHANGED)
    extra = "\n".join(
        f"| {k}x | {dijon_rate * k:,} | {dijon_rate * k * host_us / 1e6:.1f} "
        f"({max(1, int(np.ceil(dijon_rate * k * host_us / 1e6 / 0.7)))} host processes at ≤ 70 %) | "
        f"{dijon_rate * k / per_msg * broker_us / 1e6:.1f} "
        f"({max(1, int(np.ceil(dijon_rate * k / per_msg * broker_us / 1e6 / 0.7)))} broker cores at ≤ 70 %) |"
        for k in (1, 10, 100))
    scope = ("quick: 2 edges, 60 devices × 100 tags, 8 s per load" if quick else
             f"{DIJON_DEVICES:,} devices × {DIJON_TAGS // DIJON_DEVICES} tags over 4 edges, 30 s per load")
    md = (f"Synthetic edges (a child process) → Mosquitto (child) → `SparkplugHost` + `TagDatabase` (this process); "
          f"{scope}; each device one DDATA per 1 s scan with {CHANGED:.0%} of its tags (1x) or three times that (3x), "
          f"QoS 1. Baseline: the same batches applied in-process (`apply_readings`, the poller's path), same run.\n\n"
          "| load | values/s offered | values/s applied | host CPU per value (decode + apply) | in-process apply "
          "per value | ratio | edge CPU per value (encode + publish) | broker CPU | latency source → applied "
          "p50 / p99 | seq gaps | tags good |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
          f"{rows}\n\nExtrapolation from the 1x costs ({host_us:.1f} µs per value at the host, {broker_us:.0f} µs "
          f"per {per_msg}-value message at the broker; cores of this machine; a host process per group of "
          "partitions beyond one core, a broker cluster beyond one broker):\n\n"
          "| Dijon | values/s | host cores | broker cores |\n|---|---|---|---|\n"
          f"{extra}\n")
    return Section(md, {"host_us_per_value": Metric(host_us, "µs", "lower"),
                        "host_vs_inprocess": Metric(host_us / one["base_us"], "x", "lower"),
                        "latency_p99_ms": Metric(one["p99"], "ms", "lower"),
                        "broker_us_per_message": Metric(broker_us, "µs", "lower")})


def main(quick: bool = False) -> str:
    return measure(quick).markdown


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        port, nodes, devices, tags, per_scan = (int(a) for a in sys.argv[2:7])
        asyncio.run(_generate(port, nodes, devices, tags, per_scan, float(sys.argv[7])))
    else:
        print(main("--quick" in sys.argv))
