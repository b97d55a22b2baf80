"""Journal view model: the API's filters, table columns and CSV export (pure).

``GET /api/v1/journal`` takes since, until (ISO 8601), equipment, commune, service, priority, state,
text, user, limit, offset; :meth:`JournalFilter.params` builds exactly those. Entries are whatever
the journal returns (dicts); :func:`columns` puts the useful ones first and keeps the rest.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from scada import csvsafe

PARIS = ZoneInfo("Europe/Paris")
PREFERRED = ("time", "time_utc", "ts_ms", "event", "priority", "state", "prev_state", "equipment", "commune", "area",
             "service", "message", "value", "quality", "user", "comment", "detail", "flags", "alarm", "tag", "id")
TIME_KEYS = ("ts_ms", "time_ms", "t_ms")


@dataclass(slots=True)
class JournalFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    equipment: str = ""
    commune: str = ""
    service: str = ""
    priority: str = ""  # "1", "1,2", "diagnostic"
    state: str = ""
    text: str = ""
    user: str = ""
    limit: int = 500
    offset: int = 0

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit, "offset": self.offset}
        for key in ("equipment", "commune", "service", "priority", "state", "text", "user"):
            v = str(getattr(self, key)).strip()
            if v:
                out[key] = v
        for key in ("since", "until"):
            t = getattr(self, key)
            if t is not None:
                if t.tzinfo is None:
                    t = t.replace(tzinfo=PARIS)
                out[key] = t.astimezone(dt.UTC).isoformat()
        return out


def columns(entries: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for e in entries[:200]:
        for k in e:
            seen.setdefault(k, None)
    first = [k for k in PREFERRED if k in seen]
    return first + [k for k in seen if k not in first]


def local_time(ms: int | float) -> str:
    t = dt.datetime.fromtimestamp(float(ms) / 1000.0, tz=dt.UTC).astimezone(PARIS)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def cell(entry: dict[str, Any], column: str) -> str:
    v = entry.get(column)
    if v is None:
        return ""
    if column in TIME_KEYS and isinstance(v, (int, float)):
        return local_time(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "|".join(str(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def to_csv(entries: Iterable[dict[str, Any]], cols: Sequence[str]) -> str:
    """CSV (RFC 4180) of the entries with the given columns; times in Europe/Paris."""
    buf = io.StringIO()
    w = csvsafe.writer(buf, lineterminator="\n")  # user text (comments, reasons): no formulas
    w.writerow(cols)
    for e in entries:
        w.writerow([cell(e, c) for c in cols])
    return buf.getvalue()
