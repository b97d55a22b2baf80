"""How the server builds the historian, and the query adapter the API calls.

::

    hist = Historian.build(config, tagdb, data_dir / "historian", backend="embedded",
                           on_alarm=..., on_fill=...)     # backend → StoreAndForward → Recorder
    hist.start()                                          # subscribe + flush and forwarder threads
    hist.raw(tag, start_ns, end_ns, limit)                # HistorianService protocol (server.services)
    hist.aggregate(tag, start_ns, end_ns, interval_s, ["min", "max", "avg", "last", "count", "twa"])
    hist.decimated(tag, start_ns, end_ns, pixels)
    hist.value_at(tag, ts_ns); hist.stats(); hist.maintain()
    hist.close()                                          # archive held points, flush, stop threads

Store specs for :func:`open_backend`: a path (``historian.sqlite``, or ``sqlite:PATH``) for the
embedded store; ``influxdb1://host:port/DB[?rp=RP]`` for InfluxDB 1.x; ``influxdb2://host:port?org=O&
bucket=B`` for the 2.x write path (token from ``$SCADA_INFLUX_TOKEN``).
"""

from __future__ import annotations

import math
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from historian.backend import Backend, RetentionPolicy, Series, tag_infos
from historian.buffer import AlarmHook, StoreAndForward
from historian.recorder import Recorder
from historian.sqlite_backend import SqliteBackend
from scada.config.model import CityConfig
from scada.quality import Quality
from scada.tagdb import TagDatabase

Json = dict[str, Any]
NS = 1_000_000_000


def open_backend(spec: str, *, retention: Mapping[str, RetentionPolicy] | None = None,
                 token: str | None = None) -> Backend:
    """A backend from a store spec (see the module docstring)."""
    u = urllib.parse.urlparse(spec)
    if u.scheme in ("influxdb1", "influx1"):
        from historian.influx import InfluxV1Backend

        q = urllib.parse.parse_qs(u.query)
        return InfluxV1Backend(f"http://{u.netloc}", u.path.strip("/") or "scada",
                               retention_policy=q.get("rp", [None])[0])
    if u.scheme in ("influxdb2", "influx2"):
        from historian.influx import InfluxV2Backend

        q = urllib.parse.parse_qs(u.query)
        return InfluxV2Backend(f"http://{u.netloc}", q.get("org", [""])[0], q.get("bucket", ["scada"])[0],
                               token or os.environ.get("SCADA_INFLUX_TOKEN", ""))
    path = spec.removeprefix("sqlite:")
    p = Path(path)
    if p.is_dir():
        p = p / "historian.sqlite"
    return SqliteBackend(p, retention=retention)


def _json_value(v: float, text: str | None = None) -> float | str | None:
    if text is not None:
        return text
    return None if math.isnan(v) else v


def _points(s: Series) -> list[Json]:
    out = []
    for i, (t, v, q) in enumerate(zip(s.ts.tolist(), s.value.tolist(), s.quality.tolist(), strict=True)):
        out.append({"t_ms": t // 1_000_000, "value": _json_value(v, s.text[i] if s.text else None),
                    "quality": Quality(q).label})
    return out


class Historian:
    """Recorder + store-and-forward + backend, and the query adapter (``HistorianService``)."""

    def __init__(self, backend: Backend, buffer: StoreAndForward | None, recorder: Recorder | None) -> None:
        self.backend = backend
        self.buffer = buffer
        self.recorder = recorder

    @classmethod
    def build(cls, config: CityConfig, tagdb: TagDatabase, directory: str | Path, *,
              backend: str | Backend = "embedded", retention: Mapping[str, RetentionPolicy] | None = None,
              on_alarm: AlarmHook | None = None,
              on_fill: Callable[[float], None] | None = None, capacity_bytes: int = 512 * 2**20) -> Historian:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(backend, Backend):
            be = backend
        elif backend == "embedded":
            be = SqliteBackend(directory / "historian.sqlite", retention=retention)
        else:
            be = open_backend(backend, retention=retention)
        be.register_tags(tag_infos(config))
        buf = StoreAndForward(be, directory / "buffer", on_alarm=on_alarm, on_fill=on_fill,
                              capacity_bytes=capacity_bytes)
        rec = Recorder(tagdb, buf)
        return cls(be, buf, rec)

    def start(self) -> None:
        if self.buffer is not None:
            self.buffer.start()
        if self.recorder is not None:
            self.recorder.start()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        if self.buffer is not None:
            self.buffer.drain(5.0)
            self.buffer.close()
        self.backend.close()

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # ------------------------------------------------------------------ HistorianService
    def raw(self, tag: str, start_ns: int, end_ns: int, limit: int) -> list[Json]:
        s = self.backend.raw(tag, start_ns, end_ns)
        return _points(s.take(slice(0, limit)) if len(s) > limit else s)

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_s: float, functions: list[str]) -> list[Json]:
        agg = self.backend.aggregate(tag, start_ns, end_ns, int(interval_s * NS))
        cols = {"min": agg.min, "max": agg.max, "avg": agg.avg, "last": agg.last, "twa": agg.twa,
                "count": agg.count}
        out = []
        for i in range(len(agg)):
            row: Json = {"t_ms": int(agg.start[i]) // 1_000_000}
            for f in functions:
                if f == "count":
                    row["count"] = int(agg.count[i])
                elif f in cols:
                    row[f] = _json_value(float(cols[f][i]))
            out.append(row)
        return out

    def decimated(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> list[Json]:
        return _points(self.backend.decimate(tag, start_ns, end_ns, pixels))

    def value_at(self, tag: str, ts_ns: int) -> Json:
        v = self.backend.value_at(tag, ts_ns)
        return {"t_ms": ts_ns // 1_000_000, "value": _json_value(v.value, v.text), "quality": v.quality.label,
                "interpolated": v.interpolated}

    def maintain(self, now_ns: int | None = None) -> dict[str, int]:
        return self.backend.maintain(time.time_ns() if now_ns is None else now_ns)

    def stats(self) -> Json:
        out: Json = {"backend": self.backend.name, "capabilities": sorted(c.value for c in self.backend.capabilities)}
        if self.buffer is not None:
            out["buffer"] = {"fill_percent": round(self.buffer.fill_percent, 2),
                             "pending_points": self.buffer.pending_points, "backend_up": self.buffer.backend_up,
                             **self.buffer.stats}
        if self.recorder is not None:
            out["recorder"] = dict(self.recorder.stats)
        return out
