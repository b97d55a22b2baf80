"""The write fence in the fail-safe layer's DriverWriter: asked immediately before every send; False →
NotLeaseholder (a WriteNotAllowed and a Refused with code not_leaseholder), nothing reaches the driver."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from failsafe.writer import DriverWriter
from scada.config import load_city
from scada.config.model import CityConfig, TagDef
from scada.errors import NotLeaseholder, Refusal, Refused, WriteNotAllowed
from scada.quality import Sample, Value
from server.routes.errors import STATUS
from tests.server.conftest import ROOT


class CountingDriver:
    """A driver stand-in that counts what it is asked to send (the fence must stop before it)."""

    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, Value]] = []

    async def connect(self) -> None:
        return None

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        return [Sample.good(0) for _ in points]

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        self.sent.append((point.name, value))
        return Sample.good(value)


@pytest.fixture(scope="module")
def city() -> CityConfig:
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


async def test_the_fence_refuses_before_the_driver_and_lets_through_when_held(city: CityConfig) -> None:
    tag = next(t for t in city.tags if t.writable and t.name.endswith("override_level"))
    driver = CountingDriver()
    held = [False]
    writer = DriverWriter(city, lambda device: driver, may_write=lambda: held[0])
    with pytest.raises(NotLeaseholder) as refused:
        await writer.write(tag, 100)
    assert isinstance(refused.value, WriteNotAllowed) and isinstance(refused.value, Refused)
    assert refused.value.code is Refusal.NOT_LEASEHOLDER and STATUS[Refusal.NOT_LEASEHOLDER] == 503
    assert driver.sent == [] and writer.fenced == 1 and writer.writes == 0
    held[0] = True
    await writer.write(tag, 100)
    assert driver.sent == [(tag.name, 100)] and writer.writes == 1


async def test_a_single_server_has_no_fence(city: CityConfig) -> None:
    tag = next(t for t in city.tags if t.writable and t.name.endswith("override_level"))
    driver = CountingDriver()
    writer = DriverWriter(city, lambda device: driver)
    await writer.write(tag, 50)
    assert driver.sent == [(tag.name, 50)] and writer.fenced == 0
