"""Layouts against the field's phaseConcurrency (failsafe/concurrency.py): pure table tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from failsafe.concurrency import check_layouts, parse_concurrency, refused_pairs, stricter
from failsafe.vocabulary import CompatibilityMatrix, load_vocabulary
from tests.failsafe.conftest import ROOT, city


def m(phases: int, *pairs: tuple[int, int]) -> CompatibilityMatrix:
    return CompatibilityMatrix(phases, frozenset(frozenset(p) for p in pairs))


CROSS4_FIELD = {1: frozenset({2}), 2: frozenset({1}), 3: frozenset({4}), 4: frozenset({3})}
ALL4 = m(4, (1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))


@pytest.mark.parametrize(("layout", "field", "refused"), [
    (m(4, (1, 2), (3, 4)), CROSS4_FIELD, []),  # the layout agrees with the controller
    (m(4, (1, 2)), CROSS4_FIELD, []),  # stricter than the field: fine
    (m(4), CROSS4_FIELD, []),  # every pair conflicting: fine
    (ALL4, CROSS4_FIELD, [(1, 3), (1, 4), (2, 3), (2, 4)]),  # "all pairs compatible"
    (m(4, (1, 3)), {1: frozenset({3}), 3: frozenset()}, [(1, 3)]),  # one-sided field answer → conflicting
    (m(8, (1, 5)), CROSS4_FIELD, []),  # phase 5 absent from a 4-phase controller: never green, no risk
    (m(4, (1, 2)), {1: frozenset(), 2: frozenset()}, [(1, 2)]),  # a controller with no concurrency at all
])
def test_refused_pairs(layout: CompatibilityMatrix, field: dict[int, frozenset[int]],
                       refused: list[tuple[int, int]]) -> None:
    assert refused_pairs(layout, field) == refused


@pytest.mark.parametrize(("layout", "field", "permissive"), [
    (ALL4, CROSS4_FIELD, {(1, 2), (3, 4)}),  # field ∩ layout
    (m(4, (1, 2)), CROSS4_FIELD, {(1, 2)}),
    (m(8, (1, 2), (5, 6)), CROSS4_FIELD, {(1, 2), (5, 6)}),  # absent phases keep the layout's word
    (ALL4, None, {(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)}),  # not read yet: the layout
])
def test_stricter_is_field_and_layout(layout: CompatibilityMatrix, field: dict[int, frozenset[int]] | None,
                                      permissive: set[tuple[int, int]]) -> None:
    got = stricter(layout, field)
    assert {tuple(sorted(p)) for p in got.permissive} == permissive
    assert got.phases == layout.phases


@pytest.mark.parametrize(("raw", "phases"), [
    (b"\x02\x05", {2, 5}), ("\x02\x05", {2, 5}), (b"", set()), ("", set()), (b"\x00\x03", {3}),
])
def test_parse_concurrency(raw: str | bytes, phases: set[int]) -> None:
    assert parse_concurrency(raw) == phases


def all_pairs_layout(tmp: Path) -> Path:
    """The shipped commands.yaml with J004 declared "all pairs compatible" (its line marked)."""
    text = (ROOT / "commands.yaml").read_text(encoding="utf-8")
    assert "  J004: cross4\n" in text
    path = tmp / "commands.yaml"
    path.write_text(text.replace("  J004: cross4\n", "  J004: {phases: 4, permissive: [[1, 2], [1, 3], [1, 4], "
                                                     "[2, 3], [2, 4], [3, 4]]}\n"), encoding="utf-8")
    return path


def test_check_layouts_names_file_line_and_junction(tmp_path: Path) -> None:
    path = all_pairs_layout(tmp_path)
    vocab = load_vocabulary(path, city())
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("  J004:"))
    fields = {"J004": CROSS4_FIELD, "J003": CROSS4_FIELD, "J005": None}
    problems = check_layouts(vocab, fields.get, ["J003", "J004", "J005"])
    assert len(problems) == 1
    assert str(problems[0]).startswith(f"{path}:{line}: junction 'J004': its layout (junctions.J004) declares "
                                       f"phases 1+3, 1+4, 2+3, 2+4 compatible")


def test_check_layouts_names_the_shared_layout() -> None:
    """A junction whose entry names a shared layout: its line, and the layout's name."""
    vocab = load_vocabulary(ROOT / "commands.yaml", city())
    text = (ROOT / "commands.yaml").read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if t.startswith("  J003:"))
    problems = check_layouts(vocab, {"J003": {1: frozenset(), 2: frozenset(), 3: frozenset(), 4: frozenset()}}.get,
                             ["J003"])
    assert [p.line for p in problems] == [line]
    assert "(junctions.J003: layout 'cross4')" in problems[0].what and problems[0].who == "junction 'J003'"
