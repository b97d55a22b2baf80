"""Alarm message templates: per language, in two passes, stored as a key and its parameters.

``alarms.yaml`` messages use ``{placeholders}``: the equipment's identity (``{id}``, ``{commune}``,
any inventory identity field such as ``{address}`` or ``{model}``), the rule's attributes
(``{tag}``, ``{index}`` — the number of a repeated tag: 2 for ``fire_zone_2``, 3 for ``lamp_03/status`` —,
``{units}``, ``{limit}``, ``{area}``, ``{service}``, ``{rule}``) and the live ``{value}``.
A message is one template in the site's language or one per language (:func:`by_language`)::

    message: {fr: "Armoire {id} ({commune}) : {value} luminaires en panne",
              en: "Cabinet {id} ({commune}): {value} luminaires failed"}
        │  pass 1, once per alarm and language (static fields)  → "Armoire C0001 (Dijon) : {value} luminaires en panne"
        │  pass 2, when shown (value, formatted/labelled)        → "Armoire C0001 (Dijon) : 7 luminaires en panne"

The journal stores, once per alarm *definition*, the static text in the site's language (for its text
search and for readers of older files) plus a *message key* (:func:`message_key`: the rule and a digest
of its templates, so a reworded rule never rewrites history) and the static *parameters* of pass 1
(:func:`static_fields`, :func:`pick`, JSON); the templates of each key are stored once per language. Reading
a row in another language is pass 1 with that language's template (cached per definition) and pass 2:
a storm of transitions still writes small rows and never formats a message.

An unknown placeholder is kept verbatim rather than raising: a message must never stop an alarm.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from scada.i18n import LANGUAGES, Lang

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


def by_language(message: str | Mapping[Lang, str], site_lang: str) -> dict[str, str]:
    """``{lang: template}`` for every catalogue language.

    A plain string is the site language's template; a language the rule does not give reads the site
    language's template (or, failing that, the first one given): a message is never missing.
    """
    given: dict[str, str] = ({site_lang: message} if isinstance(message, str)
                             else {str(k): v for k, v in message.items()})
    fallback = given.get(site_lang) or next(iter(given.values()))
    return {lang: given.get(lang, fallback) for lang in LANGUAGES}


def message_key(rule: str, templates: Mapping[str, str]) -> str:
    """``"<rule>#<digest of its templates>"``: the same wording, the same key; a reworded rule, a new one."""
    digest = hashlib.sha256(json.dumps(dict(sorted(templates.items())), ensure_ascii=False).encode()).hexdigest()
    return f"{rule}#{digest[:12]}"


def static_fields(templates: Iterable[str]) -> tuple[str, ...]:
    """The static fields (pass 1) any of ``templates`` reads, sorted: what the journal keeps per alarm."""
    roots: set[str] = set()
    for t in templates:
        roots |= StaticTemplate(t).roots
    return tuple(sorted(roots - LIVE_FIELDS))


def pick(fields: Iterable[str], *sources: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each of ``fields`` from the first of ``sources`` that has it (absent ones left out)."""
    out: dict[str, Any] = {}
    for f in fields:
        for src in sources:
            if f in src:
                out[f] = src[f]
                break
    return out


#: one encoder, built once (``json.dumps`` with options builds a new one per call: a full city calls it 10^5 times)
_PARAMS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
#: the fields a rule's own alarm gives (tag, units, area): other fields are the same for the alarms of one equipment
ALARM_FIELDS = frozenset({"tag", "tag_name", "index", "units", "area"})
_REPEAT = re.compile(r"\{i(?::[^}]*)?\}")  # a template tag's repetition variable: {i}, {i:02d}


def repeat_index(template_tag: str, tag: str) -> str:
    """The number a repeated tag carries (``lamp_{i:02d}/status``, ``lamp_03/status`` → ``"3"``); "" when the
    tag is not repeated. What a message names for a person instead of the tag's identifier."""
    parts = _REPEAT.split(template_tag)
    if len(parts) != 2:
        return ""
    m = re.fullmatch(re.escape(parts[0]) + r"(\d+)" + re.escape(parts[1]), tag)
    return str(int(m.group(1))) if m else ""


def params_json(params: Mapping[str, Any]) -> str:
    """The static parameters of one alarm as the journal stores them (compact, keys sorted: equal ⇒ same text)."""
    return _PARAMS(params)


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
