"""``scada check [tags.yaml] [alarms.yaml] [commands.yaml]``: validate the configuration the server would
load and print every problem (exit 1 if any).

    tags.yaml + inventory ─┐
    alarms.yaml ───────────┴─ scada.config.check_city ──► CityConfig ─┐
    commands.yaml ─────────── failsafe.vocabulary.check_vocabulary ◄──┤  (against the city when it is valid)
    crews.yaml ────────────── scada.workorders.crews.check_crews ◄────┘  (--crews; default: beside tags.yaml)
    intake.yaml ───────────── scada.workorders.intake.check_intake        (--intake; default: beside tags.yaml)

The same two loaders the server uses, so what passes here starts there. ``commands.yaml`` defaults to
the one beside the tags file, when there is one. Problems of all three files are printed together,
in file and line order, as ``file:line: who: what, got what``. A valid city with ``partitions:`` then lists each
partition, its device count and where it is polled (in-process, or an edge via its broker: docs/sparkplug.md).
Warnings (equipment whose coordinates fall outside its commune's real outline, scada.geo) are printed the
same way, ``what`` starting with "warning:", and do not change the exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from failsafe.vocabulary import check_vocabulary
from scada.config import check_city
from scada.errors import ConfigProblem
from scada.geo import outside_commune
from scada.workorders.crews import check_crews
from scada.workorders.intake import check_intake


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tags", nargs="?", default="tags.yaml", help="tags file (default tags.yaml)")
    parser.add_argument("alarms", nargs="?", default="alarms.yaml", help="alarms file (default alarms.yaml)")
    parser.add_argument("commands", nargs="?", default=None,
                        help="command vocabulary (default commands.yaml beside the tags file, if present)")
    parser.add_argument("--crews", default=None,
                        help="maintenance crews and SLAs (default crews.yaml beside the tags file, if present)")
    parser.add_argument("--intake", default=None,
                        help="citizen-report channels (default intake.yaml beside the tags file, if present)")


def commands_file(args: argparse.Namespace) -> Path | None:
    if args.commands is not None:
        return Path(args.commands)
    beside = Path(args.tags).parent / "commands.yaml"
    return beside if beside.is_file() else None


def crews_file(args: argparse.Namespace) -> Path | None:
    return _beside(args, "crews", "crews.yaml")


def intake_file(args: argparse.Namespace) -> Path | None:
    return _beside(args, "intake", "intake.yaml")


def _beside(args: argparse.Namespace, option: str, name: str) -> Path | None:
    """The file the option names, else ``name`` beside the tags file when there is one (as the server reads it)."""
    if getattr(args, option, None) is not None:
        return Path(getattr(args, option))
    beside = Path(args.tags).parent / name
    return beside if beside.is_file() else None


def main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    config, problems = check_city(args.tags, args.alarms)
    commands = commands_file(args)
    vocab = None
    if commands is not None:
        # an invalid city still gets its vocabulary checked on its own (roles, durations, structure)
        vocab, vproblems = check_vocabulary(commands, config)
        problems = [*problems, *vproblems]
    crews = crews_file(args)
    if crews is not None:  # like the vocabulary: checked on its own when the city is invalid
        problems = [*problems, *check_crews(crews, config)[1]]
    intake = intake_file(args)
    if intake is not None:  # the citizen-report channels: on their own (nothing in them refers to the city)
        problems = [*problems, *check_intake(intake)[1]]
    # warnings do not stop the city (exit 0 when there are only warnings): equipment placed outside its
    # commune's real outline (scada.geo) — a typo in a coordinate or the wrong commune
    for w in outside_commune(config.equipment.values()) if config is not None else []:
        print(w, file=sys.stderr)
    if problems or config is None or (commands is not None and vocab is None):
        for p in sorted(problems, key=_order):
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s); the configuration cannot be used", file=sys.stderr)
        return 1
    took = time.perf_counter() - start
    vocab_text = f", {len(vocab.types)} commandable types" if vocab is not None else ", no commands.yaml"
    print(f"ok: {len(config.equipment)} equipment, {len(config.devices)} devices, {len(config.tags)} tags, "
          f"{len(config.alarm_rules)} alarm rules{vocab_text} ({took:.2f} s)")
    for part in config.partitions.values():  # where each device is polled (scada.config.partitions)
        where = f"edge via {part.source}" if part.source else "in-process"
        print(f"  partition {part.name}: {len(part.devices)} devices, {where}")
    return 0


def _order(p: ConfigProblem) -> tuple[str, int, str, str]:
    return (p.file, p.line, p.who, p.what)
