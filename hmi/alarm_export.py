"""Print and export of the alarm list: CSV (spreadsheet-safe), PDF, or a printer.

    AlarmList rows shown (filters, sort, area) ──► rows() ──┬─► write_csv   scada.csvsafe: no formulas
                                                            └─► document()  an HTML table ─┬─► write_pdf  (QPdfWriter)
                                                                                           └─► print_list (QPrinter)
    columns: the list's, local time labelled with its zone, and time_utc (UTC only in exports, its own column)

What is exported is what the operator sees: the list's filtered, sorted alarms, with the console's
area of responsibility and the filter named in the document's heading.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path

from PyQt6.QtCore import QMarginsF
from PyQt6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument
from PyQt6.QtPrintSupport import QPrinter

from hmi.models.alarms import STATE_TEXT, Alarm
from hmi.models.journal import local_time
from hmi.style import priority_text
from scada import csvsafe

HEADER = ("priority", "state", "since (Europe/Paris)", "time_utc", "equipment", "commune", "service", "message",
          "flags", "alarm", "tag")


def rows(alarms: Sequence[Alarm]) -> list[list[str]]:
    out = []
    for a in alarms:
        t = a.since_ms or a.ts_ms
        utc = dt.datetime.fromtimestamp(t / 1000.0, tz=dt.UTC).isoformat() if t else ""
        out.append([priority_text(a.priority), STATE_TEXT.get(a.state, a.state), local_time(t) if t else "", utc,
                    a.equipment, a.commune, a.service, a.message, a.flag_text, a.id, a.tag])
    return out


def write_csv(path: Path, alarms: Sequence[Alarm]) -> Path:
    """The alarms as CSV; every text cell through :mod:`scada.csvsafe` (a message is never a formula)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csvsafe.writer(f)
        w.writerow(HEADER)
        w.writerows(rows(alarms))
    return path


def document(alarms: Sequence[Alarm], heading: str) -> QTextDocument:
    """The list as a table with a heading (what is printed and written to PDF)."""
    now = dt.datetime.now(dt.UTC).timestamp() * 1000
    head = "".join(f"<th align='left'>{html.escape(h)}</th>" for h in HEADER[:-2])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r[:-2]) + "</tr>" for r in rows(alarms))
    doc = QTextDocument()
    doc.setHtml(f"<h3>{html.escape(heading)}</h3><p>printed {local_time(now)} (Europe/Paris) · {len(alarms)} "
                f"alarm(s)</p><table border='1' cellspacing='0' cellpadding='3' width='100%'>"
                f"<tr>{head}</tr>{body}</table>")
    return doc


def _layout() -> QPageLayout:
    return QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Landscape,
                       QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter)


def write_pdf(path: Path, alarms: Sequence[Alarm], heading: str) -> Path:
    writer = QPdfWriter(str(path))
    writer.setPageLayout(_layout())
    writer.setTitle(heading)
    writer.setCreator("city-scada operator console")
    document(alarms, heading).print(writer)  # print() lays the document out on the writer's pages
    return path


def print_list(printer: QPrinter, alarms: Sequence[Alarm], heading: str) -> None:
    """To a printer the operator chose (QPrintDialog)."""
    printer.setPageLayout(_layout())
    document(alarms, heading).print(printer)
