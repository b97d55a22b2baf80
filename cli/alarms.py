"""``scada alarms``: alarm tools.

    scada alarms kpi                                   the ISA-18.2 / EEMUA 191 report over the whole journal
    scada alarms kpi --from 30d --service lighting     one console (service/area/commune), last 30 days
    scada alarms kpi --format json                     the figures as JSON (also ``--json``)

The KPIs are computed from the journal (``journal.sqlite`` of the data folder, found as ``scada journal``
finds it, or ``--db``), opened read-only. With
less than 30 days of data the report says "insufficient data" and compares nothing with the targets.
"""

from __future__ import annotations

import argparse
import json
import sys

from cli.journal import add_common, build_query, journal_path, parse_time
from scada.alarms.kpi import compute_kpis
from scada.config.units import parse_duration
from scada.datadir import DataDirError
from scada.errors import StorageError
from scada.journal import Journal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    kpi = sub.add_parser("kpi", help="ISA-18.2 / EEMUA 191 alarm KPIs from the journal")
    add_common(kpi)
    kpi.add_argument("--fleeting", default="5s", help="an activation cleared faster than this is fleeting (5s)")
    kpi.add_argument("--format", choices=["text", "json"], default="text", help="text report (default) or JSON")
    kpi.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def main(args: argparse.Namespace) -> int:
    if args.action != "kpi":  # pragma: no cover - argparse enforces the choice
        return 2
    try:
        query = build_query(args)
        fleeting = parse_duration(args.fleeting)
        path = journal_path(args)
    except (argparse.ArgumentTypeError, ValueError, DataDirError) as exc:
        print(f"scada alarms kpi: {exc}", file=sys.stderr)
        return 2
    scope_parts = [f"{name} {', '.join(values)}" for name, values in (
        ("equipment", args.equipment), ("commune", args.commune), ("area", args.area), ("service", args.service))
        if values]
    try:
        with Journal(path, readonly=True) as journal:
            report = compute_kpis(journal, parse_time(args.since) if args.since else None,
                                  parse_time(args.until) if args.until else None, query=query,
                                  fleeting_s=fleeting, scope="; ".join(scope_parts) or "all alarms")
    except StorageError as exc:
        print(f"scada alarms kpi: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(report.format_text())
    return 0
