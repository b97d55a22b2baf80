"""Device-fault names: one check and one wording for a fault a model does not know.

Every device model declares ``FAULTS``, the names its ``inject(fault, **params)`` and
``clear(fault | None)`` accept (see docs/contracts.md, "Simulator contract"):

    inject("lamp_failure")  ─▶ if/elif over the model's faults … else: raise unknown_fault(...)
    clear("lamp_failure")   ─▶ check_fault(...) first (None = clear every fault), then the resets

Both refuse a name outside ``FAULTS`` with ``ValueError("<id>: unknown fault 'x' (known: a, b, …)")``,
which the control API answers with 400 and the scenario checker lists.

Models that derive their outputs at the current time (lighting cabinet, bollard) take the
``Reevaluating`` mixin: after an inject/clear between two steps, ``_fault_changed`` logs it (on the
model's own module logger) and re-derives the outputs at once instead of at the next step.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

__all__ = ["Reevaluating", "check_fault", "unknown_fault"]


def unknown_fault(model_id: str, fault: str, known: Collection[str]) -> ValueError:
    """The error for a fault name that ``known`` (the model's ``FAULTS``) does not list."""
    return ValueError(f"{model_id}: unknown fault {fault!r} (known: {', '.join(known)})")


def check_fault(model_id: str, fault: str | None, known: Collection[str]) -> None:
    """Refuse a fault name outside ``known``; None (every fault, for ``clear``) passes."""
    if fault is not None and fault not in known:
        raise unknown_fault(model_id, fault, known)


class Reevaluating:
    """Mixin: log a fault change and re-derive the outputs now (see the module docstring)."""

    id: str
    now: float | None  # simulation time of the last step, None before the first

    def _evaluate(self, t: float) -> None:
        raise NotImplementedError

    def _fault_changed(self, what: str) -> None:
        """Log ``what`` (e.g. "fault frozen cleared") and, once stepped, re-evaluate at the current time."""
        logging.getLogger(type(self).__module__).info("%s: %s", self.id, what)
        if self.now is not None:
            self._evaluate(self.now)
