"""Composition root proper: find each subsystem of this build by module name and adapt it.

Subsystems live in other packages (``scada.poll`` + ``drivers``, ``scada.alarms`` + ``scada.journal``,
``historian``, ``failsafe``); the core must not import protocol libraries, ``drivers`` or ``sim``
statically, so every subsystem outside ``scada`` is reached with :func:`importlib.import_module` here
and wrapped in an adapter implementing :mod:`scada.server.services`. A subsystem whose module is
missing is reported ``unavailable`` on /health; one that fails to start is ``down`` with the reason;
the others run.

    start order: journal → alarms → historian → failsafe → poll (drivers) → stale sweeper
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

from scada.config import CityConfig
from scada.tagdb import TagDatabase

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


def extra_tags(config: CityConfig) -> list[Any]:
    """Tags the server adds to the city's: per-device poll statistics (``system/devices/<dev>/<stat>``)."""
    poll = find("scada.poll")
    if poll is None:
        return []
    return list(poll.device_stat_tags(config))


def build_tagdb(config: CityConfig) -> TagDatabase:
    return TagDatabase([*config.tags, *extra_tags(config)])


# ---------------------------------------------------------------------- poll scheduler + drivers
class PollComponent:
    """The poll scheduler (scada.poll.Poller) with drivers from the registry (drivers.registry)."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.poller: Any = None
        self.factory: Any = None

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        poll = importlib.import_module("scada.poll")
        registry = importlib.import_module("drivers.registry")  # by name: the core never imports drivers
        self.factory = registry.DriverFactory(config)
        missing: dict[str, str] = {}
        for protocol in sorted({d.protocol for d in config.devices.values()}):
            try:
                registry.driver_class(protocol)
            except Exception as exc:  # a driver not in this build: poll the other protocols
                missing[protocol] = repr(exc)
        devices = [n for n, d in config.devices.items() if d.protocol not in missing]
        self.poller = poll.Poller(config, self.factory, tagdb, devices=devices)
        await self.poller.start()
        self.server.poller = self.poller
        st = self.server.status("poll")
        if missing:
            skipped = len(config.devices) - len(devices)
            st.set("degraded", f"{len(devices)} devices polled; {skipped} not polled, no driver for "
                               + ", ".join(f"{p} ({why})" for p, why in missing.items()))
        else:
            st.set("ok", f"{len(devices)} devices")
        st.stats = self.stats

    def stats(self) -> dict[str, Any]:
        if self.poller is None:
            return {}
        devices = self.poller.stats
        by_status: dict[str, int] = {}
        for s in devices.values():
            by_status[s.status_label] = by_status.get(s.status_label, 0) + 1
        lost = sorted(n for n, s in devices.items() if s.status_label in ("lost", "refused"))
        return {
            "devices": len(devices), "by_status": by_status, "lost": lost[:50],
            "requests": sum(s.requests for s in devices.values()),
            "errors": sum(s.errors for s in devices.values()),
            "overruns": sum(s.overruns for s in devices.values()),
            "per_device": {n: {"status": s.status_label, "requests": s.requests, "errors": s.errors,
                               "overruns": s.overruns, "latency_ms": round(s.latency_s * 1000, 1),
                               "period_ms": round(s.last_period_s * 1000, 1),
                               "last_success_ms": s.last_success_ns // 1_000_000, "last_error": s.last_error}
                           for n, s in list(devices.items())[:2000]},
        }

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """A new tag database: stop every device task, start them again on the new configuration.

        Removed devices are closed, added ones started; unchanged ones reconnect within one scan.
        """
        await self.aclose()
        await self.start(new, tagdb)
        return {"devices": len(new.devices)}

    async def aclose(self) -> None:
        if self.poller is not None:
            await self.poller.aclose()
            self.poller = None
            self.server.poller = None
        if self.factory is not None:
            await self.factory.aclose()
            self.factory = None


class StaleComponent:
    """Good values not refreshed for ``stale_after`` scan periods of their device become ``uncertain``.

    Devices read through subscriptions (OPC UA) only report changes, so their tags are exempt.
    """

    def __init__(self, server: ScadaServer, every_s: float = 1.0) -> None:
        self.server = server
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None
        self.limits: Any = None
        self.marked = 0

    def _limits(self, config: CityConfig, tagdb: TagDatabase) -> Any:
        periods = {n: d.period_s for n, d in config.devices.items() if d.protocol != "opcua"}
        return tagdb.stale_limits_ns(periods)

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        self.limits = self._limits(config, tagdb)
        self.task = asyncio.create_task(self._run(), name="stale-sweeper")
        self.server.status("stale").set("ok")
        self.server.status("stale").stats = lambda: {"marked_uncertain": self.marked}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                ev = self.server.tagdb.mark_stale(time.time_ns(), self.limits)
                self.marked += len(ev)
            except Exception:
                log.exception("stale sweeper failed")

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        self.limits = self._limits(new, tagdb)
        return {}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


# ---------------------------------------------------------------------- historian
def _f(x: float) -> float | None:
    return None if x != x else float(x)  # NaN → null


def _series_points(series: Any, limit: int | None = None) -> list[dict[str, Any]]:
    n = len(series) if limit is None else min(len(series), limit)
    ts = series.ts[:n].tolist()
    vals = series.value[:n].tolist()
    quals = series.quality[:n].tolist()
    text = series.text
    labels = ("good", "uncertain", "bad_comm", "bad_device", "bad_config")
    out = []
    for k in range(n):
        v: Any = text[k] if text is not None and text[k] is not None else _f(vals[k])
        q = quals[k]
        out.append({"t_ms": ts[k] // 1_000_000, "value": v, "quality": labels[q] if q < len(labels) else str(q)})
    return out


class HistorianAdapter:
    """HistorianService over a historian backend (queries run in worker threads)."""

    def __init__(self, comp: HistorianComponent) -> None:
        self.comp = comp

    def raw(self, tag: str, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        return _series_points(self.comp.backend.raw(tag, start_ns, end_ns), limit)

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_s: float,
                  functions: list[str]) -> list[dict[str, Any]]:
        agg = self.comp.backend.aggregate(tag, start_ns, end_ns, int(interval_s * 1e9))
        cols = {"min": agg.min, "max": agg.max, "avg": agg.avg, "last": agg.last, "twa": agg.twa,
                "count": agg.count}
        starts = agg.start.tolist()
        lists = {f: cols[f].tolist() for f in functions if f in cols}
        out = []
        for k, t in enumerate(starts):
            row: dict[str, Any] = {"t_ms": t // 1_000_000}
            for f, values in lists.items():
                row[f] = int(values[k]) if f == "count" else _f(values[k])
            out.append(row)
        return out

    def decimated(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> list[dict[str, Any]]:
        return _series_points(self.comp.backend.decimate(tag, start_ns, end_ns, pixels))

    def stats(self) -> dict[str, Any]:
        return self.comp.stats()


class HistorianComponent:
    """Recorder (tag changes → compression) → store-and-forward buffer → backend (embedded SQLite or InfluxDB)."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.backend: Any = None
        self.buffer: Any = None
        self.recorder: Any = None
        self.alarms: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    def _backend(self) -> Any:
        settings = self.server.settings.historian
        root = self.server.data_dir / "historian"
        if settings.backend == "influxdb" and settings.influxdb is not None:
            import os

            influx = importlib.import_module("historian.influx")
            cfg = settings.influxdb
            token = os.environ.get(cfg.token_env, "")
            if cfg.version == 1:
                return influx.InfluxV1Backend(cfg.url, cfg.bucket)
            return influx.InfluxV2Backend(cfg.url, cfg.org, cfg.bucket, token)
        return importlib.import_module("historian.sqlite_backend").SqliteBackend(root / "history.sqlite")

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.server.status("historian")
        if self.server.settings.historian.backend == "none":
            st.set("unavailable", "historian disabled in the settings (historian.backend: none)")
            return
        buffer_mod = importlib.import_module("historian.buffer")
        recorder_mod = importlib.import_module("historian.recorder")
        self.backend = await asyncio.to_thread(self._backend)
        self.buffer = buffer_mod.StoreAndForward(self.backend, self.server.data_dir / "historian" / "buffer",
                                                 on_alarm=self._on_alarm)
        self.buffer.start()
        self._attach(tagdb, recorder_mod)
        self.server.historian = HistorianAdapter(self)
        st.set("ok", f"{self.backend.name} backend")
        st.stats = self.stats
        self.task = asyncio.create_task(self._maintain(), name="historian-maintenance")

    def _attach(self, tagdb: TagDatabase, recorder_mod: Any) -> None:
        self.recorder = recorder_mod.Recorder(tagdb, self.buffer)
        self.backend.register_tags(self.recorder.tag_infos())
        self.recorder.start()

    def _on_alarm(self, alarm: Any) -> None:
        self.alarms[alarm.code] = alarm
        st = self.server.status("historian")
        active = [a for a in self.alarms.values() if a.active]
        if active:
            st.set("degraded", "; ".join(a.message for a in active))
        elif self.backend is not None:
            st.set("ok", f"{self.backend.name} backend")

    async def _maintain(self) -> None:
        while True:  # retention and downsampling, hourly
            await asyncio.sleep(3600)
            try:
                await asyncio.to_thread(self.backend.maintain, time.time_ns())
            except Exception:
                log.exception("historian maintenance failed")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": getattr(self.backend, "name", "")}
        if self.buffer is not None:
            out["buffer_fill_percent"] = round(self.buffer.fill_percent, 3)
            out["buffer_pending_points"] = self.buffer.pending_points
            out["backend_up"] = self.buffer.backend_up
            out["buffer"] = dict(self.buffer.stats)
        if self.recorder is not None:
            out["recorder"] = dict(self.recorder.stats)
        out["alarms"] = [{"code": a.code, "priority": a.priority, "message": a.message}
                         for a in self.alarms.values() if a.active]
        return out

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        if self.recorder is None:
            return {}
        await asyncio.to_thread(self.recorder.close)
        self._attach(tagdb, importlib.import_module("historian.recorder"))
        return {"recorded_tags": int(self.recorder.recorded.sum())}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)  # archive held snapshots, final flush
        if self.buffer is not None:
            await asyncio.to_thread(self.buffer.drain, 10.0)
            await asyncio.to_thread(self.buffer.close)
        if self.backend is not None:
            await asyncio.to_thread(self.backend.close)
        self.server.historian = None


# ---------------------------------------------------------------------- start everything
async def _start(server: ScadaServer, name: str, module: str, make: Any) -> None:
    st = server.status(name)
    try:
        if find(module) is None:
            st.set("unavailable", f"{module} is not in this build")
            return
        comp = make(server)
        await comp.start(server.config, server.tagdb)
        server.components[name] = comp
    except Exception as exc:  # a broken subsystem must not stop the others
        log.exception("%s: cannot start", name)
        st.set("down", f"cannot start: {exc!r}")


async def start_all(server: ScadaServer) -> None:
    for name, module in (("journal", "scada.journal"), ("alarms", "scada.alarms"), ("failsafe", "failsafe.gate")):
        st = server.status(name)
        try:
            if find(module) is None:
                st.set("unavailable", f"{module} is not in this build")
            else:
                st.set("unavailable", f"{module} is present but not wired yet")
        except Exception as exc:
            st.set("down", f"cannot load {module}: {exc!r}")
    await _start(server, "historian", "historian.recorder", HistorianComponent)
    await _start(server, "poll", "drivers.registry", PollComponent)
    await _start(server, "stale", "scada.tagdb", StaleComponent)


__all__ = ["build_tagdb", "find", "start_all"]
