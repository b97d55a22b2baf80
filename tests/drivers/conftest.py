"""Shared helpers for the driver tests: the demo city re-pointed at servers started by the test, and the
simulator's SNMP agent serving the demo junctions (fixture ``agent``; v3 keys AUTH / PRIV)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from scada.config import CityConfig, load_city
from scada.config.model import TagDef
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent

ROOT = Path(__file__).resolve().parents[2]
AUTH, PRIV = "sim-auth-key-1", "sim-priv-key-1"  # the agent fixture's SNMPv3 keys


def demo_city(**endpoints: str) -> CityConfig:
    """The shipped demo city with some logical endpoints re-pointed (``opcua_bms="127.0.0.1:1234"``)."""
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml",
                     endpoint_overrides={k.replace("_", "-"): v for k, v in endpoints.items()})


def models_for(config: CityConfig, template: str, factory: Callable[..., Any], seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    return {eq.id: factory(eq, random.Random(rng.random())) for eq in config.equipment.values()
            if eq.template == template}


def device_points(config: CityConfig, device: str) -> list[TagDef]:
    by_name = config.tag_by_name()
    return [by_name[t] for t in config.devices[device].tags]


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, step: float = 0.01) -> float:
    """Wait until ``predicate()`` is true; return the seconds waited; AssertionError on timeout."""
    t0 = time.monotonic()
    while True:
        got = predicate()
        if not isinstance(got, bool):
            got = await got
        if got:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


@contextlib.asynccontextmanager
async def snmp_agent(template: str, factory: Callable[..., Any]) -> AsyncIterator[tuple[SnmpAgent, dict[str, Any]]]:
    """The simulator's SNMP agent serving the demo city's ``template`` equipment (models made by ``factory``,
    stepped to now; v3 keys AUTH / PRIV) on 127.0.0.1, for the block."""
    models = models_for(demo_city(), template, factory)
    now = time.time()
    for m in models.values():
        m.step(now)
    a = SnmpAgent(models, v3_auth_key=AUTH, v3_priv_key=PRIV)
    await a.start()
    try:
        yield a, models
    finally:
        await a.aclose()


@pytest.fixture
async def agent() -> AsyncIterator[tuple[SnmpAgent, dict[str, JunctionController]]]:
    async with snmp_agent("junction", JunctionController.from_equipment) as (a, models):
        yield a, models
