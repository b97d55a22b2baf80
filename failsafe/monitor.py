"""Field-safety monitor: defence in depth over the junction status samples (never the primary safety).

The cabinet's own conflict monitor (MMU/CMU) is what protects road users. This monitor double-checks
what the supervisory side observes and asks for the one safe thing it may ask for: flashing amber.

    TagDatabase ──change event──► on_change ─┐
    (one SNMP GET PDU per junction)          ├─► _observe(junction) for every NEW atomic sample
    run() every 0.2 s ──► check() ───────────┘   (phase_greens/yellows, unit_flash_status, pattern
                                                  all received together; mixed PDUs are never combined)

    per sample:
      any status tag not good, or no sample for 3 scan periods → state "unknown" (colours withheld)
      unit_flash_status fault_monitor / mmu   → state "fault_flash", latched P1 alarm
      controller reports flash                → state "flash" (the safe state; no conflict check)
      two non-permissive phases green/yellow  → state "conflict", P1 alarm at once (same call as the
        (compatibility matrix from commands.yaml;  change event: well within 1 s of the sample), then
         default: every pair conflicts)            count samples; still not flashing after
                                                   ``samples_before_flash`` more → request flash through
                                                   the gate (user field-safety-monitor) + P1 "monitor
                                                   did not act" alarm
      otherwise                               → state "normal"

Alarms go to a callback (the server connects the alarm engine); the conflict, fault-flash and
did-not-act alarms are latched: :meth:`reset` (journalled) clears them. The monitor never tries to
correct a junction any other way than requesting flash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from failsafe.audit import AuditLog
from failsafe.gate import CommandGate
from failsafe.types import (
    MONITOR,
    AlarmSink,
    Clock,
    CommandRequest,
    CommandResult,
    FailsafeAlarm,
    Outcome,
    no_alarms,
    system_clock,
)
from failsafe.vocabulary import CompatibilityMatrix, Vocabulary
from scada.config.model import CityConfig, EquipmentDef
from scada.errors import StorageError
from scada.quality import Quality
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

STATUS_TAGS = ("phase_greens", "phase_yellows", "phase_reds", "unit_flash_status", "coord_pattern_status")
FLASH_STATUSES = frozenset({3, 4, 5, 6, 7, 8})  # automatic, local_manual, fault_monitor, mmu, startup, preempt
FAULT_FLASH = frozenset({5, 6})  # fault_monitor, mmu
FLASH_PATTERN = 255
STALE_PERIODS = 3.0


@dataclass(frozen=True, slots=True)
class JunctionView:
    """What the HMI may show. Colours are None whenever the state is unknown: never the last colours."""

    id: str
    state: str  # unknown | normal | flash | fault_flash | conflict
    greens: int | None = None
    yellows: int | None = None
    reds: int | None = None
    flash_status: int | None = None
    pattern: int | None = None
    conflicts: tuple[tuple[int, int], ...] = ()
    since: float = 0.0
    reason: str = ""


@dataclass(slots=True)
class _Junction:
    eq: EquipmentDef
    matrix: CompatibilityMatrix
    idx: dict[str, int]
    period_s: float
    view: JunctionView
    last_rcv: int = 0
    pending_since_rcv: int | None = None  # receive_ns of the sample where a conflict was first seen
    samples_after: int = 0
    flash_requested: bool = False
    conflict_latched: bool = False
    fault_latched: bool = False
    not_atomic_logged: bool = False
    results: list[CommandResult] = field(default_factory=list)


class FieldSafetyMonitor:
    """See the module docstring. ``gate`` may be None (observe and alarm only)."""

    def __init__(self, city: CityConfig, vocabulary: Vocabulary, db: TagDatabase, gate: CommandGate | None, *,
                 alarms: AlarmSink = no_alarms, audit: AuditLog | None = None, clock: Clock = system_clock,
                 colours: tuple[str, ...] | None = None) -> None:
        self.city = city
        self.vocab = vocabulary
        self.db = db
        self.gate = gate
        self.alarms = alarms
        self.audit = audit
        self.clock = clock
        self.colours = colours if colours is not None else vocabulary.conflict_colours
        self.samples_before_flash = vocabulary.samples_before_flash
        self._lock = threading.RLock()
        self._junctions: dict[str, _Junction] = {}
        self._by_index: dict[int, str] = {}
        self._flash_queue: list[str] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._state_subs: list[Callable[[JunctionView], None]] = []
        self._closed = False
        for eq in city.equipment.values():
            if eq.template != "junction":
                continue
            idx: dict[str, int] = {}
            for tag in STATUS_TAGS:
                i = db.index.get(eq.tag_name(tag))
                if i is not None:
                    idx[tag] = i
            if "phase_greens" not in idx or "unit_flash_status" not in idx:
                log.warning("%s: no phase_greens/unit_flash_status tags; the field-safety monitor cannot watch it",
                            eq.id)
                continue
            period = city.devices[eq.device].period_s if eq.device in city.devices else 1.0
            j = _Junction(eq, vocabulary.matrix_for(eq.id), idx, period or 1.0,
                          JunctionView(eq.id, "unknown", reason="no sample yet", since=clock()))
            self._junctions[eq.id] = j
            for i in idx.values():
                self._by_index[i] = eq.id

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FieldSafetyMonitor:
        """Subscribe to the tag database (call from the event loop that will run :meth:`run`)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._unsubscribe = self.db.subscribe(self.on_change, np.array(sorted(self._by_index), dtype=np.int64))
        return self

    def stop(self) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._wake.set()

    async def run(self, interval_s: float = 0.2) -> None:
        """Check for new samples and staleness; send queued flash requests. Runs until :meth:`stop`."""
        while not self._closed:
            try:
                self.check()
                await self.process_pending()
            except Exception:
                log.exception("field-safety monitor check failed")
            try:
                await asyncio.wait_for(self._wake.wait(), interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def on_state(self, callback: Callable[[JunctionView], None]) -> Callable[[], None]:
        """Call ``callback(view)`` on every junction state change; returns the unsubscribe function."""
        self._state_subs.append(callback)
        return lambda: self._state_subs.remove(callback) if callback in self._state_subs else None

    # ------------------------------------------------------------------ queries
    def view(self, junction: str) -> JunctionView | None:
        j = self._junctions.get(junction)
        return None if j is None else j.view

    def views(self) -> dict[str, JunctionView]:
        return {k: j.view for k, j in self._junctions.items()}

    # ------------------------------------------------------------------ observation
    def on_change(self, event: ChangeEvent) -> None:
        """Tag database subscriber: observe every junction touched by this batch at once."""
        touched = {self._by_index[int(i)] for i in event.indices if int(i) in self._by_index}
        for jid in sorted(touched):
            self._observe(self._junctions[jid])

    def check(self, now: float | None = None) -> None:
        """Observe new samples whose values did not change (no event) and detect stale junctions."""
        now = self.clock() if now is None else now
        for j in self._junctions.values():
            self._observe(j, now)

    def _observe(self, j: _Junction, now: float | None = None) -> None:
        with self._lock:
            now = self.clock() if now is None else now
            rcv = {tag: int(self.db.receive_ns[i]) for tag, i in j.idx.items()}
            newest = max(rcv.values())
            if newest == 0:
                return
            age = now - newest / 1e9
            if age > STALE_PERIODS * j.period_s:
                j.last_rcv = max(j.last_rcv, newest)
                if j.view.state != "unknown":
                    self._set(j, JunctionView(j.eq.id, "unknown", since=now,
                                              reason=f"no status sample for {age:.1f} s"))
                return
            if newest <= j.last_rcv:
                return
            tol = int(0.25 * j.period_s * 1e9)
            if newest - min(rcv.values()) > tol:
                if not j.not_atomic_logged:
                    j.not_atomic_logged = True
                    log.warning("%s: status tags not received in one sample (spread %.3f s); waiting for an atomic "
                                "sample", j.eq.id, (newest - min(rcv.values())) / 1e9)
                return
            j.last_rcv = newest
            quals = {tag: Quality(int(self.db.qualities[i])) for tag, i in j.idx.items()}
            bad = [f"{t} {q.label}" for t, q in quals.items() if not q.is_good]
            if bad:
                self._set(j, JunctionView(j.eq.id, "unknown", since=now, reason="communication: " + ", ".join(bad)))
                return
            val = {tag: self.db.value_of(i) for tag, i in j.idx.items()}
            greens = int(val.get("phase_greens") or 0)
            yellows = int(val.get("phase_yellows") or 0)
            reds = val.get("phase_reds")
            flash_status = val.get("unit_flash_status")
            pattern = val.get("coord_pattern_status")
            fs = int(flash_status) if isinstance(flash_status, (int, float)) else None
            pat = int(pattern) if isinstance(pattern, (int, float)) else None
            red = int(reds) if isinstance(reds, (int, float)) else None
            base = JunctionView(j.eq.id, "normal", greens, yellows, red, fs, pat, since=now)
            flashing = fs in FLASH_STATUSES or pat == FLASH_PATTERN
            if fs in FAULT_FLASH:
                self._fault_flash(j, fs, now)
            if flashing:
                if j.pending_since_rcv is not None:
                    log.info("%s: controller reports flash after the conflicting green", j.eq.id)
                j.pending_since_rcv, j.samples_after, j.flash_requested = None, 0, False
                self._set(j, replace(base, state="fault_flash" if fs in FAULT_FLASH else "flash"))
                return
            active = greens | (yellows if "yellow" in self.colours else 0)
            conflicts = tuple(j.matrix.conflicts(active)) if "green" in self.colours or "yellow" in self.colours \
                else ()
            if j.pending_since_rcv is not None:
                j.samples_after += 1
            if conflicts:
                self._set(j, replace(base, state="conflict", conflicts=conflicts,
                                     reason=f"conflicting phases {', '.join(f'{a}+{b}' for a, b in conflicts)}"))
                if j.pending_since_rcv is None:
                    j.pending_since_rcv, j.samples_after = newest, 0
                    self._conflict_alarm(j, conflicts, greens, yellows, now)
            else:
                self._set(j, base)
            if j.pending_since_rcv is not None and j.samples_after >= self.samples_before_flash \
                    and not j.flash_requested:
                j.flash_requested = True
                self._did_not_act(j, now)

    def _set(self, j: _Junction, view: JunctionView) -> None:
        old = j.view
        if (old.state, old.greens, old.yellows, old.reds, old.flash_status, old.pattern) == \
                (view.state, view.greens, view.yellows, view.reds, view.flash_status, view.pattern):
            return
        if old.state == view.state:
            view = replace(view, since=old.since)
        else:
            log.info("%s: %s → %s%s", j.eq.id, old.state, view.state, f" ({view.reason})" if view.reason else "")
        j.view = view
        for cb in list(self._state_subs):
            try:
                cb(view)
            except Exception:
                log.exception("junction state subscriber failed")

    # ------------------------------------------------------------------ reactions
    def _alarm(self, alarm: FailsafeAlarm) -> None:
        try:
            self.alarms(alarm)
        except Exception:
            log.exception("alarm sink failed for %s", alarm.key)

    def _journal(self, kind: str, j: _Junction, **fields: object) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(kind, user=MONITOR.name, workstation=MONITOR.workstation, target=[j.eq.id], **fields)
        except StorageError as exc:
            log.error("%s: cannot journal %s: %s", j.eq.id, kind, exc)

    def _conflict_alarm(self, j: _Junction, conflicts: tuple[tuple[int, int], ...], greens: int, yellows: int,
                        now: float) -> None:
        pairs = ", ".join(f"{a}+{b}" for a, b in conflicts)
        log.error("%s: conflicting green/yellow in one sample: phases %s (greens %#04x, yellows %#04x)", j.eq.id,
                  pairs, greens, yellows)
        j.conflict_latched = True
        self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/conflicting_green", j.eq.id, 1,
                                  f"Junction {j.eq.id} ({j.eq.commune}): conflicting green observed, phases {pairs}",
                                  latched=True, ts=now))
        self._journal("monitor", j, event="conflicting_green", conflicts=[list(c) for c in conflicts],
                      greens=greens, yellows=yellows)

    def _did_not_act(self, j: _Junction, now: float) -> None:
        log.error("%s: controller still not flashing %d samples after a conflicting green: requesting flash",
                  j.eq.id, j.samples_after)
        self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/monitor_did_not_act", j.eq.id, 1,
                                  f"Junction {j.eq.id} ({j.eq.commune}): cabinet conflict monitor did not act "
                                  f"({j.samples_after} samples after a conflicting green); flash requested",
                                  latched=True, ts=now))
        self._journal("monitor", j, event="monitor_did_not_act", samples=j.samples_after)
        self._flash_queue.append(j.eq.id)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop closed
                pass

    def _fault_flash(self, j: _Junction, fs: int, now: float) -> None:
        if j.fault_latched:
            return
        j.fault_latched = True
        what = {5: "fault monitor", 6: "MMU"}.get(fs, str(fs))
        log.error("%s: controller in fault flash (%s)", j.eq.id, what)
        self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/fault_flash", j.eq.id, 1,
                                  f"Junction {j.eq.id} ({j.eq.commune}): fault flash ({what}), local reset needed",
                                  latched=True, ts=now))
        self._journal("monitor", j, event="fault_flash", flash_status=fs)

    async def process_pending(self) -> list[CommandResult]:
        """Send queued flash requests through the gate (as user field-safety-monitor)."""
        results: list[CommandResult] = []
        while self._flash_queue:
            jid = self._flash_queue.pop(0)
            j = self._junctions[jid]
            if self.gate is None:
                log.error("%s: flash needed but the monitor has no gate", jid)
                continue
            result = await self.gate.execute(CommandRequest(
                "flash", (jid,), MONITOR, note="field-safety monitor: conflicting green and the controller did not "
                                                "go to flash"))
            j.results.append(result)
            results.append(result)
            if result.outcome is not Outcome.DONE:
                self._alarm(FailsafeAlarm(f"failsafe/{jid}/monitor_flash_failed", jid, 1,
                                          f"Junction {jid}: flash requested by the field-safety monitor "
                                          f"{result.outcome.value if result.outcome else 'pending'}: {result.reason}",
                                          latched=True, ts=self.clock()))
        return results

    def reset(self, junction: str, user: str) -> None:
        """Operator reset of the latched monitor alarms of ``junction`` (journalled)."""
        j = self._junctions.get(junction)
        if j is None:
            raise KeyError(junction)
        with self._lock:
            now = self.clock()
            for name in ("conflicting_green", "monitor_did_not_act", "fault_flash", "monitor_flash_failed"):
                self._alarm(FailsafeAlarm(f"failsafe/{junction}/{name}", junction, 1, f"{junction}: reset by {user}",
                                          latched=True, active=False, ts=now))
            j.conflict_latched = j.fault_latched = False
            j.pending_since_rcv, j.samples_after, j.flash_requested = None, 0, False
            if self.audit is not None:
                try:
                    self.audit.append("monitor_reset", user=user, target=[junction])
                except StorageError as exc:
                    log.error("%s: cannot journal reset: %s", junction, exc)
            j.last_rcv = 0  # re-evaluate the current sample
        self._observe(j)
