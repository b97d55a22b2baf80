"""Citizen reports: intake channels, location of the equipment, deduplication into work orders, and the
reporter's personal data kept apart and purged.

::

    POST /reports (channel token) ─► Channel (intake.yaml: token stored as its SHA-256, a token bucket per
       │                                      channel: per_minute, burst)
       │  on the main API's event loop, or on the intake's own listener, thread and event loop (settings
       │  intake.listen: server.components.intake_http), which the main loop's stalls do not reach
       ▼
    Intake.enqueue ─► the intake's own writer thread ("intake-writer"; not the event loop's default pool, where
       │              any other blocking call of the server could queue in front of a report): the reports queued
       │              while it filed the previous batch are the next batch (group commit, at most MAX_BATCH)
       ▼
    Intake.submit_many (Intake.submit: a batch of one), report after report:
       │  Locator: the nearest equipment of the category's templates within radius_m of the position (a
       │  lighting cabinet: its luminaires count too), else the equipment whose identity address matches
       ├─ located, the equipment has an open order ─► absorbed: the report counts on that order (a note
       │                                             the first time a category is reported on it)
       ├─ located, no open order ─► a new order (source "citizen"); a later report of the batch joins it
       └─ not located ─► kept as "not located" (an operator reads GET /reports?status=not_located)
       │  a batch is three durable commits whatever its size: its orders (WorkOrders.open_or_attach, one
       │  transaction), its reports, its contacts; every receipt is answered after the three
       ▼
    intake.sqlite   reports (ref, channel, category, text, position, address, equipment, order, times)
    contacts.sqlite contacts (ref, name, phone, email, ts_ms)   ◄── the ONLY place of personal data
                    purged after ``contact_retention`` (30 days by default) at start and every hour;
                    never read by any route, export, journal or log line; not in the server's backups
                    (server.app backs up an explicit list of stores, contacts.sqlite is not on it), so a
                    restored backup holds no contact older than the running server's own purge
    POST /reports/{ref}/photos (the same channel's token) ─► the photo goes to the report's order through the
                          crews' own path (scada.workorders.photos.attach: sniffed, re-encoded without EXIF/GPS, a
                          note names it); a report of another channel is as good as absent
    GET /reports/{ref} ─► Intake.follow(ref): the status the reporter can follow (received, in progress,
                          repaired, closed, not located), nothing else of the report or the order

``intake.yaml`` (beside tags.yaml; absent: the intake is off)::

    radius_m: 150                   # how far from a report its equipment may be
    contact_retention: 30d          # the reporters' contact data are deleted after this (GDPR minimisation)
    channels:
      call_centre: {token_sha256: 5e88...e2, per_minute: 600, burst: 1200}
      app:         {token_sha256: ...,      per_minute: 300}
      web:         {token_sha256: ...}

A channel's token is never stored: only ``hash_token(token)`` (SHA-256, hex; tokens are 32 random bytes,
so a plain hash is enough: nothing to brute-force); make one with ``python -c "import secrets;
print(secrets.token_urlsafe(32))"``. The rate limit is a token bucket per channel, in memory (the login
throttle of :mod:`scada.throttle` counts failed password attempts per account and address in users.sqlite:
it is not a request-rate limiter, and a report is no failure).

Distances: a local flat frame (:data:`scada.geo.M_PER_DEG_LAT` and ``M_PER_DEG_LON_EQ``·cos φ), vectorised
with numpy over every candidate point (33,000 luminaires of a whole city in well under a millisecond);
good to a metre across a few hundred metres.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import math
import queue
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from scada import sqlitestore
from scada.config.loader import Problems, validate_item
from scada.config.model import CityConfig, EquipmentDef
from scada.config.schema import Duration
from scada.config.yamlsource import line_of, load_yaml
from scada.errors import ConfigError, ConfigProblem, Refusal, Refused
from scada.geo import M_PER_DEG_LAT, M_PER_DEG_LON_EQ
from scada.i18n import N_, _
from scada.workorders.model import Status, WorkOrder
from scada.workorders.service import SYSTEM_USER, Want, WorkOrders

log = logging.getLogger(__name__)

FILE_NAME = "intake.sqlite"
CONTACTS_FILE = "contacts.sqlite"
CONFIG_FILE = "intake.yaml"
Category = Literal["lamp_out", "lamp_on_by_day", "bollard_stuck", "panel_dark", "signal_fault", "other"]
#: category → (the equipment templates it can be about (empty: any but vehicles), the order's priority, label)
CATEGORIES: Mapping[str, tuple[tuple[str, ...], int, str]] = {
    "lamp_out": (("lighting_cabinet",), 3, "street lamp out"),
    "lamp_on_by_day": (("lighting_cabinet",), 4, "street lamp on by day"),
    "bollard_stuck": (("bollard",), 2, "bollard stuck"),
    "panel_dark": (("panel",), 3, "information panel dark"),
    "signal_fault": (("junction",), 2, "traffic signal fault"),
    "other": ((), 4, "other fault"),
}
NOT_MOBILE = ("vehicle",)  # never the subject of a report
DEFAULT_RADIUS_M = 150.0
DEFAULT_RETENTION_S = 30 * 86400.0
PURGE_EVERY_S = 3600.0
MAX_BATCH = 256  # reports filed together at most (group commit)
STOP_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------- intake.yaml
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _sha256_hex(value: str) -> str:
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError("must be the SHA-256 of the channel's token, 64 lower-case hex digits (hash_token)")
    return value


class ChannelEntry(_Strict):
    token_sha256: str
    per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = 600
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None  # default: per_minute

    _check = field_validator("token_sha256")(_sha256_hex)


class IntakeFile(_Strict):
    radius_m: Annotated[float, Field(gt=0, le=5000)] = DEFAULT_RADIUS_M
    contact_retention: Duration = DEFAULT_RETENTION_S
    channels: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    token_sha256: str
    per_minute: int
    burst: int


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    channels: Mapping[str, Channel] = field(default_factory=dict)
    radius_m: float = DEFAULT_RADIUS_M
    contact_retention_s: float = DEFAULT_RETENTION_S
    path: str = ""

    def channel_of(self, token: str) -> Channel | None:
        """The channel whose token this is (constant-time comparison of the hashes)."""
        digest = hash_token(token)
        found = None
        for c in self.channels.values():
            if hmac.compare_digest(c.token_sha256, digest):
                found = c
        return found


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_intake(path: Path | str) -> tuple[IntakeConfig | None, list[ConfigProblem]]:
    """Validate ``intake.yaml``; (config or None, every problem as ``intake.yaml:7: channel 'app': ...``)."""
    path = Path(path)
    file = str(path)
    tree, problems = load_yaml(path)
    if tree is None:
        return None, problems
    if not isinstance(tree, dict):
        return None, [ConfigProblem(file, 1, "", f"must be a mapping (radius_m, contact_retention, channels), "
                                                 f"got {type(tree).__name__}")]
    out = Problems()
    top = validate_item(IntakeFile, tree, file, tree, (), "", out)
    channels: dict[str, Channel] = {}
    raw: dict[Any, Any] = tree["channels"] if isinstance(tree.get("channels"), dict) else {}
    seen: dict[str, str] = {}
    for name, entry in raw.items():
        who = f"channel {name!r}"
        ch = validate_item(ChannelEntry, entry, file, tree, ("channels", name), who, out)
        if ch is None:
            continue
        if ch.token_sha256 in seen:
            out.add(file, line_of(tree, ("channels", name)), who, f"same token as channel {seen[ch.token_sha256]!r}")
        seen[ch.token_sha256] = str(name)
        channels[str(name)] = Channel(str(name), ch.token_sha256, ch.per_minute, ch.burst or ch.per_minute)
    if out.items or top is None:
        return None, out.items
    return IntakeConfig(channels, top.radius_m, top.contact_retention, file), []


def load_intake(path: Path | str) -> IntakeConfig:
    config, problems = check_intake(path)
    if config is None:
        raise ConfigError(problems)
    return config


# ---------------------------------------------------------------------- rate limit
class TokenBucket:
    """``per_minute`` requests a minute on average, ``burst`` at once; thread-safe, monotonic clock."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst)
        self.level = float(burst)
        self.t = time.monotonic()
        self.lock = threading.Lock()

    def take(self, now: float | None = None) -> float:
        """0 when a request may pass (and counts it), else the seconds to wait."""
        with self.lock:
            now = time.monotonic() if now is None else now
            self.level = min(self.capacity, self.level + max(0.0, now - self.t) * self.rate)
            self.t = now
            if self.level >= 1.0:
                self.level -= 1.0
                return 0.0
            return (1.0 - self.level) / self.rate


# ---------------------------------------------------------------------- location
F64 = npt.NDArray[np.float64]


def _fold(text: str) -> str:
    """Lower case, no accents, single spaces: "Rue  de l'Égalité" and "rue de l'egalite" match."""
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    return " ".join(t.replace("'", " ").replace("-", " ").split())


class Locator:
    """The nearest equipment of a category to a point (its luminaires count for a cabinet), or by address."""

    def __init__(self, city: CityConfig) -> None:
        self.equipment: list[EquipmentDef] = [e for e in city.equipment.values() if e.template not in NOT_MOBILE]
        lat: list[float] = []
        lon: list[float] = []
        owner: list[int] = []
        for k, e in enumerate(self.equipment):
            points = [(e.lat, e.lon), *_lamp_positions(e)]
            for p in points:
                lat.append(p[0])
                lon.append(p[1])
                owner.append(k)
        self.lat: F64 = np.asarray(lat, dtype=np.float64)
        self.lon: F64 = np.asarray(lon, dtype=np.float64)
        self.owner = np.asarray(owner, dtype=np.int64)
        self.template = np.asarray([self.equipment[k].template for k in owner], dtype=object)
        self.addresses = [(_fold(str(e.identity.get("address") or "")), e) for e in self.equipment]

    def nearest(self, templates: tuple[str, ...], lat: float, lon: float, radius_m: float
                ) -> tuple[EquipmentDef, float] | None:
        if not len(self.lat):
            return None
        mask = np.isin(self.template, templates) if templates else np.ones(len(self.lat), dtype=bool)
        if not mask.any():
            return None
        dy = (self.lat[mask] - lat) * M_PER_DEG_LAT
        dx = (self.lon[mask] - lon) * M_PER_DEG_LON_EQ * math.cos(math.radians(lat))
        d = np.hypot(dx, dy)
        i = int(np.argmin(d))
        if float(d[i]) > radius_m:
            return None
        return self.equipment[int(self.owner[mask][i])], float(d[i])

    def by_address(self, templates: tuple[str, ...], address: str) -> EquipmentDef | None:
        """The equipment whose identity address is the given one, or contains it (a street): the first."""
        a = _fold(address)
        if len(a) < 4:
            return None
        exact = [e for t, e in self.addresses if t == a and (not templates or e.template in templates)]
        if exact:
            return exact[0]
        return next((e for t, e in self.addresses if t and a in t and (not templates or e.template in templates)),
                    None)


def _lamp_positions(e: EquipmentDef) -> list[tuple[float, float]]:
    raw = e.params.get("lamp_positions")
    out: list[tuple[float, float]] = []
    if isinstance(raw, (list, tuple)):
        for p in raw:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                out.append((float(p[0]), float(p[1])))
    return out


# ---------------------------------------------------------------------- storage
REPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    ref TEXT PRIMARY KEY, channel TEXT NOT NULL, category TEXT NOT NULL, text TEXT NOT NULL,
    lat REAL, lon REAL, address TEXT, equipment TEXT, distance_m REAL, order_id TEXT, absorbed INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, idem TEXT UNIQUE);
CREATE INDEX IF NOT EXISTS reports_order ON reports(order_id);
CREATE INDEX IF NOT EXISTS reports_created ON reports(created_ms);
"""
CONTACTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    ref TEXT PRIMARY KEY, name TEXT, phone TEXT, email TEXT, ts_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS contacts_ts ON contacts(ts_ms);
"""


def _open(path: Path, schema: str, what: str) -> sqlite3.Connection:
    db = sqlitestore.connect(path, what)  # synchronous FULL: an acknowledged reference survives a crash
    db.executescript(schema)
    path.chmod(0o600)
    return db


@dataclass(frozen=True, slots=True)
class Contact:
    name: str | None = None
    phone: str | None = None
    email: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.name or self.phone or self.email)


@dataclass(frozen=True, slots=True)
class Report:
    category: str
    text: str = ""
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    contact: Contact = field(default_factory=Contact)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the reporter gets back (and nothing of anybody else's)."""

    reference: str
    status: str
    located: bool
    absorbed: bool  # an order already open for that equipment took the report

    def as_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "status": self.status, "located": self.located,
                "absorbed": self.absorbed}


#: an order's status as the reporter sees it
FOLLOW = {Status.NEW: "received", Status.ASSIGNED: "in_progress", Status.EN_ROUTE: "in_progress",
          Status.ON_SITE: "in_progress", Status.DONE: "repaired", Status.RESOLVED: "repaired",
          Status.CLOSED: "closed", Status.CANCELLED: "closed"}


class Intake:
    """Citizen reports over the work-order façade; one per server (its two SQLite files in the data dir)."""

    def __init__(self, data_dir: Path, orders: WorkOrders, config: IntakeConfig) -> None:
        self.orders = orders
        self.config = config
        self.locator = Locator(orders.city)
        self._city = orders.city
        self.db = _open(data_dir / FILE_NAME, REPORTS_SCHEMA, "citizen-report store")
        self.contacts = _open(data_dir / CONTACTS_FILE, CONTACTS_SCHEMA, "reporter contact store")
        self.buckets = {c.name: TokenBucket(c.per_minute, c.burst) for c in config.channels.values()}
        # locate-then-create is one step: two reports never open two orders; and the files are used by one
        # thread at a time (a batch writes in explicit transactions: a read or the purge from another thread
        # must not land inside one)
        self.lock = threading.RLock()
        self._writer_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._writer_thread: _Writer | None = None
        self.received = self.absorbed = self.not_located = self.limited = 0

    def close(self) -> None:
        """Stop the writer thread (after the reports already queued) and close both files."""
        with self._writer_lock:
            writer, self._writer_thread = self._writer_thread, None
        if writer is not None:
            writer.stop()
        self.db.close()
        self.contacts.close()

    def reconfigure(self, config: IntakeConfig) -> None:
        self.config = config
        self.buckets = {c.name: self.buckets.get(c.name) or TokenBucket(c.per_minute, c.burst)
                        for c in config.channels.values()}

    # ------------------------------------------------------------------ channel
    def channel(self, token: str | None) -> Channel | None:
        """The channel of ``token`` (None: no such token)."""
        return self.config.channel_of(token) if token else None

    def admit(self, channel: Channel) -> float:
        """0 when the channel is within its rate (the report counts), else the seconds to wait. Any thread (the
        main API's loop and the intake's own listener both call it)."""
        bucket = self.buckets.get(channel.name)  # the table is replaced whole by a reload
        if bucket is None:  # a reload removed the channel just after its token was recognised: as it was
            return 0.0
        wait = bucket.take()
        if wait > 0:
            with self._count_lock:
                self.limited += 1
        return wait

    # ------------------------------------------------------------------ submit
    def submit(self, channel: Channel, report: Report, now_ms: int, idem: str | None = None) -> Receipt:
        """Locate, deduplicate, open or join an order, store the report (and its contact apart); blocking."""
        result = self.submit_many([Submission(channel, report, now_ms, idem)])[0]
        if isinstance(result, Refused):
            raise result
        return result

    def enqueue(self, channel: Channel, report: Report, now_ms: int,
                idem: str | None = None) -> concurrent.futures.Future[Receipt]:
        """:meth:`submit` on the intake's own writer thread (see the module's picture): the future is answered
        once the report is durable (``asyncio.wrap_future`` awaits it on an event loop). Reports queued while
        the writer commits the previous batch go together in the next one (group commit)."""
        return self._writer().put(Submission(channel, report, now_ms, idem))

    def _writer(self) -> _Writer:
        with self._writer_lock:
            if self._writer_thread is None:
                self._writer_thread = _Writer(self)
            return self._writer_thread

    def submit_many(self, items: Sequence[Submission]) -> list[Receipt | Refused]:
        """Reports in one go, in order, each answered by its receipt or its own refusal: three durable
        commits for the lot (the orders they open or note, the reports, the contacts) instead of three each."""
        out: dict[int, Receipt | Refused] = {}
        checked: list[tuple[int, Submission, tuple[tuple[str, ...], int, str]]] = []
        for k, s in enumerate(items):
            try:
                checked.append((k, s, _check(s.report)))
            except Refused as exc:
                out[k] = exc
        if self.orders.city is not self._city:  # a reload changed the city: locate in the new one
            self.locator, self._city = Locator(self.orders.city), self.orders.city
        fresh: list[_Filed] = []
        retried: list[tuple[int, int]] = []  # (item, the earlier item of this batch with its idempotency key)
        with self.lock:  # locate-then-create is one step: two reports never open two orders
            first_of: dict[str, int] = {}
            for k, s, (templates, priority, label) in checked:
                key = f"{s.channel.name}:{s.idem}" if s.idem is not None else None
                if key is not None:
                    row = self.db.execute("SELECT ref FROM reports WHERE idem = ?", (key,)).fetchone()
                    if row is not None:  # a retry of a stored report: its receipt, nothing stored again
                        out[k] = self._receipt(str(row[0]))
                        continue
                    if key in first_of:
                        retried.append((k, first_of[key]))
                        continue
                    first_of[key] = k
                fresh.append(_Filed(k, s, key, new_reference(), label, priority, self._locate(s.report, templates)))
            located = [f for f in fresh if f.hit is not None]
            if located:
                self._orders_for(located)
            rows = [f for f in fresh if not isinstance(f.order, Refused)]
            _insert(self.db, "INSERT INTO reports (ref, channel, category, text, lat, lon, address, equipment, "
                             "distance_m, order_id, absorbed, created_ms, idem) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [f.row() for f in rows])
            _insert(self.contacts, "INSERT INTO contacts (ref, name, phone, email, ts_ms) VALUES (?,?,?,?,?)",
                    [(f.ref, f.s.report.contact.name, f.s.report.contact.phone, f.s.report.contact.email,
                      f.s.now_ms) for f in rows if not f.s.report.contact.empty])
        for f in fresh:
            if isinstance(f.order, Refused):
                out[f.k] = f.order
                continue
            order = f.order
            self.received += 1
            self.absorbed += f.absorbed
            self.not_located += order is None
            # the log names the report, never its reporter
            log.info("report %s (%s, %s): %s", f.ref, f.s.channel.name, f.s.report.category,
                     f"{'absorbed by' if f.absorbed else 'opened'} {order.id} ({order.equipment})" if order
                     else "not located")
            out[f.k] = Receipt(f.ref, FOLLOW[order.status] if order else "not_located", order is not None,
                               f.absorbed)
        for k, first in retried:
            out[k] = out[first]  # the same report: the same receipt (or refusal)
        return [out[k] for k in range(len(items))]

    def _locate(self, report: Report, templates: tuple[str, ...]) -> tuple[EquipmentDef, float | None] | None:
        """The equipment of a report: the nearest of its category around its position, else its address's."""
        if report.lat is not None and report.lon is not None:
            near = self.locator.nearest(templates, report.lat, report.lon, self.config.radius_m)
            if near is not None:
                return near[0], near[1]
        if report.address:
            eq = self.locator.by_address(templates, report.address)
            if eq is not None:
                return eq, None
        return None

    def _orders_for(self, located: Sequence[_Filed]) -> None:
        """Each located report's order, in one transaction of the work-order store: the equipment's open order
        absorbs it (a note the first time a category is reported on it), else the report opens one."""
        def news(f: _Filed, order: WorkOrder) -> bool:
            """The first report of this kind on the order: a note says so, once."""
            return f.first_of_kind and self.db.execute(
                "SELECT 1 FROM reports WHERE order_id = ? AND category = ? LIMIT 1",
                (order.id, f.s.report.category)).fetchone() is None

        def note_for(f: _Filed) -> Callable[[WorkOrder], str | None]:
            return lambda order: f"citizen report {f.ref}: {f.label}" if news(f, order) else None

        # an earlier report of the batch on the same equipment and category opened its order, or was absorbed
        # by it (and noted, if that was news): a later one is no news
        kinds: set[tuple[str, str]] = set()
        for f in located:
            if f.hit is not None:
                kind = (f.hit[0].id, f.s.report.category)
                f.first_of_kind = kind not in kinds
                kinds.add(kind)
        # the common case: every report is about an equipment whose open order already knows its kind. Nothing to
        # write to the work-order store, so no transaction there (a lone report is then as few SQLite calls as
        # can be: each one lets another thread take the GIL, and getting it back is what costs under load)
        current = [self.orders.store.open_for(f.hit[0].id) if f.hit is not None else None for f in located]
        if all(o is not None and not news(f, o) for f, o in zip(located, current, strict=True)):
            for f, o in zip(located, current, strict=True):
                f.order, f.absorbed = o, True
            return
        wants = [Want(f.hit[0].id, f"citizen report: {f.label}", f.priority, note_for(f))
                 for f in located if f.hit is not None]
        # the batch's orders take its first report's time (the batch is a few milliseconds of reports)
        results = self.orders.open_or_attach(SYSTEM_USER, wants, located[0].s.now_ms, source="citizen")
        for f, r in zip(located, results, strict=True):
            if isinstance(r, Refused):
                f.order = r
            else:
                f.order, f.absorbed = r[0], not r[1]

    # ------------------------------------------------------------------ read
    def _receipt(self, ref: str) -> Receipt:
        row = self.db.execute("SELECT order_id, absorbed FROM reports WHERE ref = ?", (ref,)).fetchone()
        order = self.orders.store.get(str(row[0])) if row and row[0] else None
        return Receipt(ref, FOLLOW[order.status] if order else "not_located", order is not None, bool(row and row[1]))

    def follow(self, ref: str) -> dict[str, Any]:
        """What the reporter may see of its report: status and times, nothing else (no text, no contact)."""
        with self.lock:
            row = self.db.execute("SELECT category, created_ms, order_id FROM reports WHERE ref = ?",
                                  (ref,)).fetchone()
        if row is None:
            raise Refused("follow a citizen report", N_("no such reference"), Refusal.NOT_FOUND)
        order = self.orders.store.get(str(row[2])) if row[2] else None
        return {"reference": ref, "category": str(row[0]), "received_ms": int(row[1]),
                "status": FOLLOW[order.status] if order else "not_located",
                "updated_ms": order.updated_ms if order else int(row[1])}

    def order_of(self, ref: str, channel: Channel) -> str:
        """The order a report of ``channel`` joined (where a citizen's photo of it goes); Refused NOT_FOUND for
        another channel's report (as good as absent), INVALID for a report no equipment matched."""
        what = f"attach a photo to report {ref}"
        with self.lock:
            row = self.db.execute("SELECT channel, order_id FROM reports WHERE ref = ?", (ref,)).fetchone()
        if row is None or row[0] != channel.name:
            raise Refused(what, N_("no such reference"), Refusal.NOT_FOUND)
        if row[1] is None:
            raise Refused(what, N_("the report is not located: no work order to attach the photo to"),
                          Refusal.INVALID)
        return str(row[1])

    def reports(self, *, order: str | None = None, not_located: bool = False, limit: int = 500,
                offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Reports for the operators (newest first): never the contact data (another file)."""
        where, args = [], []
        if order:
            where.append("order_id = ?")
            args.append(order)
        if not_located:
            where.append("order_id IS NULL")
        sql_where = f" WHERE {' AND '.join(where)}" if where else ""
        cols = ("ref", "channel", "category", "text", "lat", "lon", "address", "equipment", "distance_m", "order_id",
                "absorbed", "created_ms")
        # fixed columns and conditions, every value bound
        sql = f"SELECT {', '.join(cols)} FROM reports{sql_where} ORDER BY created_ms DESC, ref LIMIT ? OFFSET ?"  # noqa: S608
        with self.lock:
            total = int(self.db.execute(f"SELECT count(*) FROM reports{sql_where}", args).fetchone()[0])  # noqa: S608
            rows = self.db.execute(sql, [*args, limit, offset]).fetchall()
        return total, [{**dict(zip(cols, r, strict=True)), "absorbed": bool(r[10])} for r in rows]

    def count_for(self, order_id: str) -> int:
        with self.lock:
            return int(self.db.execute("SELECT count(*) FROM reports WHERE order_id = ?",
                                       (order_id,)).fetchone()[0])

    # ------------------------------------------------------------------ retention
    def purge(self, now_ms: int) -> int:
        """Delete the contact data older than ``contact_retention`` (and reclaim their pages); the number."""
        limit = now_ms - int(self.config.contact_retention_s * 1000)
        with self.lock:  # never inside a batch's transaction (VACUUM cannot run in one)
            return self._purge(limit)

    def _purge(self, limit: int) -> int:
        n = self.contacts.execute("DELETE FROM contacts WHERE ts_ms <= ?", (limit,)).rowcount
        if n:
            # deleted rows must not linger in free pages or the WAL: checkpoint, then rewrite the file
            self.contacts.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.contacts.execute("VACUUM")
            log.info("intake: contact data of %d report(s) purged (older than %g days)", n,
                     self.config.contact_retention_s / 86400)
        return int(n)

    def contact_count(self) -> int:
        with self.lock:
            return int(self.contacts.execute("SELECT count(*) FROM contacts").fetchone()[0])

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "absorbed": self.absorbed, "not_located": self.not_located,
                "rate_limited": self.limited}


@dataclass(frozen=True, slots=True)
class Submission:
    """One report as a channel filed it (``idem``: the channel's idempotency key, if any)."""

    channel: Channel
    report: Report
    now_ms: int
    idem: str | None = None


@dataclass(slots=True)
class _Filed:
    """A report of a batch on its way: where it was located, the order that took it."""

    k: int
    s: Submission
    key: str | None
    ref: str
    label: str
    priority: int
    hit: tuple[EquipmentDef, float | None] | None
    order: WorkOrder | Refused | None = None
    absorbed: bool = False
    first_of_kind: bool = True

    def row(self) -> tuple[Any, ...]:
        r, o, hit = self.s.report, self.order, self.hit
        order_id = o.id if isinstance(o, WorkOrder) else None
        distance = round(hit[1], 1) if hit is not None and hit[1] is not None else None
        return (self.ref, self.s.channel.name, r.category, r.text[:2000], r.lat, r.lon, r.address or None,
                hit[0].id if hit is not None else None, distance, order_id, int(self.absorbed), self.s.now_ms,
                self.key)


def _check(report: Report) -> tuple[tuple[str, ...], int, str]:
    """The category's (templates, priority, label); Refused when the report cannot be filed as it is."""
    what = "file a citizen report"
    spec = CATEGORIES.get(report.category)
    if spec is None:
        raise Refused(what, _("category must be one of {categories}, got {category}").format(
            categories=", ".join(CATEGORIES), category=repr(report.category)), Refusal.INVALID)
    if (report.lat is None) != (report.lon is None):
        raise Refused(what, N_("give both lat and lon, or neither"), Refusal.INVALID)
    if report.lat is None and not (report.address or "").strip():
        raise Refused(what, N_("give a position (lat, lon) or an address"), Refusal.INVALID)
    return spec


def _insert(db: sqlite3.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``rows`` in one transaction (one durable commit, synchronous FULL)."""
    if len(rows) <= 1:  # one row: one statement, its own transaction (the autocommit connection's)
        for row in rows:
            db.execute(sql, row)
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(sql, rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class _Writer:
    """The intake's one writer thread: takes every report queued while it committed the previous batch
    (up to MAX_BATCH) and files them with one :meth:`Intake.submit_many` (group commit). Its own thread, not
    the event loop's default pool: the server's other blocking calls never queue in front of a report. Kept
    with the intake's own listener too (measured, docs/workorders.md): when another thread holds the GIL, its
    group commit is what keeps up with a storm's bursts (one worker per report queued for seconds)."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.queue: queue.SimpleQueue[tuple[Submission, concurrent.futures.Future[Receipt]] | None] = \
            queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)
        self.thread.start()

    def put(self, s: Submission) -> concurrent.futures.Future[Receipt]:
        fut: concurrent.futures.Future[Receipt] = concurrent.futures.Future()
        self.queue.put((s, fut))
        return fut

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            # a report whose request was given up (cancelled) before its turn is not filed
            batch = [(s, f) for s, f in batch if f.set_running_or_notify_cancel()]
            try:
                results = self.intake.submit_many([s for s, _ in batch])
            except Exception as exc:  # the store failed: every report of the batch is told (none lost silently)
                log.exception("intake: %d report(s) not filed", len(batch))
                for _s, f in batch:
                    f.set_exception(exc)
                continue
            for (_s, f), r in zip(batch, results, strict=True):
                if isinstance(r, Refused):
                    f.set_exception(r)
                else:
                    f.set_result(r)


def new_reference() -> str:
    """``R-XXXX-XXXX-XX``: 50 random bits in Crockford-like base 32 (no I, L, O, U): unguessable, dictatable."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    s = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"R-{s[:4]}-{s[4:8]}-{s[8:]}"


__all__ = ["CATEGORIES", "CONFIG_FILE", "CONTACTS_FILE", "FILE_NAME", "Channel", "Contact", "Intake", "IntakeConfig",
           "Locator", "Receipt", "Report", "Submission", "TokenBucket", "check_intake", "hash_token", "load_intake",
           "new_reference"]
