"""Street-lighting energy report: kWh per commune per night against a baseline, saving in %.

A *night* ``D`` is the local window noon D → noon D+1 (Europe/Paris by default: the city's
timezone), so it holds the whole dark period whatever the season. Per lighting cabinet:

    kWh      = energy counter at the end − at the start (interpolated ``value_at``); a counter that
               went backwards (replaced meter) or has no data falls back to the time-weighted
               average of ``power`` × window hours
    hours on = time-weighted average of ``contactor_closed`` × window hours (else ``hours_per_night``)
    baseline = luminaires × ``watts_per_luminaire`` × hours on (the replaced installation at full
               power for the same hours), or an explicit kWh per commune per night
    saving   = 1 − kWh / baseline, in %; the métropole's contract target is 65 %
    coverage = hours of the window the cabinet was recorded (the spans between consecutive good samples
               of its energy counter, or of its power, no longer than ``MAX_GAP_S``) / window hours

A commune's coverage is the mean over its cabinets (one without data counts 0 h). Below
``MIN_COVERAGE`` (90 %) the row gives no verdict (``meets_target`` is None): a quarter of an hour of
data extrapolated to a whole night says nothing about the contract.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np

from historian.backend import Backend
from scada.config.model import CityConfig
from scada.quality import Quality

NS = 1_000_000_000
CONTRACT_TARGET_PERCENT = 65.0
#: the recorder stores an analogue tag at least every 15 min (its max interval) while it runs: a longer
#: silence between two samples is time the historian was not recording
MAX_GAP_S = 3600.0
MIN_COVERAGE = 0.9


@dataclass(frozen=True, slots=True)
class Baseline:
    watts_per_luminaire: float = 150.0  # high-pressure sodium before the LED renovation
    hours_per_night: float = 11.5  # when no contactor data tells how long the lights were on
    per_commune_kwh: Mapping[str, float] = field(default_factory=dict)  # explicit kWh per night


@dataclass(frozen=True, slots=True)
class NightRow:
    commune: str
    night: dt.date
    cabinets: int
    luminaires: int
    kwh: float
    baseline_kwh: float
    saving_percent: float
    meets_target: bool | None  # None: no verdict (coverage below MIN_COVERAGE, or no baseline)
    missing: int  # cabinets without usable data (not counted in kwh nor baseline)
    hours_of_data: float = 0.0  # mean over the commune's cabinets
    night_hours: float = 24.0  # the window's length (23 or 25 h on a DST change)

    @property
    def coverage(self) -> float:
        """Hours of data over the window's length, 0..1."""
        return self.hours_of_data / self.night_hours if self.night_hours > 0 else 0.0


def night_window(night: dt.date, tz: str) -> tuple[int, int]:
    zone = ZoneInfo(tz)
    a = dt.datetime.combine(night, dt.time(12), zone)
    b = dt.datetime.combine(night + dt.timedelta(days=1), dt.time(12), zone)
    return int(a.timestamp()) * NS, int(b.timestamp()) * NS


def hours_of_data(backend: Backend, tag: str, start: int, end: int, max_gap_s: float = MAX_GAP_S) -> float:
    """Hours of [start, end) during which ``tag`` was recorded: the spans between consecutive samples (the
    last one before ``start`` and the first one from ``end`` included) that start on a good value and
    last at most ``max_gap_s``."""
    parts = [backend.point_before(tag, start - 1), backend.raw(tag, start, end), backend.point_after(tag, end - 1)]
    ts = np.concatenate([p.ts for p in parts])
    if ts.size < 2:
        return 0.0
    value = np.concatenate([p.value for p in parts])
    good = (np.concatenate([p.quality for p in parts]) < Quality.BAD_COMM) & ~np.isnan(value)
    a, b = ts[:-1], ts[1:]
    keep = good[:-1] & (b - a <= max_gap_s * NS)
    covered = np.clip(np.minimum(b, end) - np.maximum(a, start), 0, None)
    return float(covered[keep].sum()) / NS / 3600


def cabinet_night(backend: Backend, prefix: str, start: int, end: int) -> tuple[float, float | None]:
    """(kWh, hours on or None) of one cabinet over [start, end); kWh NaN when unknown."""
    hours = (end - start) / NS / 3600
    kwh = math.nan
    e0 = backend.value_at(f"{prefix}/energy", start, step=False)
    e1 = backend.value_at(f"{prefix}/energy", end, step=False)
    if e0.before_ns is not None and e1.before_ns is not None and not e0.quality.is_bad and not e1.quality.is_bad:
        d = e1.value - e0.value
        if d >= 0:
            kwh = d
    if math.isnan(kwh):
        p = backend.aggregate(f"{prefix}/power", start, end, end - start, step=False)
        if len(p) and not math.isnan(p.twa[0]):
            kwh = p.twa[0] * hours / 1000
    on = backend.aggregate(f"{prefix}/contactor_closed", start, end, end - start, step=True)
    hours_on = float(on.twa[0]) * hours if len(on) and not math.isnan(on.twa[0]) else None
    return kwh, hours_on


def energy_report(config: CityConfig, backend: Backend, first_night: dt.date, nights: int = 1, *,
                  baseline: Baseline | None = None, target_percent: float = CONTRACT_TARGET_PERCENT,
                  kind: str = "lighting") -> list[NightRow]:
    baseline = baseline or Baseline()
    cabinets = [e for e in config.equipment.values() if e.kind == kind]
    rows: list[NightRow] = []
    for k in range(nights):
        night = first_night + dt.timedelta(days=k)
        start, end = night_window(night, config.timezone)
        per: dict[str, list[float]] = {}
        for eq in sorted(cabinets, key=lambda e: (e.commune, e.id)):
            # cabinets, luminaires, kwh, baseline kwh, missing, hours of data (summed over the cabinets)
            acc = per.setdefault(eq.commune, [0, 0, 0.0, 0.0, 0, 0.0])
            lum = int(eq.params.get("luminaires", 0) or 0)
            kwh, hours_on = cabinet_night(backend, eq.prefix, start, end)
            acc[5] += max(hours_of_data(backend, f"{eq.prefix}/energy", start, end),
                          hours_of_data(backend, f"{eq.prefix}/power", start, end))
            if math.isnan(kwh):
                acc[4] += 1
                continue
            acc[0] += 1
            acc[1] += lum
            acc[2] += kwh
            acc[3] += lum * baseline.watts_per_luminaire * (hours_on if hours_on is not None
                                                            else baseline.hours_per_night) / 1000
        night_hours = (end - start) / NS / 3600
        for commune, (n, n_lum, total_kwh, base_calc, missing, data_h) in sorted(per.items()):
            base = float(baseline.per_commune_kwh.get(commune, base_calc))
            saving = 100.0 * (1 - total_kwh / base) if base > 0 else math.nan
            hours = data_h / max(1, n + missing)
            verdict = (None if math.isnan(saving) or hours < MIN_COVERAGE * night_hours
                       else bool(saving >= target_percent))
            rows.append(NightRow(commune, night, int(n), int(n_lum), total_kwh, base, saving, verdict, int(missing),
                                 hours, night_hours))
    return rows
