"""Sunrise, sunset and solar elevation (NOAA solar calculator formulas); pure, the date is passed in.

Used by the lighting cabinets (astronomical clock) and the info panels (brightness follows daylight).
Accuracy is about a minute for mid latitudes, which is what a cabinet's astronomical clock offers.

    solar noon (UTC min) = 720 − 4·lon − EoT          EoT: equation of time (minutes)
    hour angle H         = acos( cos(z) / (cos φ · cos δ) − tan φ · tan δ )   z = 90.833° (refraction + disc)
    sunrise / sunset     = solar noon ∓ 4·H            δ: solar declination, φ: latitude

Each event is computed twice: first with the sun's position at noon, then again with the position at the
first estimate of the event (the declination moves by up to 0.4° a day near the equinoxes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

__all__ = ["DIJON_LAT", "DIJON_LON", "SunTimes", "solar_elevation", "sun_times"]

DIJON_LAT = 47.3220  # Dijon, place de la Libération
DIJON_LON = 5.0415
OFFICIAL_ZENITH = 90.833  # degrees: 34' refraction + 16' solar radius


@dataclass(frozen=True, slots=True)
class SunTimes:
    """Sunrise and sunset of one UTC day, as aware UTC datetimes (None during polar day or night)."""

    sunrise: datetime | None
    sunset: datetime | None


def _julian_century(when: datetime) -> float:
    jd = when.timestamp() / 86400.0 + 2440587.5
    return (jd - 2451545.0) / 36525.0


def _sun(t: float) -> tuple[float, float]:
    """Declination (degrees) and equation of time (minutes) at Julian century t."""
    l0 = (280.46646 + t * (36000.76983 + t * 0.0003032)) % 360.0
    m = 357.52911 + t * (35999.05029 - 0.0001537 * t)
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    mr = math.radians(m)
    c = (
        math.sin(mr) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * mr) * (0.019993 - 0.000101 * t)
        + math.sin(3 * mr) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    app_long = math.radians(l0 + c - 0.00569 - 0.00478 * math.sin(omega))
    eps0 = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    eps = math.radians(eps0 + 0.00256 * math.cos(omega))
    decl = math.degrees(math.asin(math.sin(eps) * math.sin(app_long)))
    y = math.tan(eps / 2) ** 2
    l0r = math.radians(l0)
    eot = 4.0 * math.degrees(
        y * math.sin(2 * l0r)
        - 2 * e * math.sin(mr)
        + 4 * e * y * math.sin(mr) * math.cos(2 * l0r)
        - 0.5 * y * y * math.sin(4 * l0r)
        - 1.25 * e * e * math.sin(2 * mr)
    )
    return decl, eot


def _event_minutes(
    midnight: datetime, minutes: float, lat: float, lon: float, zenith: float, rising: bool
) -> float | None:
    decl, eot = _sun(_julian_century(midnight + timedelta(minutes=minutes)))
    phi = math.radians(lat)
    d = math.radians(decl)
    cos_h = math.cos(math.radians(zenith)) / (math.cos(phi) * math.cos(d)) - math.tan(phi) * math.tan(d)
    if not -1.0 <= cos_h <= 1.0:
        return None
    h = math.degrees(math.acos(cos_h))
    noon = 720.0 - 4.0 * lon - eot
    return noon - 4.0 * h if rising else noon + 4.0 * h


@lru_cache(maxsize=16384)
def sun_times(day: date, lat: float = DIJON_LAT, lon: float = DIJON_LON, zenith: float = OFFICIAL_ZENITH) -> SunTimes:
    """Sunrise and sunset on UTC day ``day`` at (lat, lon) in degrees (east positive)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out: list[datetime | None] = []
    for rising in (True, False):
        minutes = _event_minutes(midnight, 720.0 - 4.0 * lon, lat, lon, zenith, rising)
        if minutes is not None:
            minutes = _event_minutes(midnight, minutes, lat, lon, zenith, rising)
        out.append(None if minutes is None else midnight + timedelta(minutes=minutes))
    return SunTimes(out[0], out[1])


def solar_elevation(when: datetime, lat: float = DIJON_LAT, lon: float = DIJON_LON) -> float:
    """Geometric elevation of the sun's centre above the horizon in degrees (no refraction)."""
    if when.tzinfo is None:
        raise ValueError("solar_elevation needs an aware datetime")
    utc = when.astimezone(UTC)
    decl, eot = _sun(_julian_century(utc))
    minutes = utc.hour * 60 + utc.minute + utc.second / 60.0 + utc.microsecond / 6e7
    true_solar = (minutes + eot + 4.0 * lon) % 1440.0
    hour_angle = true_solar / 4.0 - 180.0
    phi = math.radians(lat)
    d = math.radians(decl)
    cos_zen = math.sin(phi) * math.sin(d) + math.cos(phi) * math.cos(d) * math.cos(math.radians(hour_angle))
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zen))))
