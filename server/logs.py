"""Structured logs: one JSON object per line (``--log-json``), or the readable default.

    {"ts": "2025-01-12T21:04:05.123Z", "level": "WARNING", "logger": "scada.poll", "msg": "C0042: ...",
     "pid": 1234}

Fields passed with ``extra={...}`` are kept. Secrets never reach a log line: the auth code does not log
passwords or tokens, and this formatter masks any extra field whose name looks like a secret.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from server.audit import scrub

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": os.getpid(),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if extra:
            out.update(scrub(extra))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(json_lines: bool, level: int) -> None:
    """Replace the root handlers with one stderr handler (JSON lines or readable text)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
