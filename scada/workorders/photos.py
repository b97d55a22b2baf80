"""Photos of a work order (a crew's "done" on the tablet, or any client of the API): checked, cleaned, kept
beside the work-order store.

::

    bytes (POST /workorders/{id}/photos) ─► at most MAX_BYTES (the HTTP body limit comes first: 413)
       ─► sniffed from the bytes (the declared Content-Type is not believed): JPEG FF D8 FF · PNG 89 50 4E 47 0D 0A
          1A 0A; anything else refused (Refusal.UNSUPPORTED)
       ─► the header decoded by Pillow with that one format: at most MAX_PIXELS before any pixel is decoded (a
          small file that inflates to gigabytes is refused), then decoded (a corrupt file is refused)
       ─► cleaned: the EXIF orientation applied to the pixels, then re-encoded from the pixels alone: no EXIF
          (its GPS position, the phone's serial number, the owner's name), no XMP, no comment or text chunk;
          only the colour profile is kept. A citizen's or a crew's photo carries personal data in its metadata:
          none of it is stored.
       ─► <data dir>/photos/<order id>/<first 16 hex of the cleaned file's SHA-256>.jpg|png  (dir 0700, file 0600)
          written to a temporary name, then renamed: a crash leaves no half photo. The same photo sent again (a
          tablet's retry) cleans to the same bytes, so the same name: stored once.

Retention (:func:`purge`, hourly in the server): the photos of an order closed or cancelled for longer than
crews.yaml's ``photo_retention`` (365 days by default) are deleted, after a ``photos_purged`` change naming them
in the order's journal (journal first: a crash between the two leaves files the next purge deletes, with the
same idempotency key, so journalled once; never a deletion the journal does not tell).

The order's journal gets a note naming the photo (service side, :func:`attach`), never the photo or its
metadata; no log line, export or backup holds a photo (the server's backups list their stores, this folder is
not one of them). Pillow's own debug lines print every EXIF value it parses (the GPS position, the owner's name):
its logger is held at INFO, whatever the server's log level.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from scada.errors import Refusal, Refused
from scada.i18n import N_, _
from scada.workorders.model import Action, Change, Status, WorkOrder
from scada.workorders.service import SYSTEM_USER, WorkOrders

log = logging.getLogger(__name__)

# Pillow logs each EXIF tag's value at DEBUG while it reads or writes one: personal data in a log (tested)
logging.getLogger("PIL").setLevel(logging.INFO)

DIR_NAME = "photos"
MAX_BYTES = 8 << 20
MAX_PIXELS = 40_000_000  # a 40-megapixel phone photo; beyond, a decompression bomb more likely than a picture
JPEG_QUALITY = 90
#: magic bytes → (Pillow format, file suffix, media type)
KINDS: dict[bytes, tuple[str, str, str]] = {
    b"\xff\xd8\xff": ("JPEG", "jpg", "image/jpeg"),
    b"\x89PNG\r\n\x1a\n": ("PNG", "png", "image/png"),
}
MEDIA = {suffix: media for _, suffix, media in KINDS.values()}
_ORDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_NAME = re.compile(r"^[0-9a-f]{16}\.(jpg|png)$")


@dataclass(frozen=True, slots=True)
class Photo:
    name: str  # <16 hex>.jpg|png
    media_type: str
    size: int  # bytes stored
    width: int
    height: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "media_type": self.media_type, "size": self.size, "width": self.width,
                "height": self.height}


def sniff(data: bytes) -> tuple[str, str, str] | None:
    """(Pillow format, suffix, media type) of what the bytes are, JPEG or PNG; None for anything else."""
    return next((kind for magic, kind in KINDS.items() if data.startswith(magic)), None)


def clean(data: bytes, what: str = "attach a photo") -> tuple[bytes, str, int, int]:
    """The photo re-encoded from its pixels alone (no metadata but the colour profile); (bytes, suffix, w, h).

    Refused (nothing stored) when it is too big, neither JPEG nor PNG by its bytes, too many pixels or corrupt."""
    if len(data) > MAX_BYTES:
        raise Refused(what, _("a photo may have at most {mib} MiB, got {size} bytes").format(
            mib=MAX_BYTES >> 20, size=len(data)), Refusal.INVALID)
    kind = sniff(data)
    if kind is None:
        raise Refused(what, N_("a photo must be a JPEG or PNG image (by its content, whatever its declared type)"),
                      Refusal.UNSUPPORTED)
    fmt, suffix, _media = kind
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            if im.width * im.height > MAX_PIXELS:  # read from the header: nothing decoded yet
                raise Refused(what, _("a photo may have at most {mp} megapixels, got {width}x{height}").format(
                    mp=MAX_PIXELS // 1_000_000, width=im.width, height=im.height), Refusal.INVALID)
            icc = im.info.get("icc_profile")
            upright = ImageOps.exif_transpose(im)  # decodes; the orientation goes into the pixels
            if upright.mode in ("P", "PA") or "transparency" in upright.info:
                upright = upright.convert("RGBA")  # palette and transparency into the pixels (info is dropped)
            bare = Image.new(upright.mode, upright.size)  # a new image: no info, no EXIF, no XMP, no text
            bare.paste(upright)
    except Refused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "corrupt"
        raise Refused(what, _("not a readable {format} image ({error})").format(format=fmt, error=type(exc).__name__),
                      Refusal.INVALID) from None
    if fmt == "JPEG" and bare.mode not in ("L", "RGB", "CMYK"):
        bare = bare.convert("RGB")
    out = io.BytesIO()
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        options["quality"] = JPEG_QUALITY
    bare.save(out, fmt, **options)
    return out.getvalue(), suffix, bare.width, bare.height


class PhotoStore:
    """The photos of the work orders, one folder per order under ``<data dir>/photos``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / DIR_NAME

    def _folder(self, order_id: str) -> Path:
        if not _ORDER.match(order_id):  # an order id never holds a path separator or a dot
            raise Refused(f"photos of work order {order_id!r}", N_("not a work-order id"), Refusal.INVALID)
        return self.root / order_id

    def add(self, order_id: str, data: bytes) -> tuple[Photo, bool]:
        """Clean and store one photo of ``order_id``; (the photo, True when it was not there yet)."""
        body, suffix, width, height = clean(data, f"attach a photo to work order {order_id}")
        name = f"{hashlib.sha256(body).hexdigest()[:16]}.{suffix}"
        folder = self._folder(order_id)
        photo = Photo(name, MEDIA[suffix], len(body), width, height)
        return photo, self._write(folder, name, body)

    def add_copied(self, order_id: str, name: str, body: bytes) -> bool:
        """Store a photo as the failover pair's active stored it (already cleaned: the same bytes, the same name);
        refused when the name is not the bytes' own. True when it was not there yet."""
        if not _NAME.match(name) or name.split(".", maxsplit=1)[0] != hashlib.sha256(body).hexdigest()[:16]:
            raise Refused(f"copy photo {name!r} of work order {order_id}", N_("not the photo's own name"),
                          Refusal.INVALID)
        return self._write(self._folder(order_id), name, body)

    def _write(self, folder: Path, name: str, body: bytes) -> bool:
        path = folder / name
        if path.is_file():
            return False
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return True

    def remove(self, order_id: str, name: str) -> None:
        """Take a photo back (its note could not be recorded)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(order_id, name).unlink()

    def path(self, order_id: str, name: str) -> Path:
        """The file of one photo; Refused NOT_FOUND when there is none."""
        path = self._folder(order_id) / name
        if not _NAME.match(name) or not path.is_file():
            raise Refused(f"photo {name!r} of work order {order_id}", N_("no such photo"), Refusal.NOT_FOUND)
        return path

    def photos(self, order_id: str) -> list[Photo]:
        """The order's photos, oldest first."""
        folder = self._folder(order_id)
        if not folder.is_dir():
            return []
        out: list[tuple[int, Photo]] = []
        for p in folder.iterdir():
            if _NAME.match(p.name):
                with Image.open(p) as im:  # the header only
                    st = p.stat()
                    out.append((st.st_mtime_ns, Photo(p.name, MEDIA[p.suffix[1:]], st.st_size, im.width, im.height)))
        return [ph for _, ph in sorted(out, key=lambda x: (x[0], x[1].name))]


def attach(orders: WorkOrders, photos: PhotoStore, order_id: str, data: bytes, user: str, now_ms: int, *,
           crew: str | None = None) -> tuple[WorkOrder, Photo]:
    """One photo on one order: stored, and a note naming it in the order's journal (who, when). ``crew``: the
    caller is that crew (its own missions only). The same photo again is stored and noted once."""
    order = orders.get(order_id)
    if crew is not None and order.crew != crew:
        raise Refused(f"attach a photo to work order {order_id}", N_("no such work order among this crew's missions"),
                      Refusal.NOT_FOUND)
    if not order.open:
        raise Refused(f"attach a photo to work order {order_id}", _("the order is {status}").format(
            status=order.status), Refusal.WORK_ORDER_REFUSED)
    photo, new = photos.add(order_id, data)
    try:
        after = orders.act(order_id, Action.NOTE, user, now_ms, {"text": f"photo {photo.name}", "photo": photo.name},
                           crew=crew, idem=f"photo:{order_id}:{photo.name}")
    except BaseException:
        if new:  # no note, no photo: what the journal does not name is not kept
            photos.remove(order_id, photo.name)
        raise
    return after, photo


def purge(orders: WorkOrders, photos: PhotoStore, now_ms: int) -> dict[str, list[str]]:
    """Delete the photos of every order closed or cancelled for longer than crews.yaml's ``photo_retention``
    (from its last change), each deletion journalled first; {order id: the photo names deleted}."""
    limit = now_ms - int(orders.crews.photo_retention_s * 1000)
    done: dict[str, list[str]] = {}
    if not photos.root.is_dir():
        return done
    for folder in sorted(photos.root.iterdir()):
        order = orders.store.get(folder.name) if _ORDER.match(folder.name) and folder.is_dir() else None
        if order is None or order.status not in (Status.CLOSED, Status.CANCELLED) or order.updated_ms > limit:
            continue  # a folder of no order of this store is left for a person to look at
        names = sorted(p.name for p in folder.iterdir() if _NAME.match(p.name))
        if names:
            days = orders.crews.photo_retention_s / 86400
            orders.store.commit([Change(order.id, now_ms, SYSTEM_USER, Action.PHOTOS_PURGED,
                                        {"photos": names, "text": f"{len(names)} photo(s) deleted: {order.status} "
                                                                  f"for more than {days:g} days"},
                                        f"photos_purged:{order.id}:{','.join(names)}")])
        for p in folder.iterdir():  # the photos and any upload a crash left behind
            p.unlink()
        folder.rmdir()
        if names:
            done[order.id] = names
            log.info("%s: %d photo(s) deleted after the retention time", order.id, len(names))
    return done


__all__ = ["DIR_NAME", "MAX_BYTES", "MAX_PIXELS", "Photo", "PhotoStore", "attach", "clean", "purge", "sniff"]
