"""The historian's façade: how the server builds it, and the queries the API calls on it directly.

::

    hist = Historian.build(config, tagdb, data_dir / "historian", backend="embedded",
                           on_alarm=..., on_fill=...)     # backend → StoreAndForward → Recorder
    hist.start()                                          # subscribe + flush and forwarder threads
    hist.rebind(new_tagdb)                                # a reload: a new recorder on the new tag database
    hist.backfill(indices, readings)                      # past values (an edge's replay), as they were
    hist.raw(tag, start_ns, end_ns, limit)                # HistorianService protocol (server.services)
    hist.aggregate(tag, start_ns, end_ns, interval_s, ["min", "max", "avg", "last", "count", "twa"])
    hist.decimated(tag, start_ns, end_ns, pixels)         # both: {"points", "source", "resolution_s", "raw_from_ms"}
    hist.value_at(tag, ts_ns); hist.stats(); hist.maintain()
    hist.close()                                          # archive held points, flush, stop threads

Queries raise :class:`scada.errors.Refused` when the storage cannot answer: ``UNAVAILABLE`` (backend
down) or ``UNSUPPORTED`` (a query this backend cannot run); the API maps the code to its status.

Store specs for :func:`open_backend`: a path (a folder holding ``history.sqlite``, a file, or ``sqlite:PATH``) for the
embedded store; ``influxdb1://host:port/DB[?rp=RP]`` for InfluxDB 1.x; ``influxdb2://host:port?org=O&
bucket=B`` for the 2.x write path (token from ``$SCADA_INFLUX_TOKEN``).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from historian.backend import Backend, Points, RetentionPolicy, Series, Unsupported
from historian.buffer import AlarmHook, StoreAndForward
from historian.recorder import Recorder
from historian.sqlite_backend import SqliteBackend
from scada.config.model import CityConfig
from scada.errors import Refusal, Refused, StorageError
from scada.quality import Quality
from scada.tagdb import I64, Readings, TagDatabase

Json = dict[str, Any]
NS = 1_000_000_000
#: the embedded store's file name in its folder (the server's: data_dir/historian/history.sqlite)
STORE_NAME = "history.sqlite"


def open_backend(spec: str, *, retention: Mapping[str, RetentionPolicy] | None = None,
                 token: str | None = None) -> Backend:
    """A backend from a store spec (see the module docstring)."""
    u = urllib.parse.urlparse(spec)
    if u.scheme in ("influxdb1", "influx1"):
        from historian.influx import InfluxV1Backend  # lazy: an SQLite-only server never loads the Influx clients

        q = urllib.parse.parse_qs(u.query)
        return InfluxV1Backend(f"http://{u.netloc}", u.path.strip("/") or "scada",
                               retention_policy=q.get("rp", [None])[0])
    if u.scheme in ("influxdb2", "influx2"):
        from historian.influx import InfluxV2Backend  # lazy: as above (influxdb-client takes ~0.2 s to import)

        q = urllib.parse.parse_qs(u.query)
        return InfluxV2Backend(f"http://{u.netloc}", q.get("org", [""])[0], q.get("bucket", ["scada"])[0],
                               token or os.environ.get("SCADA_INFLUX_TOKEN", ""))
    path = spec.removeprefix("sqlite:")
    p = Path(path)
    if p.is_dir():
        p = p / STORE_NAME
    return SqliteBackend(p, retention=retention)


def _json_value(v: float, text: str | None = None) -> float | str | None:
    if text is not None:
        return text
    return None if math.isnan(v) else v


def _points(s: Series, limit: int | None = None) -> list[Json]:
    n = len(s) if limit is None else min(len(s), limit)
    ts, vals, quals = s.ts[:n].tolist(), s.value[:n].tolist(), s.quality[:n].tolist()
    text = s.text
    out = []
    for k in range(n):
        q = quals[k]
        out.append({"t_ms": ts[k] // 1_000_000,
                    "value": _json_value(vals[k], text[k] if text is not None else None),
                    "quality": Quality(q).label if q in Quality._value2member_map_ else str(q)})
    return out


def _provenance(result: Any) -> Json:
    """Where a trend's values come from: raw points, the hourly roll-ups (raw data expired) or both."""
    raw_from = getattr(result, "raw_from_ns", None)
    resolution = int(getattr(result, "resolution_ns", 0) or 0)
    return {"source": str(getattr(result, "source", "raw")),
            "resolution_s": resolution / 1e9 if resolution else None,
            "raw_from_ms": raw_from // 1_000_000 if raw_from is not None else None}


def _refusal(what: str, exc: StorageError) -> Refused:
    if isinstance(exc, Unsupported):
        return Refused(what, f"not supported by the historian backend: {exc}", Refusal.UNSUPPORTED)
    return Refused(what, f"historian unavailable: {exc}", Refusal.UNAVAILABLE)


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
        """Backend → store-and-forward buffer (``directory/buffer``) → recorder on ``tagdb``. Nothing runs
        until :meth:`start`. ``backend``: a Backend, "embedded" (``directory/history.sqlite``) or a store spec."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(backend, Backend):
            be = backend
        elif backend == "embedded":
            be = SqliteBackend(directory / STORE_NAME, retention=retention)
        else:
            be = open_backend(backend, retention=retention)
        buf = StoreAndForward(be, directory / "buffer", on_alarm=on_alarm, on_fill=on_fill,
                              capacity_bytes=capacity_bytes)
        return cls(be, buf, Recorder(tagdb, buf))

    def start(self) -> None:
        """Start the buffer's forwarder, then record (the recorded tags are registered on the backend first)."""
        if self.buffer is not None:
            self.buffer.start()
        self._record()

    def _record(self) -> None:
        if self.recorder is not None:
            self.backend.register_tags(self.recorder.tag_infos())  # step for non-analogue tags, units
            self.recorder.start()

    def rebind(self, tagdb: TagDatabase) -> int:
        """A new tag database (reload): the recorder archives what it holds and a new one records; returns
        how many tags are recorded. The buffer and the backend go on."""
        if self.buffer is None:
            return 0
        if self.recorder is not None:
            self.recorder.close()
        self.recorder = Recorder(tagdb, self.buffer)
        self._record()
        return int(self.recorder.recorded.sum())

    def backfill(self, indices: I64, readings: Readings) -> int:
        """Values older than the live ones (an edge's store-and-forward replay, ``is_historical``), stored as they
        are with their source timestamps: not through the recorder's compressor, whose per-tag state only moves
        forward in time. ``indices`` are the recorded tag database's (the server's). Only recorded tags; the
        buffer makes them durable as it does the recorder's batches. Returns how many points were stored."""
        rec = self.recorder
        if rec is None or not len(readings):
            return 0
        keep = np.flatnonzero(rec.recorded[indices])
        if not keep.size:
            return 0
        where = {int(k): j for j, k in enumerate(keep.tolist())}
        points = Points(rec.tagdb.names, indices[keep], readings.source_ns[keep], readings.values[keep],
                        readings.qualities[keep], {where[k]: t for k, t in readings.texts.items() if k in where})
        if self.buffer is not None:
            self.buffer.submit(points, rec.analogue[points.tag])
        else:
            self.backend.write(points)
        return len(points)

    def close(self, drain_s: float = 10.0) -> None:
        """Archive held snapshots, final flush, replay what the buffer holds for up to ``drain_s``, close."""
        if self.recorder is not None:
            self.recorder.close()
        if self.buffer is not None:
            self.buffer.drain(drain_s)
            self.buffer.close()
        self.backend.close()

    async def aclose(self, drain_s: float = 10.0) -> None:
        await asyncio.to_thread(self.close, drain_s)

    # ------------------------------------------------------------------ HistorianService
    def raw(self, tag: str, start_ns: int, end_ns: int, limit: int) -> list[Json]:
        try:
            return _points(self.backend.raw(tag, start_ns, end_ns), limit)
        except StorageError as exc:
            raise _refusal(f"raw history of {tag!r}", exc) from None

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_s: float, functions: list[str]) -> Json:
        """``{"points": [{"t_ms", <function>: value...}], "source", "resolution_s", "raw_from_ms"}``."""
        try:
            agg = self.backend.aggregate(tag, start_ns, end_ns, int(interval_s * NS))
        except StorageError as exc:
            raise _refusal(f"aggregated history of {tag!r}", exc) from None
        cols = {"min": agg.min, "max": agg.max, "avg": agg.avg, "last": agg.last, "twa": agg.twa,
                "count": agg.count}
        lists = {f: cols[f].tolist() for f in functions if f in cols}
        out = []
        for k, t in enumerate(agg.start.tolist()):
            row: Json = {"t_ms": t // 1_000_000}
            for f, values in lists.items():
                row[f] = int(values[k]) if f == "count" else _json_value(float(values[k]))
            out.append(row)
        return {"points": out, **_provenance(agg)}

    def decimated(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> Json:
        """Like :meth:`aggregate`: the points (min and max per pixel) and where they come from."""
        try:
            series = self.backend.decimate(tag, start_ns, end_ns, pixels)
        except StorageError as exc:
            raise _refusal(f"decimated history of {tag!r}", exc) from None
        return {"points": _points(series), **_provenance(series)}

    def value_at(self, tag: str, ts_ns: int) -> Json:
        v = self.backend.value_at(tag, ts_ns)
        return {"t_ms": ts_ns // 1_000_000, "value": _json_value(v.value, v.text), "quality": v.quality.label,
                "interpolated": v.interpolated}

    def maintain(self, now_ns: int | None = None) -> dict[str, int]:
        return self.backend.maintain(time.time_ns() if now_ns is None else now_ns)

    def stats(self) -> Json:
        out: Json = {"backend": self.backend.name,
                     "capabilities": sorted(c.value for c in self.backend.capabilities)}
        if self.buffer is not None:
            out["buffer_fill_percent"] = round(self.buffer.fill_percent, 3)
            out["buffer_pending_points"] = self.buffer.pending_points
            out["backend_up"] = self.buffer.backend_up
            out["buffer"] = dict(self.buffer.stats)
        if self.recorder is not None:
            out["recorder"] = dict(self.recorder.stats)
        return out
