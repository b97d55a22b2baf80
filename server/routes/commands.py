"""Commands through the fail-safe gate: the verbs, the audit history, the select / approve / operate steps.

    GET  /commands/vocabulary          the verbs each kind of equipment accepts                      read
    GET  /commands                     audit history ?equipment=&limit=, newest first; the next page:  read
                                       ?before=<the last seq seen>; ?pending=true: open tickets
    POST /commands                     select (select-before-operate) or run a command              command.operate
    GET  /commands/{id}                one command's record                                         read
    POST /commands/{id}/operate | /approve | /cancel                       command.operate | command.approve

Nothing here decides: the gate checks, journals and answers (``state``: done, rejected, failed, not
confirmed, awaiting approval...). A refusal is written to the audit trail and answered with its code.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time, and those of
# the ticket steps name their permission's dependency, a local of the function that builds them
import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from scada.errors import Refusal, Refused
from server.auth import Session
from server.routes.deps import PREFIX, Reader, ServerDep, audited, need, require, workstation_of
from server.routes.models import CommandIn, CommandList, CommandOut

router = APIRouter(prefix=PREFIX, tags=["commands"])

CmdId = Annotated[str, Path(min_length=1, max_length=100)]


@router.get("/commands/vocabulary")
async def vocabulary(session: Reader, server: ServerDep) -> dict[str, Any]:
    return dict(require(server, server.commands, "failsafe", "list command verbs").vocabulary())


@router.get("/commands", response_model=CommandList)
async def command_list(session: Reader, server: ServerDep,
                       equipment: Annotated[str | None, Query(max_length=100)] = None,
                       pending: Annotated[bool, Query(description="only tickets awaiting approval or "
                                                                  "operate")] = False,
                       limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                       before: Annotated[int | None, Query(ge=1, description="only audit entries with a smaller "
                                                                          "seq: the next page")] = None) -> CommandList:
    svc = require(server, server.commands, "failsafe", "list commands")
    if pending:
        items = [t for t in svc.pending() if equipment is None or equipment in t.get("targets", [])]
        return CommandList(commands=items[:limit])
    # the audit log is read through its index (bounded bytes), still off the event loop
    return CommandList(commands=await asyncio.to_thread(svc.history, equipment, limit, before))


@router.post("/commands", response_model=CommandOut)
async def command_submit(body: CommandIn, request: Request,
                         session: Annotated[Session, Depends(need("command.operate"))], server: ServerDep) -> Any:
    svc = require(server, server.commands, "failsafe", f"{body.verb} {body.target}")
    return await audited(server, session, request, "command", lambda: svc.submit(
        session.user, session.role, workstation_of(request), body.model_dump()))


@router.get("/commands/{command_id}", response_model=CommandOut)
async def command_status(session: Reader, server: ServerDep, command_id: CmdId) -> Any:
    svc = require(server, server.commands, "failsafe", f"status of command {command_id}")
    rec = svc.status(command_id)
    if rec is None:
        raise Refused(f"status of command {command_id!r}", "no such command", Refusal.NOT_FOUND)
    return rec


def _cmd_step(step: str, permission: str) -> Any:
    """The endpoint of one step on an open ticket, named ``command_<step>`` (its OpenAPI operationId)."""

    async def handler(command_id: CmdId, request: Request,
                      session: Annotated[Session, Depends(need(permission))], server: ServerDep) -> Any:
        svc = require(server, server.commands, "failsafe", f"{step} command {command_id}")
        fn = getattr(svc, step)
        return await audited(server, session, request, f"command_{step}", lambda: fn(
            command_id, session.user, session.role, workstation_of(request)))

    handler.__name__ = f"command_{step}"
    return handler


router.post("/commands/{command_id}/operate", response_model=CommandOut)(_cmd_step("operate", "command.operate"))
router.post("/commands/{command_id}/approve", response_model=CommandOut)(_cmd_step("approve", "command.approve"))
router.post("/commands/{command_id}/cancel", response_model=CommandOut)(_cmd_step("cancel", "command.operate"))
