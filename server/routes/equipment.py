"""Equipment: the inventory, and one equipment's identity sheet.

    GET /equipment        ?area=&kind=&domain=&q=&limit=&offset=                              read
    GET /equipment/{id}   identity sheet: inventory + live tags + active alarms + alarm and command history

The sheet still answers when a subsystem is missing: its part is empty and ``notes`` says which.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from scada.config.inventory import LAMP_POSITIONS, parse_lamp_positions
from scada.config.units import slug
from scada.errors import Refusal, Refused
from server.routes.alarms import active
from server.routes.deps import MAX_ROWS, PREFIX, Reader, ServerDep
from server.routes.models import EquipmentPage, EquipmentRow, EquipmentSheet
from server.routes.tags import tag_rows

router = APIRouter(prefix=PREFIX, tags=["equipment"])


def eq_row(e: Any) -> EquipmentRow:
    try:
        lamps = parse_lamp_positions(e.params.get(LAMP_POSITIONS))
    except ValueError:  # an inventory file's value is checked by the loader; a YAML instance's may not be
        lamps = []
    return EquipmentRow(id=e.id, template=e.template, kind=e.kind, domain=e.domain, commune=e.commune, lat=e.lat,
                        lon=e.lon, device=e.device, lamps=lamps, name=str(e.identity.get("name") or ""),
                        address=str(e.identity.get("address") or ""))


@router.get("/equipment", response_model=EquipmentPage)
async def equipment_list(session: Reader, server: ServerDep,
                         area: Annotated[str | None, Query(max_length=100)] = None,
                         kind: Annotated[str | None, Query(max_length=100)] = None,
                         domain: Annotated[str | None, Query(max_length=100)] = None,
                         q: Annotated[str | None, Query(max_length=100, description="text in id")] = None,
                         limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
                         offset: Annotated[int, Query(ge=0)] = 0) -> EquipmentPage:
    items = list(server.config.equipment.values())
    if area is not None:
        s = slug(area)
        items = [e for e in items if e.commune == area or slug(e.commune) == s]
    if kind is not None:
        items = [e for e in items if kind in (e.kind, e.template)]
    if domain is not None:
        items = [e for e in items if e.domain == domain]
    if q:
        ql = q.lower()
        items = [e for e in items if ql in e.id.lower()]
    return EquipmentPage(total=len(items), offset=offset, equipment=[eq_row(e) for e in items[offset:offset + limit]])


@router.get("/equipment/{eq_id}", response_model=EquipmentSheet)
async def equipment_sheet(session: Reader, server: ServerDep, eq_id: Annotated[str, Path(max_length=100)],
                          history: Annotated[int, Query(ge=0, le=1000)] = 50) -> EquipmentSheet:
    e = server.config.equipment.get(eq_id)
    if e is None:
        raise Refused(f"identity sheet of {eq_id!r}", "no such equipment in the configuration", Refusal.NOT_FOUND)
    notes: list[str] = []
    alarms: list[dict[str, Any]] = []
    past: list[dict[str, Any]] = []
    cmds: list[dict[str, Any]] = []
    if server.alarms is not None:
        _, alarms = active(server.alarms, equipment=eq_id)
    else:
        notes.append("alarm engine not available")
    if server.journal is not None:
        past = await asyncio.to_thread(server.journal.query, {"equipment": eq_id}, history, 0) if history else []
    else:
        notes.append("journal not available")
    if server.commands is not None:
        cmds = await asyncio.to_thread(server.commands.history, eq_id, history) if history else []
    else:
        notes.append("command gate not available")
    dev = server.config.devices.get(e.device)
    return EquipmentSheet(**eq_row(e).model_dump(), identity=dict(e.identity), params=dict(e.params),
                          source=e.source, device_protocol=dev.protocol if dev else "",
                          tags=tag_rows(server, server.tagdb.equipment_indices(eq_id)), alarms=alarms,
                          alarm_history=past, commands=cmds, notes=notes)
