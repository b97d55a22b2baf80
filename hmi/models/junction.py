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

from hmi.models.live import LiveTags

PHASE_TAGS = ("phase_reds", "phase_yellows", "phase_greens")
STATUS_TAGS = (*PHASE_TAGS, "unit_flash_status", "unit_control_status", "coord_pattern_status", "local_free_status",
               "short_alarm_status", "system_pattern_control", "unit_backup_time")

RED, AMBER, GREEN, DARK, FLASH, UNKNOWN = "R", "A", "G", "-", "A~", "?"
ASPECT_TEXT = {RED: "red", AMBER: "amber", GREEN: "green", DARK: "dark", FLASH: "flashing amber",
               UNKNOWN: "state unknown"}

# NTCIP 1202 enumerations (tags.yaml carries them too; the display only needs the words)
FLASH_STATUS = {1: "other", 2: "not flashing", 3: "automatic flash", 4: "local manual flash",
                5: "fault monitor flash", 6: "MMU flash", 7: "start-up flash", 8: "preempt flash"}
CONTROL_STATUS = {1: "other", 2: "system control", 3: "system standby", 4: "backup mode", 5: "manual",
                  6: "timebase (local plan)", 7: "interconnect", 8: "interconnect backup"}
FLASHING = frozenset({3, 4, 5, 6, 7, 8})
FREE_STATUS = {1: "other", 2: "coordinated", 3: "command free", 4: "transition", 5: "input free", 6: "coord free",
               7: "bad plan", 8: "bad cycle time", 9: "split overrun", 10: "invalid offset", 11: "failed"}


@dataclass(frozen=True, slots=True)
class Aspect:
    phase: int
    state: str  # R | A | G | - | A~ | ?

    @property
    def text(self) -> str:
        return ASPECT_TEXT[self.state]


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
        why = "console disconnected: data stale"
    else:
        for t in (*PHASE_TAGS, "unit_flash_status"):
            tv = tags.get(names.get(t, ""))
            if tv is None:
                why = "no value received yet"
                break
            if tv.quality != "good":
                why = f"communication lost ({tv.quality})" if tv.quality.startswith("bad") else \
                    f"value not current ({tv.quality})"
                break
    known = not why
    ph = list(phases) if phases else phases_in_use(reds, yellows, greens)
    asp = aspects(reds, yellows, greens, flash, ph, known)
    pattern = v("coord_pattern_status")
    pattern_text = {254: "free", 255: "flash", 0: "none"}.get(pattern, f"plan {pattern}") \
        if isinstance(pattern, int) else "?"
    return JunctionView(asp, known, why, known and flash in FLASHING,
                        CONTROL_STATUS.get(v("unit_control_status"), "?") if known else "?",
                        pattern_text if known else "?",
                        FREE_STATUS.get(v("local_free_status"), "?") if known else "?")
