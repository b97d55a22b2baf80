"""A configuration reload as one transaction over the server's components: all of them switch, or none.

    check_candidate(settings, endpoints)   tags.yaml + alarms.yaml (+ endpoints) → CityConfig, and
                                           commands.yaml against it → Vocabulary; every problem at once;
                                           the files' fingerprint (what an approval approves)
    prepare_all(components, candidate, new_db)
      1 prepare   every TwoPhase component builds its new state aside (new alarm engine, new fail-safe
                  layer on the new vocabulary...) while the old one keeps running; one failure → every
                  prepared state is discarded and the reload is refused as a whole (ReloadRefused)
    apply_all(components, old, new, old_db, new_db)
      2 apply     in start order, each component switches to its prepared state
                  a failure → the ones already switched, and the failing one, are applied back to the old
                  configuration and tag database in reverse order → ReloadFailed(component, why)

A component's ``apply`` builds what it was not given prepared (so applying the old configuration back is
the same call), and sets its status from what then runs (a later good reload clears an old "down").
The policy around it — what needs a second person, the journal, the audit, the P1 system alarm — is the
server's (:meth:`server.app.ScadaServer.reload`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from failsafe.vocabulary import Vocabulary, load_vocabulary
from scada.config import CityConfig, check_city
from scada.errors import ConfigProblem
from scada.tagdb import TagDatabase
from server.components.base import Component
from server.components.failsafe import check_commands, commands_file
from server.settings import ServerSettings

log = logging.getLogger(__name__)

__all__ = ["Candidate", "ReloadFailed", "ReloadRefused", "TwoPhase", "apply_all", "carry_over", "check_candidate",
           "describe_diff", "diff_configs", "discard_all", "fingerprint", "prepare_all"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A validated configuration not yet applied."""

    config: CityConfig
    vocabulary: Vocabulary | None  # None: no commands.yaml (every command refused, no monitor)
    commands: Path
    fingerprint: str


@runtime_checkable
class TwoPhase(Protocol):
    """A component whose new state is built before any component switches (its ``apply`` then uses it)."""

    name: str

    async def prepare(self, candidate: Candidate, tagdb: TagDatabase) -> None: ...

    def discard(self) -> None: ...


class ReloadRefused(Exception):
    """A component cannot prepare the new configuration: nothing switched."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ReloadFailed(Exception):
    """A component failed to switch after preparation; every component was applied back."""

    def __init__(self, component: str, why: str, rollback_problems: list[str]) -> None:
        super().__init__(f"reload failed in {component}: {why}")
        self.component = component
        self.why = why
        self.rollback_problems = rollback_problems


def fingerprint(config: CityConfig, commands: Path) -> str:
    """SHA-256 over every file the configuration was read from (and commands.yaml): an approval applies exactly
    the files that were shown."""
    h = hashlib.sha256()
    for path in sorted({*map(Path, config.files), commands}, key=str):
        h.update(str(path).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"(missing)")
        h.update(b"\0")
    return h.hexdigest()


def check_candidate(settings: ServerSettings, endpoints: dict[str, str],
                    require_commands: bool) -> tuple[Candidate | None, list[ConfigProblem]]:
    """The city and its command vocabulary, validated; (None, every problem) otherwise. ``require_commands``:
    a missing commands.yaml is a problem (the fail-safe layer runs and cannot go on without it)."""
    config, problems = check_city(settings.tags, settings.alarms, endpoints)
    if problems or config is None:
        return None, list(problems)
    path = commands_file(settings)
    problems = check_commands(settings, config)  # every check of commands.yaml against this city
    if problems:
        return None, problems
    vocab: Vocabulary | None = None
    if path.is_file():
        vocab = load_vocabulary(path, config)
    elif require_commands:
        return None, [ConfigProblem(str(path), 0, "command vocabulary",
                                    "not found: the fail-safe layer (command gate, leases, field-safety monitor) "
                                    "is running and cannot run without it")]
    return Candidate(config, vocab, path, fingerprint(config, path)), []


async def prepare_all(components: Sequence[Component], candidate: Candidate, new_db: TagDatabase) -> None:
    """Phase 1: every TwoPhase component builds its new state aside; ReloadRefused (all discarded) if one cannot."""
    prepared: list[TwoPhase] = []
    for comp in components:
        if not isinstance(comp, TwoPhase):
            continue
        try:
            await comp.prepare(candidate, new_db)
            prepared.append(comp)
        except Exception as exc:  # any failure refuses the whole reload: nothing has switched yet
            log.exception("%s: cannot prepare the new configuration", comp.name)
            for p in [*prepared, comp]:
                p.discard()
            raise ReloadRefused([f"{comp.name}: cannot prepare the new configuration: {exc}"]) from exc


def discard_all(components: Sequence[Component]) -> None:
    """Drop every prepared state (a reload that stops after phase 1: refused, or waiting for an approval)."""
    for comp in components:
        if isinstance(comp, TwoPhase):
            comp.discard()


async def apply_all(components: Sequence[Component], old: CityConfig, new: CityConfig, old_db: TagDatabase,
                    new_db: TagDatabase) -> dict[str, Any]:
    """Phase 2: apply in order; on a failure apply the switched ones (and the failing one) back in reverse order
    and raise ReloadFailed. Returns what each component applied."""
    results: dict[str, Any] = {}
    switched: list[Component] = []
    for comp in components:
        try:
            results[comp.name] = await comp.apply(old, new, new_db)
            switched.append(comp)
        except Exception as exc:  # roll every component back to the running configuration, then say which failed
            log.exception("%s: reload failed after preparation; rolling back", comp.name)
            discard_all(components)
            problems: list[str] = []
            for back in reversed([*switched, comp]):  # the failing one too: it may have switched in part
                try:
                    await back.apply(new, old, old_db)
                except Exception as rb:  # the others still roll back; this one is reported down
                    log.exception("%s: rollback failed", back.name)
                    back.health().set("down", f"rollback after a failed reload failed: {rb!r}")
                    problems.append(f"{back.name}: rollback failed: {rb!r}")
            raise ReloadFailed(comp.name, repr(exc), problems) from exc
    return results


# ---------------------------------------------------------------------- what a reload changes
def diff_configs(old: CityConfig, new: CityConfig) -> dict[str, Any]:
    """Devices and equipment added / removed / changed, and tag counts, between two configurations."""
    def dev_key(d: Any) -> tuple[Any, ...]:
        return (d.protocol, json.dumps(d.connection, sort_keys=True, default=str), d.scan, d.period_s,
                d.timeout_s, d.retries, tuple(d.tags))

    old_d, new_d = old.devices, new.devices
    return {
        "devices_added": sorted(set(new_d) - set(old_d)),
        "devices_removed": sorted(set(old_d) - set(new_d)),
        "devices_changed": sorted(n for n in set(old_d) & set(new_d) if dev_key(old_d[n]) != dev_key(new_d[n])),
        "equipment_added": sorted(set(new.equipment) - set(old.equipment))[:500],
        "equipment_removed": sorted(set(old.equipment) - set(new.equipment))[:500],
        "tags_before": len(old.tags), "tags_after": len(new.tags),
        "alarm_rules_before": len(old.alarm_rules), "alarm_rules_after": len(new.alarm_rules),
    }


def describe_diff(generation: int, diff: dict[str, Any]) -> str:
    """One line for the journal: ``generation 2: devices +C9999 -CAM01; equipment +1 -1; tags 2101 → 2110``."""
    def names(key: str, sign: str) -> str:
        items = diff.get(key) or []
        shown = " ".join(sign + str(n) for n in items[:10])
        return shown + (f" (+{len(items) - 10} more)" if len(items) > 10 else "")

    devices = " ".join(p for p in (names("devices_added", "+"), names("devices_removed", "-"),
                                   names("devices_changed", "~")) if p) or "unchanged"
    return (f"generation {generation}: devices {devices}; equipment +{len(diff.get('equipment_added') or [])} "
            f"-{len(diff.get('equipment_removed') or [])}; tags {diff.get('tags_before')} → {diff.get('tags_after')}; "
            f"alarm rules {diff.get('alarm_rules_before')} → {diff.get('alarm_rules_after')}")


def carry_over(old: TagDatabase, new: TagDatabase) -> int:
    """Copy live values of tags present in both databases (same name and type); returns how many."""
    pairs = [(i, old.index[n]) for i, n in enumerate(new.names)
             if n in old.index and old.defs[old.index[n]].dtype == new.defs[i].dtype]
    if not pairs:
        return 0
    ni = np.array([p[0] for p in pairs], dtype=np.int64)
    oi = np.array([p[1] for p in pairs], dtype=np.int64)
    new.values[ni] = old.values[oi]
    new.qualities[ni] = old.qualities[oi]
    new.source_ns[ni] = old.source_ns[oi]
    new.receive_ns[ni] = old.receive_ns[oi]
    for a, b in pairs:
        if b in old.strings:
            new.strings[a] = old.strings[b]
    return len(pairs)
