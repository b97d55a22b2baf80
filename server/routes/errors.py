"""How a refused request is answered: one error body, one table from refusal codes to HTTP statuses.

Every refusal answers ``{"what": ..., "why": ..., "code": ...}`` (:class:`ErrorBody`). Two kinds reach
the handlers installed by :func:`install`::

    scada.errors.Refused(what, why, Refusal)     what the request asks cannot be done (a subsystem, a route)
        └──► STATUS[code]                        the one table below: no status is chosen anywhere else
    scada.errors.CommandRejected(reason, Refusal)  the fail-safe gate's refusal, if it escapes its façade
        └──► STATUS[code]
    ApiError(status, what, why, code)            the HTTP layer's own refusals, whose codes are not domain
                                                 refusals: 401 unauthenticated / token_invalid / login_failed,
                                                 403 forbidden, 429 locked_out, 400 filter_required,
                                                 422 too_many_points, 503 backup_failed
    server.middleware (before any route)         413 too_large: the body is over the route's limit
    RequestValidationError, HTTPException        FastAPI's and Starlette's own, in the same body

The ``why`` is translated on its way out (:func:`scada.i18n.localise`, into the request's ``?lang=`` or
the server's language): reasons are written as English msgids of the catalogue where they are decided
and stored or logged as such; the code never changes with the language.

A route that gets a subsystem's typed error with another shape (``scada.users.UserError``) re-raises it
as :class:`scada.errors.Refused` with its code: the code travels, never a message to be matched.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from scada.errors import CommandRejected, Refusal, Refused
from scada.i18n import localise, parse_lang

log = logging.getLogger(__name__)

#: The HTTP status of every refusal code (a test checks that no code is missing).
STATUS: dict[Refusal, int] = {
    Refusal.INVALID: 422,
    Refusal.NOT_FOUND: 404,
    Refusal.COMMAND_REJECTED: 409,
    Refusal.ALARM_ACTION_REFUSED: 409,
    Refusal.USER_REFUSED: 409,
    Refusal.UNSUPPORTED: 409,
    Refusal.UNAVAILABLE: 503,
    Refusal.CONFLICT: 409,
    Refusal.ALREADY_DONE: 409,
    Refusal.WORK_ORDER_REFUSED: 409,
    Refusal.NOT_LEASEHOLDER: 503,  # the other server of the pair is (or may be) active: ask it
}


class ErrorBody(BaseModel):
    what: str = Field(description="what was asked")
    why: str = Field(description="why it was refused")
    code: str = Field(description="machine-readable reason")


ERR: dict[str, Any] = {"model": ErrorBody}
#: Documented on every operation (the app's ``responses``).
ERRORS: dict[int | str, dict[str, Any]] = {400: ERR, 401: ERR, 403: ERR, 404: ERR, 409: ERR, 413: ERR, 422: ERR,
                                           429: ERR, 503: ERR}


class ApiError(Exception):
    """A refusal of the HTTP layer itself, with its status and a code that is not a :class:`Refusal`."""

    def __init__(self, status: int, what: str, why: str, code: str = "refused",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{what}: {why}")
        self.status, self.what, self.why, self.code, self.headers = status, what, why, code, headers


def error_response(status: int, what: str, why: str, code: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"what": what, "why": why, "code": code}, status_code=status, headers=headers)


def _say(request: Request, why: str) -> str:
    """``why`` in the request's language (``?lang=``), else the server's."""
    lang: str | None = None
    asked = request.query_params.get("lang")
    if asked:
        try:
            lang = parse_lang(asked)
        except ValueError:
            lang = None  # an unknown language is the route's own refusal (422), said in the server's language
    return localise(why, lang)


def _what(request: Request) -> str:
    return f"{request.method} {request.url.path}"


# Starlette types every handler as taking Exception; each is registered for one class only, and
# anything else is re-raised to Starlette untouched.
async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ApiError):
        raise exc
    return error_response(exc.status, exc.what, _say(request, exc.why), exc.code, exc.headers)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, Refused):
        raise exc
    if exc.detail:  # e.g. the original outcome of a replayed command; never overrides what, why, code
        body = {**jsonable_encoder(exc.detail), "what": exc.what, "why": _say(request, exc.why),
                "code": str(exc.code)}
        return JSONResponse(body, status_code=STATUS[exc.code])
    return error_response(STATUS[exc.code], exc.what, _say(request, exc.why), str(exc.code))


async def _command_rejected(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, CommandRejected):
        raise exc
    return error_response(STATUS[exc.code], _what(request), _say(request, exc.reason), str(exc.code))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    parts = []
    for e in exc.errors()[:10]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return error_response(422, _what(request), "; ".join(parts) or "invalid request", str(Refusal.INVALID))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    why = str(exc.detail) if exc.detail else "not allowed"
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "refused")
    return error_response(exc.status_code, _what(request), why, code, dict(exc.headers) if exc.headers else None)


async def _crash(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
    log.exception("api: %s %s failed", request.method, request.url.path)
    return error_response(500, _what(request), f"internal error: {type(exc).__name__}", "internal")


def install(app: FastAPI) -> None:
    """Answer every refusal (and a crash) with the error body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(CommandRejected, _command_rejected)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _crash)
