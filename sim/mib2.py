"""MIB-II system group of the SNMP-served models (junction controller, camera).

    sysDescr   description
    sysUpTime  (now − boot time) × 100 cs, wraps at 2**32; before the first step: the initial uptime
    sysName    id

A model using the mixin keeps ``id``, ``description``, ``_t`` (simulation time of its last step, None
before the first), ``_boot_t`` (when it last booted; a power cycle moves it) and ``_initial_uptime_s``
(how long it had been up when the simulation started: the first step sets ``_boot_t = t − that``).
"""

from __future__ import annotations

__all__ = ["WRAP32", "MibSystem"]

WRAP32 = 1 << 32  # TimeTicks and Counter32 wrap here


class MibSystem:
    """Mixin: sysUpTime / sysName / sysDescr of a model (see the module docstring)."""

    id: str
    description: str
    _t: float | None
    _boot_t: float
    _initial_uptime_s: float

    @property
    def uptime_cs(self) -> int:
        """sysUpTime in centiseconds (wraps at 2**32)."""
        if self._t is None:
            return int(self._initial_uptime_s * 100) % WRAP32
        return int(max(0.0, self._t - self._boot_t) * 100 + 1e-3) % WRAP32  # 1e-3: epoch float rounding

    @property
    def sys_name(self) -> str:
        return self.id

    @property
    def sys_descr(self) -> str:
        return self.description
