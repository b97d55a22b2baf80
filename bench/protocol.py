"""What a bench module gives the harness: markdown for people, figures for comparisons, its inputs.

A bench module ``bench/bench_<area>.py`` exposes

* ``main(quick: bool = False) -> str`` — the markdown section (every module, the original protocol);
* ``measure(quick: bool = False) -> Section`` — optional: the same markdown plus the figures that can
  be compared between two code revisions (``--baseline-rev``), each with its unit and the direction that
  is better. ``main`` is then ``measure(quick).markdown``;
* ``TITLE`` — the ``## `` heading of the area in BENCHMARKS.md (a literal: read without importing);
* ``DEPENDS`` — a literal list of the paths (files or directories, relative to the repository root) whose content the
  figures depend on, besides the module itself: a section is stale when one of them changed.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal, Protocol, cast

Better = Literal["higher", "lower"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Metric:
    """One comparable figure of a run."""

    value: float
    unit: str
    better: Better


@dataclass(frozen=True)
class Section:
    markdown: str
    metrics: dict[str, Metric] = field(default_factory=dict)


class _Measures(Protocol):
    def __call__(self, quick: bool = False) -> Section: ...


class _Main(Protocol):
    def __call__(self, quick: bool = False) -> str: ...


def areas() -> list[str]:
    """Every area with a ``bench_<area>.py`` module, sorted."""
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(HERE)])
                  if m.name.startswith("bench_"))


def module(area: str) -> ModuleType:
    if area not in areas():
        raise SystemExit(f"unknown bench area {area!r}; areas: {', '.join(areas())}")
    return importlib.import_module(f"bench.bench_{area}")


def _declared(area: str, name: str) -> object:
    """A literal module-level constant of the bench module, read without importing it.

    ``--stale`` and ``--out`` must work while the code a bench imports is broken or half-edited.
    """
    if area not in areas():
        raise SystemExit(f"unknown bench area {area!r}; areas: {', '.join(areas())}")
    tree = ast.parse((HERE / f"bench_{area}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def title(area: str) -> str:
    return str(_declared(area, "TITLE") or area.capitalize())


def depends(area: str) -> list[str]:
    """Repository paths the area's figures depend on: its bench module and its declared ``DEPENDS``."""
    declared = cast(list[str], _declared(area, "DEPENDS") or [])
    return [f"bench/bench_{area}.py", *declared]


def run(area: str, quick: bool) -> Section:
    """Run one area in this process, through ``measure`` when the module has it."""
    mod = module(area)
    if hasattr(mod, "measure"):
        return cast(_Measures, mod.measure)(quick=quick)
    return Section(cast(_Main, mod.main)(quick=quick))
