"""The supervisory server: one asyncio process, the composition root of the system.

    settings (server.yaml + options)      tags.yaml + alarms.yaml (+ simulator endpoints JSON)
            │                                        │ load_city: every problem printed, refuse to start
            ▼                                        ▼
    ┌──────────────────────────── ScadaServer ────────────────────────────────────────────────┐
    │ users.sqlite ─ TokenManager ─ LoginLimiter ─ AuditTrail (audit.sqlite)                   │
    │                                                                                          │
    │ poll scheduler + drivers ──samples──► TagDatabase ──changes──┬──► alarm engine ─► journal │
    │   (scada.poll; drivers by registry name, importlib)          ├──► historian (embedded)   │
    │                                                              ├──► fail-safe monitor      │
    │ API ─► fail-safe gate ─► driver write ─► read-back           └──► Hub ─► WebSocket       │
    │ uvicorn (FastAPI app from server.api), TLS when configured                         │
    └──────────────────────────────────────────────────────────────────────────────────────────┘

Start order: audit → users → config → tag database → journal + alarm engine (alarm states recovered
from the journal: a restart after kill -9 keeps acknowledged alarms acknowledged) → historian →
fail-safe gate + monitor → poll scheduler → hub → HTTP. Stop order is the reverse, on SIGTERM/SIGINT:
the HTTP server stops accepting, pollers stop, leases are left to expire in the field (never
re-asserted), the historian flushes its buffer, the journal and audit trail close.

Each subsystem is optional at run time: one that is not in this build, or fails to start, is reported
on ``/health`` (status ``unavailable`` or ``down`` with the reason) while the rest keeps serving.
Configuration problems are different: the server refuses to start and prints every one.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scada.config import CityConfig, check_city
from scada.errors import ConfigError, ConfigProblem
from scada.tagdb import TagDatabase
from scada.users import UserStore
from server.audit import AuditTrail
from server.auth import LoginLimiter, TokenManager
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

STATUSES = ("starting", "ok", "degraded", "down", "unavailable", "stopped")


@dataclass
class SubsystemStatus:
    name: str
    status: str = "starting"
    detail: str = ""
    since_ns: int = field(default_factory=time.time_ns)
    stats: Callable[[], dict[str, Any]] | None = None

    def set(self, status: str, detail: str = "") -> None:
        if status != self.status or detail != self.detail:
            level = logging.INFO if status in ("ok", "starting", "stopped") else logging.WARNING
            log.log(level, "%s: %s%s", self.name, status, f" ({detail})" if detail else "")
            self.status, self.detail, self.since_ns = status, detail, time.time_ns()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "detail": self.detail, "since_ms": self.since_ns // 1_000_000}
        if self.stats is not None:
            try:
                out["stats"] = self.stats()
            except Exception as exc:  # a broken stats call must not break /health
                out["stats"] = {"error": repr(exc)}
        return out


class Component:
    """What the composition root keeps of a started subsystem: how to start, rebind and stop it."""

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        return None

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        return None


class ScadaServer:
    """Everything one server process runs. Build, ``await start()``, serve the API, ``await aclose()``."""

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
        self.poller: Any = None
        self.system_alarms: Any = None  # scada.alarms.system.SystemAlarmSink, set by the alarm component
        self.components: dict[str, Any] = {}  # name → Component-like (start, rebind, aclose)
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
            from server.wiring import check_commands

            problems = check_commands(self, config)
            if problems:
                return None, problems
        return config, problems

    def status(self, name: str) -> SubsystemStatus:
        if name not in self.subsystems:
            self.subsystems[name] = SubsystemStatus(name)
        return self.subsystems[name]

    # ------------------------------------------------------------------ lifecycle
    async def start(self, config: CityConfig | None = None) -> None:
        """Open stores, build the pipeline and start every subsystem. ConfigError if the city is invalid."""
        if config is None:
            config, problems = self.check_config()
            if problems or config is None:
                raise ConfigError(problems)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.audit = AuditTrail(self.data_dir / "audit.sqlite")
        self.audit.record("audit_log", "opened", "ok", source=self.workstation, path=str(self.data_dir))
        self.users = UserStore(self.data_dir / "users.sqlite")
        self.config = config
        self.config_loaded_ns = time.time_ns()
        self.config_generation = 1
        from server import wiring  # the composition root proper: importlib by module name inside

        self.tagdb = wiring.build_tagdb(config)
        self.status("tagdb").set("ok", f"{len(self.tagdb)} tags")
        self.status("tagdb").stats = lambda: {"tags": len(self.tagdb),
                                              "good": int(np.count_nonzero(self.tagdb.qualities == 0))}
        self.hub = Hub(config, self.tagdb, self.settings.websocket.batch, self.settings.websocket.queue,
                       alarm_snapshot=self._alarm_snapshot)
        self.status("api").stats = self.hub.stats_dict
        await wiring.start_all(self)
        self.hub.start()
        self.started_ns = time.time_ns()
        self.audit.record("control_system", "server_started", "ok", source=self.workstation,
                          equipment=len(config.equipment), devices=len(config.devices), tags=len(config.tags),
                          subsystems={k: v.status for k, v in self.subsystems.items()})

    def _alarm_snapshot(self) -> list[dict[str, Any]]:
        return self.alarms.active() if self.alarms is not None else []

    async def aclose(self) -> None:
        """Stop everything in reverse order; safe to call twice."""
        if not self.started_ns:
            return
        self.started_ns = 0
        with contextlib.suppress(Exception):
            await self.hub.aclose()
        for name in reversed(list(self.components)):
            comp = self.components.pop(name)
            try:
                await asyncio.wait_for(comp.aclose(), timeout=15)
                self.status(name).set("stopped")
            except Exception as exc:
                log.exception("%s: stop failed", name)
                self.status(name).set("down", f"stop failed: {exc!r}")
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
            from server.wiring import build_tagdb

            new_db = build_tagdb(config)
            carry_over(self.tagdb, new_db)
            self.config = config
            self.tagdb = new_db
            self.config_loaded_ns = time.time_ns()
            self.config_generation += 1
            results: dict[str, Any] = {}
            for name, comp in list(self.components.items()):
                try:
                    results[name] = await comp.rebind(old, config, new_db)
                except Exception as exc:
                    log.exception("%s: reload rebind failed", name)
                    self.status(name).set("down", f"reload failed: {exc!r}")
                    results[name] = {"error": repr(exc)}
            self.hub.bind(config, new_db)
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


def process_stats() -> dict[str, Any]:
    """RSS (MB), CPU seconds and thread count of this process, from /proc (no psutil needed)."""
    out: dict[str, Any] = {"pid": os.getpid()}
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        out["rss_mb"] = round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except OSError:
        pass
    t = os.times()
    out["cpu_s"] = round(t.user + t.system, 2)
    return out
