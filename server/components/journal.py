"""The alarm journal as the API reads it (JournalService over scada.journal.Journal).

    GET /journal ?since ?until ?equipment ?commune ?service ?area ?priority ?state ?text ?user
        → JournalQuery (SQLite, indexed) → rows as JSON (journal_row_dict)
    POST /config/reload → config_change(): every reload, applied or refused, journalled too
"""

from __future__ import annotations

import math
import time
from typing import Any

from scada.alarms.states import AlarmState, Event
from scada.errors import Refusal, Refused
from scada.i18n import get_language, localise
from scada.journal import DONE, REFUSED, Journal, JournalEntry, JournalQuery, JournalRow


def journal_row_dict(r: JournalRow, lang: str | None = None) -> dict[str, Any]:
    """One row as the API sends it; a refusal reason (``detail``) in ``lang`` (scada.i18n.localise)."""
    value = r.value
    if isinstance(value, float) and math.isnan(value):
        value = None
    pr = r.priority
    return {"id": r.id, "ts_ms": r.ts_ms, "time_utc": r.time_utc, "event": r.event.label,
            "outcome": "refused" if r.refused else "done", "alarm": r.alarm, "rule": r.rule,
            "equipment": r.equipment, "commune": r.commune, "area": r.area, "service": r.service, "tag": r.tag,
            "priority": None if pr is None else (pr if pr < 5 else "diagnostic"), "state": r.state.label,
            "prev_state": r.prev_state.label, "flags": r.flag_labels, "value": value, "value_text": r.value_text,
            "quality": r.quality.label if r.quality is not None else None, "user": r.user, "comment": r.comment,
            "detail": localise(r.detail, lang) if r.detail else r.detail, "until_ms": r.until_ms, "message": r.message}


class JournalService:
    """JournalService (server.services) over the journal the alarm component opened."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def query(self, filters: dict[str, Any], limit: int, offset: int, lang: str | None = None
              ) -> list[dict[str, Any]]:
        q: dict[str, Any] = {"limit": limit, "offset": offset}
        if "since_ns" in filters:
            q["start_ms"] = filters["since_ns"] // 1_000_000
        if "until_ns" in filters:
            q["end_ms"] = filters["until_ns"] // 1_000_000
        for key in ("equipment", "commune", "service", "area"):
            if key in filters:
                q[key] = tuple(str(filters[key]).split(","))
        try:
            if "priority" in filters:
                q["priority"] = tuple(5 if p.strip() == "diagnostic" else int(p) for p in
                                      str(filters["priority"]).split(","))
            if "state" in filters:
                q["state"] = tuple(AlarmState.parse(p) for p in str(filters["state"]).split(","))
        except (ValueError, KeyError) as exc:
            raise Refused("query the journal", f"bad priority or state filter: {exc}", Refusal.INVALID) from None
        if "text" in filters:
            q["text"] = str(filters["text"])
        if "user" in filters:
            q["user"] = str(filters["user"])
        page = self.journal.query(JournalQuery(**q), lang=lang or get_language())
        return [journal_row_dict(r, lang) for r in page.rows]

    def config_change(self, user: str, source: str, applied: bool, detail: str) -> None:
        self.journal.append([JournalEntry(time.time_ns(), Event.CONFIG_CHANGE, user=user, comment=source,
                                          detail=detail[:2000], outcome=DONE if applied else REFUSED)])

    def stats(self) -> dict[str, Any]:
        return {"rows": self.journal.count()}
