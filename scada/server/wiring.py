"""Composition root proper: find each subsystem of this build by module name and adapt it.

Subsystems live in other packages (``scada.poll`` + ``drivers``, ``scada.alarms`` + ``scada.journal``,
``historian``, ``failsafe``); the core must not import protocol libraries, ``drivers`` or ``sim``
statically, so every subsystem is reached with :func:`importlib.import_module` here and wrapped in an
adapter implementing :mod:`scada.server.services`. A subsystem whose module is missing is reported
``unavailable`` on /health; one that fails to start is ``down`` with the reason; the others run.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scada.server.app import ScadaServer

log = logging.getLogger(__name__)


def find(module: str) -> ModuleType | None:
    """The module if it is part of this build, else None (an error inside it propagates)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module)


async def start_all(server: ScadaServer) -> None:
    for name, module in (("journal", "scada.journal"), ("alarms", "scada.alarms"), ("historian", "historian"),
                         ("failsafe", "failsafe.gate"), ("poll", "scada.poll")):
        st = server.status(name)
        try:
            if find(module) is None:
                st.set("unavailable", f"{module} is not in this build")
        except Exception as exc:  # a broken subsystem must not stop the others
            log.exception("%s: cannot load %s", name, module)
            st.set("down", f"cannot load {module}: {exc!r}")
