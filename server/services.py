"""What the API needs from each subsystem, as small protocols (the routes see nothing else).

The server's components (:mod:`server.components`) set them on the server while their subsystem
runs; the API only sees these protocols, so a subsystem's internal API can move without touching the
routes, and a subsystem that is not running is a clear 503, never a crash::

    routes ──► AlarmService / JournalService    ◄── server.components.alarms (over scada.alarms, scada.journal)
               HistorianService                 ◄── historian.service.Historian (the façade itself)
               CommandService / CrisisService   ◄── failsafe.service.Failsafe (the façade itself)

Every action takes the acting user; implementations raise :class:`scada.errors.Refused` (what was
asked, why not, a :class:`scada.errors.Refusal` code the routes map to an HTTP status) and change
nothing in that case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

Json = dict[str, Any]


class AlarmService(Protocol):
    def active(self, diagnostic: bool = False, limit: int = 20_000, *, area: str | None = None,
               priorities: Sequence[int] | None = None, service: str | None = None, equipment: str | None = None,
               states: Sequence[str] | None = None, lang: str | None = None) -> tuple[int, list[Json]]:
        """Alarms not in normal state (active, unacknowledged, shelved, suppressed, out of service) that match
        the filters, as ``(total matching, the first `limit` of them)``: annunciated ones first (priority 1 on
        top, then newest), then the hidden ones. Filtered in the engine's arrays, not on built dicts.
        ``priorities`` 1..4, 5 = diagnostic (never annunciated; only with ``diagnostic`` or asked for);
        ``area`` compares commune slugs; ``states`` are state labels (e.g. ``unack``). Messages in ``lang``
        (default: the server's language)."""
        ...

    def action(self, action: str, alarm_ids: list[str], user: str, params: Json) -> list[Json]:
        """ack | shelve | unshelve | suppress | unsuppress | out_of_service | return_to_service | reset."""
        ...

    def subscribe(self, callback: Callable[[Json], None]) -> Callable[[], None]:
        ...

    def summary(self, area: str | None) -> Json:
        """Banner counts: unacknowledged, acknowledged, shelved, suppressed, out of service, per priority, floods."""
        ...

    def console(self, area: str | None, service: str | None, group_by: str, grouped: bool | None,
                limit: int, lang: str | None = None) -> Json:
        """The console list: priority 1 individually on top; the rest grouped while a flood lasts; messages
        in ``lang`` (default: the server's language)."""
        ...

    def stats(self) -> Json:
        ...


class JournalService(Protocol):
    def query(self, filters: Json, limit: int, offset: int, lang: str | None = None) -> list[Json]:
        """Journal rows, newest first; messages in ``lang`` (default: the server's language)."""
        ...

    def config_change(self, user: str, source: str, applied: bool, detail: str) -> None:
        """Journal a configuration reload (applied or refused) for the maintenance teams."""
        ...

    def stats(self) -> Json:
        ...


class HistorianService(Protocol):
    def raw(self, tag: str, start_ns: int, end_ns: int, limit: int) -> list[Json]:
        ...

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_s: float, functions: list[str]) -> Json:
        """``{"points": [...], "source": raw|rollup|mixed, "resolution_s": ..., "raw_from_ms": ...}``"""
        ...

    def decimated(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> Json:
        """Like :meth:`aggregate`: the points and where they come from."""
        ...

    def stats(self) -> Json:
        ...


class CommandService(Protocol):
    def vocabulary(self) -> Json:
        ...

    async def submit(self, user: str, role: str, workstation: str, request: Json) -> Json:
        """Select (select-before-operate types) or run a command; returns its record with ``state``."""
        ...

    async def operate(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        ...

    async def approve(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        ...

    async def cancel(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        ...

    def status(self, command_id: str) -> Json | None:
        ...

    def history(self, equipment: str | None, limit: int, before: int | None = None) -> list[Json]:
        """Audit entries newest first (``before``: seq cursor of the next page); blocking: use a worker thread."""
        ...

    def pending(self) -> list[Json]:
        """Tickets awaiting approval or operate (the approvers' and operators' to-do list)."""
        ...

    def stats(self) -> Json:
        ...


class CrisisService(Protocol):
    def plans(self) -> list[Json]:
        ...

    async def run(self, name: str, user: str, role: str, workstation: str, dry_run: bool) -> Json:
        ...
