"""Retractable bollard: position with travel time, vehicle presence loop, local cycle, central lease.

    position:  DOWN(0) ──raise──▶ MOVING(2) ──travel_s──▶ UP(1) ──lower──▶ MOVING(2) ──▶ DOWN(0)
               UNKNOWN(3) when a fault stops it half-way

Local operation (command 0): the bollard stands up and lowers for authorised vehicles (badge/ANPR at the
site, simulated as a Poisson stream, busier by day): lower → the vehicle crosses the loop (presence
for a few seconds) → 2 s after the loop clears → raise.

Central requests (hr:0 1 lower / 2 raise) are in force while the lease hr:1 > 0; the bollard counts it
down and goes back to local when it runs out or when the heartbeat hr:2 stops changing for 60 s. A
command written without a lease gets DEFAULT_LEASE_S.

The presence interlock always wins, whatever the centre asks:
    * a write of "raise" while presence is detected is refused (Modbus exception 3, nothing changes);
    * a bollard rising when a vehicle arrives on the loop reverses and goes back down;
    * while presence is detected it never starts rising.
A faulty bollard (bollard_fault) stops where it is, reports di:1 and refuses commands (exception 4).

Modbus map: ir:0 position (0 down, 1 up, 2 moving, 3 unknown), di:0 presence, di:1 fault,
hr:0 command (0 local, 1 lower, 2 raise), hr:1 lease seconds left, hr:2 heartbeat.

Faults: bollard_fault, presence (a vehicle standing on the loop), frozen (served registers stop changing).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sim.faults import Reevaluating, check_fault, unknown_fault
from sim.lease import Lease, lease_write
from sim.modbus_map import DeviceFailure, IllegalValue, RegisterImage, Table

if TYPE_CHECKING:
    from scada.config import EquipmentDef

__all__ = ["CMD_LOCAL", "CMD_LOWER", "CMD_RAISE", "DEFAULT_LEASE_S", "DOWN", "MOVING", "UNKNOWN", "UP", "Bollard"]

log = logging.getLogger(__name__)

DOWN, UP, MOVING, UNKNOWN = 0, 1, 2, 3
CMD_LOCAL, CMD_LOWER, CMD_RAISE = 0, 1, 2
DEFAULT_LEASE_S = 60
MAX_SUBSTEP_S = 1.0
RERAISE_DELAY_S = 2.0


class Bollard(RegisterImage, Reevaluating):
    """One automatic bollard. Pure: time only comes in through step(now_s)."""

    FAULTS = ("bollard_fault", "presence", "frozen")

    def __init__(
        self,
        equipment_id: str,
        *,
        travel_s: float = 4.0,
        passages_per_hour: float = 6.0,
        rng: random.Random | None = None,
    ) -> None:
        self.id = equipment_id
        self.rng = rng if rng is not None else random.Random(equipment_id)
        self.travel_s = travel_s
        self.passages_per_hour = passages_per_hour
        self.height = 1.0  # 0 down .. 1 up
        self.direction = 0  # -1 lowering, 0 still, +1 rising
        self.command = CMD_LOCAL
        self.lease = Lease()
        self.fault = False
        self.presence_fault = False  # a vehicle standing on the loop (injected)
        self.now: float | None = None
        # local cycle: next authorised vehicle, the one crossing now
        self._next_vehicle: float | None = None
        self._vehicle_waiting = False
        self._crossing_until: float | None = None
        self._reraise_at: float | None = None
        self._frozen: dict[Table, list[int]] | None = None

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> Bollard:
        params: dict[str, Any] = eq.params
        return cls(
            eq.id,
            travel_s=float(params.get("travel_s", 4.0)),
            passages_per_hour=float(params.get("passages_per_hour", 6.0)),
            rng=rng,
        )

    # ----------------------------------------------------------------------------------------- state
    @property
    def presence(self) -> bool:
        return self.presence_fault or self._crossing_until is not None

    @property
    def position(self) -> int:
        if self.direction != 0:
            return UNKNOWN if self.fault else MOVING
        if self.height <= 0.0:
            return DOWN
        if self.height >= 1.0:
            return UP
        return UNKNOWN  # stopped half-way (fault)

    @property
    def faults(self) -> set[str]:
        out = set()
        if self.fault:
            out.add("bollard_fault")
        if self.presence_fault:
            out.add("presence")
        if self._frozen is not None:
            out.add("frozen")
        return out

    def _rate_per_s(self, t: float) -> float:
        hour = datetime.fromtimestamp(t, UTC).hour  # UTC is close enough for a traffic rhythm
        factor = 1.0 if 6 <= hour < 20 else 0.2
        return self.passages_per_hour * factor / 3600.0

    def _schedule_vehicle(self, t: float) -> None:
        rate = self._rate_per_s(t)
        self._next_vehicle = t + (self.rng.expovariate(rate) if rate > 0 else math.inf)

    def step(self, now_s: float) -> None:
        if self.now is None:
            self.now = now_s
            self._schedule_vehicle(now_s)
            self._evaluate(now_s)
            return
        t = self.now
        while t < now_s:
            nxt = min(now_s, t + MAX_SUBSTEP_S)
            self._move(nxt - t)
            t = nxt
            self.now = t
            self._evaluate(t)

    def _move(self, dt: float) -> None:
        if self.fault or self.direction == 0:
            return
        height = self.height + self.direction * dt / self.travel_s
        self.height = 0.0 if height < 1e-9 else 1.0 if height > 1.0 - 1e-9 else height  # no float dust
        if (self.direction < 0 and self.height <= 0.0) or (self.direction > 0 and self.height >= 1.0):
            self.direction = 0

    def _desired_up(self, t: float) -> bool:
        """Where the bollard wants to be, before the interlock."""
        if self.lease.active and self.command == CMD_LOWER:
            return False
        if self.lease.active and self.command == CMD_RAISE:
            return True
        # local cycle: down while serving a vehicle, up otherwise
        return not (self._vehicle_waiting or self._crossing_until is not None or self._reraise_at is not None)

    def _evaluate(self, t: float) -> None:
        why = self.lease.check(t)
        if why is not None:
            log.info("%s: central command ended (%s), back to local operation", self.id, why)
            self.command = CMD_LOCAL
        # local traffic: authorised vehicles arrive, wait for the bollard to be down, cross the loop
        if self._next_vehicle is not None and t >= self._next_vehicle:
            serving = not (self.lease.active and self.command == CMD_RAISE)  # a central "raise" locks the site
            self._vehicle_waiting = self._vehicle_waiting or serving
            self._schedule_vehicle(t)
        if self._vehicle_waiting and self.height <= 0.0 and not self.fault:
            self._vehicle_waiting = False
            self._crossing_until = t + self.rng.uniform(3.0, 8.0)
        if self._crossing_until is not None and t >= self._crossing_until:
            self._crossing_until = None
            self._reraise_at = t + RERAISE_DELAY_S
        if self._reraise_at is not None and t >= self._reraise_at and not self.presence:
            self._reraise_at = None
        if self.fault:
            return
        want_up = self._desired_up(t)
        if want_up and self.presence:
            # interlock: never rise onto a vehicle; a rising bollard reverses and goes back down, a
            # lowering one carries on, a standing one stays (up stays up: the loop only forbids rising)
            if self.direction > 0:
                log.warning("%s: presence while rising, reversing", self.id)
                self.direction = -1
            return
        if want_up and self.height < 1.0:
            self.direction = 1
        elif not want_up and self.height > 0.0:
            self.direction = -1
        else:
            self.direction = 0

    # ----------------------------------------------------------------------------------------- modbus
    def registers(self, table: Table) -> list[int]:
        if table == "di":
            return [int(self.presence), int(self.fault)]
        if table == "ir":
            return [self.position]
        if table == "hr":
            now = self.now if self.now is not None else 0.0
            return [self.command, self.lease.remaining(now), self.lease.heartbeat]
        return []

    def modbus_write(self, table: Table, address: int, values: Sequence[int]) -> None:
        new = lease_write(self.id, table, address, values)
        now = self.now if self.now is not None else 0.0
        command = new.get(0, self.command)
        if command not in (CMD_LOCAL, CMD_LOWER, CMD_RAISE):
            raise IllegalValue(self.id, f"command must be 0 local, 1 lower or 2 raise, got {command}")
        if 0 in new and command == CMD_RAISE and self.presence:
            log.warning("%s: raise refused, vehicle on the presence loop", self.id)
            raise IllegalValue(self.id, "raise refused: vehicle presence detected")
        if 0 in new and command != CMD_LOCAL and self.fault:
            raise DeviceFailure(self.id, "bollard fault: commands refused")
        if 2 in new:
            self.lease.beat(now, new[2])
        if 0 in new:
            self.command = command
        lease_s = new.get(1)
        if self.command == CMD_LOCAL or lease_s == 0:
            if 0 in new or 1 in new:  # back to local operation, lease cancelled
                self.command = CMD_LOCAL
                self.lease.cancel()
        elif lease_s is not None:
            self.lease.start(now, lease_s)
        elif 0 in new:
            self.lease.start(now, self.lease.remaining(now) or DEFAULT_LEASE_S)
        if 0 in new or 1 in new:
            log.info("%s: central command %d, lease %d s", self.id, self.command, self.lease.remaining(now))
        self._evaluate(now)

    # ----------------------------------------------------------------------------------------- faults
    def inject(self, fault: str, **params: Any) -> None:
        if fault == "bollard_fault":
            self.fault = True
        elif fault == "presence":
            self.presence_fault = True
        elif fault == "frozen":
            self.freeze_image()
        else:
            raise unknown_fault(self.id, fault, self.FAULTS)
        self._fault_changed(f"fault {fault} injected")

    def clear(self, fault: str | None = None, **params: Any) -> None:
        check_fault(self.id, fault, self.FAULTS)
        if fault in (None, "bollard_fault"):
            self.fault = False
        if fault in (None, "presence"):
            self.presence_fault = False
        if fault in (None, "frozen"):
            self.thaw_image()
        self._fault_changed(f"fault {fault or '(all)'} cleared")
