"""Structured logs: one JSON object per line, secrets masked."""

from __future__ import annotations

import json
import logging

from server.audit import scrub
from server.logs import JsonFormatter


def test_json_lines_mask_secrets() -> None:
    rec = logging.LogRecord("server", logging.WARNING, __file__, 1, "C0042: %s", ("lost",), None)
    rec.password = "hunter2-secret"  # type: ignore[attr-defined]
    rec.device = "C0042"  # type: ignore[attr-defined]
    line = JsonFormatter().format(rec)
    out = json.loads(line)
    assert out["msg"] == "C0042: lost" and out["level"] == "WARNING" and out["logger"] == "server"
    assert out["device"] == "C0042" and out["password"] == "***" and "hunter2" not in line


def test_scrub_nested() -> None:
    assert scrub({"user": "a", "auth": {"token": "x", "community": "public"}}) == \
        {"user": "a", "auth": {"token": "***", "community": "***"}}
