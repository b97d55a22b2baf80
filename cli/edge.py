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
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
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


# ---------------------------------------------------------------------- scada run --distributed (the demo)
DEMO_PARTITIONS = ("\npartitions:  # scada run --distributed: the lighting cabinets polled by an edge, the rest here\n"
                   "  - name: lighting\n    templates: [lighting_cabinet]\n    source: {url}\n"
                   "  - name: central\n    rest: true\n")


@dataclass
class Distributed:
    """The demo's broker (Mosquitto: a password per edge and for the server, the ACL) and its edges, children of
    ``scada run --distributed``; ``tags`` is the city's copy with its partitions (what the server and edges read)."""

    folder: Path
    tags: Path
    url: str
    broker: subprocess.Popen[bytes]
    host_id: str
    passwords: dict[str, str]  # broker user → password (random at each start, never written in clear)
    ca: Path  # the CA that signed the broker's certificate (mqtts://)
    edges: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def server_env(self) -> dict[str, str]:
        """The server's broker credential and CA (server.components.edge.broker_credential reads them)."""
        return {"SCADA_MQTT_USER": self.host_id, "SCADA_MQTT_PASSWORD": self.passwords[self.host_id],
                "SCADA_MQTT_CA": str(self.ca)}

    def start_edges(self, endpoints: Path, data_root: Path) -> None:
        """One ``scada edge`` per edge partition, against the simulator's endpoints, logs in ``folder``."""
        from drivers.sparkplug.broker import edge_user

        config = load_city(self.tags)
        for part in (p for p in config.partitions.values() if p.is_edge):
            user = edge_user(part.name)
            cmd = [sys.executable, "-m", "cli", "edge", "--config", str(self.tags), "--partition", part.name,
                   "--endpoints", str(endpoints), "--username", user, "--data-dir", str(data_root),
                   "--ca", str(self.ca)]
            with open(self.folder / f"edge-{part.name}.log", "wb") as out:
                # our own interpreter and module with a fixed argument list; the password in the child's environment
                self.edges.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                                   start_new_session=True,
                                                   env={**os.environ, "SCADA_MQTT_PASSWORD": self.passwords[user]}))

    def stop(self) -> None:
        for proc in [*reversed(self.edges), self.broker]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is not self.broker else signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def start_distributed(tags: Path, folder: Path) -> Distributed:
    """Copy the city's folder (its tags.yaml names files next to it) into ``folder``, add the demo's partitions
    if it has none, write a password per edge and for the server and the ACL (drivers.sparkplug.broker), make a
    CA and the broker's certificate (``folder``/tls), and start Debian's Mosquitto on a free loopback port, TLS
    only (``mqtts://``), persistent (its database in ``folder``/mosquitto). RuntimeError if it cannot."""
    from drivers.sparkplug.broker import acl, demo_ca, edge_user, listener_config, set_password
    from drivers.sparkplug.topics import default_host_id

    program = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if program is None:
        raise RuntimeError("--distributed needs Mosquitto (Debian package mosquitto)")
    city = folder / "city"
    if city.exists():
        shutil.rmtree(city)
    shutil.copytree(tags.parent, city, ignore=shutil.ignore_patterns("*.sqlite*", "__pycache__"))
    copy = city / tags.name
    with socket.socket() as s:  # a free port now (Mosquitto cannot report one it chose)
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"mqtts://127.0.0.1:{port}"
    config = load_city(tags)
    if not config.partitions:
        copy.write_text(copy.read_text() + DEMO_PARTITIONS.format(url=url))
        config = load_city(copy)
    host_id = default_host_id(config.site)
    edges = [p.name for p in config.partitions.values() if p.is_edge]
    passwords = {u: secrets.token_urlsafe(18) for u in [host_id, *(edge_user(p) for p in edges)]}
    pw_file, acl_file = folder / "mosquitto.passwd", folder / "mosquitto.acl"
    pw_file.unlink(missing_ok=True)
    for user, password in passwords.items():
        set_password(pw_file, user, password)
    acl_file.write_text(acl(config.site, edges, host_id))
    ca, cert, key = demo_ca(folder / "tls")
    db = folder / "mosquitto"
    db.mkdir(exist_ok=True)
    conf = folder / "mosquitto.conf"
    # started as root, Mosquitto would drop to user mosquitto, which cannot read our 0700 data folder
    conf.write_text(listener_config(port, pw_file, acl_file, certfile=cert, keyfile=key, persistence=db)
                    + f"user {pwd.getpwuid(os.geteuid()).pw_name}\nlog_dest file {folder / 'mosquitto.log'}\n")
    broker = subprocess.Popen([program, "-c", str(conf)], stdout=subprocess.DEVNULL,  # noqa: S603
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return Distributed(folder, copy, url, broker, host_id, passwords, ca)
        if broker.poll() is not None:
            break
        time.sleep(0.1)
    broker.kill()
    raise RuntimeError(f"mosquitto did not listen on {port} (see {folder / 'mosquitto.log'})")
