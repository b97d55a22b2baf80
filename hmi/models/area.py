"""A console's area of responsibility: the communes and services it watches (pure, no Qt).

    Area(communes={"Dijon", "Talant"}, services={"lighting"})
        accepts(alarm)  commune in communes (or no commune chosen) AND service in services (or none chosen)
        text            "Dijon, Talant · lighting"   ("whole city" when nothing is chosen)

The alarm store holds the console's area (:attr:`hmi.models.alarms.AlarmStore.area`): its banner
counts, list, map levels and commune counts only see the alarms the area accepts, so every widget
that reads the store follows the area with no filter of its own. An empty set means "all" for that
axis: a console that chose only services still watches every commune.

Per user on this workstation, :func:`to_json` / :func:`from_json` are what the console's settings keep
(see :mod:`hmi.area`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from hmi.style import domain_text
from scada.i18n import _


class HasPlace(Protocol):
    commune: str
    area: str
    service: str


@dataclass(frozen=True, slots=True)
class Area:
    communes: frozenset[str] = field(default_factory=frozenset)
    services: frozenset[str] = field(default_factory=frozenset)

    @property
    def everything(self) -> bool:
        return not self.communes and not self.services

    def accepts(self, alarm: HasPlace) -> bool:
        if self.communes:
            wanted = {c.lower() for c in self.communes}
            if alarm.commune.lower() not in wanted and alarm.area.lower() not in wanted:
                return False
        return not self.services or alarm.service in self.services

    @property
    def text(self) -> str:
        """The status bar's words: "Dijon, Talant · lighting", "whole city", "all communes · fire"."""
        if self.everything:
            return _("whole city")
        communes = ", ".join(sorted(self.communes)) if self.communes else _("all communes")
        return communes + (" · " + ", ".join(sorted(domain_text(s) for s in self.services)) if self.services else "")


WHOLE_CITY = Area()


def to_json(area: Area) -> dict[str, list[str]]:
    return {"communes": sorted(area.communes), "services": sorted(area.services)}


def from_json(data: Any) -> Area:
    """An area from what :func:`to_json` wrote; anything unreadable is the whole city (a console must
    never hide alarms because its settings file was damaged)."""
    if not isinstance(data, dict):
        return WHOLE_CITY
    communes, services = data.get("communes"), data.get("services")
    if not isinstance(communes, list) or not isinstance(services, list):
        return WHOLE_CITY
    return Area(frozenset(str(c) for c in communes), frozenset(str(s) for s in services))
