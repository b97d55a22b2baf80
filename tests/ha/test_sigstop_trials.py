"""20 trials of SIGSTOP at random points: real ``scada server`` processes as a replicating pair (the standby fed by
the active's stream), one real 3-member etcd, the simulator in the test, operator commands flowing to whichever
server is active.

    trial k:  wait until the active writes ─ a random 0–1.5 s among its commands ─ SIGSTOP it ─ the other
              takes over: the lease of the last command the stopped one answered is in force there (no lease
              lost) and its journal ids run 1..N (no gap, no duplicate) ─ a random 0–1 s ─ SIGCONT ─ the
              resumed one is standby, rejoins the stream by itself (its own rows after the common point set
              aside) and its journal is the new active's ─ the simulator's own write record (client address
              and port) has nothing from it after it was stopped ─ roles swap

A request in flight when the process stops is answered by the simulator within milliseconds: a write of the
stopped server recorded more than 0.5 s after SIGSTOP can only have been sent after it resumed, past its
lease (TTL + margin later at the earliest), and fails the trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import field_writes, until
from tests.ha.test_processes import MARGIN, TTL, Server, login, server_pair, state_of

IN_FLIGHT_NS = 500_000_000


async def _role(c: httpx.AsyncClient, h: dict[str, str], role: str) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        return bool((await state_of(c, h))["role"] == role)
    return False


def _journal(srv: Server) -> list[tuple[int, int, int]]:
    """(id, ts_ms, event) of every row of the server's journal file."""
    with contextlib.closing(sqlite3.connect(f"file:{srv.dir / 'data' / 'journal.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT id, ts_ms, event FROM journal ORDER BY id").fetchall()


def _lease_of(srv: Server, ticket: str) -> str | None:
    """The state of the lease taken by command ``ticket`` in the server's lease store (None: not there)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((srv.dir / "data" / "failsafe" / "leases.json").read_text())
        return next((str(x["state"]) for x in data["leases"] if x["ticket"] == ticket), None)
    return None


async def _fed(c: httpx.AsyncClient, h: dict[str, str]) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
        rep = (await state_of(c, h))["replication"]
        return bool(rep["side"] == "standby" and rep["fresh"])
    return False


async def _writing(c: httpx.AsyncClient, h: dict[str, str]) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        return bool((await state_of(c, h))["may_write"])
    return False


@pytest.fixture
async def servers(tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> AsyncIterator[tuple[Any, Server, Server]]:
    async with server_pair(tmp_path, etcd3, sim, replicate=True) as got:
        yield got


@pytest.mark.slow  # ~4-5 min: 20 takeovers of TTL + margin each, two full servers
@pytest.mark.timeout(900)
async def test_20_sigstops_at_random_points_no_write_after_the_lease(servers: tuple[Any, Server, Server]) -> None:
    simulator, a, b = servers
    rng = random.Random(19)
    async with httpx.AsyncClient(base_url=a.url, timeout=5) as ca, httpx.AsyncClient(base_url=b.url, timeout=5) as cb:
        ha, hb = await login(ca), await login(cb)
        pair = [(a, ca, ha), (b, cb, hb)]
        current = [0]
        sent = [0]
        leased: dict[int, str] = {}  # server → the last command it answered with a lease

        async def commands() -> None:
            """Operator commands to whichever server is active (a stopped one times out: ignored)."""
            level = 50
            while True:
                _srv, c, h = pair[current[0]]
                level = 150 - level
                with contextlib.suppress(httpx.HTTPError):
                    r = await c.post("/api/v1/commands", json={"target": "C0001", "verb": "set_level",
                                                               "params": {"level": level}, "lease_s": 60}, headers=h)
                    sent[0] += r.status_code == 200
                    if r.status_code == 200 and r.json().get("outcome") == "done" and r.json().get("lease_end"):
                        leased[pair.index((_srv, c, h))] = str(r.json()["id"])
                await asyncio.sleep(0.2)

        flow = asyncio.create_task(commands())
        takeovers: list[float] = []
        rejoins = 0
        try:
            for trial in range(20):
                srv, c, h = pair[current[0]]
                other, oc, oh = pair[1 - current[0]]
                await until(f"trial {trial}: {srv.dir.name} writing", lambda c=c, h=h: _writing(c, h),  # type: ignore[misc]
                            timeout_s=TTL + MARGIN + 10)
                await asyncio.sleep(rng.uniform(0, 1.5))
                srv.note_ports()
                srv.proc.send_signal(signal.SIGSTOP)
                t_stop, t_stop_ns = time.monotonic(), time.time_ns()
                current[0] = 1 - current[0]  # the commands go to the other one now
                await until(f"trial {trial}: {other.dir.name} active", lambda oc=oc, oh=oh: _role(oc, oh, "active"),  # type: ignore[misc]
                            timeout_s=TTL + MARGIN + 3)
                takeovers.append(time.monotonic() - t_stop)
                # no lease lost: the last lease the stopped server answered (the answer waited for the standby's
                # copy) is taken over by the new active: in force, or superseded there by a command it wrote since
                last = leased.get(pair.index((srv, c, h)))
                if last is not None:
                    await until(f"trial {trial}: lease of {last} taken over",
                                lambda last=last, other=other: _lease_of(other, last) in ("active", "superseded"),  # type: ignore[misc]
                                timeout_s=TTL + 5)
                ids = [r[0] for r in _journal(other)]
                assert ids == list(range(1, len(ids) + 1)), f"trial {trial}: journal gap or duplicate"
                await asyncio.sleep(rng.uniform(0, 1.0))
                srv.proc.send_signal(signal.SIGCONT)
                await until(f"trial {trial}: {srv.dir.name} standby", lambda c=c, h=h: _role(c, h, "standby"),  # type: ignore[misc]
                            timeout_s=TTL + 5)
                # it rejoins the stream by itself: its journal becomes the new active's (its own rows set aside)
                await until(f"trial {trial}: {srv.dir.name} fed", lambda c=c, h=h: _fed(c, h), timeout_s=15)  # type: ignore[misc]
                target = _journal(other)

                def copied(srv: Server = srv, target: list[tuple[int, int, int]] = target) -> bool:
                    mine = _journal(srv)
                    return len(mine) >= len(target) and mine[:len(target)] == target

                await until(f"trial {trial}: {srv.dir.name}'s journal the active's", copied, timeout_s=10)
                rejoins += 1
                srv.note_ports()
                stale = [w for w in field_writes(simulator)
                         if w.ts_ns > t_stop_ns + IN_FLIGHT_NS and w.peer[1] in srv.ports]
                assert stale == [], f"trial {trial}: {srv.dir.name} wrote after it was stopped: {stale[:5]}"
        finally:
            flow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flow
        takeovers.sort()
        print(f"20 SIGSTOP trials: takeover p50 {takeovers[9]:.2f} s, max {takeovers[-1]:.2f} s; "
              f"{sent[0]} commands answered; {len(field_writes(simulator))} field writes recorded; "
              f"{rejoins} rejoins with the journal copied; {len(leased)} servers answered leases")
        assert sent[0] > 20 and takeovers[-1] <= TTL + MARGIN + 3 and rejoins == 20
