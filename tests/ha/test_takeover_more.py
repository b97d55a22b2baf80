"""More of what an operator relies on survives a takeover: the login throttle, a crisis plan's group approval and
the work orders' photo files (two real servers replicating in-process, one real 3-member etcd, the simulator).

    on the main room (active)                          after the switchover, on the failover room
    ─────────────────────────                          ──────────────────────────────────────────
    op2 locked out after 5 wrong passwords              still locked out: the right password is refused (429)
    "view": 1 wrong password                            4 more lock it (the count went on, no fresh attempts)
    a crisis plan run: its junctions flashed, the       approved here by the administrator: the bollard step
      bollard step deferred, awaiting a group approval    runs on the new active, the run is done
    a crew's photo on a work order (its note answered   the file itself, byte for byte, in the failover room's
      once the standby had the change and the file)       photo folder, served by its API
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from scada.workorders.photos import PhotoStore
from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.ha.test_replication import ha_of, replicating_pair
from tests.server.conftest import PASSWORDS, login

TTL = 6  # both servers and the simulator share this test's event loop: a lease about state, not timing
PLAN = "emergency_corridor_centre"  # commands.yaml: three junctions to flash (at once), BL01 lowered (approval)


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 140, 90)).save(buf, "JPEG")
    return buf.getvalue()


async def test_login_throttle_crisis_group_approval_and_photo_files_survive_a_takeover(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    async with replicating_pair(tmp_path, etcd3, simulator, tags, ttl=TTL) as ((a, ca), (b, cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        sup, maint = await login(ca, "sup"), await login(ca, "maint")
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)

        # the login throttle: op2 locked out on the main room, one failure for view
        for _ in range(5):
            r = await ca.post("/api/v1/auth/login", json={"user": "op2", "password": "a-wrong-guess"})
            assert r.status_code == 401, r.text
        r = await ca.post("/api/v1/auth/login", json={"user": "op2", "password": PASSWORDS["op2"]})
        assert r.status_code == 429, r.text
        r = await ca.post("/api/v1/auth/login", json={"user": "view", "password": "a-wrong-guess"})
        assert r.status_code == 401, r.text
        await until("the lock-out on the standby", lambda: b.limiter.throttle.locked_for("op2") > 0, timeout_s=5)

        # a crisis plan run awaiting its group approval (its junction steps ran at once)
        bollard = a.config.equipment["BL01"]
        await until("the field polled", lambda: a.tagdb.read(bollard.tag_name("position")).quality.is_good)
        await until("the main room's fence open", ha_a.may_write, timeout_s=TTL + 4)
        r = await ca.post(f"/api/v1/crisis/plans/{PLAN}/activate", headers=sup)
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["state"] == "awaiting_approval" and run["approval"], run
        assert [s["outcome"] for s in run["steps"]] == ["done", "done", "done", "deferred"], run["steps"]
        await until("the run on the standby", lambda: ha_b.replica.state is not None and [
            d["run"]["id"] for d in ha_b.replica.state.get("crisis") or []] == [run["id"]], timeout_s=5)

        # a photo on a work order: answered once the standby holds the change and the file
        r = await ca.post("/api/v1/workorders", json={"equipment": bollard.id, "what": "bollard scratched",
                                                      "idempotency_key": "wo-photo-takeover"}, headers=maint)
        assert r.status_code == 200, r.text
        order = r.json()["id"]
        r = await ca.post(f"/api/v1/workorders/{order}/photos", content=jpeg(),
                          headers={**maint, "Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
        name = r.json()["photo"]["name"]
        stored = PhotoStore(a.data_dir).path(order, name).read_bytes()
        copy = PhotoStore(b.data_dir).path(order, name)  # no wait: the answer came after the standby's ack
        assert copy.read_bytes() == stored
        assert oct(copy.stat().st_mode & 0o777) == oct(0o600)

        # the takeover
        assert await ha_a.switchover("sup")
        await until("failover room active", ha_b.feeds, timeout_s=TTL + 4)
        assert ha_b.taken_over.get("crisis_approvals") == 1, ha_b.taken_over

        # no fresh attempts: op2 still locked; view's failure counted, 4 more lock it
        r = await cb.post("/api/v1/auth/login", json={"user": "op2", "password": PASSWORDS["op2"]})
        assert r.status_code == 429, r.text
        for _ in range(4):
            r = await cb.post("/api/v1/auth/login", json={"user": "view", "password": "a-wrong-guess"})
            assert r.status_code == 401, r.text
        r = await cb.post("/api/v1/auth/login", json={"user": "view", "password": PASSWORDS["view"]})
        assert r.status_code == 429, r.text

        # the group approval: approved here by a second person, the deferred step runs on the new active
        await until("the failover room's fence open", ha_b.may_write, timeout_s=TTL + 4)
        admin = await login(cb, "admin")
        r = await cb.post(f"/api/v1/commands/{run['approval']}/approve", json={}, headers=admin)
        assert r.status_code == 200, r.text
        r = await cb.get(f"/api/v1/commands/{run['id']}", headers=admin)
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["state"] == "done" and done["approver"] == "admin", done
        assert done["steps"][3]["outcome"] == "done", done["steps"]

        # the photo, served by the new active
        r = await cb.get(f"/api/v1/workorders/{order}/photos/{name}", headers=await login(cb, "maint"))
        assert r.status_code == 200 and r.content == stored
