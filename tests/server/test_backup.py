"""POST /api/v1/backup: private copies (files 0600, folders 0700, whatever the umask) under unique names, so
that two backups in the same second both succeed; each copy is a usable SQLite database."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import httpx

from tests.server.conftest import login, running_server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_two_backups_in_the_same_second_are_private_and_distinct(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which sqlite would create 0644 files
    try:
        async with running_server(tmp_path / "data", **{"historian.backend": "embedded"}) as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60) as c:
            h = await login(c, "admin")
            assert mode(server.data_dir / "users.sqlite") == 0o600  # the live file: the copy must not be laxer
            first, second = await asyncio.gather(c.post("/api/v1/backup", headers=h),
                                                 c.post("/api/v1/backup", headers=h))
            third = await c.post("/api/v1/backup", headers=h)
    finally:
        os.umask(old)
    for r in (first, second, third):
        assert r.status_code == 200, r.text
    paths = [Path(r.json()["path"]) for r in (first, second, third)]
    assert len(set(paths)) == 3, paths
    assert paths[0].name[:16] == paths[1].name[:16]  # same UTC second (the stamp), told apart by the suffix
    root = paths[0].parent
    assert root == tmp_path / "data" / "backups" and mode(root) == 0o700
    for path, r in zip(paths, (first, second, third), strict=True):
        assert mode(path) == 0o700, oct(mode(path))
        files = sorted(p.name for p in path.iterdir())
        assert files == sorted(r.json()["files"]) and "users.sqlite" in files and "audit.sqlite" in files, files
        assert "historian-history.sqlite" in files and "workorders.sqlite" in files
        for f in path.iterdir():
            assert mode(f) == 0o600, (f, oct(mode(f)))
        with sqlite3.connect(f"file:{path / 'users.sqlite'}?mode=ro", uri=True) as db:  # a usable copy
            assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
