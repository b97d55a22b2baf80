"""scada.format: values and times for people, exact strings in French and English."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scada import format as fmt

NNBSP, NBSP = "\u202f", "\u00a0"  # French groups thousands with U+202F (CLDR); a unit is held to its number
# 2026-12-07T08:15:03Z: winter, Paris is UTC+1
WINTER_NS = 1_796_631_303_000_000_000


@pytest.mark.parametrize(("value", "lang", "decimals", "expected"), [
    (1234.5, "fr", None, f"1{NNBSP}234,5"),
    (1234.5, "en", None, "1,234.5"),
    (1_000_000, "fr", None, f"1{NNBSP}000{NNBSP}000"),
    (3.14159, "fr", 1, "3,1"),
    (3.14159, "en", 2, "3.14"),
    (2.0, "fr", None, "2"),
    (-0.001, "fr", 0, "0"),
    (None, "fr", None, "?"),
    (float("nan"), "en", None, "?"),
])
def test_numbers_follow_the_language(value: float | None, lang: str, decimals: int | None, expected: str) -> None:
    assert fmt.number(value, lang, decimals) == expected


@pytest.mark.parametrize(("seconds", "fr", "en"), [
    (45, "45 s", "45 s"),
    (2.5, "2,5 s", "2.5 s"),
    (725, "12 min", "12 min"),
    (719.9, "11 min", "11 min"),  # truncated like a clock, never rounded up
    (7500, "2 h 05", "2 h 05"),
    (2 * 86400 + 4 * 3600 + 5, "2 j 04 h", "2 d 04 h"),
    (-90, "-1 min", "-1 min"),
    (None, "?", "?"),
])
def test_durations(seconds: float | None, fr: str, en: str) -> None:
    assert (fmt.duration(seconds, "fr"), fmt.duration(seconds, "en")) == (fr, en)


@pytest.mark.parametrize(("n", "fr", "en"), [
    (512, f"512{NBSP}o", f"512{NBSP}B"),
    (12_345, f"12,3{NBSP}ko", f"12.3{NBSP}kB"),
    (1_234_567, f"1,23{NBSP}Mo", f"1.23{NBSP}MB"),
    (987_654_321, f"988{NBSP}Mo", f"988{NBSP}MB"),
    (5e12, f"5{NBSP}To", f"5{NBSP}TB"),
])
def test_sizes_in_bytes(n: float, fr: str, en: str) -> None:
    assert (fmt.size(n, "fr"), fmt.size(n, "en")) == (fr, en)


def test_rates_booleans_and_units() -> None:
    assert fmt.rate(12_500_000, "fr") == f"12,5{NBSP}Mbit/s"
    assert fmt.rate(950, "en") == f"950{NBSP}bit/s"
    assert (fmt.boolean(True, "fr"), fmt.boolean(False, "fr"), fmt.boolean(True, "en"), fmt.boolean(None, "en")) == \
        ("oui", "non", "yes", "?")
    assert fmt.quantity(81.5, "%", "fr") == f"81,5{NNBSP}%"
    assert fmt.quantity(81.5, "%", "en") == "81.5%"
    assert fmt.quantity(1200, "W", "fr") == f"1{NNBSP}200{NBSP}W"
    assert fmt.quantity(1200, "W", "en") == f"1,200{NBSP}W"
    # a camera's uptime in centiseconds, traffic in bytes, a lease in seconds: read as people say them
    assert fmt.quantity(2_763_000, "cs", "fr") == "7 h 40"
    assert fmt.quantity(3_456_789, "bytes", "fr") == f"3,46{NBSP}Mo"
    assert fmt.quantity(3_600, "s", "en") == "1 h 00"
    assert fmt.quantity(8_000, "bit/s", "en") == f"8{NBSP}kbit/s"
    assert fmt.quantity(12.25, "", "fr") == "12,25"


def test_tag_values_use_enum_labels_and_words() -> None:
    enum = {0: "not_flash", 5: "fault_monitor"}
    # the label catalogue (msgctxt "enum", extracted from tags.yaml): translated, and as written in English
    assert fmt.value(5, "enum", "", enum, "fr") == "moniteur de défauts"
    assert fmt.value(5, "enum", "", enum, "en") == "fault monitor"
    assert fmt.value(0, "enum", "", {0: "no_such_label_anywhere"}, "fr") == "no such label anywhere"
    assert fmt.value(7, "enum", "", enum, "fr") == "7"  # a code without label reads as the code, never blank
    assert fmt.value(1, "bool", "", None, "fr") == "oui"
    assert fmt.value(0, "bool", "", None, "en") == "no"
    assert fmt.value(0, "bool", "", {0: "closed", 1: "open"}, "en") == "closed"
    assert fmt.value(720.0, "float", "W", None, "fr") == f"720{NBSP}W"
    assert fmt.value("Marché de Noël", "string", "", None, "fr") == "Marché de Noël"
    assert fmt.value(float("nan"), "float", "W", None, "fr") == "?"


def test_one_clock_the_site_zone_and_utc_only_in_exports() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert fmt.timestamp(WINTER_NS, paris) == "07/12/2026 09:15:03"
    assert fmt.timestamp(WINTER_NS, paris, date=False) == "09:15:03"
    assert fmt.timestamp(WINTER_NS, paris, seconds=False) == "07/12/2026 09:15"
    # summer time: the same zone, UTC+2
    assert fmt.timestamp(dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC), paris) == "01/07/2026 14:00:00"
    assert fmt.timestamp(WINTER_NS, ZoneInfo("America/Montreal"), date=False) == "03:15:03"
    with pytest.raises(ValueError, match="naive"):
        fmt.timestamp(dt.datetime(2026, 7, 1, 12, 0), paris)  # the refused input: no zone
    assert fmt.zone_label("fr", WINTER_NS, paris) == "fuseau horaire Europe/Paris (UTC+01:00)"
    assert fmt.zone_label("en", dt.datetime(2026, 7, 1, tzinfo=dt.UTC), paris) == \
        "time zone Europe/Paris (UTC+02:00)"
    assert fmt.utc_iso(1_796_631_303_123) == "2026-12-07T08:15:03.123Z"


def test_the_site_zone_is_set_once_and_validated() -> None:
    before = fmt.site_zone()
    try:
        assert fmt.set_timezone("America/Montreal").key == "America/Montreal"
        assert fmt.timestamp(WINTER_NS, date=False) == "03:15:03"
    finally:
        fmt.set_timezone(before.key)
    with pytest.raises(ValueError, match="time zone 'Mars/Olympus': must be an IANA time zone name"):
        fmt.set_timezone("Mars/Olympus")
