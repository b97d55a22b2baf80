"""Work orders through the real server's API: the WebSocket channel of order events, out of service of an alarm
whose id holds slashes (a luminaire's), and photos (size bound, JPEG/PNG sniffed, EXIF GPS stripped).

Each test starts a real server (uvicorn on 127.0.0.1, port 0) on the shipped demo city; the out-of-service one
runs the simulator's real Modbus cabinets to raise a real lamp alarm."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from PIL import Image, PngImagePlugin

from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import demo_field, until

API = "/api/v1"


async def _next_with_orders(ws: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The work-order events of the next message that carries some (deltas of tags or alarms alone skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("no work-order event within the time")
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=left))
        if msg.get("workorders"):
            return list(msg["workorders"])


async def test_order_events_over_the_websocket(tmp_path: Path) -> None:
    """A console subscribed with ``workorders: true`` gets each created or changed order (as GET /workorders/{id}
    answers it) in the hub's batches; a console that did not ask gets none; a retried change is not an event."""
    async with running_server(tmp_path / "data") as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        op = await login(c, "op")
        ws_url = url.replace("http", "ws") + f"{API}/ws"
        async with websockets.connect(ws_url, additional_headers=op, max_size=None) as ws, \
                websockets.connect(ws_url, additional_headers=op, max_size=None) as other:
            for w, sub in ((ws, {"workorders": True, "alarms": False}), (other, {"alarms": False})):
                assert json.loads(await w.recv())["type"] == "hello"
                await w.send(json.dumps({"type": "subscribe", **sub}))
                assert json.loads(await w.recv())["type"] == "snapshot"

            r = await c.post(f"{API}/workorders", json={"equipment": "B001", "what": "door contact stuck",
                                                        "priority": 2}, headers=op)
            assert r.status_code == 200, r.text
            created = r.json()
            events = await _next_with_orders(ws)
            assert [(e["event"], e["id"], e["status"]) for e in events] == [("created", created["id"], "new")]
            # the same fields as the REST answer, so a console applies an event as it applies a GET
            assert {k: v for k, v in events[0].items() if k != "event"} == created

            key = {"idempotency_key": "console-assign-0001"}
            r = await c.post(f"{API}/workorders/{created['id']}/assign", json={"crew": "buildings-1", **key},
                             headers=op)
            assert r.status_code == 200, r.text
            events = await _next_with_orders(ws)
            assert [(e["event"], e["status"], e["crew"]) for e in events] == [("changed", "assigned", "buildings-1")]
            # the same request retried (its key known): applied once, so no second event; a note is the next one
            r = await c.post(f"{API}/workorders/{created['id']}/assign", json={"crew": "buildings-1", **key},
                             headers=op)
            assert r.status_code == 200, r.text
            await c.post(f"{API}/workorders/{created['id']}/note", json={"text": "call the caretaker"}, headers=op)
            events = await _next_with_orders(ws)
            assert [(e["event"], e["notes"][-1]["text"]) for e in events] == [("changed", "call the caretaker")]

            # the console that did not subscribe to work orders got no order event at all
            got: list[dict[str, Any]] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    got.append(json.loads(await asyncio.wait_for(other.recv(), timeout=0.5)))
            assert not any("workorders" in m for m in got), got
            assert server.hub.stats["workorder_events"] == 3


async def test_out_of_service_of_a_luminaire_alarm_through_the_api(tmp_path: Path) -> None:
    """A luminaire's alarm id holds slashes (``lamp_failed:dijon/lighting/C0001/lamp_03/status``): the route takes
    the whole id, out of service needs the equipment's open order and links the alarm to it, and it returns to
    service by the same route."""
    async with demo_field(tmp_path) as (sim, tags), \
            running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                           alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        sup = await login(c, "sup")
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        other = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet" and e is not cab)
        sim.inject(cab.id, "lamp_failure", index=3)
        alarm_id = f"lamp_failed:{cab.tag_name('lamp_03/status')}"
        assert alarm_id.count("/") >= 3

        async def auto_order() -> dict[str, Any] | None:
            rows = (await c.get(f"{API}/workorders", params={"equipment": cab.id}, headers=sup)).json()["orders"]
            return rows[0] if rows else None

        order = await until("the automatic work order", auto_order, timeout=40)
        route = f"{API}/alarms/{alarm_id}/out-of-service"
        # an order of another equipment is refused, and so is none at all
        r = await c.post(f"{API}/workorders", json={"equipment": other.id, "what": "cabinet door"}, headers=sup)
        r = await c.post(route, json={"work_order": r.json()["id"]}, headers=sup)
        assert r.status_code == 422 and other.id in r.json()["why"], r.text
        assert (await c.post(route, json={"work_order": "WO-999999"}, headers=sup)).status_code == 404

        r = await c.post(route, json={"work_order": order["id"]}, headers=sup)
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [{"alarm": alarm_id, "outcome": "done"}]
        rows = (await c.get(f"{API}/alarms", params={"equipment": cab.id, "diagnostic": "true"},
                            headers=sup)).json()["alarms"]
        alarm = next(a for a in rows if a["id"] == alarm_id)
        assert "out_of_service" in alarm["flags"] and alarm["work_order"] == order["id"], alarm
        history = (await c.get(f"{API}/workorders/{order['id']}/history", headers=sup)).json()
        assert any(h["action"] == "link" and alarm_id in h["data"]["alarms"] for h in history), history

        r = await c.post(f"{API}/alarms/{alarm_id}/return-to-service", json={}, headers=sup)
        assert r.status_code == 200 and r.json()["results"][0]["outcome"] == "done", r.text


# ---------------------------------------------------------------------- photos
OWNER = "Zephyrine Quillfeather"  # unique: found anywhere it should not be, it can only come from the photo
GPS = {1: "N", 2: (47.0, 19.0, 21.5), 3: "E", 4: (5.0, 2.0, 29.4)}  # degrees, minutes, seconds


def _jpeg_with_gps(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A 64x48 JPEG with the metadata of a phone's photo: GPS position, owner, orientation 6 (turn 90°), XMP and
    a comment naming the place."""
    im = Image.new("RGB", (64, 48), colour)
    exif = Image.Exif()
    exif[0x013B] = OWNER  # Artist
    exif[0x0112] = 6  # Orientation: the camera was held on its side
    exif[0x8825] = GPS  # the GPS IFD
    buf = io.BytesIO()
    xmp = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           f'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="47,19.358N" '
           f'exif:Artist="{OWNER}"/></rdf:RDF></x:xmpmeta>').encode()
    im.save(buf, "JPEG", exif=exif, xmp=xmp, comment=f"at {OWNER}'s door".encode())
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as check:  # the fixture really carries what the server must remove
        assert check.getexif().get_ifd(0x8825) and OWNER.encode() in data
    return data


def _png_with_text() -> bytes:
    im = Image.new("P", (20, 10), 3)
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", OWNER)
    info.add_text("Location", "47.3226 N 5.0415 E")
    exif = Image.Exif()
    exif[0x8825] = GPS
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info, exif=exif)
    return buf.getvalue()


async def test_photos_are_cleaned_stored_and_served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A crew attaches a photo to its mission: sniffed (JPEG/PNG by the bytes), bounded, stored beside the store
    under the order's id without any metadata (no EXIF GPS, no owner, no XMP, no comment), named by a note in the
    journal, once however often it is sent; another crew, a viewer and anything but an image are refused; the
    photo's metadata appear in no answer, log or export."""
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "data"
    async with running_server(data_dir) as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        server.users.add("crew.buildings-1", "crew", "Ladder-Truck-5150")
        server.users.add("crew.networks-1", "crew", "Ladder-Truck-5151")
        op, view = await login(c, "op"), await login(c, "view")
        crews = {}
        for user, pw in (("crew.buildings-1", "Ladder-Truck-5150"), ("crew.networks-1", "Ladder-Truck-5151")):
            r = await c.post(f"{API}/auth/login", json={"user": user, "password": pw})
            crews[user] = {"Authorization": f"Bearer {r.json()['token']}"}
        mine = crews["crew.buildings-1"]
        r = await c.post(f"{API}/workorders", json={"equipment": "B002", "what": "broken door"}, headers=op)
        oid = r.json()["id"]
        assert (await c.post(f"{API}/workorders/{oid}/assign", json={"crew": "buildings-1"}, headers=op)).is_success
        route = f"{API}/workorders/{oid}/photos"
        jpeg = _jpeg_with_gps()

        r = await c.post(route, content=jpeg, headers={**mine, "Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
        photo = r.json()["photo"]
        # the orientation went into the pixels: 64x48 held on its side is 48 wide, 64 high
        assert (photo["media_type"], photo["width"], photo["height"]) == ("image/jpeg", 48, 64), photo
        assert r.json()["order"]["notes"][-1]["text"] == f"photo {photo['name']}"
        # sent again (a tablet's retry, even declared as something else): the same photo, stored and noted once
        r = await c.post(route, content=jpeg, headers={**mine, "Content-Type": "application/octet-stream"})
        assert r.status_code == 200 and r.json()["photo"]["name"] == photo["name"], r.text
        history = (await c.get(f"{API}/workorders/{oid}/history", headers=op)).json()
        assert [h["data"].get("photo") for h in history if h["action"] == "note"] == [photo["name"]]

        # stored beside the store, under the order's id, readable by the server's user only, with no metadata
        stored = data_dir / "photos" / oid / photo["name"]
        assert stored.is_file() and stored.stat().st_mode & 0o077 == 0
        assert [p.name for p in (data_dir / "photos" / oid).iterdir()] == [photo["name"]]
        served = await c.get(f"{route}/{photo['name']}", headers=view)  # every role reads the order's photos
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        assert served.content == stored.read_bytes()
        _assert_bare(served.content)
        listed = (await c.get(route, headers=op)).json()
        assert [p["name"] for p in listed] == [photo["name"]]

        # a PNG with text chunks and an EXIF chunk: kept as PNG, without them
        r = await c.post(route, content=_png_with_text(), headers={**mine, "Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["photo"]["media_type"] == "image/png", r.text
        png = (await c.get(f"{route}/{r.json()['photo']['name']}", headers=op)).content
        _assert_bare(png)
        with Image.open(io.BytesIO(png)) as im:
            assert im.size == (20, 10) and not getattr(im, "text", {})

        # refused: what is not JPEG or PNG by its bytes (whatever it declares), a corrupt JPEG, over the body
        # limit, another crew's mission, a viewer
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, "GIF")
        for body, declared in ((gif.getvalue(), "image/jpeg"), (b"%PDF-1.7 not a photo", "image/png")):
            r = await c.post(route, content=body, headers={**mine, "Content-Type": declared})
            assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type", r.text
        r = await c.post(route, content=jpeg[:200], headers={**mine, "Content-Type": "image/jpeg"})
        assert r.status_code == 422 and "not a readable JPEG" in r.json()["why"], r.text
        r = await c.post(route, content=jpeg + b"\0" * (2 << 20), headers={**mine, "Content-Type": "image/jpeg"})
        assert r.status_code == 413, r.text
        r = await c.post(route, content=jpeg, headers={**crews["crew.networks-1"], "Content-Type": "image/jpeg"})
        assert r.status_code == 404, r.text
        assert (await c.get(route, headers=crews["crew.networks-1"])).status_code == 404
        assert (await c.post(route, content=jpeg, headers={**view, "Content-Type": "image/jpeg"})).status_code == 403
        assert len(list((data_dir / "photos" / oid).iterdir())) == 2  # nothing refused was kept
        r = await c.get(f"{route}/..%2F..%2Fusers.sqlite", headers=op)
        assert r.status_code == 404

        # the photo's metadata are in no answer of the order, its history or the list
        for path in (f"{API}/workorders/{oid}", f"{API}/workorders/{oid}/history", f"{API}/workorders"):
            assert OWNER not in (await c.get(path, headers=op)).text
    # nor in any log line, nor in the CSV export of the orders
    assert OWNER not in caplog.text and "47,19" not in caplog.text
    export = subprocess.run([sys.executable, "-m", "cli", "workorders", "export", "--csv", "--db",
                             str(data_dir / "workorders.sqlite")], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert export.returncode == 0 and oid in export.stdout and OWNER not in export.stdout, export.stderr


def _assert_bare(data: bytes) -> None:
    """No metadata left: no EXIF (so no GPS), no XMP, no comment, no owner's name anywhere in the bytes."""
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif() and not im.getexif().get_ifd(0x8825)
        assert "xmp" not in im.info and "comment" not in im.info and "exif" not in im.info
    assert OWNER.encode() not in data and b"Exif" not in data and b"GPS" not in data
