"""Which equipment a lease was taken on, and which city a data folder serves: short content hashes.

    equipment_fingerprint(city, "C0001") = sha256(id, template, device protocol, device address)[:16]
        the device address is the resolved connection (host, port, unit / serial path, SNMP context...)
    city_fingerprint(city)               = sha256(every equipment's fingerprint, sorted by id)[:16]

A lease records the fingerprint of ITS equipment when it starts (failsafe.leases); at a (re)start a lease
is re-applied only where the equipment with that id is still the same template at the same device
address. The data folder records the city it serves (``<data>/city.json``, scada.datadir): a folder
that served another configuration (the demo's leases in front of the full-scale city, where C0001 is
another cabinet) has its leases dropped, audited, never re-applied. The field side needs none of them
for safety: each device falls back to local control when its own lease or heartbeat stops.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from scada.config.model import CityConfig

DIGEST_CHARS = 16


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def equipment_fingerprint(city: CityConfig, equipment: str) -> str:
    """The fingerprint of ``equipment`` in ``city`` ("" when the city has no such equipment)."""
    eq = city.equipment.get(equipment)
    if eq is None:
        return ""
    dev = city.devices.get(eq.device)
    address = [dev.protocol, dev.connection] if dev is not None else [eq.device]
    return _digest([eq.id, eq.template, address])


def city_fingerprint(city: CityConfig) -> str:
    """The fingerprint of the whole city: every equipment's id, template and device address."""
    return _digest(sorted((e, equipment_fingerprint(city, e)) for e in city.equipment))
