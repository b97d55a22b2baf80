"""The crew's tablet page sends a photo with its "done", over a weak link: in a real headless Chromium (Debian
chromium + chromium-driver, Selenium) against the real server (the harness of tests/server/test_crew_page.py).

The crew picks a phone photo (2400x1800, EXIF GPS position, owner, orientation "turned 90°"), the network is
down: "done" queues the photo (reduced on a canvas, upright, no metadata) before the "done"; the page reloads,
the network returns → one photo and one "done" on the server, the photo at most 1,600 px, upright, with no
EXIF at all."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.peers import require_peer
from tests.server.conftest import PASSWORDS, ROOT
from tests.server.test_crew_page import ServerThread, wait_for
from tests.server.test_e2e import fast_city

CREW_USER, CREW_PASSWORD = "crew.lighting-day", "Ladder-Truck-5150"
OWNER = "Zephyrine Quillfeather"


def phone_photo(path: Path) -> None:
    im = Image.new("RGB", (2400, 1800), (40, 90, 160))
    im.paste((230, 200, 20), (0, 0, 600, 300))  # a mark in a corner: the JPEG is not one flat colour
    exif = Image.Exif()
    exif[0x013B] = OWNER
    exif[0x0112] = 6  # held on its side: upright, it is 1800 wide and 2400 high
    exif[0x8825] = {1: "N", 2: (47.0, 19.0, 21.5), 3: "E", 4: (5.0, 2.0, 29.4)}
    im.save(path, "JPEG", exif=exif, quality=85)


def test_crew_page_photo_with_done_over_a_weak_link(tmp_path: Path) -> None:
    chromium = require_peer("chromium", "Debian package chromium")
    driver_path = require_peer("chromedriver", "Debian package chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tags = fast_city(tmp_path)
    shutil.copy(ROOT / "crews.yaml", tags.parent / "crews.yaml")
    photo = tmp_path / "IMG_0042.jpg"
    phone_photo(photo)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-sync", "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    def setup(server: Any) -> None:
        server.users.add(CREW_USER, "crew", CREW_PASSWORD)

    with ServerThread(tmp_path / "data", setup, tags=tags, alarms=tags.parent / "alarms.yaml") as st, \
            httpx.Client(base_url=st.url, timeout=30) as c:
        tok = c.post("/api/v1/auth/login", json={"user": "sup", "password": PASSWORDS["sup"]}).json()["token"]
        sup = {"Authorization": f"Bearer {tok}"}
        oid = c.post("/api/v1/workorders", json={"equipment": "C0001", "what": "lamp out"}, headers=sup).json()["id"]
        for step, body in (("assign", {"crew": "lighting-day"}), ("en-route", {}), ("on-site", {})):
            r = c.post(f"/api/v1/workorders/{oid}/{step}", json=body, headers=sup)
            assert r.status_code == 200, r.text

        def history() -> list[dict[str, Any]]:
            return list(c.get(f"/api/v1/workorders/{oid}/history", headers=sup).json())

        driver = webdriver.Chrome(options=opts, service=Service(driver_path))

        def attr(selector: str, name: str) -> Any:
            return driver.execute_script("const e = document.querySelector(arguments[0]);"
                                         "return e && e.getAttribute(arguments[1]);", selector, name)

        def network(offline: bool) -> None:
            if offline:
                driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
            else:
                driver.delete_network_conditions()
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
                "offline": offline, "latency": 0 if offline else 150,
                "downloadThroughput": -1 if offline else 50_000, "uploadThroughput": -1 if offline else 20_000})

        try:
            driver.set_page_load_timeout(30)
            driver.get(f"{st.url}/crew/")
            driver.find_element(By.ID, "user").send_keys(CREW_USER)
            driver.find_element(By.ID, "password").send_keys(CREW_PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
            card = wait_for("the mission on site", lambda: next(iter(driver.find_elements(
                By.CSS_SELECTOR, f'li[data-order="{oid}"][data-status="on_site"]')), None))
            network(offline=True)
            time.sleep(6.0)  # uvicorn closes the idle keep-alive sockets (they would bypass the emulation)
            card.find_element(By.CSS_SELECTOR, "input.photo").send_keys(str(photo))
            card.find_element(By.CSS_SELECTOR, "textarea.note").send_keys("lamp replaced")
            card.find_element(By.CSS_SELECTOR, 'button[data-action="done"]').click()
            wait_for("photo and done queued", lambda: attr("#sync", "data-pending") == "2")
            queued = json.loads(driver.execute_script("return localStorage.getItem('scada.crew.queue.v1')"))
            assert [q["step"] for q in queued] == ["photos", "done"]  # the photo first: noted before "done"
            assert queued[0]["photo"].startswith("data:image/jpeg;base64,") and "photo" not in queued[1]
            assert not any(h["action"] in ("note", "done") for h in history())  # offline: nothing arrived
            driver.refresh()  # offline: the error page; the queue stays in localStorage
            network(offline=False)
            driver.get(f"{st.url}/crew/")
            wait_for("the queue sent", lambda: attr("#sync", "data-pending") == "0", timeout=60)
            wait_for("done recorded", lambda: any(h["action"] == "done" for h in history()))
            console = [e["message"] for e in driver.get_log("browser")]  # type: ignore[no-untyped-call]
        finally:
            driver.quit()
        actions = [(h["action"], h["data"].get("photo")) for h in history()]
        photos = [p for a, p in actions if a == "note" and p]
        assert len(photos) == 1 and [a for a, _ in actions].count("done") == 1, actions
        assert [a for a, _ in actions].index("note") < [a for a, _ in actions].index("done")
        served = c.get(f"/api/v1/workorders/{oid}/photos/{photos[0]}", headers=sup)
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(served.content)) as im:
            assert im.size == (1200, 1600), im.size  # reduced to 1,600 px and upright
            assert not im.getexif()
        assert OWNER.encode() not in served.content and b"GPS" not in served.content
    assert not [m for m in console if "Content Security Policy" in m], console
    shutil.rmtree(profile, ignore_errors=True)
