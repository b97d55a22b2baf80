"""The crew's tablet page in a real headless browser (Debian chromium + chromium-driver, Selenium) against the
real server: login, the crew's own missions in order, "on my way" online; then the network drops, the crew
presses "done", the page reloads (offline), the network returns → exactly one "done" recorded — even with the
queued action duplicated (two tabs) and sent twice."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.peers import require_peer
from tests.server.conftest import PASSWORDS, ROOT, running_server
from tests.server.test_e2e import fast_city

CREW_USER, CREW_PASSWORD = "crew.lighting-day", "Ladder-Truck-5150"


class ServerThread:
    """The real server in its own thread and event loop (Selenium's calls block), ``setup`` run in its loop."""

    def __init__(self, data_dir: Path, setup: Callable[[Any], None], **overrides: Any) -> None:
        self.data_dir, self.setup, self.overrides = data_dir, setup, overrides
        self.url = ""
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            async with running_server(self.data_dir, **self.overrides) as (server, url):
                self.setup(server)
                self.url = url
                self.ready.set()
                await asyncio.wait_for(self.stop.wait(), timeout=300)

        try:
            asyncio.run(run())
        except BaseException as exc:  # reported to the test
            self.error = exc
            self.ready.set()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.ready.wait(90)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_crew_page_offline_done_is_recorded_once(tmp_path: Path) -> None:
    chromium = require_peer("chromium", "Debian package chromium")
    driver_path = require_peer("chromedriver", "Debian package chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tags = fast_city(tmp_path)
    shutil.copy(ROOT / "crews.yaml", tags.parent / "crews.yaml")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})

    def setup(server: Any) -> None:
        server.users.add(CREW_USER, "crew", CREW_PASSWORD)

    with ServerThread(tmp_path / "data", setup, tags=tags, alarms=tags.parent / "alarms.yaml") as st, \
            httpx.Client(base_url=st.url, timeout=30) as c:
        tok = c.post("/api/v1/auth/login", json={"user": "op", "password": PASSWORDS["op"]}).json()["token"]
        op = {"Authorization": f"Bearer {tok}"}
        orders = []
        for eq, what, prio in (("C0001", "lamp out", 3), ("C0002", "cabinet dark", 1), ("C0003", "door open", 4)):
            r = c.post("/api/v1/workorders", json={"equipment": eq, "what": what, "priority": prio}, headers=op)
            assert r.status_code == 200, r.text
            orders.append(r.json()["id"])
        for oid in orders[:2]:  # the third is the night crew's: never shown to this crew
            r = c.post(f"/api/v1/workorders/{oid}/assign", json={"crew": "lighting-day"}, headers=op)
            assert r.status_code == 200, r.text
        c.post(f"/api/v1/workorders/{orders[2]}/assign", json={"crew": "lighting-night"}, headers=op)
        # orders[1] is priority 1 (due sooner): listed first; both are "assigned"
        first, second = orders[1], orders[0]

        def history(oid: str) -> list[str]:
            return [h["action"] for h in c.get(f"/api/v1/workorders/{oid}/history", headers=op).json()]

        driver = webdriver.Chrome(options=opts, service=Service(driver_path))

        def attr(selector: str, name: str) -> Any:
            """Read in one script: the page re-renders its list, an element found earlier may be gone."""
            return driver.execute_script("const e = document.querySelector(arguments[0]);"
                                         "return e && e.getAttribute(arguments[1]);", selector, name)

        seen: list[dict[str, Any]] = []

        def perf() -> list[dict[str, Any]]:
            """The DevTools events since the last call (kept for the end's check of every URL)."""
            got = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]  # type: ignore[no-untyped-call]
            seen.extend(got)
            return got

        def network(offline: bool) -> None:
            """The browser's network emulation: chromedriver's (re-applied on every navigation) and the DevTools
            protocol's own for the page in place."""
            if offline:
                driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
            else:
                driver.delete_network_conditions()
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
                "offline": offline, "latency": 0 if offline else 150,  # a weak mobile link when back
                "downloadThroughput": -1 if offline else 50_000, "uploadThroughput": -1 if offline else 20_000})

        try:
            driver.set_page_load_timeout(30)
            driver.get(f"{st.url}/crew")  # → /crew/
            driver.find_element(By.ID, "user").send_keys(CREW_USER)
            driver.find_element(By.ID, "password").send_keys(CREW_PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

            def shown() -> list[str]:
                return list(driver.execute_script(
                    "return Array.from(document.querySelectorAll('li.mission'), e => e.dataset.order)"))

            assert wait_for("the missions", lambda: shown() if len(shown()) == 2 else None) == [first, second]
            card = driver.find_element(By.CSS_SELECTOR, f'li[data-order="{first}"]')
            nav = card.find_element(By.CSS_SELECTOR, "a.nav").get_attribute("href") or ""
            assert nav.startswith("geo:47.") and "C0002" in nav
            # online: "on my way" reaches the server at once
            card.find_element(By.CSS_SELECTOR, 'button[data-action="en-route"]').click()
            wait_for("en route", lambda: "en_route" in history(first))
            wait_for("the list refreshed", lambda: attr(f'li[data-order="{first}"]', "data-status") == "en_route")
            sup = c.post("/api/v1/auth/login", json={"user": "sup", "password": PASSWORDS["sup"]}).json()["token"]
            r = c.post(f"/api/v1/workorders/{first}/on-site", json={},  # the geofence's job, by hand here
                       headers={"Authorization": f"Bearer {sup}"})
            assert r.status_code == 200, r.text
            driver.refresh()
            card = wait_for("on site", lambda: next(iter(driver.find_elements(
                By.CSS_SELECTOR, f'li[data-order="{first}"][data-status="on_site"]')), None))
            # the network drops; the crew writes a note and presses done: queued, not sent
            network(offline=True)
            # the emulation fails new connections; a keep-alive socket opened before would still carry a request
            # (and hold its answer): let the server close the idle ones first (uvicorn: after 5 s)
            time.sleep(6.0)
            card.find_element(By.CSS_SELECTOR, "textarea.note").send_keys("fuse replaced")
            card.find_element(By.CSS_SELECTOR, 'button[data-action="done"]').click()
            wait_for("the action queued", lambda: attr("#sync", "data-pending") == "1")
            wait_for("the send failed", lambda: (driver.find_element(By.ID, "sync").text or "").startswith("offline"))
            assert "done" not in history(first)  # the page is offline: nothing reached the server
            queued = json.loads(driver.execute_script("return localStorage.getItem('scada.crew.queue.v1')"))
            assert len(queued) == 1 and queued[0]["step"] == "done" and queued[0]["body"]["note"] == "fuse replaced"
            # a second tab would hold the same action: the queue now holds it twice, with the same key
            driver.execute_script("localStorage.setItem('scada.crew.queue.v1', JSON.stringify("
                                  "[arguments[0], arguments[0]]))", queued[0])
            driver.refresh()  # offline: the browser's error page; the queue stays in localStorage
            assert driver.execute_script("return navigator.onLine") is False
            # (Chromium's emulation is not airtight around a reload: a retry of the page may still reach the
            # server then, its reply lost with the page, as on a real weak link. Either way the queue keeps what
            # was not acknowledged, and the server must record one "done" whatever reaches it, and how often.)
            # the network returns: the page loads, sends the queue, both copies answered, one recorded
            network(offline=False)
            driver.get(f"{st.url}/crew/")
            wait_for("the queue sent", lambda: attr("#sync", "data-pending") == "0")
            wait_for("done recorded", lambda: "done" in history(first))
            time.sleep(1.0)
            actions = history(first)
            assert actions.count("done") == 1, actions
            order = c.get(f"/api/v1/workorders/{first}", headers=op).json()
            assert order["status"] in ("done", "resolved") and order["notes"][-1]["text"] == "fuse replaced"
            assert driver.execute_script("return localStorage.getItem('scada.crew.queue.v1')") == "[]"
            # the other crew's order was never listed, and is refused to this crew
            assert orders[2] not in shown()
            perf()
            urls = [m["params"]["request"]["url"] for m in seen if m["method"] == "Network.requestWillBeSent"]
            console = [e["message"] for e in driver.get_log("browser")]  # type: ignore[no-untyped-call]
        finally:
            driver.quit()
    assert not [m for m in console if "Content Security Policy" in m], console
    internal = ("chrome", "chrome-untrusted", "data", "blob", "about", "devtools")
    away = [u for u in urls if urlsplit(u).scheme not in internal and urlsplit(u).hostname != "127.0.0.1"]
    assert away == [], f"requests left for another host: {away}"
    shutil.rmtree(profile, ignore_errors=True)
