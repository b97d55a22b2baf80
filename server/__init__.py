"""The supervisory server: one asyncio process wiring drivers → tag database → alarms → historian →
fail-safe, serving the HTTP/WebSocket API (see :mod:`server.app` for the picture)."""
