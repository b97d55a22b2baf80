"""The server-facing facade: JSON in/out for select/operate/approve/cancel/status, groups, approve-then-run,
typed refusals, crisis; DriverWriter (allow-list before any packet, one write at a time per device)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from failsafe.service import Failsafe
from failsafe.writer import DriverWriter
from scada.config.model import TagDef
from scada.errors import CommError, Refusal, Refused, WriteNotAllowed
from scada.quality import Quality, Sample, Value
from tests.failsafe.conftest import Stack, city, make_stack, vocabulary


def service(tmp_path: Path) -> tuple[Failsafe, Stack]:
    stack = make_stack(tmp_path)
    fs = Failsafe.build(stack.city, stack.db, stack.field, tmp_path / "state", vocabulary=stack.vocab,
                        alarms=stack.alarms.append, clock=stack.clock, sleep=stack.clock.sleep, fsync=False)
    return fs, stack


async def test_select_operate_through_json(tmp_path: Path) -> None:
    fs, stack = service(tmp_path)
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "J001", "verb": "select_plan", "params": {"plan": 2}})
    assert rec["state"] == "selected" and rec["deadline"] == pytest.approx(stack.clock.now + 15)
    done = await fs.operate(rec["id"], "alice", "operator", "ws-1")
    assert done["state"] == "finished" and done["outcome"] == "done"
    assert fs.status(rec["id"])["outcome"] == "done"  # type: ignore[index]
    history = fs.history("J001", 10)  # the audit log, newest first
    assert history[0]["ticket"] == rec["id"] and history[0]["kind"] == "outcome"
    assert {e["kind"] for e in history} >= {"select", "operate", "outcome"}
    assert fs.stats()["outcomes"] == {"done": 1}


async def test_non_critical_runs_at_once_and_refusals_are_typed(tmp_path: Path) -> None:
    fs, stack = service(tmp_path)
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "P01", "verb": "show_message",
                                                         "params": {"text": "Marché de Noël"}})
    assert rec["outcome"] == "done" and stack.field.devices["P01"].message == "Marché de Noël"
    assert rec["state"] == "finished" and "lease_end" in rec
    with pytest.raises(Refused) as refused:
        await fs.submit("victor", "viewer", "ws-4", {"target": "P01", "verb": "show_message", "params": {"text": "x"}})
    assert refused.value.code is Refusal.COMMAND_REJECTED and refused.value.why.startswith("user: ")
    for call in (fs.operate("nope", "alice", "operator", "ws-1"), fs.approve("nope", "bob", "supervisor", "ws-2"),
                 fs.cancel("nope", "alice", "operator", "ws-1"), fs.run("nope", "sam", "supervisor", "d", True)):
        with pytest.raises(Refused) as unknown:
            await call
        assert unknown.value.code is Refusal.NOT_FOUND


async def test_group_targets_and_approval(tmp_path: Path) -> None:
    fs, _ = service(tmp_path)
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "group:dijon/lighting_cabinet", "verb": "set_level",
                                                         "params": {"level": 100}, "lease_s": 600})
    assert rec["outcome"] == "done" and len(rec["targets"]) == 9
    low = await fs.submit("alice", "operator", "ws-1", {"target": "BL02", "verb": "lower"})
    assert low["state"] == "awaiting_approval"
    with pytest.raises(Refused) as same_user:
        await fs.approve(low["id"], "alice", "operator", "ws-1")
    assert same_user.value.code is Refusal.COMMAND_REJECTED
    approved = await fs.approve(low["id"], "bob", "supervisor", "ws-2")
    assert approved["state"] == "selected"  # critical: its requester operates
    assert (await fs.operate(low["id"], "alice", "operator", "ws-1"))["outcome"] == "done"
    with pytest.raises(Refused, match="unknown equipment"):
        await fs.submit("alice", "operator", "ws-1", {"target": "group:nowhere/bollard", "verb": "lower"})


async def test_an_approved_non_critical_command_runs_for_its_requester(tmp_path: Path) -> None:
    fs, stack = service(tmp_path)
    full = await fs.submit("alice", "operator", "ws-1", {"target": "C0001", "verb": "set_level",
                                                          "params": {"level": 100}, "lease_s": 600})
    assert full["outcome"] == "done"  # safety-increasing: at once
    before = len(stack.field.writes)
    dim = await fs.submit("alice", "operator", "ws-1", {"target": "C0001", "verb": "set_level",
                                                         "params": {"level": 40}, "lease_s": 600})
    assert dim["state"] == "awaiting_approval" and dim["safety"] == "reducing"  # ends a full-light override
    assert len(stack.field.writes) == before
    done = await fs.approve(dim["id"], "bob", "supervisor", "ws-2")
    assert done["state"] == "finished" and done["outcome"] == "done" and done["approver"] == "bob"
    assert done["user"] == "alice" and done["lease_end"] is not None
    assert next((w.equipment, w.tag, w.value) for w in stack.field.writes[before:]) == ("C0001", "override_level", 40)


async def test_cancel_and_unknown(tmp_path: Path) -> None:
    fs, _ = service(tmp_path)
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "J002", "verb": "flash"})
    cancelled = await fs.cancel(rec["id"], "alice", "operator", "ws-1")
    assert cancelled["state"] == "cancelled"
    assert fs.status("nope") is None


async def test_crisis_through_the_service(tmp_path: Path) -> None:
    fs, stack = service(tmp_path)
    assert fs.plans()[0]["name"] == "emergency_corridor_centre"
    dry = await fs.run("emergency_corridor_centre", "sam", "supervisor", "desk", True)
    assert dry["state"] == "dry_run" and stack.field.writes == []
    run = await fs.run("emergency_corridor_centre", "sam", "supervisor", "desk", False)
    assert run["state"] == "awaiting_approval"
    done = await fs.approve(run["approval"], "bob", "supervisor", "ws-2")
    assert done["state"] == "done"
    assert fs.status(run["id"])["state"] == "done"  # type: ignore[index]


async def test_start_and_close_background_tasks(tmp_path: Path) -> None:
    fs, _ = service(tmp_path)
    await fs.start(lease_interval_s=0.01, monitor_interval_s=0.01)
    assert len(fs._tasks) == 3
    await fs.aclose()
    assert fs._tasks == []


class _Driver:
    def __init__(self) -> None:
        self.connected = False
        self.written: list[tuple[str, Value, float | None]] = []

    async def connect(self) -> None:
        self.connected = True

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        return [Sample(1, Quality.GOOD, 0, 0) for _ in points]

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        self.written.append((point.tag, value, tolerance))
        return Sample(value, Quality.GOOD, 0, 0)


async def test_driver_writer_enforces_the_allow_list_before_any_packet() -> None:
    c = city()
    drv = _Driver()
    w = DriverWriter(c, {"J001": drv})  # type: ignore[dict-item]
    tags = c.tag_by_name()
    spc = tags["talant/junction/J001/system_pattern_control"]
    await w.write(spc, 255)
    assert drv.connected and drv.written == [("system_pattern_control", 255, None)]
    with pytest.raises(WriteNotAllowed):
        await w.write(tags["talant/junction/J001/phase_greens"], 255)  # not rw
    forged = TagDef(**{**{s: getattr(spc, s) for s in spc.__slots__}, "address": "1.3.6.1.4.1.1206.4.2.1.1.5.1.2.1"})
    with pytest.raises(WriteNotAllowed, match="allow-list"):
        await w.write(forged, 1)  # even a tag declared rw, if its OID is not allow-listed
    with pytest.raises(CommError):
        await w.write(next(t for n, t in tags.items() if n.endswith("J002/system_pattern_control")), 0)  # no driver
    assert len(drv.written) == 1
    assert (await w.read(spc)).value == 1
    assert vocabulary()  # the shipped vocabulary loads with this city
