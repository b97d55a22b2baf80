"""Babel extractor for the texts the product shows that are written in YAML files, not in Python.

    tags.yaml                enum: {5: fault_monitor}         → msgctxt "enum", msgid "fault monitor"
    hmi/layouts/*.yaml       title: Lighting district          → msgid "Lighting district"
                             labels: {true: ok, false: LOST}   → msgid "ok", "LOST"
                             corridors: [{name: "North ring"}] → msgid "North ring"
                             approaches: [{name: "West (main)"}] → msgid "West (main)"

babel.cfg maps these files to this extractor (``[extractors] yaml_texts = scada.locale.yaml_texts:extract``),
so ``pybabel extract`` puts them in ``messages.pot`` with the sources' strings and ``tests/core/test_i18n.py``
holds them to the same rules (in the catalogue, translated into French).

Enum labels are a label catalogue keyed by the label, in its own context ``enum`` (the label ``flash`` of a
flash status is not the verb "flash"): :func:`scada.format.enum_label` shows ``pgettext("enum", label)``,
so tags.yaml keeps one label per code (``scada check`` unchanged) and a label the catalogue does not know
reads as it is written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import IO, Any

import yaml

ENUM_CONTEXT = "enum"  # the msgctxt of tags.yaml's enum labels
#: a layout's keys whose text is shown: a title, or the labels of a column's values
_TEXT_KEYS = frozenset({"title"})
_LABEL_KEYS = frozenset({"labels"})
#: lists whose items' ``name`` is shown: a corridor's title, a junction approach's label on the synoptic
_NAMED = frozenset({"corridors", "approaches"})


def enum_msgid(label: str) -> str:
    """A tags.yaml enum label as shown and looked up: underscores as spaces (``fault_monitor`` → ``fault monitor``)."""
    return label.replace("_", " ")


def _texts(node: Any, parent: str = "") -> Iterator[tuple[str | None, str]]:
    """(context, text) of every shown text under ``node``, in document order."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "enum" and isinstance(value, Mapping):
                yield from ((ENUM_CONTEXT, enum_msgid(v)) for v in value.values() if isinstance(v, str) and v)
            elif key in _LABEL_KEYS and isinstance(value, Mapping):
                yield from ((None, v) for v in value.values() if isinstance(v, str) and v)
            elif (key in _TEXT_KEYS or (key == "name" and parent in _NAMED)) and isinstance(value, str):
                yield None, value
            else:
                yield from _texts(value, str(key))
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item, parent)


def extract(fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str],
            options: Mapping[str, Any]) -> Iterator[tuple[int, str, str | tuple[str, str], list[str]]]:
    """Babel's extractor interface: (line, function, message(s), comments) per shown text of a YAML file."""
    data = yaml.safe_load(fileobj.read().decode("utf-8"))
    for context, text in _texts(data):
        if context is None:
            yield 1, "_", text, []
        else:
            yield 1, "pgettext", (context, text), []
