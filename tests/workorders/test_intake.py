"""Citizen reports: location on the nearest equipment (a cabinet's luminaires count), deduplication into
the equipment's open order, the reference a reporter follows, the channel's token and rate, and the
reporter's contact data — stored apart, purged, and never in any API answer, export, journal, log or backup
(a real server: every GET route of its OpenAPI document walked with an administrator's token)."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from scada.config import CityConfig
from scada.errors import Refused
from scada.geo import M_PER_DEG_LAT
from scada.workorders import OrderQuery, Status
from scada.workorders.intake import (
    CONTACTS_FILE,
    Contact,
    Intake,
    IntakeConfig,
    Locator,
    Receipt,
    Report,
    Submission,
    TokenBucket,
    check_intake,
    hash_token,
    load_intake,
)
from tests.workorders.conftest import MIN, ROOT, T0, Book

TOKEN = "call-centre-token-0123456789abcdefghij"
APP_TOKEN = "citizen-app-token-9876543210zyxwvuts"
INTAKE_YAML = f"""
radius_m: 150
contact_retention: 30d
channels:
  call_centre: {{token_sha256: {hash_token(TOKEN)}, per_minute: 6000}}
  app: {{token_sha256: {hash_token(APP_TOKEN)}, per_minute: 60, burst: 3}}
"""
# unique strings: found anywhere they should not be, they can only come from the contact data
NAME, PHONE, EMAIL = "Zephyrine Quillfeather", "+33 6 98 76 54 32", "zq.reporter@example.org"


def metres_north(lat: float, m: float) -> float:
    return lat + m / M_PER_DEG_LAT


@pytest.fixture
def intake(tmp_path: Path, book: Book) -> Any:
    (tmp_path / "intake.yaml").write_text(INTAKE_YAML, encoding="utf-8")
    it = Intake(tmp_path, book.orders, load_intake(tmp_path / "intake.yaml"))
    yield it
    it.close()


def test_config_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "intake.yaml"
    bad.write_text("radius_m: -3\nchannels:\n  app: {token_sha256: nothex}\n  web: {token_sha256: "
                   f"{hash_token('x')}, per_minute: 0}}\n", encoding="utf-8")
    config, problems = check_intake(bad)
    assert config is None
    text = "\n".join(str(p) for p in problems)
    assert "radius_m" in text and "channel 'app'" in text and "channel 'web'" in text, text
    good = tmp_path / "ok.yaml"
    good.write_text(INTAKE_YAML, encoding="utf-8")
    cfg = load_intake(good)
    assert cfg.channel_of(TOKEN) is not None and cfg.channel_of(TOKEN).name == "call_centre"  # type: ignore[union-attr]
    assert cfg.channel_of("call-centre-token") is None and TOKEN not in good.read_text()  # only its hash is stored


def test_scada_check_validates_intake_yaml(tmp_path: Path) -> None:
    """``scada check`` reads intake.yaml beside tags.yaml (or --intake): every problem at once, with its line, what
    was got and a did-you-mean; a valid one passes."""
    for name in ("tags.yaml", "alarms.yaml", "commands.yaml", "crews.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "inventory", tmp_path / "inventory")
    (tmp_path / "intake.yaml").write_text(
        "radius_m: 150\n"
        "contact_retentoin: 30d\n"
        "channels:\n"
        f"  call_centre: {{token_sha256: {hash_token(TOKEN)}, per_minut: 600}}\n"
        "  app: {token_sha256: nothex, burst: lots}\n", encoding="utf-8")

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", "check", str(tmp_path / "tags.yaml"),
                               str(tmp_path / "alarms.yaml"), *extra], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)

    r = check()
    f = tmp_path / "intake.yaml"
    assert r.returncode == 1
    for line in (f"{f}:2: unknown field 'contact_retentoin' (did you mean 'contact_retention'?)",
                 f"{f}:4: channel 'call_centre': unknown field 'per_minut' (did you mean 'per_minute'?)",
                 f"{f}:5: channel 'app': 'token_sha256' must be the SHA-256 of the channel's token",
                 f"{f}:5: channel 'app': 'burst' must be a whole number, got 'lots'"):
        assert line in r.stderr, r.stderr
    assert "4 problem(s)" in r.stderr, r.stderr
    good = tmp_path / "good-intake.yaml"
    good.write_text(INTAKE_YAML, encoding="utf-8")
    ok = check("--intake", str(good))
    assert ok.returncode == 0, ok.stderr


def test_locator_nearest_of_the_category_and_by_address(city: CityConfig) -> None:
    loc = Locator(city)
    cab = city.equipment["C0001"]
    lamp = cab.params["lamp_positions"][-1]  # the far end of the street: nearer to a luminaire than to the cabinet
    got = loc.nearest(("lighting_cabinet",), lamp[0], lamp[1], 150)
    assert got is not None and got[0].id == "C0001" and got[1] < 1.0
    assert loc.nearest(("lighting_cabinet",), metres_north(cab.lat, 100), cab.lon, 150)[0].id == "C0001"  # type: ignore[index]
    assert loc.nearest(("lighting_cabinet",), 47.40, 4.90, 150) is None  # in the fields north-west of the city
    junction = loc.nearest(("junction",), cab.lat, cab.lon, 50_000)
    assert junction is not None and junction[0].template == "junction"  # the category decides the kind
    addr = str(cab.identity["address"])
    assert loc.by_address(("lighting_cabinet",), addr.upper()) is cab
    assert loc.by_address(("lighting_cabinet",), "boulevard des allobroges") is cab  # a street: accents, case
    assert loc.by_address(("bollard",), addr) is None


def test_report_opens_then_is_absorbed_and_followed(intake: Intake, book: Book, city: CityConfig) -> None:
    call = intake.channel(TOKEN)
    assert call is not None and intake.channel("nope") is None and intake.channel(None) is None
    cab = city.equipment["C0001"]
    first = intake.submit(call, Report("lamp_out", "dark since yesterday", metres_north(cab.lat, 100), cab.lon,
                                       contact=Contact(NAME, PHONE, EMAIL)), T0)
    assert first.located and not first.absorbed and first.status == "received"
    assert re.fullmatch(r"R-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{2}", first.reference)
    total, orders = book.store.query(OrderQuery(equipment=("C0001",)))
    assert total == 1 and orders[0].source == "citizen" and orders[0].what == "citizen report: street lamp out"
    order = orders[0]
    # the same lamp reported again, and by day: both absorbed by the open order and counted on it
    again = intake.submit(call, Report("lamp_out", "", metres_north(cab.lat, 30), cab.lon), T0 + MIN)
    by_day = intake.submit(call, Report("lamp_on_by_day", "", cab.lat, cab.lon), T0 + 2 * MIN)
    assert again.absorbed and by_day.absorbed and book.store.query(OrderQuery())[0] == 1
    assert intake.count_for(order.id) == 3
    notes = [n.text for n in book.store.get(order.id).notes]  # type: ignore[union-attr]
    assert notes == [f"citizen report {by_day.reference}: street lamp on by day"]  # a new kind is noted, once
    # by address only
    by_addr = intake.submit(call, Report("lamp_out", "", address=str(cab.identity["address"])), T0 + 3 * MIN)
    assert by_addr.absorbed
    # nowhere near anything of the kind: kept, not located
    lost = intake.submit(call, Report("bollard_stuck", "", 47.40, 4.90), T0 + 4 * MIN)
    assert not lost.located and lost.status == "not_located"
    assert intake.reports(not_located=True)[0] == 1
    # the reporter follows the order's state, and sees nothing else
    seen = intake.follow(first.reference)
    assert seen == {"reference": first.reference, "category": "lamp_out", "received_ms": T0, "status": "received",
                    "updated_ms": book.store.get(order.id).updated_ms}  # type: ignore[union-attr]
    book.orders.act(order.id, "assign", "op", T0 + 5 * MIN, {"crew": "lighting-day"})
    assert intake.follow(again.reference)["status"] == "in_progress"
    with pytest.raises(Refused, match="no such reference"):
        intake.follow("R-0000-0000-00")
    # a retried submission (same idempotency key) is one report
    k1 = intake.submit(call, Report("panel_dark", "", address="rue Chabot-Charny"), T0, idem="retry-key-1")
    k2 = intake.submit(call, Report("panel_dark", "", address="rue Chabot-Charny"), T0, idem="retry-key-1")
    assert k1.reference == k2.reference and intake.reports()[0] == 6
    # refusals
    for bad in (Report("meteor", "", cab.lat, cab.lon), Report("lamp_out", "", cab.lat, None),
                Report("lamp_out", "")):
        with pytest.raises(Refused, match=r"category|lat and lon|position"):
            intake.submit(call, bad, T0)


def test_a_batch_is_filed_as_one_report_after_another(intake: Intake, book: Book, city: CityConfig) -> None:
    """submit_many (the writer thread's group commit) answers each report as submit would, one after another:
    the first of a cabinet opens its order, the next of the same kind is absorbed without a note, a new kind is
    noted once; a refused report and a retry (same key) in the batch; three durable commits for the lot."""
    call = intake.channel(TOKEN)
    assert call is not None
    cab, other = city.equipment["C0001"], city.equipment["C0005"]
    commits: list[int] = []
    book.store.listeners.append(lambda changed: commits.append(len(changed)))
    batch = [Submission(call, Report("lamp_out", "", cab.lat, cab.lon), T0),
             Submission(call, Report("lamp_out", "", metres_north(cab.lat, 20), cab.lon), T0),
             Submission(call, Report("meteor", "", cab.lat, cab.lon), T0),
             Submission(call, Report("lamp_on_by_day", "", cab.lat, cab.lon), T0, "key-00001"),
             Submission(call, Report("lamp_on_by_day", "", cab.lat, cab.lon), T0),
             Submission(call, Report("lamp_on_by_day", "", cab.lat, cab.lon), T0, "key-00001"),
             Submission(call, Report("lamp_out", "", other.lat, other.lon, contact=Contact(email=EMAIL)), T0),
             Submission(call, Report("bollard_stuck", "", 47.40, 4.90), T0)]
    got = intake.submit_many(batch)
    opened, absorbed, refused, noted, quiet, retry, second, lost = got
    assert isinstance(refused, Refused) and "category" in str(refused)
    assert isinstance(opened, Receipt) and opened.located and not opened.absorbed
    assert isinstance(absorbed, Receipt) and absorbed.absorbed
    assert isinstance(noted, Receipt) and noted.absorbed and retry == noted  # the retry: the same report
    assert isinstance(quiet, Receipt) and quiet.absorbed
    assert isinstance(second, Receipt) and not second.absorbed and second.located
    assert isinstance(lost, Receipt) and not lost.located
    total, orders = book.store.query(OrderQuery())
    assert total == 2 and sorted(o.equipment for o in orders) == ["C0001", "C0005"]
    order = next(o for o in orders if o.equipment == "C0001")
    assert [n.text for n in order.notes] == [f"citizen report {noted.reference}: street lamp on by day"]
    assert intake.count_for(order.id) == 4 and intake.reports()[0] == 6 and intake.contact_count() == 1
    assert commits == [2]  # both orders (one noted): one transaction of the work-order store
    # what a lone submit then finds is what the batch left: the open order absorbs, the key answers the same
    assert intake.submit(call, Report("lamp_out", "", cab.lat, cab.lon), T0 + MIN).absorbed
    assert intake.submit(call, Report("lamp_on_by_day", "", cab.lat, cab.lon), T0 + MIN,
                         idem="key-00001").reference == noted.reference
    assert book.store.verify() == []
    # where a citizen's photo of a report goes: its order, for the channel that filed it only
    assert intake.order_of(opened.reference, call) == order.id
    app = intake.channel(APP_TOKEN)
    assert app is not None
    with pytest.raises(Refused, match="no such reference"):
        intake.order_of(opened.reference, app)
    with pytest.raises(Refused, match="not located"):
        intake.order_of(lost.reference, call)


def test_reports_queued_behind_a_commit_go_in_one_batch(intake: Intake, book: Book, city: CityConfig) -> None:
    """The writer thread files what was queued while it was busy in one go: a report for each of the demo's
    cabinets, queued while it waits for the intake's lock, make at most two work-order commits, and every one
    is answered."""
    call = intake.channel(TOKEN)
    assert call is not None
    cabinets = [e for e in city.equipment.values() if e.template == "lighting_cabinet"]
    n = len(cabinets)
    assert n >= 10
    commits: list[int] = []
    book.store.listeners.append(lambda changed: commits.append(len(changed)))
    with intake.lock:  # the writer takes the first report(s), then waits here while the rest queue up
        futures = [intake.enqueue(call, Report("lamp_out", "", e.lat, e.lon), T0) for e in cabinets]
    receipts = [f.result(timeout=30) for f in futures]
    assert all(r.located and not r.absorbed for r in receipts)
    assert len({r.reference for r in receipts}) == n and book.store.count()[0] == n
    assert 1 <= len(commits) <= 2 and sum(commits) == n, commits
    bad = intake.enqueue(call, Report("lamp_out", ""), T0)
    with pytest.raises(Refused, match="position"):
        bad.result(timeout=30)


def test_rate_limit_per_channel(intake: Intake) -> None:
    bucket = TokenBucket(per_minute=60, burst=3)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(1.0)  # one a second once the burst is spent
    assert bucket.take(101.0) == 0.0
    app, call = intake.channel(APP_TOKEN), intake.channel(TOKEN)
    assert app is not None and call is not None
    waits = [intake.admit(app) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0] and all(w > 0 for w in waits[3:])
    assert intake.admit(call) == 0.0  # the other channel is not slowed down
    assert intake.stats()["rate_limited"] == 2


def test_contacts_apart_and_purged(intake: Intake, tmp_path: Path, city: CityConfig) -> None:
    call = intake.channel(TOKEN)
    assert call is not None
    cab = city.equipment["C0002"]
    intake.submit(call, Report("lamp_out", "", cab.lat, cab.lon, contact=Contact(NAME, PHONE, EMAIL)), T0)
    intake.submit(call, Report("lamp_out", "", cab.lat, cab.lon, contact=Contact(email=EMAIL)),
                  T0 + 20 * 86_400_000)
    assert intake.contact_count() == 2
    for f in tmp_path.iterdir():  # nowhere but contacts.sqlite (and its WAL)
        if not f.name.startswith(CONTACTS_FILE) and f.is_file():
            assert EMAIL.encode() not in f.read_bytes(), f
    assert intake.purge(T0 + 29 * 86_400_000) == 0
    assert intake.purge(T0 + 31 * 86_400_000) == 1 and intake.contact_count() == 1  # the older one only
    assert intake.purge(T0 + 51 * 86_400_000) == 1 and intake.contact_count() == 0
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith(CONTACTS_FILE))
    assert EMAIL.encode() not in raw and NAME.encode() not in raw  # not left behind in free pages or the WAL
    assert intake.reports()[0] == 2  # the reports themselves stay


# ---------------------------------------------------------------------- against the real server
async def test_contact_data_never_leave_the_contacts_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cli.workorders import export_csv
    from scada.workorders import WorkOrderStore
    from tests.server.conftest import login, running_server
    from tests.server.test_e2e import fast_city

    caplog.set_level(logging.DEBUG)
    tags = fast_city(tmp_path)
    (tags.parent / "crews.yaml").write_text((ROOT / "crews.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tags.parent / "intake.yaml").write_text(INTAKE_YAML, encoding="utf-8")
    data = tmp_path / "data"
    async with running_server(data, tags=tags, alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        admin = await login(c, "admin")
        cab = server.config.equipment["C0001"]
        body = {"category": "lamp_out", "text": "the lamp by the bakery", "lat": metres_north(cab.lat, 100),
                "lon": cab.lon, "contact": {"name": NAME, "phone": PHONE, "email": EMAIL}}
        assert (await c.post("/api/v1/reports", json=body)).status_code == 401
        assert (await c.post("/api/v1/reports", json=body, headers={"X-Intake-Token": "wrong"})).status_code == 401
        r = await c.post("/api/v1/reports", json=body, headers={"X-Intake-Token": TOKEN})
        assert r.status_code == 200, r.text
        receipt = r.json()
        assert receipt["located"] and not receipt["absorbed"] and set(receipt) == {"reference", "status", "located",
                                                                                   "absorbed"}
        r2 = await c.post("/api/v1/reports", json={**body, "lat": cab.lat}, headers={"X-Intake-Token": TOKEN})
        assert r2.json()["absorbed"]
        # the reporter's photo, from the channel that filed the report: with its order, without the EXIF (the
        # reporter's name, the GPS position: the scan of every file below finds no NAME in the stored photo)
        at = f"/api/v1/reports/{receipt['reference']}/photos"
        photo = phone_photo()
        sent = await c.post(at, content=photo, headers={"X-Intake-Token": TOKEN, "Content-Type": "image/jpeg"})
        assert sent.status_code == 200, sent.text
        assert (await c.post(at, content=photo, headers={"X-Intake-Token": TOKEN})).json() == sent.json()  # once
        assert (await c.post(at, content=b"GIF89a...", headers={"X-Intake-Token": TOKEN})).status_code == 415
        assert (await c.post(at, content=photo)).status_code == 401
        pic = sent.json()
        got = await c.get(f"/api/v1/workorders/{pic['order']}/photos/{pic['name']}", headers=admin)
        assert got.status_code == 200 and NAME.encode() not in got.content
        with Image.open(io.BytesIO(got.content)) as im:
            assert not im.getexif() and (im.width, im.height) == (48, 64)  # upright, nothing else kept
        notes = [n["text"] for n in (await c.get(f"/api/v1/workorders/{pic['order']}", headers=admin)).json()["notes"]]
        assert f"photo {pic['name']}" in notes
        # the app channel: burst of 3, then 429 with Retry-After
        codes = [(await c.post("/api/v1/reports", json={**body, "category": "other"},
                               headers={"X-Intake-Token": APP_TOKEN})) for _ in range(4)]
        assert [x.status_code for x in codes] == [200, 200, 200, 429] and codes[3].headers["Retry-After"]
        # the reporter follows with the reference only (no login)
        follow = await c.get(f"/api/v1/reports/{receipt['reference']}")
        assert follow.status_code == 200 and follow.json()["status"] == "received"
        orders = (await c.get("/api/v1/workorders", headers=admin)).json()["orders"]
        order_id = next(o["id"] for o in orders if o["equipment"] == "C0001")
        listed = (await c.get("/api/v1/reports", params={"order": order_id}, headers=admin)).json()
        # "other" is about anything: the three app reports beside C0001 joined its order too
        assert listed["total"] == 5 and {r["text"] for r in listed["reports"]} == {"the lamp by the bakery"}
        # a backup, then every GET route of the API with an administrator's token
        assert (await c.post("/api/v1/backup", headers=admin)).status_code == 200
        spec = (await c.get("/openapi.json")).json()
        values = {"order_id": order_id, "ref": receipt["reference"], "name": "admin", "equipment_id": cab.id,
                  "alarm_id": "x", "command_id": "x", "id": cab.id, "tag": cab.tag_name("mode"),
                  "change_id": "x", "plan": "x"}
        walked = 0
        answers: list[str] = []
        for path, ops in spec["paths"].items():
            if "get" not in ops:
                continue
            concrete = re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), "x")), path)
            params: dict[str, Any] = {}
            for p in ops["get"].get("parameters", []):
                if p.get("in") == "query" and p.get("required"):
                    params[p["name"]] = cab.tag_name("mode") if "tag" in p["name"] else "x"
            r = await c.get(concrete, params=params, headers=admin)
            walked += 1
            answers.append(r.text)
        assert walked >= 30, walked
        blob = "\n".join(answers)
        assert order_id in blob and receipt["reference"] in blob  # the walk did reach the orders and reports
        for secret in (NAME, PHONE, EMAIL):
            assert secret not in blob
        # the CSV export of maintenance
        store = WorkOrderStore(data / "workorders.sqlite")
        try:
            buf = io.StringIO()
            assert export_csv(store, OrderQuery(), buf) >= 1
            assert order_id in buf.getvalue() and all(s not in buf.getvalue() for s in (NAME, PHONE, EMAIL))
        finally:
            store.close()
        await asyncio.sleep(0.3)
    # the logs (captured records) and every file of the data dir but contacts.sqlite: journal, audit trail,
    # work orders, reports, log files, the backup's copies
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert receipt["reference"] in logged  # the report is logged, by its reference
    files = [f for f in data.rglob("*") if f.is_file()]
    assert any("backups" in f.parts for f in files) and any("photos" in f.parts for f in files)
    for f in files:
        leaked = [s for s in (NAME, PHONE, EMAIL) if s.encode() in f.read_bytes() or s in logged]
        if f.name.startswith(CONTACTS_FILE) and "backups" not in f.parts:
            continue
        assert not leaked, (f, leaked)
    with sqlite3.connect(data / CONTACTS_FILE) as db:  # where they are: the positive control
        assert db.execute("SELECT count(*) FROM contacts WHERE email = ?", (EMAIL,)).fetchone()[0] == 5


def phone_photo() -> bytes:
    """A JPEG as a phone takes it: the owner's name (the reporter's), the GPS position, held on its side."""
    exif = Image.Exif()
    exif[0x013B] = NAME  # Artist
    exif[0x0112] = 6  # Orientation
    exif[0x8825] = {1: "N", 2: (47.0, 19.0, 21.5), 3: "E", 4: (5.0, 2.0, 29.4)}  # GPS
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 120, 200)).save(buf, "JPEG", exif=exif)
    assert NAME.encode() in buf.getvalue()  # the fixture carries what the server must remove
    return buf.getvalue()


def test_intake_config_default_is_off() -> None:
    assert IntakeConfig().channels == {} and Status.NEW.open


def test_simulated_citizens_day_into_the_intake(intake: Intake, book: Book, city: CityConfig) -> None:
    """sim.crews.ReportGenerator over one simulated day at Dijon's rate, posted into the intake: the daily curve,
    duplicates and mislocated reports, and what the intake makes of them (three broken cabinets → three orders)."""
    import random

    from sim.crews import DUPLICATES, ReportGenerator
    from sim.runner import Simulator

    sim = Simulator(city, seed=7, autostep=False, control_port=None)
    sim.build_models()
    t0 = T0 / 1000 - 8 * 3600  # midnight, Paris
    for m in sim.models.values():
        m.step(t0)
    broken = ["C0001", "C0005", "C0009"]
    for eq in broken:
        sim.inject(eq, "lamp_failure", count=2)
    gen = ReportGenerator(sim.models, city.equipment, random.Random(1), per_day=630, start=t0)
    hours = [gen.due(t0 + (h + 1) * 3600) for h in range(24)]
    per_hour = [len(x) for x in hours]
    total = sum(per_hour)
    assert 520 <= total <= 740, total  # ~630 a day (Poisson)
    assert per_hour[19] > 3 * per_hour[3], per_hour  # the evening's dark streets, not the night
    assert DUPLICATES - 0.08 < gen.duplicates / gen.made < DUPLICATES + 0.08 and gen.mislocated > 20
    call = intake.channel(TOKEN)
    assert call is not None
    located = 0
    for k, body in enumerate(b for hour in hours for b in hour):
        c = body.get("contact") or {}
        r = intake.submit(call, Report(body["category"], body["text"], body.get("lat"), body.get("lon"),
                                       body.get("address"), Contact(c.get("name"), c.get("phone"), c.get("email"))),
                          T0 + k * 1000)
        located += r.located
    assert located / total > 0.9, (located, total)  # only a part of the mislocated ones are lost
    _, orders = book.store.query(OrderQuery())
    # hundreds of reports, one order per broken cabinet (and, rarely, one on a neighbour from a mislocated report)
    got = [o.equipment for o in orders]
    assert set(broken) <= set(got) and len(got) == len(set(got)) and len(got) <= len(broken) + 2, got
