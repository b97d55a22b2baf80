"""CSV that a spreadsheet opens as data, never as formulas (OWASP "CSV injection").

Every CSV this project writes goes through :func:`writer` (or :func:`cell` for one value)::

    w = csvsafe.writer(out)            same arguments as csv.writer
    w.writerow(["J042", "=HYPERLINK(\\"http://x\\",\\"y\\")", -3.5, "-3.5", "-1+1"])
        → J042,"'=HYPERLINK(""http://x"",""y"")",-3.5,-3.5,'-1+1

A text cell is escaped (prefixed with ``'``, which spreadsheets show as nothing and read as "this is
text") when it begins with a character that starts a formula or a DDE call: ``=``, ``+``, ``-``, ``@``,
tab or carriage return. The choice for numbers: a cell that is a plain decimal number (``-3.5``,
``+12``, ``-1e-3``), given as a number or as text, is left as it is, so negative values in numeric
columns stay numbers; ``-1+1``, ``-2026-11-20`` or ``+33 6 12`` are not numbers and are escaped. Values
that are not text (int, float, None) are never escaped: ``csv`` formats them as numbers or empty.

The cost: a comment written as ``=== shift handover ===`` reads ``'=== shift handover ===`` in the
export. That is the OWASP recommendation; an export is a record, not a round trip.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

#: Characters that make a spreadsheet evaluate a cell (formula, DDE) when they lead it.
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class _Writer(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


def cell(value: Any) -> Any:
    """``value`` as a safe CSV cell: formula-leading text prefixed with ``'``; numbers and non-text as given."""
    if not isinstance(value, str) or not value.startswith(FORMULA_LEAD):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


class SafeWriter:
    """A ``csv.writer`` whose every row goes through :func:`cell`."""

    def __init__(self, inner: _Writer) -> None:
        self._inner = inner

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._inner.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: Any, *args: Any, **kwargs: Any) -> SafeWriter:
    """``csv.writer(out, *args, **kwargs)`` with every cell escaped by :func:`cell`."""
    return SafeWriter(csv.writer(out, *args, **kwargs))
