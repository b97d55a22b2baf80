"""A minimal supervisory process for the kill -9 test: poller + real drivers + the fail-safe layer.

    python -m tests.failsafe.supervisor_proc --snmp HOST:PORT --modbus HOST:PORT --state DIR \\
        --t0 WALL_EPOCH --start SIM_EPOCH --speed 10 [--command verb:target:key=value...]...

Runs the commands through the gate, prints one JSON line per result, then ``READY`` and keeps running
(lease refresh, heartbeats, monitor) until killed. Simulation time = start + (wall − t0) × speed, the
same clock as the test process that steps the simulator models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from drivers.registry import DriverFactory
from failsafe.service import Failsafe
from failsafe.types import CommandRequest, Principal
from failsafe.writer import DriverWriter
from scada.config import load_city
from scada.poll import Poller
from scada.tagdb import TagDatabase

ROOT = Path(__file__).resolve().parents[2]
USER = Principal("alice", frozenset({"operator"}), "ws-kill")


def parse_command(text: str) -> tuple[str, str, dict[str, float], float | None]:
    verb, target, *rest = text.split(":")
    params: dict[str, float] = {}
    lease = None
    for item in rest:
        k, _, v = item.partition("=")
        if k == "lease":
            lease = float(v)
        else:
            params[k] = int(v)
    return verb, target, params, lease


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--snmp", required=True)
    p.add_argument("--modbus", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--t0", type=float, required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--devices", default="J003,C0001")
    p.add_argument("--command", action="append", default=[])
    args = p.parse_args()

    def clock() -> float:
        return args.start + (time.time() - args.t0) * args.speed

    async def sleep(dt: float) -> None:
        await asyncio.sleep(dt / args.speed)

    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml",
                     endpoint_overrides={"snmp-traffic": args.snmp, "modbus-1": args.modbus})
    devices = args.devices.split(",")
    for d in devices:
        city.devices[d].period_s = 0.3
    db = TagDatabase(city.tags)
    factory = DriverFactory(city)
    poller = Poller(city, factory, db, devices=devices, max_backoff_s=0.5)
    await poller.start()
    writer = DriverWriter(city, lambda name: poller.drivers.get(name))
    fs = Failsafe.build(city, db, writer, args.state, commands=ROOT / "commands.yaml", clock=clock, sleep=sleep,
                        monitor_clock=time.time, fsync=True)
    await fs.start(lease_interval_s=0.05, monitor_interval_s=0.05)
    for text in args.command:
        verb, target, params, lease = parse_command(text)
        r = await fs.gate.execute(CommandRequest(verb, (target,), USER, params, lease_s=lease))  # type: ignore[arg-type]
        print(json.dumps({"verb": verb, "target": target, "outcome": r.outcome.value if r.outcome else None,
                          "reason": r.reason, "lease_end": r.lease_end}), flush=True)
    print("READY", flush=True)
    while True:  # until SIGKILL: no clean shutdown path on purpose
        await asyncio.sleep(3600)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main()))
