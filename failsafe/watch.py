"""Uncommanded changes: what the field reports against what this system commanded.

The command gate is the only path for *our* writes, but nothing stops a laptop on the field network
(``snmpset -c public-J005 ... systemPatternControl = 255``, ``mbpoll -t 4 -r 0 ... 80 600``). What the
field does that this system did not command is an alarm::

    TagDatabase ──change event──► on_change ──┐  (the request tags of each watched equipment)
    run(): every interval the equipment whose ├──► evaluate(equipment) ──► FailsafeAlarm (steady)
      verdict can change with time alone, and │      │
      after each write of ours ───────────────┘      │
                                                     ├─ field request   read from the equipment (good quality only)
                                                     ├─ commanded       the value of our lease in force (its verb's
                                                     │                  write of that tag, resolved with its context)
                                                     └─ grace           values we wrote, or leases of ours that
                                                                        ended, within the type's confirm timeout

    per type (WATCHED)   request tag               local (never a difference)      in force when
    junction             system_pattern_control    0 (standby, backup mode reads 0) value ≠ 0
    lighting_cabinet     override_level            the schedule                    mode = override (1)
    bollard              command                   0 local                          value ≠ 0
    panel                message                   "" and the panel's own text     value ≠ ""
    building             intrusion_arm_request     0 local schedule                 value ≠ 0

    field request in force, not local, not ours, not in grace → P2 "uncommanded_change" whose text is
        the value read: "pattern flash, no lease from this system", "override level 80 %, this system
        holds 50 %"; the alarm offers the ways out (commands.yaml): return to local, or ``adopt`` it
    junction unitBackupTime 0 (we never write 0)  → P2 "backup_time_zero": the controller would never fall
        back to local
    local manual control (lighting mode 2 local_manual; junction unitControlStatus manual(5), NTCIP 1202)
        → P3 "local_control", and no uncommanded change: a technician at the cabinet is not a write from
        outside

A device's own documented local behaviour is never a difference: a lease running out (the device drops
the request: the value becomes local), backup mode, a local person ending a building's request. A panel
has no "local" text of its own in the register map: the text it shows when the watch starts (or the last
one accepted: ours, or cleared) is its own; only a *change* to a text we did not write is uncommanded.

Each finding is journalled in the command audit log (``uncommanded``, with the value read) and logged
once per change; the alarm clears by itself when the field is back to local or to what we hold (the
operator's ``return_to_local`` or ``adopt`` through the gate). Bad or missing samples decide nothing:
the alarm keeps its state until the equipment is read again.

What time alone can change: a lease of ours (in force, ending, ended within the grace) and a write of
ours still within its grace. Every other verdict depends only on values and qualities, which reach the
watch as change events: so each interval re-evaluates only the equipment with a lease or a recent write
(at full city scale a handful of the ~1,500 watched), and everything every ``FULL_SWEEP_S`` as a
safety net (a missed event costs at most that long).

Threads: the tag database may hand a change out on the poll thread. The leases and the gate belong to
the event loop, so a change seen on another thread only marks its equipment and wakes :meth:`run`.
Alarms are sent outside the watch's lock (the sink writes to the tag database, which queues writes
made from inside a hand-out).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from failsafe.audit import AuditLog
from failsafe.leases import Lease, LeaseManager
from failsafe.types import AlarmSink, Clock, FailsafeAlarm, Writer, no_alarms, system_clock
from failsafe.vocabulary import Vocabulary
from scada.alarms.system import BY_KEY
from scada.config.model import CityConfig, EquipmentDef, TagDef
from scada.errors import StorageError
from scada.quality import Quality, Sample, Value
from scada.tagdb import ChangeEvent, TagDatabase

__all__ = ["WATCHED", "RecordingWriter", "UncommandedWatch", "Watched"]

log = logging.getLogger(__name__)

UNCOMMANDED, BACKUP_ZERO, LOCAL_CONTROL = "uncommanded_change", "backup_time_zero", "local_control"
KEEP_WRITES = 8  # per tag: our latest writes (the grace looks back one confirm timeout)
_UNSET = object()


@dataclass(frozen=True, slots=True)
class Watched:
    """How one equipment type shows the request it is following."""

    tag: str  # the request tag a command of ours writes
    what: str  # how the message names it
    local: frozenset[Value] = frozenset()  # values meaning "running on its own": never a difference
    in_force_tag: str | None = None  # the request counts only while this tag reads one of in_force
    in_force: frozenset[Value] = frozenset()
    labels: Mapping[int, str] = field(default_factory=dict)  # value → name in the message
    unit: str = ""
    own_text: bool = False  # panels: the text shown at start (or last accepted) is the device's own
    context_tag: str | None = None  # shown next to the value (a bollard's position)
    context_labels: Mapping[int, str] = field(default_factory=dict)
    local_control_tag: str | None = None  # local manual control (P3) while it reads one of local_control
    local_control: frozenset[Value] = frozenset()
    local_control_what: str = ""

    def describe(self, value: Value) -> str:
        if isinstance(value, str):
            return f"{self.what} {value!r}"
        if isinstance(value, (int, float)) and int(value) in self.labels:
            return f"{self.what} {self.labels[int(value)]}"
        shown = int(value) if isinstance(value, float) and value.is_integer() else value
        return f"{self.what} {shown}{self.unit}"


#: per equipment template (docs/contracts.md register maps; NTCIP 1202 for junctions)
WATCHED: dict[str, Watched] = {
    "junction": Watched("system_pattern_control", "pattern", local=frozenset({0}),
                        labels={254: "free", 255: "flash"},
                        local_control_tag="unit_control_status", local_control=frozenset({5}),  # manual(5)
                        local_control_what="manual control at the controller"),
    "lighting_cabinet": Watched("override_level", "override level", unit=" %", in_force_tag="mode",
                                in_force=frozenset({1}),  # 0 schedule, 1 override, 2 local_manual, 3 off_daytime
                                local_control_tag="mode", local_control=frozenset({2}),
                                local_control_what="local manual control at the cabinet"),
    "bollard": Watched("command", "command", local=frozenset({0}), labels={1: "lower", 2: "raise"},
                       context_tag="position", context_labels={0: "down", 1: "up", 2: "moving", 3: "unknown"}),
    "panel": Watched("message", "message", local=frozenset({""}), own_text=True),
    "building": Watched("intrusion_arm_request", "arming request", local=frozenset({0}),
                        labels={1: "arm", 2: "disarm"}),
}
BACKUP_TIME_TAG = ("junction", "unit_backup_time")  # 0 disables the controller's own fallback
#: the lease states the comparison reads (in force, or ended: in grace)
_LEASE_STATES = ("active", "superseding", "releasing", "expired", "released", "superseded")
FULL_SWEEP_S = 60.0  # every watched equipment re-evaluated at least this often (module docstring)


class RecordingWriter:
    """The Writer port the fail-safe layer writes through, noting each value it sends (tag → time, value)
    before the device sees it: a value we are writing or just wrote is never an uncommanded change."""

    def __init__(self, inner: Writer, clock: Clock = system_clock) -> None:
        self.inner = inner
        self.clock = clock
        self.written: dict[str, deque[tuple[float, Value]]] = {}
        self.listeners: list[Callable[[TagDef], None]] = []

    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None:
        self.written.setdefault(tag.name, deque(maxlen=KEEP_WRITES)).append((self.clock(), value))
        try:
            await self.inner.write(tag, value, tolerance=tolerance)
        finally:
            for cb in list(self.listeners):
                try:
                    cb(tag)
                except Exception:  # a listener's bug must not fail the command that wrote (logged)
                    log.exception("write listener failed for %s", tag.name)

    async def read(self, tag: TagDef) -> Sample:
        return await self.inner.read(tag)

    def since(self, name: str, t: float) -> list[Value]:
        """Values written to tag ``name`` at or after ``t``."""
        return [v for ts, v in self.written.get(name, ()) if ts >= t]


@dataclass(slots=True)
class _Eq:
    eq: EquipmentDef
    spec: Watched
    grace_s: float
    idx: dict[str, int]  # role → tag index: request, in_force, context, local_control, backup
    finding: object = _UNSET  # str (the alarm's text) | None (no difference) | _UNSET (not decided yet)
    local: object = _UNSET
    backup_zero: object = _UNSET
    own_text: Value = None  # panels: the text accepted as the device's own


class UncommandedWatch:
    """See the module docstring. ``writer``: the RecordingWriter the gate and the leases write through."""

    def __init__(self, city: CityConfig, vocabulary: Vocabulary, db: TagDatabase, leases: LeaseManager,
                 writer: RecordingWriter, *, alarms: AlarmSink = no_alarms, audit: AuditLog | None = None,
                 clock: Clock = system_clock) -> None:
        self.city = city
        self.vocab = vocabulary
        self.db = db
        self.leases = leases
        self.writer = writer
        self.alarms = alarms
        self.audit = audit
        self.clock = clock
        self._lock = threading.RLock()
        self._eqs: dict[str, _Eq] = {}
        self._by_index: dict[int, str] = {}
        self._dirty: set[str] = set()
        self._written_at: dict[str, float] = {}  # equipment → when we last wrote to it (its grace runs from there)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False
        for eq in city.equipment.values():
            spec = WATCHED.get(eq.template)
            policy = vocabulary.types.get(eq.template)
            if spec is None or policy is None:
                continue  # not a commandable type: nothing of ours to compare with
            roles = {"request": spec.tag, "in_force": spec.in_force_tag, "context": spec.context_tag,
                     "local_control": spec.local_control_tag,
                     "backup": BACKUP_TIME_TAG[1] if eq.template == BACKUP_TIME_TAG[0] else None}
            idx = {role: i for role, tag in roles.items()
                   if tag is not None and (i := db.index.get(eq.tag_name(tag))) is not None}
            if "request" not in idx or (spec.in_force_tag is not None and "in_force" not in idx):
                log.warning("%s: no %s tag; uncommanded changes cannot be watched", eq.id, spec.tag)
                continue
            self._eqs[eq.id] = _Eq(eq, spec, policy.confirm_timeout_s, idx)
            for i in idx.values():
                self._by_index[i] = eq.id

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> UncommandedWatch:
        """Subscribe to the tag database and to our own writes (call from the loop that runs :meth:`run`)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.get_ident()
        self._unsubscribe = self.db.subscribe(self.on_change, np.array(sorted(self._by_index), dtype=np.int64))
        self.writer.listeners.append(self._on_write)
        return self

    def stop(self) -> None:
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._on_write in self.writer.listeners:
            self.writer.listeners.remove(self._on_write)
        self._wake.set()

    async def run(self, interval_s: float = 1.0) -> None:
        """Compare the marked equipment at once, every equipment every ``interval_s`` (a grace running out, a
        lease ending). Runs until :meth:`stop`."""
        last_all = last_timed = -FULL_SWEEP_S
        while not self._closed:
            try:
                now = self.clock()
                with self._lock:
                    dirty, self._dirty = self._dirty, set()
                if now - last_all >= FULL_SWEEP_S:
                    last_all = last_timed = now
                    self.check(now=now)
                elif now - last_timed >= interval_s:
                    last_timed = now
                    self.check(dirty | self._timed(now, interval_s), now)
                else:
                    self.check(dirty, now)
            except Exception:  # the watch must outlive one failed comparison (logged)
                log.exception("uncommanded-change watch failed")
            try:
                await asyncio.wait_for(self._wake.wait(), interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def _timed(self, now: float, interval_s: float) -> set[str]:
        """The equipment whose verdict can change with time alone (module docstring): a lease of ours in any
        state the comparison reads, or a write of ours still in its grace (one interval of margin)."""
        timed: set[str] = set()
        for lease in self.leases.leases(_LEASE_STATES):
            w = self._eqs.get(lease.equipment)
            if w is None:
                continue
            ended = lease.ended_at if lease.ended_at is not None else lease.end
            if lease.state in ("active", "superseding") or now - ended <= w.grace_s + interval_s:
                timed.add(lease.equipment)  # in force (it will end), or ended and still in its grace
        with self._lock:
            for eid, t in list(self._written_at.items()):
                if now - t <= self._eqs[eid].grace_s + interval_s:
                    timed.add(eid)
                else:
                    del self._written_at[eid]
        return timed

    # ------------------------------------------------------------------ triggers
    def on_change(self, event: ChangeEvent) -> None:
        """Tag database subscriber: compare the touched equipment now (event loop) or soon (another thread)."""
        self._touch({self._by_index[int(i)] for i in event.indices if int(i) in self._by_index})

    def _on_write(self, tag: TagDef) -> None:
        """After each write of ours (a command, a refresh, a release): what we just wrote is ours."""
        if tag.equipment in self._eqs:
            with self._lock:
                self._written_at[tag.equipment] = self.clock()
            self._touch({tag.equipment})

    def _touch(self, equipment: set[str]) -> None:
        if not equipment:
            return
        if threading.get_ident() == self._thread:
            self.check(equipment)
            return
        with self._lock:
            self._dirty.update(equipment)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop closed
                pass

    # ------------------------------------------------------------------ the comparison
    def check(self, equipment: Iterable[str] | None = None, now: float | None = None) -> None:
        """Compare ``equipment`` (default: every watched one) with what we commanded, at ``now``."""
        now = self.clock() if now is None else now
        ids = list(self._eqs) if equipment is None else [e for e in equipment if e in self._eqs]
        if not ids:
            return
        wanted = set(ids)
        ours: dict[str, list[Lease]] = {}
        for lease in self.leases.leases(_LEASE_STATES):
            if lease.equipment in wanted:
                ours.setdefault(lease.equipment, []).append(lease)
        out: list[FailsafeAlarm] = []
        with self._lock:
            for eid in ids:
                out.extend(self._evaluate(self._eqs[eid], ours.get(eid, []), now))
        for alarm in out:
            try:
                self.alarms(alarm)
            except Exception:  # the alarm sink's failure must not stop the watch (logged)
                log.exception("alarm sink failed for %s", alarm.key)

    def findings(self) -> dict[str, str]:
        """Equipment → the uncommanded change seen there (what the alarm's text says)."""
        with self._lock:
            return {e: s.finding for e, s in self._eqs.items() if isinstance(s.finding, str)}

    def _read(self, w: _Eq, role: str) -> tuple[bool, Value]:
        """(known, value) of the role's tag: known only with a good value (an unknown decides nothing)."""
        i = w.idx.get(role)
        if i is None or Quality(int(self.db.qualities[i])) is not Quality.GOOD:
            return False, None
        v = self.db.value_of(i)
        return v is not None, v

    def _commanded(self, w: _Eq, leases: list[Lease], now: float) -> tuple[list[Value], Value | None]:
        """(values allowed now, the value of our lease in force or None)."""
        allowed: list[Value] = list(self.writer.since(w.eq.tag_name(w.spec.tag), now - w.grace_s))
        held: Value | None = None
        for lease in leases:
            if lease.state in ("active", "superseding"):
                in_force, ended = now < lease.end, lease.end  # past its end: expiring at the next tick
            else:
                in_force, ended = False, lease.ended_at if lease.ended_at is not None else lease.end
            if not in_force and ended < now - w.grace_s:
                continue  # ended longer ago than the device needs to follow the release
            value = self._lease_value(lease, w.spec.tag)
            if value is None:
                continue
            allowed.append(value)
            if in_force:
                held = value
        return allowed, held

    def _lease_value(self, lease: Lease, tag: str) -> Value | None:
        policy = self.vocab.types.get(lease.type)
        verb = policy.verbs.get(lease.verb) if policy is not None else None
        if verb is None:
            return None
        for spec in verb.writes:
            if spec.tag == tag:
                try:
                    return spec.resolve(lease.ctx)
                except (KeyError, TypeError, ValueError):
                    return None
        return None

    def _evaluate(self, w: _Eq, leases: list[Lease], now: float) -> list[FailsafeAlarm]:
        out: list[FailsafeAlarm] = []
        eq = w.eq
        out.extend(self._local_control(w, now))
        if "backup" in w.idx:
            out.extend(self._backup(w, now))
        known, value = self._read(w, "request")
        if not known:
            return out
        if w.local is True:
            finding = None  # a technician's local control: not a write from outside (P3 above)
        else:
            in_force = value not in w.spec.local
            if w.spec.in_force_tag is not None:
                mode_known, mode = self._read(w, "in_force")
                if not mode_known:
                    return out
                in_force = mode in w.spec.in_force
            finding = self._finding(w, value, leases, now) if in_force else None
        if w.spec.own_text:
            if finding is not None and w.finding is _UNSET and not leases:
                finding = None  # the first text read, with no command of ours in sight: the panel's own
            if finding is None:
                w.own_text = value  # ours, cleared, or the panel's own: what it shows from now on is its own
        if finding == w.finding:
            return out
        first = w.finding is _UNSET
        w.finding = finding
        if finding is not None:
            log.error("%s: uncommanded change: %s", eq.id, finding)
            self._journal(eq, event=UNCOMMANDED, reason=finding, value=value)
            out.append(self._alarm(eq, UNCOMMANDED, 2, True, finding, now))
        elif not first or self._present(eq, UNCOMMANDED):
            log.info("%s: no uncommanded change any more (%s)", eq.id, w.spec.describe(value))
            self._journal(eq, event="uncommanded_change_ended", value=value)
            out.append(self._alarm(eq, UNCOMMANDED, 2, False, "", now))
        return out

    def _finding(self, w: _Eq, value: Value, leases: list[Lease], now: float) -> str | None:
        """The uncommanded change a request in force shows (None: ours, in grace, or the panel's own text)."""
        allowed, held = self._commanded(w, leases, now)
        if value in allowed or (w.spec.own_text and held is None and value == w.own_text):
            return None
        return self._describe(w, value, held)

    def _local_control(self, w: _Eq, now: float) -> list[FailsafeAlarm]:
        if "local_control" not in w.idx:
            return []
        known, v = self._read(w, "local_control")
        if not known:
            return []
        local = v in w.spec.local_control
        if local == w.local:
            return []
        first = w.local is _UNSET
        w.local = local
        if not local and first and not self._present(w.eq, LOCAL_CONTROL):
            return []
        if local:
            log.warning("%s: %s", w.eq.id, w.spec.local_control_what)
            self._journal(w.eq, event=LOCAL_CONTROL, value=v)
        return [self._alarm(w.eq, LOCAL_CONTROL, 3, local, f"{w.eq.id}: {w.spec.local_control_what}" if local
                            else f"{w.eq.id}: local control ended", now)]

    def _describe(self, w: _Eq, value: Value, held: Value | None) -> str:
        spec = w.spec
        text = spec.describe(value)
        if spec.context_tag is not None:
            _, ctx = self._read(w, "context")
            if isinstance(ctx, (int, float)) and not isinstance(ctx, bool):
                text += f" ({spec.context_tag} {spec.context_labels.get(int(ctx), str(ctx))})"
        if held is None:
            return f"{text}, no lease from this system"
        return f"{text}, this system holds {spec.describe(held).removeprefix(spec.what + ' ')}"

    def _backup(self, w: _Eq, now: float) -> list[FailsafeAlarm]:
        known, v = self._read(w, "backup")
        if not known:
            return []
        name = w.eq.tag_name(BACKUP_TIME_TAG[1])
        zero = v == 0 and 0 not in self.writer.since(name, now - w.grace_s)  # never ours: we write backup_time
        if zero == w.backup_zero:
            return []
        first = w.backup_zero is _UNSET
        w.backup_zero = zero
        if zero:
            log.error("%s: unitBackupTime 0 set from outside: the controller would never fall back to local", w.eq.id)
            self._journal(w.eq, event=BACKUP_ZERO, value=0)
        elif first and not self._present(w.eq, BACKUP_ZERO):
            return []
        return [self._alarm(w.eq, BACKUP_ZERO, 2, zero, f"unitBackupTime 0 at {w.eq.id}: the controller would never "
                            f"fall back to local" if zero else f"{w.eq.id}: unitBackupTime {v}", now)]

    def _present(self, eq: EquipmentDef, code: str) -> bool:
        """Whether the condition's system-alarm tag currently says present (a reload's new watch clears what
        the previous one raised and no longer holds)."""
        a = BY_KEY.get(("failsafe", code))
        i = self.db.index.get(a.tag(eq.prefix)) if a is not None else None
        if i is None:
            return False
        v = self.db.value_of(i)
        return bool(v) and v != "0"

    @staticmethod
    def _alarm(eq: EquipmentDef, code: str, priority: int, active: bool, message: str, now: float) -> FailsafeAlarm:
        return FailsafeAlarm(f"failsafe/{eq.id}/{code}", eq.id, priority, message, active=active, ts=now)

    def _journal(self, eq: EquipmentDef, **fields: object) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append("uncommanded", user="failsafe.watch", target=[eq.id], **fields)
        except StorageError as exc:
            log.error("%s: cannot journal %s: %s", eq.id, fields.get("event"), exc)
