"""The supervisory server: one process wiring drivers → tag database → alarms, historian, consoles, with
the junctions read in a field-safety thread whose monitor decides on each sample first, and commands
through the fail-safe gate; it serves the HTTP/WebSocket API (see :mod:`server.app` for the picture)."""
