"""One typed lifecycle for every server component (as Home Assistant's integrations have setup/unload).

    start(config, tagdb)      bring the subsystem up on this configuration and tag database
    apply(old, new, tagdb)    a validated reload: rebind to the new configuration and tag database;
                              returns what changed (JSON, reported by POST /config/reload)
    health()                  its SubsystemStatus (status, detail, stats) as /health shows it
    aclose()                  stop; safe after a failed or partial start

The assembler (:mod:`server.assemble`) starts the components in order and stops them in reverse; a
component that fails to start is reported ``down`` with the reason and the others run.

    SubsystemStatus: starting ─► ok ◄─► degraded ─► down / unavailable ─► stopped
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from scada.config import CityConfig
from scada.tagdb import TagDatabase

log = logging.getLogger("server.app")  # one logger for every subsystem's state changes

Json = dict[str, Any]
STATUSES = ("starting", "ok", "degraded", "down", "unavailable", "stopped")


@dataclass
class SubsystemStatus:
    name: str
    status: str = "starting"
    detail: str = ""
    since_ns: int = field(default_factory=time.time_ns)
    stats: Callable[[], dict[str, Any]] | None = None
    #: the detail as structured parts, for a client that shows it in its own language (the failover pair's:
    #: server.components.ha): each {"key": its English template, a msgid of the catalogue, "params": {...}}
    messages: list[dict[str, Any]] | None = None

    def set(self, status: str, detail: str = "") -> None:
        if status != self.status or detail != self.detail:
            level = logging.INFO if status in ("ok", "starting", "stopped") else logging.WARNING
            log.log(level, "%s: %s%s", self.name, status, f" ({detail})" if detail else "")
            self.status, self.detail, self.since_ns = status, detail, time.time_ns()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "detail": self.detail, "since_ms": self.since_ns // 1_000_000}
        if self.messages is not None:
            out["messages"] = self.messages
        if self.stats is not None:
            try:
                out["stats"] = self.stats()
            except Exception as exc:  # noqa: BLE001 - a component's stats bug must not break /health: shown there
                out["stats"] = {"error": repr(exc)}
        return out


class Component(Protocol):
    """What the assembler knows of a component."""

    name: str

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None: ...

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> Json: ...

    def health(self) -> SubsystemStatus: ...

    async def aclose(self) -> None: ...
