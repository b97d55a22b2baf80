"""``scada workorders``: the work orders for maintenance, read from the data folder's store (read-only).

    scada workorders list [--open] [--status new,assigned] [--service lighting] [--commune Dijon]
                          [--equipment C0003] [--crew lighting-day] [--format json]   overdue first
    scada workorders show WO-000042                   the order, its notes and its change journal
    scada workorders export --csv [--out FILE] [filters]   every matching order as CSV (injection-safe)
    scada workorders kpi [--from 30d] [--to now] [--format json]   time to acknowledge / dispatch / repair,
                                                      backlog, SLA breaches, repeat failures

The store is ``workorders.sqlite`` of the data folder (found as ``scada journal`` finds the journal:
``--data-dir``, ``--city``), or ``--db``; it is opened read-only, so a running server is not disturbed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import IO

from cli.journal import parse_time
from cli.options import add_data_dir, instance
from scada import csvsafe
from scada.datadir import DataDirError
from scada.errors import StorageError
from scada.journal import ms_to_iso
from scada.workorders import FILE_NAME, OrderQuery, WorkOrder, WorkOrderStore, compute

CSV_COLUMNS = ("id", "status", "equipment", "template", "commune", "service", "priority", "what", "created_utc",
               "due_utc", "overdue", "crew", "vehicle", "alarms", "source", "created_by", "assigned_utc",
               "en_route_utc", "on_site_utc", "done_utc", "resolved_utc", "closed_utc", "reason", "cause", "action",
               "recurrences", "notes")


def _common(p: argparse.ArgumentParser) -> None:
    add_data_dir(p)
    p.add_argument("--db", help=f"work-order store (default {FILE_NAME} of the data folder)")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", default=None, help="statuses, comma-separated (new,assigned,...)")
    p.add_argument("--open", action="store_true", help="only open orders (not closed or cancelled)")
    p.add_argument("--service", action="append", default=[], help="service (repeatable)")
    p.add_argument("--commune", action="append", default=[], help="commune (repeatable)")
    p.add_argument("--equipment", action="append", default=[], help="equipment id (repeatable)")
    p.add_argument("--crew", default=None, help="crew id")
    p.add_argument("--from", dest="since", metavar="TIME", help="created from (2026-11-22, 7d, now)")
    p.add_argument("--to", dest="until", metavar="TIME", help="created before")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ls = sub.add_parser("list", help="work orders, overdue first")
    _common(ls)
    _filters(ls)
    ls.add_argument("--limit", type=int, default=200, help="at most this many (200)")
    ls.add_argument("--format", choices=["text", "json"], default="text")
    show = sub.add_parser("show", help="one order with its notes and its change journal")
    _common(show)
    show.add_argument("id", help="order id, e.g. WO-000042")
    show.add_argument("--format", choices=["text", "json"], default="text")
    export = sub.add_parser("export", help="matching orders as CSV")
    _common(export)
    _filters(export)
    export.add_argument("--csv", action="store_true", default=True, help="CSV (the only export format)")
    export.add_argument("--out", type=Path, default=None, help="file to write (default: standard output)")
    kpi = sub.add_parser("kpi", help="maintenance KPIs over the orders created in a period")
    _common(kpi)
    kpi.add_argument("--from", dest="since", metavar="TIME", default="30d", help="from (default 30d ago)")
    kpi.add_argument("--to", dest="until", metavar="TIME", default="now", help="to, excluded (default now)")
    kpi.add_argument("--format", choices=["text", "json"], default="text")


def store_path(args: argparse.Namespace) -> Path:
    return Path(args.db) if getattr(args, "db", None) else instance(args) / FILE_NAME


def build_query(args: argparse.Namespace, limit: int = 1_000_000) -> OrderQuery:
    statuses = tuple(s.strip() for s in (args.status or "").split(",") if s.strip())
    return OrderQuery(status=statuses, open=True if args.open else None, equipment=tuple(args.equipment),
                      service=tuple(args.service), commune=tuple(args.commune), crew=args.crew,
                      created_from_ms=parse_time(args.since) if args.since else None,
                      created_to_ms=parse_time(args.until) if args.until else None, limit=limit)


def _t(ms: int | None) -> str:
    return "" if ms is None else ms_to_iso(ms)


def now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def csv_row(o: WorkOrder, now: int) -> list[object]:
    return [o.id, o.status, o.equipment, o.template, o.commune, o.service, o.priority, o.what, _t(o.created_ms),
            _t(o.due_ms), "yes" if o.open and o.overdue(now) else "", o.crew or "", o.vehicle or "",
            " ".join(o.alarms), o.source, o.created_by, _t(o.assigned_ms), _t(o.en_route_ms), _t(o.on_site_ms),
            _t(o.done_ms), _t(o.resolved_ms), _t(o.closed_ms), o.reason or "", o.cause or "", o.action or "",
            o.recurrences, " | ".join(f"{_t(n.ts_ms)} {n.user}: {n.text}" for n in o.notes)]


def export_csv(store: WorkOrderStore, q: OrderQuery, out: IO[str]) -> int:
    """Every order of ``q`` as CSV (operators' and crews' text goes through scada.csvsafe: no formulas)."""
    w = csvsafe.writer(out)
    w.writerow(CSV_COLUMNS)
    now = now_ms()
    n = 0
    for o in store.iter_orders(q):
        w.writerow(csv_row(o, now))
        n += 1
    return n


def main(args: argparse.Namespace) -> int:
    prog = f"scada workorders {args.action}"
    try:
        path = store_path(args)
        query = build_query(args) if args.action in ("list", "export") else None
        since = parse_time(args.since) if args.action == "kpi" else 0
        until = parse_time(args.until) if args.action == "kpi" else 0
    except (argparse.ArgumentTypeError, ValueError, DataDirError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        with WorkOrderStore(path, readonly=True) as store:
            return _run(args, store, query, since, until)
    except StorageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, store: WorkOrderStore, query: OrderQuery | None, since: int, until: int) -> int:
    now = now_ms()
    if args.action == "list" and query is not None:
        rows = list(store.iter_orders(query))
        rows.sort(key=lambda o: (not (o.open and o.overdue(now)), o.due_ms, o.id))
        rows = rows[:args.limit]
        if args.format == "json":
            print(json.dumps([o.as_dict() | {"overdue": o.open and o.overdue(now)} for o in rows], indent=1,
                             ensure_ascii=False))
            return 0
        for o in rows:
            late = " OVERDUE" if o.open and o.overdue(now) else ""
            print(f"{o.id}  {o.status:<9} P{o.priority} {o.service:<10} {o.equipment:<8} {o.commune:<22} "
                  f"due {_t(o.due_ms)}{late}  {o.crew or '-':<14} {o.what}")
        print(f"{len(rows)} order(s)", file=sys.stderr)
        return 0
    if args.action == "show":
        order = store.get(args.id)
        if order is None:
            print(f"scada workorders show: no work order {args.id!r}", file=sys.stderr)
            return 1
        history = store.history(args.id)
        if args.format == "json":
            print(json.dumps({"order": order.as_dict(), "history": [r.as_dict() for r in history]}, indent=1,
                             ensure_ascii=False))
            return 0
        d = order.as_dict()
        for key in ("id", "status", "equipment", "template", "commune", "lat", "lon", "service", "priority", "what",
                    "source", "created_by", "crew", "vehicle", "reason", "cause", "action", "recurrences"):
            print(f"{key:<12} {d[key] if d[key] is not None else '-'}")
        print(f"{'created':<12} {_t(order.created_ms)}\n{'due':<12} {_t(order.due_ms)}"
              f"{'  OVERDUE' if order.open and order.overdue(now) else ''}")
        print(f"{'alarms':<12} {', '.join(order.alarms) or '-'}")
        print("journal:")
        for r in history:
            c = r.change
            extra = " ".join(f"{k}={v}" for k, v in sorted(c.data.items()) if k not in ("lat", "lon"))
            print(f"  {_t(c.ts_ms)}  {c.user:<16} {c.action:<13} → {r.status:<9} {extra}")
        return 0
    if args.action == "export" and query is not None:
        if args.out is not None:
            with args.out.open("w", encoding="utf-8", newline="") as f:
                n = export_csv(store, query, f)
        else:
            n = export_csv(store, query, sys.stdout)
        print(f"{n} order(s) exported", file=sys.stderr)
        return 0
    report = compute(store.iter_orders(OrderQuery(created_from_ms=since, created_to_ms=until)), since, until)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(report.format_text())
    return 0
