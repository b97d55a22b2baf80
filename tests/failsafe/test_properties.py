"""Property-based: random sequences of commands, approvals, lease expiries, crashes and faults against the
simulator's own field models (in process, fake clock). After every sequence:

* no simulated junction ever shows conflicting greens (except where the test disabled its cabinet
  monitor on purpose, and then the field-safety monitor raised P1 and requested flash);
* bollards never rise onto a vehicle;
* no write reached a device without passing the gate (each write is explained by an earlier
  journalled ``operate`` of a verb that issues it, a lease refresh/release of it, or a heartbeat);
* every refusal carries a reason naming its step;
* a device that is not under local control always holds a lease, and every device is back under local
  control once the leases have ended (junction local plan, lighting on schedule, bollard local);
* the audit chain verifies across restarts.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from failsafe.gate import STEPS
from failsafe.monitor import FieldSafetyMonitor
from failsafe.types import MONITOR, CommandRequest, Outcome, Principal, Ticket, TicketState
from tests.failsafe.conftest import ALICE, BOB, CAROL, VIEWER, Stack, make_stack
from tests.failsafe.simfield import SimField

NIGHT = 1_735_945_200.0  # 2025-01-03 23:00 UTC: lighting schedules ask for light, the road-class minimum applies
JUNCTIONS = ["J003", "J005", "J001"]  # cross4, nema8, tee
CABINETS = ["C0004", "C0001"]  # M3 (min 50 %), P3 (min 30 %)
BOLLARDS = ["BL01", "BL02"]
PANELS = ["P01"]
EQUIP = JUNCTIONS + CABINETS + BOLLARDS + PANELS
SUP2 = Principal("dana", frozenset({"supervisor"}), workstation="ws-5")
USERS = [ALICE, CAROL, BOB, SUP2, VIEWER]
REASON_STEPS = (*STEPS, "audit")

lease = st.integers(min_value=5, max_value=120)
command = st.one_of(
    st.tuples(st.just("cmd"), st.just("select_plan"), st.sampled_from(JUNCTIONS),
              st.fixed_dictionaries({"plan": st.sampled_from([1, 2, 3, 9, 0])}), lease),
    st.tuples(st.just("cmd"), st.sampled_from(["flash", "return_to_local"]), st.sampled_from(JUNCTIONS),
              st.just({}), lease),
    st.tuples(st.just("cmd"), st.just("set_level"), st.sampled_from(CABINETS),
              st.fixed_dictionaries({"level": st.sampled_from([0, 20, 40, 60, 100])}), lease),
    st.tuples(st.just("cmd"), st.just("return_to_schedule"), st.sampled_from(CABINETS), st.just({}), lease),
    st.tuples(st.just("cmd"), st.sampled_from(["lower", "raise", "return_to_local"]), st.sampled_from(BOLLARDS),
              st.just({}), lease),
    st.tuples(st.just("cmd"), st.just("show_message"), st.sampled_from(PANELS),
              st.fixed_dictionaries({"text": st.sampled_from(["Travaux", "Marché"])}), lease),
    st.tuples(st.just("mass"), st.just("select_plan"), st.just(tuple(JUNCTIONS[:2])), st.just({"plan": 2}), lease),
)
cmd_action = st.tuples(command, st.sampled_from(USERS))
other_action = st.one_of(
    st.tuples(st.just("approve"), st.integers(0, 30), st.sampled_from(USERS)),
    st.tuples(st.just("approve"), st.integers(0, 30), st.sampled_from([BOB, SUP2])),
    st.tuples(st.just("operate"), st.integers(0, 30), st.sampled_from(USERS)),
    st.tuples(st.just("cancel"), st.integers(0, 30), st.sampled_from(USERS)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 2.0, 10.0, 16.0, 45.0, 130.0])),
    st.tuples(st.just("crash"), st.sampled_from([5.0, 40.0, 90.0])),
    st.tuples(st.just("comm"), st.sampled_from(EQUIP), st.booleans()),
    st.tuples(st.just("presence"), st.sampled_from(BOLLARDS), st.booleans()),
    st.tuples(st.just("conflict"), st.sampled_from(JUNCTIONS), st.booleans()),
)
# commands are 40 % of the actions (one_of alone would weight each alternative the same)
action = st.integers(0, 9).flatmap(lambda n: cmd_action if n < 4 else other_action)


class Scenario:
    def __init__(self, tmp: Path) -> None:
        self.stack: Stack = make_stack(tmp, start=NIGHT,
                                       field_factory=lambda c, clock: SimField.build(c, clock, EQUIP))
        self.stack.watch = EQUIP
        self.field: SimField = self.stack.field
        self.tickets: list[Ticket] = []
        self.all_tickets: list[Ticket] = []
        self.conflict_checks = 0
        self._monitor()

    def _monitor(self) -> None:
        if self.stack.monitor is not None:
            self.stack.monitor.stop()
        s = self.stack
        s.monitor = FieldSafetyMonitor(s.city, s.vocab, s.db, s.gate, alarms=s.alarms.append, audit=s.audit,
                                       clock=s.clock).start()

    async def advance(self, seconds: float, dt: float = 0.5) -> None:
        end = self.stack.clock.now + seconds
        while self.stack.clock.now < end - 1e-9:
            await self.stack.run_for(min(dt, end - self.stack.clock.now), dt)
            assert self.stack.monitor is not None
            await self.stack.monitor.process_pending()
            self.check_leased()

    def check_leased(self) -> None:
        """Not local ⇒ the device holds a lease (or its expired lease is still being released)."""
        s = self.stack
        held = {lease.equipment for lease in s.leases.leases(("active", "releasing"))}
        for eq in EQUIP:
            if not self.field.local(eq) and eq not in held and eq not in self.field.comm_down:
                raise AssertionError(f"{eq} is not under local control but holds no lease at {s.clock.now}")

    async def run(self, actions: list[Any]) -> None:
        s = self.stack
        for a in actions:
            kind = a[0]
            if isinstance(kind, tuple):  # a command
                (ckind, verb, target, params, lease_s), user = kind, a[1]
                targets = target if ckind == "mass" else (target,)
                ticket = s.gate.select(CommandRequest(verb, targets, user, dict(params), lease_s=float(lease_s)))
                self.tickets.append(ticket)
                self.all_tickets.append(ticket)
                if ticket.state in (TicketState.SELECTED, TicketState.READY):
                    await s.gate.operate(ticket.id, user)
                how = ticket.outcome.value if ticket.outcome else ticket.state.value
                if ticket.outcome is Outcome.REJECTED:
                    how += " at " + ticket.reason.split(":", 1)[0]
                event(f"{verb}: {how}")
            elif kind in ("approve", "operate", "cancel") and self.tickets:
                ticket = self.tickets[a[1] % len(self.tickets)]
                try:
                    if kind == "approve":
                        s.gate.approve(ticket.id, a[2])
                        if ticket.state is TicketState.SELECTED or ticket.state is TicketState.READY:
                            res = await s.gate.operate(ticket.id, ticket.request.user)
                            event(f"approved {ticket.request.verb}: {res.outcome.value if res.outcome else '-'}")
                    elif kind == "operate":
                        await s.gate.operate(ticket.id, a[2])
                    else:
                        s.gate.cancel(ticket.id, a[2])
                except Exception as exc:
                    assert getattr(exc, "reason", ""), exc  # CommandRejected, with its reason
            elif kind == "advance":
                await self.advance(a[1])
            elif kind == "crash":  # kill -9: only the field runs, then a new server process starts
                if s.monitor is not None:
                    s.monitor.stop()
                for _ in range(int(a[1])):
                    s.clock.advance(1.0)
                self.stack = s = s.restart()
                s.watch = EQUIP
                self.tickets = []  # tickets die with the process
                self._monitor()
                await self.advance(1.0)
            elif kind == "comm":
                (self.field.comm_down.add if a[2] else self.field.comm_down.discard)(a[1])
            elif kind == "presence":
                m = self.field.models[a[1]]
                m.inject("presence") if a[2] else m.clear("presence")
            elif kind == "conflict":
                await self.conflict(a[1], monitor_disabled=a[2])
            self.check_refusals()

    async def conflict(self, jid: str, monitor_disabled: bool) -> None:
        s, m = self.stack, self.field.models[jid]
        if monitor_disabled:
            m.inject("monitor_disabled")
            self.field.monitor_disabled.add(jid)
        m.inject("conflicting_green")
        before = len(s.alarms)
        await self.advance(4.0)
        if monitor_disabled and jid not in self.field.comm_down and m.powered:
            keys = {a.key for a in s.alarms[before:]}
            assert f"failsafe/{jid}/conflicting_green" in keys or m.unit_flash_status != 2, keys
            ops = [e for e in s.audit.entries() if e["kind"] == "operate" and e["user"] == MONITOR.name
                   and e["target"] == [jid]]
            flash_already = m.system_pattern_control == 255 or m.unit_flash_status != 2
            assert ops or flash_already, f"{jid}: the monitor did not request flash"
            self.conflict_checks += 1
            event("conflict shown with the cabinet monitor disabled: field-safety monitor acted")
        m.clear("conflicting_green")
        m.clear("monitor_disabled")
        m.inject("local_reset")
        self.field.monitor_disabled.discard(jid)
        if s.monitor is not None:
            s.monitor.reset(jid, "maint")

    def check_refusals(self) -> None:
        for t in self.all_tickets:
            if t.outcome is Outcome.REJECTED:
                assert t.reason and t.reason.split(":", 1)[0] in REASON_STEPS, t.reason
        for e in self.stack.audit.entries():
            if e["kind"] == "refusal":
                assert e.get("reason"), e

    def check_provenance(self) -> None:
        """Every field write is explained by an earlier journalled operate (or its lease, or the heartbeat)."""
        vocab, city = self.stack.vocab, self.stack.city
        operates = [e for e in self.stack.audit.entries() if e["kind"] == "operate"]
        rejected = {t.id for t in self.all_tickets if t.outcome is Outcome.REJECTED}
        assert not rejected & {e["ticket"] for e in operates}, "a refused ticket reached operate"
        for w in self.field.writes:
            eq = city.equipment[w.equipment]
            policy = vocab.types[eq.template]
            if policy.heartbeat is not None and w.tag == policy.heartbeat.tag:
                assert any(w.equipment in e["target"] and e["ts"] <= w.t for e in operates), w
                continue
            ok = False
            for e in operates:
                if w.equipment not in e["target"] or e["ts"] > w.t + 1e-6:
                    continue
                verb = policy.verbs[e["verb"]]
                for _, spec in verb.all_writes:
                    if spec.tag != w.tag:
                        continue
                    if isinstance(spec.value, str) and spec.value.startswith("{"):
                        ok = True
                    elif spec.value == w.value:
                        ok = True
                if ok:
                    break
            assert ok, f"write {w} is not explained by any journalled operate"

    async def finish(self) -> None:
        for eq in EQUIP:  # faults cleared, the server runs until every lease has ended
            self.field.comm_down.discard(eq)
        for b in BOLLARDS:
            self.field.models[b].clear("presence")
        await self.advance(1000.0, dt=5.0)
        not_local = [eq for eq in EQUIP if not self.field.local(eq)]
        assert not_local == [], f"still under central control after every lease ended: {not_local}"
        assert self.field.violations == [], self.field.violations
        self.check_provenance()
        report = self.stack.audit.verify()
        assert report.ok, report


def _check(actions: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async def go() -> None:
            sc = Scenario(Path(tmp))
            await sc.run(actions)
            await sc.finish()

        asyncio.run(go())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=25))
def test_random_command_sequences_keep_the_field_safe(actions: list[Any]) -> None:
    _check(actions)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=60))
def test_random_command_sequences_keep_the_field_safe_long(actions: list[Any]) -> None:
    _check(actions)


def test_crash_at_any_point_leaves_the_field_autonomous() -> None:
    """Killing the server right after commands: junctions back on local plans, lighting on schedule,
    bollards local and interlocked, all by the devices' own leases, with no server at all."""
    with tempfile.TemporaryDirectory() as tmp:
        async def go() -> None:
            sc = Scenario(Path(tmp))
            s = sc.stack
            for verb, target, params in [("select_plan", "J005", {"plan": 2}), ("flash", "J003", {}),
                                         ("set_level", "C0004", {"level": 100}), ("show_message", "P01", {"text": "x"})]:
                r = await s.gate.execute(CommandRequest(verb, (target,), ALICE, params, lease_s=3600))
                assert r.outcome in (Outcome.DONE, Outcome.NOT_CONFIRMED), r.reason
            t = s.gate.select(CommandRequest("lower", ("BL01",), ALICE, lease_s=3600))
            s.gate.approve(t.id, BOB)
            assert (await s.gate.operate(t.id, ALICE)).outcome is Outcome.DONE
            await sc.advance(5)
            assert not any(sc.field.local(e) for e in ("J003", "J005", "C0004", "BL01"))
            for _ in range(65):  # the server is gone: nobody refreshes, nobody beats
                s.clock.advance(1.0)
            for eq in ("J003", "J005", "C0004", "BL01"):
                assert sc.field.local(eq), eq
            m = sc.field.models
            assert m["J003"].unit_control_status == 4 and m["J005"].unit_control_status == 4  # backup mode
            assert m["C0004"].mode == 0  # on its schedule at night, not off
            assert sc.field.violations == []

        asyncio.run(go())
