"""Work-order photos: a crew's picture of the repair, cleaned of its metadata, kept with the order.

    POST /workorders/{id}/photos         the body is the image (JPEG or PNG, by its bytes): cleaned of its metadata
                                         (EXIF GPS...) and stored, a note names it (scada.workorders.photos)
                                                                                               workorder.note
    GET  /workorders/{id}/photos  ·  GET /workorders/{id}/photos/{name} (the image)            workorder.read

A crew account reaches only its own crew's orders (the same scope as server.routes.workorders).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time
import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from scada.errors import Refusal, Refused
from scada.workorders.photos import MAX_BYTES, PhotoStore, attach
from server.auth import Session
from server.routes.deps import PREFIX, ServerDep, audited, need
from server.routes.errors import ApiError
from server.routes.workorders import OrderId, WorkOrderOut, crew_scope, now_ms, orders_of, out, visible

if TYPE_CHECKING:
    from server.app import ScadaServer

router = APIRouter(prefix=PREFIX, tags=["workorders"])


class PhotoOut(BaseModel):
    name: str
    media_type: str
    size: int
    width: int
    height: int


class PhotoAttachOut(BaseModel):
    order: WorkOrderOut
    photo: PhotoOut


def photo_store(server: "ScadaServer") -> PhotoStore:
    return PhotoStore(server.data_dir)


#: the OpenAPI request body of a photo upload (the route reads the raw body itself, so FastAPI cannot infer it)
IMAGE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/workorders/{order_id}/photos", response_model=PhotoAttachOut, openapi_extra=IMAGE_BODY,
             description=f"The request body is the photo itself, JPEG or PNG (recognised by its bytes, not by its "
                         f"Content-Type), at most {MAX_BYTES >> 20} MiB and the server's body limit (http.max_body, "
                         f"1 MiB by default: raise it for /api/v1/workorders with http.max_body_by_prefix to take "
                         f"full-size photos; the crew page sends them reduced). It is re-encoded without any "
                         f"metadata (EXIF with its GPS position, XMP, comments) and a note names it in the order's "
                         f"journal; the same photo sent again is stored and noted once.")
async def attach_photo(order_id: OrderId, request: Request,
                       session: Annotated[Session, Depends(need("workorder.note"))],
                       server: ServerDep) -> PhotoAttachOut:
    what = f"attach a photo to work order {order_id}"
    orders = orders_of(server, what)
    crew = crew_scope(orders, session, what)
    body = await request.body()  # bounded by the body-limit middleware before it got here

    async def call() -> PhotoAttachOut:
        try:
            order, photo = await asyncio.to_thread(attach, orders, photo_store(server), order_id, body, session.user,
                                                   now_ms(), crew=crew)
        except Refused as exc:
            if exc.code is Refusal.UNSUPPORTED:
                raise ApiError(415, exc.what, exc.why, "unsupported_media_type") from None
            raise
        return PhotoAttachOut(order=out(order, now_ms()), photo=PhotoOut(**photo.as_dict()))

    return await audited(server, session, request, "workorder_photo", call)


@router.get("/workorders/{order_id}/photos", response_model=list[PhotoOut])
async def list_photos(order_id: OrderId, session: Annotated[Session, Depends(need("workorder.read"))],
                      server: ServerDep) -> list[PhotoOut]:
    what = f"photos of work order {order_id}"
    visible(orders_of(server, what), session, order_id, what)
    return [PhotoOut(**p.as_dict()) for p in await asyncio.to_thread(photo_store(server).photos, order_id)]


@router.get("/workorders/{order_id}/photos/{name}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
async def get_photo(order_id: OrderId, name: Annotated[str, Path(min_length=1, max_length=40)],
                    session: Annotated[Session, Depends(need("workorder.read"))], server: ServerDep) -> FileResponse:
    what = f"photo {name!r} of work order {order_id}"
    visible(orders_of(server, what), session, order_id, what)
    path = photo_store(server).path(order_id, name)
    return FileResponse(path, media_type="image/png" if name.endswith(".png") else "image/jpeg",
                        headers={"Cache-Control": "private, no-store"})
