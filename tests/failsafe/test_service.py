"""The server-facing facade: JSON in/out for select/operate/approve/cancel/status, groups, crisis; DriverWriter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from failsafe.service import Failsafe
from failsafe.writer import DriverWriter
from scada.config.model import TagDef
from scada.errors import CommandRejected, CommError, WriteNotAllowed
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
    assert fs.history("J001", 10)[0]["id"] == rec["id"]
    assert fs.stats()["outcomes"] == {"done": 1}


async def test_non_critical_runs_at_once_and_refusals_are_records(tmp_path: Path) -> None:
    fs, stack = service(tmp_path)
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "P01", "verb": "show_message",
                                                         "params": {"text": "Marché de Noël"}})
    assert rec["outcome"] == "done" and stack.field.devices["P01"].message == "Marché de Noël"
    bad = await fs.submit("victor", "viewer", "ws-4", {"target": "P01", "verb": "show_message",
                                                        "params": {"text": "x"}})
    assert bad["outcome"] == "rejected" and bad["reason"].startswith("user: ")


async def test_group_targets_and_approval(tmp_path: Path) -> None:
    fs, _ = service(tmp_path)
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "group:dijon/lighting_cabinet", "verb": "set_level",
                                                         "params": {"level": 100}, "lease_s": 600})
    assert rec["outcome"] == "done" and len(rec["targets"]) == 9
    low = await fs.submit("alice", "operator", "ws-1", {"target": "BL02", "verb": "lower"})
    assert low["state"] == "awaiting_approval"
    with pytest.raises(CommandRejected):
        await fs.approve(low["id"], "alice", "operator", "ws-1")
    approved = await fs.approve(low["id"], "bob", "supervisor", "ws-2")
    assert approved["state"] == "selected"
    assert (await fs.operate(low["id"], "alice", "operator", "ws-1"))["outcome"] == "done"
    empty = await fs.submit("alice", "operator", "ws-1", {"target": "group:nowhere/bollard", "verb": "lower"})
    assert empty["outcome"] == "rejected" and "unknown equipment" in empty["reason"]


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
