"""Print and export of the alarm list: CSV (spreadsheet-safe), PDF, or a printer.

    AlarmList rows shown (filters, sort, area) ──► rows() ──┬─► write_csv   scada.csvsafe: no formulas
                                                            └─► document()  an HTML table ─┬─► write_pdf  (QPdfWriter)
                                                                                           └─► print_list (QPrinter)
    columns: the list's, local time labelled with its zone, and time_utc (UTC only in exports, its own column)

The CSV's header keeps stable English column keys (a spreadsheet or a script reads them; the local time's
names its zone, ``since (Europe/Paris)``); the cells read as on screen, in the console's language. The printed
and PDF document is for people: its titles are translated too.

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
from hmi.style import domain_text, priority_text
from scada import csvsafe
from scada.format import site_zone
from scada.i18n import N_, _

KEYS = ("priority", "state", "since", "time_utc", "equipment", "commune", "service", "message", "flags", "alarm", "tag")
#: the printed document's column titles (English msgids)
TITLES = {"priority": N_("priority"), "state": N_("state"), "since": N_("since"), "time_utc": N_("time (UTC)"),
          "equipment": N_("equipment"), "commune": N_("commune"), "service": N_("service"), "message": N_("message"),
          "flags": N_("flags"), "alarm": N_("alarm"), "tag": N_("tag")}


def header() -> list[str]:
    """The CSV's column keys; the local time's names the site's zone."""
    return [f"since ({site_zone().key})" if k == "since" else k for k in KEYS]


def rows(alarms: Sequence[Alarm]) -> list[list[str]]:
    out = []
    for a in alarms:
        t = a.since_ms or a.ts_ms
        utc = dt.datetime.fromtimestamp(t / 1000.0, tz=dt.UTC).isoformat() if t else ""
        out.append([priority_text(a.priority), _(STATE_TEXT[a.state]) if a.state in STATE_TEXT else a.state,
                    local_time(t) if t else "", utc, a.equipment, a.commune,
                    domain_text(a.service) if a.service else "", a.message, a.flag_text, a.id, a.tag])
    return out


def write_csv(path: Path, alarms: Sequence[Alarm]) -> Path:
    """The alarms as CSV; every text cell through :mod:`scada.csvsafe` (a message is never a formula)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csvsafe.writer(f)
        w.writerow(header())
        w.writerows(rows(alarms))
    return path


def document(alarms: Sequence[Alarm], heading: str) -> QTextDocument:
    """The list as a table with a heading (what is printed and written to PDF)."""
    now = dt.datetime.now(dt.UTC).timestamp() * 1000
    head = "".join(f"<th align='left'>{html.escape(_(TITLES[k]))}</th>" for k in KEYS[:-2])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r[:-2]) + "</tr>" for r in rows(alarms))
    doc = QTextDocument()
    printed = _("printed {time} ({zone}) · {n} alarm(s)").format(time=local_time(now), zone=site_zone().key,
                                                                 n=len(alarms))
    doc.setHtml(f"<h3>{html.escape(heading)}</h3><p>{html.escape(printed)}</p>"
                f"<table border='1' cellspacing='0' cellpadding='3' width='100%'><tr>{head}</tr>{body}</table>")
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
