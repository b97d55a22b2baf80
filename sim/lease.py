"""Central-command lease with a supervisory heartbeat watchdog (the field side of the fail-safe principle).

Shared by the Modbus-served models (lighting cabinet, bollard): hr:0 holds the central request (override
level, command), hr:1 the lease seconds left, hr:2 the supervisory heartbeat counter; ``lease_write``
decodes a write to that block.

                 start(now, s > 0)                        now ≥ expires_at         → "expired"
      LOCAL ───────────────────────────▶ CENTRAL ──────────────────────────────────────▶ LOCAL
        ▲        (arms the watchdog)        │ now − last_alive ≥ WATCHDOG_S           → "central_lost"
        └───────────────────────────────────┘ start(now, 0) / cancel()                 → "cancelled"

last_alive moves on every change of the heartbeat value and on every new request (a central that
writes is alive). The device never waits for the central system to come back: when the lease ends
for whatever reason it returns to local operation at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sim.modbus_map import IllegalAddress, Table

__all__ = ["LEASE_REGISTERS", "WATCHDOG_S", "Lease", "lease_write"]

LEASE_REGISTERS = 3  # hr:0 request, hr:1 lease seconds, hr:2 heartbeat

WATCHDOG_S = 60.0


class Lease:
    __slots__ = ("expires_at", "heartbeat", "last_alive", "watchdog_s")

    def __init__(self, watchdog_s: float = WATCHDOG_S) -> None:
        self.expires_at: float | None = None
        self.heartbeat = 0
        self.last_alive: float | None = None
        self.watchdog_s = watchdog_s

    @property
    def active(self) -> bool:
        return self.expires_at is not None

    def remaining(self, now: float) -> int:
        """Whole seconds left (rounded up), 0 when no lease is in force."""
        if self.expires_at is None:
            return 0
        return max(0, min(0xFFFF, math.ceil(self.expires_at - now - 1e-9)))

    def start(self, now: float, seconds: int) -> None:
        """A new central request for ``seconds`` (0 ends the lease)."""
        if seconds <= 0:
            self.expires_at = None
            return
        self.expires_at = now + seconds
        self.last_alive = now

    def cancel(self) -> None:
        self.expires_at = None

    def beat(self, now: float, value: int) -> None:
        if value != self.heartbeat:
            self.heartbeat = value
            self.last_alive = now

    def central_alive(self, now: float) -> bool:
        return self.last_alive is not None and now - self.last_alive < self.watchdog_s

    def check(self, now: float) -> str | None:
        """End the lease if it ran out or the central system went quiet; returns why (or None)."""
        if self.expires_at is None:
            return None
        if now >= self.expires_at:
            self.expires_at = None
            return "expired"
        if not self.central_alive(now):
            self.expires_at = None
            return "central_lost"
        return None

    def next_deadline(self) -> float | None:
        """The earliest time at which check() can end the lease (for exact sub-stepping)."""
        if self.expires_at is None:
            return None
        if self.last_alive is None:
            return self.expires_at
        return min(self.expires_at, self.last_alive + self.watchdog_s)


def lease_write(equipment_id: str, table: Table, address: int, values: Sequence[int]) -> dict[int, int]:
    """The registers a Modbus write sets in the hr:0-2 block, ``{address: value}``; IllegalAddress elsewhere."""
    if table != "hr" or address < 0 or address + len(values) > LEASE_REGISTERS or not values:
        raise IllegalAddress(equipment_id, f"{table}:{address}+{len(values)} is not writable")
    return {address + k: int(v) for k, v in enumerate(values)}
