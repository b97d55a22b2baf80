"""Tags: live values of the tag database, found by name glob, equipment, area or domain.

    GET /tags          ?pattern=&equipment=&area=&domain=&limit=&offset=   at least one filter (400 without);
                       each row with its value, quality, times, units and an enumerated tag's labels
    GET /tags/{name}   one tag with its definition (device, address, type, enum...)   404 if not configured

Filters are intersected as boolean masks over the tag database's arrays; rows are built only for the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import numpy as np
from fastapi import APIRouter, Path, Query

from scada.config.units import slug
from scada.errors import Refusal, Refused
from scada.quality import reason
from server.routes.deps import MAX_ROWS, PREFIX, Reader, ServerDep, finite, ms
from server.routes.errors import ApiError
from server.routes.models import TagDetail, TagPage, TagRow

if TYPE_CHECKING:
    from server.app import ScadaServer

router = APIRouter(prefix=PREFIX, tags=["tags"])


def tag_rows(server: ScadaServer, idx: Iterable[int]) -> list[TagRow]:
    """The rows of the tags at these indices of the tag database, their current sample included."""
    db = server.tagdb
    out = []
    for i in np.asarray(idx, dtype=np.int64).tolist():
        t = db.defs[i]
        s = db.read(t.name)
        out.append(TagRow(name=t.name, value=finite(s.value), quality=s.quality.label, source_ms=ms(s.source_ns),
                          receive_ms=ms(s.receive_ns), units=t.units, equipment=t.equipment,
                          reason=reason(s.quality, s.receive_ns),
                          enum={str(k): v for k, v in t.enum.items()} if t.enum else None))
    return out


def area_equipment(server: ScadaServer, area: str) -> list[str]:
    """Equipment ids of a commune, named as configured or by its slug."""
    s = slug(area)
    return [e.id for e in server.config.equipment.values() if e.commune == area or slug(e.commune) == s]


@router.get("/tags", response_model=TagPage)
async def tags(session: Reader, server: ServerDep,
               pattern: Annotated[str | None, Query(max_length=300, description="glob on tag names")] = None,
               equipment: Annotated[str | None, Query(max_length=100)] = None,
               area: Annotated[str | None, Query(max_length=100, description="commune")] = None,
               domain: Annotated[str | None, Query(max_length=100)] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
               offset: Annotated[int, Query(ge=0)] = 0) -> TagPage:
    db = server.tagdb
    if pattern is None and equipment is None and area is None and domain is None:
        raise ApiError(400, "list tags", "give at least one of pattern, equipment, area, domain "
                                         "(the city has too many tags for one unfiltered answer)", "filter_required")
    mask = np.ones(len(db), dtype=bool)
    if pattern is not None:
        m = np.zeros(len(db), dtype=bool)
        m[db.match(pattern)] = True
        mask &= m
    if equipment is not None:
        m = np.zeros(len(db), dtype=bool)
        m[db.equipment_indices(equipment)] = True
        mask &= m
    if area is not None or domain is not None:
        ids = set(area_equipment(server, area)) if area is not None else set(server.config.equipment)
        if domain is not None:
            ids = {i for i in ids if server.config.equipment[i].domain == domain}
        m = np.zeros(len(db), dtype=bool)
        for eq in ids:
            m[db.equipment_indices(eq)] = True
        mask &= m
    idx = np.flatnonzero(mask)
    return TagPage(total=int(idx.size), offset=offset, tags=tag_rows(server, idx[offset:offset + limit]))


@router.get("/tags/{name:path}", response_model=TagDetail)
async def tag(session: Reader, server: ServerDep, name: Annotated[str, Path(max_length=300)]) -> TagDetail:
    i = server.tagdb.index.get(name)
    if i is None:
        raise Refused(f"read tag {name!r}", "no such tag in the configuration", Refusal.NOT_FOUND)
    row = tag_rows(server, [i])[0]
    t = server.tagdb.defs[i]
    return TagDetail(**row.model_dump(), device=t.device, address=t.address, type=t.dtype, access=t.access,
                     description=t.description, deadband=t.deadband)
