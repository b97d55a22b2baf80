"""Maintenance KPIs from the work orders of a period (``scada workorders kpi``, GET /workorders/kpi).

The orders *created* in ``[start, end)`` are counted; each order carries the first time it reached each
stage (:mod:`scada.workorders.model`), so every figure is a difference of two of its times::

    time to acknowledge   created → first assigned (someone took it in hand)         per service and commune:
    time to dispatch      created → first en route (a crew left for it)               count, mean and median
    time to repair (MTTR) created → first done (the crew's repair), for done orders   minutes, and the 90th
                                                                                      percentile (nearest rank)
    backlog               orders still open at ``end`` (created before it, not closed or cancelled by it)
    SLA breaches          orders not done by their due time (done after it, or still not done at ``end``);
                          cancelled orders never count
    repeat failures       per equipment: orders beyond the first in the period, plus recurrences (a resolved
                          order that failed again)

A stage reached after ``end`` does not count (the report is what was known at ``end``). Pure: the orders
and the times are passed in.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scada.journal import ms_to_iso  # one formatting of UTC times for every report
from scada.workorders.model import Status, WorkOrder

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Durations:
    count: int
    mean_min: float | None
    median_min: float | None
    p90_min: float | None

    @classmethod
    def of(cls, values_ms: list[int]) -> Durations:
        if not values_ms:
            return cls(0, None, None, None)
        v = sorted(values_ms)
        n = len(v)
        median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
        p90 = v[max(0, math.ceil(0.9 * n) - 1)]
        return cls(n, round(sum(v) / n / MINUTE_MS, 2), round(median / MINUTE_MS, 2), round(p90 / MINUTE_MS, 2))

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean_min": self.mean_min, "median_min": self.median_min,
                "p90_min": self.p90_min}


@dataclass(frozen=True, slots=True)
class GroupKpi:
    service: str
    commune: str
    orders: int
    to_acknowledge: Durations
    to_dispatch: Durations
    to_repair: Durations
    backlog: int
    sla_breaches: int

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "commune": self.commune, "orders": self.orders,
                "to_acknowledge": self.to_acknowledge.as_dict(), "to_dispatch": self.to_dispatch.as_dict(),
                "to_repair": self.to_repair.as_dict(), "backlog": self.backlog, "sla_breaches": self.sla_breaches}


@dataclass(frozen=True, slots=True)
class KpiReport:
    start_ms: int
    end_ms: int
    total: GroupKpi  # service and commune "*"
    by_service: list[GroupKpi]
    by_commune: list[GroupKpi]
    by_service_commune: list[GroupKpi]
    repeat_failures: list[tuple[str, int]]  # (equipment, repeats), most first

    def as_dict(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, "total": self.total.as_dict(),
                "by_service": [g.as_dict() for g in self.by_service],
                "by_commune": [g.as_dict() for g in self.by_commune],
                "by_service_commune": [g.as_dict() for g in self.by_service_commune],
                "repeat_failures": [{"equipment": e, "repeats": n} for e, n in self.repeat_failures]}

    def format_text(self) -> str:
        def d(x: Durations) -> str:
            return "-" if x.count == 0 else f"{x.median_min:.0f} min (mean {x.mean_min:.0f}, p90 {x.p90_min:.0f})"

        lines = [f"Work-order KPIs, orders created {ms_to_iso(self.start_ms)} .. {ms_to_iso(self.end_ms)}", ""]
        head = f"{'service':<12} {'commune':<26} {'orders':>6} {'backlog':>7} {'SLA':>4}  ack / dispatch / repair"
        lines.append(head)
        for g in [self.total, *self.by_service, *self.by_service_commune]:
            lines.append(f"{g.service:<12} {g.commune:<26} {g.orders:>6} {g.backlog:>7} {g.sla_breaches:>4}  "
                         f"{d(g.to_acknowledge)} / {d(g.to_dispatch)} / {d(g.to_repair)}")
        lines.append("")
        lines.append("Repeat failures: " + (", ".join(f"{e} ({n})" for e, n in self.repeat_failures[:20]) or "none"))
        return "\n".join(lines) + "\n"


def _by(t: int | None, end_ms: int) -> int | None:
    return t if t is not None and t < end_ms else None


def _group(service: str, commune: str, orders: list[WorkOrder], end_ms: int) -> GroupKpi:
    ack, dispatch, repair = [], [], []
    backlog = breaches = 0
    for o in orders:
        if (t := _by(o.assigned_ms, end_ms)) is not None:
            ack.append(t - o.created_ms)
        if (t := _by(o.en_route_ms, end_ms)) is not None:
            dispatch.append(t - o.created_ms)
        done = _by(o.done_ms, end_ms)
        if done is not None:
            repair.append(done - o.created_ms)
        finished = _by(o.closed_ms, end_ms) is not None or (o.status is Status.CANCELLED and o.updated_ms < end_ms)
        if not finished:
            backlog += 1
        if o.status is not Status.CANCELLED and (done if done is not None else end_ms) > o.due_ms:
            breaches += 1
    return GroupKpi(service, commune, len(orders), Durations.of(ack), Durations.of(dispatch), Durations.of(repair),
                    backlog, breaches)


def compute(orders: Iterable[WorkOrder], start_ms: int, end_ms: int) -> KpiReport:
    """The report over the orders created in ``[start_ms, end_ms)`` (others are ignored)."""
    chosen = sorted((o for o in orders if start_ms <= o.created_ms < end_ms), key=lambda o: o.id)
    by_s: dict[str, list[WorkOrder]] = defaultdict(list)
    by_c: dict[str, list[WorkOrder]] = defaultdict(list)
    by_sc: dict[tuple[str, str], list[WorkOrder]] = defaultdict(list)
    per_eq: dict[str, int] = defaultdict(int)
    for o in chosen:
        by_s[o.service].append(o)
        by_c[o.commune].append(o)
        by_sc[(o.service, o.commune)].append(o)
        per_eq[o.equipment] += 1 + o.recurrences
    repeats = sorted(((e, n - 1) for e, n in per_eq.items() if n > 1), key=lambda x: (-x[1], x[0]))
    return KpiReport(start_ms, end_ms, _group("*", "*", chosen, end_ms),
                     [_group(s, "*", v, end_ms) for s, v in sorted(by_s.items())],
                     [_group("*", c, v, end_ms) for c, v in sorted(by_c.items())],
                     [_group(s, c, v, end_ms) for (s, c), v in sorted(by_sc.items())], repeats)
