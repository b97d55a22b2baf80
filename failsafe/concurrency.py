"""Layouts checked against the field: commands.yaml's compatibility matrices versus the controllers' own.

Each controller serves its compatibility matrix as NTCIP 1202 phaseConcurrency
(1.3.6.1.4.1.1206.4.2.1.1.2.1.23.<phase>, an OCTET STRING of the phase numbers that may be green with
that phase; the junction template reads it as ``phase_concurrency_<p>``). A layout that declares a pair
compatible which the controller treats as conflicting would make the field-safety monitor blind to exactly
that conflicting green, so it is refused::

    commands.yaml layout ──┐
                           ├─ check_layouts(vocab, read_concurrency, junctions) ─► [ConfigProblem]
    field phaseConcurrency ┘     (pure; "commands.yaml:237: junction 'J004': ...")
         ▲
         └─ read_concurrency(junction) → {phase: phases concurrent with it}, or None when not read yet
            (tagdb_reader: from the poller's tag database, once every phase tag has had a sample)

    stricter(layout, field)      the matrix the monitor keeps checking with: a pair is permissive only if
                                 BOTH the layout and the controller say so (field ∩ layout)

Where it runs: at a reload (server/components/failsafe.py ``FailsafeComponent.prepare``, with what the
running monitor last read in full, else the values carried into the new tag database: a refused layout
refuses the reload) and continuously in the field-safety monitor (failsafe/monitor.py), which can only
verify a junction once it has been read: until then the layout is "unverified".

Reading the field's data: a phase the controller does not have (noSuchInstance → quality bad_config) is
absent: it can never be green, so a layout pair naming it is no risk. A one-sided field answer (p lists q
but q does not list p) counts as conflicting (stricter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from failsafe.vocabulary import CompatibilityMatrix, Vocabulary
from scada.config.model import CityConfig
from scada.config.yamlsource import line_of, load_yaml
from scada.errors import ConfigProblem
from scada.quality import Quality
from scada.tagdb import TagDatabase

__all__ = ["CONCURRENCY_TAG", "FieldConcurrency", "ReadConcurrency", "check_layouts", "concurrency_tags",
           "parse_concurrency", "refused_pairs", "stricter", "tagdb_reader"]

CONCURRENCY_TAG = "phase_concurrency_"  # + phase number: the junction template's tags
_TAG = re.compile(rf"^{CONCURRENCY_TAG}(\d+)$")

#: phase → the phases the controller lets be green with it (only the phases the controller has)
FieldConcurrency = Mapping[int, frozenset[int]]
#: junction id → its field concurrency, or None while it has not been read
ReadConcurrency = Callable[[str], FieldConcurrency | None]


def parse_concurrency(value: str | bytes) -> frozenset[int]:
    """phaseConcurrency as served (one byte per phase number; the SNMP driver hands text: one char each)."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return frozenset(b for b in raw if b > 0)


def _field_allows(field: FieldConcurrency, a: int, b: int) -> bool:
    return b in field.get(a, frozenset()) and a in field.get(b, frozenset())


def refused_pairs(layout: CompatibilityMatrix, field: FieldConcurrency) -> list[tuple[int, int]]:
    """Pairs the layout declares compatible that the controller treats as conflicting (both phases present)."""
    out: list[tuple[int, int]] = []
    for pair in layout.permissive:
        a, b = sorted(pair)
        if a in field and b in field and not _field_allows(field, a, b):
            out.append((a, b))
    return sorted(out)


def stricter(layout: CompatibilityMatrix, field: FieldConcurrency | None) -> CompatibilityMatrix:
    """field ∩ layout: permissive only where both agree (phases absent from the field keep the layout's word:
    they can never show green)."""
    if field is None:
        return layout
    keep = frozenset(p for p in layout.permissive
                     if not (all(x in field for x in p) and not _field_allows(field, *sorted(p))))
    return layout if keep == layout.permissive else CompatibilityMatrix(layout.phases, keep)


def _where(vocab: Vocabulary, junction: str, tree: object) -> tuple[int, str]:
    """(line, what) of the layout a junction uses: its own entry, else the named layout, else the default."""
    matrix = vocab.matrix_for(junction)
    if tree is None:
        return 0, "junctions"
    own = line_of(tree, ("junctions", junction))
    if own and own != line_of(tree, ("junctions",)):
        entry = tree.get("junctions", {}).get(junction) if isinstance(tree, dict) else None
        return own, f"junctions.{junction}" + (f": layout '{entry}'" if isinstance(entry, str) else "")
    for name, m in vocab.layouts.items():
        if m == matrix:
            return line_of(tree, ("junctions", "layouts", name)), f"layout '{name}'"
    return line_of(tree, ("junctions", "default")), "junctions.default"


def check_layouts(vocab: Vocabulary, read_concurrency: ReadConcurrency,
                  junctions: Iterable[str]) -> list[ConfigProblem]:
    """Every junction whose layout declares compatible a pair its controller treats as conflicting.

    Junctions not read yet (``read_concurrency`` → None) are not problems here: the caller shows them as
    unverified. Problems read ``commands.yaml:LINE: junction 'J004': ...``.
    """
    tree: object = None
    problems: list[ConfigProblem] = []
    for jid in junctions:
        field = read_concurrency(jid)
        if field is None:
            continue
        pairs = refused_pairs(vocab.matrix_for(jid), field)
        if not pairs:
            continue
        if tree is None and Path(vocab.source).is_file():
            tree, _ = load_yaml(Path(vocab.source))
        line, what = _where(vocab, jid, tree)
        listed = ", ".join(f"{a}+{b}" for a, b in pairs)
        problems.append(ConfigProblem(vocab.source, line, f"junction '{jid}'",
                                      f"its layout ({what}) declares phases {listed} compatible, but the controller's "
                                      f"phaseConcurrency says they conflict: the layout is refused"))
    return problems


def concurrency_tags(db: TagDatabase, city: CityConfig, junction: str) -> dict[int, int]:
    """phase → tag index of a junction's phase_concurrency_<p> tags (empty: the template does not read them)."""
    eq = city.equipment.get(junction)
    if eq is None:
        return {}
    out: dict[int, int] = {}
    for i in db.equipment_indices(junction):
        m = _TAG.match(db.defs[int(i)].tag)
        if m:
            out[int(m.group(1))] = int(i)
    return out


def read_tags(db: TagDatabase, tags: Mapping[int, int]) -> FieldConcurrency | None:
    """The field concurrency from the tag database, once every phase tag has had an answer; None before (or
    while a tag is bad for another reason than "the controller has no such phase")."""
    if not tags:
        return None
    out: dict[int, frozenset[int]] = {}
    for phase, i in tags.items():
        if db.receive_ns[i] == 0:
            return None
        q = Quality(int(db.qualities[i]))
        if q == Quality.BAD_CONFIG:
            continue  # noSuchInstance: the controller has no such phase
        value = db.value_of(i)
        if not q.is_good or not isinstance(value, (str, bytes)):
            return None
        out[phase] = parse_concurrency(value)
    return out


def tagdb_reader(db: TagDatabase, city: CityConfig) -> ReadConcurrency:
    """A :data:`ReadConcurrency` over the poller's tag database (what the junctions' polls stored)."""
    def read(junction: str) -> FieldConcurrency | None:
        return read_tags(db, concurrency_tags(db, city, junction))
    return read
