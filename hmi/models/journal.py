"""Journal view model: the API's filters, table columns and CSV export (pure).

``GET /api/v1/journal`` takes since, until (ISO 8601), equipment, commune, service, priority, state,
text, user, limit, offset; :meth:`JournalFilter.params` builds exactly those. Entries are whatever
the journal returns (dicts); :func:`columns` puts the useful ones first and keeps the rest.

One clock: every time shown or exported here is in the site's time zone through :mod:`scada.format`
(``site_zone()``, set from the server's ``GET /config`` after the login; the status bar names it once);
a picker's naive time is read in that zone too.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hmi.style import domain_text
from scada import csvsafe
from scada.format import boolean, number, site_zone, timestamp
from scada.i18n import N_, _

PREFERRED = ("time", "ts_ms", "time_utc", "event", "priority", "state", "prev_state", "equipment", "commune", "area",
             "service", "message", "value", "quality", "user", "comment", "detail", "flags", "alarm", "tag", "id")
TIME_KEYS = ("ts_ms", "time_ms", "t_ms", "until_ms")
#: columns the table leaves out (the CSV export keeps them): UTC only in exports, raw codes, the raw value
#: when the value for people (value_text) is there
NOT_SHOWN = frozenset({"time_utc", "id", "rule", "value"})
#: column titles (English msgids, shown through _()); a key not listed is its own title
TITLES = {"time": N_("time"), "ts_ms": N_("time"), "time_utc": N_("time (UTC)"), "event": N_("event"),
          "outcome": N_("outcome"), "priority": N_("priority"), "state": N_("state"),
          "prev_state": N_("previous state"), "equipment": N_("equipment"), "commune": N_("commune"),
          "area": N_("area"), "service": N_("service"), "message": N_("message"), "value": N_("value"),
          "value_text": N_("value"), "quality": N_("quality"), "user": N_("user"), "comment": N_("comment"),
          "detail": N_("detail"), "flags": N_("flags"), "alarm": N_("alarm"), "tag": N_("tag"), "id": N_("id"),
          "rule": N_("rule"), "until_ms": N_("until"),
          # a tag's definition (GET /tags/{name}: the diagnostics display)
          "name": N_("name"), "source_ms": N_("source time"), "receive_ms": N_("receive time"), "units": N_("units"),
          "reason": N_("reason"), "device": N_("device"), "address": N_("address"), "type": N_("type"),
          "access": N_("access"), "description": N_("description"), "enum": N_("labels"),
          "deadband": N_("deadband")}
#: the codes the server sends (the journal's events, states, outcomes, flags; qualities; statuses) in words
WORDS = {
    "condition_on": N_("condition present"), "condition_off": N_("condition gone"), "acknowledge": N_("acknowledged"),
    "reset": N_("reset"), "shelve": N_("shelved"), "shelve_one_shot": N_("shelved (one-shot)"),
    "unshelve": N_("unshelved"), "shelve_expired": N_("shelving expired"), "suppress": N_("suppressed"),
    "unsuppress": N_("unsuppressed"), "design_suppress": N_("suppressed by design"),
    "design_release": N_("released by design"), "remove_from_service": N_("out of service"),
    "return_to_service": N_("returned to service"), "flood_begin": N_("alarm flood begins"),
    "flood_end": N_("alarm flood ends"), "config_change": N_("configuration change"),
    "work_order": N_("work order"), "normal": N_("normal"), "unack": N_("active, unacknowledged"),
    "acked": N_("active, acknowledged"), "rtn_unack": N_("returned, unacknowledged"), "done": N_("done"),
    "refused": N_("refused"), "shelved_timed": N_("shelved"), "shelved_one_shot": N_("shelved (one-shot)"),
    "suppressed_design": N_("suppressed by design"), "suppressed_operator": N_("suppressed"),
    "out_of_service": N_("out of service"), "latched": N_("latched"), "diagnostic": N_("diagnostic"),
    "good": N_("good"), "uncertain": N_("uncertain"), "bad_comm": N_("communication lost"),
    "bad_device": N_("device fault"), "bad_config": N_("configuration fault"),
    # a server subsystem's or a device's status (GET /health)
    "ok": N_("ok"), "degraded": N_("degraded"), "unavailable": N_("unavailable"), "starting": N_("starting"),
    "down": N_("down"), "stopped": N_("stopped"), "unknown": N_("unknown"), "error": N_("error"),
    "online": N_("online"), "offline": N_("offline"), "stale": N_("stale"), "lost": N_("lost"),
    # a command's ticket, outcome and safety; a crisis plan's run (GET /commands, /crisis: failsafe)
    "awaiting_approval": N_("awaiting approval"), "selected": N_("selected"), "ready": N_("ready"),
    "executing": N_("executing"), "expired": N_("expired"), "cancelled": N_("cancelled"),
    "finished": N_("finished"), "rejected": N_("rejected"), "failed": N_("failed"),
    "not_confirmed": N_("not confirmed"), "increasing": N_("increasing"), "reducing": N_("reducing"),
    "neutral": N_("neutral"), "running": N_("running"), "partial": N_("partial"), "skipped": N_("skipped"),
    "would_send": N_("would send"), "would_run": N_("would run"), "would_refuse": N_("would refuse"),
    "dry_run": N_("dry run"), "approved": N_("approved"),
    # a user's role (scada.users.ROLES: the status bar, the "your role may not" tooltips)
    "viewer": N_("viewer"), "operator": N_("operator"), "supervisor": N_("supervisor"),
    "maintenance": N_("maintenance"), "engineer": N_("engineer"), "administrator": N_("administrator"),
    "crew": N_("field crew")}
CODED = frozenset({"event", "outcome", "state", "prev_state", "flags", "quality", "priority"})
#: columns holding a service (alarm rules' ``service:``): in words, as the alarm list shows them (hmi.style)
SERVICES = frozenset({"service"})


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
                    t = t.replace(tzinfo=site_zone())
                out[key] = t.astimezone(dt.UTC).isoformat()
        return out


def columns(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of the entries, the useful ones first (the CSV export's columns)."""
    seen: dict[str, None] = {}
    for e in entries[:200]:
        for k in e:
            seen.setdefault(k, None)
    first = [k for k in PREFERRED if k in seen]
    return first + [k for k in seen if k not in first]


def shown_columns(cols: Sequence[str]) -> list[str]:
    """The table's columns: :func:`columns` without the export-only ones (:data:`NOT_SHOWN`)."""
    return [c for c in cols if c not in NOT_SHOWN or (c == "value" and "value_text" not in cols)]


def title(column: str) -> str:
    """A column's title in the console's language."""
    return _(TITLES[column]) if column in TITLES else column


def word(code: str) -> str:
    """A journal code (``"acknowledge"``, ``"rtn_unack"``, ``"shelved_timed"``) in words, in the console's language."""
    return _(WORDS[code]) if code in WORDS else code.replace("_", " ")


def local_time(ms: int | float) -> str:
    """Epoch milliseconds (UTC) as the console shows every time: in the site's zone (scada.format)."""
    return timestamp(int(float(ms) * 1_000_000))


def cell(entry: dict[str, Any], column: str, named: Callable[[str], str] | None = None) -> str:
    """One entry's column for people: times in the site's zone, codes in words, the equipment ``named`` (the
    console's "J001 — Carrefour …") when given; the UTC column stays as the server wrote it (exports)."""
    v = entry.get(column)
    if v is None:
        return ""
    if column in TIME_KEYS and isinstance(v, (int, float)):
        return local_time(v)
    if column == "equipment" and named is not None and v:
        return named(str(v))
    if column in SERVICES and isinstance(v, str):
        return domain_text(v)
    if column in CODED and isinstance(v, str):
        return word(v)
    if column in CODED and isinstance(v, (list, tuple)):
        return ", ".join(word(str(x)) for x in v)
    if isinstance(v, bool):
        return boolean(v)
    if isinstance(v, float):
        return number(v)
    if isinstance(v, (list, tuple)):
        return "|".join(str(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def to_csv(entries: Iterable[dict[str, Any]], cols: Sequence[str]) -> str:
    """CSV (RFC 4180) of the entries with the given columns, titled and read as on screen (times in the site's
    zone, codes in words); the explicit ``time_utc`` column keeps UTC."""
    buf = io.StringIO()
    w = csvsafe.writer(buf, lineterminator="\n")  # user text (comments, reasons): no formulas
    w.writerow([title(c) for c in cols])
    for e in entries:
        w.writerow([cell(e, c) for c in cols])
    return buf.getvalue()
