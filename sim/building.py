"""Building model: fire panel zones, intrusion system and door contacts, as a BMS reports them.

One :class:`Building` is one building of the city's building management server (OPC UA, ``bms-1``).
It is pure: :meth:`Building.step` advances it to simulation time ``now_s`` (epoch seconds) and
nothing inside reads a clock. Randomness comes only from the ``random.Random`` it was built with,
and random draws happen at *event times* (a door opening, the building closing), never per step, so
the same seed gives the same history however coarsely or finely the runner steps it.

Fire panel, per zone (``<id>/fire/zone<i>``, 0 normal / 1 alarm / 2 fault)::

    normal(0) ──fire_fault──► fault(2)          alarm wins over fault; an alarm is latched until
       │   ▲                     │              the panel is reset (``clear("fire_alarm")``), a
    fire_alarm└──clear───────────┘              fault until it is repaired (``clear("fire_fault")``)
       ▼
    alarm(1) ── while the building is occupied the evacuation opens every door for a few minutes

Intrusion system (``<id>/intrusion/armed``, ``<id>/intrusion/alarm``) on the building's opening
hours (Europe/Paris local time; each building draws its own hours and days)::

    disarmed ──(closing time, all doors shut; else when the last door shuts)──► armed
       ▲                                                                          │ a door opens
       └──────── opening time: disarm, the alarm is acknowledged ◄── armed+alarm ◄┘ or `intrusion`

Doors (``<id>/doors/door<i>``, True = open): while the building is open each door opens at random
(Poisson; door 1, the main entrance, most often) for a few seconds; closed at night.

Remote arming (the only points the central system may write, over OPC UA: :meth:`Building.write`)::

    intrusion/arm_request   Int32   0 local (the building's own schedule), 1 arm, 2 disarm
    intrusion/arm_lease     UInt32  seconds left on the central request; the building counts it down

                 write arm_request 1|2 (+ arm_lease s)                lease runs out      → "expired"
    SCHEDULE ─────────────────────────────────────────▶ REMOTE ──────────────────────────────▶ SCHEDULE
        ▲        (no lease given: DEFAULT_LEASE_S)        │ no central write for WATCHDOG_S   → "central_lost"
        │                                                 │ arm_request 0 or arm_lease 0      → "cancelled"
        └─────────────────────────────────────────────────┘ opening time, first one in       → "local"

* arm: at once when every door is shut, else as soon as the last one shuts (a panel does not set
  with a zone open; meanwhile arm_request reads 1 and armed False). Doors opened while armed raise
  the alarm, remotely armed or not.
* disarm: at once. A latched intrusion alarm stays latched: as on real intrusion panels, whose alarm
  memory survives unsetting until a user restores it on site (common practice; not checked against
  the EN 50131 text), it is only cleared on site — the first one in at opening time acknowledges
  it, or the panel reset (``clear("intrusion")``). alarms.yaml raises its P1 on ``intrusion_alarm
  and intrusion_armed``, so a disarm does end the police call-out while the latched alarm stays
  visible: that is why the command vocabulary makes disarming safety-reducing (second person).
* the schedule is the fallback: while a request is in force the closing-time arming waits (a night
  crew's disarm holds); when the request ends, for whatever reason, the building re-applies its
  schedule at once (open → disarmed, closed → armed as soon as every door is shut).
* a local person wins: at opening time the first one in disarms at the keypad, which ends any remote
  request (arm_request reads 0 again; the central's next lease refresh reads that back).
* a request is a lease (sim.lease): arm_lease written while arm_request is 0 is ignored (it reads
  back 0); every write of either point proves the central alive, and WATCHDOG_S seconds without one
  end the request (the central refreshes arm_lease well within that).
* out-of-range values (arm_request not 0/1/2, arm_lease above 65535 or negative, not a whole number)
  are refused with ValueError, which the OPC UA server answers with BadOutOfRange.

Faults (:meth:`Building.inject` / :meth:`Building.clear`):

=================  ======================================================================
``fire_alarm``     ``zone=<i>`` (default 1, or ``"all"``): zone in alarm, latched
``fire_fault``     ``zone=<i>`` (default 1, or ``"all"``): zone in fault (wiring, detector)
``intrusion``      a detector trips: the system reports armed and in alarm until cleared
                   (under a remote disarm it stays disarmed; the alarm still latches)
``door_forced``    ``door=<i>`` (default 1): the door is held open; raises the intrusion
                   alarm while armed
``frozen``         the reported values stop changing (the BMS gateway hangs); the building
                   itself keeps living and the values jump when cleared; central writes are
                   lost (the frozen values are what is read back)
=================  ======================================================================

``clear("intrusion")`` is also the panel reset on site: it acknowledges a latched intrusion alarm
whatever raised it (a forced door, a detector).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Any
from zoneinfo import ZoneInfo

from scada.config import EquipmentDef
from sim.faults import check_fault, unknown_fault
from sim.lease import WATCHDOG_S, Lease

log = logging.getLogger(__name__)

TZ = ZoneInfo("Europe/Paris")
FIRE_NORMAL, FIRE_ALARM, FIRE_FAULT = 0, 1, 2
FAULTS = ("fire_alarm", "fire_fault", "intrusion", "door_forced", "frozen")

#: Occupancy patterns: (weight, days of the week open (0 = Monday), opening hour range, closing hour range)
PATTERNS: list[tuple[float, tuple[int, ...], tuple[float, float], tuple[float, float]]] = [
    (0.6, (0, 1, 2, 3, 4), (6.5, 8.5), (17.5, 20.0)),  # offices, schools, town-hall services
    (0.25, (0, 1, 2, 3, 4, 5), (8.0, 9.5), (18.0, 21.0)),  # libraries, public reception
    (0.15, (0, 1, 2, 3, 4, 5, 6), (7.0, 9.0), (21.0, 23.0)),  # sports halls, culture
]
EVACUATION_S = (180.0, 420.0)  # doors held open after a fire alarm in an occupied building
DOOR_OPEN_S = (3.0, 20.0)  # how long a door stays open when someone goes through
MAIN_DOOR_PER_HOUR = 24.0  # door i opens on average MAIN_DOOR_PER_HOUR / i times an hour

REQ_LOCAL, REQ_ARM, REQ_DISARM = 0, 1, 2  # intrusion/arm_request
DEFAULT_LEASE_S = 60  # a request written without a lease
LEASE_MAX_S = 0xFFFF
ARM_REQUEST, ARM_LEASE = "intrusion/arm_request", "intrusion/arm_lease"
#: The points a central system may write, with their OPC UA built-in data type (named, so the model
#: stays free of the protocol library; sim.opcua_server maps the names).
WRITABLE: dict[str, str] = {ARM_REQUEST: "Int32", ARM_LEASE: "UInt32"}


class Building:
    """Fire panel zones, intrusion system and doors of one building (see the module docstring)."""

    FAULTS = FAULTS
    WRITABLE = WRITABLE

    def __init__(self, equipment_id: str, fire_zones: int, doors: int, rng: random.Random) -> None:
        if fire_zones < 1 or doors < 0:
            raise ValueError(f"{equipment_id}: needs at least one fire zone and no negative door count, "
                             f"got fire_zones={fire_zones}, doors={doors}")
        self.id = equipment_id
        self.rng = rng
        weights = [p[0] for p in PATTERNS]
        _, self.open_days, open_range, close_range = rng.choices(PATTERNS, weights=weights)[0]
        # opening hours rounded to the quarter hour, as a facility manager would set them
        self.open_hour = round(rng.uniform(*open_range) * 4) / 4
        self.close_hour = round(rng.uniform(*close_range) * 4) / 4
        self.zones = [FIRE_NORMAL] * fire_zones
        self.zone_alarm = [False] * fire_zones
        self.zone_fault = [False] * fire_zones
        self.doors = [False] * doors
        self.door_forced = [False] * doors
        self._door_close_at = [0.0] * doors
        self._door_next_open = [float("inf")] * doors
        self.armed = False
        self.alarm = False
        self.occupied = False
        self._intrusion_fault = False
        self._pending_arm = False
        self._evacuate_until = 0.0
        self._t: float | None = None
        self._boundary = float("inf")
        self._frozen: dict[str, Any] | None = None
        self.arm_request = REQ_LOCAL
        self.lease = Lease(WATCHDOG_S)

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> Building:
        return cls(eq.id, int(eq.params.get("fire_zones", 1)), int(eq.params.get("doors", 1)), rng)

    # ------------------------------------------------------------------ schedule
    def is_open_at(self, t: float) -> bool:
        """Whether the building's opening hours include epoch second ``t``."""
        local = dt.datetime.fromtimestamp(t, TZ)
        hour = local.hour + local.minute / 60 + local.second / 3600
        return local.weekday() in self.open_days and self.open_hour <= hour < self.close_hour

    def _next_boundary(self, t: float) -> float:
        """The first opening or closing instant strictly after ``t`` (DST-aware)."""
        day = dt.datetime.fromtimestamp(t, TZ).date()
        for k in range(9):
            d = day + dt.timedelta(days=k)
            if d.weekday() not in self.open_days:
                continue
            for hour in (self.open_hour, self.close_hour):
                when = dt.datetime.combine(d, dt.time(int(hour), round((hour % 1) * 60) % 60), TZ).timestamp()
                if when > t:
                    return when
        return t + 7 * 86400.0  # unreachable with at least one open day

    # ------------------------------------------------------------------ stepping
    def step(self, now_s: float) -> None:
        """Advance to simulation time ``now_s``, processing every event in time order."""
        if self._t is None:
            self._start(now_s)
            return
        if now_s <= self._t:
            return
        while True:
            t_next, what, idx = self._next_event()
            if t_next > now_s:
                break
            self._t = t_next
            self._apply(what, idx)
        self._t = now_s

    def _start(self, t: float) -> None:
        self._t = t
        self.occupied = self.is_open_at(t)
        self.armed = not self.occupied
        self._boundary = self._next_boundary(t)
        for i in range(len(self.doors)):
            self._schedule_door(i)

    def _next_event(self) -> tuple[float, str, int]:
        best = (self._boundary, "boundary", -1)
        for i, close_at in enumerate(self._door_close_at):
            if self.doors[i] and not self.door_forced[i] and not self._evacuate_until and close_at < best[0]:
                best = (close_at, "close", i)
        for i, open_at in enumerate(self._door_next_open):
            if open_at < best[0]:
                best = (open_at, "open", i)
        if self._evacuate_until and self._evacuate_until < best[0]:
            best = (self._evacuate_until, "evacuated", -1)
        deadline = self.lease.next_deadline()
        if deadline is not None and deadline < best[0]:
            best = (deadline, "lease", -1)
        return best

    def _apply(self, what: str, i: int) -> None:
        assert self._t is not None
        t = self._t
        if what == "boundary":
            self.occupied = self.is_open_at(t + 1.0)
            self._boundary = self._next_boundary(t)
            if self.occupied:
                # the first one in disarms at the keypad (a local action ends any remote request);
                # the alarm is acknowledged
                self._end_remote("disarmed locally at opening time", resume=False)
                self.armed = False
                self.alarm = False
                self._pending_arm = False
            else:
                self._pending_arm = True  # a remote request in force holds until it ends
                self._try_arm()
            for k in range(len(self.doors)):
                self._schedule_door(k)
        elif what == "open":
            self.doors[i] = True
            self._door_close_at[i] = t + self.rng.uniform(*DOOR_OPEN_S)
            self._door_next_open[i] = float("inf")
            if self.armed:
                self.alarm = True
        elif what == "close":
            self.doors[i] = False
            self._schedule_door(i)
            self._try_arm()
        elif what == "evacuated":
            self._evacuate_until = 0.0
            for k in range(len(self.doors)):
                if not self.door_forced[k]:
                    self.doors[k] = False
                    self._schedule_door(k)
            self._try_arm()
        elif what == "lease":  # t is the lease's deadline (expiry or watchdog)
            why = self.lease.check(t)
            if why is None:  # float rounding of last_alive + watchdog: the deadline is reached all the same
                exp = self.lease.expires_at
                why = "expired" if exp is not None and t >= exp - 1e-6 else "central_lost"
                self.lease.cancel()
            self._end_remote(f"lease {why}")

    def _schedule_door(self, i: int) -> None:
        assert self._t is not None
        if self.doors[i] or self._evacuate_until:
            return
        if self.occupied:
            rate = MAIN_DOOR_PER_HOUR / (i + 1) / 3600.0
            self._door_next_open[i] = self._t + self.rng.expovariate(rate)
        else:
            self._door_next_open[i] = float("inf")

    def _try_arm(self) -> None:
        """Arm if something asks for it and every door is shut (remote request first, then the schedule)."""
        if any(self.doors):
            return
        if self.remote:
            if self.arm_request == REQ_ARM:
                self.armed = True
            return
        if self._pending_arm and not self.occupied:
            self.armed = True
            self._pending_arm = False

    # ------------------------------------------------------------------ remote arming (central lease)
    @property
    def remote(self) -> bool:
        """Whether a central request (arm or disarm) is in force."""
        return self.arm_request != REQ_LOCAL and self.lease.active

    def _now(self) -> float:
        return self._t if self._t is not None else 0.0

    def write(self, key: str, value: Any) -> None:
        """A central write of ``intrusion/arm_request`` or ``intrusion/arm_lease`` (see the module docstring).

        Raises ValueError (nothing changes) for another key or an out-of-range value.
        """
        if key not in WRITABLE:
            raise ValueError(f"{self.id}: {key!r} is not writable (writable: {', '.join(WRITABLE)})")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.id}: {key} takes a whole number, got {value!r}")
        if key == ARM_REQUEST and value not in (REQ_LOCAL, REQ_ARM, REQ_DISARM):
            raise ValueError(f"{self.id}: {key} must be 0 local, 1 arm or 2 disarm, got {value}")
        if key == ARM_LEASE and not 0 <= value <= LEASE_MAX_S:
            raise ValueError(f"{self.id}: {key} must be 0..{LEASE_MAX_S} s, got {value}")
        if self._frozen is not None:
            log.warning("%s: BMS gateway frozen, central write %s=%s lost", self.id, key, value)
            return
        now = self._now()
        if key == ARM_REQUEST:
            if value == REQ_LOCAL:
                self._end_remote("return to local requested")
                return
            self.arm_request = value
            # a request without a lease gets the default; a repeated request keeps what is left
            self.lease.start(now, self.lease.remaining(now) or DEFAULT_LEASE_S)
        elif value == 0:
            self._end_remote("lease cancelled")
            return
        elif self.arm_request == REQ_LOCAL:
            log.info("%s: arm_lease %d s written with no request in force: ignored", self.id, value)
            return
        else:
            self.lease.start(now, value)
        log.info("%s: central %s, lease %d s", self.id, "arm" if self.arm_request == REQ_ARM else "disarm",
                 self.lease.remaining(now))
        self._apply_request()

    def _apply_request(self) -> None:
        if not self.remote:
            return
        if self.arm_request == REQ_DISARM:
            self.armed = False  # a latched alarm stays latched
        else:
            self._try_arm()  # now, or as soon as the last door shuts

    def _end_remote(self, why: str, *, resume: bool = True) -> None:
        """End the central request (if any) and, with ``resume``, re-apply the building's own schedule."""
        if self.arm_request == REQ_LOCAL and not self.lease.active:
            return
        self.arm_request = REQ_LOCAL
        self.lease.cancel()
        log.info("%s: central intrusion request ended (%s), back to the building's schedule", self.id, why)
        if not resume:
            return
        if self.occupied:
            self.armed = False
            self._pending_arm = False
        elif not self.armed:
            self._pending_arm = True
            self._try_arm()

    # ------------------------------------------------------------------ faults
    def inject(self, fault: str, **params: Any) -> None:
        """Inject a device fault (see the module docstring for names and parameters)."""
        if fault == "fire_alarm":
            for z in self._zones(params.get("zone", 1)):
                self.zone_alarm[z] = True
            if self.occupied and self._t is not None and not self._evacuate_until:
                self._evacuate_until = self._t + self.rng.uniform(*EVACUATION_S)
                for k in range(len(self.doors)):
                    self.doors[k] = True
                    self._door_next_open[k] = float("inf")
        elif fault == "fire_fault":
            for z in self._zones(params.get("zone", 1)):
                self.zone_fault[z] = True
        elif fault == "intrusion":
            self._intrusion_fault = True
            self.armed = not (self.remote and self.arm_request == REQ_DISARM)  # a remote disarm holds
            self.alarm = True
        elif fault == "door_forced":
            d = self._door(params.get("door", 1))
            self.door_forced[d] = True
            self.doors[d] = True
            self._door_next_open[d] = float("inf")
            if self.armed:
                self.alarm = True
        elif fault == "frozen":
            if self._frozen is None:
                self._frozen = self._live_values()
        else:
            raise unknown_fault(self.id, fault, FAULTS)
        self._refresh_zones()

    def clear(self, fault: str | None = None, **params: Any) -> None:
        """Clear one fault (``zone=``/``door=`` narrow it) or every fault when ``fault`` is None."""
        check_fault(self.id, fault, FAULTS)
        if fault in (None, "fire_alarm"):
            for z in self._zones(params.get("zone", "all")):
                self.zone_alarm[z] = False
        if fault in (None, "fire_fault"):
            for z in self._zones(params.get("zone", "all")):
                self.zone_fault[z] = False
        if fault in (None, "intrusion"):
            if self._intrusion_fault:
                self._intrusion_fault = False
                if self.remote:
                    self.armed = self.armed and self.arm_request == REQ_ARM
                else:
                    self.armed = not self.occupied and not any(self.doors)
            self.alarm = False  # the panel reset on site acknowledges the latched alarm
        if fault in (None, "door_forced"):
            doors = range(len(self.doors)) if params.get("door") is None else [self._door(params["door"])]
            for d in doors:
                if self.door_forced[d]:
                    self.door_forced[d] = False
                    self.doors[d] = False
                    if self._t is not None:
                        self._schedule_door(d)
            self._try_arm()
        if fault in (None, "frozen"):
            self._frozen = None
        self._refresh_zones()

    def _zones(self, zone: Any) -> list[int]:
        if zone == "all":
            return list(range(len(self.zones)))
        z = int(zone)
        if not 1 <= z <= len(self.zones):
            raise ValueError(f"{self.id}: zone must be 1..{len(self.zones)} or 'all', got {zone!r}")
        return [z - 1]

    def _door(self, door: Any) -> int:
        d = int(door)
        if not 1 <= d <= len(self.doors):
            raise ValueError(f"{self.id}: door must be 1..{len(self.doors)}, got {door!r}")
        return d - 1

    def _refresh_zones(self) -> None:
        for z in range(len(self.zones)):
            self.zones[z] = FIRE_ALARM if self.zone_alarm[z] else FIRE_FAULT if self.zone_fault[z] else FIRE_NORMAL

    # ------------------------------------------------------------------ reporting
    def _live_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"fire/zone{i + 1}": v for i, v in enumerate(self.zones)}
        out["intrusion/armed"] = self.armed
        out["intrusion/alarm"] = self.alarm
        out[ARM_REQUEST] = self.arm_request
        out[ARM_LEASE] = self.lease.remaining(self._now()) if self.arm_request != REQ_LOCAL else 0
        for i, v in enumerate(self.doors):
            out[f"doors/door{i + 1}"] = v
        return out

    def values(self) -> dict[str, Any]:
        """Reported values keyed by node path below the building (``fire/zone1`` → OPC UA ``B001/fire/zone1``)."""
        return dict(self._frozen) if self._frozen is not None else self._live_values()


__all__ = ["ARM_LEASE", "ARM_REQUEST", "DEFAULT_LEASE_S", "FAULTS", "FIRE_ALARM", "FIRE_FAULT", "FIRE_NORMAL",
           "REQ_ARM", "REQ_DISARM", "REQ_LOCAL", "WRITABLE", "Building"]
