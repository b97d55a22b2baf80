"""Citizen reports: the intake channels' API and the reference a reporter follows.

    POST /reports          X-Intake-Token: <channel token> (intake.yaml)  {category, text?, lat?, lon?, address?,
                           contact?: {name?, phone?, email?}, idempotency_key?} → {reference, status, located,
                           absorbed}; 401 unknown token, 429 (Retry-After) over the channel's rate
    GET  /reports/{ref}    no login: the reference is the key → {reference, category, received_ms, status,
                           updated_ms} (status: received, in_progress, repaired, closed, not_located)
    GET  /reports          ?order=&not_located=&limit=&offset=  the reports for the operators: channel,
                           category, text, position, equipment, order — never the reporter's contact data
                                                                                                workorder.read

The contact data go into contacts.sqlite (scada.workorders.intake) and no route reads that file. The
channel's token is not a session: these routes are outside the user login, and nothing of the body is
logged or audited (the report row is its own record; see the module of the intake for the retention).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time
import asyncio
import math
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import BaseModel, Field

from scada.errors import Refusal, Refused
from scada.workorders.intake import Contact, Intake, Report
from server.auth import Session
from server.routes.deps import PREFIX, ServerDep, need
from server.routes.errors import ApiError
from server.routes.models import Strict

if TYPE_CHECKING:
    from server.app import ScadaServer

router = APIRouter(prefix=PREFIX, tags=["reports"])

Category = Annotated[str, Field(pattern=r"^(lamp_out|lamp_on_by_day|bollard_stuck|panel_dark|signal_fault|other)$")]
Ref = Annotated[str, Path(min_length=5, max_length=20, pattern=r"^R-[0-9A-Z-]+$")]


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
        raise Refused(what, "citizen intake not configured (no intake.yaml beside tags.yaml)", Refusal.UNAVAILABLE)
    return intake


@router.post("/reports", response_model=ReceiptOut,
             description="A citizen report from an intake channel (its token in X-Intake-Token): located on the "
                         "nearest equipment of its category, absorbed by the equipment's open work order or "
                         "opening one. The answer is the reference the reporter can follow.")
async def report_submit(body: ReportIn, server: ServerDep,
                        x_intake_token: Annotated[str | None, Header(max_length=200)] = None) -> ReceiptOut:
    what = "file a citizen report"
    intake = intake_of(server, what)
    channel = intake.channel(x_intake_token)
    if channel is None:
        raise ApiError(401, what, "unknown intake token", "unauthorized")
    wait = intake.admit(channel)
    if wait > 0:
        raise ApiError(429, what, f"channel {channel.name} is over its rate: retry in {math.ceil(wait)} s",
                       "rate_limited", headers={"Retry-After": str(math.ceil(wait))})
    c = body.contact
    report = Report(body.category, body.text, body.lat, body.lon, body.address,
                    Contact(c.name, c.phone, c.email) if c is not None else Contact())
    receipt = await asyncio.to_thread(intake.submit, channel, report, time.time_ns() // 1_000_000,
                                      body.idempotency_key)
    return ReceiptOut(**receipt.as_dict())


@router.get("/reports/{ref}", response_model=ReportStatusOut,
            description="Follow a report by its reference (no login): its status, nothing else.")
async def report_follow(ref: Ref, server: ServerDep) -> ReportStatusOut:
    intake = intake_of(server, f"follow report {ref}")
    return ReportStatusOut(**await asyncio.to_thread(intake.follow, ref))


@router.get("/reports", response_model=ReportList)
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
