"""Fixtures: the shipped city + commands.yaml, a fake field on a fake clock, and the whole fail-safe stack."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from failsafe.audit import AuditLog
from failsafe.gate import CommandGate
from failsafe.leases import LeaseManager
from failsafe.monitor import FieldSafetyMonitor
from failsafe.types import CommandRequest, CommandResult, FailsafeAlarm, Principal
from failsafe.vocabulary import Vocabulary, load_vocabulary
from scada.config.loader import load_city
from scada.config.model import CityConfig
from scada.tagdb import TagDatabase
from tests.failsafe.fakes import FakeClock, FakeField

ROOT = Path(__file__).resolve().parents[2]
AUDIT_KEY = b"tests-failsafe-audit-key-32bytes"  # the audit log is always keyed (failsafe.audit)

ALICE = Principal("alice", frozenset({"operator"}), workstation="ws-1")
BOB = Principal("bob", frozenset({"supervisor"}), workstation="ws-2")
CAROL = Principal("carol", frozenset({"operator"}), workstation="ws-3")
VIEWER = Principal("victor", frozenset({"viewer"}), workstation="ws-4")


@functools.cache
def city() -> CityConfig:
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


@functools.cache
def vocabulary() -> Vocabulary:
    return load_vocabulary(ROOT / "commands.yaml", city())


@dataclass
class Stack:
    city: CityConfig
    vocab: Vocabulary
    clock: FakeClock
    field: Any  # FakeField or SimField
    db: TagDatabase
    audit: AuditLog
    leases: LeaseManager
    gate: CommandGate
    tmp: Path
    alarms: list[FailsafeAlarm] = field(default_factory=list)
    watch: list[str] | None = None  # poll only these equipment (speed); None = all
    monitor: FieldSafetyMonitor | None = None

    def poll(self) -> None:
        self.field.poll(self.db, self.watch)

    async def run_for(self, seconds: float, dt: float = 0.5) -> None:
        """Advance the fake clock, polling the field and ticking leases like the server would."""
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.advance(min(dt, end - self.clock.now))
            self.poll()
            if self.monitor is not None:
                self.monitor.check()
            await self.leases.tick()

    async def cmd(self, verb: str, *targets: str, user: Principal = ALICE, **params: object) -> CommandResult:
        return await self.gate.execute(CommandRequest(verb, tuple(targets), user, dict(params)))  # type: ignore[arg-type]

    def restart(self) -> Stack:
        """A new server process on the same files (audit log, lease store) and the same field."""
        audit = AuditLog(self.tmp / "audit", AUDIT_KEY, fsync=False, clock=self.clock)
        leases = LeaseManager(self.city, self.vocab, self.field, audit, store=self.tmp / "leases.json",
                              clock=self.clock)
        alarms: list[FailsafeAlarm] = []
        gate = CommandGate(self.city, self.vocab, self.field, audit, leases, reader=self.db, alarms=alarms.append,
                           clock=self.clock, sleep=self.clock.sleep)
        return Stack(self.city, self.vocab, self.clock, self.field, self.db, audit, leases, gate, self.tmp, alarms,
                     self.watch)


def make_stack(tmp: Path, vocab: Vocabulary | None = None, *, start: float | None = None,
               field_factory: Callable[[CityConfig, FakeClock], Any] | None = None) -> Stack:
    c = city()
    v = vocab or vocabulary()
    clock = FakeClock() if start is None else FakeClock(start)
    fld = FakeField.build(c, clock, v) if field_factory is None else field_factory(c, clock)
    db = TagDatabase(c.tags)
    audit = AuditLog(tmp / "audit", AUDIT_KEY, fsync=False, clock=clock)
    leases = LeaseManager(c, v, fld, audit, store=tmp / "leases.json", clock=clock)
    alarms: list[FailsafeAlarm] = []
    gate = CommandGate(c, v, fld, audit, leases, reader=db, alarms=alarms.append, clock=clock, sleep=clock.sleep)
    s = Stack(c, v, clock, fld, db, audit, leases, gate, tmp, alarms)
    s.poll()
    return s


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)
