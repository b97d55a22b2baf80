"""Alarm message templates in two passes.

``alarms.yaml`` messages use ``{placeholders}``: the equipment's identity (``{id}``, ``{commune}``,
any inventory identity field such as ``{address}`` or ``{model}``), the rule's attributes
(``{tag}``, ``{units}``, ``{limit}``, ``{area}``, ``{service}``, ``{rule}``) and the live ``{value}``::

    "Cabinet {id} ({commune}): {value} luminaires failed"
        │  pass 1, once per alarm (static fields)        → "Cabinet C0001 (Dijon): {value} luminaires failed"
        │  pass 2, when shown (value, formatted/labelled) → "Cabinet C0001 (Dijon): 7 luminaires failed"

The static text is what the journal stores once per alarm definition, so a storm of transitions never
formats a message. An unknown placeholder is kept verbatim rather than raising: a message must never
stop an alarm.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any

_FORMATTER = string.Formatter()
LIVE_FIELDS = frozenset({"value", "quality"})


def _field(text: str, fmt: str, conv: str | None) -> str:
    return "{" + text + ("!" + conv if conv else "") + (":" + fmt if fmt else "") + "}"


Parsed = list[tuple[str, str | None, str | None, str | None]]


def parse_template(template: str) -> Parsed | None:
    """The parsed template (None when its braces are unbalanced: it is then shown as written)."""
    try:
        return list(_FORMATTER.parse(template))
    except ValueError:
        return None


def render_static(template: str, fields: Mapping[str, Any], parsed: Parsed | None = None) -> str:
    """Substitute every placeholder except the live ones (``{value}``, ``{quality}``)."""
    out: list[str] = []
    if parsed is None:
        parsed = parse_template(template)
        if parsed is None:  # unbalanced braces: show the template as written
            return template
    for literal, name, fmt, conv in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            continue
        root = name.split(".")[0].split("[")[0]
        if root in LIVE_FIELDS or root not in fields:
            out.append(_field(name, fmt or "", conv) if root in LIVE_FIELDS else
                       _escape(_field(name, fmt or "", conv)))
            continue
        try:
            out.append(_escape(_FORMATTER.format_field(_FORMATTER.convert_field(fields[root], conv), fmt or "")))
        except (ValueError, TypeError):
            out.append(_escape(str(fields[root])))
    return "".join(out)


def _escape(text: str) -> str:
    if "{" in text or "}" in text:
        return text.replace("{", "{{").replace("}", "}}")
    return text


class StaticTemplate:
    """A message template parsed once, rendered (first pass) many times: one rule, thousands of alarms."""

    def __init__(self, template: str) -> None:
        self.template = template
        parsed = parse_template(template)
        # ops: (escaped literal, field root or None, full placeholder text, fmt, conv, live)
        self.ops: list[tuple[str, str | None, str, str, str | None, bool]] = []
        self.broken = parsed is None
        for literal, name, fmt, conv in parsed or []:
            lit = literal.replace("{", "{{").replace("}", "}}")
            if name is None:
                self.ops.append((lit, None, "", "", None, False))
                continue
            root = name.split(".")[0].split("[")[0]
            self.ops.append((lit, root, _field(name, fmt or "", conv), fmt or "", conv, root in LIVE_FIELDS))
        self.roots = {op[1] for op in self.ops if op[1] is not None}

    def render(self, *sources: Mapping[str, Any]) -> str:
        """First pass with the fields looked up in ``sources`` in order (live fields kept)."""
        if self.broken:
            return self.template
        out: list[str] = []
        for lit, root, placeholder, fmt, conv, live in self.ops:
            out.append(lit)
            if root is None:
                continue
            if live:
                out.append(placeholder)
                continue
            for src in sources:
                if root in src:
                    v = src[root]
                    break
            else:
                out.append(_escape(placeholder))
                continue
            if not fmt and conv is None:
                out.append(_escape(v if isinstance(v, str) else str(v)))
                continue
            try:
                out.append(_escape(_FORMATTER.format_field(_FORMATTER.convert_field(v, conv), fmt)))
            except (ValueError, TypeError):
                out.append(_escape(str(v)))
        return "".join(out)


def render_live(static: str, value: Any, value_text: str, quality: str = "") -> str:
    """Second pass: put the live value in (``value_text`` for a plain ``{value}``)."""
    if "{" not in static:
        return static
    try:
        parsed = list(_FORMATTER.parse(static))
    except ValueError:
        return static
    out: list[str] = []
    for literal, name, fmt, conv in parsed:
        out.append(literal)
        if name is None:
            continue
        if name == "quality":
            out.append(quality)
        elif name == "value" and not fmt and not conv:
            out.append(value_text)
        elif name == "value":
            try:
                out.append(_FORMATTER.format_field(_FORMATTER.convert_field(value, conv), fmt or ""))
            except (ValueError, TypeError):
                out.append(value_text)
        else:
            out.append(_field(name, fmt or "", conv))
    return "".join(out)


def format_value(value: float | str | None, dtype: str, enum: Mapping[int, str] | None = None) -> str:
    """How a value reads in a message, the journal and the HMI (enum label, true/false, 12.5)."""
    if value is None:
        return "?"
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "?"
    if dtype == "bool":
        return "true" if value else "false"
    if dtype == "enum" and enum:
        label = enum.get(int(value))
        return label if label is not None else str(int(value))
    if dtype in ("int", "enum") or float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"
