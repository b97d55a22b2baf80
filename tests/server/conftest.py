"""Fixtures: a real server (uvicorn on 127.0.0.1 port 0) in the test's event loop, users, tokens."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from server.app import ScadaServer
from server.main import serve
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"admin": "Root-Secret-991", "op": "Lamp-Watch-2024", "op2": "Night-Shift-777", "sup": "Chief-Room-5511",
             "view": "Look-Only-Screen-3030", "maint": "Work-Order-8181", "eng": "Yaml-Builder-42"}
ROLES = {"admin": "administrator", "op": "operator", "op2": "operator", "sup": "supervisor", "view": "viewer",
         "maint": "maintenance", "eng": "engineer"}
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


def nowhere_endpoints(tags: Path = ROOT / "tags.yaml") -> dict[str, str]:
    """Every logical endpoint pointed at nothing (port 1 refuses; no such serial path): tests that do not
    run the simulator must not reach one somebody else runs on the demo ports."""
    from ruamel.yaml import YAML

    names = YAML(typ="safe").load(tags.read_text())["endpoints"]
    return {n: ("/nonexistent/scada-test-" + n if str(v).startswith("/") else "127.0.0.1:1") for n, v in names.items()}


@contextlib.asynccontextmanager
async def running_server(data_dir: Path, endpoints: dict[str, str] | None = None, users: bool = True,
                         **overrides: Any) -> AsyncIterator[tuple[ScadaServer, str]]:
    opts: dict[str, Any] = {"data_dir": data_dir, "listen.port": 0, "tags": ROOT / "tags.yaml",
                            "alarms": ROOT / "alarms.yaml", "historian.backend": "none",
                            # the assertions read the English texts; the shipped city's French (its site lang)
                            # is what tests/server/test_i18n_api.py checks, with ?lang= on the same server
                            "lang": "en"}
    opts.update(overrides)
    settings = load_settings(None, opts)
    got: asyncio.Future[tuple[ScadaServer, str]] = asyncio.get_running_loop().create_future()

    def ready(server: ScadaServer, url: str) -> None:
        server.users.hasher = FAST_HASHER
        if users:
            for name, role in ROLES.items():
                if server.users.get(name) is None:
                    server.users.add(name, role, PASSWORDS[name])
        got.set_result((server, url))

    task = asyncio.create_task(serve(settings, endpoints if endpoints is not None else nowhere_endpoints(), ready=ready,
                                     install_signals=False))
    done, _ = await asyncio.wait({task, got}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    server, url = got.result()
    try:
        yield server, url
    finally:
        server.stop_event.set()
        await asyncio.wait_for(task, timeout=30)


async def login(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/login", json={"user": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[ScadaServer, httpx.AsyncClient]]:
    async with running_server(tmp_path / "data") as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        yield server, c
