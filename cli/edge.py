"""``scada edge``: an edge poller, the poll scheduler and drivers of one partition as a Sparkplug B Edge Node.

    scada edge --config tags.yaml --partition east [--broker mqtt://127.0.0.1:1883] [--endpoints sim.json]
               [--username edge-east (password: $SCADA_MQTT_PASSWORD)] [--ca ca.pem (for mqtts://)]

    tags.yaml partitions: east (source mqtt://...) ──► this process polls east's devices ──► broker ──► server
                                                       (drivers.sparkplug.EdgeNode)        (its host application)

The broker defaults to the partition's ``source``. Publishing waits for the primary host's STATE
(``--host-id``, default ``scada-<site>``, the server's; ``--no-host`` publishes whenever connected). While
the broker or the host is away, data go to the store-and-forward file (``--store``, default
``<data root>/edge/<partition>/forward.sqlite``) and are replayed as historical data. Runs until SIGINT/SIGTERM
(or ``--duration`` seconds); exit 2 on a configuration error. A host's reload request (NCMD ``Node
Control/Reload Configuration``, sent when the server's reload changes this partition) reads ``--config``
again; commands (DCMD) are obeyed only from the primary host at its current epoch, for the partition's
writable tags (docs/sparkplug.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.options import add_data_dir
from scada.config import load_city
from scada.config.partitions import Broker
from scada.datadir import resolve_root
from scada.errors import ConfigError

if TYPE_CHECKING:
    from drivers.sparkplug.edge import EdgeNode

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="tags.yaml", help="tags file (default tags.yaml)")
    parser.add_argument("--partition", required=True, help="the partition to poll (tags.yaml partitions:)")
    parser.add_argument("--broker", default=None, help="mqtt://host:port (default: the partition's source)")
    parser.add_argument("--endpoints", default=None,
                        help="JSON {logical endpoint: address} overriding tags.yaml (the simulator's endpoints.json)")
    parser.add_argument("--host-id", default=None, help="the primary host application (default scada-<site>)")
    parser.add_argument("--no-host", action="store_true", help="publish whenever connected (no primary host STATE)")
    parser.add_argument("--username", default=None,
                        help="the broker credential's user (its password from $SCADA_MQTT_PASSWORD; "
                             "drivers.sparkplug.broker: edge-<partition>)")
    parser.add_argument("--ca", type=Path, default=None,
                        help="CA file that signed an mqtts:// broker's certificate (default: the system's CAs)")
    parser.add_argument("--store", type=Path, default=None, help="store-and-forward SQLite file")
    parser.add_argument("--max-stored", type=int, default=1_000_000,
                        help="store-and-forward bound in messages (beyond: the oldest dropped, counted, the host "
                             "alarmed; default 1,000,000)")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds (default: run until "
                                                                      "SIGINT/SIGTERM)")
    add_data_dir(parser, city=False)


def main(args: argparse.Namespace) -> int:
    overrides: dict[str, str] = {}
    if args.endpoints:
        try:
            overrides = {str(k): str(v) for k, v in json.loads(Path(args.endpoints).read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            print(f"scada edge: {args.endpoints}: cannot read the endpoints JSON: {exc}", file=sys.stderr)
            return 2
    try:
        config = load_city(args.config, endpoint_overrides=overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    part = config.partitions.get(args.partition)
    if part is None:
        print(f"scada edge: no partition {args.partition!r} in {args.config} (partitions: "
              f"{', '.join(config.partitions) or 'none'})", file=sys.stderr)
        return 2
    url = args.broker or part.source
    if url is None:
        print(f"scada edge: partition {part.name!r} has no source: give --broker mqtt://host:port", file=sys.stderr)
        return 2
    from drivers.sparkplug.edge import EdgeNode  # the protocol stack loads only for this command
    from drivers.sparkplug.topics import default_host_id

    store = args.store or resolve_root(args.data_dir) / "edge" / part.name / "forward.sqlite"
    host_id = None if args.no_host else (args.host_id or default_host_id(config.site))
    edge = EdgeNode(config, part.name, Broker.parse(url), store, host_id=host_id, username=args.username,
                    password=os.environ.get("SCADA_MQTT_PASSWORD") if args.username else None,
                    max_stored=args.max_stored, ca_file=args.ca,
                    # a host's reload request (NCMD) reads the same file again, with the same endpoints
                    loader=lambda: load_city(args.config, endpoint_overrides=overrides))
    print(f"scada edge: partition {part.name} ({len(part.devices)} devices) → {url} as "
          f"spBv1.0/{edge.group}/+/{edge.node}; primary host {host_id or '(none)'}; store {store}", flush=True)
    return asyncio.run(_run(edge, args.duration))


async def _run(edge: EdgeNode, duration: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = edge.start()
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            with contextlib.suppress(asyncio.CancelledError):
                task.result()
    finally:
        await edge.aclose()
    print(f"scada edge: stopped ({json.dumps(edge.status())})", flush=True)
    return 0
