"""BENCHMARKS.md as blocks of run output between markers, and the prose around them.

Each area's figures sit between two HTML comments that a run writes and a later run replaces::

    ## Tag database

    <!-- bench area=tagdb commit=29edfff date=2026-11-23T02:15Z deps=3f2a9c0d1e4b5a67 -->
    Commit `29edfff`, run 2026-11-23 02:15 UTC on <machine> ...
    ...the section exactly as the run printed it...
    <!-- /bench area=tagdb -->

    Notes written by people (what the figures mean; never a figure) stay outside the markers and are
    kept by ``python -m bench --out``.

``commit`` is the short hash of the measured tree (``+dirty`` when the files the area depends on had
uncommitted changes), ``date`` the run's start in UTC, ``deps`` a digest of the content of those files
(``--stale`` compares it with the tree's). A block marked ``legacy`` holds figures copied by hand
before ``--out`` existed; its commit is the one that wrote them into BENCHMARKS.md, and it is always
listed as stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BEGIN = re.compile(r"^<!-- bench (?P<attrs>[^>]*?) -->$", re.MULTILINE)
END = re.compile(r"^<!-- /bench area=(?P<area>[\w-]+) -->$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    area: str
    attrs: dict[str, str]  # key=value tokens; a bare flag (``legacy``) maps to ""
    start: int  # offset of the begin marker
    end: int  # offset just past the end marker
    body: str  # between the markers

    @property
    def commit(self) -> str:
        return self.attrs.get("commit", "")

    @property
    def legacy(self) -> bool:
        return "legacy" in self.attrs


def _attrs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        out[key] = value
    return out


def parse(text: str) -> list[Block]:
    """Every block of the document, in order; ValueError on a marker without its pair."""
    blocks = []
    pos = 0
    while (m := BEGIN.search(text, pos)) is not None:
        attrs = _attrs(m.group("attrs"))
        area = attrs.get("area", "")
        if not area:
            raise ValueError(f"bench marker without area= at offset {m.start()}")
        end = END.search(text, m.end())
        nxt = BEGIN.search(text, m.end())
        if end is None or end.group("area") != area or (nxt is not None and nxt.start() < end.start()):
            raise ValueError(f"bench block {area!r} has no matching <!-- /bench area={area} -->")
        blocks.append(Block(area, attrs, m.start(), end.end(), text[m.end():end.start()].strip("\n")))
        pos = end.end()
    stray = [m.group("area") for m in END.finditer(text) if not any(b.start < m.start() < b.end for b in blocks)]
    if stray:
        raise ValueError(f"end markers without a begin marker: {stray}")
    return blocks


def render(area: str, attrs: dict[str, str], body: str) -> str:
    tokens = " ".join(f"{k}={v}" if v else k for k, v in {"area": area, **attrs}.items())
    return f"<!-- bench {tokens} -->\n{body.strip(chr(10))}\n<!-- /bench area={area} -->"


def update(text: str, area: str, title: str, block: str) -> str:
    """Replace the area's block (the prose around it is kept), or add a ``## title`` section at the end."""
    mine = [b for b in parse(text) if b.area == area]
    if len(mine) > 1:
        raise ValueError(f"BENCHMARKS.md has {len(mine)} blocks for {area!r}: keep one")
    if mine:
        return text[:mine[0].start] + block + text[mine[0].end:]
    return text.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"


def sections(text: str) -> list[tuple[str, str]]:
    """The ``## `` sections of the document as (heading, text up to the next ``## ``)."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
