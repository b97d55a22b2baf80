"""The WebSocket hub (server.hub.Hub) as a component: its flusher runs from start to aclose; a reload
rebinds it to the new configuration and tag database (consoles get a fresh snapshot, reason "reload")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scada.config import CityConfig
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus

if TYPE_CHECKING:
    from server.app import ScadaServer


class HubComponent:
    name = "hub"

    def __init__(self, server: ScadaServer) -> None:
        self.server = server

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        self.server.hub.start()

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        self.server.hub.bind(new, tagdb)
        return {"clients": len(self.server.hub.clients)}

    def health(self) -> SubsystemStatus:
        return self.server.status("api")  # the HTTP side sets it ok once it listens

    async def aclose(self) -> None:
        await self.server.hub.aclose()
