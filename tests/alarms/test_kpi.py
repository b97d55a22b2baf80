"""KPI golden-file test: a synthetic 31-day journal whose every figure is known by construction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scada.alarms import AlarmInfo, AlarmState, Event, Flag
from scada.alarms.kpi import compute_kpis
from scada.journal import Journal, JournalEntry, JournalQuery, ms_to_iso

GOLDEN = Path(__file__).parent / "golden" / "kpi_report.txt"
START_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z
D = 86_400
N, U, A, R = AlarmState.NORMAL, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTN_UNACK


def _info(name: str, priority: int) -> AlarmInfo:
    eq = name.upper()
    return AlarmInfo(f"r_{name}:dijon/x/{eq}/v", f"r_{name}", "high", eq, "Dijon", "Dijon", "lighting",
                     f"dijon/x/{eq}/v", priority, False, f"{eq} alarm", "float", "", None, 1.0)


ALARMS = {n: _info(n, p) for n, p in [("a", 4), ("b", 3), ("c", 2), ("d", 1), ("e", 4), ("f", 5), ("h", 3),
                                       ("j", 3), ("l", 2), ("m", 3), ("n", 4)]}
ALARMS.update({f"k{i:02d}": _info(f"k{i:02d}", 4) for i in range(12)})

# (seconds from start, alarm, event, prev, state, flags, outcome, user, detail)
ROWS: list[tuple[float, str, Event, AlarmState, AlarmState, int, int, str | None, str | None]] = [
    (2 * D, "b", Event.CONDITION_ON, N, U, 0, 0, None, None),  # B: never clears → stale
    (2 * D + 60, "b", Event.ACKNOWLEDGE, U, A, 0, 0, "alice", None),
    (3 * D, "a", Event.CONDITION_ON, N, U, 0, 0, None, None),  # A: 3 activations in 40 s → chattering
    (3 * D + 10, "a", Event.CONDITION_OFF, U, R, 0, 0, None, None),
    (3 * D + 20, "a", Event.CONDITION_ON, R, U, 0, 0, None, None),
    (3 * D + 30, "a", Event.CONDITION_OFF, U, R, 0, 0, None, None),
    (3 * D + 40, "a", Event.CONDITION_ON, R, U, 0, 0, None, None),
    (3 * D + 50, "a", Event.CONDITION_OFF, U, R, 0, 0, None, None),
    (3 * D + 100, "a", Event.ACKNOWLEDGE, R, N, 0, 0, "alice", None),
    (4 * D, "h", Event.CONDITION_ON, N, U, 0, 0, None, None),  # H: fleeting (2 s, no ack)
    (4 * D + 2, "h", Event.CONDITION_OFF, U, R, 0, 0, None, None),
    (4 * D + 60, "h", Event.ACKNOWLEDGE, R, N, 0, 0, "bob", None),
    (4 * D + 3600, "h", Event.CONDITION_ON, N, U, 0, 0, None, None),  # acknowledged before it cleared: not fleeting
    (4 * D + 3601, "h", Event.ACKNOWLEDGE, U, A, 0, 0, "bob", None),
    (4 * D + 3603, "h", Event.CONDITION_OFF, A, N, 0, 0, None, None),
    (4 * D + 7200, "h", Event.CONDITION_ON, N, U, 0, 0, None, None),  # 10 s: not fleeting
    (4 * D + 7210, "h", Event.CONDITION_OFF, U, R, 0, 0, None, None),
    (4 * D + 7300, "h", Event.ACKNOWLEDGE, R, N, 0, 0, "bob", None),
    (5 * D, "c", Event.CONDITION_ON, N, U, 0, 0, None, None),  # C: active 2.5 days → stale at day 7's end
    (5 * D + 30, "c", Event.ACKNOWLEDGE, U, A, 0, 0, "alice", None),
    (7.5 * D, "c", Event.CONDITION_OFF, A, N, 0, 0, None, None),
    (8 * D, "e", Event.SHELVE, N, N, Flag.SHELVED_TIMED, 0, "bob", "nuisance"),  # E: shelved, activates hidden
    (8 * D + 100, "e", Event.CONDITION_ON, N, U, Flag.SHELVED_TIMED, 0, None, None),
    (9 * D, "f", Event.CONDITION_ON, N, U, 0, 0, None, None),  # F: diagnostic, never counts
    (9 * D + 1, "f", Event.CONDITION_OFF, U, R, 0, 0, None, None),
    *[(10 * D + 43_200 + 10 * i, f"k{i:02d}", Event.CONDITION_ON, N, U, 0, 0, None, None) for i in range(12)],
    *[(10 * D + 46_800 + 10 * i, f"k{i:02d}", Event.CONDITION_OFF, U, R, 0, 0, None, None) for i in range(12)],
    (11 * D, "j", Event.SHELVE, N, N, Flag.SHELVED_TIMED, 0, "mallory", None),  # shelved without a reason
    (11 * D + 60, "j", Event.UNSHELVE, N, N, 0, 0, "mallory", None),
    (12 * D, "l", Event.CONDITION_ON, N, U, 0, 0, None, None),
    (12 * D + 10, "l", Event.SHELVE_ONE_SHOT, U, U, Flag.SHELVED_ONE_SHOT, 0, "alice", "known"),
    (12 * D + 100, "l", Event.CONDITION_OFF, U, R, 0, 0, None, None),  # the one-shot shelving ends
    (12 * D + 200, "l", Event.ACKNOWLEDGE, R, N, 0, 0, "alice", None),
    (13 * D, "m", Event.SUPPRESS, N, N, Flag.SUPPRESSED_OPERATOR, 0, "alice", "works on site"),
    (14 * D, "n", Event.REMOVE_FROM_SERVICE, N, N, Flag.OUT_OF_SERVICE, 0, "maint", "WO-7"),
    (15 * D, "b", Event.ACKNOWLEDGE, A, A, 0, 1, "carol", "already acknowledged"),
    (20 * D, "d", Event.CONDITION_ON, N, U, 0, 0, None, None),
    (20 * D + 10, "d", Event.ACKNOWLEDGE, U, A, 0, 0, "alice", None),
    (20 * D + 20, "d", Event.SHELVE, A, A, 0, 1, "bob", "priority-1 (critical) alarms cannot be shelved"),
    (20 * D + 600, "d", Event.CONDITION_OFF, A, N, 0, 0, None, None),
]


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    j = Journal(tmp_path_factory.mktemp("kpi") / "journal.sqlite")
    j.append([JournalEntry(int((START_MS + s * 1000) * 1_000_000), ev, ALARMS[a], st, prev, int(flags), outcome=out,
                           user=user, detail=detail)
              for s, a, ev, prev, st, flags, out, user, detail in sorted(ROWS, key=lambda r: r[0])])
    return j


def report(journal: Journal, days: int = 31, **kw: object):  # type: ignore[no-untyped-def]
    return compute_kpis(journal, START_MS, START_MS + days * D * 1000, **kw)  # type: ignore[arg-type]


def test_every_figure(journal: Journal) -> None:
    r = report(journal)
    assert r.sufficient and r.days == 31
    assert r.annunciations == 22  # B1 + C1 + A3 + H3 + D1 + K12 + L1 (E shelved, F diagnostic)
    assert r.per_hour == 22 / 744 and r.per_10min == 22 / 4464 and r.per_day == 22 / 31
    assert (r.windows, r.flood_windows) == (4464, 1)
    assert r.flood_windows_pct == 100 / 4464
    assert r.peak_10min == 12
    assert r.floods == 1 and r.flood_time_pct == 100 * 570 / (31 * D)  # from the 11th K (t+100 s) to t+670 s
    assert [(t.alarm, t.count) for t in r.top10[:2]] == [("r_a:dijon/x/A/v", 3), ("r_h:dijon/x/H/v", 3)]
    assert [t.count for t in r.top10] == [3, 3, 1, 1, 1, 1, 1, 1, 1, 1] and r.top10_share_pct == 100 * 14 / 22
    assert r.chattering == ["r_a:dijon/x/A/v"]
    assert r.fleeting == 1 and r.fleeting_alarms == ["r_h:dijon/x/H/v"]
    assert r.stale_at_end == ["r_b:dijon/x/B/v", "r_e:dijon/x/E/v"] and r.stale_max_daily == 2
    assert r.by_priority == {1: 1, 2: 2, 3: 4, 4: 15}
    assert r.priority_pct[4] == 100 * 15 / 22
    assert (r.shelve_actions, r.one_shot_actions, r.suppress_actions, r.out_of_service_actions) == (2, 1, 1, 1)
    assert r.without_reason == 1 and r.refused_requests == 2 and r.acknowledgements == 8
    assert (r.shelved_at_end, r.suppressed_at_end, r.out_of_service_at_end) == (1, 1, 1)


def test_golden_report(journal: Journal) -> None:
    text = report(journal).format_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_insufficient_data_makes_no_comparison(journal: Journal) -> None:
    r = report(journal, days=10)
    assert not r.sufficient
    text = r.format_text()
    assert "insufficient data: 10.00 days < 30" in text
    for word in (" ok", "OVER", "acceptable", "manageable", "target <", "target ~", "≤"):
        assert word not in text


def test_scope_and_carry_in(journal: Journal) -> None:
    # one console: priority ≥ 3 only (e.g. a maintenance console)
    r = compute_kpis(journal, START_MS, START_MS + 31 * D * 1000, query=JournalQuery(priority=[3, 4]))
    assert r.by_priority == {1: 0, 2: 0, 3: 4, 4: 15}
    # a period starting after B became active still knows B has been active since day 2 (stale)
    r = compute_kpis(journal, START_MS + 25 * D * 1000, START_MS + 31 * D * 1000)
    assert "r_b:dijon/x/B/v" in r.stale_at_end and r.annunciations == 0
    assert ms_to_iso(START_MS) == "2027-01-01T00:00:00.000Z"
