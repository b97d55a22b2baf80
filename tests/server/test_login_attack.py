"""Logins, sessions and passwords under attack, against a real server (uvicorn on 127.0.0.1, port 0) and the
real ``scada users`` command in another process.

- 100 parallel guesses: at most ``max_failures`` password checks, then 429 even for the right password;
  another account's right password from the same address still logs in; the burst alarm rises and
  clears; ``scada users unlock`` (another process) lifts the lock-out of the running server.
- ``scada users disable`` (another process): the operator's token is refused at its next request.
- the holder's own password change ends their other sessions, keeps this one, is audited and journalled.
- an account from before the password policy must change its password before anything else.
- the idle timeout ends an operator's session, not a viewer's.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from server.app import ScadaServer
from tests.server.conftest import FAST_HASHER, PASSWORDS, ROOT, login, running_server

LOGIN = "/api/v1/auth/login"


async def _scada_users(data: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The real ``scada users`` command in its own process (what an administrator types on the server)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "users", "--data-dir", str(data), *args, cwd=ROOT,
        env={**os.environ, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return int(proc.returncode or 0), out.decode()


async def test_parallel_guesses_cannot_outrun_the_limit(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_server(data) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        server.limiter.burst.quiet_s = 1.0  # the burst alarm's quiet minute, shortened for the test
        started = time.time_ns()
        answers = await asyncio.gather(*(c.post(LOGIN, json={"user": "sup", "password": f"guess-{i}"})
                                         for i in range(100)))
        codes = [r.status_code for r in answers]
        checked = server.audit.query(since_ns=started, type_="login", user="sup", limit=1000)
        failures = [r for r in checked if r.result == "failure"]
        # every 401 is one argon2 check, and each is audited: never more than max_failures (5)
        assert codes.count(401) == len(failures) <= server.settings.login.max_failures
        assert codes.count(429) == 100 - codes.count(401) and codes.count(429) >= 95
        assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 429)
        # the right password is refused while the account is locked...
        r = await c.post(LOGIN, json={"user": "sup", "password": PASSWORDS["sup"]})
        assert r.status_code == 429 and r.json()["code"] == "locked_out", r.text
        assert "account" in r.json()["why"]
        # ...but another account's right password from the same address is not
        assert (await c.post(LOGIN, json={"user": "op", "password": PASSWORDS["op"]})).status_code == 200
        # ≥ 20 failed or refused logins in 60 s for one account: the P3 system alarm
        assert server.tagdb.read("system/auth/login_burst").value == 1
        ha = await login(c, "admin")
        alarms = (await c.get("/api/v1/alarms", headers=ha)).json()
        burst = [a for a in alarms["alarms"] if a["rule"] == "system.auth.login_burst"]
        assert burst and burst[0]["priority"] == 3, alarms
        # a real `scada users unlock` process lifts the running server's lock at once
        code, out = await _scada_users(data, "unlock", "sup")
        assert code == 0 and "sup unlocked" in out, out
        r = await c.post(LOGIN, json={"user": "sup", "password": PASSWORDS["sup"]})
        assert r.status_code == 200, r.text
        await asyncio.sleep(1.5)  # quiet: the condition clears
        assert server.tagdb.read("system/auth/login_burst").value == 0
        kinds = {(a.type, a.result) for a in server.audit.query(since_ns=started, limit=1000)}
        assert {("login_burst", "raised"), ("login_burst", "cleared"), ("user_unlocked", "ok")} <= kinds


async def test_cli_disable_ends_the_session_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_server(data) as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        ho = await login(c, "op")
        hv = await login(c, "view")
        assert (await c.get("/api/v1/auth/me", headers=ho)).status_code == 200
        code, out = await _scada_users(data, "disable", "op")
        assert code == 0 and "op disabled" in out, out
        r = await c.post("/api/v1/commands", json={"target": "J024", "verb": "flash"}, headers=ho)
        assert r.status_code == 401 and r.json()["code"] == "token_invalid", r.text
        assert "disabled" in r.json()["why"]
        assert (await c.post(LOGIN, json={"user": "op", "password": PASSWORDS["op"]})).status_code == 401
        # a demotion by the CLI ends the session too (its role is the old one); the other users go on
        code, out = await _scada_users(data, "role", "view", "operator")
        assert code == 0, out
        assert (await c.get("/api/v1/auth/me", headers=hv)).status_code == 401
        assert (await c.get("/api/v1/auth/me", headers=await login(c, "view"))).json()["role"] == "operator"
        # the CLI's changes are in the server's audit trail
        changed = [r for r in server.audit.query(type_="user_changed", limit=10) if r.source.startswith("cli@")]
        assert {r.detail["target"] for r in changed} == {"op", "view"}


async def test_own_password_change(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    h1, h2 = await login(c, "op"), await login(c, "op")
    new = "Lamp-Watch-Night-2031"
    r = await c.post("/api/v1/auth/password", json={"old": PASSWORDS["op"], "new": "Password1!"}, headers=h1)
    assert r.status_code == 409 and "too short" in r.json()["why"], r.text
    r = await c.post("/api/v1/auth/password", json={"old": "not-the-password", "new": new}, headers=h1)
    assert r.status_code == 409 and "current password" in r.json()["why"], r.text
    r = await c.post("/api/v1/auth/password", json={"old": PASSWORDS["op"], "new": new}, headers=h1)
    assert r.status_code == 200 and r.json() == {"user": "op", "sessions_revoked": 1}, r.text
    assert (await c.get("/api/v1/auth/me", headers=h1)).status_code == 200  # this session goes on
    assert (await c.get("/api/v1/auth/me", headers=h2)).status_code == 401  # the other one ended
    assert (await c.post(LOGIN, json={"user": "op", "password": PASSWORDS["op"]})).status_code == 401
    assert (await c.post(LOGIN, json={"user": "op", "password": new})).status_code == 200
    assert {(a.type, a.result) for a in server.audit.query(type_="password_changed")} == {
        ("password_changed", "ok"), ("password_changed", "refused")}
    assert server.journal is not None
    rows = server.journal.query({"user": "op"}, 50, 0)
    assert any("changed their own password" in (row.get("detail") or "") for row in rows), rows


async def test_old_policy_accounts_must_change_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "users.sqlite")  # a users.sqlite of the previous schema and policy
    db.execute("CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, "
               "disabled INTEGER NOT NULL DEFAULT 0, created_ns INTEGER NOT NULL, changed_ns INTEGER NOT NULL)")
    db.execute("INSERT INTO users VALUES ('legacy', 'operator', ?, 0, 1, 1)", (FAST_HASHER.hash("Old-Rule-10"),))
    db.commit()
    db.close()
    async with running_server(data) as (_server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post(LOGIN, json={"user": "legacy", "password": "Old-Rule-10"})
        assert r.status_code == 200 and r.json()["must_change_password"] is True, r.text
        h = {"Authorization": f"Bearer {r.json()['token']}"}
        for method, path in (("GET", "/api/v1/auth/me"), ("GET", "/api/v1/alarms"), ("POST", "/api/v1/commands")):
            r = await c.request(method, path, headers=h, json={"target": "J024", "verb": "flash"})
            assert r.status_code == 403 and r.json()["code"] == "password_change_required", (path, r.text)
        r = await c.post("/api/v1/auth/password", json={"old": "Old-Rule-10", "new": "brand-new-long-passphrase"},
                         headers=h)
        assert r.status_code == 200, r.text
        assert (await c.get("/api/v1/auth/me", headers=h)).status_code == 200
        r = await c.post(LOGIN, json={"user": "legacy", "password": "brand-new-long-passphrase"})
        assert r.json()["must_change_password"] is False
        assert (await c.post(LOGIN, json={"user": "op", "password": PASSWORDS["op"]})).json()[
            "must_change_password"] is False
        assert (await c.post("/api/v1/auth/logout", headers=h)).status_code == 204


async def test_idle_timeout(tmp_path: Path) -> None:
    idle: dict[str, Any] = {"session.idle_timeout": 0.6}
    async with running_server(tmp_path / "d", **idle) as (_server, url), \
            httpx.AsyncClient(base_url=url) as c:
        ho, hv = await login(c, "op"), await login(c, "view")
        for _ in range(3):  # each request refreshes the idle time
            await asyncio.sleep(0.35)
            assert (await c.get("/api/v1/auth/me", headers=ho)).status_code == 200
        await asyncio.sleep(0.9)
        r = await c.get("/api/v1/auth/me", headers=ho)
        assert r.status_code == 401 and r.json()["code"] == "session_idle", r.text
        assert (await c.get("/api/v1/auth/me", headers=hv)).status_code == 200  # a viewer: no idle limit
