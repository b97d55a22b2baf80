"""``scada journal``: query the alarm journal (what maintenance works from).

    scada journal                                   the last 50 rows, newest first
    scada journal --equipment C0042 --from 7d       one cabinet's week
    scada journal --commune Dijon --service lighting --priority 1,2 --state unack --text mains
    scada journal --from 2026-11-01 --to 2026-12-01 --csv november.csv      (all rows, oldest first)
    scada journal --follow --service traffic        like tail -f (Ctrl-C to stop)
    scada journal --page 2                          older rows (50 per page, --limit to change)

The journal is ``journal.sqlite`` in the server's data folder, found as every command finds it
(:mod:`scada.datadir`: ``--data-dir``, else ``$SCADA_DATA_DIR``, else ``scada-data``; then ``--city``,
or the only city folder there, so the journal of ``scada run`` is found with no option), or
``--db PATH``. It is opened read-only: the server keeps writing while you read. ``--since``/``--until``
are the older spellings of ``--from``/``--to``. Times without an
offset are in the site's time zone (one clock: :func:`scada.format.site_zone`, Europe/Paris for Dijon);
``7d``, ``12h``, ``30min`` mean that long ago. Times are printed in that zone; the CSV carries UTC ISO 8601
with milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path

from cli.options import add_data_dir, instance
from scada.alarms.states import AlarmState, Event
from scada.config.units import parse_duration
from scada.datadir import DataDirError
from scada.errors import StorageError
from scada.format import site_zone
from scada.journal import Journal, JournalQuery, JournalRow

_RELATIVE = re.compile(r"^\s*\d+(\.\d+)?\s*(ms|s|sec|min|m|h|d)\s*$")


def parse_time(text: str, now: dt.datetime | None = None, tz: dt.tzinfo | None = None) -> int:
    """UTC epoch ms from ``2026-11-22``, ``2026-11-22T08:30``, ``...Z``/``+01:00``, ``7d`` (ago), ``now``; a
    time without an offset is in ``tz`` (default: the site's zone)."""
    tz = tz or site_zone()
    now = now or dt.datetime.now(dt.UTC)
    t = text.strip()
    if t == "now":
        return int(now.timestamp() * 1000)
    if t in ("today", "yesterday"):
        local = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        if t == "yesterday":
            local -= dt.timedelta(days=1)
        return int(local.timestamp() * 1000)
    if _RELATIVE.match(t):
        return int((now.timestamp() - parse_duration(t)) * 1000)
    try:
        parsed = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use 2026-11-22, 2026-11-22T08:30, 2026-11-22T07:30Z, 7d, 12h, now)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return int(parsed.timestamp() * 1000)


def journal_path(args: argparse.Namespace) -> Path:
    """``--db``, else ``journal.sqlite`` of the data folder (DataDirError when several cities could be meant)."""
    return Path(args.db) if getattr(args, "db", None) else instance(args) / "journal.sqlite"


def add_common(parser: argparse.ArgumentParser) -> None:
    """Journal location and row filters (shared with ``scada alarms kpi``)."""
    add_data_dir(parser)
    parser.add_argument("--db", help="journal file (default journal.sqlite of the data folder)")
    parser.add_argument("--from", "--since", dest="since", metavar="TIME",
                        help="from (2026-11-22, 2026-11-22T08:30, 7d, 12h, now)")
    parser.add_argument("--to", "--until", dest="until", metavar="TIME", help="to, excluded")
    parser.add_argument("--equipment", action="append", default=[], help="equipment id (repeatable)")
    parser.add_argument("--commune", action="append", default=[], help="commune (repeatable)")
    parser.add_argument("--area", action="append", default=[], help="area (repeatable)")
    parser.add_argument("--service", action="append", default=[], help="responsible service (repeatable)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--priority", help="1..4 or diagnostic; several as 1,2")
    parser.add_argument("--state", help="normal, unack, acked, rtn_unack; several as unack,rtn_unack")
    parser.add_argument("--event", help="condition_on, condition_off, acknowledge, shelve, ...; several with commas")
    parser.add_argument("--alarm", action="append", default=[], help="alarm id (rule:tag, repeatable)")
    parser.add_argument("--user", help="operator")
    parser.add_argument("--text", help="substring of the message, alarm id, comment, reason or user")
    parser.add_argument("--refused", action="store_true", help="only refused operator requests")
    parser.add_argument("--limit", type=int, default=50, help="rows per page (default 50)")
    parser.add_argument("--page", type=int, default=1, help="page number, 1 = newest")
    parser.add_argument("--total", action="store_true", help="also count every matching row")
    parser.add_argument("--csv", nargs="?", const="-", metavar="FILE",
                        help="export every matching row as CSV (to FILE, or stdout), oldest first")
    parser.add_argument("--follow", "-f", action="store_true", help="print new rows as they are written")
    parser.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    parser.add_argument("--follow-for", type=float, default=None, help=argparse.SUPPRESS)  # tests: stop after N s


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def build_query(args: argparse.Namespace) -> JournalQuery:
    priorities = [5 if p == "diagnostic" else int(p) for p in _split(getattr(args, "priority", None))]
    for p in priorities:
        if not 1 <= p <= 5:
            raise argparse.ArgumentTypeError(f"--priority must be 1..4 or diagnostic, got {p}")
    try:
        states = [AlarmState.parse(s) for s in _split(getattr(args, "state", None))]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"--state must be among {', '.join(s.label for s in AlarmState)}, "
                                         f"got {exc.args[0].lower()!r}") from None
    try:
        events = [Event.parse(e) for e in _split(getattr(args, "event", None))]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"--event must be among {', '.join(e.label for e in Event)}, "
                                         f"got {exc.args[0].lower()!r}") from None
    return JournalQuery(
        start_ms=parse_time(args.since) if args.since else None,
        end_ms=parse_time(args.until) if args.until else None,
        equipment=args.equipment, commune=args.commune, area=args.area, service=args.service,
        priority=priorities, state=states, event=events, alarm=getattr(args, "alarm", []),
        user=getattr(args, "user", None), text=getattr(args, "text", None),
        refused=True if getattr(args, "refused", False) else None,
        limit=max(1, getattr(args, "limit", 50)), offset=max(0, getattr(args, "page", 1) - 1) * max(1, getattr(
            args, "limit", 50)),
    )


def format_row(r: JournalRow, tz: dt.tzinfo | None = None) -> str:
    """One journal row on one line, its time in ``tz`` (default: the site's zone)."""
    local = dt.datetime.fromtimestamp(r.ts_ms / 1000, tz=dt.UTC).astimezone(tz or site_zone())
    when = local.strftime("%Y-%m-%d %H:%M:%S.") + f"{r.ts_ms % 1000:03d}"
    prio = "" if r.priority is None else ("D" if r.priority >= 5 else f"P{r.priority}")
    what = r.event.label + (" REFUSED" if r.refused else "")
    state = f"{r.prev_state.label}→{r.state.label}" if r.prev_state is not r.state else r.state.label
    flags = f" [{','.join(r.flag_labels)}]" if r.flags else ""
    who = f" by {r.user}" if r.user else ""
    extra = "".join(f" — {x}" for x in (r.detail, r.comment) if x and x != r.message)
    where = f"{r.equipment or '-'} {r.commune or ''}".strip()
    return f"{when} {prio:<3} {what:<22} {state:<18} {where:<28} {r.message}{flags}{who}{extra}"


def main(args: argparse.Namespace) -> int:
    try:
        path = journal_path(args)
        query = build_query(args)
    except (argparse.ArgumentTypeError, DataDirError) as exc:
        print(f"scada journal: {exc}", file=sys.stderr)
        return 2
    try:
        journal = Journal(path, readonly=True)
    except StorageError as exc:
        print(f"scada journal: {exc}", file=sys.stderr)
        return 1
    with journal:
        if args.csv is not None:
            if args.csv == "-":
                n = journal.export_csv(query, sys.stdout)
            else:
                with open(args.csv, "w", newline="", encoding="utf-8") as out:
                    n = journal.export_csv(query, out)
                print(f"wrote {n} rows to {args.csv}", file=sys.stderr)
            return 0
        if args.follow:
            return _follow(journal, query, args)
        page = journal.query(query, with_total=args.total)
        for r in reversed(page.rows):  # oldest of the page first, like a log
            print(format_row(r))
        shown = f"{len(page.rows)} row(s), page {args.page}"
        if page.total is not None:
            shown += f" of {max(1, -(-page.total // query.limit))} ({page.total} matching)"
        if page.next_cursor is not None:
            shown += f"; older rows: --page {args.page + 1}"
        print(shown, file=sys.stderr)
    return 0


def _follow(journal: Journal, query: JournalQuery, args: argparse.Namespace) -> int:
    recent = journal.query(JournalQuery(**{**{f: getattr(query, f) for f in JournalQuery.__dataclass_fields__},
                                           "limit": 10, "offset": 0}))
    for r in reversed(recent.rows):
        print(format_row(r), flush=True)
    last = journal.last_id()
    deadline = None if args.follow_for is None else time.monotonic() + args.follow_for
    print(f"following {journal.path} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    while deadline is None or time.monotonic() < deadline:
        top = journal.last_id()
        if top > last:
            for r in journal.follow(query, last, upto_id=top, limit=None):
                print(format_row(r), flush=True)
            last = top
        else:
            time.sleep(args.interval)
    return 0
