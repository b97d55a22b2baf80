"""The supervisory server: one asyncio process, the composition root of the system.

    settings (server.yaml + options)      tags.yaml + alarms.yaml (+ simulator endpoints JSON)
            │                                        │ load_city: every problem printed, refuse to start
            ▼                                        ▼
    ┌─────────────────────────────────────────── ScadaServer ────────────────────────────────────────────┐
    │ users.sqlite ─ TokenManager ─ LoginLimiter ─ AuditTrail (audit.sqlite)                             │
    │                                                                                                    │
    │ field-safety thread (server.components.safety), junction devices only:                             │
    │   own poller ──samples──► fail-safe monitor decides first ──the same readings──┐                   │
    │ poll scheduler + drivers, every other device ──samples──► TagDatabase ◄────────┘                   │
    │   (scada.poll; drivers from drivers.registry)               │ changes                              │
    │                                                             ├──► alarm engine ─► journal           │
    │                                                             ├──► historian (embedded)              │
    │                                                             └──► Hub ─► WebSocket                  │
    │ API ─► fail-safe gate ─► driver write (a junction's: on the field-safety thread) ─► read-back      │
    │ uvicorn (FastAPI app from server.api), TLS when configured                                         │
    └────────────────────────────────────────────────────────────────────────────────────────────────────┘

This module is the server's state only: stores, configuration, tag database, the services the API
calls (set by the components), status per subsystem, reload and backup. Which components run, and in
which order, is :mod:`server.assemble`'s (``open`` here first: audit → users → config → tag database →
hub; then the components: journal + alarm engine → historian → poll (the junctions' field-safety thread
first) → fail-safe (its monitor attached to that thread) → stale sweeper → health → hub flusher; stop in
reverse, then ``aclose`` here closes the stores).

A component that fails to start is reported on ``/health`` (status ``down`` with the reason, or
``unavailable``) while the rest keeps serving. Configuration problems are different: the server
refuses to start and prints every one.

Reload (``scada reload``, SIGHUP or ``POST /api/v1/config/reload``) is all or nothing (server.reload):
the files are validated (a running fail-safe layer also needs its commands.yaml), a new tag database is
built (live values of unchanged tags carried over) and every component prepares its new state aside; any
problem refuses the whole reload, journalled and audited with every problem, and nothing changes. A change
of the safety configuration (failsafe.changes: matrices, layouts, interlocks, verbs, the monitor's
settings) then waits for a second person with an approver role (``config_changes``; approved: validated
again, the same files, then applied). Otherwise every component switches; one failing after preparation
rolls them all back and raises a P1 system alarm (``reload_failed_<component>``). Pending tickets, select
windows and rate windows carry over into the new gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from failsafe.changes import ChangeControl, ConfigChange, safety_diff
from failsafe.service import Failsafe
from scada.alarms.system import SystemAlarmSink, system_tags
from scada.config import CityConfig
from scada.config.model import TagDef
from scada.errors import CommandRejected, ConfigError, ConfigProblem, Refusal, Refused
from scada.format import set_timezone
from scada.i18n import set_language
from scada.poll import device_stat_tags
from scada.tagdb import TagDatabase
from scada.users import UserStore
from server.audit import AuditTrail
from server.auth import LoginLimiter, TokenManager
from server.components.base import STATUSES, Component, SubsystemStatus
from server.components.health import health_tag_defs, overall_status, process_stats
from server.hub import Hub
from server.reload import (
    Candidate,
    ReloadFailed,
    ReloadRefused,
    apply_all,
    carry_over,
    check_candidate,
    describe_diff,
    diff_configs,
    discard_all,
    prepare_all,
)
from server.services import (
    AlarmService,
    CommandService,
    CrisisService,
    HistorianService,
    JournalService,
)
from server.settings import ServerSettings

log = logging.getLogger(__name__)

__all__ = ["STATUSES", "ScadaServer", "SubsystemStatus", "build_tagdb", "process_stats"]


def extra_tags(config: CityConfig) -> list[TagDef]:
    """Tags the server adds to the city's: per-device poll statistics (``system/devices/<dev>/<stat>``), the
    server's own health (``system/server/<subsystem>/status``, buffer level, consoles...) and the conditions
    behind the system alarms (``<junction>/failsafe/conflicting_green``, ``system/historian/buffer_high``...)."""
    return [*device_stat_tags(config), *health_tag_defs(), *system_tags(config)]


def build_tagdb(config: CityConfig) -> TagDatabase:
    return TagDatabase([*config.tags, *extra_tags(config)])


class ScadaServer:
    """Everything one server process holds. ``server.assemble.start`` opens it and starts the components;
    ``server.assemble.stop`` stops them and closes it."""

    def __init__(self, settings: ServerSettings, endpoint_overrides: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.endpoint_overrides = endpoint_overrides
        self.config: CityConfig
        self.tagdb: TagDatabase
        self.hub: Hub
        self.audit: AuditTrail
        self.users: UserStore
        self.tokens = TokenManager(settings.token_ttl, idle_s=settings.session.idle_timeout,
                                   read_only_idle_s=settings.session.read_only_idle_timeout)
        self.limiter: LoginLimiter  # its state lives in users.sqlite: made in open()
        self.alarms: AlarmService | None = None
        self.journal: JournalService | None = None
        self.historian: HistorianService | None = None
        self.commands: CommandService | None = None
        self.crisis: CrisisService | None = None
        self.system_alarms: SystemAlarmSink | None = None  # set by the alarm component
        #: a failover standby following its active (set by server.components.ha): its reload takes the active's
        #: files, whose safety change a second person approved there (the ha component refuses any other files)
        self.follows_active: Callable[[], bool] = lambda: False
        self.components: dict[str, Component] = {}  # the started ones, in start order
        self.subsystems: dict[str, SubsystemStatus] = {}
        self.started_ns = 0
        self.opened = False  # open() done, aclose() not yet: /health says "starting" until started()
        self.config_loaded_ns = 0
        self.config_generation = 0
        self._reload_lock = asyncio.Lock()
        self.config_changes = ChangeControl(on_decided=self._change_decided)  # safety changes awaiting approval
        self.stop_event = asyncio.Event()
        self.workstation = os.uname().nodename

    # ------------------------------------------------------------------ configuration
    def endpoints(self) -> dict[str, str]:
        """Endpoint overrides: given ones, else the simulator's endpoints JSON named in the settings."""
        if self.endpoint_overrides is not None:
            return dict(self.endpoint_overrides)
        path = self.settings.endpoints_file
        if path is None:
            return {}
        return read_endpoints(path)

    def check_config(self) -> tuple[CityConfig | None, list[ConfigProblem]]:
        """The city and its command vocabulary validated (at start: no commands.yaml means commands refused)."""
        candidate, problems = self.check_candidate(require_commands=False)
        return (candidate.config if candidate is not None else None), problems

    def check_candidate(self, require_commands: bool) -> tuple[Candidate | None, list[ConfigProblem]]:
        try:
            endpoints = self.endpoints()
        except ConfigError as exc:
            return None, exc.problems
        return check_candidate(self.settings, endpoints, require_commands)

    def failsafe(self) -> Failsafe | None:
        """The running fail-safe layer (its gate's rules decide who approves a safety change), if any."""
        fs = getattr(self.components.get("failsafe"), "fs", None)
        return fs if isinstance(fs, Failsafe) else None

    def status(self, name: str) -> SubsystemStatus:
        if name not in self.subsystems:
            self.subsystems[name] = SubsystemStatus(name)
        return self.subsystems[name]

    @property
    def poller(self) -> Any:
        """The running poll scheduler (scada.poll.Poller), if any."""
        return getattr(self.components.get("poll"), "poller", None)

    # ------------------------------------------------------------------ lifecycle
    def open(self, config: CityConfig) -> None:
        """Open the stores and build the tag database and the hub on ``config`` (no component runs yet)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.opened = True
        self.audit = AuditTrail(self.data_dir / "audit.sqlite")
        self.audit.record("audit_log", "opened", "ok", source=self.workstation, path=str(self.data_dir))
        self.users = UserStore(self.data_dir / "users.sqlite")
        self.tokens.accounts = self.users  # every request checks the account's generation (server.auth)
        self.limiter = LoginLimiter(self.users, self.settings.login)
        self.config = config
        # one language and one clock for the process: what _() and scada.format use when a request names none
        set_language(self.lang)
        set_timezone(config.timezone)
        self.config_loaded_ns = time.time_ns()
        self.config_generation = 1
        self.tagdb = build_tagdb(config)
        self.status("tagdb").set("ok", f"{len(self.tagdb)} tags")
        self.status("tagdb").stats = lambda: {"tags": len(self.tagdb),
                                              "good": int(np.count_nonzero(self.tagdb.qualities == 0))}
        self.hub = Hub(config, self.tagdb, self.settings.websocket.batch, self.settings.websocket.queue,
                       alarm_snapshot=self._alarm_snapshot)
        self.status("api").stats = self.hub.stats_dict

    def started(self) -> None:
        """Every component has been started (or reported down): journal it."""
        self.started_ns = time.time_ns()
        self.audit.record("control_system", "server_started", "ok", source=self.workstation,
                          equipment=len(self.config.equipment), devices=len(self.config.devices),
                          tags=len(self.config.tags), subsystems={k: v.status for k, v in self.subsystems.items()})

    @property
    def lang(self) -> str:
        """The language the server speaks: its own ``lang`` setting, else the site's (tags.yaml ``lang:``). GET /config
        and the unauthenticated /health name it: a console follows it (its login dialog too) unless told otherwise."""
        return self.settings.lang or self.config.lang

    @property
    def reloading(self) -> bool:
        """A configuration reload (or its rollback) is under way."""
        return self._reload_lock.locked()

    def _alarm_snapshot(self) -> list[dict[str, Any]]:
        # diagnostic alarms too: the deltas carry them, so a console that connected later must get them in its
        # snapshot, or two consoles disagree on the diagnostic count
        return self.alarms.active(diagnostic=True)[1] if self.alarms is not None else []

    async def aclose(self) -> None:
        """Close the stores (after the components have stopped); safe to call twice."""
        if not self.opened:
            return
        self.started_ns = 0
        self.opened = False
        self.audit.record("control_system", "server_stopped", "ok", source=self.workstation)
        self.audit.record("audit_log", "closed", "ok", source=self.workstation)
        self.audit.close()
        self.limiter.close()
        self.users.close()

    # ------------------------------------------------------------------ reload
    async def reload(self, user: str, source: str) -> dict[str, Any]:
        """Validate the configuration files again and apply them to every component, or to none.

        Refused as a whole (``applied: False`` with every problem) when the files are invalid, when a running
        fail-safe layer would lose its commands.yaml, or when a component cannot prepare the new configuration.
        A change of the safety configuration (failsafe.changes.safety_diff) is not applied: it waits for a
        second person (``pending: True`` with the change and its diff). If a component fails to switch after
        preparation, every component is rolled back and a P1 system alarm says which (``failed``)."""
        async with self._reload_lock:
            if not self.started_ns:  # the API answers while the components start (server.main): not half-started
                return self._refuse_reload(user, source, ["the server is still starting its components: try again"])
            candidate, problems = await asyncio.to_thread(self.check_candidate, self._commands_required())
            if problems or candidate is None:
                return self._refuse_reload(user, source, [str(p) for p in problems])
            fs = self.failsafe()
            safety = safety_diff(fs.vocab if fs is not None else None, candidate.vocabulary, self.config,
                                 candidate.config)
            # no layer running: nothing in force to weaken, the new one starts at once
            ask = fs if safety and not self.follows_active() else None
            return await self._apply(user, source, candidate, safety, ask=ask)

    def _commands_required(self) -> bool:
        """A running (or failed) fail-safe layer cannot go on without commands.yaml: its absence refuses a reload."""
        return "failsafe" in self.components and self.status("failsafe").status != "unavailable"

    def _refuse_reload(self, user: str, source: str, texts: list[str], **extra: Any) -> dict[str, Any]:
        self.audit.record("configuration_change", "reload", "refused", user=user, source=source,
                          problems=texts[:200], count=len(texts), **extra)
        self._journal_reload(user, source, False, f"refused: {len(texts)} problem(s); " + "; ".join(texts[:5]))
        return {"applied": False, "problems": texts}

    def _request_change(self, user: str, source: str, candidate: Candidate, safety: list[str],
                        fs: Failsafe) -> dict[str, Any]:
        """A safety change: recorded for a second person's approval, nothing applied."""
        summary = describe_diff(self.config_generation + 1, diff_configs(self.config, candidate.config))
        try:
            change = self.config_changes.request(Failsafe.principal(user, "", source), safety, candidate.fingerprint,
                                                 fs.gate, summary)
        except CommandRejected as exc:  # the request cannot be audited: it does not count
            return self._refuse_reload(user, source, [exc.reason])
        self.audit.record("configuration_change", "reload", "pending_approval", user=user, source=source,
                          change=change.id, diff=list(change.diff)[:200])
        self._journal_reload(user, source, True, f"pending approval (change {change.id}): " + "; ".join(change.diff))
        return {"applied": False, "pending": True, "change": change.view(), "problems": []}

    async def _apply(self, user: str, source: str, candidate: Candidate, safety: list[str],
                     change: ConfigChange | None = None, ask: Failsafe | None = None) -> dict[str, Any]:
        """Prepare every component, then switch them all (server.reload); the caller holds the reload lock.
        ``ask``: a safety change, once every component could prepare it, is recorded for approval instead."""
        old, old_db, config = self.config, self.tagdb, candidate.config
        diff = diff_configs(old, config)
        new_db = build_tagdb(config)
        carry_over(old_db, new_db)
        comps = list(self.components.values())  # in start order; the hub last
        try:
            await prepare_all(comps, candidate, new_db)
        except ReloadRefused as exc:
            return self._refuse_reload(user, source, exc.problems)
        if ask is not None:  # usable, but the safety configuration changes: a second person decides
            discard_all(comps)
            return self._request_change(user, source, candidate, safety, ask)
        self.config, self.tagdb = config, new_db  # what the components (stale sweeper, health, API) read from now
        try:
            results = await apply_all(comps, old, config, old_db, new_db)
        except ReloadFailed as exc:
            self.config, self.tagdb = old, old_db
            self._reload_failed_alarm(exc.component)
            texts = [str(exc), *exc.rollback_problems]
            self.audit.record("configuration_change", "reload", "failed", user=user, source=source,
                              component=exc.component, problems=texts, rolled_back=True)
            self._journal_reload(user, source, False, f"{exc}; rolled back to generation {self.config_generation}")
            return {"applied": False, "failed": exc.component, "problems": texts}
        self.config_loaded_ns = time.time_ns()
        self.config_generation += 1
        set_language(self.lang)  # a site whose lang changed speaks it from now on (its consoles follow: GET /config)
        self.status("tagdb").set("ok", f"{len(new_db)} tags")
        approved = {"change": change.id, "approver": change.decided_by} if change is not None else {}
        self.audit.record("configuration_change", "reload", "applied", user=user, source=source,
                          generation=self.config_generation, safety=safety[:200], **approved, **diff)
        detail = describe_diff(self.config_generation, diff)
        if change is not None:
            detail = f"{detail}; change {change.id} approved by {change.decided_by}: " + "; ".join(safety)
        self._journal_reload(user, source, True, detail)
        out: dict[str, Any] = {"applied": True, "generation": self.config_generation, "changes": diff,
                               "subsystems": results}
        if safety:
            out["safety"] = safety
        return out

    def _reload_failed_alarm(self, component: str) -> None:
        sink = self.system_alarms
        if sink is None or not sink.raise_("server", f"reload_failed_{component}"):
            log.error("reload failed in %s and was rolled back (no system alarm could be raised)", component)

    # ------------------------------------------------------------------ safety changes (second person)
    def config_change_list(self) -> list[dict[str, Any]]:
        fs = self.failsafe()
        return [c.view() for c in self.config_changes.changes(fs.gate if fs is not None else None)]

    async def approve_config_change(self, change_id: str, user: str, role: str, source: str) -> dict[str, Any]:
        """A second person approves a pending safety change: re-validated now, applied only if the files and the
        running configuration are what was shown. Refused (scada.errors.Refused) otherwise."""
        what = f"approve configuration change {change_id}"
        async with self._reload_lock:
            fs = self._failsafe_for(what)
            try:
                change = self.config_changes.approve(change_id, Failsafe.principal(user, role, source), fs.gate)
            except CommandRejected as exc:
                self.audit.record("configuration_change", "change_approval", "refused", user=user, source=source,
                                  change=change_id, why=exc.reason)
                raise Refused(what, exc.reason, exc.code) from None
            self.audit.record("configuration_change", "change_approval", "ok", user=user, source=source,
                              change=change.id, requester=change.requester.name)
            candidate, problems = await asyncio.to_thread(self.check_candidate, self._commands_required())
            why = ""
            if problems or candidate is None:
                why = f"the configuration is no longer valid ({len(problems)} problem(s): " + \
                      "; ".join(str(p) for p in problems[:5]) + ")"
            elif candidate.fingerprint != change.fingerprint:
                why = "the configuration files changed since the request: reload again to see what changed"
            elif safety_diff(fs.vocab, candidate.vocabulary, self.config, candidate.config) != list(change.diff):
                why = "the running configuration changed since the request: reload again to see what changed"
            if why or candidate is None:
                self.config_changes.settle(change, fs.gate, False, why)
                self._refuse_reload(user, source, [why], change=change.id)
                raise Refused(what, why, Refusal.CONFLICT)
            result = await self._apply(change.requester.name, source, candidate, list(change.diff), change)
            self.config_changes.settle(change, fs.gate, bool(result["applied"]), "; ".join(result["problems"])
                                       if not result["applied"] else "")
            return {**result, "change": change.view()}

    def reject_config_change(self, change_id: str, user: str, role: str, source: str) -> dict[str, Any]:
        what = f"reject configuration change {change_id}"
        fs = self._failsafe_for(what)
        try:
            change = self.config_changes.reject(change_id, Failsafe.principal(user, role, source), fs.gate)
        except CommandRejected as exc:
            self.audit.record("configuration_change", "change_rejection", "refused", user=user, source=source,
                              change=change_id, why=exc.reason)
            raise Refused(what, exc.reason, exc.code) from None
        return change.view()

    def _failsafe_for(self, what: str) -> Failsafe:
        fs = self.failsafe()
        if fs is None:
            raise Refused(what, "the fail-safe layer is not running: no approval rules in force", Refusal.UNAVAILABLE)
        return fs

    def _change_decided(self, change: ConfigChange) -> None:
        """A pending change rejected, expired or superseded: the server's audit trail and the journal say so."""
        user = change.decided_by or change.requester.name
        self.audit.record("configuration_change", f"change_{change.state}", "ok", user=user,
                          source=change.requester.workstation, change=change.id, reason=change.reason)
        self._journal_reload(user, change.requester.workstation, False, f"change {change.id} {change.state}: "
                             f"{change.reason}; not applied: " + "; ".join(change.diff))

    def _journal_reload(self, user: str, source: str, applied: bool, detail: str) -> None:
        """The alarm journal (what maintenance reads) records every reload too; never fails the reload."""
        journal = self.journal
        if journal is None:
            return
        try:
            journal.config_change(user, source, applied, detail)
        except Exception:  # the reload is applied: failing to journal it must not undo it (logged)
            log.exception("cannot journal the configuration reload")

    # ------------------------------------------------------------------ backup
    def backup(self, user: str, source: str) -> dict[str, Any]:
        """Consistent online copies (SQLite backup API) of the server's stores into
        ``data_dir/backups/<UTC second>-<random>``: two backups in the same second get two folders.

        The copies hold password hashes and the audit trail: every file is 0600 from its creation (never
        readable by others, not even for a moment) and the folders are 0700, whatever the umask.
        Restore is offline: stop the server, copy the files back into the data directory, start it.
        """
        root = self.data_dir / "backups"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = root / f"{stamp}-{secrets.token_hex(4)}"
        files: list[str] = []

        def private_file(path: Path) -> None:  # created 0600 (O_EXCL: a fresh folder, never an existing file)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(root, 0o700)  # an older folder made under the umask
            target.mkdir(mode=0o700)
            os.chmod(target, 0o700)
            # contacts.sqlite (citizen reporters' personal data) is never backed up: it is purged on its own
            # schedule, and a backup must not keep what the purge removed
            for name in ("users.sqlite", "audit.sqlite", "journal.sqlite", "workorders.sqlite", "intake.sqlite",
                         "historian/history.sqlite"):
                src = self.data_dir / name
                if not src.is_file():
                    continue
                dst = target / name.replace("/", "-")
                private_file(dst)  # sqlite then writes into it, and gives its journal file the same mode
                with contextlib.closing(sqlite3.connect(src)) as a, contextlib.closing(sqlite3.connect(dst)) as b:
                    a.backup(b)
                files.append(dst.name)
            audit_log = sorted((self.data_dir / "failsafe" / "audit").glob("*.log"))  # its segments (failsafe.audit)
            for extra in ("failsafe/leases.json", "failsafe/audit/head",
                          *(str(p.relative_to(self.data_dir)) for p in audit_log)):
                src = self.data_dir / extra
                if src.is_file():
                    dst = target / extra.replace("/", "-")
                    private_file(dst)
                    dst.write_bytes(src.read_bytes())
                    files.append(dst.name)
        except (OSError, sqlite3.Error) as exc:
            self.audit.record("backup_restore", "backup", "failed", user=user, source=source, path=str(target),
                              error=str(exc))
            raise
        self.audit.record("backup_restore", "backup", "ok", user=user, source=source, path=str(target), files=files)
        return {"path": str(target), "files": files}

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """failed / starting / degraded / ok (server.components.health.overall_status: the reasons and the
        lost devices with it), every subsystem's own status, the configuration, sessions and process."""
        subs = {name: s.as_dict() for name, s in self.subsystems.items()}
        overall = overall_status(self)
        return {
            "status": overall["status"] if self.started_ns else "starting" if self.opened else "stopped",
            "reasons": overall["reasons"],
            "devices_lost": overall["devices_lost"],
            "started_ms": self.started_ns // 1_000_000,
            "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 1) if self.started_ns else 0,
            "config": {"generation": self.config_generation, "loaded_ms": self.config_loaded_ns // 1_000_000,
                       "site": self.config.site, "equipment": len(self.config.equipment),
                       "lang": self.lang, "timezone": self.config.timezone,  # what consoles show, and in
                       "devices": len(self.config.devices), "tags": len(self.config.tags)},
            "subsystems": subs,
            "sessions": len(self.tokens),
            "process": process_stats(),
        }


# ---------------------------------------------------------------------- helpers
def read_endpoints(path: Path) -> dict[str, str]:
    """The simulator's endpoints JSON: ``{"modbus-1": "127.0.0.1:40123", ...}`` (or under "endpoints")."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), 0, "endpoints file", f"cannot read: {exc.strerror}")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), exc.lineno, "endpoints file", f"not JSON: {exc.msg}")]) from None
    if isinstance(data, dict) and isinstance(data.get("endpoints"), dict):
        data = data["endpoints"]
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError([ConfigProblem(str(path), 1, "endpoints file", "must map endpoint names to strings")])
    return {str(k): str(v) for k, v in data.items()}
