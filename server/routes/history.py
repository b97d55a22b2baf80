"""Trends from the historian: raw points, aggregates per interval, or decimated for a chart's width.

    GET /history/raw         ?tag=&start=&end=&limit=
    GET /history/aggregate   ?tag=&start=&end=&interval_s=&functions=min,max,avg      (≤ 100,000 intervals)
    GET /history/decimated   ?tag=&start=&end=&pixels=

Every route shares one path (:func:`history`): historian up (else 503), tag configured (else 404), range
checked (default: the last hour; both ends within 1970..2100 UTC, else 422: the stores keep epoch
nanoseconds in 64 bits, and a year-1 or year-9999 query must be refused, not overflow), the read run off
the event loop. Where the raw data has expired, the answer says so (``source``, ``resolution_s``,
``raw_from_ms``): no values are invented.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query

from scada.errors import Refusal, Refused
from server.routes.deps import PREFIX, Reader, ServerDep, ms, require, time_ns
from server.routes.errors import ApiError
from server.routes.models import HistoryOut
from server.services import HistorianService

if TYPE_CHECKING:
    from server.app import ScadaServer

router = APIRouter(prefix=PREFIX, tags=["history"])

FUNCTIONS = ("min", "max", "avg", "last", "count", "twa", "first")
#: The times a history query may name: [1970-01-01, 2100-01-01) UTC, well inside int64 nanoseconds.
EARLIEST_NS, LATEST_NS = 0, int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * 10**9
ALLOWED = "1970-01-01T00:00:00Z .. 2100-01-01T00:00:00Z"


def _range(server: ScadaServer, tag: str, start: datetime | None, end: datetime | None,
           what: str) -> tuple[int, int]:
    end_ns = time_ns(end, time.time_ns(), what)
    start_ns = time_ns(start, end_ns - 3600 * 10**9, what)
    for label, ns, given in (("start", start_ns, start), ("end", end_ns, end)):
        if not EARLIEST_NS <= ns <= LATEST_NS:
            raise Refused(what, f"{label} must be within {ALLOWED}, got {given.isoformat() if given else ns}",
                          Refusal.INVALID)
    if start_ns >= end_ns:
        raise Refused(what, "start must be before end", Refusal.INVALID)
    if tag not in server.tagdb.index:
        raise Refused(what, f"no tag {tag!r} in the configuration", Refusal.NOT_FOUND)
    return start_ns, end_ns


async def history(server: ScadaServer, what: str, tag: str, start: datetime | None, end: datetime | None,
                  read: Callable[[HistorianService, int, int], Any],
                  check: Callable[[int, int], None] | None = None) -> HistoryOut:
    """The path every history route shares: historian up, tag and range checked, ``read(historian, start_ns,
    end_ns)`` run off the event loop."""
    svc = require(server, server.historian, "historian", what)
    s, e = _range(server, tag, start, end, what)
    if check is not None:
        check(s, e)
    got = await asyncio.to_thread(read, svc, s, e)
    if isinstance(got, dict):  # points with their provenance (aggregate, decimated)
        return HistoryOut(tag=tag, start_ms=ms(s), end_ms=ms(e), **got)
    return HistoryOut(tag=tag, start_ms=ms(s), end_ms=ms(e), points=got)


Tag = Annotated[str, Query(min_length=1, max_length=300)]
Start = Annotated[datetime | None, Query(description="ISO 8601; default end - 1 h")]
End = Annotated[datetime | None, Query(description="ISO 8601; default now")]


@router.get("/history/raw", response_model=HistoryOut)
async def history_raw(session: Reader, server: ServerDep, tag: Tag, start: Start = None, end: End = None,
                      limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> HistoryOut:
    return await history(server, f"raw history of {tag!r}", tag, start, end,
                         lambda svc, s, e: svc.raw(tag, s, e, limit))


@router.get("/history/aggregate", response_model=HistoryOut)
async def history_aggregate(session: Reader, server: ServerDep, tag: Tag, start: Start = None, end: End = None,
                            interval_s: Annotated[float, Query(gt=0, le=366 * 86400)] = 60.0,
                            functions: Annotated[str, Query(max_length=100, description="comma list of min, "
                                                 "max, avg, last, count, twa")] = "min,max,avg") -> HistoryOut:
    what = f"aggregated history of {tag!r}"
    fns = [f.strip() for f in functions.split(",") if f.strip()]
    bad = [f for f in fns if f not in FUNCTIONS]
    if bad or not fns:
        raise Refused(what, f"functions must be among {', '.join(FUNCTIONS)}, got {bad}", Refusal.INVALID)

    def not_too_many(s: int, e: int) -> None:
        if (e - s) / 1e9 / interval_s > 100_000:
            raise ApiError(422, what, "more than 100,000 intervals: widen interval_s", "too_many_points")

    return await history(server, what, tag, start, end,
                         lambda svc, s, e: svc.aggregate(tag, s, e, interval_s, fns), not_too_many)


@router.get("/history/decimated", response_model=HistoryOut)
async def history_decimated(session: Reader, server: ServerDep, tag: Tag, start: Start = None, end: End = None,
                            pixels: Annotated[int, Query(ge=1, le=20_000)] = 2000) -> HistoryOut:
    return await history(server, f"decimated history of {tag!r}", tag, start, end,
                         lambda svc, s, e: svc.decimated(tag, s, e, pixels))
