"""Citizen reports: intake channels, location of the equipment, deduplication into work orders, and the
reporter's personal data kept apart and purged.

::

    POST /reports (channel token) ─► Channel (intake.yaml: token stored as its SHA-256, a token bucket per
       │                                      channel: per_minute, burst)
       ▼
    Intake.submit ─► Locator: the nearest equipment of the category's templates within radius_m of the
       │            position (a lighting cabinet: its luminaires count too), else the equipment whose
       │            identity address matches the given address
       ├─ located, the equipment has an open order ─► absorbed: the report counts on that order (a note
       │                                             the first time a category is reported on it)
       ├─ located, no open order ─► WorkOrders.create(source "citizen") ─► a new order
       └─ not located ─► kept as "not located" (an operator reads GET /reports?status=not_located)
       ▼
    intake.sqlite   reports (ref, channel, category, text, position, address, equipment, order, times)
    contacts.sqlite contacts (ref, name, phone, email, ts_ms)   ◄── the ONLY place of personal data
                    purged after ``contact_retention`` (30 days by default) at start and every hour;
                    never read by any route, export, journal or log line; not in the server's backups
                    (server.app backs up an explicit list of stores, contacts.sqlite is not on it), so a
                    restored backup holds no contact older than the running server's own purge
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

import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Mapping
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
from scada.workorders.model import Action, Change, Status, WorkOrder
from scada.workorders.service import SYSTEM_USER, WorkOrders

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
        self.lock = threading.Lock()  # locate-then-create is one step: two reports never open two orders
        self.received = self.absorbed = self.not_located = self.limited = 0

    def close(self) -> None:
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
        """0 when the channel is within its rate (the report counts), else the seconds to wait."""
        wait = self.buckets[channel.name].take()
        self.limited += wait > 0
        return wait

    # ------------------------------------------------------------------ submit
    def submit(self, channel: Channel, report: Report, now_ms: int, idem: str | None = None) -> Receipt:
        """Locate, deduplicate, open or join an order, store the report (and its contact apart)."""
        what = "file a citizen report"
        spec = CATEGORIES.get(report.category)
        if spec is None:
            raise Refused(what, _("category must be one of {categories}, got {category}").format(
                categories=", ".join(CATEGORIES), category=repr(report.category)), Refusal.INVALID)
        if (report.lat is None) != (report.lon is None):
            raise Refused(what, N_("give both lat and lon, or neither"), Refusal.INVALID)
        if report.lat is None and not (report.address or "").strip():
            raise Refused(what, N_("give a position (lat, lon) or an address"), Refusal.INVALID)
        if self.orders.city is not self._city:  # a reload changed the city: locate in the new one
            self.locator, self._city = Locator(self.orders.city), self.orders.city
        with self.lock:
            if idem is not None:
                row = self.db.execute("SELECT ref FROM reports WHERE idem = ?", (f"{channel.name}:{idem}",)).fetchone()
                if row is not None:
                    return self._receipt(str(row[0]))
            templates, priority, label = spec
            hit: tuple[EquipmentDef, float | None] | None = None
            if report.lat is not None and report.lon is not None:
                near = self.locator.nearest(templates, report.lat, report.lon, self.config.radius_m)
                hit = near if near is None else (near[0], near[1])
            if hit is None and report.address:
                eq = self.locator.by_address(templates, report.address)
                hit = (eq, None) if eq is not None else None
            ref = new_reference()
            order: WorkOrder | None = None
            absorbed = False
            if hit is not None:
                order, absorbed = self._order_for(hit[0], report.category, label, priority, ref, now_ms)
            self.db.execute(
                "INSERT INTO reports (ref, channel, category, text, lat, lon, address, equipment, distance_m, "
                "order_id, absorbed, created_ms, idem) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ref, channel.name, report.category, report.text[:2000], report.lat, report.lon,
                 (report.address or None), hit[0].id if hit else None,
                 round(hit[1], 1) if hit and hit[1] is not None else None, order.id if order else None, int(absorbed),
                 now_ms, f"{channel.name}:{idem}" if idem else None))
            if not report.contact.empty:
                c = report.contact
                self.contacts.execute("INSERT INTO contacts (ref, name, phone, email, ts_ms) VALUES (?,?,?,?,?)",
                                      (ref, c.name, c.phone, c.email, now_ms))
        self.received += 1
        self.absorbed += absorbed
        self.not_located += hit is None
        # the log names the report, never its reporter
        log.info("report %s (%s, %s): %s", ref, channel.name, report.category,
                 f"{'absorbed by' if absorbed else 'opened'} {order.id} ({order.equipment})" if order
                 else "not located")
        return Receipt(ref, FOLLOW[order.status] if order else "not_located", order is not None, absorbed)

    def _order_for(self, eq: EquipmentDef, category: str, label: str, priority: int, ref: str,
                   now_ms: int) -> tuple[WorkOrder, bool]:
        """The equipment's open order (absorbs the report), else a new one; (order, absorbed)."""
        open_ = self.orders.store.open_for(eq.id)
        if open_ is None:
            order, created = self.orders.create(SYSTEM_USER, eq.id, f"citizen report: {label}", priority, now_ms,
                                                source="citizen")
            return order, not created
        seen = self.db.execute("SELECT 1 FROM reports WHERE order_id = ? AND category = ? LIMIT 1",
                               (open_.id, category)).fetchone()
        if seen is None and open_.status.open:  # first report of this kind on the order: say so once
            with contextlib.suppress(Refused):
                open_ = self.orders.store.commit([Change(open_.id, now_ms, SYSTEM_USER, Action.NOTE,
                                                         {"text": f"citizen report {ref}: {label}"})])[-1]
        return open_, True

    # ------------------------------------------------------------------ read
    def _receipt(self, ref: str) -> Receipt:
        row = self.db.execute("SELECT order_id, absorbed FROM reports WHERE ref = ?", (ref,)).fetchone()
        order = self.orders.store.get(str(row[0])) if row and row[0] else None
        return Receipt(ref, FOLLOW[order.status] if order else "not_located", order is not None, bool(row and row[1]))

    def follow(self, ref: str) -> dict[str, Any]:
        """What the reporter may see of its report: status and times, nothing else (no text, no contact)."""
        row = self.db.execute("SELECT category, created_ms, order_id FROM reports WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            raise Refused("follow a citizen report", N_("no such reference"), Refusal.NOT_FOUND)
        order = self.orders.store.get(str(row[2])) if row[2] else None
        return {"reference": ref, "category": str(row[0]), "received_ms": int(row[1]),
                "status": FOLLOW[order.status] if order else "not_located",
                "updated_ms": order.updated_ms if order else int(row[1])}

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
        # fixed columns and conditions, every value bound
        total = int(self.db.execute(f"SELECT count(*) FROM reports{sql_where}", args).fetchone()[0])  # noqa: S608
        cols = ("ref", "channel", "category", "text", "lat", "lon", "address", "equipment", "distance_m", "order_id",
                "absorbed", "created_ms")
        sql = f"SELECT {', '.join(cols)} FROM reports{sql_where} ORDER BY created_ms DESC, ref LIMIT ? OFFSET ?"  # noqa: S608
        rows = self.db.execute(sql, [*args, limit, offset]).fetchall()
        return total, [{**dict(zip(cols, r, strict=True)), "absorbed": bool(r[10])} for r in rows]

    def count_for(self, order_id: str) -> int:
        return int(self.db.execute("SELECT count(*) FROM reports WHERE order_id = ?", (order_id,)).fetchone()[0])

    # ------------------------------------------------------------------ retention
    def purge(self, now_ms: int) -> int:
        """Delete the contact data older than ``contact_retention`` (and reclaim their pages); the number."""
        limit = now_ms - int(self.config.contact_retention_s * 1000)
        n = self.contacts.execute("DELETE FROM contacts WHERE ts_ms <= ?", (limit,)).rowcount
        if n:
            # deleted rows must not linger in free pages or the WAL: checkpoint, then rewrite the file
            self.contacts.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.contacts.execute("VACUUM")
            log.info("intake: contact data of %d report(s) purged (older than %g days)", n,
                     self.config.contact_retention_s / 86400)
        return int(n)

    def contact_count(self) -> int:
        return int(self.contacts.execute("SELECT count(*) FROM contacts").fetchone()[0])

    def stats(self) -> dict[str, int]:
        return {"received": self.received, "absorbed": self.absorbed, "not_located": self.not_located,
                "rate_limited": self.limited}


def new_reference() -> str:
    """``R-XXXX-XXXX-XX``: 50 random bits in Crockford-like base 32 (no I, L, O, U): unguessable, dictatable."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    s = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"R-{s[:4]}-{s[4:8]}-{s[8:]}"


__all__ = ["CATEGORIES", "CONFIG_FILE", "CONTACTS_FILE", "FILE_NAME", "Channel", "Contact", "Intake", "IntakeConfig",
           "Locator", "Receipt", "Report", "TokenBucket", "check_intake", "hash_token", "load_intake",
           "new_reference"]
