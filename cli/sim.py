"""``scada sim``: run the hardware simulator (real Modbus / SNMP / OPC UA / serial servers).

::

    scada sim                                   # the demo city on the fixed demo ports of tags.yaml
    scada sim --scale dijon                     # generate the full métropole into the state dir, serve it all
    scada sim --scenario storm --speed 20       # replay sim/scenarios/storm.yaml 20× faster than real time
    scada sim --reports http://127.0.0.1:8080 --report-token T   # + citizens' reports to the server's intake
    scada sim --ports test --duration 30        # OS-assigned ports, stop by itself after 30 s (scripts, CI)

The state directory is ``--state-dir``, else ``<data>/<scale>/sim`` (``<data>``: ``--data-dir``, else
``$SCADA_DATA_DIR``, else ``scada-data``: the folder ``scada run`` gives its simulator). It is locked
(``<state-dir>/.lock``, :mod:`scada.datadir`) before anything is written: a second simulator on the
same folder, or one beside a running ``scada run``, exits 2 naming the running one. Under
``scada run`` the parent holds that lock and passes it down.

It prints every endpoint, writes ``<state-dir>/endpoints.json`` (for ``load_city(...,
endpoint_overrides=...)`` and ``scada poll --endpoints``) and ``<state-dir>/control.json`` (the
control API's URL: port 15080 with ``--ports demo``, OS-assigned with ``--ports test`` as under
``scada run``), then runs until Ctrl-C (or SIGTERM), or for ``--duration`` seconds of real time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from cli.options import add_data_dir, lock
from scada.config import load_city
from scada.config.generate import SCALES, generate
from scada.datadir import DataDirError, resolve_root
from scada.errors import ConfigError
from sim.crews import ReportGenerator, post_reports
from sim.runner import Simulator
from sim.scenarios import load_scenario, parse_start

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("tags.yaml"), help="tags file (default tags.yaml)")
    parser.add_argument("--alarms", type=Path, default=None,
                        help="alarms file, validated with the config (default: alarms.yaml next to --config)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo",
                        help="demo: the config as given; dijon: generate the full métropole into the state dir")
    parser.add_argument("--scenario", default=None,
                        help="scenario YAML file, or the name of a shipped one (snow_night, storm, ...)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (same seed, same city; default 42)")
    parser.add_argument("--speed", type=float, default=None,
                        help="simulation clock speed (default 1, or the scenario's suggested speed)")
    add_data_dir(parser, city=False)
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where endpoints.json, control.json, certificates and serial links go "
                             "(default <data-dir>/<scale>/sim)")
    parser.add_argument("--ports", choices=["demo", "test"], default="demo",
                        help="demo: the fixed ports of tags.yaml (default); test: OS-assigned ports")
    parser.add_argument("--control-port", type=int, default=None,
                        help="control API port (default 15080 with --ports demo, OS-assigned with test)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    parser.add_argument("--start", default=None,
                        help="simulation start (ISO 8601, Europe/Paris if no offset; default now or the scenario's)")
    parser.add_argument("--reports", default=None, metavar="URL",
                        help="post simulated citizen reports to this server's intake (sim.crews.ReportGenerator)")
    parser.add_argument("--report-token", default=os.environ.get("SCADA_REPORT_TOKEN"),
                        help="the intake channel's token (default: $SCADA_REPORT_TOKEN)")
    parser.add_argument("--reports-per-day", type=float, default=None,
                        help="citizen reports a day (default: ~630 at Dijon's scale, scaled to the city)")


def _config_paths(args: argparse.Namespace) -> tuple[Path, Path | None]:
    tags = Path(args.config)
    alarms = args.alarms if args.alarms is not None else tags.parent / "alarms.yaml"
    if args.alarms is None and not alarms.exists():
        alarms = None
    if args.scale != "demo":
        out = Path(args.state_dir) / f"city-{args.scale}"
        print(f"generating the {args.scale} city into {out} ...", flush=True)
        tags = generate(out, args.scale, args.seed, tags.parent)
        alarms = out / "alarms.yaml"
    return tags, alarms


async def run(args: argparse.Namespace) -> int:
    tags, alarms = _config_paths(args)
    t0 = time.perf_counter()
    config = load_city(tags, alarms)
    print(f"config: {len(config.equipment)} equipment, {len(config.tags)} tags ({time.perf_counter() - t0:.1f} s)",
          flush=True)
    scenario = load_scenario(args.scenario, config) if args.scenario else None
    start = parse_start(args.start) if args.start else (scenario.start if scenario else None)
    speed = args.speed if args.speed is not None else (scenario.speed if scenario and scenario.speed else 1.0)
    control_port = args.control_port if args.control_port is not None else -1
    sim = Simulator(config, args.seed, speed=speed, ports=args.ports, state_dir=args.state_dir,
                    start_time=start, control_port=control_port, echo=True)
    stop = asyncio.Event()
    reports: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        await sim.start()
        if scenario is not None:
            n = sim.play(scenario)
            print(f"scenario {scenario.name}: {n} actions over {scenario.duration_s:.0f} s of simulated time "
                  f"({scenario.duration_s / speed:.0f} s real at ×{speed:g})", flush=True)
        if args.reports:
            if not args.report_token:
                print("scada sim: --reports needs --report-token (or $SCADA_REPORT_TOKEN)", file=sys.stderr)
                return 2
            rng = random.Random(f"{args.seed}:reports")  # noqa: S311 - simulated citizens, reproducible by seed
            gen = ReportGenerator(sim.models, config.equipment, rng, args.reports_per_day, sim.clock())
            reports = asyncio.create_task(post_reports(args.reports, args.report_token, gen, sim.clock, stop=stop))
            print(f"citizen reports: {gen.per_day:.0f}/day to {args.reports}", flush=True)
        print("running; Ctrl-C stops", flush=True)
        try:
            await asyncio.wait_for(stop.wait(), args.duration)
        except TimeoutError:
            pass
    finally:
        if reports is not None:
            reports.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reports
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover
                pass
        await sim.aclose()
    status = sim.status()
    reached = dt.datetime.fromtimestamp(status["sim_time"], ZoneInfo(config.timezone))
    print(f"stopped: {status['steps']} steps, simulated up to {reached:%Y-%m-%d %H:%M:%S %Z}", flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    if args.state_dir is None:
        args.state_dir = resolve_root(args.data_dir) / args.scale / "sim"
    try:
        held = lock(args.state_dir, args, "scada sim")
    except (DataDirError, OSError) as exc:
        print(f"scada sim: {exc}", file=sys.stderr)
        return 2
    if held is None:
        return 2
    with held:
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(args))
    except ConfigError as exc:
        return exc.report("the simulator did not start")
    except OSError as exc:
        print(f"scada sim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


logging.getLogger("asyncua").setLevel(logging.WARNING)

__all__ = ["add_arguments", "main", "run"]
