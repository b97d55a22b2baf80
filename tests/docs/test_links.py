"""Every relative link in the project's Markdown resolves to a file that exists.

Checks ``[text](target)`` and ``![alt](target)`` in README.md, docs/ and the packages' README files;
web links (http, https, mailto) and pure anchors are not followed (no network in tests).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".venv", ".git", "node_modules", ".hypothesis", ".pytest_cache"}
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_FENCE = re.compile(r"```.*?```", re.S)


def markdown_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md") if not SKIP_DIRS & set(p.relative_to(ROOT).parts))


def relative_links(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    text = CODE_FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep line numbers
    out = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append((text.count("\n", 0, m.start()) + 1, target))
    return out


def test_the_docs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "BENCHMARKS.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    dead = []
    for line, target in relative_links(path):
        file_part = target.split("#", 1)[0]
        if file_part and not (path.parent / file_part).exists():
            dead.append(f"{path.relative_to(ROOT)}:{line}: link to {target!r}: no such file")
    assert not dead, "\n".join(dead)


def test_a_dead_link_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("see [here](missing.md) and [web](https://example.org) and [top](#top)\n"
                    "```\n[in code](not-checked.md)\n```\n", encoding="utf-8")
    assert relative_links(page) == [(1, "missing.md")]
