"""The alarm and event journal, as the maintenance teams query it.

    GET /journal   ?since=&until=&equipment=&commune=&service=&priority=&state=&text=&user=&limit=&offset=&lang=

Times are ISO 8601 (UTC when no offset is given); the filters go to the journal's own query. Messages
read in ``lang`` (fr, en; default: the server's language): the journal keeps each message's key and
parameters, not only its text (scada.journal).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from scada.i18n import Lang
from server.routes.deps import PREFIX, Reader, ServerDep, require, time_ns
from server.routes.models import JournalPage

router = APIRouter(prefix=PREFIX, tags=["journal"])


@router.get("/journal", response_model=JournalPage)
async def journal(session: Reader, server: ServerDep,
                  since: Annotated[datetime | None, Query(description="ISO 8601, UTC if no offset")] = None,
                  until: Annotated[datetime | None, Query()] = None,
                  equipment: Annotated[str | None, Query(max_length=100)] = None,
                  commune: Annotated[str | None, Query(max_length=100)] = None,
                  service: Annotated[str | None, Query(max_length=100)] = None,
                  priority: Annotated[str | None, Query(max_length=20)] = None,
                  state: Annotated[str | None, Query(max_length=100)] = None,
                  text: Annotated[str | None, Query(max_length=200)] = None,
                  user: Annotated[str | None, Query(max_length=64)] = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                  lang: Annotated[Lang | None, Query(description="language of the messages (default: the "
                                                                 "server's, the site's lang)")] = None) -> JournalPage:
    what = "query the journal"
    svc = require(server, server.journal, "journal", what)
    filters: dict[str, Any] = {k: v for k, v in (
        ("equipment", equipment), ("commune", commune), ("service", service), ("priority", priority),
        ("state", state), ("text", text), ("user", user)) if v is not None}
    if since is not None:
        filters["since_ns"] = time_ns(since, 0, what)
    if until is not None:
        filters["until_ns"] = time_ns(until, 0, what)
    rows = await asyncio.to_thread(svc.query, filters, limit, offset, lang)
    return JournalPage(offset=offset, entries=rows)
