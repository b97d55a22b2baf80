"""The HTTP surface under attack, against a real server (uvicorn on 127.0.0.1, port 0).

    body limit      a REAL 100 MB body to /auth/login, with Content-Length and chunked, from a raw socket that
                    keeps writing until the answer comes: 413 too_large at once, RSS growth < 20 MB, and the
                    server still answers
    forwarded       X-Forwarded-For from 127.0.0.1 changes nothing by default (audit source, lockout); with
                    127.0.0.1 listed in http.trusted_proxies it is the client; X-Workstation is a claim
    headers         nosniff, no-store, CSP frame-ancestors 'none', Referrer-Policy on every kind of answer
    commands        a replayed operate on a finished ticket is 409 already_done with the original outcome;
                    a crisis run is queryable at /commands/{run id} with each step's outcome
    /docs           Swagger UI renders in a real headless chromium with no request leaving 127.0.0.1
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from server.app import ScadaServer
from tests.peers import require_peer
from tests.server.conftest import PASSWORDS, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture

MB = 1 << 20


def rss_bytes() -> int:
    """This process's resident set (the server runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def raw_post(url: str, path: str, total: int, chunked: bool) -> dict[str, Any]:
    """POST ``total`` bytes, written 64 KiB at a time until the server answers or all is sent (a client that
    ignores the answer would go on: the server must not hold what it sends). Returns status, body, the time
    to the answer and how much had been sent by then."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
                 .encode())
    start = time.monotonic()
    answered: dict[str, Any] = {}
    head = asyncio.create_task(reader.readuntil(b"\r\n\r\n"))
    sent = 0
    block = b'{"user": "op", "password": "' + b"x" * (64 * 1024 - 30)
    try:
        while sent < total and not head.done():
            data = block[: total - sent]
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await writer.drain()
            sent += len(data)
        answered["sent"] = sent
        answered["seconds"] = time.monotonic() - start
        # keep writing the rest, as a careless or hostile client does: the server throws it away
        while sent < total:
            data = block[: total - sent]
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await writer.drain()
            sent += len(data)
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the server closed a connection that kept sending past its keep-alive time: fair
    raw = await asyncio.wait_for(head, 30)
    answered.setdefault("sent", sent)
    answered.setdefault("seconds", time.monotonic() - start)
    lines = raw.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 30)
    writer.close()
    answered.update(status=int(lines[0].split()[1]), headers=headers, body=json.loads(body), total_sent=sent)
    return answered


async def test_a_100_mb_body_is_refused_before_parsing(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as (_server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        assert (await c.post("/api/v1/auth/login", json={"user": "op", "password": PASSWORDS["op"]})).status_code == 200
        before = rss_bytes()
        for chunked in (False, True):
            got = await raw_post(url, "/api/v1/auth/login", 100 * MB, chunked)
            assert got["status"] == 413, got
            assert got["body"]["code"] == "too_large" and got["body"]["what"] == "POST /api/v1/auth/login", got
            assert "1 MiB" in got["body"]["why"]
            assert got["headers"]["x-content-type-options"] == "nosniff"  # a refusal is hardened too
            assert got["seconds"] < 5, got["seconds"]
            assert got["sent"] < 100 * MB, "answered only once the whole body was in"
        grown = rss_bytes() - before
        assert grown < 20 * MB, f"RSS grew {grown / MB:.1f} MB over two 100 MB bodies"
        # the server still serves, a body under the limit still parses
        assert (await c.post("/api/v1/auth/login", json={"user": "op", "password": PASSWORDS["op"]})).status_code == 200
        r = await c.post("/api/v1/auth/login", content=b"{" + b" " * (MB - 10) + b"}",
                         headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text  # parsed (and refused as a bad login body), not 413


async def test_a_route_prefix_gets_its_own_limit(tmp_path: Path) -> None:
    limits = {"/api/v1/auth/": "4KiB"}
    async with running_server(tmp_path / "data", **{"http.max_body_by_prefix": limits}) as (_s, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as c:
        r = await c.post("/api/v1/auth/login", content=b"x" * 5000, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "too_large" and "4096 bytes" in r.json()["why"], r.text
        h = await login(c, "op")  # a small body on the same prefix passes
        async def chunks() -> Any:  # chunked, no Content-Length: counted as it streams
            for _ in range(3):
                yield b"x" * 2000
        r = await c.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
        # elsewhere the default (1 MiB) still holds: 5000 bytes of a bad body are parsed and refused as such
        r = await c.post("/api/v1/alarms/ack", content=b"x" * 5000, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 422, r.text


async def test_forwarded_headers_are_ignored_unless_from_a_listed_proxy(tmp_path: Path) -> None:
    async with running_server(tmp_path / "a") as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        limit = server.settings.login.max_failures
        for i in range(limit + 1):  # a new forged address each time: the lockout still counts the real client
            r = await c.post("/api/v1/auth/login", json={"user": "op", "password": "wrong-guess-123456"},
                             headers={"X-Forwarded-For": f"10.0.0.{i + 1}"})
        assert r.status_code == 429, r.text
        sources = {rec.source for rec in server.audit.query(category="access_control")}
        assert sources <= {"127.0.0.1", ""} and "127.0.0.1" in sources, sources
        # X-Workstation is recorded as a claim beside the verified source, never as the source
        ha = await login(c, "admin")
        r = await c.post("/api/v1/users", json={"name": "temp", "role": "viewer", "password": "Visitor-Pass-77-x"},
                         headers={**ha, "X-Workstation": "WS-FORGED", "X-Forwarded-For": "10.6.6.6"})
        assert r.status_code in (200, 201), r.text
        rec = next(x for x in server.audit.query(category="configuration_change") if x.type == "user_added")
        assert rec.source == "127.0.0.1" and rec.detail["workstation_claimed"] == "WS-FORGED", rec
    async with running_server(tmp_path / "b", **{"http.trusted_proxies": ["127.0.0.1"]}) as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as c:
        await c.post("/api/v1/auth/login", json={"user": "op", "password": "wrong-guess-123456"},
                     headers={"X-Forwarded-For": "10.9.8.7"})
        failures = [x for x in server.audit.query(category="access_control") if x.result != "ok"]
        assert failures and failures[0].source == "10.9.8.7", failures


async def test_hardening_headers_on_every_kind_of_answer(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    _server, c = live
    h = await login(c, "view")
    answers = {
        "health": await c.get("/api/v1/health"),
        "authenticated": await c.get("/api/v1/tags", params={"pattern": "dijon/*", "limit": 1}, headers=h),
        "unauthenticated": await c.get("/api/v1/tags"),
        "forbidden": await c.post("/api/v1/backup", headers=h),
        "not found": await c.get("/api/v1/nothing-here"),
        "invalid": await c.get("/api/v1/tags", params={"limit": "x"}, headers=h),
        "too large": await c.post("/api/v1/auth/login", content=b"x" * (2 * MB)),
        "openapi": await c.get("/openapi.json"),
        "docs": await c.get("/docs"),
    }
    assert answers["authenticated"].status_code == 200 and answers["too large"].status_code == 413
    assert [k for k, r in answers.items() if r.status_code >= 500] == []
    for what, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", what
        assert r.headers.get("referrer-policy") == "no-referrer", what
        assert r.headers.get("cache-control") == "no-store", what
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), what
    assert answers["health"].headers["content-security-policy"].startswith("default-src 'none'")
    docs_csp = answers["docs"].headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in docs_csp and "unsafe-inline" not in docs_csp.split("style-src")[0]
    assert "cdn" not in answers["docs"].text.lower() and "/docs-assets/swagger-ui-bundle.js" in answers["docs"].text
    asset = await c.get("/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset.headers["x-content-type-options"] == "nosniff"
    assert "no-store" not in asset.headers.get("cache-control", "")  # static code: cacheable


async def test_replayed_operate_is_409_and_crisis_runs_are_queryable(field: tuple[Any, Path],
                                                                      tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        ho, hs = await login(c, "op"), await login(c, "sup")
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        await until("the cabinet polled", lambda: server.tagdb.read(cab.tag_name("mode")).quality.is_good, timeout=40)
        r = await c.post("/api/v1/commands", json={"target": cab.id, "verb": "set_level", "params": {"level": 100},
                                                   "lease_s": 60}, headers=ho)
        assert r.status_code == 200 and r.json()["state"] == "finished", r.text
        cmd = r.json()  # "done" normally; a loaded machine may see the write fail: the replay must say either
        model = sim.models[cab.id]
        model.override_level = 50  # as if the cabinet's own logic moved on: a second write would put 100 back
        replay = await c.post(f"/api/v1/commands/{cmd['id']}/operate", headers=ho)
        assert replay.status_code == 409, replay.text
        body = replay.json()
        assert body["code"] == "already_done" and body["outcome"] == cmd["outcome"], body
        assert body["command"]["id"] == cmd["id"] and body["what"] and body["why"]
        await asyncio.sleep(1)
        assert model.override_level == 50  # nothing was written again
        # a crisis run, then its record through the command status route
        plans = (await c.get("/api/v1/crisis/plans", headers=hs)).json()["plans"]
        assert plans
        run = await c.post(f"/api/v1/crisis/plans/{plans[0]['name']}/activate", headers=hs)
        assert run.status_code == 200, run.text
        got = await c.get(f"/api/v1/commands/{run.json()['id']}", headers=ho)
        assert got.status_code == 200, got.text
        steps = got.json()["steps"]
        assert len(steps) == len(plans[0]["steps"]) and all(s["outcome"] for s in steps), steps
        if run.json().get("approval"):  # awaiting a second person: the approval id finds the run too
            by_approval = await c.get(f"/api/v1/commands/{run.json()['approval']}", headers=ho)
            assert by_approval.status_code == 200 and by_approval.json()["id"] == run.json()["id"]


def test_docs_render_offline_in_a_headless_browser(tmp_path: Path) -> None:
    chromium = require_peer("chromium", "Debian package chromium")
    driver_path = require_peer("chromedriver", "Debian package chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.server.test_fuzz import _ServerThread

    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    with _ServerThread(tmp_path / "data") as st:
        driver = webdriver.Chrome(options=opts, service=Service(driver_path))
        try:
            driver.set_page_load_timeout(60)
            driver.get(f"{st.url}/docs")
            WebDriverWait(driver, 60).until(expected_conditions.visibility_of_element_located(
                (By.CSS_SELECTOR, ".opblock .opblock-summary-path")))
            paths = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
            assert any("/api/v1/auth/login" in p for p in paths), paths[:10]
            urls = []
            for entry in driver.get_log("performance"):
                msg = json.loads(entry["message"])["message"]
                if msg["method"] == "Network.requestWillBeSent":
                    urls.append(msg["params"]["request"]["url"])
            console = [e["message"] for e in driver.get_log("browser")]
        finally:
            driver.quit()
    assert not [m for m in console if "Content Security Policy" in m], console  # the page's CSP lets it work
    assert any(u.endswith("/openapi.json") for u in urls) and any("swagger-ui-bundle.js" in u for u in urls), urls
    # chrome://, data:, blob:, about: are the browser's own (its new-tab page); anything on the network must be us
    internal = ("chrome", "chrome-untrusted", "data", "blob", "about", "devtools")
    away = [u for u in urls if urlsplit(u).scheme not in internal and urlsplit(u).hostname != "127.0.0.1"]
    assert away == [], f"requests left for another host: {away}"
    shutil.rmtree(profile, ignore_errors=True)

