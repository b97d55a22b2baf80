"""Fixtures for the work-order tests: the shipped demo city and crews.yaml, a store in a temporary folder,
and the equipment's active alarms as a plain dict the tests set (what the alarm engine answers in the server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scada.config import CityConfig, load_city
from scada.i18n import get_language, set_language
from scada.workorders import CrewsConfig, WorkOrders, WorkOrderStore, load_crews

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, epoch ms
MIN = 60_000
HOUR = 60 * MIN


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    """The refusal reasons and dispatch texts are built in the process's language (scada.i18n): the assertions
    read the English msgids (test_i18n_texts checks the French)."""
    before = get_language()
    set_language("en")
    yield
    set_language(before)


@pytest.fixture(scope="session")
def city() -> CityConfig:
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


@pytest.fixture(scope="session")
def crews(city: CityConfig) -> CrewsConfig:
    return load_crews(ROOT / "crews.yaml", city)


class Book:
    """A WorkOrders façade on a fresh store, with the alarms each equipment has active and the links seen."""

    def __init__(self, path: Path, city: CityConfig, crews: CrewsConfig) -> None:
        self.active: dict[str, list[str]] = {}
        self.links: list[tuple[str, tuple[str, ...], str]] = []
        self.store = WorkOrderStore(path)
        self.orders = WorkOrders(self.store, city, crews, alarms_active=lambda eq: self.active.get(eq, []),
                                 on_link=lambda links, user, ts: self.links.extend(
                                     (o.id, tuple(alarms), user) for o, alarms in links))


@pytest.fixture
def book(tmp_path: Path, city: CityConfig, crews: CrewsConfig) -> Iterator[Book]:
    b = Book(tmp_path / "workorders.sqlite", city, crews)
    yield b
    b.store.close()
