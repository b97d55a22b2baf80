"""The simulator's local HTTP control API (stdlib asyncio, bound to 127.0.0.1 only).

Testers inject faults into a running ``scada sim`` with curl::

    curl -s localhost:15080/status
    curl -s -XPOST localhost:15080/fault -d '{"equipment": "B003", "fault": "fire_alarm", "params": {"zone": 2}}'
    curl -s -XPOST localhost:15080/clear -d '{"equipment": "B003", "fault": "fire_alarm"}'
    curl -s -XPOST localhost:15080/comm  -d '{"equipment": "C0004", "kind": "drop"}'      # kind null clears
    curl -s -XPOST localhost:15080/advance -d '{"seconds": 3600}'                         # jump the clock

==========================  ===========================================================================
``GET /status``             simulation time, speed, seed, steps, endpoints, skipped parts
``GET /endpoints``          the endpoints.json dict
``GET /equipment/<id>``     template, endpoint and (for models that report them) current values
``POST /fault``             ``{equipment, fault, params}`` → ``model.inject(fault, **params)``
``POST /clear``             ``{equipment, fault?, params?}`` → ``model.clear(fault, **params)``
``POST /comm``              ``{equipment, kind, params}`` → the server's ``set_comm_fault``
``POST /advance``           ``{seconds}`` → jump the simulation clock
==========================  ===========================================================================

``equipment`` may also be a list of ids. Answers are JSON: ``{"ok": true, ...}`` or
``{"error": "..."}`` with status 400 (bad request), 404 (unknown path or equipment).
One request per connection (``Connection: close``): this is a test bench, not a web server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlApi:
    """HTTP control of a :class:`sim.runner.Simulator` (see the module docstring)."""

    def __init__(self, sim: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("control API listening on %s", self.url)

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, body = 200, {}
        try:
            method, path, payload = await asyncio.wait_for(self._read_request(reader), 10.0)
            body = await self.dispatch(method, path, payload)
        except HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except KeyError as exc:
            status, body = 404, {"error": str(exc.args[0]) if exc.args else "not found"}
        except (ValueError, TypeError) as exc:
            status, body = 400, {"error": str(exc)}
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        data = json.dumps(body, default=str).encode()
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, Any]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) != 3:
            raise HttpError(400, f"bad request line {request_line!r}")
        method, path, _ = parts
        length = 0
        while True:
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY:
            raise HttpError(413, f"body too large ({length} bytes)")
        payload: Any = None
        if length:
            raw = await reader.readexactly(length)
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise HttpError(400, f"body is not JSON: {exc}") from exc
        return method.upper(), path.split("?")[0], payload

    async def dispatch(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        sim = self.sim
        if method == "GET":
            if path == "/status":
                return dict(sim.status())
            if path == "/endpoints":
                return dict(sim.endpoints)
            if path.startswith("/equipment/"):
                return self._equipment(path.removeprefix("/equipment/"))
            raise HttpError(404, f"unknown path {path}")
        if method != "POST":
            raise HttpError(405, f"method {method} not allowed")
        if not isinstance(payload, dict):
            raise HttpError(400, "body must be a JSON object")
        params = payload.get("params") or {}
        if not isinstance(params, dict):
            raise HttpError(400, "'params' must be an object")
        if path == "/advance":
            seconds = float(payload.get("seconds", 0))
            await sim.advance(seconds)
            return {"ok": True, "sim_time": sim.now}
        ids = self._ids(payload)
        if path == "/fault":
            fault = payload.get("fault")
            if not isinstance(fault, str):
                raise HttpError(400, "'fault' (a fault name) is required")
            for eq in ids:
                sim.inject(eq, fault, **params)
        elif path == "/clear":
            fault = payload.get("fault")
            for eq in ids:
                sim.clear(eq, fault, **params)
        elif path == "/comm":
            if "kind" not in payload:
                raise HttpError(400, "'kind' is required (drop, delay, corrupt, disconnect or null to clear)")
            for eq in ids:
                await sim.comm_fault(eq, payload["kind"], **params)
        else:
            raise HttpError(404, f"unknown path {path}")
        log.info("control API: %s %s %s", path, ids, {k: v for k, v in payload.items() if k != "equipment"})
        return {"ok": True, "equipment": ids}

    def _ids(self, payload: dict[str, Any]) -> list[str]:
        eq = payload.get("equipment")
        ids = [eq] if isinstance(eq, str) else eq
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise HttpError(400, "'equipment' must be an equipment id or a list of ids")
        return ids

    def _equipment(self, eq_id: str) -> dict[str, Any]:
        sim = self.sim
        eq = sim.config.equipment.get(eq_id)
        if eq is None:
            raise HttpError(404, f"unknown equipment {eq_id!r}")
        model = sim.models.get(eq_id)
        out: dict[str, Any] = {"id": eq_id, "template": eq.template, "commune": eq.commune,
                               "simulated": model is not None}
        try:
            out["endpoint"] = sim.server_of(eq_id).endpoint
        except KeyError:
            pass
        values = getattr(model, "values", None)
        if callable(values):
            out["values"] = values()
        return out


__all__ = ["ControlApi"]
