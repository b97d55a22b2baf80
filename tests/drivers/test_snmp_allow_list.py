"""The SNMP driver's own SET allow-list: defence in depth behind the fail-safe vocabulary.

Even when tags.yaml wrongly declares a signal-head / channel / phase-timing object writable, the
driver refuses the SET before any packet leaves (no agent is even needed to show it).
"""

from __future__ import annotations

import dataclasses

import pytest

from drivers.snmp import SET_ALLOW_LIST, SnmpDriver
from scada.config import load_city
from scada.errors import WriteNotAllowed

FORBIDDEN = {
    "channelStatusGroupGreens": "1.3.6.1.4.1.1206.4.2.1.8.4.1.4.1",
    "phaseMinimumGreen.1": "1.3.6.1.4.1.1206.4.2.1.1.2.1.4.1",
    "phaseControlGroupHold.1": "1.3.6.1.4.1.1206.4.2.1.1.5.1.4.1",
    "unitStartUpFlash": "1.3.6.1.4.1.1206.4.2.1.3.1.0",
    "coordOperationalMode": "1.3.6.1.4.1.1206.4.2.1.4.1.0",
    "unitControl": "1.3.6.1.4.1.1206.4.2.1.3.10.0",
}


def test_allow_list_is_exactly_the_ntcip_system_requests() -> None:
    assert SET_ALLOW_LIST == {"1.3.6.1.4.1.1206.4.2.1.4.14.0", "1.3.6.1.4.1.1206.4.2.1.3.3.0"}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
async def test_set_outside_the_allow_list_is_refused_before_any_packet(name: str) -> None:
    city = load_city("tags.yaml", "alarms.yaml")
    junction = city.devices["J001"]
    template = next(t for t in city.tags if t.device == "J001" and t.tag == "system_pattern_control")
    rogue = dataclasses.replace(template, name=f"{template.name}-rogue", address=FORBIDDEN[name], access="rw")
    driver = SnmpDriver(junction)  # never connected: the refusal must come first
    with pytest.raises(WriteNotAllowed, match="outside the SNMP allow-list"):
        await driver.write(rogue, 1)
    assert driver.requests == 0
