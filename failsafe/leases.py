"""Command leases: every command holds only until its end time, then the device returns to local control.

    gate operate ─► start(lease) ──► ACTIVE ──tick: now ≥ end──► EXPIRED (release writes, journal)
                                      │  │                           never refreshed again, even after
                                      │  └─ tick: refresh due ─► re-write (junction: systemPatternControl
                                      │                          every ≤ unitBackupTime / 3)
                                      ├─ a new command on the same equipment ─► SUPERSEDED
                                      └─ return_to_local / return_to_schedule ─► RELEASED

How each type falls back on its own (the central side is never needed for safety)::

    junction   unitBackupTime (30 s): no systemPatternControl SET for that long → backup mode, local plan
    lighting   hr:1 counts down by itself; heartbeat hr:2 unchanged 60 s → drop override, follow schedule
    bollard    hr:1 counts down by itself; heartbeat hr:2 unchanged 60 s → local, presence interlock wins
    panel      no device-side lease: the release write (clear the message) is retried until it succeeds

Leases are persisted (JSON, rewritten atomically) with their end time. After a restart, a lease whose
end has passed is journalled as expired and only its release writes are sent: it is never refreshed,
so a restart can never re-assert an expired command. Unexpired leases resume refreshing.

A lease belongs to its equipment: it records the equipment's fingerprint (id, template, device address:
failsafe.fingerprint). At load, a lease whose equipment is gone or is now another thing (another
template, another device address, or no fingerprint at all) is dropped — journalled ``lease_dropped``
with the reason, listed in :attr:`LeaseManager.dropped` (the server raises a P3 alarm), and neither
refreshed nor released: its writes would land on a device it was never taken on. :func:`set_aside`
drops a whole store that served another configuration (the server's city check). A store that cannot
be written is said in :attr:`LeaseManager.store_error` (the server raises a P1 alarm).

The supervisory heartbeat (a counter that changes every period) is written to equipment that holds a
lease (``scope: leased``) or to every equipment of the type (``scope: all``); stopping the server stops
it, which is exactly what the field side watches for.

Threads: the lease loop (:meth:`LeaseManager.run`, ticks, heartbeats) runs on the server's main loop; the
gate calls :meth:`~LeaseManager.prepare` / ``restore`` / ``start`` / ``end`` from whichever loop runs the
command — the main one for operators, the field-safety thread's for the monitor's flash — and the monitor
and the uncommanded-change watch read :meth:`~LeaseManager.active` / ``leases``. One ``threading.RLock``
guards the leases, the equipment → lease index and the store file (``_save`` rewrites ``leases.json.tmp``):
every query and change takes it, and ``tick`` takes it to decide what is due and again after each lease's
writes to record their result (a release whose lease a new command superseded meanwhile changes nothing),
never across an ``await``. Lock order: the gate's lock, then this one, then the audit log's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from failsafe.audit import AuditLog
from failsafe.fingerprint import equipment_fingerprint
from failsafe.types import Clock, Writer, system_clock
from failsafe.vocabulary import LEASE_S_MAX, VerbSpec, Vocabulary, resolve_value
from scada.config.model import CityConfig, TagDef
from scada.errors import DriverError, StorageError
from scada.quality import Value

log = logging.getLogger(__name__)

RELEASE_RETRY_MAX_S = 30.0  # a failed release is retried (1 s, 2 s, ... at most every 30 s) until it lands
JOURNAL_RELEASE_FAILURE_AFTER = 5
KEEP_ENDED = 200


@dataclass(slots=True)
class Lease:
    id: str
    ticket: str
    equipment: str
    type: str
    verb: str
    ctx: dict[str, Value]
    refresh: list[tuple[str, Value, float | None]]  # (template tag, literal or "{placeholder}", tolerance)
    release: list[tuple[str, Value, float | None]]
    start: float
    end: float
    safety: str = "neutral"
    user: str = ""
    approver: str | None = None
    state: str = "active"  # active | superseding | releasing | expired | released | superseded | dropped
    last_refresh: float = 0.0
    refresh_failing: bool = False
    release_attempts: int = 0
    next_release: float = 0.0
    note: str = ""
    ended_at: float | None = None
    fingerprint: str = ""  # of the equipment it was taken on (failsafe.fingerprint); "" before they existed

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "ticket": self.ticket, "equipment": self.equipment, "type": self.type,
                "verb": self.verb, "start": self.start, "end": self.end, "safety": self.safety, "user": self.user,
                "approver": self.approver, "state": self.state, "note": self.note}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Lease:
        data = dict(d)
        data["refresh"] = [(x[0], x[1], x[2] if len(x) > 2 else None) for x in data.get("refresh", [])]
        data["release"] = [(x[0], x[1], x[2] if len(x) > 2 else None) for x in data.get("release", [])]
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})


@dataclass(slots=True)
class _Beat:
    next_at: float = 0.0
    failing: set[str] = field(default_factory=set)


class LeaseManager:
    """Holds, refreshes, expires and persists leases; writes the supervisory heartbeat. Thread-safe (module
    docstring); ``tick`` / ``run`` belong to one event loop."""

    def __init__(self, city: CityConfig, vocabulary: Vocabulary, writer: Writer, audit: AuditLog, *,
                 store: Path | str | None = None, clock: Clock = system_clock, resume: bool = True,
                 concurrency: int = 32) -> None:
        self.city = city
        self.vocab = vocabulary
        self.writer = writer
        self.audit = audit
        self.clock = clock
        self.store = Path(store) if store is not None else None
        self.resume = resume
        self._tags: dict[str, TagDef] = city.tag_by_name()
        self._leases: dict[str, Lease] = {}  # id → lease (active, releasing, and a few recently ended)
        self._by_eq: dict[str, str] = {}  # equipment → id of its active lease
        self._beats: dict[str, _Beat] = {t: _Beat() for t, p in vocabulary.types.items() if p.heartbeat}
        self._sem = asyncio.Semaphore(concurrency)
        self._closed = asyncio.Event()
        self.dropped: list[Lease] = []  # persisted leases not re-applied at load (another equipment's)
        self.store_error: str | None = None  # why the last save failed; None once a save succeeds
        self._lock = threading.RLock()  # the leases, their index and the store file (module docstring: threads)
        self._load()

    # ------------------------------------------------------------------ queries
    def active(self, equipment: str, now: float | None = None) -> Lease | None:
        """The lease in force on ``equipment`` (None once its end time has passed, even before tick)."""
        with self._lock:
            lid = self._by_eq.get(equipment)
            lease = self._leases.get(lid) if lid else None
            now = self.clock() if now is None else now
            if lease is None or lease.state != "active" or now >= lease.end:
                return None
            return lease

    def leases(self, states: Iterable[str] = ("active", "releasing")) -> list[Lease]:
        with self._lock:
            wanted = set(states)
            return [lease for lease in self._leases.values() if lease.state in wanted]

    # ------------------------------------------------------------------ changes (called by the gate)
    def _supersede_releases(self, equipment: str, ticket_id: str) -> None:
        """A new command on the equipment: a pending release of an older lease must not clobber it."""
        for lease in self._leases.values():
            if lease.equipment == equipment and lease.state == "releasing":
                lease.state, lease.note = "superseded", f"release superseded by ticket {ticket_id}"
                self._journal("lease_superseded", lease)

    def prepare(self, equipment: str, ticket_id: str) -> Lease | None:
        """Called by the gate just before a new command's writes: from now on no refresh or release of an
        older lease may land after them (it would undo the new command). Returns the lease in force, to
        :meth:`restore` if nothing of the new command reached the device."""
        with self._lock:
            self._supersede_releases(equipment, ticket_id)
            old = self._active_any(equipment)
            if old is not None:
                old.state = "superseding"
            return old

    def restore(self, lease: Lease | None) -> None:
        """The new command wrote nothing: the previous lease stays in force (refreshed, released at its end)."""
        with self._lock:
            if lease is not None and lease.state == "superseding":
                lease.state = "active"

    def start(self, *, ticket_id: str, equipment: str, type_name: str, verb: VerbSpec, ctx: Mapping[str, Value],
              end: float, safety: str, user: str, approver: str | None) -> Lease:
        with self._lock:
            now = self.clock()
            self._supersede_releases(equipment, ticket_id)
            old = self._active_any(equipment)
            if old is not None:
                old.state, old.ended_at, old.note = "superseded", now, f"superseded by ticket {ticket_id}"
                self._journal("lease_superseded", old)
            lease = Lease(uuid.uuid4().hex[:12], ticket_id, equipment, type_name, verb.name,
                          {k: v for k, v in ctx.items() if k != "lease_s"},
                          [(w.tag, w.value, w.tolerance) for w in verb.refresh],
                          [(w.tag, w.value, w.tolerance) for w in verb.release],
                          now, end, safety, user, approver, last_refresh=now,
                          fingerprint=equipment_fingerprint(self.city, equipment))
            self._leases[lease.id] = lease
            self._by_eq[equipment] = lease.id
            self._save()
            self._journal("lease_start", lease)
            return lease

    def end(self, equipment: str, *, reason: str, ticket_id: str = "") -> Lease | None:
        """The command itself returned the device to local control: stop holding (no release writes)."""
        with self._lock:
            self._supersede_releases(equipment, ticket_id)
            lease = self._active_any(equipment)
            if lease is None:
                return None
            lease.state, lease.ended_at = "released", self.clock()
            lease.note = reason + (f" (ticket {ticket_id})" if ticket_id else "")
            self._by_eq.pop(equipment, None)
            self._save()
            self._journal("lease_released", lease)
            return lease

    def _active_any(self, equipment: str) -> Lease | None:
        lid = self._by_eq.get(equipment)
        lease = self._leases.get(lid) if lid else None
        return lease if lease is not None and lease.state in ("active", "superseding") else None

    # ------------------------------------------------------------------ the loop
    async def tick(self, now: float | None = None) -> None:
        """Expire, release, refresh, heartbeat: everything due at ``now``."""
        now = self.clock() if now is None else now
        with self._lock:  # what is due, decided in one step; the writes below run unlocked
            due_expiry = [lease for lease in self._leases.values() if lease.state == "active" and now >= lease.end]
            for lease in due_expiry:  # expiry first: an expired lease is never refreshed
                lease.state = "releasing"
                lease.ended_at = now
                self._by_eq.pop(lease.equipment, None)
                if not lease.note:
                    lease.note = "lease ended"
                self._journal("lease_expired", lease)
            if due_expiry:
                self._save()
            releasing = [lease for lease in self._leases.values() if lease.state == "releasing"]
            refresh = [lease for lease in self._leases.values()
                       if lease.state == "active" and self._refresh_due(lease, now)]
            for lease in refresh:  # claimed now: a tick running meanwhile does not refresh it a second time
                lease.last_refresh = now
        await asyncio.gather(*(self._release(lease, now) for lease in releasing),
                             *(self._refresh(lease, now) for lease in refresh))
        await self._heartbeats(now)
        with self._lock:
            self._prune()

    async def run(self, interval_s: float = 0.5) -> None:
        """Tick until :meth:`aclose`. The server runs this as a task."""
        while not self._closed.is_set():
            try:
                await self.tick()
            except Exception:  # the loop must survive anything: it is what returns devices to local (logged)
                log.exception("lease manager tick failed")
            try:
                await asyncio.wait_for(self._closed.wait(), interval_s)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        self._closed.set()

    def _refresh_due(self, lease: Lease, now: float) -> bool:
        period = self.vocab.types[lease.type].refresh_s if lease.type in self.vocab.types else None
        return bool(lease.refresh) and period is not None and now - lease.last_refresh >= period

    def _resolve(self, lease: Lease, items: list[tuple[str, Value, float | None]],
                 lease_s: float) -> list[tuple[TagDef, Value, float | None]]:
        ctx = dict(lease.ctx)
        ctx["lease_s"] = int(min(LEASE_S_MAX, max(0, round(lease_s))))
        eq = self.city.equipment[lease.equipment]
        return [(self._tags[eq.tag_name(tag)], resolve_value(value, ctx), tol) for tag, value, tol in items]

    async def _write_all(self, writes: list[tuple[TagDef, Value, float | None]],
                         still: Callable[[], bool] | None = None) -> str:
        """Write in order; stop silently as soon as ``still()`` is false (the lease was superseded)."""
        async with self._sem:
            for tag, value, tolerance in writes:
                if still is not None and not still():
                    return ""
                try:
                    await self.writer.write(tag, value, tolerance=tolerance)
                except DriverError as exc:
                    return f"write {tag.tag}={value!r}: {exc}"
        return ""

    async def _refresh(self, lease: Lease, now: float) -> None:
        why = await self._write_all(self._resolve(lease, lease.refresh, lease.end - now),
                                    lambda: lease.state == "active")
        with self._lock:
            self._refreshed(lease, why)

    def _refreshed(self, lease: Lease, why: str) -> None:
        if why and not lease.refresh_failing:
            lease.refresh_failing = True
            log.warning("%s: lease %s refresh failed: %s", lease.equipment, lease.id, why)
            self._journal("lease_refresh_failed", lease, reason=why)
        elif not why and lease.refresh_failing:
            lease.refresh_failing = False
            log.info("%s: lease %s refresh works again", lease.equipment, lease.id)
            self._journal("lease_refresh_ok", lease)

    async def _release(self, lease: Lease, now: float) -> None:
        """Send the release writes. A release only ever returns a device to local control, so it is retried
        until it lands (devices without their own lease, like panels, depend on it), unless a newer command
        on the same equipment supersedes it."""
        with self._lock:
            if now < lease.next_release or lease.state != "releasing":
                return
            lease.release_attempts += 1
        why = await self._write_all(self._resolve(lease, lease.release, 0), lambda: lease.state == "releasing")
        with self._lock:  # the state check and the change in one step: a new command may supersede it meanwhile
            self._released(lease, now, why)

    def _released(self, lease: Lease, now: float, why: str) -> None:
        if lease.state != "releasing":  # superseded by a new command while the writes were in flight
            return
        if not why:
            lease.state = "expired"
            self._journal("lease_release_done", lease, attempts=lease.release_attempts)
        else:
            lease.next_release = now + min(RELEASE_RETRY_MAX_S, float(lease.release_attempts))
            if lease.release_attempts == 1:
                log.warning("%s: lease %s release failed, will retry: %s", lease.equipment, lease.id, why)
            if lease.release_attempts == JOURNAL_RELEASE_FAILURE_AFTER:
                self._journal("lease_release_failing", lease, reason=why, attempts=lease.release_attempts)
        self._save()

    async def _heartbeats(self, now: float) -> None:
        for tname, beat in self._beats.items():
            hb = self.vocab.types[tname].heartbeat
            if hb is None or now < beat.next_at:
                continue
            beat.next_at = now + hb.period_s
            counter = int(now / hb.period_s) & 0xFFFF  # changes every period, even across restarts
            if hb.scope == "all":
                targets = [e.id for e in self.city.equipment.values() if e.template == tname]
            else:
                with self._lock:
                    targets = sorted({lease.equipment for lease in self._leases.values()
                                      if lease.type == tname and lease.state == "active" and now < lease.end})
            tags = [(eq_id, self._tags.get(self.city.equipment[eq_id].tag_name(hb.tag))) for eq_id in targets]
            results = await asyncio.gather(*(self._write_all([(tag, counter, None)]) for _, tag in tags
                                             if tag is not None))
            for (eq_id, _), why in zip([t for t in tags if t[1] is not None], results, strict=True):
                if why and eq_id not in beat.failing:
                    beat.failing.add(eq_id)
                    log.warning("%s: heartbeat write failed: %s", eq_id, why)
                elif not why and eq_id in beat.failing:
                    beat.failing.discard(eq_id)
                    log.info("%s: heartbeat write works again", eq_id)

    # ------------------------------------------------------------------ persistence & journal
    def _journal(self, kind: str, lease: Lease, **extra: Any) -> None:
        fields = {"lease": lease.id, "ticket": lease.ticket, "target": lease.equipment, "type": lease.type,
                  "verb": lease.verb, "user": lease.user, "approver": lease.approver, "lease_end": lease.end,
                  "safety": lease.safety, "reason": lease.note or None, **extra}
        try:
            self.audit.append(kind, **fields)
        except StorageError as exc:  # leases must keep ending even when the journal is broken
            log.error("%s: cannot journal %s: %s", lease.equipment, kind, exc)

    def _save(self) -> None:
        if self.store is None:
            return
        keep = [asdict(lease) for lease in self._leases.values()]
        data = json.dumps({"version": 1, "leases": keep}, default=str, indent=1)
        tmp = self.store.with_name(self.store.name + ".tmp")
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.store)
        except OSError as exc:
            if self.store_error is None:
                log.error("lease store %s cannot be written: %s", self.store, exc)
            self.store_error = f"{self.store}: {exc.strerror or exc}"
            return
        if self.store_error is not None:
            log.info("lease store %s writable again", self.store)
        self.store_error = None

    def _load(self) -> None:
        if self.store is None or not self.store.exists():
            return
        try:
            data = json.loads(self.store.read_text(encoding="utf-8"))
            items = [Lease.from_json(d) for d in data.get("leases", [])]
        except (OSError, ValueError, TypeError) as exc:
            raise StorageError(f"lease store {self.store} is unreadable: {exc}") from exc
        now = self.clock()
        for lease in items:
            why = self._foreign(lease)
            if why:
                if lease.state in ("active", "superseding", "releasing"):
                    self.record_dropped([lease], why)
                if lease.state == "dropped":  # kept as a record (pruned like the ended ones), never acted on
                    self._leases[lease.id] = lease
                continue
            self._leases[lease.id] = lease
            if lease.state == "superseding":  # the process died during a new command's writes
                lease.state = "active"
            if lease.state != "active":
                continue
            if now >= lease.end:
                # ended while we were down: journal it and send only the release writes; never refresh it
                lease.note = "expired while the supervisory server was down; not re-asserted"
            elif not self.resume:
                lease.end = now
                lease.note = "not resumed after restart (resume disabled)"
            else:
                self._by_eq[lease.equipment] = lease.id
                self._journal("lease_resumed", lease)

    def _foreign(self, lease: Lease) -> str:
        """Why ``lease`` does not belong to this city's equipment ("" when it does)."""
        if lease.equipment not in self.city.equipment:
            return f"{lease.equipment} is not in this configuration"
        if not lease.fingerprint:
            return f"{lease.equipment}: the lease records no equipment fingerprint (older store); not re-applied"
        now = equipment_fingerprint(self.city, lease.equipment)
        if lease.fingerprint != now:
            return (f"{lease.equipment} is another equipment now (template or device address changed: fingerprint "
                    f"{lease.fingerprint} → {now})")
        return ""

    def snapshot(self) -> list[dict[str, Any]]:
        """Every lease this manager knows, as stored (the failover pair's replication sends it to the standby)."""
        with self._lock:
            return [asdict(lease) for lease in self._leases.values()]

    def take_over(self, items: Iterable[Mapping[str, Any]], not_before: float) -> None:
        """The failover pair's new active goes on with the old active's leases (:meth:`snapshot` as replicated):
        they replace this manager's own (none doubled, none lost), each checked against this city as at load;
        one in force is refreshed on its own schedule but not before ``not_before`` (the new active's first write
        allowed) and ends at its own end time; one being released goes on being released."""
        with self._lock:
            leases = [Lease.from_json(d) for d in items]
            self._leases.clear()
            self._by_eq.clear()
            for lease in leases:
                why = self._foreign(lease)
                if why and lease.state in ("active", "superseding", "releasing"):
                    self.record_dropped([lease], why)
                self._leases[lease.id] = lease
                if why:
                    continue
                if lease.state == "superseding":  # the old active died during a new command's writes
                    lease.state = "active"
                if lease.state == "active":
                    self._by_eq[lease.equipment] = lease.id
                    period = self.vocab.types[lease.type].refresh_s if lease.type in self.vocab.types else None
                    if period is not None:
                        lease.last_refresh = max(lease.last_refresh, not_before - period)
                    self._journal("lease_resumed", lease, taken_over=True)
            self._save()

    def record_dropped(self, leases: Iterable[Lease], reason: str) -> None:
        """Journal each lease as ``lease_dropped`` (never re-applied, never released here) and keep it in
        :attr:`dropped`."""
        with self._lock:
            for lease in leases:
                lease.state, lease.note, lease.ended_at = "dropped", reason, self.clock()
                log.warning("%s: lease %s (%s) from another configuration dropped: %s", lease.equipment, lease.id,
                            lease.verb, reason)
                self._journal("lease_dropped", lease)
                self.dropped.append(lease)

    def _prune(self) -> None:
        ended = [lease for lease in self._leases.values()
                 if lease.state in ("expired", "released", "superseded", "dropped")]
        if len(ended) > KEEP_ENDED:
            ended.sort(key=lambda lease: lease.ended_at or 0)
            for lease in ended[: len(ended) - KEEP_ENDED]:
                del self._leases[lease.id]
            self._save()


def set_aside(store: Path | str, suffix: str) -> list[Lease]:
    """Move a lease store written for another configuration out of the way (``leases.json.<suffix>``, kept
    for the record) before a lease manager loads it; returns its leases that were still in force or being
    released (the caller journals them with :meth:`LeaseManager.record_dropped`). Nothing to move: []."""
    path = Path(store)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = [Lease.from_json(d) for d in data.get("leases", [])]
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"lease store {path} is unreadable: {exc}") from exc
    try:
        os.replace(path, path.with_name(f"{path.name}.{suffix}"))
    except OSError as exc:
        raise StorageError(f"lease store {path} cannot be set aside: {exc.strerror or exc}") from exc
    return [lease for lease in items if lease.state in ("active", "superseding", "releasing")]
