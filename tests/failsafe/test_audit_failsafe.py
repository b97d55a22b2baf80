"""The fail-safe layer over a damaged audit log (fail-safe 2): it always starts and its monitor runs; a torn
tail is repaired, audited and a P2; any other damage is a P1 and leaves only safety-increasing commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from failsafe.audit import AuditKeyError, AuditLog, fingerprint, provision_key
from failsafe.service import Failsafe
from scada.errors import Refused
from tests.failsafe.conftest import Stack, make_stack


def build(tmp_path: Path, stack: Stack) -> Failsafe:
    return Failsafe.build(stack.city, stack.db, stack.field, tmp_path / "state", vocabulary=stack.vocab,
                          alarms=stack.alarms.append, clock=stack.clock, sleep=stack.clock.sleep, fsync=False,
                          key_dir=tmp_path / "keys")


async def first_run(tmp_path: Path) -> tuple[Stack, Path]:
    """A layer that ran once (its log and key exist) and stopped; the path of its last segment."""
    stack = make_stack(tmp_path)
    fs = build(tmp_path, stack)
    await fs.start()
    rec = await fs.submit("alice", "operator", "ws-1", {"target": "P01", "verb": "show_message",
                                                         "params": {"text": "Marché de Noël"}})
    assert rec["outcome"] == "done"
    await fs.aclose()
    fs.audit.close()
    return stack, sorted((tmp_path / "state" / "audit").glob("*.log"))[-1]


def keys(stack: Stack) -> dict[str, Any]:
    return {a.key: a for a in stack.alarms}


async def flash(fs: Failsafe, junction: str) -> dict[str, Any]:
    rec = await fs.submit("alice", "operator", "ws-1", {"target": junction, "verb": "flash"})
    if rec["state"] == "selected":  # a critical type: select, then operate
        rec = await fs.operate(rec["id"], "alice", "operator", "ws-1")
    return rec


async def test_a_torn_tail_is_repaired_audited_and_a_p2(tmp_path: Path) -> None:
    stack, last = await first_run(tmp_path)
    with last.open("ab") as fh:
        fh.write(b'{"seq": 99, "ts": 1, "kind": "sel')  # the process died in the middle of a write
    fs = build(tmp_path, stack)
    await fs.start()
    try:
        alarm = keys(stack)["failsafe/audit/repaired"]
        assert alarm.priority == 2 and alarm.active and "torn last line" in alarm.message
        assert "failsafe/audit/damaged" not in keys(stack)
        repaired = [e for e in fs.audit.entries() if e["kind"] == "audit_repaired"]
        assert len(repaired) == 1 and ".torn-" in repaired[0]["reason"]
        rec = await fs.submit("alice", "operator", "ws-1", {"target": "C0001", "verb": "set_level",
                                                             "params": {"level": 40}, "lease_s": 600})
        assert rec["outcome"] == "done"  # not degraded: every command as before
        for _ in range(50):
            await asyncio.sleep(0.02)
        assert fs.audit.damage is None and fs.audit.verify().ok
    finally:
        await fs.aclose()


async def test_a_middle_break_refuses_all_but_safety_increasing_commands(tmp_path: Path) -> None:
    stack, last = await first_run(tmp_path)
    text = last.read_bytes()
    edited = text.replace("Marché".encode(), b"Marche", 1)  # one edited value in the middle of the log
    assert edited != text
    last.write_bytes(edited)
    fs = build(tmp_path, stack)
    await fs.start()
    try:
        assert fs.monitor is not None and fs.monitor.view("J001") is not None  # the layer and its monitor run
        alarm = keys(stack)["failsafe/audit/damaged"]
        assert alarm.priority == 1 and alarm.active and "hash mismatch" in alarm.message
        done = await flash(fs, "J001")  # safety-increasing: accepted, written, confirmed
        assert done["outcome"] == "done", done
        with pytest.raises(Refused) as refused:
            await fs.submit("alice", "operator", "ws-1", {"target": "C0001", "verb": "set_level",
                                                         "params": {"level": 40}, "lease_s": 600})
        assert refused.value.why.startswith("audit: the audit log is damaged")
        with pytest.raises(Refused):  # releasing the flash reduces safety: refused too
            await fs.submit("alice", "operator", "ws-1", {"target": "J001", "verb": "return_to_local"})
        full = await fs.submit("alice", "operator", "ws-1", {"target": "C0001", "verb": "set_level",
                                                             "params": {"level": 100}, "lease_s": 600})
        assert full["outcome"] == "done"  # lighting to 100 % is safety-increasing
        assert any(e["kind"] == "audit_damaged" for e in fs.audit.entries())
    finally:
        await fs.aclose()


async def test_damage_in_an_older_segment_is_found_by_the_start_check(tmp_path: Path) -> None:
    key = provision_key(tmp_path / "keys", tmp_path / "state" / "audit")
    log = AuditLog(tmp_path / "state" / "audit", key, fsync=False, segment_bytes=2048)
    for i in range(40):
        log.append("select", user="alice", target=["J001"], ticket=f"t{i}")
    log.close()
    first = tmp_path / "state" / "audit" / "000001.log"
    first.write_bytes(first.read_bytes().replace(b'"t1"', b'"t8"', 1))
    stack = make_stack(tmp_path)
    fs = build(tmp_path, stack)
    assert fs.audit.damage is None  # opening checks the last segment only ...
    await fs.start()
    try:
        for _ in range(200):  # ... the full check runs in a worker thread
            if fs.audit.damage is not None:
                break
            await asyncio.sleep(0.02)
        assert fs.audit.damage is not None and "000001.log" in fs.audit.damage
        assert keys(stack)["failsafe/audit/damaged"].priority == 1
        with pytest.raises(Refused, match="damaged"):
            await fs.submit("alice", "operator", "ws-1", {"target": "P01", "verb": "show_message",
                                                         "params": {"text": "x"}})
    finally:
        await fs.aclose()


async def test_a_wrong_key_is_refused_naming_the_expected_fingerprint(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stack, _ = await first_run(tmp_path)
    expected = fingerprint((tmp_path / "keys" / "audit.key").read_bytes())
    monkeypatch.setenv("SCADA_AUDIT_KEY", "not the key of this log")
    with pytest.raises(AuditKeyError, match=f"fingerprint {expected}"):
        build(tmp_path, stack)
