"""Field-safety monitor: defence in depth over the junction status samples (never the primary safety).

The cabinet's own conflict monitor (MMU/CMU) is what protects road users. This monitor double-checks
what the supervisory side observes and asks for the one safe thing it may ask for: flashing amber.

    TagDatabase ──change event──► on_change ─┐
    (one SNMP GET PDU per junction)          ├─► _observe(junction) for every NEW atomic sample
    run() every 0.2 s ──► check() ───────────┘   (phase_greens/yellows, unit_flash_status, pattern
                                                  all received together; mixed PDUs are never combined)

    In the server that database is the junctions' own, written in the field-safety thread
    (server.components.safety): the monitor decides on each sample there, before the main tag database
    gets it, and that thread also hands it the samples that changed nothing.

    per sample:
      any status tag not good, or no sample for 3 scan periods → state "unknown" (colours withheld)
      unit_flash_status fault_monitor / mmu   → state "fault_flash", latched P1 alarm
      two non-permissive phases green/yellow  → state "conflict", P1 alarm at once (same call as the
        (compatibility matrix from commands.yaml;  change event: well within 1 s of the sample), then
         default: every pair conflicts; the        count samples; still not flashing (or still showing the
         stricter of it and the controller's       conflict) after ``samples_before_flash`` more → request
         phaseConcurrency once read)               flash through the gate (user field-safety-monitor) + P1
                                                   "monitor did not act" alarm
        greens are ALWAYS checked, whatever the controller says about flash; yellows only while it does
        not report flash (flashing amber shows every yellow). Flash reported but greens conflicting →
        the distinct P1 "conflicting_green_in_flash" (the status lies or the flash transfer failed)
      frozen status (failsafe/frozen.py: sysUpTime standing still, phases still for longer than the
        plan's cycle, or status contradicting the central request) → state "unknown", P2
        "controller_frozen" (steady: it clears when the status moves again)
      controller reports flash                → state "flash" (the safe state)
      otherwise                               → state "normal"

    layouts (failsafe/concurrency.py), per junction, on every check:
      unverified ── phase_concurrency_<p> all answered ──► verified (matrix = field ∩ layout)
         │  still unread 2 scan periods after the first status sample → P2 "layout_unverified"
         └─ a layout pair the controller treats as conflicting ──► refused: P1 "layout_refused", the
            junction's commands refused (gate lock-out), the monitor checks with field ∩ layout

    scan classes (tags.yaml): the status sample (STATUS_TAGS, one GET) is read at the junction's own class
    (safety, 0.5 s): that period is the junction's period here (staleness, atomicity) and in the safety watch. The
    static objects are read at a slow class (60 s) and are never part of a sample: the monitor uses their
    last good values, each at most ``stale_after`` of its own periods old (3 min at 60 s; a controller that
    stops answering turns them bad_comm at once). Older than that:
      pattern_cycle_<p>      unknown → the frozen check in plan p assumes the NTCIP maximum cycle (255 s),
                             and a central request for plan p is not a contradiction to time (fewer P2s,
                             never a false one)
      phase_concurrency_<p>  the matrix stays field ∩ layout as last read in full (the stricter one), and
                             the P2 "layout_unverified" says since when the field has not confirmed it;
                             it clears at the next full read

Alarms go to a callback (the server connects the alarm engine); the conflict, fault-flash and
did-not-act alarms are latched: :meth:`reset` (journalled) clears them. The monitor never tries to
correct a junction any other way than requesting flash.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from failsafe.audit import AuditLog
from failsafe.concurrency import FieldConcurrency, concurrency_tags, read_tags, refused_pairs, stricter
from failsafe.frozen import FrozenDetector, Request, StatusSample
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
from failsafe.vocabulary import CompatibilityMatrix, Vocabulary, resolve_value
from scada.config.model import CityConfig, EquipmentDef, period_of
from scada.errors import StorageError
from scada.quality import Quality, Value
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

STATUS_TAGS = ("phase_greens", "phase_yellows", "phase_reds", "unit_flash_status", "coord_pattern_status",
               "uptime")  # uptime (sysUpTime): optional, the frozen-controller evidence
PATTERN_CYCLE_TAG = "pattern_cycle_"  # + pattern number: NTCIP patternCycleTime (s) of the controller's plans
FLASH_STATUSES = frozenset({3, 4, 5, 6, 7, 8})  # automatic, local_manual, fault_monitor, mmu, startup, preempt
FAULT_FLASH = frozenset({5, 6})  # fault_monitor, mmu
FLASH_PATTERN = 255
STALE_PERIODS = 3.0


def status_period_s(city: CityConfig, db: TagDatabase, eq: EquipmentDef) -> float:
    """How often a junction's status sample is read: its status tags' period (the slowest of them, should a
    template split them across classes: only then is a sample complete); 1 s when unknown."""
    dev = city.devices.get(eq.device)
    if dev is None:
        return 1.0
    periods = [period_of(db.defs[i], dev) for t in STATUS_TAGS if (i := db.index.get(eq.tag_name(t))) is not None]
    return max(periods, default=dev.period_s) or 1.0


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
    flash_conflict_latched: bool = False
    fault_latched: bool = False
    not_atomic_logged: bool = False
    results: list[CommandResult] = field(default_factory=list)
    layout: CompatibilityMatrix | None = None  # commands.yaml's (matrix above: field ∩ layout once verified)
    conc_tags: dict[int, int] = field(default_factory=dict)
    layout_state: str = "unverified"  # unverified | verified | refused | not_served
    layout_field: FieldConcurrency | None = None
    conc_rcv: int = 0  # newest receive time of the phase_concurrency tags at the last verification
    conc_read_s: float = 0.0  # receive time (epoch s) of the last full good read of them
    conc_max_age_s: float = math.inf  # how old that read may be before the layout is unverified again
    first_sample: float | None = None
    unverified_alarm: bool = False
    frozen: FrozenDetector | None = None
    frozen_alarm: bool = False
    idx_arr: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # idx's values

    def __post_init__(self) -> None:
        # the status tags' indices as one array: each sample's receive times are read with one gather
        self.idx_arr = np.fromiter(self.idx.values(), dtype=np.int64, count=len(self.idx))


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
        self._layout_subs: list[Callable[[dict[str, list[str]]], None]] = []
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
            period = status_period_s(city, db, eq)
            dev = city.devices.get(eq.device)
            if dev is not None and len({period_of(db.defs[i], dev) for i in idx.values()}) > 1:
                log.error("%s: status tags read at different scan classes: no sample is ever complete, the "
                          "field-safety monitor will be blind there (read them in one class)", eq.id)
            j = _Junction(eq, vocabulary.matrix_for(eq.id), idx, period,
                          JunctionView(eq.id, "unknown", reason="no sample yet", since=clock()),
                          layout=vocabulary.matrix_for(eq.id), conc_tags=concurrency_tags(db, city, eq.id),
                          frozen=FrozenDetector(period))
            if not j.conc_tags:
                j.layout_state = "not_served"
            else:
                j.conc_max_age_s = max(self._max_age_s(i, period) for i in j.conc_tags.values())
            self._junctions[eq.id] = j
            for i in idx.values():
                self._by_index[i] = eq.id

    def _max_age_s(self, i: int, default_period_s: float) -> float:
        """How old the last good value of tag ``i`` (a static object) may be: ``stale_after`` of its periods."""
        t = self.db.defs[i]
        dev = self.city.devices.get(t.device)
        return t.stale_after * (period_of(t, dev) if dev is not None else default_period_s)

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
            except Exception:  # the monitor must outlive any one failed check: it is the safety watch (logged)
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
        self.observe({self._by_index[int(i)] for i in event.indices if int(i) in self._by_index})

    def observe(self, junctions: Iterable[str]) -> None:
        """Decide on the present sample of each of ``junctions`` (a batch touched them, changed or not); one
        already decided on is skipped at once (its newest receive time is not newer)."""
        for jid in sorted(junctions):
            j = self._junctions.get(jid)
            if j is not None:
                self._observe(j)

    def check(self, now: float | None = None) -> None:
        """Observe new samples whose values did not change (no event), detect stale junctions, verify layouts."""
        now = self.clock() if now is None else now
        changed = False
        for j in self._junctions.values():
            self._observe(j, now)
            changed |= self._verify_layout(j, now)
        if changed:
            summary = self.layouts()
            for cb in list(self._layout_subs):
                try:
                    cb(summary)
                except Exception:
                    log.exception("layout subscriber failed")

    # ------------------------------------------------------------------ layouts against the field
    def layouts(self) -> dict[str, list[str]]:
        """Junction ids by layout state: verified, unverified, refused, not_served (no phase_concurrency tags)."""
        out: dict[str, list[str]] = {"verified": [], "unverified": [], "refused": [], "not_served": []}
        for jid, j in sorted(self._junctions.items()):
            out[j.layout_state].append(jid)
        return out

    def field_concurrency(self, junction: str) -> FieldConcurrency | None:
        """The controller's phaseConcurrency as last read in full (kept across a comm blip: it is static), or
        None before (a :data:`failsafe.concurrency.ReadConcurrency`, e.g. for checking a reload's layouts)."""
        j = self._junctions.get(junction)
        return None if j is None else j.layout_field

    def on_layout(self, callback: Callable[[dict[str, list[str]]], None]) -> Callable[[], None]:
        """Call ``callback(self.layouts())`` whenever a junction's layout state changes; returns the unsubscribe."""
        self._layout_subs.append(callback)
        return lambda: self._layout_subs.remove(callback) if callback in self._layout_subs else None

    def _verify_layout(self, j: _Junction, now: float) -> bool:
        """Check the junction's layout against its controller's phaseConcurrency; True if its state changed."""
        if j.layout_state == "not_served" or j.layout is None:
            return False
        with self._lock:
            if j.layout_state != "unverified" and not j.unverified_alarm and j.conc_read_s \
                    and now - j.conc_read_s > j.conc_max_age_s:  # the field has not confirmed it for too long
                j.unverified_alarm = True
                self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/layout_unverified", j.eq.id, 2,
                                          f"Junction {j.eq.id} ({j.eq.commune}): layout not verified against the "
                                          f"field at {j.eq.id} for {now - j.conc_read_s:.0f} s (phaseConcurrency "
                                          f"unreadable; checking with its last reading)", ts=now))
            rcv = max(int(self.db.receive_ns[i]) for i in j.conc_tags.values())
            if rcv == j.conc_rcv and not (j.layout_state == "unverified" and not j.unverified_alarm):
                return False  # nothing new read (113 junctions × 8 tags, five times a second otherwise)
            j.conc_rcv = rcv
            field_conc = read_tags(self.db, j.conc_tags)
            if field_conc is None:
                late = j.first_sample is not None and now - j.first_sample > 2 * j.period_s
                if j.layout_state == "unverified" and late and not j.unverified_alarm:
                    j.unverified_alarm = True
                    self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/layout_unverified", j.eq.id, 2,
                                              f"Junction {j.eq.id} ({j.eq.commune}): layout not verified against "
                                              f"the field at {j.eq.id} (phaseConcurrency unreadable)", ts=now))
                return False
            j.conc_read_s = rcv / 1e9
            if field_conc == j.layout_field:
                if j.unverified_alarm:  # read again in full after a stale spell: confirmed
                    j.unverified_alarm = False
                    self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/layout_unverified", j.eq.id, 2,
                                              f"Junction {j.eq.id}: layout verified", active=False, ts=now))
                return False
            j.layout_field = field_conc
            old = j.layout_state
            pairs = refused_pairs(j.layout, field_conc)
            j.matrix = stricter(j.layout, field_conc)
            j.layout_state = "refused" if pairs else "verified"
            if j.unverified_alarm:
                j.unverified_alarm = False
                self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/layout_unverified", j.eq.id, 2,
                                          f"Junction {j.eq.id}: layout verified", active=False, ts=now))
            listed = ", ".join(f"{a}+{b}" for a, b in pairs)
            if pairs:
                why = (f"layout refused: {self.vocab.source} declares phases {listed} compatible, the controller's "
                       f"phaseConcurrency says they conflict")
                log.error("%s: %s; commands refused, the monitor checks with the controller's matrix", j.eq.id, why)
                self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/layout_refused", j.eq.id, 1,
                                          f"Junction {j.eq.id} ({j.eq.commune}): {why}", ts=now))
                self._journal("monitor", j, event="layout_refused", pairs=[list(p) for p in pairs])
                if self.gate is not None:
                    self.gate.set_commandable(j.eq.id, False, why, by=MONITOR.name, allow_increasing=True)
            elif old == "refused":
                self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/layout_refused", j.eq.id, 1,
                                          f"Junction {j.eq.id}: layout agrees with the field", active=False, ts=now))
                self._journal("monitor", j, event="layout_verified")
                if self.gate is not None:
                    self.gate.set_commandable(j.eq.id, True, by=MONITOR.name)
            return old != j.layout_state

    # ------------------------------------------------------------------ frozen-controller evidence
    def _cycle_s(self, j: _Junction, pattern: int) -> float | None:
        """The controller's own patternCycleTime of ``pattern`` (its tag: good quality, and read within
        ``stale_after`` of its periods: a static object, module docstring), else None."""
        i = self.db.index.get(j.eq.tag_name(f"{PATTERN_CYCLE_TAG}{pattern}"))
        if i is None or not Quality(int(self.db.qualities[i])).is_good:
            return None
        if self.clock() - int(self.db.receive_ns[i]) / 1e9 > self._max_age_s(i, j.period_s):
            return None
        v = self.db.value_of(i)
        return float(v) if isinstance(v, (int, float)) and v > 0 else None

    def _request(self, j: _Junction, now: float) -> Request | None:
        """The pattern the central system holds the controller to (its active lease's systemPatternControl
        refresh), if it is one the controller is known to run (flash, free, or a plan it serves a cycle for)."""
        if self.gate is None:
            return None
        lease = self.gate.leases.active(j.eq.id, now)
        if lease is None or lease.refresh_failing:
            return None
        for tag, value, _ in lease.refresh:
            if tag != "system_pattern_control":
                continue
            try:
                pattern = int(resolve_value(value, lease.ctx))  # type: ignore[arg-type]
            except (KeyError, TypeError, ValueError):
                return None
            if pattern in (254, FLASH_PATTERN) or (1 <= pattern <= 253 and self._cycle_s(j, pattern)):
                return Request(pattern, lease.start)
        return None

    def _frozen_alarm(self, j: _Junction, why: str | None, now: float) -> None:
        if bool(why) == j.frozen_alarm:
            return
        j.frozen_alarm = bool(why)
        if why:
            log.error("%s: controller status frozen: %s", j.eq.id, why)
            self._journal("monitor", j, event="controller_frozen", reason=why)
        else:
            log.info("%s: controller status moves again", j.eq.id)
        self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/controller_frozen", j.eq.id, 2,
                                  f"Junction {j.eq.id} ({j.eq.commune}): controller status frozen ({why})" if why
                                  else f"Junction {j.eq.id}: controller status moves again",
                                  active=bool(why), ts=now))

    def _observe(self, j: _Junction, now: float | None = None) -> None:
        with self._lock:
            now = self.clock() if now is None else now
            rcv = self.db.receive_ns[j.idx_arr]  # every decision below starts from these (one gather)
            newest = int(rcv.max()) if rcv.size else 0
            if newest == 0:
                return
            age = now - newest / 1e9
            if age > STALE_PERIODS * j.period_s:
                j.last_rcv = max(j.last_rcv, newest)
                if j.frozen is not None:
                    j.frozen.reset()  # a gap: the status may not "stand still" across it
                if j.view.state != "unknown":
                    self._set(j, JunctionView(j.eq.id, "unknown", since=now,
                                              reason=f"no status sample for {age:.1f} s"))
                return
            if newest <= j.last_rcv:
                return
            tol = int(0.25 * j.period_s * 1e9)
            oldest = int(rcv.min())
            if newest - oldest > tol:
                if not j.not_atomic_logged:
                    j.not_atomic_logged = True
                    log.warning("%s: status tags not received in one sample (spread %.3f s); waiting for an atomic "
                                "sample", j.eq.id, (newest - oldest) / 1e9)
                return
            j.last_rcv = newest
            # the common case, every status tag good, in one comparison (this runs for every junction sample)
            quals = self.db.qualities[j.idx_arr]
            if bool((quals != int(Quality.GOOD)).any()):
                bad = [f"{t} {Quality(int(q)).label}" for t, q in zip(j.idx, quals.tolist(), strict=True)
                       if q != int(Quality.GOOD)]
                if j.frozen is not None:
                    j.frozen.reset()
                self._set(j, JunctionView(j.eq.id, "unknown", since=now, reason="communication: " + ", ".join(bad)))
                return
            if j.first_sample is None:
                j.first_sample = newest / 1e9
            # numeric status tags (the junction template's): their values straight from the column (NaN: no
            # value); the decisions below take int() of each, so value_of's typing is not needed per tag
            val: dict[str, Value]
            if bool(self.db.is_string[j.idx_arr].any()):
                val = {tag: self.db.value_of(i) for tag, i in j.idx.items()}
            else:
                val = {t: (None if math.isnan(v) else v)
                       for t, v in zip(j.idx, self.db.values[j.idx_arr].tolist(), strict=True)}
            greens = int(val.get("phase_greens") or 0)
            yellows = int(val.get("phase_yellows") or 0)
            reds = val.get("phase_reds")
            flash_status = val.get("unit_flash_status")
            pattern = val.get("coord_pattern_status")
            fs = int(flash_status) if isinstance(flash_status, (int, float)) else None
            pat = int(pattern) if isinstance(pattern, (int, float)) else None
            red = int(reds) if isinstance(reds, (int, float)) else None
            up = val.get("uptime")
            uptime = int(up) if isinstance(up, (int, float)) else None
            base = JunctionView(j.eq.id, "normal", greens, yellows, red, fs, pat, since=now)
            flashing = fs in FLASH_STATUSES or pat == FLASH_PATTERN
            if fs in FAULT_FLASH:
                self._fault_flash(j, fs, now)
            # greens always; yellows only while the controller does not report flash (flashing amber lights
            # every yellow): a controller claiming flash is never a reason to skip the greens
            active = greens | (yellows if "yellow" in self.colours and fs not in FLASH_STATUSES else 0)
            conflicts = tuple(j.matrix.conflicts(active))
            if j.pending_since_rcv is not None:
                j.samples_after += 1
            why_frozen = None
            if j.frozen is not None:
                why_frozen = j.frozen.observe(StatusSample(newest / 1e9, greens, yellows, red, fs, pat, uptime),
                                              lambda p: self._cycle_s(j, p), self._request(j, now))
            self._frozen_alarm(j, why_frozen, now)
            if conflicts:
                pairs = ", ".join(f"{a}+{b}" for a, b in conflicts)
                self._set(j, replace(base, state="conflict", conflicts=conflicts,
                                     reason=f"conflicting phases {pairs}" + (" while the controller reports flash"
                                                                             if flashing else "")))
                if j.pending_since_rcv is None:
                    j.pending_since_rcv, j.samples_after = newest, 0
                    self._conflict_alarm(j, conflicts, greens, yellows, now, in_flash=flashing)
                elif flashing and not j.flash_conflict_latched:  # it went to flash, and the greens stayed
                    self._conflict_alarm(j, conflicts, greens, yellows, now, in_flash=True)
            elif flashing:
                if j.pending_since_rcv is not None:
                    log.info("%s: controller reports flash after the conflicting green", j.eq.id)
                j.pending_since_rcv, j.samples_after, j.flash_requested = None, 0, False
                if why_frozen:
                    self._set(j, JunctionView(j.eq.id, "unknown", since=now, reason=f"status frozen: {why_frozen}"))
                else:
                    self._set(j, replace(base, state="fault_flash" if fs in FAULT_FLASH else "flash"))
                return
            elif why_frozen:
                self._set(j, JunctionView(j.eq.id, "unknown", since=now, reason=f"status frozen: {why_frozen}"))
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
            except Exception:  # a subscriber's bug must not stop the monitor or the other subscribers (logged)
                log.exception("junction state subscriber failed")

    # ------------------------------------------------------------------ reactions
    def _alarm(self, alarm: FailsafeAlarm) -> None:
        try:
            self.alarms(alarm)
        except Exception:  # the alarm sink's failure must not stop the monitor's reaction (logged)
            log.exception("alarm sink failed for %s", alarm.key)

    def _journal(self, kind: str, j: _Junction, **fields: object) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(kind, user=MONITOR.name, workstation=MONITOR.workstation, target=[j.eq.id], **fields)
        except StorageError as exc:
            log.error("%s: cannot journal %s: %s", j.eq.id, kind, exc)

    def _conflict_alarm(self, j: _Junction, conflicts: tuple[tuple[int, int], ...], greens: int, yellows: int,
                        now: float, *, in_flash: bool = False) -> None:
        pairs = ", ".join(f"{a}+{b}" for a, b in conflicts)
        code = "conflicting_green_in_flash" if in_flash else "conflicting_green"
        log.error("%s: conflicting green/yellow in one sample%s: phases %s (greens %#04x, yellows %#04x)", j.eq.id,
                  " while the controller reports flash" if in_flash else "", pairs, greens, yellows)
        j.conflict_latched = True
        j.flash_conflict_latched |= in_flash
        self._alarm(FailsafeAlarm(f"failsafe/{j.eq.id}/{code}", j.eq.id, 1,
                                  f"Junction {j.eq.id} ({j.eq.commune}): conflicting green observed, phases {pairs}"
                                  + (", while the controller reports flash" if in_flash else ""),
                                  latched=True, ts=now))
        self._journal("monitor", j, event=code, conflicts=[list(c) for c in conflicts],
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
            for name in ("conflicting_green", "conflicting_green_in_flash", "monitor_did_not_act", "fault_flash",
                         "monitor_flash_failed"):
                self._alarm(FailsafeAlarm(f"failsafe/{junction}/{name}", junction, 1, f"{junction}: reset by {user}",
                                          latched=True, active=False, ts=now))
            j.conflict_latched = j.fault_latched = j.flash_conflict_latched = False
            j.pending_since_rcv, j.samples_after, j.flash_requested = None, 0, False
            if self.audit is not None:
                try:
                    self.audit.append("monitor_reset", user=user, target=[junction])
                except StorageError as exc:
                    log.error("%s: cannot journal reset: %s", junction, exc)
            j.last_rcv = 0  # re-evaluate the current sample
        self._observe(j)
