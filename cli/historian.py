"""``scada historian export | energy | grafana-dashboard``.

    scada historian export --store scada-data/historian/historian.sqlite --tag 'dijon/lighting/*/power' \\
        --start 2026-11-20T00:00 --end 2026-11-21T00:00 --out power.csv        (progress bar on stderr)
    scada historian energy --store ... --night 2026-11-20 --nights 7 [--watts 150] [--target 65] [--csv out.csv]
    scada historian grafana-dashboard --out dashboard.json [--datasource-uid scada-influxdb]
        [--datasource-out datasource.yaml --influx-url http://127.0.0.1:8086 --database scada]

``--store`` takes a SQLite path or an ``influxdb1://host:port/DB`` spec (see historian.service).
Times without a zone are UTC.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fnmatch
import math
import sys
from pathlib import Path
from typing import Any

NS = 1_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("export", help="CSV export of raw values (tag globs, time range), with a progress bar")
    ex.add_argument("--store", required=True, help="historian.sqlite path or influxdb1://host:port/DB")
    ex.add_argument("--tag", action="append", required=True, help="tag name or glob (repeatable)")
    ex.add_argument("--start", required=True, help="ISO 8601 (UTC if no zone)")
    ex.add_argument("--end", required=True, help="ISO 8601 (UTC if no zone)")
    ex.add_argument("--out", type=Path, help="CSV file (default: stdout)")
    ex.add_argument("--slice-hours", type=float, default=24.0, help="query size per step (bounded memory)")
    en = sub.add_parser("energy", help="lighting kWh per commune per night vs baseline, saving %% vs target")
    en.add_argument("--store", required=True)
    en.add_argument("--tags", type=Path, default=Path("tags.yaml"))
    en.add_argument("--alarms", type=Path, default=Path("alarms.yaml"))
    en.add_argument("--night", required=True, help="first night (YYYY-MM-DD: noon to noon, local time)")
    en.add_argument("--nights", type=int, default=1)
    en.add_argument("--watts", type=float, default=150.0, help="baseline W per luminaire (replaced installation)")
    en.add_argument("--hours", type=float, default=11.5, help="baseline hours when contactor data is missing")
    en.add_argument("--target", type=float, default=65.0, help="contract saving target, %% (default 65)")
    en.add_argument("--csv", type=Path, help="also write the rows as CSV")
    gd = sub.add_parser("grafana-dashboard", help="write a Grafana provisioning dashboard JSON (InfluxDB datasource)")
    gd.add_argument("--tags", type=Path, default=Path("tags.yaml"))
    gd.add_argument("--alarms", type=Path, default=Path("alarms.yaml"))
    gd.add_argument("--out", type=Path, default=Path("scada-dashboard.json"))
    gd.add_argument("--datasource-uid", default="scada-influxdb")
    gd.add_argument("--measurement", default="history")
    gd.add_argument("--datasource-out", type=Path, help="also write a datasource provisioning YAML")
    gd.add_argument("--influx-url", default="http://127.0.0.1:8086")
    gd.add_argument("--database", default="scada")


def _time(text: str) -> int:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1e6) * 1000


def _load(tags: Path, alarms: Path) -> Any:
    from scada.config import loader

    return loader.load_city(str(tags), str(alarms) if alarms.exists() else None)


def main(args: argparse.Namespace) -> int:
    from scada.errors import ScadaError

    try:
        if args.action == "export":
            return export(args)
        if args.action == "energy":
            return energy(args)
        return grafana(args)
    except ScadaError as exc:
        print(f"scada historian {args.action}: {exc}", file=sys.stderr)
        return 1


def export(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from historian.service import open_backend

    start, end = _time(args.start), _time(args.end)
    if end <= start:
        print("scada historian export: --end must be after --start", file=sys.stderr)
        return 2
    backend = open_backend(args.store)
    try:
        known = backend.tags()
        names = sorted({n for pat in args.tag for n in known if fnmatch.fnmatchcase(n, pat)})
        if not names:
            print(f"scada historian export: no stored tag matches {args.tag}", file=sys.stderr)
            return 1
        step = max(1, int(args.slice_hours * 3600 * NS))
        slices = [(a, min(end, a + step)) for a in range(start, end, step)]
        out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
        rows = 0
        try:
            w = csv.writer(out)
            w.writerow(["tag", "time_utc", "ts_ns", "value", "quality"])
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TimeRemainingColumn(), transient=False, console=_stderr_console()) as progress:
                task = progress.add_task("export", total=len(names) * len(slices))
                from scada.quality import Quality

                for name in names:
                    progress.update(task, description=f"export {name}")
                    for a, b in slices:
                        s = backend.raw(name, a, b)
                        for i, (t, v, q) in enumerate(zip(s.ts.tolist(), s.value.tolist(), s.quality.tolist(),
                                                          strict=True)):
                            text = s.text[i] if s.text else None
                            iso = dt.datetime.fromtimestamp(t / 1e9, dt.UTC).isoformat(timespec="milliseconds")
                            val = text if text is not None else ("" if math.isnan(v) else repr(v))
                            w.writerow([name, iso, t, val, Quality(q).label])
                        rows += len(s)
                        progress.advance(task)
        finally:
            if args.out:
                out.close()
        print(f"exported {rows} values of {len(names)} tags", file=sys.stderr)
        return 0
    finally:
        backend.close()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def energy(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from historian.energy import Baseline, energy_report
    from historian.service import open_backend

    config = _load(args.tags, args.alarms)
    backend = open_backend(args.store)
    try:
        rows = energy_report(config, backend, dt.date.fromisoformat(args.night), args.nights,
                             baseline=Baseline(watts_per_luminaire=args.watts, hours_per_night=args.hours),
                             target_percent=args.target)
    finally:
        backend.close()
    table = Table(title=f"Lighting energy per commune per night (target {args.target:.0f} % saving)")
    for col in ("night", "commune", "cabinets", "luminaires", "kWh", "baseline kWh", "saving %", "target", "no data"):
        table.add_column(col, justify="right" if col not in ("night", "commune") else "left")
    for r in rows:
        table.add_row(r.night.isoformat(), r.commune, str(r.cabinets), str(r.luminaires), f"{r.kwh:.1f}",
                      f"{r.baseline_kwh:.1f}", f"{r.saving_percent:.1f}", "met" if r.meets_target else "NOT met",
                      str(r.missing))
    Console().print(table)
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["night", "commune", "cabinets", "luminaires", "kwh", "baseline_kwh", "saving_percent",
                        "meets_target", "missing"])
            for r in rows:
                w.writerow([r.night.isoformat(), r.commune, r.cabinets, r.luminaires, f"{r.kwh:.3f}",
                            f"{r.baseline_kwh:.3f}", f"{r.saving_percent:.2f}", int(r.meets_target), r.missing])
    return 0


def grafana(args: argparse.Namespace) -> int:
    from historian.grafana import datasource_yaml, write_dashboard

    config = _load(args.tags, args.alarms)
    d = write_dashboard(config, str(args.out), datasource_uid=args.datasource_uid, measurement=args.measurement)
    print(f"wrote {args.out} ({len(d['panels'])} panels)", file=sys.stderr)
    if args.datasource_out:
        args.datasource_out.write_text(datasource_yaml(args.influx_url, args.database, args.datasource_uid))
        print(f"wrote {args.datasource_out}", file=sys.stderr)
    return 0
