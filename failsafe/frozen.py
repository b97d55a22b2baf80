"""Frozen-controller evidence: a controller that answers but whose status no longer moves (pure, time passed in).

A controller whose application hangs can keep answering SNMP from its last status snapshot, so every
sample is "good" and the junction looks normal while its real output may be anything. What moves in a
healthy controller depends on its mode, so the evidence does too (each sample: receive time, phase
status, flash status, running pattern, sysUpTime)::

    any mode      sysUpTime standing still for > max(5 s, 3 scan periods) while the controller answers
                  (the agent serves a stale snapshot, its uptime included)
    plan 1..253,  phase status (greens, yellows, reds) unchanged for longer than the running pattern's
    not flashing  cycle (NTCIP patternCycleTime from the controller; unknown: 255 s, the NTCIP maximum)
                  + 2 scan periods, while sysUpTime advanced by at least that cycle (a fixed-time plan
                  changes its greens at every stage; the longest stage is shorter than the cycle)
    flash 255,    the phases legitimately stand still: only sysUpTime (above) or the central request:
    free 254      the status still contradicts the pattern the central system requested (its lease)
                  three of the controller's cycles after the request (NTCIP's own coordination-alarm
                  limit: "called pattern not running within three cycles")

A frozen controller whose uptime keeps counting, in flash or free, with no change requested, gives no
evidence at all in its NTCIP status: nothing there is supposed to move. That case is detected as soon as
the central requests a change (or the controller reboots and its uptime restarts). See
failsafe/monitor.py for what the monitor does with the evidence (P2 "controller status frozen", junction
state "unknown").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["NTCIP_MAX_CYCLE_S", "FrozenDetector", "Request", "StatusSample"]

NTCIP_MAX_CYCLE_S = 255.0  # patternCycleTime is 0..255 s
UPTIME_STALL_S = 5.0
WRAP32 = 1 << 32  # sysUpTime (TimeTicks) wraps here
FLASH_PATTERN = 255
FREE_PATTERN = 254
NOT_FLASH = 2  # unitFlashStatus notFlash(2)


@dataclass(frozen=True, slots=True)
class StatusSample:
    """One atomic junction sample (receive time in epoch seconds; None where the template has no such tag)."""

    rcv_s: float
    greens: int
    yellows: int
    reds: int | None
    flash_status: int | None
    pattern: int | None
    uptime_cs: int | None


@dataclass(frozen=True, slots=True)
class Request:
    """What the central system asked of the controller (its lease): a pattern (1..253, 254 free, 255 flash)."""

    pattern: int
    since: float


def _flashing(s: StatusSample) -> bool:
    return s.pattern == FLASH_PATTERN or (s.flash_status is not None and s.flash_status != NOT_FLASH)


def _follows(s: StatusSample, pattern: int) -> bool:
    if pattern == FLASH_PATTERN:
        return _flashing(s)
    return s.pattern == pattern and not _flashing(s)


class FrozenDetector:
    """Per-junction evidence tracker. ``observe`` returns why the status looks frozen, or None."""

    def __init__(self, period_s: float, uptime_stall_s: float = UPTIME_STALL_S) -> None:
        self.period_s = period_s
        self.uptime_stall_s = max(uptime_stall_s, 3 * period_s)
        self.reset()

    def reset(self) -> None:
        """Forget the history (after a gap: comm loss, stale or bad samples)."""
        self._uptime: int | None = None
        self._uptime_moved_at = 0.0
        self._key: tuple[object, ...] | None = None
        self._moved_at = 0.0
        self._uptime_at_move: int | None = None
        self._request: Request | None = None
        self._mismatch_since: float | None = None

    def observe(self, s: StatusSample, cycle_s: Callable[[int], float | None],
                request: Request | None = None) -> str | None:
        # sysUpTime: any change counts as moving (a restart moves it backwards)
        if s.uptime_cs is not None:
            if self._uptime is None or s.uptime_cs != self._uptime:
                self._uptime_moved_at = s.rcv_s
            self._uptime = s.uptime_cs
        key = (s.greens, s.yellows, s.reds, s.flash_status, s.pattern)
        if key != self._key:
            self._key, self._moved_at, self._uptime_at_move = key, s.rcv_s, s.uptime_cs
        if s.uptime_cs is not None and s.rcv_s - self._uptime_moved_at > self.uptime_stall_s:
            return (f"sysUpTime standing still for {s.rcv_s - self._uptime_moved_at:.0f} s while the controller "
                    f"answers")
        pat = s.pattern
        if pat is not None and 1 <= pat <= 253 and not _flashing(s):
            cycle = cycle_s(pat) or NTCIP_MAX_CYCLE_S
            still = s.rcv_s - self._moved_at
            advanced = True
            if s.uptime_cs is not None and self._uptime_at_move is not None:
                advanced = (s.uptime_cs - self._uptime_at_move) % WRAP32 / 100.0 >= cycle
            if still > cycle + 2 * self.period_s and advanced:
                return (f"phase status unchanged for {still:.0f} s in plan {pat} (cycle {cycle:.0f} s) while "
                        f"sysUpTime advances")
        return self._contradiction(s, cycle_s, request)

    def _contradiction(self, s: StatusSample, cycle_s: Callable[[int], float | None],
                       request: Request | None) -> str | None:
        if request != self._request:
            self._request, self._mismatch_since = request, None
        if request is None or _follows(s, request.pattern):
            self._mismatch_since = None
            return None
        if self._mismatch_since is None:
            self._mismatch_since = max(s.rcv_s, request.since)
        cycles = [c for c in (cycle_s(p) for p in (request.pattern, s.pattern) if p is not None and 1 <= p <= 253)
                  if c]
        change_s = 3 * (max(cycles) if cycles else NTCIP_MAX_CYCLE_S)
        late = s.rcv_s - self._mismatch_since
        if late > change_s:
            shown = "flash" if _flashing(s) else f"pattern {s.pattern}"
            wanted = "flash" if request.pattern == FLASH_PATTERN else f"pattern {request.pattern}"
            return (f"status still shows {shown} {late:.0f} s after the central request for {wanted} "
                    f"(the controller's own limit: {change_s:.0f} s)")
        return None
