"""Junction synoptic model: NTCIP phase-status bitmaps → one labelled aspect per phase.

    phase_reds / phase_yellows / phase_greens (bit 0 = phase 1)  ┐
    unit_flash_status (2 = not flashing)                          ├─► aspects(): [Aspect(phase, "R"|"A"|"G"|...)]
    quality of those tags + console connection                    ┘
                                                                    "?" UNKNOWN whenever the data cannot
                                                                    be trusted: quality not good, console
                                                                    stale, no value yet, or a phase shown in
                                                                    two colours at once (never guess an aspect)

Aspects are drawn as labelled icons (R / A / G, lit lamp position), never with alarm colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hmi.models.journal import word
from hmi.models.live import LiveTags
from scada.i18n import N_, _

PHASE_TAGS = ("phase_reds", "phase_yellows", "phase_greens")
STATUS_TAGS = (*PHASE_TAGS, "unit_flash_status", "unit_control_status", "coord_pattern_status", "local_free_status",
               "short_alarm_status", "system_pattern_control", "unit_backup_time")

RED, AMBER, GREEN, DARK, FLASH, UNKNOWN = "R", "A", "G", "-", "A~", "?"
ASPECT_TEXT = {RED: N_("red"), AMBER: N_("amber"), GREEN: N_("green"), DARK: N_("dark"), FLASH: N_("flashing amber"),
               UNKNOWN: N_("state unknown")}  # English msgids: shown through _()

# NTCIP 1202 enumerations (tags.yaml carries them too; the display only needs the words)
FLASH_STATUS = {1: N_("other"), 2: N_("not flashing"), 3: N_("automatic flash"), 4: N_("local manual flash"),
                5: N_("fault monitor flash"), 6: N_("MMU flash"), 7: N_("start-up flash"), 8: N_("preempt flash")}
CONTROL_STATUS = {1: N_("other"), 2: N_("system control"), 3: N_("system standby"), 4: N_("backup mode"),
                  5: N_("manual"), 6: N_("timebase (local plan)"), 7: N_("interconnect"), 8: N_("interconnect backup")}
FLASHING = frozenset({3, 4, 5, 6, 7, 8})
FREE_STATUS = {1: N_("other"), 2: N_("coordinated"), 3: N_("command free"), 4: N_("transition"), 5: N_("input free"),
               6: N_("coord free"), 7: N_("bad plan"), 8: N_("bad cycle time"), 9: N_("split overrun"),
               10: N_("invalid offset"), 11: N_("failed")}


@dataclass(frozen=True, slots=True)
class Aspect:
    phase: int
    state: str  # R | A | G | - | A~ | ?

    @property
    def text(self) -> str:
        return _(ASPECT_TEXT[self.state])


@dataclass(frozen=True, slots=True)
class JunctionView:
    aspects: tuple[Aspect, ...]
    known: bool
    why_unknown: str
    flashing: bool
    mode: str
    pattern: str
    free: str


def _bit(mask: Any, phase: int) -> bool:
    return isinstance(mask, int) and not isinstance(mask, bool) and bool(mask >> (phase - 1) & 1)


def aspects(reds: Any, yellows: Any, greens: Any, flash_status: Any, phases: Sequence[int],
            trusted: bool) -> tuple[Aspect, ...]:
    """One aspect per phase; all UNKNOWN when ``trusted`` is False."""
    if not trusted:
        return tuple(Aspect(p, UNKNOWN) for p in phases)
    flashing = flash_status in FLASHING
    out = []
    for p in phases:
        lit = [c for c, m in ((RED, reds), (AMBER, yellows), (GREEN, greens)) if _bit(m, p)]
        if flashing:
            out.append(Aspect(p, FLASH))
        elif len(lit) == 1:
            out.append(Aspect(p, lit[0]))
        elif not lit:
            out.append(Aspect(p, DARK))
        else:
            out.append(Aspect(p, UNKNOWN))  # two colours at once: do not guess
    return tuple(out)


def phases_in_use(reds: Any, yellows: Any, greens: Any, at_least: int = 4) -> list[int]:
    mask = 0
    for m in (reds, yellows, greens):
        if isinstance(m, int) and not isinstance(m, bool):
            mask |= m
    top = max(at_least, mask.bit_length())
    return list(range(1, min(top, 16) + 1))


def view(tags: LiveTags, names: dict[str, str], phases: Sequence[int] | None = None) -> JunctionView:
    """The synoptic of one junction from the live tags (``names``: short tag → full tag name)."""
    def v(t: str) -> Any:
        return tags.value(names[t]) if t in names else None

    reds, yellows, greens, flash = v("phase_reds"), v("phase_yellows"), v("phase_greens"), v("unit_flash_status")
    why = ""
    if tags.stale:
        why = _("console disconnected: data stale")
    else:
        for t in (*PHASE_TAGS, "unit_flash_status"):
            tv = tags.get(names.get(t, ""))
            if tv is None:
                why = _("no value received yet")
                break
            if tv.quality != "good":
                why = (_("communication lost ({quality})") if tv.quality.startswith("bad") else
                       _("value not current ({quality})")).format(quality=word(tv.quality))
                break
    known = not why
    ph = list(phases) if phases else phases_in_use(reds, yellows, greens)
    asp = aspects(reds, yellows, greens, flash, ph, known)
    pattern = v("coord_pattern_status")
    pattern_text = {254: _("free"), 255: _("flash"), 0: _("none")}.get(pattern, _("plan {n}").format(n=pattern)) \
        if isinstance(pattern, int) else "?"
    return JunctionView(asp, known, why, known and flash in FLASHING,
                        _(CONTROL_STATUS.get(v("unit_control_status"), "?")) if known else "?",
                        pattern_text if known else "?",
                        _(FREE_STATUS.get(v("local_free_status"), "?")) if known else "?")
