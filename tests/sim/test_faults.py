"""Every device model refuses a fault name it does not know, with one wording (sim.faults)."""

from __future__ import annotations

import random
import re
from functools import cache
from pathlib import Path

import pytest

from scada.config import CityConfig, load_city
from sim.faults import check_fault, unknown_fault
from sim.runner import MODEL_CLASSES, model_class

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_773_100_800.0  # 2026-03-10 00:00 UTC


@cache
def city() -> CityConfig:
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


def test_check_fault_passes_known_names_and_none() -> None:
    check_fault("X1", None, ("a", "b"))
    check_fault("X1", "b", ("a", "b"))
    with pytest.raises(ValueError, match=re.escape("X1: unknown fault 'c' (known: a, b)")):
        check_fault("X1", "c", ("a", "b"))
    assert str(unknown_fault("X1", "c", ["a"])) == "X1: unknown fault 'c' (known: a)"


@pytest.mark.parametrize("template", sorted(MODEL_CLASSES))
def test_unknown_fault_wording_is_the_same_for_every_model(template: str) -> None:
    eq = next(e for e in city().equipment.values() if e.template == template)
    cls = model_class(template)
    assert cls is not None
    model = cls.from_equipment(eq, random.Random(1))
    model.step(T0)
    expected = f"{eq.id}: unknown fault 'meteor' (known: {', '.join(cls.FAULTS)})"
    for call in (model.inject, model.clear):
        with pytest.raises(ValueError) as info:
            call("meteor")
        assert str(info.value) == expected
    model.clear()  # None clears every fault
