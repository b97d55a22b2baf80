"""The supervisory server: one asyncio process, the composition root of the system.

    settings (server.yaml + options)      tags.yaml + alarms.yaml (+ simulator endpoints JSON)
            │                                        │ load_city: every problem printed, refuse to start
            ▼                                        ▼
    ┌──────────────────────────── ScadaServer ────────────────────────────────────────────────┐
    │ users.sqlite ─ TokenManager ─ LoginLimiter ─ AuditTrail (audit.sqlite)                   │
    │                                                                                          │
    │ poll scheduler + drivers ──samples──► TagDatabase ──changes──┬──► alarm engine ─► journal │
    │   (scada.poll; drivers from drivers.registry)                ├──► historian (embedded)   │
    │                                                              ├──► fail-safe monitor      │
    │ API ─► fail-safe gate ─► driver write ─► read-back           └──► Hub ─► WebSocket       │
    │ uvicorn (FastAPI app from server.api), TLS when configured                         │
    └──────────────────────────────────────────────────────────────────────────────────────────┘

This module is the server's state only: stores, configuration, tag database, the services the API
calls (set by the components), status per subsystem, reload and backup. Which components run, and in
which order, is :mod:`server.assemble`'s (``open`` here first: audit → users → config → tag database →
hub; then the components: journal + alarm engine → historian → poll → fail-safe → stale sweeper →
health → hub flusher; stop in reverse, then ``aclose`` here closes the stores).

A component that fails to start is reported on ``/health`` (status ``down`` with the reason, or
``unavailable``) while the rest keeps serving. Configuration problems are different: the server
refuses to start and prints every one.

Reload (``scada reload``, SIGHUP or ``POST /api/v1/config/reload``): the new files are validated first;
if anything is wrong nothing changes and the refusal is journalled with every problem. If valid, a new
tag database is built (live values of unchanged tags carried over), the pipeline is rebound to it,
removed devices are stopped and added ones started, and the change is journalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from scada.alarms.system import SystemAlarmSink, system_tags
from scada.config import CityConfig, check_city
from scada.config.model import TagDef
from scada.errors import ConfigError, ConfigProblem
from scada.poll import device_stat_tags
from scada.tagdb import TagDatabase
from scada.users import UserStore
from server.audit import AuditTrail
from server.auth import LoginLimiter, TokenManager
from server.components.base import STATUSES, Component, SubsystemStatus
from server.components.failsafe import check_commands
from server.components.health import health_tag_defs, process_stats
from server.hub import Hub
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
        self.tokens = TokenManager(settings.token_ttl)
        self.limiter = LoginLimiter(settings.login.max_failures, settings.login.window, settings.login.lockout)
        self.alarms: AlarmService | None = None
        self.journal: JournalService | None = None
        self.historian: HistorianService | None = None
        self.commands: CommandService | None = None
        self.crisis: CrisisService | None = None
        self.system_alarms: SystemAlarmSink | None = None  # set by the alarm component
        self.components: dict[str, Component] = {}  # the started ones, in start order
        self.subsystems: dict[str, SubsystemStatus] = {}
        self.started_ns = 0
        self.config_loaded_ns = 0
        self.config_generation = 0
        self._reload_lock = asyncio.Lock()
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
        try:
            endpoints = self.endpoints()
        except ConfigError as exc:
            return None, exc.problems
        config, problems = check_city(self.settings.tags, self.settings.alarms, endpoints)
        if config is not None and not problems:
            problems = check_commands(self.settings, config)
            if problems:
                return None, problems
        return config, problems

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
        self.audit = AuditTrail(self.data_dir / "audit.sqlite")
        self.audit.record("audit_log", "opened", "ok", source=self.workstation, path=str(self.data_dir))
        self.users = UserStore(self.data_dir / "users.sqlite")
        self.config = config
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

    def _alarm_snapshot(self) -> list[dict[str, Any]]:
        return self.alarms.active()[1] if self.alarms is not None else []

    async def aclose(self) -> None:
        """Close the stores (after the components have stopped); safe to call twice."""
        if not self.started_ns:
            return
        self.started_ns = 0
        self.audit.record("control_system", "server_stopped", "ok", source=self.workstation)
        self.audit.record("audit_log", "closed", "ok", source=self.workstation)
        self.audit.close()
        self.users.close()

    # ------------------------------------------------------------------ reload
    async def reload(self, user: str, source: str) -> dict[str, Any]:
        """Validate the configuration files again; apply them only if valid. Returns what happened."""
        async with self._reload_lock:
            config, problems = await asyncio.to_thread(self.check_config)
            if problems or config is None:
                texts = [str(p) for p in problems]
                self.audit.record("configuration_change", "reload", "refused", user=user, source=source,
                                  problems=texts[:200], count=len(texts))
                self._journal_reload(user, source, False, f"refused: {len(texts)} problem(s); "
                                                          + "; ".join(texts[:5]))
                return {"applied": False, "problems": texts}
            old = self.config
            diff = diff_configs(old, config)
            new_db = build_tagdb(config)
            carry_over(self.tagdb, new_db)
            self.config = config
            self.tagdb = new_db
            self.config_loaded_ns = time.time_ns()
            self.config_generation += 1
            results: dict[str, Any] = {}
            for name, comp in list(self.components.items()):  # in start order; the hub last
                try:
                    results[name] = await comp.apply(old, config, new_db)
                except Exception as exc:
                    log.exception("%s: reload failed", name)
                    comp.health().set("down", f"reload failed: {exc!r}")
                    results[name] = {"error": repr(exc)}
            self.status("tagdb").set("ok", f"{len(new_db)} tags")
            self.audit.record("configuration_change", "reload", "applied", user=user, source=source,
                              generation=self.config_generation, **diff)
            self._journal_reload(user, source, True, describe_diff(self.config_generation, diff))
            return {"applied": True, "generation": self.config_generation, "changes": diff, "subsystems": results}

    def _journal_reload(self, user: str, source: str, applied: bool, detail: str) -> None:
        """The alarm journal (what maintenance reads) records every reload too; never fails the reload."""
        journal = self.journal
        if journal is None:
            return
        try:
            journal.config_change(user, source, applied, detail)
        except Exception:
            log.exception("cannot journal the configuration reload")

    # ------------------------------------------------------------------ backup
    def backup(self, user: str, source: str) -> dict[str, Any]:
        """Consistent online copies (SQLite backup API) of the server's stores into ``data_dir/backups/<UTC>``.

        Restore is offline: stop the server, copy the files back into the data directory, start it.
        """
        import sqlite3

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.data_dir / "backups" / stamp
        files: list[str] = []
        try:
            target.mkdir(parents=True, exist_ok=False)
            for name in ("users.sqlite", "audit.sqlite", "journal.sqlite", "historian/history.sqlite"):
                src = self.data_dir / name
                if not src.is_file():
                    continue
                dst = target / name.replace("/", "-")
                with contextlib.closing(sqlite3.connect(src)) as a, contextlib.closing(sqlite3.connect(dst)) as b:
                    a.backup(b)
                files.append(dst.name)
            for extra in ("failsafe/leases.json", "failsafe/audit.log", "failsafe/audit.log.head"):
                src = self.data_dir / extra
                if src.is_file():
                    dst = target / extra.replace("/", "-")
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
        subs = {name: s.as_dict() for name, s in self.subsystems.items()}
        worst = "ok"
        for s in self.subsystems.values():
            if s.status in ("down",):
                worst = "degraded"
            elif s.status in ("degraded", "unavailable", "starting") and worst == "ok":
                worst = "degraded"
        return {
            "status": worst if self.started_ns else "stopped",
            "started_ms": self.started_ns // 1_000_000,
            "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 1) if self.started_ns else 0,
            "config": {"generation": self.config_generation, "loaded_ms": self.config_loaded_ns // 1_000_000,
                       "site": self.config.site, "equipment": len(self.config.equipment),
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


def diff_configs(old: CityConfig, new: CityConfig) -> dict[str, Any]:
    """Devices and equipment added / removed / changed, and tag counts, between two configurations."""
    def dev_key(d: Any) -> tuple[Any, ...]:
        return (d.protocol, json.dumps(d.connection, sort_keys=True, default=str), d.scan, d.period_s,
                d.timeout_s, d.retries, tuple(d.tags))

    old_d, new_d = old.devices, new.devices
    return {
        "devices_added": sorted(set(new_d) - set(old_d)),
        "devices_removed": sorted(set(old_d) - set(new_d)),
        "devices_changed": sorted(n for n in set(old_d) & set(new_d) if dev_key(old_d[n]) != dev_key(new_d[n])),
        "equipment_added": sorted(set(new.equipment) - set(old.equipment))[:500],
        "equipment_removed": sorted(set(old.equipment) - set(new.equipment))[:500],
        "tags_before": len(old.tags), "tags_after": len(new.tags),
        "alarm_rules_before": len(old.alarm_rules), "alarm_rules_after": len(new.alarm_rules),
    }


def describe_diff(generation: int, diff: dict[str, Any]) -> str:
    """One line for the journal: ``generation 2: devices +C9999 -CAM01; equipment +1 -1; tags 2101 → 2110``."""
    def names(key: str, sign: str) -> str:
        items = diff.get(key) or []
        shown = " ".join(sign + str(n) for n in items[:10])
        return shown + (f" (+{len(items) - 10} more)" if len(items) > 10 else "")

    devices = " ".join(p for p in (names("devices_added", "+"), names("devices_removed", "-"),
                                   names("devices_changed", "~")) if p) or "unchanged"
    return (f"generation {generation}: devices {devices}; equipment +{len(diff.get('equipment_added') or [])} "
            f"-{len(diff.get('equipment_removed') or [])}; tags {diff.get('tags_before')} → {diff.get('tags_after')}; "
            f"alarm rules {diff.get('alarm_rules_before')} → {diff.get('alarm_rules_after')}")


def carry_over(old: TagDatabase, new: TagDatabase) -> int:
    """Copy live values of tags present in both databases (same name and type); returns how many."""
    pairs = [(i, old.index[n]) for i, n in enumerate(new.names)
             if n in old.index and old.defs[old.index[n]].dtype == new.defs[i].dtype]
    if not pairs:
        return 0
    ni = np.array([p[0] for p in pairs], dtype=np.int64)
    oi = np.array([p[1] for p in pairs], dtype=np.int64)
    new.values[ni] = old.values[oi]
    new.qualities[ni] = old.qualities[oi]
    new.source_ns[ni] = old.source_ns[oi]
    new.receive_ns[ni] = old.receive_ns[oi]
    for a, b in pairs:
        if b in old.strings:
            new.strings[a] = old.strings[b]
    return len(pairs)
