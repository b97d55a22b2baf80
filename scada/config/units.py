"""Small parsers shared by the configuration schema: durations and name slugs."""

from __future__ import annotations

import re
import unicodedata

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h|d)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"10s"``, ``"5 min"``, ``"2h"``, ``"1d"``.

    Raises ValueError with a readable message for anything else (negative, bool, garbage).
    """
    if isinstance(value, bool):
        raise ValueError("must be a duration like 10s, 500ms, 5min")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _FACTORS[m.group(2)]
    raise ValueError("must be a duration like 10s, 500ms, 5min")


def slug(text: str) -> str:
    """``"Chenôve"`` → ``"chenove"``, ``"Saint-Apollinaire"`` → ``"saint-apollinaire"``."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", norm.lower()).strip("-")
