"""Signalised junction controller (NTCIP 1202 subset) with its own conflict monitor: a pure model.

Time is passed in (``step(now_s)``, simulation epoch seconds); nothing here reads a clock. The SNMP
agent (sim/snmp_agent.py) serves the properties at request time and forwards the two writable
objects (systemPatternControl, unitBackupTime) to :meth:`JunctionController.set_system_pattern_control`
and :meth:`JunctionController.set_unit_backup_time`.

Signal sequence (one controller)::

      power on / latch reset
    OFF ──────────▶ STARTUP_FLASH ──(startup_flash_s)──▶ STARTUP_RED ──(startup_red_s)──▶ GREEN(stage)
                                                          ▲                                │ planned end, or
                                                          │ target ≠ flash                 │ plan change once
                     FLASH ◀──(target = flash)── ALL_RED ◀┴── AMBER (3 s) ◀────────────────┘ min green is served
                                                    │ (all_red_s)
                                                    └──────────────▶ GREEN(next stage)

    any state ──(conflict in the controller's own output; monitor enabled)──▶ FAULT_FLASH (latched:
    survives a power cycle; only ``inject("local_reset")`` / ``clear("conflicting_green")`` / ``clear()``
    release it, and the controller restarts through STARTUP_FLASH)

Safety rules the model keeps whatever the central system asks:

* a stage is a set of mutually permissive phases (checked when the plans are loaded); the
  compatibility matrix is symmetric and **every pair conflicts unless listed as permissive**;
* a stage's green is never ended before ``min_green_s``; every terminating phase shows amber for
  ``amber_s`` (≥ 3 s) then red for ``all_red_s`` before any phase that was not green starts;
* phases green in both the old and the new stage stay green (they are permissive with both);
* the next stage is chosen when the clearance starts and never changed during it;
* the conflict monitor checks greens and yellows of the output (controller output + injected stuck
  greens) after every transition and every fault injection, so a conflicting display latches
  flashing amber before any sample is published (a real MMU latches within ~300 ms).

Central requests (NTCIP semantics, see docs/contracts.md "Simulator contract"):

* systemPatternControl: 0 standby (local plan), 1..253 plan (an unknown plan → local plan +
  localFreeStatus badPlan(7) + shortAlarmStatus bit 4), 254 free (local plan, coordPatternStatus
  254, localFreeStatus commandFree(3)), 255 flash (automatic flash, unitFlashStatus automatic(3)).
* every SET of systemPatternControl restarts the backup timer; when ``unit_backup_time`` seconds
  pass without one, the controller enters backup mode (unitControlStatus backupMode(4)), reads
  systemPatternControl as 0 and runs its local (time-of-day) plan; 0 disables the timer.

Configuration served as NTCIP 1202 objects (static: they change only with the controller's database):

* ``pattern_cycle_time(n)``  patternCycleTime.n (s, 0..255): the plan's real cycle, greens plus the amber and
                             all-red of every stage change that ends a green;
* ``phase_concurrency(p)``   phaseConcurrency.p: the phase numbers that may be green with phase p (one byte each),
                             i.e. the controller's own compatibility matrix (its MMU program card).

Served values while flashing (start-up, automatic or fault): greens = reds = 0 and yellows = every
phase (flashing amber); ``unit_flash_status`` tells which flash it is. A central conflict check
must therefore look at greens, or skip yellows while ``unit_flash_status`` ≠ notFlash(2).

Faults (``inject(name, **params)`` / ``clear(name | None)``):

``conflicting_green``  phases=(a, b) (default: the first conflicting pair), monitor="mmu"|"controller":
                       the load switches drive two conflicting greens; the monitor latches flash
                       (unitFlashStatus mmu(6) or faultMonitor(5), shortAlarmStatus bits 7 and 1).
``monitor_disabled``   the cabinet monitor is out of service: an injected conflicting green then
                       stays visible (the only way to show one; for testing the central check).
``power_cycle``        off_s=0.0: dark and mute for off_s, then start-up flash and the local plan
                       (central request and backup timer state are lost; a latched fault is not).
``frozen``             uptime="counting" (default) | "stopped": the controller's application hangs while its
                       SNMP agent keeps answering from the last status snapshot; SETs still reach the
                       (hung) database and act on the internal state. "counting": the agent's own
                       sysUpTime keeps counting (a separate comms processor / OS clock: the common case,
                       and the one a central system finds hardest); "stopped": sysUpTime is part of the
                       stale snapshot too. Static configuration (patternCycleTime, phaseConcurrency) is
                       served unchanged either way.
``flash_transfer_failed`` the flash transfer relays do not transfer: while the controller flashes (and says
                       so), the load switches stay connected, so stuck greens (``conflicting_green``) are
                       still driven next to the flashing amber (the status then "lies": flash reported,
                       greens conflicting).
``local_reset``        front-panel reset: clears the latch and the stuck greens (a one-shot event).
``bus_priority``       phase=p, extend_s=10: the same as :meth:`request_bus_priority` (one-shot).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sim.faults import check_fault, unknown_fault
from sim.mib2 import MibSystem

if TYPE_CHECKING:
    from scada.config import EquipmentDef

__all__ = [
    "FAULTS",
    "FLASH",
    "FREE",
    "JunctionController",
    "Plan",
    "Stage",
]

FLASH = 255  # systemPatternControl / coordPatternStatus value for flash
FREE = 254  # ... for free operation
STANDBY = 0

FAULTS = ("conflicting_green", "monitor_disabled", "power_cycle", "frozen", "local_reset", "bus_priority",
          "flash_transfer_failed")

# unitControlStatus
UCS_SYSTEM_CONTROL = 2
UCS_SYSTEM_STANDBY = 3
UCS_BACKUP = 4
UCS_TIMEBASE = 6
# unitFlashStatus
UFS_OTHER = 1
UFS_NOT_FLASH = 2
UFS_AUTOMATIC = 3
UFS_FAULT_MONITOR = 5
UFS_MMU = 6
UFS_STARTUP = 7
# localFreeStatus
LFS_NOT_FREE = 2
LFS_COMMAND_FREE = 3
LFS_BAD_PLAN = 7
# shortAlarmStatus bits
SAS_CRITICAL = 1 << 7  # stop time (the MMU stops the controller)
SAS_COORD = 1 << 4  # called pattern not running
SAS_TF_FLASH = 1 << 1  # MMU / local flash input active

# internal modes
OFF = "off"
STARTUP_FLASH = "startup_flash"
STARTUP_RED = "startup_red"
GREEN = "green"
AMBER = "amber"
ALL_RED = "all_red"
AUTO_FLASH = "flash"

_MAX_PHASES = 8  # one NTCIP phase group (bit 0 = phase 1)


@dataclass(frozen=True, slots=True)
class Stage:
    """Phases green together, planned green time and the most a bus-priority extension may reach."""

    phases: frozenset[int]
    green_s: float
    max_green_s: float

    @property
    def mask(self) -> int:
        return _mask(self.phases)


@dataclass(frozen=True, slots=True)
class Plan:
    """A fixed-time plan: stages run in order, then the cycle repeats."""

    number: int
    stages: tuple[Stage, ...]

    @property
    def cycle_s(self) -> float:
        return sum(s.green_s for s in self.stages)


@dataclass(frozen=True, slots=True)
class _Status:
    reds: int
    yellows: int
    greens: int
    unit_control_status: int
    unit_flash_status: int
    short_alarm_status: int
    coord_pattern_status: int
    local_free_status: int
    system_pattern_control: int
    unit_backup_time: int


def _mask(phases: Iterable[int]) -> int:
    m = 0
    for p in phases:
        m |= 1 << (p - 1)
    return m


def _bits(mask: int) -> list[int]:
    return [i + 1 for i in range(_MAX_PHASES) if mask >> i & 1]


# Junction layouts used by from_equipment: (phases, permissive pairs, stages, green times per plan).
# Plan 1 = day, 2 = peak (longer cycle), 3 = night (short cycle). Max green = green + extension room.
_LAYOUTS: dict[
    str, tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, ...], ...], dict[int, tuple[float, ...]]]
] = {
    # crossroads, two stages: north+south approaches, then east+west
    "cross4": (4, ((1, 2), (3, 4)), ((1, 2), (3, 4)), {1: (30, 20), 2: (42, 26), 3: (15, 10)}),
    # NEMA dual ring: 1/5 main lefts, 2/6 main through, 3/7 side lefts, 4/8 side through
    "nema8": (
        8,
        ((1, 5), (1, 6), (2, 5), (2, 6), (3, 7), (3, 8), (4, 7), (4, 8)),
        ((1, 5), (2, 6), (3, 7), (4, 8)),
        {1: (10, 35, 8, 25), 2: (12, 45, 10, 30), 3: (7, 20, 7, 14)},
    ),
    # T junction: 1 main eastbound, 2 main westbound, 3 westbound left turn (protected), 4 side road
    "tee": (4, ((1, 2), (2, 3)), ((1, 2), (2, 3), (4,)), {1: (30, 10, 18), 2: (40, 12, 22), 3: (15, 7, 10)}),
}

# Local time-of-day plan table: (minute of day, plan), Europe/Paris.
DEFAULT_SCHEDULE: tuple[tuple[int, int], ...] = (
    (0, 3),
    (6 * 60 + 30, 1),
    (7 * 60 + 30, 2),
    (9 * 60 + 30, 1),
    (16 * 60 + 30, 2),
    (19 * 60, 1),
    (22 * 60, 3),
)


class JunctionController(MibSystem):
    """A fixed-time junction controller with local autonomy (see the module docstring)."""

    FAULTS = FAULTS

    def __init__(
        self,
        junction_id: str,
        *,
        phases: int,
        permissive: Iterable[tuple[int, int]],
        plans: Mapping[int, Sequence[Stage]] | Iterable[Plan],
        local_schedule: Sequence[tuple[int, int]] = ((0, 1),),
        timezone: str = "Europe/Paris",
        min_green_s: float = 6.0,
        amber_s: float = 3.0,
        all_red_s: float = 2.0,
        startup_flash_s: float = 8.0,
        startup_red_s: float = 4.0,
        backup_time_s: int = 60,
        start_stage: int = 0,
        initial_uptime_s: float = 0.0,
        description: str = "",
        layout: str = "custom",
    ) -> None:
        if not 1 <= phases <= _MAX_PHASES:
            raise ValueError(f"{junction_id}: phases must be 1..{_MAX_PHASES}, got {phases}")
        if amber_s < 3.0:
            raise ValueError(f"{junction_id}: amber_s must be >= 3 s, got {amber_s}")
        if all_red_s < 1.0:
            raise ValueError(f"{junction_id}: all_red_s must be >= 1 s, got {all_red_s}")
        if min_green_s <= 0:
            raise ValueError(f"{junction_id}: min_green_s must be > 0, got {min_green_s}")
        if not 0 <= backup_time_s <= 65535:
            raise ValueError(f"{junction_id}: backup_time_s must be 0..65535, got {backup_time_s}")
        self.id = junction_id
        self.description = description or f"junction controller {junction_id} (NTCIP 1202 subset, simulated)"
        self.layout = layout  # cross4 | nema8 | tee from from_equipment (the fail-safe monitor uses the same names)
        self.phases = phases
        self.all_mask = (1 << phases) - 1
        self.min_green_s = float(min_green_s)
        self.amber_s = float(amber_s)
        self.all_red_s = float(all_red_s)
        self.startup_flash_s = float(startup_flash_s)
        self.startup_red_s = float(startup_red_s)

        # compatibility matrix: conflict masks per phase (default conflicting)
        perm: set[tuple[int, int]] = set()
        for a, b in permissive:
            for p in (a, b):
                if not 1 <= p <= phases:
                    raise ValueError(f"{junction_id}: permissive pair ({a}, {b}) names an unknown phase")
            if a != b:
                perm.add((min(a, b), max(a, b)))
        self.permissive_pairs: frozenset[tuple[int, int]] = frozenset(perm)
        self._conflict_mask = [0] * (phases + 1)
        for a in range(1, phases + 1):
            for b in range(1, phases + 1):
                if a != b and (min(a, b), max(a, b)) not in perm:
                    self._conflict_mask[a] |= 1 << (b - 1)

        # plans
        plan_list: list[Plan]
        if isinstance(plans, Mapping):
            plan_list = [Plan(int(n), tuple(st)) for n, st in plans.items()]
        else:
            plan_list = list(plans)
        self.plans: dict[int, Plan] = {}
        for plan in plan_list:
            self._check_plan(plan)
            self.plans[plan.number] = plan
        if not self.plans:
            raise ValueError(f"{junction_id}: at least one plan is required")
        sched = sorted((int(m), int(p)) for m, p in local_schedule)
        if not sched or sched[0][0] != 0:
            raise ValueError(f"{junction_id}: local_schedule must start at minute 0, got {sched}")
        for m, p in sched:
            if p not in self.plans or not 0 <= m < 1440:
                raise ValueError(f"{junction_id}: local_schedule entry ({m}, {p}) is invalid")
        self.local_schedule: tuple[tuple[int, int], ...] = tuple(sched)
        self._tz = ZoneInfo(timezone)
        self._first_stage = start_stage
        self._initial_uptime_s = float(initial_uptime_s)

        # clock and signal state
        self._t: float | None = None
        self._mode = GREEN
        self._until = math.inf
        self._plan = 0
        self._stage = 0
        self._greens = 0
        self._yellows = 0
        self._stage_start = 0.0
        self._min_end = 0.0
        self._planned_end = 0.0
        self._next: tuple[int, int] | None = None  # (plan, stage) after the clearance; None = flash
        self._sched_next = math.inf
        self._local = self.local_schedule[0][1]  # local plan in force (updated at schedule boundaries)
        self._boot_t = 0.0
        self._off_until: float | None = None
        # central requests
        self._spc = 0
        self._spc_written = False
        self._last_set: float | None = None
        self._backup = False
        self._backup_time = int(backup_time_s)
        # faults
        self._stuck = 0
        self._stuck_monitor = UFS_MMU
        self._latched = 0  # 0 or the unitFlashStatus it latched with
        self._monitor_disabled = False
        self._flash_transfer_failed = False
        self._frozen = False
        self._frozen_uptime_cs: int | None = None  # frozen with uptime="stopped": the stale sysUpTime
        self._published = _Status(0, 0, 0, UCS_TIMEBASE, UFS_OTHER, 0, 0, LFS_NOT_FREE, 0, self._backup_time)

    # ------------------------------------------------------------------ construction helpers

    def _check_plan(self, plan: Plan) -> None:
        if not 1 <= plan.number <= 253:
            raise ValueError(f"{self.id}: plan number must be 1..253, got {plan.number}")
        if not plan.stages:
            raise ValueError(f"{self.id}: plan {plan.number} has no stage")
        for i, st in enumerate(plan.stages, 1):
            where = f"{self.id}: plan {plan.number} stage {i}"
            if not st.phases or any(not 1 <= p <= self.phases for p in st.phases):
                raise ValueError(
                    f"{where}: phases must be a non-empty subset of 1..{self.phases}, got {sorted(st.phases)}"
                )
            for p in st.phases:
                clash = self._conflict_mask[p] & st.mask
                if clash:
                    raise ValueError(f"{where}: phase {p} conflicts with phase(s) {_bits(clash)} in the same stage")
            if st.green_s < self.min_green_s:
                raise ValueError(f"{where}: green {st.green_s} s is below the minimum green {self.min_green_s} s")
            if st.max_green_s < st.green_s:
                raise ValueError(f"{where}: max green {st.max_green_s} s is below its green {st.green_s} s")

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> JunctionController:
        """Build a plausible controller for an inventory row (deterministic for ``rng``).

        Optional inventory params: ``layout`` (cross4 | nema8 | tee), ``backup_time`` (s). Without a
        ``layout`` column the layout is the **first** draw from ``rng`` (keep it first: the fail-safe
        configuration lists the layouts the demo seed produces).
        """
        params = eq.params or {}
        layout = str(params.get("layout") or rng.choices(("cross4", "nema8", "tee"), weights=(5, 3, 2))[0])
        if layout not in _LAYOUTS:
            raise ValueError(f"{eq.source}: junction {eq.id}: layout must be one of {sorted(_LAYOUTS)}, got {layout!r}")
        phases, permissive, stage_sets, greens = _LAYOUTS[layout]
        scale = rng.uniform(0.85, 1.2)
        min_green = 6.0
        plans = []
        for number, times in greens.items():
            stages = []
            for phase_set, g in zip(stage_sets, times, strict=True):
                green = max(min_green, round(g * scale))
                stages.append(Stage(frozenset(phase_set), float(green), float(green + round(rng.uniform(8, 15)))))
            plans.append(Plan(number, tuple(stages)))
        backup = int(params.get("backup_time") or 60)
        ident = eq.identity or {}
        descr = " ".join(str(ident.get(k, "")) for k in ("manufacturer", "model")).strip()
        return cls(
            eq.id,
            phases=phases,
            permissive=permissive,
            plans=plans,
            local_schedule=DEFAULT_SCHEDULE,
            min_green_s=min_green,
            all_red_s=float(rng.choice((2.0, 2.0, 3.0))),
            backup_time_s=backup,
            start_stage=rng.randrange(len(stage_sets)),
            initial_uptime_s=rng.uniform(3600.0, 90 * 86400.0),
            description=f"{descr} junction controller {eq.id} ({layout}, NTCIP 1202 subset, simulated)".strip(),
            layout=layout,
        )

    # ------------------------------------------------------------------ compatibility

    def conflicts(self, a: int, b: int) -> bool:
        """True when phases a and b may not show green/yellow together."""
        return bool(self._conflict_mask[a] >> (b - 1) & 1)

    def conflicting_pairs(self, mask: int) -> list[tuple[int, int]]:
        """The conflicting phase pairs active together in a bitmap (bit 0 = phase 1)."""
        active = _bits(mask & self.all_mask)
        return [(a, b) for i, a in enumerate(active) for b in active[i + 1 :] if self.conflicts(a, b)]

    def _has_conflict(self, mask: int) -> bool:
        for p in _bits(mask & self.all_mask):
            if self._conflict_mask[p] & mask:
                return True
        return False

    def phase_concurrency(self, phase: int) -> bytes:
        """phaseConcurrency.<phase>: the phases that may be green with ``phase``, one byte per phase number."""
        if not 1 <= phase <= self.phases:
            raise ValueError(f"{self.id}: phase must be 1..{self.phases}, got {phase}")
        return bytes(b for b in range(1, self.phases + 1) if b != phase and not self.conflicts(phase, b))

    def pattern_cycle_time(self, plan: int) -> int:
        """patternCycleTime.<plan> (s, 0..255): greens plus the clearance of every stage change that ends a green
        (what one cycle really lasts without bus-priority extensions)."""
        stages = self.plans[plan].stages
        total = 0.0
        for i, st in enumerate(stages):
            nxt = stages[(i + 1) % len(stages)]
            total += st.green_s + (self.amber_s + self.all_red_s if st.mask & ~nxt.mask else 0.0)
        return min(255, round(total))

    @property
    def uptime_cs(self) -> int:
        """sysUpTime; frozen with uptime="stopped", the value of the stale snapshot."""
        if self._frozen_uptime_cs is not None:
            return self._frozen_uptime_cs
        return super().uptime_cs

    # ------------------------------------------------------------------ time

    @property
    def now_s(self) -> float | None:
        """The simulation time of the last step (None before the first)."""
        return self._t

    def step(self, now_s: float) -> None:
        """Advance to simulation time ``now_s`` (no-op if not later than the last step)."""
        if self._t is None:
            self._start(now_s)
            self._publish()
            return
        if now_s <= self._t:
            return
        while True:
            te = self._next_event()
            if te > now_s:
                break
            self._t = te
            self._process_due()
        self._t = now_s
        self._process_due()
        self._publish()

    def _start(self, t: float) -> None:
        self._t = t
        self._boot_t = t - self._initial_uptime_s
        self._local = self._local_plan(t)
        self._sched_next = self._next_boundary(t)
        if self._spc_written and self._last_set is None:
            self._last_set = t
        target = self._target()
        plan = self.plans[target if target != FLASH else self._local]
        self._start_stage(plan.number, self._first_stage % len(plan.stages))
        self._process_due()

    def _next_event(self) -> float:
        assert self._t is not None
        t = self._t
        cands = [self._sched_next]
        if self._mode == OFF:
            if self._off_until is not None:
                cands.append(self._off_until)
        else:
            exp = self._lease_expiry()
            if exp is not None:
                cands.append(exp)
            if not self._latched:
                if self._mode in (STARTUP_FLASH, STARTUP_RED, AMBER, ALL_RED):
                    cands.append(self._until)
                elif self._mode == GREEN:
                    cands.append(self._green_end())
        later = [c for c in cands if c > t]
        return min(later) if later else math.inf

    def _lease_expiry(self) -> float | None:
        if self._spc_written and not self._backup and self._backup_time > 0 and self._last_set is not None:
            return self._last_set + self._backup_time
        return None

    def _process_due(self) -> None:
        for _ in range(64):  # bounded: each pass consumes one due condition
            if not self._process_once():
                break
        self._monitor()

    def _process_once(self) -> bool:
        t = self._t
        assert t is not None
        if t >= self._sched_next:
            self._local = self._local_plan(t)
            self._sched_next = self._next_boundary(t)
            return True
        if self._mode == OFF:
            if self._off_until is not None and t >= self._off_until:
                self._boot()
                return True
            return False
        exp = self._lease_expiry()
        if exp is not None and t >= exp:
            self._backup = True
            self._spc = 0
            return True
        if self._latched:
            return False  # stop time: the monitor holds the controller
        mode = self._mode
        if mode == STARTUP_FLASH:
            if t >= self._until:
                self._mode, self._until = STARTUP_RED, t + self.startup_red_s
                self._greens = self._yellows = 0
                return True
            return False
        if mode == STARTUP_RED:
            if t >= self._until:
                target = self._target()
                if target == FLASH:
                    self._mode, self._until = AUTO_FLASH, math.inf
                else:
                    self._start_stage(target, 0)
                return True
            return False
        if mode == AUTO_FLASH:
            if self._target() != FLASH:
                # leave flash through an all-red start-up interval
                self._mode, self._until = STARTUP_RED, t + self.startup_red_s
                return True
            return False
        if mode == AMBER:
            if t >= self._until:
                self._mode, self._until = ALL_RED, t + self.all_red_s
                self._yellows = 0
                return True
            return False
        if mode == ALL_RED:
            if t >= self._until:
                if self._next is None:
                    self._mode, self._until = AUTO_FLASH, math.inf
                    self._greens = 0
                else:
                    self._start_stage(*self._next)
                return True
            return False
        if mode == GREEN and t >= self._green_end():
            self._end_green()
            return True
        return False

    def _green_end(self) -> float:
        if self._target() != self._plan:
            return self._min_end  # a change is due: end as soon as the minimum green is served
        return self._planned_end

    def _start_stage(self, plan: int, idx: int) -> None:
        assert self._t is not None
        st = self.plans[plan].stages[idx]
        self._mode, self._until = GREEN, math.inf
        self._plan, self._stage = plan, idx
        self._greens, self._yellows = st.mask, 0
        self._stage_start = self._t
        self._min_end = self._t + self.min_green_s
        self._planned_end = self._t + st.green_s
        self._next = None

    def _end_green(self) -> None:
        assert self._t is not None
        target = self._target()
        cur = self._greens
        nxt: tuple[int, int] | None
        if target == FLASH:
            nxt, nmask = None, 0
        elif target == self._plan:
            nxt = (self._plan, (self._stage + 1) % len(self.plans[self._plan].stages))
            nmask = self.plans[nxt[0]].stages[nxt[1]].mask
        else:
            nxt = (target, 0)
            nmask = self.plans[target].stages[0].mask
        terminating = cur & ~nmask
        if nxt is not None and terminating == 0:
            # nothing loses green: the new phases are permissive with every phase still green
            self._start_stage(*nxt)
            return
        self._mode, self._until = AMBER, self._t + self.amber_s
        self._greens, self._yellows = cur & nmask, terminating
        self._next = nxt

    # ------------------------------------------------------------------ targets / schedule

    def _local_plan(self, t: float) -> int:
        lt = datetime.fromtimestamp(t, self._tz)
        minute = lt.hour * 60 + lt.minute
        plan = self.local_schedule[0][1]
        for m, p in self.local_schedule:
            if m <= minute:
                plan = p
        return plan

    def _next_boundary(self, t: float) -> float:
        if len(self.local_schedule) < 2:
            return math.inf
        lt = datetime.fromtimestamp(t, self._tz)
        midnight = lt.replace(hour=0, minute=0, second=0, microsecond=0)
        best = math.inf
        for day in (0, 1):
            for m, _ in self.local_schedule:
                d = (midnight + timedelta(days=day)).replace(hour=m // 60, minute=m % 60)
                ts = d.timestamp()
                if t < ts < best:
                    best = ts
        return best if best < math.inf else t + 3600.0

    def _central(self) -> int | None:
        """The request in force (None = no central control)."""
        if not self._spc_written or self._backup or self._spc == STANDBY:
            return None
        return self._spc

    def _target(self) -> int:
        """Plan number the controller should run now, or FLASH."""
        assert self._t is not None
        req = self._central()
        if req == FLASH:
            return FLASH
        if req is not None and req in self.plans:
            return req
        return self._local  # standby, free, bad plan, backup, no central

    # ------------------------------------------------------------------ monitor and output

    def _output(self) -> tuple[int, int, int]:
        if self._mode == OFF:
            return 0, 0, 0
        if self._latched or self._mode in (STARTUP_FLASH, AUTO_FLASH):
            stuck = self._stuck & self.all_mask if self._flash_transfer_failed else 0
            return 0, self.all_mask & ~stuck, stuck
        greens = (self._greens | self._stuck) & self.all_mask
        yellows = self._yellows & ~greens
        return self.all_mask & ~(greens | yellows), yellows, greens

    def _monitor(self) -> None:
        # The monitor watches the load-switch outputs; while the flash transfer relays drive flashing
        # amber (start-up or automatic flash) there is nothing to compare.
        if self._latched or self._monitor_disabled or self._mode in (OFF, STARTUP_FLASH, AUTO_FLASH):
            return
        _, yellows, greens = self._output()
        if self._has_conflict(greens | yellows):
            self._latched = self._stuck_monitor

    def _status(self) -> _Status:
        reds, yellows, greens = self._output()
        req = self._central()
        flashing = self._mode == OFF or self._latched or self._mode in (STARTUP_FLASH, AUTO_FLASH)
        if self._mode == OFF:
            ufs = UFS_OTHER
        elif self._latched:
            ufs = self._latched
        elif self._mode == STARTUP_FLASH:
            ufs = UFS_STARTUP
        elif self._mode == AUTO_FLASH:
            ufs = UFS_AUTOMATIC
        else:
            ufs = UFS_NOT_FLASH
        if self._backup:
            ucs = UCS_BACKUP
        elif self._spc_written:
            ucs = UCS_SYSTEM_STANDBY if self._spc == STANDBY else UCS_SYSTEM_CONTROL
        else:
            ucs = UCS_TIMEBASE
        bad_plan = req is not None and req not in (FREE, FLASH) and req not in self.plans
        if bad_plan:
            lfs = LFS_BAD_PLAN
        elif req == FREE:
            lfs = LFS_COMMAND_FREE
        else:
            lfs = LFS_NOT_FREE
        if flashing:
            cps = FLASH
        elif req == FREE:
            cps = FREE
        elif self._mode == STARTUP_RED:
            cps = self._target() if self._target() != FLASH else FLASH
        else:
            cps = self._plan
        sas = 0
        if self._latched:
            sas |= SAS_CRITICAL | SAS_TF_FLASH
        if bad_plan:
            sas |= SAS_COORD
        spc = 0 if self._backup else self._spc
        return _Status(reds, yellows, greens, ucs, ufs, sas, cps, lfs, spc, self._backup_time)

    def _publish(self) -> None:
        self._monitor()
        if not self._frozen:
            self._published = self._status()

    # ------------------------------------------------------------------ served values

    @property
    def phase_reds(self) -> int:
        return self._published.reds

    @property
    def phase_yellows(self) -> int:
        return self._published.yellows

    @property
    def phase_greens(self) -> int:
        return self._published.greens

    def sample(self) -> tuple[int, int, int]:
        """One atomic (reds, yellows, greens) sample, as one SNMP GET PDU serves it."""
        s = self._published
        return s.reds, s.yellows, s.greens

    @property
    def unit_control_status(self) -> int:
        return self._published.unit_control_status

    @property
    def unit_flash_status(self) -> int:
        return self._published.unit_flash_status

    @property
    def short_alarm_status(self) -> int:
        return self._published.short_alarm_status

    @property
    def coord_pattern_status(self) -> int:
        return self._published.coord_pattern_status

    @property
    def local_free_status(self) -> int:
        return self._published.local_free_status

    @property
    def system_pattern_control(self) -> int:
        return self._published.system_pattern_control

    @property
    def unit_backup_time(self) -> int:
        return self._published.unit_backup_time

    def status(self) -> dict[str, int]:
        """All served NTCIP values (one snapshot), keyed like the tags of the junction template."""
        s = self._published
        return {
            "phase_reds": s.reds,
            "phase_yellows": s.yellows,
            "phase_greens": s.greens,
            "unit_control_status": s.unit_control_status,
            "unit_flash_status": s.unit_flash_status,
            "short_alarm_status": s.short_alarm_status,
            "coord_pattern_status": s.coord_pattern_status,
            "local_free_status": s.local_free_status,
            "system_pattern_control": s.system_pattern_control,
            "unit_backup_time": s.unit_backup_time,
        }

    def served(self, tag: str) -> int | str | None:
        """The value served for a junction-template tag name (status, ``uptime``, ``pattern_cycle_<n>``,
        ``phase_concurrency_<p>`` as the SNMP driver decodes it); None for an object this controller lacks."""
        status = self.status()
        if tag in status:
            return status[tag]
        if tag == "uptime":
            return self.uptime_cs
        name, _, num = tag.rpartition("_")
        if num.isdigit() and name == "pattern_cycle":
            return self.pattern_cycle_time(int(num)) if int(num) in self.plans else None
        if num.isdigit() and name == "phase_concurrency":
            return self.phase_concurrency(int(num)).decode("latin-1") if 1 <= int(num) <= self.phases else None
        return None

    @property
    def powered(self) -> bool:
        """False while a power cycle keeps the controller dark (the SNMP agent does not answer)."""
        return self._mode != OFF

    # internal state, for tests and the runner's logs (not served)
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def running_plan(self) -> int:
        return self._plan

    @property
    def running_stage(self) -> int:
        return self._stage

    @property
    def latched(self) -> bool:
        return bool(self._latched)

    # ------------------------------------------------------------------ central requests

    def _at(self, now_s: float | None) -> float:
        if now_s is not None:
            self.step(now_s)
        return self._t if self._t is not None else 0.0

    def _started(self, what: str) -> float:
        if self._t is None:
            raise RuntimeError(f"{self.id}: step() the controller before {what}")
        return self._t

    def set_system_pattern_control(self, value: int, now_s: float | None = None) -> bool:
        """A SET of systemPatternControl (0..255); restarts the backup timer. False while powered off.

        Applied at ``now_s`` (stepping there first) or at the time of the last step.
        """
        value = int(value)
        if not 0 <= value <= 255:
            raise ValueError(f"{self.id}: systemPatternControl must be 0..255, got {value}")
        self._at(now_s)
        if self._mode == OFF:
            return False
        self._spc = value
        self._spc_written = True
        self._backup = False
        self._last_set = self._t
        self._settle()
        return True

    def set_unit_backup_time(self, value: int, now_s: float | None = None) -> bool:
        """A SET of unitBackupTime (0..65535 s, 0 disables the backup timer)."""
        value = int(value)
        if not 0 <= value <= 65535:
            raise ValueError(f"{self.id}: unitBackupTime must be 0..65535, got {value}")
        self._at(now_s)
        if self._mode == OFF:
            return False
        self._backup_time = value
        self._settle()
        return True

    def request_bus_priority(self, phase: int, extend_s: float = 10.0, now_s: float | None = None) -> bool:
        """Extend the running green when ``phase`` is in it, never beyond the stage's max green.

        Returns True when the green was extended. Ignored while a plan change is pending, outside
        a green, in flash or with the controller held by its monitor.
        """
        self._at(now_s)
        if self._t is None or self._mode != GREEN or self._latched or self._target() != self._plan:
            return False
        st = self.plans[self._plan].stages[self._stage]
        if phase not in st.phases:
            return False
        new_end = min(self._stage_start + st.max_green_s, self._planned_end + max(0.0, extend_s))
        if new_end <= self._planned_end:
            return False
        self._planned_end = new_end
        return True

    def _settle(self) -> None:
        if self._t is not None:
            self._process_due()
        self._publish()

    # ------------------------------------------------------------------ faults

    def inject(self, fault: str, **params: Any) -> None:
        """Inject a device fault (see the module docstring for names and params)."""
        self._at(params.pop("now_s", None))
        t = self._started(f"injecting {fault!r}")
        if fault == "conflicting_green":
            pair = params.get("phases")
            if pair is None:
                pairs = self.conflicting_pairs(self.all_mask)
                pair = pairs[0] if pairs else ()
            mask = _mask(int(p) for p in pair)
            if mask & ~self.all_mask:
                raise ValueError(f"{self.id}: conflicting_green phases {pair} outside 1..{self.phases}")
            monitor = params.get("monitor", "mmu")
            if monitor not in ("mmu", "controller"):
                raise ValueError(f"{self.id}: conflicting_green monitor must be 'mmu' or 'controller', got {monitor!r}")
            self._stuck = mask
            self._stuck_monitor = UFS_MMU if monitor == "mmu" else UFS_FAULT_MONITOR
        elif fault == "monitor_disabled":
            self._monitor_disabled = True
        elif fault == "flash_transfer_failed":
            self._flash_transfer_failed = True
        elif fault == "power_cycle":
            off_s = float(params.get("off_s", 0.0))
            self._power_off(t, off_s)
        elif fault == "frozen":
            uptime = params.get("uptime", "counting")
            if uptime not in ("counting", "stopped"):
                raise ValueError(f"{self.id}: frozen uptime must be 'counting' or 'stopped', got {uptime!r}")
            self._publish()
            self._frozen = True
            self._frozen_uptime_cs = super().uptime_cs if uptime == "stopped" else None
        elif fault == "local_reset":
            self._local_reset()
        elif fault == "bus_priority":
            self.request_bus_priority(int(params["phase"]), float(params.get("extend_s", 10.0)))
        else:
            raise unknown_fault(self.id, fault, FAULTS)
        self._settle()

    def clear(self, fault: str | None = None, **params: Any) -> None:
        """Clear one fault (or all with None). Clearing conflicting_green also resets the latch."""
        check_fault(self.id, fault, FAULTS)
        self._at(params.pop("now_s", None))
        self._started(f"clearing {fault!r}")
        if fault in (None, "frozen"):
            self._frozen = False
            self._frozen_uptime_cs = None
        if fault in (None, "monitor_disabled"):
            self._monitor_disabled = False
        if fault in (None, "flash_transfer_failed"):
            self._flash_transfer_failed = False
        if fault in (None, "conflicting_green", "local_reset"):
            self._local_reset()
        if fault in (None, "power_cycle") and self._mode == OFF and self._t is not None:
            self._off_until = self._t
        self._settle()

    def _power_off(self, t: float, off_s: float) -> None:
        self._mode, self._until = OFF, math.inf
        self._off_until = t + max(0.0, off_s)
        self._greens = self._yellows = 0
        # volatile central state is lost; unitBackupTime is configuration (kept)
        self._spc, self._spc_written, self._backup, self._last_set = 0, False, False, None

    def _boot(self) -> None:
        assert self._t is not None
        self._boot_t = self._t
        self._off_until = None
        self._mode, self._until = STARTUP_FLASH, self._t + self.startup_flash_s
        self._greens = self._yellows = 0

    def _local_reset(self) -> None:
        self._stuck = 0
        if self._latched:
            self._latched = 0
            if self._mode != OFF and self._t is not None:
                self._mode, self._until = STARTUP_FLASH, self._t + self.startup_flash_s
                self._greens = self._yellows = 0

    def __repr__(self) -> str:
        return f"JunctionController({self.id!r}, mode={self._mode}, plan={self._plan}, stage={self._stage})"
