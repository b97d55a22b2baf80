"""``scada server``: run the supervisory server (drivers, alarms, historian, fail-safe, API).

Refuses to start, printing every problem, when the settings or the city configuration are invalid.
Stops cleanly on SIGTERM / SIGINT (Ctrl-C); SIGHUP reloads the configuration (as ``scada reload``).

Its data folder follows :mod:`scada.datadir`: ``--data-dir``, else ``$SCADA_DATA_DIR``, else the
settings file's ``data_dir``, else ``scada-data``; ``--city NAME`` picks ``<that>/NAME`` (the folder
``scada run --scale NAME`` uses). The folder is locked (``.lock``: PID and command) before anything
is written; a second server (or a ``scada run``) on it exits 2 naming the running one. The command
audit log's key (failsafe.audit) is created at the first start; a log whose key is missing or is
another one exits 2 naming the fingerprint the log expects. A folder (or a
store in it) that cannot be written exits 2 with one line: which path, and why (scada.datadir.check_writable).

Lazy imports here: the server stack (its settings, FastAPI, uvicorn, the drivers' protocol libraries,
the user store, the audit log) loads in :func:`main`, so ``scada server --help`` stays instant.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.options import add_data_dir, chosen_lang, lock
from scada.datadir import DataDirError, check_writable, resolve
from scada.errors import ConfigError

if TYPE_CHECKING:
    from server.settings import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, help="server settings YAML (listen, tls, data_dir, historian...)")
    parser.add_argument("--tags", type=Path, help="tags file (default tags.yaml)")
    parser.add_argument("--alarms", type=Path, help="alarms file (default alarms.yaml)")
    parser.add_argument("--commands", type=Path, help="command vocabulary (default commands.yaml next to the tags)")
    parser.add_argument("--endpoints", type=Path, help="the simulator's endpoints JSON (overrides `endpoints:`)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1; other than loopback needs TLS)")
    parser.add_argument("--port", type=int, help="listen port (default 8480; 0 = any free port)")
    add_data_dir(parser)
    parser.add_argument("--tls-cert", type=Path, help="TLS certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="TLS private key (PEM)")
    parser.add_argument("--historian", choices=["embedded", "influxdb", "none"], help="historian backend")
    parser.add_argument("--poll-thread", action="store_true",
                        help="run the poll scheduler and drivers in their own thread and event loop")
    parser.add_argument("--log-json", action="store_true", help="structured logs: one JSON object per line")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ha = parser.add_argument_group("failover pair (docs/ha.md; each overrides the settings' ha section)")
    ha.add_argument("--ha", choices=["primary", "standby"], help="run as one server of a failover pair")
    ha.add_argument("--ha-name", help="this server's name in the pair (default: main room / failover room)")
    ha.add_argument("--ha-etcd", action="append", metavar="URL", help="an etcd member's client URL (repeat)")
    ha.add_argument("--ha-peer", metavar="URL", help="the other server's API URL (the standby's stream comes from it)")
    ha.add_argument("--ha-secret", type=Path, metavar="FILE", help="the pair's shared secret (file, 0600)")


def ha_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ha.*`` settings given on the command line (``scada server --ha primary|standby ...``)."""
    if not getattr(args, "ha", None):
        return {}
    default = ("main room" if args.ha == "primary" else "failover room") if args.settings is None else None
    return {"ha.role": args.ha, "ha.name": args.ha_name or default, "ha.etcd": args.ha_etcd,
            "ha.peer_url": args.ha_peer, "ha.secret_file": args.ha_secret}


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tags": args.tags, "alarms": args.alarms, "commands": args.commands, "endpoints_file": args.endpoints,
        "listen.host": args.host,
        "listen.port": args.port, "historian.backend": args.historian,
        "lang": chosen_lang(args),  # scada --lang / $SCADA_LANG; None: the site's
    }
    if args.poll_thread:
        out["poll_thread"] = True
    out.update(ha_overrides(args))
    if args.tls_cert or args.tls_key:
        out["tls.cert"] = args.tls_cert
        out["tls.key"] = args.tls_key
    return out


def _prompt(text: str, secret: bool) -> str:
    return getpass.getpass(text) if secret else input(text)


def main(args: argparse.Namespace) -> int:
    from server.logs import setup_logging
    from server.settings import load_settings

    setup_logging(args.log_json, getattr(logging, args.log_level))
    try:
        settings = load_settings(args.settings, overrides(args))
    except ConfigError as exc:
        return exc.report("the server does not start")
    configured = settings.data_dir if "data_dir" in settings.model_fields_set else None
    try:
        data = resolve(args.data_dir, args.city, configured)
        held = lock(data, args, "scada server")
    except (DataDirError, OSError) as exc:
        print(f"scada server: {exc}", file=sys.stderr)
        return 2
    if held is None:
        return 2
    with held:
        try:
            check_writable(data)
        except DataDirError as exc:
            print(f"scada server: {exc}", file=sys.stderr)
            return 2
        return _serve(settings.model_copy(update={"data_dir": data}))


def _serve(settings: ServerSettings) -> int:
    from failsafe.audit import AuditKeyError, provision_for
    from scada.users import UserError, UserStore, ensure_first_admin
    from server.app import ScadaServer
    from server.main import serve

    try:
        config, problems = ScadaServer(settings).check_config()
        if problems or config is None:
            raise ConfigError(problems)
    except ConfigError as exc:
        return exc.report("the server does not start")
    try:  # the command audit log is always keyed: its key is created at the first start, checked at every other
        key = provision_for(settings.data_dir)
    except AuditKeyError as exc:
        print(f"scada server: {exc}", file=sys.stderr)
        return 2
    print(f"command audit log key: {key.source} (fingerprint {key.fingerprint}"
          f"{', created now: back it up apart from the data' if key.created else ''})", file=sys.stderr)
    store = UserStore(settings.data_dir / "users.sqlite")
    try:
        try:
            ensure_first_admin(store, _prompt if sys.stdin.isatty() else None)
        except UserError as exc:
            print(f"scada server: cannot create the first administrator from SCADA_ADMIN_PASSWORD: {exc}",
                  file=sys.stderr)
            return 1
        if store.count("administrator") == 0:
            print("warning: no administrator account; create one with `scada users add NAME --role administrator` "
                  "or set SCADA_ADMIN_PASSWORD", file=sys.stderr)
    finally:
        store.close()
    try:
        return asyncio.run(serve(settings, config=config))  # checked above: not loaded a second time
    except ConfigError as exc:
        return exc.report("the server does not start")
    except OSError as exc:
        print(f"scada server: cannot listen on {settings.listen.host}:{settings.listen.port}: {exc}", file=sys.stderr)
        return 1
