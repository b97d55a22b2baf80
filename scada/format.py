"""Values and times for people: one place that turns what the system holds into what an operator reads.

    what the system holds                          fr                        en
    ─────────────────────────────────────────────────────────────────────────────────────────────
    1234.5 (W)                     quantity()      "1 234,5 W"               "1,234.5 W"
    725 s  · 7500 s · 2 days       duration()      "12 min" · "2 h 05" · "2 j 00 h"   "12 min" · "2 h 05" · "2 d 00 h"
    1_234_567 (B)                  size()          "1,23 Mo"                 "1.23 MB"
    12_500_000 (bit/s)             rate()          "12,5 Mbit/s"             "12.5 Mbit/s"
    True / False                   boolean()       "oui" / "non"             "yes" / "no"
    3 with enum {3: "flash"}       value()         "flash"                   "flash"
    ts (epoch ns, UTC)             timestamp()     "07/12/2026 09:15:03"     (site time zone, both)
    ts for an export               utc_iso()       "2026-12-07T08:15:03.123Z" (explicit UTC column)

Numbers follow the language's CLDR conventions through Babel (French groups thousands with a narrow
no-break space, U+202F, and writes a decimal comma); unit symbols and duration layouts come from the
gettext catalogue (:mod:`scada.i18n`), so there is one translation mechanism. Every value-for-people
function takes ``lang`` (default: the process's language, :func:`scada.i18n.get_language`).

One clock: the system keeps UTC (epoch nanoseconds); every time shown to a person is converted to the
site's time zone (``tags.yaml`` ``timezone:``, set once with :func:`set_timezone`) with :mod:`zoneinfo`,
and :func:`zone_label` says which zone that is, once, in the status bar. UTC appears only in exports,
in a column that says so (:func:`utc_iso`).

``units`` understood by :func:`quantity` beyond a plain suffix: ``B``/``bytes`` (sizes), ``B/s``,
``bit/s``, ``s``/``cs``/``min``/``h`` (durations: a camera's uptime in centiseconds reads "3 j 04 h").
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import format_decimal

from scada.i18n import CLDR_LOCALE, N_, Lang, get_language, gettext_in, parse_lang, translations
from scada.locale.yaml_texts import ENUM_CONTEXT, enum_msgid

DEFAULT_TIMEZONE: Final = "Europe/Paris"
UNKNOWN: Final = "?"  # a value the system does not have (None, NaN): never shown as 0
_SIZE_UNITS: Final = (N_("B"), N_("kB"), N_("MB"), N_("GB"), N_("TB"))
_RATE_UNITS: Final = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s")  # SI symbols: the same in French
_DURATION_FACTORS: Final = {"s": 1.0, "cs": 0.01, "ms": 0.001, "min": 60.0, "h": 3600.0}
_SIZE_ALIASES: Final = frozenset({"B", "byte", "bytes", "octet", "octets", "o"})

_zone: ZoneInfo = ZoneInfo(DEFAULT_TIMEZONE)


def parse_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (ValueError when the system's zone database does not have it)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # the config loader adds ", got 'Mars/Olympus'"
        raise ValueError("must be an IANA time zone name such as Europe/Paris") from exc


def set_timezone(name: str) -> ZoneInfo:
    """Make ``name`` the site's time zone: every time shown to a person is in it."""
    global _zone  # noqa: PLW0603 - one site per process, set once at start-up with the language
    try:
        _zone = parse_timezone(name)
    except ValueError as exc:
        raise ValueError(f"time zone {name!r}: {exc}") from None
    return _zone


def site_zone() -> ZoneInfo:
    return _zone


def _lang(lang: str | None) -> Lang:
    return get_language() if lang is None else parse_lang(lang)


def _t(lang: Lang, msgid: str) -> str:
    return gettext_in(lang, msgid)


def _bad(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None, lang: str | None = None, decimals: int | None = None) -> str:
    """``1234.5`` → fr ``"1 234,5"`` (U+202F), en ``"1,234.5"``; up to 2 decimals unless ``decimals`` is given."""
    if _bad(value):
        return UNKNOWN
    assert value is not None  # noqa: S101 - narrowed by _bad for mypy
    pattern = "#,##0.##" if decimals is None else "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    text = format_decimal(value, format=pattern, locale=CLDR_LOCALE[_lang(lang)])
    return "0" if text == "-0" else text  # -0.001 rounded to no decimal is not negative for a reader


def _significant(value: float, lang: Lang) -> str:
    """Three significant digits (a prefixed size or rate): 1.23, 12.3, 123."""
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2
    return format_decimal(value, format="#,##0" + ("." + "#" * decimals if decimals else ""),
                          locale=CLDR_LOCALE[lang])


def _prefixed(v: float, units: tuple[str, ...], code: Lang) -> str:
    """``v`` with the decimal (SI) prefix that keeps it under 1,000: ``units`` from no prefix up."""
    m, k = abs(float(v)), 0
    while m >= 999.5 and k < len(units) - 1:
        m, k = m / 1000, k + 1
    text = number(m, code, 0) if k == 0 else _significant(m, code)
    return ("-" if v < 0 else "") + f"{text}\u00a0{units[k]}"


def size(n_bytes: float | None, lang: str | None = None) -> str:
    """Bytes with a decimal (SI) prefix: fr ``"1,23 Mo"``, en ``"1.23 MB"``; ``"512 o"`` / ``"512 B"``."""
    if _bad(n_bytes):
        return UNKNOWN
    assert n_bytes is not None  # noqa: S101 - narrowed by _bad for mypy
    code = _lang(lang)
    return _prefixed(n_bytes, tuple(_t(code, u) for u in _SIZE_UNITS), code)


def rate(bits_per_s: float | None, lang: str | None = None) -> str:
    """A bit rate with a decimal prefix: ``12_500_000`` → fr ``"12,5 Mbit/s"``, en ``"12.5 Mbit/s"``."""
    if _bad(bits_per_s):
        return UNKNOWN
    assert bits_per_s is not None  # noqa: S101 - narrowed by _bad for mypy
    return _prefixed(bits_per_s, _RATE_UNITS, _lang(lang))


def duration(seconds: float | None, lang: str | None = None) -> str:
    """How long, the way a control room says it: ``"45 s"``, ``"12 min"``, ``"2 h 05"``, fr ``"3 j 04 h"``.

    Truncated, not rounded (an alarm 11 min 50 s old reads "11 min", as a clock would); a negative
    duration (a deadline passed) keeps its sign.
    """
    if _bad(seconds):
        return UNKNOWN
    assert seconds is not None  # noqa: S101 - narrowed by _bad for mypy
    code = _lang(lang)
    sign = "-" if seconds < 0 else ""
    s = abs(float(seconds))
    if s < 10 and not float(s).is_integer():
        return sign + _t(code, N_("{seconds} s")).format(seconds=number(s, code, 1))
    total = int(s)
    if total < 60:
        return sign + _t(code, N_("{seconds} s")).format(seconds=total)
    if total < 3600:
        return sign + _t(code, N_("{minutes} min")).format(minutes=total // 60)
    if total < 86400:
        return sign + _t(code, N_("{hours} h {minutes:02d}")).format(hours=total // 3600, minutes=total % 3600 // 60)
    return sign + _t(code, N_("{days} d {hours:02d} h")).format(days=total // 86400, hours=total % 86400 // 3600)


def boolean(value: object, lang: str | None = None) -> str:
    """``True`` → fr ``"oui"``, en ``"yes"``; None → ``"?"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    return _t(_lang(lang), N_("yes") if value else N_("no"))


def enum_label(code: float, enum: Mapping[int, str] | None, lang: str | None = None) -> str:
    """The label ``tags.yaml`` gives a code, in ``lang``: ``"fault_monitor"`` → en ``"fault monitor"``, fr
    ``"moniteur de défauts"`` (the catalogue's context ``enum``, extracted from tags.yaml:
    :mod:`scada.locale.yaml_texts`; a label it does not know reads as written); the code if it has none."""
    label = (enum or {}).get(int(code))
    if label is None:
        return str(int(code))
    return translations(_lang(lang)).pgettext(ENUM_CONTEXT, enum_msgid(label))


def quantity(value: float | None, units: str = "", lang: str | None = None) -> str:
    """A number with its unit, the unit understood where it matters (sizes, rates, durations, %)."""
    if _bad(value):
        return UNKNOWN
    assert value is not None  # noqa: S101 - narrowed by _bad for mypy
    code = _lang(lang)
    u = units.strip()
    if u in _SIZE_ALIASES:
        return size(value, code)
    if u in ("B/s", "bytes/s", "o/s"):
        return size(value, code) + "/s"
    if u in ("bit/s", "bps", "b/s"):
        return rate(value, code)
    if u in _DURATION_FACTORS and u != "ms":
        return duration(value * _DURATION_FACTORS[u], code)
    text = number(value, code)
    if not u:
        return text
    if u == "%":  # French typography puts a (narrow no-break) space before %, English none
        return text + ("\u202f%" if code == "fr" else "%")
    return f"{text}\u00a0{u}"


def value(v: float | str | None, dtype: str, units: str = "", enum: Mapping[int, str] | None = None,
          lang: str | None = None) -> str:
    """A tag's value for people: enum label, yes/no, a number with its unit; text as it is."""
    if isinstance(v, str):
        return v
    if _bad(v):
        return UNKNOWN
    assert v is not None  # noqa: S101 - narrowed by _bad for mypy
    if enum and dtype in ("enum", "bool", "int"):
        return enum_label(v, enum, lang)
    if dtype == "bool":
        return boolean(bool(v), lang)
    return quantity(v, units, lang)


def _aware(ts: int | dt.datetime, tz: ZoneInfo | None) -> dt.datetime:
    zone = tz or _zone
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            raise ValueError("a naive datetime has no time zone: pass UTC epoch nanoseconds or an aware datetime")
        return ts.astimezone(zone)
    return dt.datetime.fromtimestamp(ts / 1e9, tz=dt.UTC).astimezone(zone)


def timestamp(ts: int | dt.datetime, tz: ZoneInfo | None = None, *, date: bool = True, seconds: bool = True) -> str:
    """A moment in the site's time zone: ``"07/12/2026 09:15:03"`` (``date=False``: ``"09:15:03"``).

    ``ts`` is UTC epoch nanoseconds or an aware datetime. Day/month/year and a 24-hour clock in both
    languages (the room's layout; English here is en_GB).
    """
    t = _aware(ts, tz)
    fmt = ("%d/%m/%Y " if date else "") + ("%H:%M:%S" if seconds else "%H:%M")
    return t.strftime(fmt)


def zone_label(lang: str | None = None, at: int | dt.datetime | None = None, tz: ZoneInfo | None = None) -> str:
    """Which clock the times are on, said once (status bar): fr ``"fuseau horaire Europe/Paris (UTC+01:00)"``."""
    zone = tz or _zone
    t = _aware(at, zone) if at is not None else dt.datetime.now(zone)
    off = t.utcoffset() or dt.timedelta(0)
    minutes = int(off.total_seconds()) // 60
    offset = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return _t(_lang(lang), N_("time zone {zone} (UTC{offset})")).format(zone=zone.key, offset=offset)


def utc_iso(ms: int) -> str:
    """UTC ISO 8601 with milliseconds, for exports only: ``2026-11-22T21:56:11.123Z``."""
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
