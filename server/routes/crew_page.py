"""The crew's tablet page: static HTML, CSS and JS served by the server itself (no framework, no external
asset), talking to the same API as everybody (``/api/v1/auth/login``, ``/api/v1/workorders``).

    GET /crew          → 307 /crew/
    GET /crew/         index.html   the page (login, missions, buttons; see crew.js for the queue)
    GET /crew/crew.js  · /crew/crew.css

The files live in ``server/static/crew`` (package data). The page's Content-Security-Policy allows this host
only (its script and stylesheet, its API calls), and it is not in the OpenAPI document (it is no API). Off
loopback the server listens over TLS only (server.settings), so the page and the crew's password travel
encrypted.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parents[1] / "static" / "crew"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
FILES = {"": ("index.html", "text/html; charset=utf-8"), "crew.js": ("crew.js", "text/javascript; charset=utf-8"),
         "crew.css": ("crew.css", "text/css; charset=utf-8")}

router = APIRouter(include_in_schema=False)


@router.get("/crew")
async def crew_root() -> RedirectResponse:
    return RedirectResponse("/crew/", status_code=307)


def _serve(name: str) -> None:
    file, media = FILES[name]

    async def page() -> FileResponse:
        return FileResponse(STATIC / file, media_type=media, headers={"Content-Security-Policy": CSP})

    router.get(f"/crew/{name}", name=f"crew_page_{file.replace('.', '_')}")(page)


for _name in FILES:
    _serve(_name)
