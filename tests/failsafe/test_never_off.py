"""Property: the field-safety monitor is never silently off.

At every step of a seeded random sequence of

    reloads          valid (a scan period changed) and invalid (tags.yaml / commands.yaml broken, commands.yaml
                     gone: the fail-safe layer then has no vocabulary), the files put back afterwards
    audit damage     the audit log's newest segment truncated or a byte flipped between steps
    API load         a few concurrent GET /commands, /alarms, /journal
    field faults     SNMP drop / disconnect at a junction, a conflicting green, cleared again

EITHER the monitor is checking every junction (it decided on a good sample of it received within two periods)
OR a P1 says why not, active in /alarms: "field-safety monitor not running", "blind at J0xx" or the fail-safe
layer down. A "blind at J0xx" suppressed by design behind the junction's comm_lost is still active and listed
(flag ``suppressed_design``): it counts. The comm_lost alone does not: the watch must say "blind" itself (a
junction received but not decided on, after a reload, had comm_lost and no blind: the gap this test found).
The alarm may come up to 1 s after the sample turned stale (the watch's promise), so a step that finds a
junction neither checked nor alarmed looks again 1.2 s later before failing.

One simulator (in its own thread) and one server serve every sequence; reloads vary the configuration. A
failure names its steps "<seed>.<step>:<action>" and what the safety loop and /alarms said of the junction;
SCADA_NEVER_OFF_SEED=<seed> starts the default test from that sequence (the slow halves start 30 and 280 after it).

Cost of a step (the shared 2-core machine; reloads dominate): it was 1.12 s on average (seeds 1000-1002, load
average ~7), two full garbage collections per reload (one in each poller, the one in the field-safety thread
stalling every thread) taking most of it. The safety poller no longer collects (the collector is process-wide:
the main poller does it), and the main poller collects at most once per 10 s of reloads (scada.poll.
REFREEZE_EVERY_S): 0.19-0.32 s a step then, most of a reload being the parse of the YAML files again. Those are
now parsed once per content (scada.config.yamlsource's parse cache: a reload parses only the file that changed):
the process's CPU for the same 8 sequences 28.8 s -> 22.7 s, a reload step's wall time about halved. What is
left is mostly the main poller's full collection (1.3-1.8 s each at load average 8-9, holding the GIL, ~one per
10 s of reloads), the 0.1 s pause of each step and the components' rebuild in a reload.
Default: 30 sequences x 15 steps, the issue's ~30 (115 s measured at load average 3-5, 63 s of CPU; 169 s at
load average 9). The ``slow`` variant runs the issue's 500 (seeds after the default's) in two halves of 250: the
500 took 32 min in one run at load average 6-10.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import Iterable
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
#: sequence k runs with seed FIRST_SEED + k; a failure names its steps as "<seed>.<step>:<action>", so
#: SCADA_NEVER_OFF_SEED=<seed> replays from the failing sequence (the server's state is then a fresh one's)
FIRST_SEED = int(os.environ.get("SCADA_NEVER_OFF_SEED", "1000"))


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
        """Junctions covered by an active P1 ("*" = all of them) according to /alarms. The flags are not
        looked at: a blind alarm suppressed by design behind the junction's comm_lost is active all the same."""
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

    async def violations(self, allowance_s: float = 0.0) -> list[str]:
        """Junctions neither checked nor covered by a P1; ``allowance_s``: a junction that turned stale less
        than this long ago still counts as checked (the watch may take up to 1 s to raise its P1)."""
        checking = safety_of(self.server).checking(now_ns=time.time_ns() - int(allowance_s * 1e9))
        assert checking, "no junction watched at all"
        unchecked = sorted(j for j, ok in checking.items() if not ok)
        if not unchecked:
            return []
        excused = await self.excused()
        if "*" in excused:
            return []
        return [j for j in unchecked if j not in excused]

    async def diagnose(self, junctions: list[str]) -> str:
        """What the safety loop and /alarms say of ``junctions`` (for the failure message)."""
        safety = safety_of(self.server)
        db, now = safety.db, time.time_ns()
        r = await self.c.get("/api/v1/alarms", headers=self.h, params={"limit": 5000})
        out = []
        for j in junctions:
            ages = {k: (now - d[j]) / 1e9 if db is not None and j in d else None for k, d in
                    (("checked", db.checked_ns if db else {}), ("good", db.last_good_ns if db else {}),
                     ("since", safety.since_ns))}
            alarms = [(a["rule"], a["state"], a["active"], a["flags"]) for a in r.json()["alarms"]
                      if a.get("equipment") == j]
            out.append(f"{j}: ages {ages} blind={safety.blind.get(j)!r} running={safety.monitor_running()} "
                       f"hb_age={(now - safety.heartbeat_ns) / 1e9:.2f} alarms={alarms}")
        return "; ".join(out)

    async def check(self, step: str) -> None:
        bad = await self.violations()
        if bad:
            await asyncio.sleep(1.2)  # the watch raises within 1 s of the sample turning stale
            # a junction may have turned stale again just now (a new episode): it too gets its 1 s
            bad = await self.violations(allowance_s=1.0)
        assert not bad, (f"after {step}: monitor neither checking nor P1-alarmed at {bad}; steps: {self.log[-15:]}; "
                         f"{await self.diagnose(bad) if bad else ''}")

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
            safety = safety_of(self.server)
            was_running, flagged = not safety.not_running, []

            async def watch_not_running() -> None:
                while True:
                    if safety.not_running:
                        flagged.append(time.monotonic())
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch_not_running())
            try:
                status = await self.reload()
            finally:
                watcher.cancel()
            # a valid reload switches the monitor, it does not stop it: no "not running" P1 for the switch
            assert not (was_running and status == 200 and flagged), "monitor_not_running raised by a valid reload"
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


async def run_property(tmp_path: Path, sequences: int, steps: int, first_seed: int = FIRST_SEED) -> None:
    async with threaded_sim(tmp_path) as (sim, tags):
        # the audit log is kept in the data folder shared by every sequence
        # idle connections are dropped after 1 s, well before the server's own 5 s keep-alive: a request sent on a
        # connection the server is closing meanwhile fails ("Server disconnected without sending a response"; seen
        # once in 500 sequences, after a multi-second stall of the loaded machine), which says nothing of the monitor
        async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                                  alarms=tags.parent / "alarms.yaml") as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(keepalive_expiry=1.0)) as c:
            h, admin = await login(c, "op"), await login(c, "admin")
            safety = safety_of(server)
            await until("the main warm-up", lambda: server.status("poll").status != "starting", timeout=90)
            await until("every junction checked", lambda: safety.checking() and all(safety.checking().values()),
                        timeout=60)
            rig = Rig(sim, tags, server, c, h, admin)
            t0 = time.monotonic()
            for seq in range(sequences):
                await rig.sequence(first_seed + seq, steps)
            assert rig.log and time.monotonic() > t0
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


@pytest.mark.timeout(480)  # 2-3 min on the shared machine (module docstring): the 300 s default is too close
async def test_the_monitor_is_checking_or_a_p1_says_why_not(tmp_path: Path) -> None:
    await run_property(tmp_path, sequences=30, steps=15)  # the issue's ~30 x 15


#: the slow run's 500 sequences, in two halves of their own seeds: ~15-20 min each on the 2-core machine (module
#: docstring), so that each stays within its own timeout and the two can run on two workers
SLOW_HALVES = (FIRST_SEED + 30, FIRST_SEED + 30 + 250)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 3,750 steps, beyond the 300 s per test
@pytest.mark.parametrize("first_seed", SLOW_HALVES, ids=["sequences_1_250", "sequences_251_500"])
async def test_the_monitor_is_never_off_500_sequences(tmp_path: Path, first_seed: int) -> None:
    await run_property(tmp_path, sequences=250, steps=15, first_seed=first_seed)


async def test_a_sample_the_monitor_fails_on_is_not_a_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Received is not decided: a junction whose samples keep coming but on which the monitor fails (a bug in
    it, logged) is not checked, and the watch says so (P1 blind there) instead of counting the samples."""
    async with threaded_sim(tmp_path) as (sim, tags), \
            running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                           alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        rig = Rig(sim, tags, server, c, await login(c, "op"), {})
        safety = safety_of(server)
        await until("every junction checked", lambda: safety.checking() and all(safety.checking().values()),
                    timeout=60)
        monitor, db = safety.monitor, safety.db
        assert monitor is not None and db is not None
        jid = "J004"
        decide = monitor.observe  # what every sample reaches (the subscriber's changes and the safety database's)

        def failing(junctions: Iterable[str]) -> None:  # the monitor's bug, on this junction's samples only
            wanted = set(junctions)
            if jid in wanted:
                raise RuntimeError("monitor bug (test)")
            decide(wanted)

        monkeypatch.setattr(monitor, "observe", failing)
        received = db.last_good_ns[jid]
        # (not "field-safety loop stalled": a loaded machine may stall the safety loop, every junction blind)
        # (both at once: on a loaded machine the watch's verdict read first may be one from before the patch)
        await until("blind where the monitor fails",
                    lambda: "decided on" in safety.blind.get(jid, "") and not safety.checking()[jid], timeout=10,
                    every=0.05)
        # its samples still come in, good: they are just not decided on
        assert db.last_good_ns[jid] > max(received, db.checked_ns.get(jid, 0))
        assert jid in await rig.excused()  # the P1 is in /alarms
        assert await rig.violations() == []
        monkeypatch.setattr(monitor, "observe", decide)
        await until("seen again", lambda: jid not in safety.blind and safety.checking()[jid], timeout=10)
