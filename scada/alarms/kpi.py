"""Alarm-system performance KPIs (ISA-18.2 §16 / EEMUA 191), computed from the journal.

One report covers one *console*: the whole journal, or the rows of some services/areas/communes. The
figures, with the targets of ``standards.md`` §2.3 (shown only with at least 30 days of data; with less
the report says "insufficient data" and makes no comparison)::

    annunciations              CONDITION_ON from an inactive state (normal or returned-unacked), priority
                               1..4, not shelved / suppressed / out of service at that moment
    per hour, per 10 min, /day average over the period           ≤ 6 / ≤ 1 / ≤ 150 acceptable,
                                                                 ≤ 12 / ≤ 2 / ≤ 300 manageable
    % 10-min windows in flood  fixed windows from the start, > 10 annunciations     < 1 %
    peak 10-min count          the most annunciations in any rolling 10 min         ≤ 10
    % time in flood            flood starts when a rolling 10 min holds > 10, ends below 5   < 1 %
    top-10 most frequent       alarms by annunciations, share of the total          ≤ 5 % together
    chattering                 alarms activated ≥ 3 times within 60 s               0
    fleeting                   activations cleared within 5 s (configurable) with no acknowledgement between  0
    stale                      alarms continuously active > 24 h: at the end, and the most at any day's end  < 5
    priority distribution      annunciations by priority vs 80 % low (4) / 15 % medium (3) / 5 % high (2),
                               critical (1) < 1 %
    shelving / suppression     shelve, one-shot shelve, suppress, out-of-service actions done; those without
                               a reason (expected 0); refused operator requests; shelved / suppressed /
                               out of service at the end of the period

Chattering and fleeting look at every activation of priority 1..4 (shelved or not: they measure the
alarm's design, not the operator's load). Diagnostic events (priority 5) never count.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scada.alarms.states import DIAGNOSTIC, HIDDEN, AlarmState, Event, Flag
from scada.journal import Journal, JournalQuery, ms_to_iso

MIN_PER_10 = 600_000
HOUR = 3_600_000
DAY = 86_400_000
FLOOD_START = 10  # > 10 in 10 min
FLOOD_END = 5  # < 5 in 10 min
CHATTER_COUNT = 3
CHATTER_WINDOW = 60_000
STALE = DAY
MIN_DAYS = 30
PRIORITY_TARGET = {1: "< 1 %", 2: "~5 %", 3: "~15 %", 4: "~80 %"}
_INACTIVE = (int(AlarmState.NORMAL), int(AlarmState.RTN_UNACK))


@dataclass(frozen=True, slots=True)
class TopAlarm:
    alarm: str
    count: int
    share_pct: float


@dataclass(slots=True)
class KpiReport:
    start_ms: int
    end_ms: int
    days: float
    sufficient: bool
    annunciations: int
    per_hour: float
    per_10min: float
    per_day: float
    windows: int
    flood_windows: int
    flood_windows_pct: float
    peak_10min: int
    flood_time_pct: float
    floods: int
    top10: list[TopAlarm]
    top10_share_pct: float
    chattering: list[str]
    fleeting: int
    fleeting_alarms: list[str]
    stale_at_end: list[str]
    stale_max_daily: int
    by_priority: dict[int, int]
    priority_pct: dict[int, float]
    shelve_actions: int
    one_shot_actions: int
    suppress_actions: int
    out_of_service_actions: int
    without_reason: int
    refused_requests: int
    acknowledgements: int
    shelved_at_end: int
    suppressed_at_end: int
    out_of_service_at_end: int
    scope: str = "all alarms"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ text
    def format_text(self) -> str:
        """The report as ``scada alarms kpi`` prints it (stable: a golden file checks it)."""
        lines: list[str] = []
        w = lines.append
        w(f"Alarm KPIs (ISA-18.2 / EEMUA 191) — {self.scope}")
        w(f"period: {ms_to_iso(self.start_ms)} → {ms_to_iso(self.end_ms)} ({self.days:.2f} days)")
        if not self.sufficient:
            w(f"insufficient data: {self.days:.2f} days < {MIN_DAYS}; figures shown without target comparison")
        w("")

        def row(name: str, value: str, target: str = "", verdict: str = "") -> None:
            if not self.sufficient:  # no comparison with the targets on less than 30 days
                target = verdict = ""
            w(f"  {name:<38} {value:>12}   {target:<28} {verdict}".rstrip())

        w("Load")
        row("annunciations", str(self.annunciations))
        row("per hour (average)", f"{self.per_hour:.2f}", "≤ 6 acceptable, ≤ 12 max",
            _grade(self.per_hour, 6, 12))
        row("per 10 minutes (average)", f"{self.per_10min:.3f}", "≤ 1 acceptable, ≤ 2 max",
            _grade(self.per_10min, 1, 2))
        row("per day (average)", f"{self.per_day:.1f}", "≤ 150 acceptable, ≤ 300 max",
            _grade(self.per_day, 150, 300))
        row("10-minute windows in flood (> 10)", f"{self.flood_windows}/{self.windows}")
        row("  as % of windows", f"{self.flood_windows_pct:.2f} %", "< 1 %", _ok(self.flood_windows_pct < 1))
        row("peak count in any 10 minutes", str(self.peak_10min), "≤ 10", _ok(self.peak_10min <= 10))
        row("time in flood", f"{self.flood_time_pct:.2f} %", "< 1 %", _ok(self.flood_time_pct < 1))
        row("floods", str(self.floods))
        w("")
        w("Top 10 most frequent")
        for k, t in enumerate(self.top10, 1):
            w(f"  {k:>2}. {t.alarm:<60} {t.count:>6}  {t.share_pct:6.2f} %")
        row("top-10 share of annunciations", f"{self.top10_share_pct:.2f} %", "≤ 5 %",
            _ok(self.top10_share_pct <= 5))
        w("")
        w("Nuisance")
        row("chattering alarms (≥ 3 in 60 s)", str(len(self.chattering)), "0", _ok(not self.chattering))
        for a in self.chattering[:20]:
            w(f"      {a}")
        row("fleeting activations", str(self.fleeting), "0", _ok(self.fleeting == 0))
        row("  distinct fleeting alarms", str(len(self.fleeting_alarms)))
        row("stale alarms (active > 24 h) at end", str(len(self.stale_at_end)), "< 5", _ok(len(self.stale_at_end) < 5))
        for a in self.stale_at_end[:20]:
            w(f"      {a}")
        row("most stale alarms at any day's end", str(self.stale_max_daily), "< 5", _ok(self.stale_max_daily < 5))
        w("")
        w("Priority distribution (annunciated)")
        names = {1: "1 critical", 2: "2 high", 3: "3 medium", 4: "4 low"}
        for p in (1, 2, 3, 4):
            row(f"priority {names[p]}", f"{self.by_priority.get(p, 0)} ({self.priority_pct.get(p, 0.0):.1f} %)",
                f"target {PRIORITY_TARGET[p]}")
        w("")
        w("Shelving, suppression, out of service")
        row("shelve actions (timed)", str(self.shelve_actions))
        row("shelve actions (one-shot)", str(self.one_shot_actions))
        row("suppress actions", str(self.suppress_actions))
        row("out-of-service actions", str(self.out_of_service_actions))
        row("actions without a reason / work order", str(self.without_reason), "0", _ok(self.without_reason == 0))
        row("refused operator requests", str(self.refused_requests))
        row("acknowledgements", str(self.acknowledgements))
        row("shelved at end", str(self.shelved_at_end))
        row("suppressed at end", str(self.suppressed_at_end))
        row("out of service at end", str(self.out_of_service_at_end))
        for note in self.notes:
            w(f"note: {note}")
        return "\n".join(lines) + "\n"


def _grade(v: float, ok: float, most: float) -> str:
    return "acceptable" if v <= ok else "manageable" if v <= most else "OVER"


def _ok(good: bool) -> str:
    return "ok" if good else "OVER"


def compute_kpis(journal: Journal, start_ms: int | None = None, end_ms: int | None = None, *,
                 query: JournalQuery | None = None, fleeting_s: float = 5.0, scope: str = "all alarms"
                 ) -> KpiReport:
    """The KPI report over [start_ms, end_ms) (default: the journal's whole span) for the rows ``query`` selects."""
    span = journal.time_span()
    if start_ms is None:
        start_ms = span[0] if span else 0
    if end_ms is None:
        end_ms = span[1] + 1 if span else start_ms + 1
    rows = journal.rows_for_kpi(start_ms, end_ms, query)
    carried = journal.active_at(start_ms, query) if span and start_ms > span[0] else {}
    return kpis_from_rows(rows, start_ms, end_ms, fleeting_s=fleeting_s, scope=scope, active_at_start=carried)


def kpis_from_rows(rows: list[tuple[Any, ...]], start_ms: int, end_ms: int, *, fleeting_s: float = 5.0,
                   scope: str = "all alarms", active_at_start: dict[str, int] | None = None) -> KpiReport:
    """Rows: (id, ts_ms, event, outcome, state, prev_state, flags, alarm, priority, detail, comment), by time.

    ``active_at_start``: alarms already active when the period starts → since when (for the stale count).
    """
    period = max(end_ms - start_ms, 1)
    days = period / DAY
    ann_ts: list[int] = []
    ann_alarm: list[str] = []
    ann_prio: list[int] = []
    act_by_alarm: dict[str, list[int]] = defaultdict(list)  # activations (priority 1..4, any flags)
    fleeting = 0
    fleeting_alarms: set[str] = set()
    pending_on: dict[str, tuple[int, bool]] = {}  # alarm → (activation ts, acknowledged since)
    active_since: dict[str, int] = dict(active_at_start or {})
    intervals: list[tuple[str, int, int | None]] = []  # active intervals (alarm, from, to; None: still active)
    last_flags: dict[str, int] = {}
    counts: Counter[str] = Counter()
    without_reason = 0
    refused = 0
    acks = 0
    fleeting_ms = fleeting_s * 1000
    on_code, off_code, ack_code = int(Event.CONDITION_ON), int(Event.CONDITION_OFF), int(Event.ACKNOWLEDGE)
    counted = {int(e): e.name for e in (Event.SHELVE, Event.SHELVE_ONE_SHOT, Event.SUPPRESS, Event.REMOVE_FROM_SERVICE)}
    hidden = int(HIDDEN)
    inactive = frozenset(_INACTIVE)
    for _id, ts, ev, outcome, state, prev, flags, alarm, priority, detail, _comment in rows:
        if outcome:
            refused += 1
            continue
        if alarm is None:
            continue
        prio = DIAGNOSTIC if priority is None else priority
        last_flags[alarm] = flags
        was_active = prev not in inactive
        is_active = state not in inactive
        if not was_active and is_active:
            active_since[alarm] = ts
        elif was_active and not is_active and alarm in active_since:
            intervals.append((alarm, active_since.pop(alarm), ts))
        if ev == on_code and not was_active and prio < DIAGNOSTIC:
            act_by_alarm[alarm].append(ts)
            pending_on[alarm] = (ts, False)
            if not flags & hidden:
                ann_ts.append(ts)
                ann_alarm.append(alarm)
                ann_prio.append(prio)
        elif ev == off_code and alarm in pending_on:
            on_ts, acked = pending_on.pop(alarm)
            if not acked and ts - on_ts < fleeting_ms:
                fleeting += 1
                fleeting_alarms.add(alarm)
        elif ev == ack_code:
            acks += 1
            if alarm in pending_on:
                pending_on[alarm] = (pending_on[alarm][0], True)
        name = counted.get(ev)
        if name is not None:
            counts[name] += 1
            if not (detail or "").strip():
                without_reason += 1
    for alarm, since in active_since.items():
        intervals.append((alarm, since, None))  # still active at the end
    n = len(ann_ts)
    ts_arr = np.array(ann_ts, dtype=np.int64)
    order = np.argsort(ts_arr, kind="stable")
    ts_arr = ts_arr[order]
    # fixed 10-minute windows
    windows = max(1, math.ceil(period / MIN_PER_10))
    per_window = np.bincount((ts_arr - start_ms) // MIN_PER_10, minlength=windows) if n else np.zeros(windows)
    flood_windows = int((per_window > FLOOD_START).sum())
    # rolling window: annunciations in [t, t + 10 min) for each annunciation time t
    peak = int((np.searchsorted(ts_arr, ts_arr + MIN_PER_10, side="left") - np.arange(n)).max()) if n else 0
    flood_ms, floods = _flood_time(ts_arr.tolist(), start_ms, end_ms)
    # top 10
    freq = Counter(ann_alarm)
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    top10 = [TopAlarm(a, c, 100.0 * c / n) for a, c in top]
    top_share = 100.0 * sum(c for _, c in top) / n if n else 0.0
    # chattering
    chattering = sorted(a for a, ts in act_by_alarm.items()
                        if any(ts[i + CHATTER_COUNT - 1] - ts[i] < CHATTER_WINDOW
                               for i in range(len(ts) - CHATTER_COUNT + 1)))
    # stale
    stale_end = sorted({a for a, lo, hi in intervals if hi is None and end_ms - lo > STALE})
    stale_max = 0
    day_ends = [start_ms + k * DAY for k in range(1, int(period // DAY) + 1)]
    if not day_ends or day_ends[-1] != end_ms:
        day_ends.append(end_ms)
    names = {a: k for k, a in enumerate(dict.fromkeys(a for a, _, _ in intervals))}
    codes = np.array([names[a] for a, _, _ in intervals], dtype=np.int64)
    lows = np.array([lo for _, lo, _ in intervals], dtype=np.int64)
    highs = np.array([np.iinfo(np.int64).max if hi is None else hi for _, _, hi in intervals], dtype=np.int64)
    for d in day_ends:  # alarms continuously active for more than 24 h at the end of each day
        sel = (lows < d - STALE) & (highs > d)
        stale_max = max(stale_max, int(np.unique(codes[sel]).size))
    by_priority = {p: int(ann_prio.count(p)) for p in (1, 2, 3, 4)}
    priority_pct = {p: (100.0 * c / n if n else 0.0) for p, c in by_priority.items()}
    notes: list[str] = []
    return KpiReport(
        start_ms=start_ms, end_ms=end_ms, days=days, sufficient=days >= MIN_DAYS, annunciations=n,
        per_hour=n / (period / HOUR), per_10min=n / (period / MIN_PER_10), per_day=n / (period / DAY),
        windows=windows, flood_windows=flood_windows, flood_windows_pct=100.0 * flood_windows / windows,
        peak_10min=peak, flood_time_pct=100.0 * flood_ms / period, floods=floods, top10=top10,
        top10_share_pct=top_share, chattering=chattering, fleeting=fleeting, fleeting_alarms=sorted(fleeting_alarms),
        stale_at_end=stale_end, stale_max_daily=stale_max, by_priority=by_priority, priority_pct=priority_pct,
        shelve_actions=counts["SHELVE"], one_shot_actions=counts["SHELVE_ONE_SHOT"],
        suppress_actions=counts["SUPPRESS"], out_of_service_actions=counts["REMOVE_FROM_SERVICE"],
        without_reason=without_reason, refused_requests=refused, acknowledgements=acks,
        shelved_at_end=sum(1 for f in last_flags.values() if f & (Flag.SHELVED_TIMED | Flag.SHELVED_ONE_SHOT)),
        suppressed_at_end=sum(1 for f in last_flags.values()
                              if f & (Flag.SUPPRESSED_DESIGN | Flag.SUPPRESSED_OPERATOR)),
        out_of_service_at_end=sum(1 for f in last_flags.values() if f & Flag.OUT_OF_SERVICE),
        scope=scope, notes=notes,
    )


def _flood_time(ts: list[int], start_ms: int, end_ms: int) -> tuple[int, int]:
    """Total flood time (ms, within the period) and number of floods.

    Each annunciation at t is in the rolling window during [t, t + 10 min). A flood starts at the
    annunciation that brings the window above 10 and ends when a departure brings it below 5.
    Departures at the same instant as arrivals are processed first.
    """
    events = sorted([(t, 1) for t in ts] + [(t + MIN_PER_10, -1) for t in ts], key=lambda e: (e[0], e[1]))
    count = 0
    flood_from: int | None = None
    total = 0
    floods = 0
    for t, d in events:
        count += d
        if flood_from is None and d > 0 and count > FLOOD_START:
            flood_from = t
            floods += 1
        elif flood_from is not None and d < 0 and count < FLOOD_END:
            total += max(0, min(t, end_ms) - max(flood_from, start_ms))
            flood_from = None
    if flood_from is not None:
        total += max(0, end_ms - max(flood_from, start_ms))
    return total, floods
