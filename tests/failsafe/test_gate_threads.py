"""One gate, two threads, two event loops: what the server does (failsafe.gate, module docstring: threads).

    thread "monitor" (its own loop, like the field-safety thread)    thread "operator" (its own loop, like the main one)
    flash a junction (execute, as the monitor), then return it to     panels: show_message, operate or cancel
    local (select → approve → operate), lock-outs on and off          bollards: lower / return_to_local with approval
                                                                      lighting: set_level 100 (safety-increasing)
                                                                      sweep, pending, reservations, lease ticks
                                   └──────────► one CommandGate, LeaseManager, AuditLog ◄──────────┘

Both hammer the one gate for a few seconds on the fake field (tests/failsafe/fakes.py, every write and read
yielding to its loop like a driver) with a real clock and short windows (select 10 ms on junctions, approval
50 ms) so that the sweeper expires tickets while the other thread operates them. The switch interval is
lowered while they run, so the threads interleave every few bytecodes, not every 5 ms.

Then: no exception in either thread and nothing logged as an error (a "dictionary changed size during
iteration" inside a command would end it as a failure, logged); every ticket final; no reservation left; no
lease stuck half-superseded and at most one in force per equipment; the audit chain verifies; and every
ticket's journal tells one story (one end, and never executed after it expired or was cancelled).

Without the locks (each replaced by a null context) this failed in every run here: 5 of 5 with neither lock,
6 of 6 with only the gate's removed — "dictionary changed size during iteration" in the gate's views
(``pending``) and the lease manager's iterations, commands ending "failed unexpectedly" with it, the lease
store's temporary file raced ("cannot be written"). The journal check (a ticket operated after it expired)
did not trip in those runs: that interleaving needs a deadline to fall within a few bytecodes; it stays as a
check. Kept as the regression test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from failsafe.audit import AuditLog
from failsafe.gate import CommandGate
from failsafe.leases import LeaseManager
from failsafe.types import MONITOR, CommandRequest, FailsafeAlarm, Ticket, TicketState
from scada.config.model import TagDef
from scada.errors import CommandRejected
from scada.quality import Sample, Value
from scada.tagdb import TagDatabase
from tests.failsafe.conftest import ALICE, AUDIT_KEY, BOB, CAROL, city, vocabulary
from tests.failsafe.fakes import FakeClock, FakeField, equipment_of

RUN_S = 3.0
FINAL = {TicketState.FINISHED, TicketState.EXPIRED, TicketState.CANCELLED}
#: journal kinds that end a ticket (a refusal ends it only when it carries the ticket's state: the
#: refusal-only entries of a late approve / operate / cancel do not)
ENDS = {"outcome", "cancel", "select_timeout", "approval_timeout"}


class YieldingField:
    """The fake field as a driver behaves: every write and read gives its event loop a turn first."""

    def __init__(self, field: FakeField) -> None:
        self.field = field

    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None:
        await asyncio.sleep(0)
        await self.field.write(tag, value, tolerance=tolerance)

    async def read(self, tag: TagDef) -> Sample:
        await asyncio.sleep(0)
        return await self.field.read(tag)


class Hammer:
    """The shared stack and what each thread did."""

    def __init__(self, tmp: Path) -> None:
        c = city()
        base = vocabulary()
        # short windows, so that the sweeper (operator thread) expires tickets the monitor thread is operating;
        # no rate limit: the point is many commands at once, not the limiter
        # confirm timeouts cut to 1 s: a command not confirmed must not stall the run
        types = {name: dataclasses.replace(p, confirm_timeout_s=1.0) for name, p in base.types.items()}
        types["junction"] = dataclasses.replace(types["junction"], select_timeout_s=0.01)
        vocab = dataclasses.replace(base, types=types, approval_window_s=0.05, rate_per_user=10**9,
                                    rate_global=10**9)
        field = FakeField.build(c, FakeClock(), vocab)
        db = TagDatabase(c.tags)
        field.poll(db)  # the interlocks' inputs (bollard presence and fault, cabinet schedule) are known, good
        writer = YieldingField(field)
        self.audit = AuditLog(tmp / "audit", AUDIT_KEY, fsync=False)
        self.leases = LeaseManager(c, vocab, writer, self.audit, store=tmp / "leases.json")
        self.alarms: list[FailsafeAlarm] = []
        self.gate = CommandGate(c, vocab, writer, self.audit, self.leases, reader=db, alarms=self.alarms.append)
        self.junctions = [e.id for e in equipment_of(c, "junction")][:4]
        self.panels = [e.id for e in equipment_of(c, "panel")][:3]
        self.bollards = [e.id for e in equipment_of(c, "bollard")][:3]
        self.cabinets = [e.id for e in equipment_of(c, "lighting_cabinet")][:3]
        self.tickets: list[Ticket] = []  # list.append is atomic: both threads record here
        self.errors: list[tuple[str, BaseException]] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.deadline = 0.0

    def keep(self, ticket: Ticket | None) -> Ticket | None:
        if ticket is not None:
            self.tickets.append(ticket)
        return ticket

    async def approve_then_operate(self, ticket: Ticket, user: Any) -> None:
        """Approval by the second person (BOB), then operate; either may find the ticket expired meanwhile."""
        if ticket.state is TicketState.AWAITING_APPROVAL:
            try:
                self.gate.approve(ticket.id, BOB)
            except CommandRejected:
                self.counts["approve_late"] += 1  # the sweeper expired it first: a final state, journalled
                return
        if ticket.state in (TicketState.SELECTED, TicketState.READY):
            result = await self.gate.operate(ticket.id, user)
            self.counts[f"operate_{result.outcome.value if result.outcome else 'none'}"] += 1

    # ------------------------------------------------------------------ the two threads
    async def monitor_like(self) -> None:
        """As the field-safety monitor does on its loop: flash requests, safety lock-outs; and the way back."""
        n = 0
        while time.monotonic() < self.deadline:
            j = self.junctions[n % len(self.junctions)]
            if n % 7 == 3:  # a layout the controller refuses: commands locked out, flash still passes
                self.gate.set_commandable(j, False, "layout refused (test)", by=MONITOR.name, allow_increasing=True)
            result = await self.gate.execute(CommandRequest("flash", (j,), MONITOR, lease_s=0.02 if n % 2 else 30))
            self.counts[f"flash_{result.outcome.value if result.outcome else 'none'}"] += 1
            self.keep(self.gate.status(result.ticket))
            back = self.keep(self.gate.select(CommandRequest("return_to_local", (j,), ALICE)))
            assert back is not None
            await self.approve_then_operate(back, ALICE)
            if n % 7 == 3:
                self.gate.set_commandable(j, True, by=MONITOR.name)
            n += 1

    async def operator_like(self) -> None:
        """As the main loop does: operators' commands on other equipment, the sweeper, the lease loop, views."""
        n = 0
        while time.monotonic() < self.deadline:
            self.gate.sweep()
            for _ in range(5):  # the consoles' views, polled often
                self.gate.pending()
                self.gate.reservations()
                self.leases.leases()
            await self.leases.tick()
            kind = n % 4
            if kind == 0:
                t = self.keep(self.gate.select(CommandRequest("show_message", (self.panels[n % 3],), CAROL,
                                                              {"text": f"message {n}"})))
                assert t is not None
                if n % 8 == 0 and t.state.pending:
                    self.gate.cancel(t.id, CAROL)
                elif n % 8 == 4:
                    pass  # abandoned: a sweep (this thread's or the other's, in its select) expires it
                else:
                    await self.approve_then_operate(t, CAROL)
            elif kind in (1, 2):
                verb = "lower" if kind == 1 else "return_to_local"
                t = self.keep(self.gate.select(CommandRequest(verb, (self.bollards[n % 3],), CAROL, lease_s=1)))
                assert t is not None
                if n % 5 == 0 and t.state.pending:
                    self.gate.cancel(t.id, CAROL)
                else:
                    await self.approve_then_operate(t, CAROL)
            else:
                t = self.keep(self.gate.select(CommandRequest("set_level", (self.cabinets[n % 3],), CAROL,
                                                              {"level": 100}, lease_s=1)))
                assert t is not None
                await self.approve_then_operate(t, CAROL)
            n += 1

    def thread(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> threading.Thread:
        def run() -> None:
            try:
                asyncio.run(work())  # a loop of its own, as the server's two loops
            except BaseException as exc:  # anything, recorded: the test asserts there was none
                self.errors.append((name, exc))

        return threading.Thread(target=run, name=name)


def journal_problems(audit: AuditLog) -> list[str]:
    """Every ticket's entries must tell one story: at most one end; nothing operated after it expired or was
    cancelled; an operate always followed by its outcome (or its refusal)."""
    by_ticket: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in audit.entries():
        if e.get("ticket"):
            by_ticket[str(e["ticket"])].append(e)
    problems: list[str] = []
    for tid, entries in by_ticket.items():
        kinds = [e["kind"] for e in entries]
        ends = [e["kind"] for e in entries if e["kind"] in ENDS or (e["kind"] == "refusal" and "state" in e)]
        if len(ends) > 1:
            problems.append(f"{tid}: ended {len(ends)} times: {kinds}")
        if "operate" in kinds:
            after = kinds[kinds.index("operate") + 1:]
            if {"select_timeout", "approval_timeout", "cancel"} & set(kinds):
                problems.append(f"{tid}: operated although expired or cancelled: {kinds}")
            if not {"outcome", "refusal"} & set(after):
                problems.append(f"{tid}: operated, no outcome: {kinds}")
    return problems


def test_two_loops_hammering_one_gate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Hammer(tmp_path)
    caplog.set_level(logging.WARNING)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads every few bytecodes (default: every 5 ms)
    try:
        h.deadline = time.monotonic() + RUN_S
        threads = [h.thread("monitor", h.monitor_like), h.thread("operator", h.operator_like)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(RUN_S + 60)
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (a lock held across an await?)"
    assert not h.errors, h.errors
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:5]

    time.sleep(0.1)  # the last approval windows pass: what is still pending expires at this sweep
    h.gate.sweep()
    not_final = [(t.id, t.request.verb, t.state.value) for t in h.tickets if t.state not in FINAL]
    assert not not_final, not_final[:5]
    # both threads did real work: commands done, cancelled and expired
    c = dict(h.counts)
    assert c.get("flash_done", 0) >= 20 and c.get("operate_done", 0) >= 50, c
    states = {s: sum(t.state is s for t in h.tickets) for s in TicketState}
    assert states[TicketState.EXPIRED] and states[TicketState.CANCELLED] and states[TicketState.FINISHED], states
    assert h.gate.reservations() == {}
    assert not h.gate.pending()

    stuck = h.leases.leases(("superseding",))
    assert not stuck, [lease.view() for lease in stuck]
    in_force: dict[str, int] = defaultdict(int)
    for lease in h.leases.leases(("active",)):
        in_force[lease.equipment] += 1
    assert all(n == 1 for n in in_force.values()), dict(in_force)
    assert h.leases.store_error is None

    report = h.audit.verify()
    assert report.ok, str(report)
    problems = journal_problems(h.audit)
    assert not problems, problems[:5]
    print(f"{len(h.tickets)} tickets {dict((s.value, n) for s, n in states.items() if n)}; {c}; "
          f"{report.entries} audit entries")
