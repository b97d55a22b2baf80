"""CCTV camera: a pure model of what the SNMP agent serves (MIB-II system/interfaces + recording flag).

Time is passed in (``step(now_s)``, simulation epoch seconds); nothing here reads a clock.

    served value            source
    ─────────────────────   ────────────────────────────────────────────────────────────────────
    sysUpTime (cs)          (now − boot time) × 100, wraps at 2**32; restarts at 0 after a power cycle
    ifOperStatus.1          up(1) while online, down(2) with the ``offline`` fault
    ifInOctets.1            grows at the camera's rate while online (Counter32, wraps at 2**32)
    recording (99999.2.1)   1 while online and recording to the NVR, else 0

Faults (``inject(name, **params)`` / ``clear(name | None)``):

``offline``        the video link is down: ifOperStatus down(2), ifInOctets stops, recording 0
                   (the management agent still answers; "no answer" is the agent's comm fault)
``not_recording``  the NVR stopped recording this camera: recording 0
``power_cycle``    off_s=0.0: mute for off_s (``powered`` False, the agent does not answer), then
                   boots: sysUpTime and ifInOctets restart from 0
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from sim.faults import check_fault, unknown_fault
from sim.mib2 import WRAP32, MibSystem

if TYPE_CHECKING:
    from scada.config import EquipmentDef

__all__ = ["FAULTS", "Camera"]

FAULTS = ("offline", "not_recording", "power_cycle")
IF_UP = 1
IF_DOWN = 2


class Camera(MibSystem):
    """An IP camera as seen over SNMP (see the module docstring)."""

    FAULTS = FAULTS

    def __init__(
        self,
        camera_id: str,
        *,
        in_rate_bps: float = 40_000.0,
        initial_uptime_s: float = 0.0,
        initial_octets: int = 0,
        description: str = "",
    ) -> None:
        if in_rate_bps < 0:
            raise ValueError(f"{camera_id}: in_rate_bps must be >= 0, got {in_rate_bps}")
        self.id = camera_id
        self.description = description or f"IP camera {camera_id} (simulated)"
        self.in_rate_bps = float(in_rate_bps)  # bytes per second received (control, NVR acks)
        self._initial_uptime_s = float(initial_uptime_s)
        self._t: float | None = None
        self._boot_t = 0.0
        self._octets = float(initial_octets)
        self._offline = False
        self._not_recording = False
        self._off_until: float | None = None

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> Camera:
        """A camera for an inventory row (deterministic for ``rng``)."""
        ident = eq.identity or {}
        descr = " ".join(str(ident.get(k, "")) for k in ("manufacturer", "model")).strip()
        return cls(
            eq.id,
            in_rate_bps=rng.uniform(20_000.0, 80_000.0),
            initial_uptime_s=rng.uniform(600.0, 200 * 86400.0),
            initial_octets=rng.randrange(0, WRAP32),
            description=f"{descr} IP camera {eq.id} (simulated)".strip(),
        )

    # ------------------------------------------------------------------ time

    @property
    def now_s(self) -> float | None:
        return self._t

    def step(self, now_s: float) -> None:
        """Advance to simulation time ``now_s`` (no-op if not later than the last step)."""
        if self._t is None:
            self._t = now_s
            self._boot_t = now_s - self._initial_uptime_s
            return
        if now_s <= self._t:
            return
        t0 = self._t
        if self._off_until is not None:
            if now_s < self._off_until:
                self._t = now_s
                return
            t0 = self._off_until
            self._boot(t0)
        if self.online:
            self._octets += (now_s - t0) * self.in_rate_bps
        self._t = now_s

    def _boot(self, t: float) -> None:
        self._off_until = None
        self._boot_t = t
        self._octets = 0.0

    # ------------------------------------------------------------------ served values

    @property
    def powered(self) -> bool:
        return self._off_until is None

    @property
    def online(self) -> bool:
        return self.powered and not self._offline

    @property
    def if_oper_status(self) -> int:
        """ifOperStatus.1: up(1) or down(2)."""
        return IF_UP if self.online else IF_DOWN

    @property
    def recording(self) -> bool:
        return self.online and not self._not_recording

    @property
    def in_octets(self) -> int:
        """ifInOctets.1 (Counter32)."""
        return int(self._octets) % WRAP32

    def status(self) -> dict[str, int]:
        """Served values keyed like the tags of the camera template."""
        return {
            "uptime": self.uptime_cs,
            "link": self.if_oper_status,
            "in_octets": self.in_octets,
            "recording": int(self.recording),
        }

    # ------------------------------------------------------------------ faults

    def inject(self, fault: str, **params: Any) -> None:
        """Inject a fault (offline, not_recording, power_cycle[off_s])."""
        if "now_s" in params:
            self.step(float(params.pop("now_s")))
        if fault == "offline":
            self._offline = True
        elif fault == "not_recording":
            self._not_recording = True
        elif fault == "power_cycle":
            t = self._t if self._t is not None else 0.0
            off_s = max(0.0, float(params.get("off_s", 0.0)))
            if off_s > 0:
                self._off_until = t + off_s
            else:
                self._boot(t)
        else:
            raise unknown_fault(self.id, fault, FAULTS)

    def clear(self, fault: str | None = None, **params: Any) -> None:
        """Clear one fault, or all with None (clearing power_cycle powers the camera back now)."""
        check_fault(self.id, fault, FAULTS)
        if "now_s" in params:
            self.step(float(params["now_s"]))
        if fault in (None, "offline"):
            self._offline = False
        if fault in (None, "not_recording"):
            self._not_recording = False
        if fault in (None, "power_cycle") and self._off_until is not None:
            self._boot(self._t if self._t is not None else 0.0)

    def __repr__(self) -> str:
        return f"Camera({self.id!r}, online={self.online}, recording={self.recording})"
