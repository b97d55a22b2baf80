"""Citizen reports: the intake channels' API and the reference a reporter follows.

    POST /reports          X-Intake-Token: <channel token> (intake.yaml)  {category, text?, lat?, lon?, address?,
                           contact?: {name?, phone?, email?}, idempotency_key?} → {reference, status, located,
                           absorbed}; 401 unknown token, 429 (Retry-After) over the channel's rate
    POST /reports/{ref}/photos   X-Intake-Token: the channel that filed the report; the body is the photo (JPEG or
                           PNG): checked and re-encoded without its metadata (EXIF GPS...) as the crews' photos
                           are, kept with the report's order, a note names it → {order, photo}; 404 for another
                           channel's report, 415 not an image, 429 over the channel's rate
    GET  /reports/{ref}    no login: the reference is the key → {reference, category, received_ms, status,
                           updated_ms} (status: received, in_progress, repaired, closed, not_located)
    GET  /reports          ?order=&not_located=&limit=&offset=  the reports for the operators: channel,
                           category, text, position, equipment, order — never the reporter's contact data
                                                                                                workorder.read

The first three are the channels' routes (:data:`channel_router`): the main API serves them, and so does the
intake's own listener when the settings give ``intake.listen`` (server.components.intake_http: its own thread,
event loop and uvicorn, so a report is answered whatever the main loop is doing). The list is the operators'
(a login session): the main API's only.

The contact data go into contacts.sqlite (scada.workorders.intake) and no route reads that file. The
channel's token is not a session: these routes are outside the user login, and nothing of the body is
logged or audited (the report row is its own record; see the module of the intake for the retention).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time
import asyncio
import math
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, Field

from scada.errors import Refusal, Refused
from scada.i18n import N_, _
from scada.workorders.intake import Channel, Contact, Intake, Report
from scada.workorders.photos import MAX_BYTES, attach
from server.auth import Session
from server.routes.deps import PREFIX, ServerDep, need
from server.routes.errors import ApiError
from server.routes.models import Strict
from server.routes.photos import IMAGE_BODY, photo_store

if TYPE_CHECKING:
    from server.app import ScadaServer

#: what an intake channel calls (token, not a login): on the main API and on the intake's own listener
channel_router = APIRouter(prefix=PREFIX, tags=["reports"])
router = APIRouter(tags=["reports"])  # the channels' routes (with their prefix), then the operators' list

Category = Annotated[str, Field(pattern=r"^(lamp_out|lamp_on_by_day|bollard_stuck|panel_dark|signal_fault|other)$")]
Ref = Annotated[str, Path(min_length=5, max_length=20, pattern=r"^R-[0-9A-Z-]+$")]


SUBMIT_DOC = ("A citizen report from an intake channel (its token in X-Intake-Token): located on the nearest "
              "equipment of its category, absorbed by the equipment's open work order or opening one. The answer is "
              "the reference the reporter can follow.")
PHOTO_DOC = (f"A citizen's photo of its report, from the channel that filed it (X-Intake-Token). The body is the "
             f"photo, JPEG or PNG by its bytes, at most {MAX_BYTES >> 20} MiB and the server's body limit "
             f"(http.max_body_by_prefix for /api/v1/reports); re-encoded without any metadata (EXIF with its GPS "
             f"position, XMP, comments) and kept with the report's work order, whose journal names it (user "
             f"citizen:<channel>). The same photo again is kept once.")


class ContactIn(Strict):
    name: Annotated[str | None, Field(None, max_length=200)]
    phone: Annotated[str | None, Field(None, max_length=40)]
    email: Annotated[str | None, Field(None, max_length=200)]


class ReportIn(Strict):
    category: Category
    text: Annotated[str, Field(max_length=2000)] = ""
    lat: Annotated[float | None, Field(None, ge=-90, le=90)]
    lon: Annotated[float | None, Field(None, ge=-180, le=180)]
    address: Annotated[str | None, Field(None, max_length=300)]
    contact: ContactIn | None = None
    idempotency_key: Annotated[str | None, Field(None, min_length=8, max_length=100)]


class ReceiptOut(BaseModel):
    reference: str
    status: str
    located: bool = Field(description="matched to an equipment (else an operator locates it)")
    absorbed: bool = Field(description="an order already open for that equipment took the report")


class ReportStatusOut(BaseModel):
    reference: str
    category: str
    received_ms: int
    status: str = Field(description="received, in_progress, repaired, closed or not_located")
    updated_ms: int


class ReportOut(BaseModel):
    ref: str
    channel: str
    category: str
    text: str
    lat: float | None
    lon: float | None
    address: str | None
    equipment: str | None
    distance_m: float | None
    order_id: str | None
    absorbed: bool
    created_ms: int


class ReportList(BaseModel):
    total: int
    reports: list[ReportOut]


def intake_of(server: "ScadaServer", what: str) -> Intake:
    comp: Any = server.components.get("workorders")
    intake: Intake | None = getattr(comp, "intake", None)
    if intake is None:
        raise Refused(what, N_("citizen intake not configured (no intake.yaml beside tags.yaml)"), Refusal.UNAVAILABLE)
    return intake


def _admitted(intake: Intake, token: str | None, what: str) -> Channel:
    """The channel of the token, within its rate (401 unknown token, 429 with Retry-After over the rate)."""
    channel = intake.channel(token)
    if channel is None:
        raise ApiError(401, what, N_("unknown intake token"), "unauthorized")
    wait = intake.admit(channel)
    if wait > 0:
        seconds = math.ceil(wait)
        raise ApiError(429, what, _("channel {channel} is over its rate: retry in {seconds} s").format(
            channel=channel.name, seconds=seconds), "rate_limited", headers={"Retry-After": str(seconds)})
    return channel


@channel_router.post("/reports", response_model=ReceiptOut, description=SUBMIT_DOC)
async def report_submit(body: ReportIn, server: ServerDep,
                        x_intake_token: Annotated[str | None, Header(max_length=200)] = None) -> ReceiptOut:
    what = "file a citizen report"
    intake = intake_of(server, what)
    channel = _admitted(intake, x_intake_token, what)
    c = body.contact
    report = Report(body.category, body.text, body.lat, body.lon, body.address,
                    Contact(c.name, c.phone, c.email) if c is not None else Contact())
    # the intake's own writer thread (group commit), not the loop's default pool: see scada.workorders.intake
    receipt = await asyncio.wrap_future(intake.enqueue(channel, report, time.time_ns() // 1_000_000,
                                                       body.idempotency_key))
    return ReceiptOut(**receipt.as_dict())


class CitizenPhotoOut(BaseModel):
    order: str = Field(description="the work order the photo went to (the one the report joined)")
    name: str
    media_type: str
    size: int
    width: int
    height: int


@channel_router.post("/reports/{ref}/photos", response_model=CitizenPhotoOut, openapi_extra=IMAGE_BODY,
                     description=PHOTO_DOC)
async def report_photo(ref: Ref, request: Request, server: ServerDep,
                       x_intake_token: Annotated[str | None, Header(max_length=200)] = None) -> CitizenPhotoOut:
    what = f"attach a photo to report {ref}"
    intake = intake_of(server, what)
    channel = _admitted(intake, x_intake_token, what)
    order_id = await asyncio.to_thread(intake.order_of, ref, channel)
    body = await request.body()  # bounded by the body-limit middleware before it got here
    try:
        # decoding and re-encoding take a while: a worker of the default pool, never the reports' writer thread
        _order, photo = await asyncio.to_thread(attach, intake.orders, photo_store(server), order_id, body,
                                                f"citizen:{channel.name}", time.time_ns() // 1_000_000)
    except Refused as exc:
        if exc.code is Refusal.UNSUPPORTED:
            raise ApiError(415, exc.what, exc.why, "unsupported_media_type") from None
        raise
    return CitizenPhotoOut(order=order_id, **photo.as_dict())


@channel_router.get("/reports/{ref}", response_model=ReportStatusOut,
                    description="Follow a report by its reference (no login): its status, nothing else.")
async def report_follow(ref: Ref, server: ServerDep) -> ReportStatusOut:
    intake = intake_of(server, f"follow report {ref}")
    return ReportStatusOut(**await asyncio.to_thread(intake.follow, ref))


router.include_router(channel_router)


@router.get(f"{PREFIX}/reports", response_model=ReportList)
async def report_list(session: Annotated[Session, Depends(need("workorder.read"))], server: ServerDep,
                      order: Annotated[str | None, Query(max_length=40)] = None,
                      not_located: Annotated[bool, Query(description="only the reports no equipment "
                                                                     "matched")] = False,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
                      offset: Annotated[int, Query(ge=0)] = 0) -> ReportList:
    intake = intake_of(server, "list citizen reports")
    total, rows = await asyncio.to_thread(intake.reports, order=order, not_located=not_located, limit=limit,
                                          offset=offset)
    return ReportList(total=total, reports=[ReportOut(**r) for r in rows])
