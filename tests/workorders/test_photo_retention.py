"""Photo retention: the photos of an order closed or cancelled for longer than crews.yaml's photo_retention are
deleted, after a ``photos_purged`` change naming them in the order's journal; an open order's, or a recent
one's, stay (scada.workorders.photos.purge, run hourly by the server's work-order component)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from scada.errors import Refused
from scada.workorders import Action, Change, Status, load_crews
from scada.workorders.photos import PhotoStore, attach, purge
from tests.workorders.conftest import HOUR, ROOT, T0, Book

DAY = 24 * HOUR


def picture(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (shade, 90, 30)).save(buf, "JPEG")
    return buf.getvalue()


def test_crews_yaml_sets_the_retention(tmp_path: Path) -> None:
    text = (ROOT / "crews.yaml").read_text(encoding="utf-8")
    assert "photo_retention: 365d" in text
    (tmp_path / "crews.yaml").write_text(text.replace("photo_retention: 365d", "photo_retention: 30d"),
                                         encoding="utf-8")
    assert load_crews(tmp_path / "crews.yaml").photo_retention_s == 30 * 86400
    assert load_crews(ROOT / "crews.yaml").photo_retention_s == 365 * 86400  # the shipped file: a year


def test_photos_of_orders_closed_past_the_retention_are_deleted_and_journalled(tmp_path: Path, book: Book) -> None:
    orders = book.orders
    orders.crews = replace(orders.crews, photo_retention_s=30 * 86400.0)
    photos = PhotoStore(tmp_path / "data")
    closed, _ = orders.create("op", "C0001", "lamp out", 3, T0)
    cancelled, _ = orders.create("op", "C0002", "lamp out", 3, T0)
    still_open, _ = orders.create("op", "C0003", "lamp out", 3, T0)
    for k, o in enumerate((closed, cancelled, still_open)):
        attach(orders, photos, o.id, picture(40 * k), "op", T0 + HOUR)
    attach(orders, photos, closed.id, picture(200), "op", T0 + HOUR)
    for action, data in (("assign", {"crew": "lighting-day"}), ("en_route", {}), ("on_site", {}),
                         ("done", {"cause": "lamp", "action": "replaced"})):
        orders.act(closed.id, action, "crew", T0 + 2 * HOUR, data)
    assert orders.get(closed.id).status is Status.RESOLVED  # no alarm left: done resolves at once
    orders.act(closed.id, "close", "supervisor", T0 + 3 * HOUR, {"cause": "lamp", "action": "replaced"})
    orders.act(cancelled.id, "cancel", "op", T0 + 3 * HOUR, {"reason": "duplicate"})

    assert purge(orders, photos, T0 + 3 * HOUR + 29 * DAY) == {}  # within the retention: all kept
    assert len(photos.photos(closed.id)) == 2
    gone = purge(orders, photos, T0 + 3 * HOUR + 31 * DAY)
    assert sorted(gone) == sorted([closed.id, cancelled.id]) and len(gone[closed.id]) == 2
    assert photos.photos(closed.id) == [] and not (photos.root / closed.id).exists()
    assert photos.photos(cancelled.id) == [] and len(photos.photos(still_open.id)) == 1  # open: kept
    for oid in gone:
        last = book.store.history(oid)[-1]
        assert last.change.action is Action.PHOTOS_PURGED and last.change.user == "system"
        assert sorted(last.change.data["photos"]) == gone[oid]
        assert orders.get(oid).notes[-1].text.startswith(f"{len(gone[oid])} photo(s) deleted")
    assert orders.get(closed.id).status is Status.CLOSED  # the status is unchanged
    assert purge(orders, photos, T0 + 40 * DAY) == {} and book.store.verify() == []


def test_only_the_system_purges_and_only_closed_orders(book: Book) -> None:
    order, _ = book.orders.create("op", "C0001", "lamp out", 3, T0)
    with pytest.raises(Refused, match="only the system"):
        book.orders.act(order.id, Action.PHOTOS_PURGED, "op", T0, {"photos": ["0123456789abcdef.jpg"]})
    with pytest.raises(Refused, match="photos_purged is possible from"):
        book.store.commit([Change(order.id, T0, "system", Action.PHOTOS_PURGED,
                                  {"photos": ["0123456789abcdef.jpg"]})])
