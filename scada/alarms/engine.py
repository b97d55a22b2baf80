"""The alarm engine: rules × tag changes × time → ISA-18.2 transitions, journalled.

::

    TagDatabase.apply(batch) ──ChangeEvent──► on_change ─┐
                                                         ├─► process(tags, now_ns)
    server clock (1 s) ─────────────► tick(now_ns) ──────┘      │ 1. timers due by now: on/off delays,
                                                                │    rate decay, timed shelving expiry
                                                                │ 2. alarms reading the changed tags
                                                                │    (CSR gather) → per rule, one
                                                                │    vectorised condition
                                                                │ 3. rising/falling edges → on/off delays
                                                                │ 4. suppression by design
                                                                │ 5. state tables (from states.py)
                                                                ▼
    operator actions ──► acknowledge / shelve / ... ──► Transitions ──► Journal.append_batch (durable)
    (user required, refused with a reason)                     └──► listeners (server → HMI push)

Per alarm, the engine keeps numpy columns: condition, ISA-18.2 state, latched hold, shelving (+ expiry),
suppression (design/operator), out of service, pending on/off delay start, active-since, last change.
Nothing reads a clock: every entry point takes ``now_ns`` (UTC epoch ns), the change handler takes the
batch's receive time. Shelved, suppressed and out-of-service alarms are still evaluated and journalled;
they are only kept off the operator's list and out of the flood count.

Flood: per area, more than ``flood_threshold`` (10) annunciations in ``flood_window_s`` (10 min) starts a
flood, which ends when the count falls below ``flood_clear`` (5); begin and end are journalled. The
operator's list always sorts priority 1 first, and :meth:`AlarmEngine.console` groups the rest by
equipment (a lighting cabinet and its luminaires), rule, area or service while a flood lasts.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from scada import journal as journal_mod  # a module reference: scada.journal imports this package too
from scada.alarms.messages import format_value, render_live
from scada.alarms.rules import AlarmCatalog, AlarmInfo, RateRule, compile_rules, priority_label, unique_ints
from scada.alarms.states import (
    DEFAULT_MAX_SHELVE_S,
    DIAGNOSTIC,
    EXPIRE_TABLE,
    HIDDEN,
    NS_PER_S,
    OFF_TABLE,
    ON_TABLE,
    AlarmState,
    Context,
    Event,
    Flag,
    Refused,
    Shelving,
    Status,
    table_index,
    transition,
)
from scada.config.model import CityConfig
from scada.config.units import slug
from scada.errors import Refusal as Code
from scada.errors import ScadaError
from scada.format import value as for_people
from scada.quality import Quality
from scada.tagdb import ChangeEvent, TagDatabase

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: (user, event, alarm) → refusal reason or None. The server plugs its roles here (reset right,
#: maintenance role for out of service...). The default allows every named user.
Authorizer = Callable[[str, Event, AlarmInfo], str | None]


class AlarmActionRefused(ScadaError):
    """An operator action was refused; ``refusals`` lists (alarm id, reason)."""

    def __init__(self, refusals: list[Refusal]) -> None:
        self.refusals = refusals
        super().__init__("; ".join(f"{r.alarm}: {r.reason}" for r in refusals))


@dataclass(frozen=True, slots=True)
class Refusal:
    """One alarm an action was refused for: why, and the code callers match (never the text)."""

    alarm: str
    reason: str
    code: Code = Code.ALARM_ACTION_REFUSED


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The explicit outcome of an operator action: which alarms it applied to, which it refused and why."""

    event: Event
    done: list[str]
    refused: list[Refusal]

    @property
    def ok(self) -> bool:
        return not self.refused and bool(self.done)

    def raise_for_refusal(self) -> ActionResult:
        if self.refused:
            raise AlarmActionRefused(self.refused)
        return self


@dataclass(frozen=True, slots=True)
class Transitions:
    """One batch of rows (columnar), as journalled and as given to listeners. ``alarm`` −1: no alarm."""

    alarm: I64
    event: U8
    prev_state: U8
    state: U8
    flags: U8
    value: npt.NDArray[np.float64]
    quality: U8
    ts_ns: I64
    outcome: U8
    user: str | None = None
    comment: str | None = None
    detail: list[str | None] | None = None
    until_ns: I64 | None = None

    def __len__(self) -> int:
        return int(self.alarm.size)


@dataclass(frozen=True, slots=True)
class AlarmView:
    """One alarm as the operator sees it."""

    alarm: str
    rule: str
    equipment: str
    commune: str
    area: str
    service: str
    tag: str
    priority: int
    state: AlarmState
    flags: list[str]
    message: str
    value: str
    since_ns: int  # became active (0 if never active)
    changed_ns: int  # last transition
    shelved_until_ns: int
    work_order: str | None

    @property
    def priority_label(self) -> str:
        return priority_label(self.priority)


@dataclass(frozen=True, slots=True)
class AlarmGroup:
    """Alarms sharing a key (equipment, rule, area, service): one line of a grouped view."""

    by: str
    key: str
    count: int
    unacked: int
    top_priority: int
    newest_ns: int
    alarms: list[str]  # the ids, priority then newest first (truncated to 20)


@dataclass(frozen=True, slots=True)
class ConsoleView:
    """What an alarm console shows: priority 1 always on top; grouped while a flood lasts."""

    flood: bool
    flood_areas: list[str]
    critical: list[AlarmView]  # priority-1 alarms, individually, newest first
    items: list[AlarmView]  # the others, ungrouped (empty when grouped)
    groups: list[AlarmGroup]  # the others, grouped (empty when not grouped)
    total: int


@dataclass(frozen=True, slots=True)
class Summary:
    unacked: int
    acked: int
    rtn_unacked: int
    shelved: int
    suppressed: int
    out_of_service: int
    by_priority: dict[int, int]  # visible alarms per priority
    flood_areas: list[str]


@dataclass
class _Flood:
    entries: deque[tuple[int, int]] = field(default_factory=deque)
    total: int = 0
    on: bool = False


class _Rows:
    """Accumulates transition rows during one engine pass."""

    def __init__(self) -> None:
        self.parts: list[tuple[I64, int, U8, U8, U8, npt.NDArray[np.float64], U8, I64]] = []

    def add(self, alarm: I64, event: Event, prev: U8, state: U8, flags: U8, value: npt.NDArray[np.float64],
            quality: U8, ts: I64) -> None:
        if alarm.size:
            self.parts.append((alarm, int(event), prev, state, flags, value, quality, ts))

    def build(self) -> Transitions:
        if not self.parts:
            z = np.zeros(0, dtype=np.uint8)
            return Transitions(np.zeros(0, dtype=np.int64), z, z, z, z, np.zeros(0), z, np.zeros(0, dtype=np.int64), z)
        alarm = np.concatenate([p[0] for p in self.parts])
        event = np.concatenate([np.full(p[0].size, p[1], dtype=np.uint8) for p in self.parts])
        return Transitions(alarm, event, np.concatenate([p[2] for p in self.parts]),
                           np.concatenate([p[3] for p in self.parts]), np.concatenate([p[4] for p in self.parts]),
                           np.concatenate([p[5] for p in self.parts]), np.concatenate([p[6] for p in self.parts]),
                           np.concatenate([p[7] for p in self.parts]), np.zeros(alarm.size, dtype=np.uint8))


class AlarmEngine:
    """Evaluates every alarm of the city, keeps its state, journals and publishes the transitions."""

    def __init__(self, config: CityConfig, db: TagDatabase, journal: journal_mod.Journal | None = None, *,
                 catalog: AlarmCatalog | None = None, restore: bool = True,
                 max_shelve_s: float = DEFAULT_MAX_SHELVE_S, authorize: Authorizer | None = None,
                 flood_threshold: int = 10, flood_clear: int = 5, flood_window_s: float = 600.0,
                 now_ns: int = 0) -> None:
        self.config = config
        self.db = db
        self.journal = journal
        self.catalog = catalog if catalog is not None else compile_rules(config, db)
        self.max_shelve_s = max_shelve_s
        self.authorize = authorize
        self.flood_threshold = flood_threshold
        self.flood_clear = flood_clear
        self.flood_window_ns = int(flood_window_s * NS_PER_S)
        n = self.catalog.n
        self.n = n
        self.cond = np.zeros(n, dtype=bool)
        self.state = np.zeros(n, dtype=np.uint8)
        self.held = np.zeros(n, dtype=bool)
        self.shelving = np.zeros(n, dtype=np.uint8)
        self.shelved_until = np.zeros(n, dtype=np.int64)
        self.sup_design = np.zeros(n, dtype=bool)
        self.sup_operator = np.zeros(n, dtype=bool)
        self.out_of_service = np.zeros(n, dtype=bool)
        self.on_since = np.zeros(n, dtype=np.int64)  # 0: no pending on-delay
        self.off_since = np.zeros(n, dtype=np.int64)
        self.active_since = np.zeros(n, dtype=np.int64)
        self.changed_ns = np.zeros(n, dtype=np.int64)
        self.value_at = np.full(n, np.nan)  # value of the anchor tag at the last transition
        self.work_orders: dict[int, str] = {}
        # "maybe" flags: skip scanning a whole column in tick() when nothing can be pending
        self._maybe_rate = self._maybe_shelved = False
        self._pend_on: list[I64] = []  # alarms that may have a pending on-delay (checked against on_since)
        self._pend_off: list[I64] = []
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Transitions], None]] = []
        self._floods: dict[int, _Flood] = {}
        self._flood_rows: list[tuple[int, int, Event]] = []  # (area, ts, begin/end) waiting to be journalled
        self._rate_rules = [r for r in self.catalog.rules if isinstance(r, RateRule)]
        self._suppressor_groups = {sup.group for _, sup in self.catalog.suppression}
        self.refs = np.zeros(n, dtype=np.int64)
        if journal is not None:
            self.refs = journal.register_catalog(self.catalog.fingerprint(), self.catalog.infos, now_ns)
            if restore:
                self.restore(journal.current_states())

    # ------------------------------------------------------------------ wiring
    def attach(self) -> Callable[[], None]:
        """Subscribe to the tag database (only the tags some rule reads); returns the unsubscribe function."""
        return self.db.subscribe(self.on_change, tags=self.catalog.input_tags)

    def subscribe(self, callback: Callable[[Transitions], None]) -> Callable[[], None]:
        """Call ``callback(transitions)`` after every journalled batch; returns the unsubscribe function."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return unsubscribe

    def on_change(self, event: ChangeEvent) -> None:
        """Tag database subscriber: evaluate at the batch's receive time."""
        if len(event):
            self.process(event.indices, int(event.receive_ns.max()))

    # ------------------------------------------------------------------ evaluation
    def tick(self, now_ns: int) -> Transitions:
        """Advance timers to ``now_ns``: on/off delays, rate decay, timed shelving expiry, flood end."""
        return self.process(np.zeros(0, dtype=np.int64), now_ns)

    def process(self, tags: I64, now_ns: int) -> Transitions:
        """Evaluate the alarms reading ``tags`` (changed tag indices) at ``now_ns``; journal and publish."""
        with self._lock:
            rows = _Rows()
            self._timers(now_ns, rows)
            alarms = self.catalog.alarms_of_tags(np.asarray(tags, dtype=np.int64))
            rising_parts: list[I64] = []
            falling_parts: list[I64] = []
            for rule, local in self.catalog.split(alarms):
                g = local + rule.start
                prev = self.cond[g]
                new, known = rule.condition(local, self.db, prev, now_ns)
                if rule.value_based and not known.all():
                    # a bad or stale input: the condition is unknown. Neither raise nor clear; drop the
                    # pending delays; the reference becomes the alarm's own state so that good data,
                    # when it returns, is compared with what the operator sees.
                    gu = g[~known]
                    base = self._active(gu) & ~self.held[gu]
                    self.on_since[gu] = 0
                    self.off_since[gu] = 0
                    prev = prev.copy()
                    prev[~known] = base
                    new = np.where(known, new, prev)
                self.cond[g] = new
                if isinstance(rule, RateRule) and bool(new.any()):
                    self._maybe_rate = True
                rising_parts.append(g[new & ~prev])
                falling_parts.append(g[~new & prev])
            rising = np.concatenate(rising_parts) if rising_parts else np.zeros(0, dtype=np.int64)
            falling = np.concatenate(falling_parts) if falling_parts else np.zeros(0, dtype=np.int64)
            touched = np.concatenate([rising, falling])
            self._design_suppression(touched, now_ns, rows)
            self._rising(rising, now_ns, rows)
            self._falling(falling, now_ns, rows)
            self._design_suppression(touched, now_ns, rows)
            out = rows.build()
            self._emit(out, now_ns)
            return out

    def _active(self, g: I64) -> B:
        s = self.state[g]
        return np.asarray((s == AlarmState.UNACK) | (s == AlarmState.ACKED), dtype=bool)

    def _flags(self, g: I64) -> U8:
        sh = self.shelving[g]
        f = np.where(sh == Shelving.TIMED, int(Flag.SHELVED_TIMED), 0) | \
            np.where(sh == Shelving.ONE_SHOT, int(Flag.SHELVED_ONE_SHOT), 0)
        f = f | (self.sup_design[g] * int(Flag.SUPPRESSED_DESIGN)) | \
            (self.sup_operator[g] * int(Flag.SUPPRESSED_OPERATOR)) | \
            (self.out_of_service[g] * int(Flag.OUT_OF_SERVICE)) | (self.held[g] * int(Flag.LATCHED))
        return np.asarray(f, dtype=np.uint8)

    def _rising(self, g: I64, now_ns: int, rows: _Rows) -> None:
        if not g.size:
            return
        self.off_since[g] = 0
        need = ~self._active(g) | self.held[g]
        g = g[need]
        immediate = self.catalog.on_delay_ns[g] == 0
        self.on_since[g[~immediate]] = now_ns
        if not immediate.all():
            self._pend_on.append(g[~immediate])
        self._apply(g[immediate], Event.CONDITION_ON, ON_TABLE, np.full(int(immediate.sum()), now_ns, dtype=np.int64),
                    rows)

    def _falling(self, g: I64, now_ns: int, rows: _Rows) -> None:
        if not g.size:
            return
        self.on_since[g] = 0
        g = g[self._active(g) & ~self.held[g]]
        immediate = self.catalog.off_delay_ns[g] == 0
        self.off_since[g[~immediate]] = now_ns
        if not immediate.all():
            self._pend_off.append(g[~immediate])
        self._apply(g[immediate], Event.CONDITION_OFF, OFF_TABLE,
                    np.full(int(immediate.sum()), now_ns, dtype=np.int64), rows)

    def _apply(self, g: I64, event: Event, table: npt.NDArray[np.int16], ts: I64, rows: _Rows) -> I64:
        """Apply a process event through its state table; returns the alarms it changed."""
        if not g.size:
            return g
        code = table[table_index(self.state[g], self.held[g], self.catalog.latched[g], self.shelving[g])]
        ok = code >= 0
        g, code, ts = g[ok], code[ok], ts[ok]
        prev = self.state[g].copy()
        new_state = (code >> 3).astype(np.uint8)
        self.state[g] = new_state
        self.held[g] = ((code >> 2) & 1).astype(bool)
        shelving = (code & 3).astype(np.uint8)
        self.shelved_until[g[shelving != Shelving.TIMED]] = 0
        self.shelving[g] = shelving
        became = ((prev == AlarmState.NORMAL) | (prev == AlarmState.RTN_UNACK)) & \
            ((new_state == AlarmState.UNACK) | (new_state == AlarmState.ACKED))
        self.active_since[g[became]] = ts[became]
        self.changed_ns[g] = ts
        anchor = self.catalog.anchor[g]
        value = self.db.values[anchor]
        self.value_at[g] = value
        rows.add(g, event, prev, new_state, self._flags(g), value, self.db.qualities[anchor], ts)
        return g

    def _timers(self, now_ns: int, rows: _Rows) -> None:
        cat = self.catalog
        pend = self._pending(self._pend_on, self.on_since)
        if pend.size:
            due = pend[now_ns - self.on_since[pend] >= cat.on_delay_ns[pend]]
            if due.size:
                ts = self.on_since[due] + cat.on_delay_ns[due]
                self.on_since[due] = 0
                self._apply(due, Event.CONDITION_ON, ON_TABLE, ts, rows)
        pend = self._pending(self._pend_off, self.off_since)
        if pend.size:
            due = pend[now_ns - self.off_since[pend] >= cat.off_delay_ns[pend]]
            if due.size:
                ts = self.off_since[due] + cat.off_delay_ns[due]
                self.off_since[due] = 0
                changed = self._apply(due, Event.CONDITION_OFF, OFF_TABLE, ts, rows)
                self._design_suppression(changed, now_ns, rows)
        rates = self._rate_rules if self._maybe_rate else []
        self._maybe_rate = False
        for rule in rates:
            if not rule.decay_cond():
                continue
            seg = np.arange(rule.start, rule.start + rule.count, dtype=np.int64)
            local = np.flatnonzero(self.cond[seg])
            if local.size:
                self._maybe_rate = True
                gone = local[rule.decayed(local, now_ns)]
                if gone.size:
                    g = gone + rule.start
                    self.cond[g] = False
                    self._falling(g, now_ns, rows)
                    self._design_suppression(g, now_ns, rows)
        pend = np.flatnonzero(self.shelving == Shelving.TIMED) if self._maybe_shelved else np.zeros(0, dtype=np.int64)
        self._maybe_shelved = bool(pend.size)
        if pend.size:
            due = pend[self.shelved_until[pend] <= now_ns]
            if due.size:
                self._apply(due, Event.SHELVE_EXPIRED, EXPIRE_TABLE, self.shelved_until[due].copy(), rows)
        self._flood_advance(now_ns, begin=False)

    @staticmethod
    def _pending(chunks: list[I64], since: I64) -> I64:
        """The alarms of ``chunks`` still pending (``since`` > 0); the list is compacted in place."""
        if not chunks:
            return np.zeros(0, dtype=np.int64)
        cand = unique_ints(np.concatenate(chunks), since.size) if len(chunks) > 1 else chunks[0]
        cand = cand[since[cand] > 0]
        chunks.clear()
        if cand.size:
            chunks.append(cand)
        return cand

    def _design_suppression(self, touched: I64, now_ns: int, rows: _Rows) -> None:
        """Recompute ``suppressed_by`` for the equipment whose suppressing alarm was touched."""
        if not touched.size or not self.catalog.suppression:
            return
        cat = self.catalog
        groups = set(np.flatnonzero(np.bincount(cat.group[touched], minlength=len(cat.rules))).tolist())
        for dep, sup in cat.suppression:
            if sup.group not in groups:
                continue
            mine = touched[(touched >= sup.start) & (touched < sup.start + sup.count)]
            n_eq = len(cat.equipment_ids)
            eqs = np.flatnonzero(np.bincount(cat.equipment[mine], minlength=n_eq)).astype(np.int64)
            sup_alarms = cat.alarms_of_equipment(sup, eqs)
            present = self.cond[sup_alarms] | self._active(sup_alarms)
            on_eq = np.flatnonzero(np.bincount(cat.equipment[sup_alarms][present], minlength=n_eq))
            sel = cat.alarms_of_equipment(dep, eqs)
            if not sel.size:
                continue
            want = np.isin(cat.equipment[sel], on_eq)
            diff = want != self.sup_design[sel]
            changed = sel[diff]
            if not changed.size:
                continue
            self.sup_design[changed] = want[diff]
            visible = changed[self.state[changed] != AlarmState.NORMAL]  # a normal alarm's hiding is not news
            if visible.size:
                on = self.sup_design[visible]
                for ev, part in ((Event.DESIGN_SUPPRESS, visible[on]), (Event.DESIGN_RELEASE, visible[~on])):
                    if part.size:
                        anchor = cat.anchor[part]
                        st = self.state[part].copy()
                        self.changed_ns[part] = now_ns
                        rows.add(part, ev, st, st, self._flags(part), self.db.values[anchor],
                                 self.db.qualities[anchor], np.full(part.size, now_ns, dtype=np.int64))

    # ------------------------------------------------------------------ flood
    def _annunciations(self, tr: Transitions) -> None:
        """Count annunciations per area (condition on from an inactive state, visible priority)."""
        if not len(tr):
            return
        m = (tr.event == Event.CONDITION_ON) & (tr.alarm >= 0)
        m &= (tr.prev_state == AlarmState.NORMAL) | (tr.prev_state == AlarmState.RTN_UNACK)
        m &= (tr.flags & int(HIDDEN)) == 0
        if not m.any():
            return
        g = tr.alarm[m]
        vis = self.catalog.priority[g] < DIAGNOSTIC
        g = g[vis]
        ts = tr.ts_ns[m][vis]
        if not g.size:
            return
        areas = self.catalog.area[g]
        for area in np.flatnonzero(np.bincount(areas, minlength=len(self.catalog.areas))).tolist():
            sel = areas == area
            f = self._floods.setdefault(area, _Flood())
            last = f.entries[-1][0] if f.entries else 0
            t = max(int(ts[sel].max()), last)  # keep the window monotonic
            f.entries.append((t, int(sel.sum())))
            f.total += int(sel.sum())

    def _flood_advance(self, now_ns: int, begin: bool) -> None:
        """Slide every area's window to ``now_ns``; a flood ends when its count falls below ``flood_clear``
        (at the moment the old annunciation leaves the window); with ``begin``, start floods too."""
        for area, f in self._floods.items():
            while f.entries and f.entries[0][0] <= now_ns - self.flood_window_ns:
                t, c = f.entries.popleft()
                f.total -= c
                if f.on and f.total < self.flood_clear:
                    f.on = False
                    self._flood_rows.append((area, t + self.flood_window_ns, Event.FLOOD_END))
            if begin and not f.on and f.total > self.flood_threshold:
                f.on = True
                self._flood_rows.append((area, now_ns, Event.FLOOD_BEGIN))

    def flood_areas(self) -> list[str]:
        with self._lock:
            return sorted(self.catalog.areas[a] for a, f in self._floods.items() if f.on)

    # ------------------------------------------------------------------ output
    def _emit(self, tr: Transitions, now_ns: int) -> None:
        self._annunciations(tr)
        self._flood_advance(now_ns, begin=True)
        flood_rows, self._flood_rows = self._flood_rows, []
        if flood_rows:
            for area, _t, ev in flood_rows:
                log.warning("area %s: alarm flood %s", self.catalog.areas[area],
                            "begins" if ev is Event.FLOOD_BEGIN else "ends")
            k = len(flood_rows)
            z = np.zeros(k, dtype=np.uint8)
            extra = Transitions(np.full(k, -1, dtype=np.int64), np.array([int(e) for _, _, e in flood_rows],
                                                                         dtype=np.uint8),
                                z, z, z, np.full(k, np.nan), z, np.array([t for _, t, _ in flood_rows], dtype=np.int64),
                                z, detail=[self.catalog.areas[a] for a, _, _ in flood_rows])
            self._publish(extra)
        self._publish(tr)

    def _publish(self, tr: Transitions) -> None:
        if not len(tr):
            return
        if self.journal is not None:
            self.journal.append_batch(self._batch(tr))
        for cb in list(self._listeners):
            try:
                cb(tr)
            except Exception:  # a broken listener must not stop the engine
                log.exception("alarm listener %r failed", cb)

    def _batch(self, tr: Transitions) -> journal_mod.JournalBatch:
        ref = np.where(tr.alarm >= 0, self.refs[np.maximum(tr.alarm, 0)] if self.n else 0, 0)
        value: list[float | str | None] | npt.NDArray[np.float64] = tr.value
        strings = self.db.is_string[self.catalog.anchor[np.maximum(tr.alarm, 0)]] & (tr.alarm >= 0) \
            if self.n else np.zeros(len(tr), dtype=bool)
        if strings.any():
            vals: list[float | str | None] = list(tr.value.tolist())
            for k in np.flatnonzero(strings).tolist():
                vals[k] = self.db.strings.get(int(self.catalog.anchor[int(tr.alarm[k])]))
            value = vals
        # every row carries the alarm's active-since and timed-shelving end: its last row restores it
        a = np.maximum(tr.alarm, 0)
        active = (tr.state == AlarmState.UNACK) | (tr.state == AlarmState.ACKED)
        became = active & ((tr.prev_state == AlarmState.NORMAL) | (tr.prev_state == AlarmState.RTN_UNACK))
        since = np.where(became, tr.ts_ns, np.where(active, self.active_since[a] if self.n else 0, 0))
        timed = (tr.flags & int(Flag.SHELVED_TIMED)) != 0
        until = np.where(timed, self.shelved_until[a] if self.n else 0, 0)
        if tr.until_ns is not None:
            until = np.where(tr.until_ns > 0, tr.until_ns, until)
        since[tr.alarm < 0] = 0
        until[tr.alarm < 0] = 0
        return journal_mod.JournalBatch(
            ref=ref, ts_ns=tr.ts_ns, event=tr.event, state=tr.state, prev_state=tr.prev_state, flags=tr.flags,
            value=value, quality=tr.quality, outcome=tr.outcome, user=tr.user, comment=tr.comment, detail=tr.detail,
            until_ns=until.astype(np.int64), since_ns=since.astype(np.int64))

    # ------------------------------------------------------------------ status of one alarm
    def status(self, i: int) -> Status:
        return Status(AlarmState(int(self.state[i])), bool(self.held[i]), Shelving(int(self.shelving[i])),
                      int(self.shelved_until[i]), bool(self.sup_design[i]), bool(self.sup_operator[i]),
                      bool(self.out_of_service[i]))

    def _set_status(self, i: int, s: Status, ts: int) -> None:
        prev = AlarmState(int(self.state[i]))
        self._maybe_shelved |= s.shelving is Shelving.TIMED
        self.state[i] = int(s.state)
        self.held[i] = s.held
        self.shelving[i] = int(s.shelving)
        self.shelved_until[i] = s.shelved_until_ns
        self.sup_design[i] = s.suppressed_design
        self.sup_operator[i] = s.suppressed_operator
        self.out_of_service[i] = s.out_of_service
        self.changed_ns[i] = ts
        if not prev.active and s.state.active:
            self.active_since[i] = ts

    def context(self, i: int) -> Context:
        return Context(int(self.catalog.priority[i]), bool(self.catalog.latched[i]), self.max_shelve_s)

    def restore(self, states: dict[str, journal_mod.RestoredState]) -> int:
        """Take the journal's last known states (acknowledged stays acknowledged); returns how many applied.

        Vectorised per rule: 300,000 restored alarms take about a second.
        """
        with self._lock:
            cat = self.catalog
            by_rule: dict[str, tuple[list[int], list[journal_mod.RestoredState]]] = {}
            index = self.db.index
            for rs in states.values():
                rule, _, tag = rs.alarm.partition(":")
                t = index.get(tag)
                if t is not None and rule in cat.rule_by_name:
                    part = by_rule.setdefault(rule, ([], []))
                    part[0].append(t)
                    part[1].append(rs)
            applied = 0
            for rule_name, (tags, items) in by_rule.items():
                r = cat.rule_by_name[rule_name]
                want = np.array(tags, dtype=np.int64)
                k = np.minimum(np.searchsorted(r.anchor, want), r.count - 1)
                ok = r.anchor[k] == want
                g = (k + r.start)[ok]
                kept = [rs for rs, good in zip(items, ok.tolist(), strict=True) if good]
                if not kept:
                    continue
                st = np.array([int(rs.state) for rs in kept], dtype=np.uint8)
                fl = np.array([rs.flags for rs in kept], dtype=np.int64)
                ts = np.array([rs.ts_ms for rs in kept], dtype=np.int64) * 1_000_000
                since = np.array([rs.active_since_ms or rs.ts_ms for rs in kept], dtype=np.int64) * 1_000_000
                until = np.array([rs.shelved_until_ms or 0 for rs in kept], dtype=np.int64) * 1_000_000
                active = (st == AlarmState.UNACK) | (st == AlarmState.ACKED)
                held = ((fl & int(Flag.LATCHED)) != 0) & active
                timed = ((fl & int(Flag.SHELVED_TIMED)) != 0) & (until > 0)
                one_shot = (fl & int(Flag.SHELVED_ONE_SHOT)) != 0
                self.state[g] = st
                self.held[g] = held
                self.shelving[g] = np.where(timed, int(Shelving.TIMED),
                                            np.where(one_shot, int(Shelving.ONE_SHOT), int(Shelving.NONE)))
                self.shelved_until[g] = np.where(timed, until, 0)
                self.sup_design[g] = False
                self.sup_operator[g] = (fl & int(Flag.SUPPRESSED_OPERATOR)) != 0
                self.out_of_service[g] = (fl & int(Flag.OUT_OF_SERVICE)) != 0
                self.changed_ns[g] = ts
                self.active_since[g] = np.where(active, since, 0)
                self.cond[g] = active & ~held
                for i, rs in zip(g.tolist(), kept, strict=True):
                    if rs.flags & int(Flag.OUT_OF_SERVICE):
                        self.work_orders[i] = rs.work_order or ""
                applied += len(kept)
            # suppression by design follows the restored suppressors
            sup_alarms = [np.arange(s.start, s.start + s.count, dtype=np.int64) for _, s in cat.suppression]
            if sup_alarms:
                self._design_suppression(np.concatenate(sup_alarms), 0, _Rows())
            self._maybe_rate = self._maybe_shelved = True  # rescan once at the next tick
            if applied:
                log.info("alarm engine: restored %d alarm states from the journal", applied)
            return applied

    # ------------------------------------------------------------------ operator actions
    def _act(self, event: Event, alarm_ids: Iterable[str], user: str, now_ns: int, *, text: str = "",
             until_ns: int = 0, comment: str | None = None) -> ActionResult:
        with self._lock:
            timers = _Rows()
            self._timers(now_ns, timers)
            self._emit(timers.build(), now_ns)
            ids = list(dict.fromkeys(alarm_ids))
            done: list[str] = []
            refused: list[Refusal] = []
            rows_alarm: list[int] = []
            rows_prev: list[int] = []
            rows_state: list[int] = []
            rows_flags: list[int] = []
            rows_outcome: list[int] = []
            rows_detail: list[str | None] = []
            if not ids:
                refused.append(Refusal("", f"{event.label}: no alarm selected"))
            for alarm in ids:
                i = self.catalog.index_of(alarm)
                if i is None:
                    reason = f"unknown alarm {alarm!r}"
                    refused.append(Refusal(alarm, reason, Code.NOT_FOUND))
                    rows_alarm.append(-1)
                    rows_prev.append(0)
                    rows_state.append(0)
                    rows_flags.append(0)
                    rows_outcome.append(1)
                    rows_detail.append(reason)
                    continue
                st = self.status(i)
                result: Status | Refused
                if not user.strip():
                    result = Refused(f"{event.label}: a user is required")
                else:
                    reason_auth = self.authorize(user, event, self.catalog.info(i)) if self.authorize else None
                    result = Refused(reason_auth) if reason_auth else transition(
                        st, event, self.context(i), now_ns=now_ns, until_ns=until_ns, user=user, text=text)
                rows_alarm.append(i)
                rows_prev.append(int(st.state))
                if isinstance(result, Refused):
                    refused.append(Refusal(alarm, result.reason))
                    rows_state.append(int(st.state))
                    rows_flags.append(int(st.flags))
                    rows_outcome.append(1)
                    rows_detail.append(result.reason if not text else f"{result.reason} ({text})")
                    continue
                self._set_status(i, result, now_ns)
                if event is Event.REMOVE_FROM_SERVICE:
                    self.work_orders[i] = text
                elif event is Event.RETURN_TO_SERVICE:
                    self.work_orders.pop(i, None)
                done.append(alarm)
                rows_state.append(int(result.state))
                rows_flags.append(int(result.flags))
                rows_outcome.append(0)
                rows_detail.append(text or None)
            if not user.strip():
                user_text: str | None = None
            else:
                user_text = user
            if rows_alarm:
                g = np.array(rows_alarm, dtype=np.int64)
                safe = np.maximum(g, 0)
                anchor = self.catalog.anchor[safe] if self.n else np.zeros(g.size, dtype=np.int64)
                value = np.where(g >= 0, self.db.values[anchor], np.nan) if self.n else np.full(g.size, np.nan)
                quality = np.where(g >= 0, self.db.qualities[anchor], 0).astype(np.uint8) if self.n else \
                    np.zeros(g.size, dtype=np.uint8)
                until = np.full(g.size, until_ns if event is Event.SHELVE else 0, dtype=np.int64)
                tr = Transitions(g, np.full(g.size, int(event), dtype=np.uint8), np.array(rows_prev, dtype=np.uint8),
                                 np.array(rows_state, dtype=np.uint8), np.array(rows_flags, dtype=np.uint8),
                                 value.astype(np.float64), quality, np.full(g.size, now_ns, dtype=np.int64),
                                 np.array(rows_outcome, dtype=np.uint8), user=user_text, comment=comment or None,
                                 detail=rows_detail, until_ns=until)
                self._emit(tr, now_ns)
            return ActionResult(event, done, refused)

    def acknowledge(self, alarm_ids: Iterable[str], user: str, now_ns: int, comment: str | None = None
                    ) -> ActionResult:
        """Acknowledge one alarm or a selection."""
        return self._act(Event.ACKNOWLEDGE, alarm_ids, user, now_ns, comment=comment)

    def acknowledge_area(self, area: str, user: str, now_ns: int, comment: str | None = None,
                         service: str | None = None) -> ActionResult:
        """Acknowledge every unacknowledged, visible alarm of an area (optionally one service)."""
        with self._lock:
            mask = self._visible() & ((self.state == AlarmState.UNACK) | (self.state == AlarmState.RTN_UNACK))
            if area not in self.catalog.areas:
                return ActionResult(Event.ACKNOWLEDGE, [], [Refusal("", f"unknown area {area!r}", Code.NOT_FOUND)])
            mask &= self.catalog.area == self.catalog.areas.index(area)
            if service is not None:
                if service not in self.catalog.services:
                    return ActionResult(Event.ACKNOWLEDGE, [], [Refusal("", f"unknown service {service!r}",
                                                                       Code.NOT_FOUND)])
                mask &= self.catalog.service == self.catalog.services.index(service)
            ids = [self.catalog.alarm_id(int(i)) for i in np.flatnonzero(mask)]
            if not ids:
                return ActionResult(Event.ACKNOWLEDGE, [], [Refusal("", f"nothing to acknowledge in area {area!r}")])
            return self._act(Event.ACKNOWLEDGE, ids, user, now_ns, comment=comment)

    def shelve(self, alarm_ids: Iterable[str], user: str, now_ns: int, *, reason: str,
               duration_s: float | None = None, comment: str | None = None) -> ActionResult:
        """Timed shelving for ``duration_s`` (≤ the maximum), or one-shot when ``duration_s`` is None."""
        if duration_s is None:
            return self._act(Event.SHELVE_ONE_SHOT, alarm_ids, user, now_ns, text=reason, comment=comment)
        return self._act(Event.SHELVE, alarm_ids, user, now_ns, text=reason,
                         until_ns=now_ns + round(duration_s * NS_PER_S), comment=comment)

    def unshelve(self, alarm_ids: Iterable[str], user: str, now_ns: int, comment: str | None = None) -> ActionResult:
        return self._act(Event.UNSHELVE, alarm_ids, user, now_ns, comment=comment)

    def suppress(self, alarm_ids: Iterable[str], user: str, now_ns: int, *, reason: str,
                 comment: str | None = None) -> ActionResult:
        return self._act(Event.SUPPRESS, alarm_ids, user, now_ns, text=reason, comment=comment)

    def unsuppress(self, alarm_ids: Iterable[str], user: str, now_ns: int, comment: str | None = None
                   ) -> ActionResult:
        return self._act(Event.UNSUPPRESS, alarm_ids, user, now_ns, comment=comment)

    def remove_from_service(self, alarm_ids: Iterable[str], user: str, now_ns: int, *, work_order: str,
                            comment: str | None = None) -> ActionResult:
        return self._act(Event.REMOVE_FROM_SERVICE, alarm_ids, user, now_ns, text=work_order, comment=comment)

    def return_to_service(self, alarm_ids: Iterable[str], user: str, now_ns: int, comment: str | None = None
                          ) -> ActionResult:
        return self._act(Event.RETURN_TO_SERVICE, alarm_ids, user, now_ns, comment=comment)

    def reset(self, alarm_ids: Iterable[str], user: str, now_ns: int, comment: str | None = None) -> ActionResult:
        """Reset latched alarms whose condition has returned."""
        return self._act(Event.RESET, alarm_ids, user, now_ns, comment=comment)

    # ------------------------------------------------------------------ views
    def _visible(self) -> B:
        hidden = (self.shelving != Shelving.NONE) | self.sup_design | self.sup_operator | self.out_of_service
        return np.asarray((self.state != AlarmState.NORMAL) & (self.catalog.priority < DIAGNOSTIC) & ~hidden,
                          dtype=bool)

    def view(self, alarm: str | int) -> AlarmView:
        """One alarm as the operator sees it (by id or index); KeyError if unknown."""
        with self._lock:
            i = self.catalog.index_of(alarm) if isinstance(alarm, str) else alarm
            if i is None:
                raise KeyError(f"unknown alarm {alarm!r}")
            return self.views(np.array([i], dtype=np.int64))[0]

    def views(self, indices: I64 | list[int], lang: str | None = None) -> list[AlarmView]:
        """Many alarms at once (one description pass): what a console list or a push needs; messages in
        ``lang`` (default: the site's)."""
        with self._lock:
            idx = np.asarray(indices, dtype=np.int64)
            infos = self.catalog.infos(idx, lang)
            flags = self._flags(idx).tolist()
            out: list[AlarmView] = []
            for k, (i, info) in enumerate(zip(idx.tolist(), infos, strict=True)):
                anchor = int(self.catalog.anchor[i])
                if self.db.is_string[anchor]:
                    raw: float | str | None = self.db.strings.get(anchor)
                else:
                    v = float(self.value_at[i])
                    raw = v if not math.isnan(v) else float(self.db.values[anchor])
                text = format_value(raw, info.dtype, info.enum)
                q = Quality(int(self.db.qualities[anchor])).label
                out.append(AlarmView(info.alarm, info.rule, info.equipment, info.commune, info.area, info.service,
                                     info.tag, info.priority, AlarmState(int(self.state[i])), Flag.labels(flags[k]),
                                     # in a language asked for, {value} reads for people (1 234,5; oui)
                                     render_live(info.message, raw, text if lang is None else
                                                 for_people(raw, info.dtype, "", info.enum, lang), q),
                                     text, int(self.active_since[i]),
                                     int(self.changed_ns[i]), int(self.shelved_until[i]), self.work_orders.get(i)))
            return out

    def _select(self, area: str | None, service: str | None, equipment: str | None, include_hidden: bool,
                include_normal: bool = False) -> I64:
        cat = self.catalog
        if include_hidden:  # not normal, or normal but shelved / suppressed by an operator / out of service
            operator_flags = (self.shelving != Shelving.NONE) | self.sup_operator | self.out_of_service
            mask = np.ones(self.n, dtype=bool) if include_normal else (self.state != AlarmState.NORMAL) | operator_flags
        else:
            mask = self._visible()
        for name, values, col in (("area", area, cat.area), ("service", service, cat.service),
                                  ("equipment", equipment, cat.equipment)):
            if values is None:
                continue
            table = cat.areas if name == "area" else cat.services if name == "service" else cat.equipment_ids
            if values not in table:
                return np.zeros(0, dtype=np.int64)
            mask &= col == table.index(values)
        idx = np.flatnonzero(mask)
        # priority 1 first, then newest first
        order = np.lexsort((-self.changed_ns[idx], cat.priority[idx]))
        return idx[order]

    def alarm_list(self, *, area: str | None = None, service: str | None = None, equipment: str | None = None,
                   include_hidden: bool = False, limit: int = 200, offset: int = 0) -> tuple[int, list[AlarmView]]:
        """(total, one page) of the operator's list: priority 1 on top, then newest first."""
        with self._lock:
            idx = self._select(area, service, equipment, include_hidden)
            return int(idx.size), self.views(idx[offset:offset + limit])

    def not_normal(self, *, diagnostic: bool = False, area: str | None = None,
                   priorities: Sequence[int] | None = None, service: str | None = None,
                   equipment: str | None = None, states: Sequence[str] | None = None,
                   limit: int = 20_000, lang: str | None = None) -> tuple[int, list[AlarmView]]:
        """Every alarm not in normal state matching the filters, as (total, the first ``limit`` views in
        ``lang``).

        Filtered on the columns before any view is built. Order: the annunciated ones (priority 1 on top,
        then newest), then the hidden ones (shelved, suppressed, out of service) and — with ``diagnostic``
        or priority 5 asked for — the diagnostic ones, never annunciated, in catalogue order. ``area``
        compares slugs (``saint-apollinaire`` finds "Saint-Apollinaire"); ``priorities`` are 1..4, 5 =
        diagnostic; ``states`` are labels (``unack``, ``acked``, ``rtn_unack``...). An unknown area,
        service, equipment or state label matches nothing.
        """
        cat = self.catalog
        with self._lock:
            hidden = (self.shelving != Shelving.NONE) | self.sup_design | self.sup_operator | self.out_of_service
            raised = self.state != AlarmState.NORMAL
            diag = cat.priority >= DIAGNOSTIC
            listed = raised & (~diag | (diagnostic or (priorities is not None and DIAGNOSTIC in priorities)))
            keep = np.ones(self.n, dtype=bool)
            if area is not None:
                codes = [k for k, a in enumerate(cat.areas) if slug(a) == slug(area)]
                keep &= np.isin(cat.area, codes)
            for values, col, table in ((service, cat.service, cat.services),
                                       (equipment, cat.equipment, cat.equipment_ids)):
                if values is not None:
                    keep &= (col == table.index(values)) if values in table else False
            if priorities is not None:
                wanted = [p for p in priorities if 1 <= p < DIAGNOSTIC]
                keep &= np.isin(cat.priority, wanted) | (diag if DIAGNOSTIC in priorities else False)
            if states is not None:
                codes = []
                for label in states:
                    try:
                        codes.append(int(AlarmState.parse(label)))
                    except (KeyError, ValueError):
                        continue  # an unknown label matches nothing
                keep &= np.isin(self.state, codes)
            shown = listed & keep & ~hidden & ~diag
            first = np.flatnonzero(shown)
            first = first[np.lexsort((-self.changed_ns[first], cat.priority[first]))]  # priority 1, then newest
            rest = np.flatnonzero(listed & keep & ~shown)
            total = int(first.size + rest.size)
            page = np.concatenate([first, rest])[:max(0, limit)]
            return total, self.views(page, lang)

    def grouped(self, by: str = "equipment", *, area: str | None = None, service: str | None = None,
                include_hidden: bool = False, min_priority: int = 1, limit: int = 200) -> list[AlarmGroup]:
        """Visible alarms grouped by ``equipment`` (alias ``cabinet``), ``rule``, ``area`` or ``service``."""
        cat = self.catalog
        cols = {"equipment": (cat.equipment, cat.equipment_ids), "cabinet": (cat.equipment, cat.equipment_ids),
                "rule": (cat.group.astype(np.int32), [r.spec.name for r in cat.rules]),
                "area": (cat.area, cat.areas), "service": (cat.service, cat.services)}
        if by not in cols:
            raise ValueError(f"group by must be one of {', '.join(cols)}, got {by!r}")
        col, names = cols[by]
        with self._lock:
            idx = self._select(area, service, None, include_hidden)
            idx = idx[cat.priority[idx] >= min_priority]
            if not idx.size:
                return []
            keys = col[idx]
            order = np.argsort(keys, kind="stable")  # keeps priority/newest order inside a group
            idx, keys = idx[order], keys[order]
            cuts = np.flatnonzero(np.diff(keys)) + 1
            groups: list[AlarmGroup] = []
            for part in np.split(idx, cuts):
                unacked = int(np.isin(self.state[part], (AlarmState.UNACK, AlarmState.RTN_UNACK)).sum())
                groups.append(AlarmGroup(by, names[int(col[part[0]])], int(part.size), unacked,
                                         int(cat.priority[part].min()), int(self.changed_ns[part].max()),
                                         [cat.alarm_id(int(i)) for i in part[:20]]))
            groups.sort(key=lambda gr: (gr.top_priority, -gr.count, -gr.newest_ns))
            return groups[:limit]

    def console(self, *, area: str | None = None, service: str | None = None, group_by: str = "equipment",
                grouped: bool | None = None, limit: int = 200, lang: str | None = None) -> ConsoleView:
        """The console's list: priority 1 individually on top; the rest grouped during a flood
        (``grouped=None``) or as asked; messages in ``lang``."""
        with self._lock:
            floods = self.flood_areas()
            flood = bool(floods) if area is None else area in floods
            do_group = flood if grouped is None else grouped
            idx = self._select(area, service, None, False)
            crit = idx[self.catalog.priority[idx] == 1]
            critical = self.views(crit[:limit], lang)
            if do_group:
                groups = self.grouped(group_by, area=area, service=service, min_priority=2, limit=limit)
                return ConsoleView(flood, floods, critical, [], groups, int(idx.size))
            rest = idx[self.catalog.priority[idx] != 1]
            return ConsoleView(flood, floods, critical, self.views(rest[:limit], lang), [], int(idx.size))

    def summary(self, area: str | None = None) -> Summary:
        """Counts for the alarm banner (shelved, suppressed and out-of-service always shown)."""
        with self._lock:
            mask = np.ones(self.n, dtype=bool)
            if area is not None:
                if area not in self.catalog.areas:
                    mask[:] = False
                else:
                    mask &= self.catalog.area == self.catalog.areas.index(area)
            vis = self._visible() & mask
            st = self.state
            pr = self.catalog.priority
            return Summary(
                unacked=int((vis & (st == AlarmState.UNACK)).sum()),
                acked=int((vis & (st == AlarmState.ACKED)).sum()),
                rtn_unacked=int((vis & (st == AlarmState.RTN_UNACK)).sum()),
                shelved=int(((self.shelving != Shelving.NONE) & mask).sum()),
                suppressed=int(((self.sup_design | self.sup_operator) & mask).sum()),
                out_of_service=int((self.out_of_service & mask).sum()),
                by_priority={p: int((vis & (pr == p)).sum()) for p in (1, 2, 3, 4)},
                flood_areas=self.flood_areas(),
            )

    def alarm_ids(self, rule: str | None = None, equipment: str | None = None) -> list[str]:
        """Ids of the configured alarms (of one rule and/or equipment)."""
        cat = self.catalog
        mask = np.ones(self.n, dtype=bool)
        if rule is not None:
            r = cat.rule_by_name.get(rule)
            if r is None:
                return []
            mask &= cat.group == r.group
        if equipment is not None:
            if equipment not in cat.equipment_ids:
                return []
            mask &= cat.equipment == cat.equipment_ids.index(equipment)
        return [cat.alarm_id(int(i)) for i in np.flatnonzero(mask)]


def make_engine(config: CityConfig, db: TagDatabase, journal: journal_mod.Journal | None = None, **kwargs: object
                ) -> tuple[AlarmEngine, Callable[[], None]]:
    """Build the engine and subscribe it to ``db``; returns (engine, unsubscribe)."""
    engine = AlarmEngine(config, db, journal, **kwargs)  # type: ignore[arg-type]
    return engine, engine.attach()


__all__ = [
    "ActionResult", "AlarmActionRefused", "AlarmEngine", "AlarmGroup", "AlarmView", "ConsoleView", "Refusal",
    "Summary", "Transitions", "make_engine",
]
