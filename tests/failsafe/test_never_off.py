"""Property: the field-safety monitor is never silently off.

At every step of a seeded random sequence of

    reloads          valid (a scan period changed) and invalid (tags.yaml / commands.yaml broken, commands.yaml
                     gone: the fail-safe layer then has no vocabulary), the files put back afterwards
    audit damage     the audit log's newest segment truncated or a byte flipped between steps
    API load         a few concurrent GET /commands, /alarms, /journal
    field faults     SNMP drop / disconnect at a junction, a conflicting green, cleared again

EITHER the monitor is checking every junction (it decided on a good sample of it within two periods) OR a P1
says why not, active in /alarms: "field-safety monitor not running", "blind at J0xx" or the fail-safe layer
down. The alarm may come up to 1 s after the sample turned stale (the watch's promise), so a step that finds a
junction neither checked nor alarmed looks again 1.2 s later before failing.

One simulator (in its own thread) and one server serve every sequence; reloads vary the configuration.
Default: 10 sequences x 15 steps (3 took 61 s on the shared 2-core machine); the ``slow`` variant runs 500.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from pathlib import Path

import httpx
import pytest

from scada.alarms.system import BY_KEY, rule_name
from server.app import ScadaServer
from server.components.poll import PollComponent
from server.components.safety import SafetyPoll
from tests.server.conftest import login, running_server
from tests.server.test_e2e import until
from tests.server.test_isolation import ThreadSim, threaded_sim

BLIND = BY_KEY[("failsafe", "monitor_blind")]
NOT_RUNNING = BY_KEY[("failsafe", "monitor_not_running")]
FS_DOWN = BY_KEY[("server", "failsafe_down")]
ACTIONS = ("reload_valid", "reload_bad_tags", "reload_bad_commands", "reload_no_commands", "audit_truncate",
           "audit_flip", "api_load", "comm_drop", "comm_disconnect", "conflict", "clear")
WEIGHTS = (1, 1, 1, 1, 1, 1, 3, 2, 2, 2, 3)


def safety_of(server: ScadaServer) -> SafetyPoll:
    poll = server.components["poll"]
    assert isinstance(poll, PollComponent)
    return poll.safety


class Rig:
    def __init__(self, sim: ThreadSim, tags: Path, server: ScadaServer, c: httpx.AsyncClient,
                 h: dict[str, str], admin: dict[str, str]) -> None:
        self.sim, self.tags, self.server, self.c, self.h, self.admin = sim, tags, server, c, h, admin
        self.city = tags.parent
        self.good_tags = tags.read_text()
        self.good_commands = (self.city / "commands.yaml").read_text()
        self.faulted: set[str] = set()
        self.log: list[str] = []

    # ------------------------------------------------------------------ the invariant
    async def excused(self) -> set[str]:
        """Junctions covered by an active P1 ("*" = all of them) according to /alarms."""
        r = await self.c.get("/api/v1/alarms", headers=self.h, params={"limit": 5000})
        assert r.status_code == 200, r.text
        out: set[str] = set()
        for a in r.json()["alarms"]:
            if not a["active"] or a.get("priority") != 1:
                continue
            rule = a["id"].split(":", 1)[0]
            if rule in (rule_name(NOT_RUNNING), rule_name(FS_DOWN)):
                out.add("*")
            elif rule == rule_name(BLIND, "junction"):
                out.add(a.get("equipment") or a["id"].rsplit(":", 1)[1].split("/")[-3].upper())
        return out

    async def violations(self) -> list[str]:
        checking = safety_of(self.server).checking()
        assert checking, "no junction watched at all"
        unchecked = sorted(j for j, ok in checking.items() if not ok)
        if not unchecked:
            return []
        excused = await self.excused()
        if "*" in excused:
            return []
        return [j for j in unchecked if j not in excused]

    async def check(self, step: str) -> None:
        bad = await self.violations()
        if bad:
            await asyncio.sleep(1.2)  # the watch raises within 1 s of the sample turning stale
            bad = await self.violations()
        assert not bad, f"after {step}: monitor neither checking nor P1-alarmed at {bad}; steps: {self.log[-15:]}"

    # ------------------------------------------------------------------ steps
    async def reload(self) -> int:
        r = await self.c.post("/api/v1/config/reload", headers=self.admin)
        return r.status_code

    def restore_files(self) -> None:
        self.tags.write_text(self.good_tags)
        (self.city / "commands.yaml").write_text(self.good_commands)

    def audit_segment(self) -> Path | None:
        segs = sorted((self.server.data_dir / "failsafe").rglob("*.log")) or \
            sorted(p for p in (self.server.data_dir / "failsafe").rglob("*") if p.is_file() and "audit" in str(p))
        return segs[-1] if segs else None

    async def step(self, rng: random.Random, action: str) -> None:
        junctions = sorted(safety_of(self.server).checking())
        if action == "reload_valid":
            slow = rng.choice(["5s", "6s", "7s"])
            self.tags.write_text(self.good_tags.replace("slow: 5s", f"slow: {slow}"))
            await self.reload()
        elif action in ("reload_bad_tags", "reload_bad_commands", "reload_no_commands"):
            if action == "reload_bad_tags":
                self.tags.write_text(self.good_tags.replace("normal: 1s", "normal: quick"))
            elif action == "reload_bad_commands":
                (self.city / "commands.yaml").write_text(self.good_commands + "\n  ][ not yaml\n")
            else:
                (self.city / "commands.yaml").unlink()
            await self.reload()
            await self.check(action)
            self.restore_files()
            await self.reload()
        elif action in ("audit_truncate", "audit_flip"):
            seg = self.audit_segment()
            if seg is not None and seg.stat().st_size > 8:
                data = bytearray(seg.read_bytes())
                if action == "audit_truncate":
                    data = data[: len(data) - rng.randint(1, min(40, len(data) - 1))]
                else:
                    k = rng.randrange(len(data))
                    data[k] ^= 0x5A
                seg.write_bytes(bytes(data))
        elif action == "api_load":
            paths = ["/api/v1/commands", "/api/v1/alarms", "/api/v1/journal"]
            await asyncio.gather(*(self.c.get(rng.choice(paths), headers=self.h) for _ in range(6)))
        elif action in ("comm_drop", "comm_disconnect"):
            j = rng.choice(junctions)
            if action == "comm_drop":
                await self.sim.comm_fault(j, "drop", probability=rng.choice([0.5, 1.0]))
            else:
                await self.sim.comm_fault(j, "disconnect")
            self.faulted.add(j)
        elif action == "conflict":
            j = rng.choice(junctions)
            m = self.sim.models[j]
            m.inject("conflicting_green", phases=tuple(range(1, m.phases + 1)))
            self.faulted.add(j)
        elif action == "clear":
            for j in sorted(self.faulted):
                await self.sim.comm_fault(j, None)
                self.sim.models[j].clear()
            self.faulted.clear()

    async def sequence(self, seed: int, steps: int) -> None:
        rng = random.Random(seed)
        for k in range(steps):
            action = rng.choices(ACTIONS, WEIGHTS)[0]
            self.log.append(f"{seed}.{k}:{action}")
            await self.step(rng, action)
            await asyncio.sleep(0.1)
            await self.check(action)
        await self.step(rng, "clear")
        self.restore_files()


async def run_property(tmp_path: Path, sequences: int, steps: int) -> None:
    async with threaded_sim(tmp_path) as (sim, tags):
        # the audit log is kept in the data folder shared by every sequence
        async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                                  alarms=tags.parent / "alarms.yaml") as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60) as c:
            h, admin = await login(c, "op"), await login(c, "admin")
            safety = safety_of(server)
            await until("the main warm-up", lambda: server.status("poll").status != "starting", timeout=90)
            await until("every junction checked", lambda: safety.checking() and all(safety.checking().values()),
                        timeout=60)
            rig = Rig(sim, tags, server, c, h, admin)
            t0 = time.monotonic()
            for seq in range(sequences):
                await rig.sequence(1000 + seq, steps)
            assert rig.log and time.monotonic() > t0
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


async def test_the_monitor_is_checking_or_a_p1_says_why_not(tmp_path: Path) -> None:
    await run_property(tmp_path, sequences=10, steps=15)  # ~1 min on a loaded 2-core machine


@pytest.mark.slow
async def test_the_monitor_is_never_off_500_sequences(tmp_path: Path) -> None:
    await run_property(tmp_path, sequences=500, steps=15)
