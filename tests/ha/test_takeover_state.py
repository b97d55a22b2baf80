"""What an operator relies on survives a takeover: two real servers replicating (in-process, each its own API on
loopback), one real 3-member etcd, the simulator.

    on the main room (active)                         after the switchover, on the failover room
    ─────────────────────────                         ──────────────────────────────────────────
    a lighting lease (12 s)                           the same lease (id, end), expired on time by the new
                                                      active with its release written (and the audit rows)
    a junction in flash (a lease refreshed every      refreshed by the new active before the controller's
      10 s: unitBackupTime 30 s)                        unitBackupTime ran out since the main room's last refresh
    its audit rows, answered once the standby         the audit log is the main room's, entry for entry,
      had them                                          continued by the new active: one chain that verifies
    a bollard command awaiting approval               approved here by the supervisor (a critical type:
                                                        then SELECTED)
    a junction select (select-before-operate)         cancelled, with its audit row (select again)
    a user created by the administrator               logs in here
    the operators' sessions                           their tokens keep working (no password asked)
    a work order and its note                         here, with its history; the new active adds to it
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from failsafe.audit import verify_file
from server.app import ScadaServer
from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.ha.test_replication import ha_of, replicating_pair
from tests.server.conftest import login

# both servers and the simulator share this test's one event loop: a 6 s lease keeps it about state, not timing
# (about 50 s in all: the pair's start, the fences, the lighting lease's own 12 s)
TTL = 6
LEASE_S = 12


def fs_of(server: ScadaServer) -> Any:
    fs = server.failsafe()
    assert fs is not None
    return fs


async def test_leases_audit_approvals_users_sessions_and_work_orders_survive_a_takeover(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    async with replicating_pair(tmp_path, etcd3, simulator, tags, ttl=TTL) as ((a, ca), (b, cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        op, sup, admin, maint = [await login(ca, n) for n in ("op", "sup", "admin", "maint")]  # the main room's
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)
        await until("the standby's audit log a copy", lambda: fs_of(b).audit.tip() == fs_of(a).audit.tip(),
                    timeout_s=10)
        cab = next(e for e in a.config.equipment.values() if e.template == "lighting_cabinet")
        bollard = next(e for e in a.config.equipment.values() if e.template == "bollard")
        junction, flashed = [e for e in a.config.equipment.values() if e.template == "junction"][:2]
        await until("the field polled", lambda: all(a.tagdb.read(e.tag_name(t)).quality.is_good for e, t in (
            (cab, "mode"), (bollard, "position"), (junction, "coord_pattern_status"))))
        await until("the main room's fence open", ha_a.may_write, timeout_s=TTL + 4)

        # a junction put to flash (safety-increasing: no approval, not counted against the rate): its lease is
        # refreshed every 10 s, and the controller falls back to its local plan 30 s after the last refresh
        r = await ca.post("/api/v1/commands", json={"target": flashed.id, "verb": "flash"}, headers=op)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        r = await ca.post(f"/api/v1/commands/{r.json()['id']}/operate", json={}, headers=op)
        assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
        flash = fs_of(a).leases.active(flashed.id)
        assert flash is not None

        # a lease: answered once the standby holds its audit rows and the lease itself
        r = await ca.post("/api/v1/commands", json={"target": cab.id, "verb": "set_level", "params": {"level": 100},
                                                    "lease_s": LEASE_S}, headers=op)
        assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
        lease = fs_of(a).leases.active(cab.id)
        assert lease is not None
        started = next(e for e in fs_of(a).audit.latest(cab.id, 20) if e["kind"] == "lease_start")
        assert fs_of(b).audit.last_seq >= started["seq"]  # no wait: the answer came after the standby's ack
        assert ha_b.replica.state is not None and lease.id in {d["id"] for d in ha_b.replica.state["leases"]}

        # an approval awaited (a bollard movement needs a second person) and a select window (a junction)
        r = await ca.post("/api/v1/commands", json={"target": bollard.id, "verb": "lower"}, headers=op)
        assert r.status_code == 200 and r.json()["state"] == "awaiting_approval", r.text
        awaited = r.json()["id"]
        r = await ca.post("/api/v1/commands", json={"target": junction.id, "verb": "select_plan",
                                                    "params": {"plan": 2}}, headers=op)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        selected = r.json()["id"]

        # a user and a work order
        r = await ca.post("/api/v1/users", json={"name": "newop", "role": "operator",
                                                 "password": "Fresh-Operator-4242"}, headers=admin)
        assert r.status_code == 201, r.text
        r = await ca.post("/api/v1/workorders", json={"equipment": cab.id, "what": "check the photocell",
                                                      "idempotency_key": "wo-takeover-1"}, headers=maint)
        assert r.status_code == 200, r.text
        order = r.json()["id"]
        r = await ca.post(f"/api/v1/workorders/{order}/note", json={"text": "photocell dirty, see photo 1"},
                          headers=maint)
        assert r.status_code == 200, r.text
        store_b = b.components["workorders"].store  # type: ignore[attr-defined]
        copy = store_b.get(order)  # no wait: the answer came after the standby's copy
        assert copy is not None and [n.text for n in copy.notes] == ["photocell dirty, see photo 1"]
        assert b.users.get("newop") is not None

        # the takeover
        copied = fs_of(b).audit.last_seq
        assert await ha_a.switchover("sup")
        t_switch = time.time()
        await until("failover room active", lambda: ha_b.feeds(), timeout_s=TTL + 4)
        t_active = time.monotonic()
        entries_a = list(fs_of(a).audit.entries(headers=True))[:copied]

        # the field's override is the taken-over lease's: not an "uncommanded change" on the new active
        await until("the new active's alarms re-derived", lambda: ha_b.attached, timeout_s=5)
        alarms = (await cb.get("/api/v1/alarms", params={"equipment": cab.id}, headers=op)).json()["alarms"]
        assert not [x for x in alarms if "uncommanded" in x["id"]], alarms
        # the lease: the same one, not doubled
        held = fs_of(b).leases.active(cab.id)
        assert held is not None and (held.id, held.end, held.ticket) == (lease.id, lease.end, lease.ticket)
        assert [x.id for x in fs_of(b).leases.leases(("active",)) if x.equipment == cab.id] == [lease.id]
        # the audit log: the main room's entries, continued here
        entries_b = list(fs_of(b).audit.entries(headers=True))
        assert entries_b[:copied] == entries_a
        assert verify_file(fs_of(b).audit.path, fs_of(b).audit.key).ok
        kinds = {(e["kind"], e.get("ticket"), e.get("cancelled_by")) for e in entries_b[copied:]}
        assert ("cancel", selected, "failover takeover") in kinds, kinds
        resumed = [e for e in entries_b[copied:] if e["kind"] == "lease_resumed"]
        assert sorted(e["lease"] for e in resumed) == sorted([lease.id, flash.id])
        assert all(e["taken_over"] is True for e in resumed)
        # the select window cancelled; the approval approvable here, by the session opened on the main room
        r = await cb.get(f"/api/v1/commands/{selected}", headers=op)
        assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
        r = await cb.post(f"/api/v1/commands/{awaited}/approve", json={}, headers=sup)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        assert r.json()["approver"] == "sup"
        # the user created there logs in here; the work order is here with its history
        r = await cb.post("/api/v1/auth/login", json={"user": "newop", "password": "Fresh-Operator-4242"})
        assert r.status_code == 200, r.text
        r = await cb.post(f"/api/v1/workorders/{order}/note", json={"text": "crew booked"}, headers=maint)
        assert r.status_code == 200, r.text
        r = await cb.get(f"/api/v1/workorders/{order}/history", headers=maint)
        assert r.status_code == 200 and [c["action"] for c in r.json()] == ["create", "note", "note"], r.text
        seqs = [c["seq"] for c in (await cb.get("/api/v1/workorders/" + order + "/history", headers=maint)).json()]
        assert seqs == sorted(set(seqs))  # the new active's change goes on after the copied ones
        print(f"takeover: {ha_b.taken_over}")

        # the junction's lease refreshed by the new active (after its fence), before the field's timer ran out
        held_flash = fs_of(b).leases.active(flashed.id)
        assert held_flash is not None and held_flash.id == flash.id
        last_by_a = max(d["last_refresh"] for d in ha_b.replica.state_taken["leases"] if d["id"] == flash.id)
        await until("the junction's lease refreshed by the new active",
                    lambda: held_flash.last_refresh > t_switch and not held_flash.refresh_failing, timeout_s=25)
        gap = held_flash.last_refresh - last_by_a
        print(f"junction lease: last refresh by the main room → first by the failover room {gap:.1f} s")
        assert gap < 30  # the controller's unitBackupTime (commands.yaml: backup_time)
        assert not [e for e in fs_of(b).audit.entries() if e["kind"] == "lease_refresh_failed"]

        # the lease ends at its own end, released by the new active (its fence open by then)
        left = lease.end - time.time()
        await until("the lease released by the new active", lambda: any(
            e["kind"] == "lease_release_done" and e.get("lease") == lease.id
            for e in fs_of(b).audit.latest(cab.id, 20)), timeout_s=max(0.0, left) + 10)
        ended = next(e for e in fs_of(b).audit.latest(cab.id, 20) if e["kind"] == "lease_expired")
        assert ended["lease"] == lease.id and ended["ts"] >= lease.end
        assert fs_of(b).leases.active(cab.id) is None
        assert time.monotonic() - t_active < LEASE_S + 10
