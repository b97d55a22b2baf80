"""Desktop operator console (PyQt6 + pyqtgraph). Talks to the server only through its API."""
