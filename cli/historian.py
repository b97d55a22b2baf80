"""``scada historian export | energy | grafana-dashboard``.

    scada historian export --tag 'dijon/lighting/*/power' --from 2026-11-20T00:00 --to 2026-11-21T00:00 \\
        --csv power.csv                                                          (progress bar on stderr)
    scada historian energy --night 2026-11-20 --nights 7 [--watts 150] [--target 65] [--csv out.csv]
    scada historian grafana-dashboard --out dashboard.json [--datasource-uid scada-influxdb]
        [--datasource-out datasource.yaml --influx-url http://127.0.0.1:8086 --database scada]

The store is ``--store`` (a SQLite file or folder, or an ``influxdb1://host:port/DB`` spec, see
historian.service), else ``historian/history.sqlite`` of the server's data folder, found as every
command finds it (``--data-dir``, ``$SCADA_DATA_DIR``, ``scada-data``; ``--city``: scada.datadir).
A SQLite store is opened read-only (``mode=ro``): a report never creates or changes one, and a
missing store is refused (exit 2). ``energy`` reports each row's coverage (hours recorded over the
night's length) and gives no verdict on the target below 90 %. Times without a zone are UTC;
``--start``/``--end`` and ``--out`` are the older spellings of ``--from``/``--to`` and ``--csv``.

Lazy imports here: each action loads only its own stack when it runs (the historian backends and numpy,
the city loader, rich's progress bar or table), so ``scada historian --help`` imports none of them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import math
import sys
from pathlib import Path
from typing import Any

from cli.options import add_data_dir, instance
from scada import csvsafe
from scada.datadir import DataDirError
from scada.errors import ScadaError
from scada.quality import Quality

NS = 1_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    ex = sub.add_parser("export", help="CSV export of raw values (tag globs, time range), with a progress bar")
    _store_options(ex)
    ex.add_argument("--tag", action="append", required=True, help="tag name or glob (repeatable)")
    ex.add_argument("--from", "--start", dest="start", required=True, help="ISO 8601 (UTC if no zone)")
    ex.add_argument("--to", "--end", dest="end", required=True, help="ISO 8601 (UTC if no zone)")
    ex.add_argument("--csv", "--out", dest="out", type=Path, help="CSV file (default: stdout)")
    ex.add_argument("--slice-hours", type=float, default=24.0, help="query size per step (bounded memory)")
    en = sub.add_parser("energy", help="lighting kWh per commune per night vs baseline, saving %% vs target")
    _store_options(en)
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


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="a SQLite store (file or folder) or influxdb1://host:port/DB "
                                        "(default: historian/history.sqlite of the data folder)")
    add_data_dir(parser)


#: file names of an embedded store in a folder: ``historian.service.STORE_NAME`` (what the server and
#: ``Historian.build`` write; not imported here, to keep the command light), then the name
#: ``Historian.build`` used before the two agreed
STORE_NAMES = ("history.sqlite", "historian.sqlite")


class StoreMissing(Exception):
    """The SQLite store named (or found in the data folder) does not exist."""


def open_store(args: argparse.Namespace) -> Any:
    """The historian backend to read: an InfluxDB spec as given, a SQLite store read-only (StoreMissing if
    absent: a report never creates an empty store in a live data folder)."""
    from historian.service import open_backend
    from historian.sqlite_backend import SqliteBackend

    spec = args.store or str(instance(args) / "historian")
    if "://" in spec:
        return open_backend(spec)
    path = Path(spec.removeprefix("sqlite:"))
    if path.is_dir() or not args.store:
        path = next((path / n for n in STORE_NAMES if (path / n).is_file()), path / STORE_NAMES[0])
    if not path.is_file():
        how = "" if args.store else " (give --store, or --data-dir/--city of the server that recorded it)"
        raise StoreMissing(f"no historian store at {path}{how}")
    return SqliteBackend(path, readonly=True)


def _time(text: str) -> int:
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1e6) * 1000


def _load(tags: Path, alarms: Path) -> Any:
    from scada.config import loader

    return loader.load_city(str(tags), str(alarms) if alarms.exists() else None)


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "export":
            return export(args)
        if args.action == "energy":
            return energy(args)
        return grafana(args)
    except (StoreMissing, DataDirError) as exc:
        print(f"scada historian {args.action}: {exc}", file=sys.stderr)
        return 2
    except ScadaError as exc:
        print(f"scada historian {args.action}: {exc}", file=sys.stderr)
        return 1


def export(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    start, end = _time(args.start), _time(args.end)
    if end <= start:
        print("scada historian export: --to must be after --from", file=sys.stderr)
        return 2
    backend = open_store(args)
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
            w = csvsafe.writer(out)  # a panel message is operator text: no formulas
            w.writerow(["tag", "time_utc", "ts_ns", "value", "quality"])
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TimeRemainingColumn(), transient=False, console=_stderr_console()) as progress:
                task = progress.add_task("export", total=len(names) * len(slices))
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

    from historian.energy import MIN_COVERAGE, Baseline, energy_report

    backend = open_store(args)  # refused first: no point loading the city for a store that is not there
    config = _load(args.tags, args.alarms)
    try:
        rows = energy_report(config, backend, dt.date.fromisoformat(args.night), args.nights,
                             baseline=Baseline(watts_per_luminaire=args.watts, hours_per_night=args.hours),
                             target_percent=args.target)
    finally:
        backend.close()
    table = Table(title=f"Lighting energy per commune per night (target {args.target:.0f} % saving)")
    columns = ("night", "commune", "cabinets", "luminaires", "kWh", "baseline kWh", "saving %", "target", "no data",
               "data h / night h")
    for col in columns:
        table.add_column(col, justify="right" if col not in ("night", "commune", "target") else "left")
    for r in rows:
        verdict = "no verdict" if r.meets_target is None else "met" if r.meets_target else "NOT met"
        table.add_row(r.night.isoformat(), r.commune, str(r.cabinets), str(r.luminaires), f"{r.kwh:.1f}",
                      f"{r.baseline_kwh:.1f}", f"{r.saving_percent:.1f}", verdict, str(r.missing),
                      f"{r.hours_of_data:.1f} / {r.night_hours:.0f} ({100 * r.coverage:.0f} %)")
    Console(width=max(Console().width, 140)).print(table)
    short = [r for r in rows if r.coverage < MIN_COVERAGE]
    if short:
        worst = min(short, key=lambda r: r.coverage)
        print(f"no verdict on {len(short)} row(s): coverage below {100 * MIN_COVERAGE:.0f} % of the night "
              f"(lowest {100 * worst.coverage:.1f} %: {worst.hours_of_data:.2f} h of data over "
              f"{worst.night_hours:.0f} h, {worst.commune} {worst.night.isoformat()})", file=sys.stderr)
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csvsafe.writer(f)
            w.writerow(["night", "commune", "cabinets", "luminaires", "kwh", "baseline_kwh", "saving_percent",
                        "meets_target", "missing", "hours_of_data", "night_hours", "coverage"])
            for r in rows:
                w.writerow([r.night.isoformat(), r.commune, r.cabinets, r.luminaires, f"{r.kwh:.3f}",
                            f"{r.baseline_kwh:.3f}", f"{r.saving_percent:.2f}",
                            "" if r.meets_target is None else int(r.meets_target), r.missing,
                            f"{r.hours_of_data:.3f}", f"{r.night_hours:.0f}", f"{r.coverage:.4f}"])
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
