"""The supervisory server: one asyncio process wiring drivers → tag database → alarms → historian →
fail-safe, serving the HTTP/WebSocket API (see :mod:`scada.server.app` for the picture)."""
