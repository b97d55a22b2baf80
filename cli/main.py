"""The ``scada`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``;
only the chosen subcommand's module is imported, so ``scada check`` never loads Qt or a protocol
library and ``scada --help`` is instant. The table below is the whole command surface.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Sequence

from cli.options import add_lang, use_lang

#: name → (one-line help, implementing module)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("the demo: simulator + server + HMI on the shipped city (--scale dijon for full scale)", "cli.run"),
    "check": ("validate tags.yaml, alarms.yaml, commands.yaml and the inventory; print every problem",
              "cli.check"),
    "config": ("configuration tools: `config generate --scale dijon` writes a full-scale city", "cli.config"),
    "sim": ("run the hardware simulator (real Modbus/SNMP/OPC UA/serial servers)", "cli.sim"),
    "poll": ("poll the configured devices into the tag database and show a live summary", "cli.poll"),
    "edge": ("an edge poller: one partition's devices published as a Sparkplug B edge node over MQTT", "cli.edge"),
    "server": ("run the supervisory server (drivers, alarms, historian, fail-safe, API)", "cli.server"),
    "reload": ("ask a running server to reload its configuration", "cli.reload"),
    "users": ("manage user accounts and roles", "cli.users"),
    "journal": ("query the alarm journal (filters, --csv, --follow)", "cli.journal"),
    "alarms": ("alarm tools: `alarms kpi` prints the ISA-18.2 / EEMUA 191 report", "cli.alarms"),
    "historian": ("historian tools: export, energy report, grafana-dashboard", "cli.historian"),
    "audit": ("command audit log tools: `audit verify` checks the hash chain", "cli.audit"),
    "workorders": ("work orders: list, show, export --csv, kpi (maintenance)", "cli.workorders"),
    "ha": ("failover pair: status, switchover, force-active (break-glass)", "cli.ha"),
    "hmi": ("start the operator console (PyQt6) against a running server", "cli.hmi"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scada",
        description="City supervisory system: protocol drivers, tag database, alarms, historian, fail-safe "
                    "command gate, server/API and operator console.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10} {text}" for name, (text, _) in COMMANDS.items())
               + "\n\n`scada <command> --help` shows a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    add_lang(parser)
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="command", help="see below")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # split: [global options] command [command options]
    idx = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if idx is None:
        top.parse_args(argv)
        top.print_help()
        return 0 if not argv or "-h" in argv or "--help" in argv else 2
    gns = top.parse_args(argv[: idx + 1])
    use_lang(gns.lang)
    name = argv[idx]
    text, module_name = COMMANDS[name]
    level = logging.WARNING if gns.verbose == 0 else logging.INFO if gns.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"scada {name}: not available yet in this build ({text})", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"scada {name}", description=text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[idx + 1:])
    args.command_line = shlex.join(["scada", *argv[idx:]])  # written in a data directory's lock file
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
