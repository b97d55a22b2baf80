"""The fail-safe layer's stores, watched: writable or a P1 alarm, and leases only for this city's equipment.

    every 0.5 s  StoreWatch.check()
      audit log      <data>/failsafe/audit/ (segments, failsafe.audit) accepts a new segment, its newest
                     segment and its ``head`` anchor open for appending, and the gate takes commands: after
                     an append of its own failed, the first probe that passes re-arms it with a real append
                     (CommandGate.recheck_audit: ``audit_writable_again``; failing, retried every 5 s)
                                            ────────────────────────► system.failsafe.audit_unwritable (P1)
      lease store    <data>/failsafe/ accepts a new file, leases.json is a regular file that opens for
                     writing, and the last save worked (LeaseManager.store_error)
                                                            ─────────► system.failsafe.lease_store_unwritable (P1)
      either failing → StoreWatch.problems → /health "failed" (server.components.health.overall_status)

    at start     <data>/city.json (scada.datadir) names the city the folder served last
                 (failsafe.fingerprint.city_fingerprint). Another city → leases.json is set aside
                 (leases.json.other-config-<UTC>), each of its leases journalled ``lease_dropped`` with the
                 reason, never re-applied; the lease manager also drops any lease whose own equipment
                 fingerprint differs (start and reload) ─► system.failsafe.lease_foreign_dropped (P3, pulse)
                 then city.json records this city.

Why probes: the audit log and the lease store are written only when something happens (a command, a
lease change), and a broken store must be annunciated when it breaks, not at the next command. The
probes write nothing: an unnamed O_TMPFILE in each folder, an open for appending of each file. Tests run
as root, where permission bits stop nothing; a file replaced by a directory, or ``chattr +i``, does. (The one
write: the gate's re-arm, only once its own append has failed and the probe passes again.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from failsafe.fingerprint import city_fingerprint
from failsafe.leases import Lease, set_aside
from failsafe.service import Failsafe
from scada.config import CityConfig
from scada.datadir import probe_dir, probe_file, read_city_record, write_city_record

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)

AUDIT_KEY = "failsafe/audit/unwritable"  # the gate's own alarm key for a failed append
EVERY_S = 0.5
REARM_RETRY_S = 5.0  # while the probe passes but the gate's appends still fail: one retry this often


class StoreWatch:
    """Probes the fail-safe stores, raises/clears their P1 alarms, and keeps leases to their city."""

    def __init__(self, server: ScadaServer, every_s: float = EVERY_S) -> None:
        self.server = server
        self.every_s = every_s
        self.fs: Failsafe | None = None
        self.problems: list[str] = []  # what /health reports as "failed"
        self._checking = False
        self._rearm_at = 0.0  # monotonic time of the next re-arm attempt of the gate (_gate_audit)
        self._raised: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the city a folder serves
    def set_aside_foreign(self, config: CityConfig) -> tuple[list[Lease], str]:
        """Before the layer is built at start: if the data folder served another city, set its lease store
        aside. Returns (the leases that were in force there, why)."""
        data = self.server.data_dir
        record = read_city_record(data)
        mine = city_fingerprint(config)
        if record is None or record.get("fingerprint") == mine:
            return [], ""
        why = (f"the data folder served another configuration (city fingerprint {record.get('fingerprint')}, "
               f"site {record.get('site')!r}, {record.get('equipment')} equipment; this one is {mine}, site "
               f"{config.site!r}, {len(config.equipment)} equipment): lease not re-applied")
        suffix = "other-config-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        leases = set_aside(data / "failsafe" / "leases.json", suffix)
        log.warning("%s: leases.json set aside as leases.json.%s: %s", data, suffix, why)
        return leases, why

    def started(self, fs: Failsafe, config: CityConfig, foreign: list[Lease] | None = None, why: str = "") -> None:
        """The layer runs on ``config``: journal the leases dropped, annunciate them, record the city, watch."""
        self.fs = fs
        if foreign:
            fs.leases.record_dropped(foreign, why)
        if fs.leases.dropped:
            self._alarm("lease_foreign_dropped", True)  # a pulse: one unacknowledged alarm for the lot
            fs.leases.dropped = []
        try:
            write_city_record(self.server.data_dir, city_fingerprint(config), site=config.site,
                              equipment=len(config.equipment))
        except OSError as exc:
            log.error("%s: cannot record the city this folder serves: %s", self.server.data_dir, exc)
        self.check()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="failsafe-store-watch")

    # ------------------------------------------------------------------ writability
    def gate_audit(self, failed: bool) -> None:
        """The gate's own report (an append failed / worked again): look again now, not at the next probe. Just
        after a failure, a re-arm would only fail again: the next one waits ``REARM_RETRY_S`` (unless the probe
        sees the failure too, and then its end)."""
        if failed:
            self._rearm_at = time.monotonic() + REARM_RETRY_S
        if not self._checking:  # a report from the gate's re-arm inside check() itself: that check goes on
            self.check()

    def check(self) -> list[str]:
        fs = self.fs
        if fs is None:
            return self.problems
        audit = self._probe_audit(fs.audit.path)
        if audit:
            self._rearm_at = 0.0  # once the probe passes again, the gate is re-armed at once
        else:
            self._checking = True
            try:
                audit = self._gate_audit(fs)
            finally:
                self._checking = False
        leases = self._probe_leases(fs.leases.store) or (f"lease store {fs.leases.store_error}"
                                                        if fs.leases.store_error else "")
        self._alarm("audit_unwritable", bool(audit))
        self._alarm("lease_store_unwritable", bool(leases))
        self.problems = [p for p in (audit, leases) if p]
        return self.problems

    def _gate_audit(self, fs: Failsafe) -> str:
        """The probe found the log writable: so must the gate, which holds it unwritable from a failed append of
        its own until one works. It appends little while it refuses, so it is re-armed from here with a real
        append (CommandGate.recheck_audit); a log the probe cannot see failing (a full disk) is retried every
        ``REARM_RETRY_S``, and at once after the probe itself saw it fail and recover."""
        gate = fs.gate
        if gate.audit_writable:
            return ""
        now = time.monotonic()
        if now >= self._rearm_at and gate.recheck_audit():
            self._rearm_at = 0.0
            return ""
        self._rearm_at = max(self._rearm_at, now + REARM_RETRY_S)
        return f"audit log {fs.audit.path}: the last append failed"

    @staticmethod
    def _probe_audit(path: Path) -> str:
        """A single log file (opens for appending), or a folder of segments (accepts a new segment; the newest
        segment and the anchor open for writing)."""
        try:
            if path.is_dir():
                probe_dir(path)
                segments = sorted(path.glob("*.log"))
                for f in (*segments[-1:], path / "head"):
                    probe_file(f)
            elif path.exists() or path.is_symlink():
                probe_file(path)
            else:
                probe_dir(path.parent)
        except OSError as exc:
            return f"audit log {path} not writable: {exc.strerror or exc}"
        return ""

    @staticmethod
    def _probe_leases(store: Path | None) -> str:
        if store is None:
            return ""
        try:
            probe_dir(store.parent)  # saved as leases.json.tmp, then renamed over leases.json
            probe_file(store)
        except OSError as exc:
            return f"lease store {store} not writable: {exc.strerror or exc}"
        return ""

    def _alarm(self, code: str, active: bool) -> None:
        pulse = code == "lease_foreign_dropped"
        if not pulse and self._raised.get(code, False) == active:
            return
        self._raised[code] = active
        if active:
            log.error("fail-safe store: %s raised", code)
        sink = self.server.system_alarms
        if sink is not None:
            sink.raise_("failsafe", code, "", active)

    async def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # the watch must outlive one failed pass: it is what says the stores broke (logged)
                log.exception("fail-safe store watch failed")
            await asyncio.sleep(self.every_s)

    async def aclose(self) -> None:
        self.fs = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
