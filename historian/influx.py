"""InfluxDB backends: line protocol over HTTP, v1 (``/write`` + InfluxQL ``/query``) and v2 (influxdb-client).

One point per stored value::

    history,tagname=dijon/lighting/LC001/power value=1234.5,quality=0i 1763812345000000000
    history,tagname=dijon/panel/P01/message quality=0i,text="Route barrée" 1763812345000000000

(``tag`` is an InfluxQL keyword, hence ``tagname``.) NaN values are written without the ``value``
field. A point is identified by (measurement, tagname, time): writing it again replaces it, so a
store-and-forward replay after a crash is stored once.

=======================  =====================================================================
InfluxV1Backend          InfluxDB 1.x: ``POST /write?db=&rp=&precision=ns``, reads with InfluxQL
                         (``/query?epoch=ns``): raw, point before/after; aggregates, decimation
                         and interpolation computed here from raw reads; retention policies +
                         a continuous query for downsampling. Tested against Debian's influxd 1.6.7.
InfluxV2Backend          InfluxDB 2.x/3.x write path via influxdb-client (SYNCHRONOUS: a failed
                         write raises), org/bucket/token. Tested against VictoriaMetrics' v2 write
                         endpoint. No query path (Flux is not available on this machine to test).
=======================  =====================================================================

Errors: connection failures, timeouts, 5xx, 401/403 (credentials), 404 (no database) and 429 are
:class:`BackendUnavailable` (the buffer keeps the data and retries); other 4xx (bad line protocol,
field type conflict, partial write) are :class:`BatchRejected` (the buffer quarantines after retries).

Lazy imports here: influxdb-client (about 0.2 s to import) loads only when an InfluxV2Backend is built.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import httpx
import numpy as np

from historian.backend import (
    Backend,
    BackendUnavailable,
    BatchRejected,
    Capability,
    Points,
    RetentionPolicy,
    Series,
)

log = logging.getLogger(__name__)

MAX_LINES = 5000


def _esc_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _esc_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_lines(points: Points, measurement: str = "history") -> list[str]:
    """Line protocol, one line per point (ns precision)."""
    m = _esc_key(measurement)
    names = points.names
    keys: dict[int, str] = {}
    out = []
    text = points.text
    for r, (i, t, v, q) in enumerate(zip(points.tag.tolist(), points.ts.tolist(), points.value.tolist(),
                                          points.quality.tolist(), strict=True)):
        key = keys.get(i)
        if key is None:
            key = keys[i] = f"{m},tagname={_esc_key(names[i])} "
        fields = f"quality={q}i"
        if math.isfinite(v):
            fields = f"value={v!r},{fields}"
        s = text.get(r) if text else None
        if s is not None:
            fields += f',text="{_esc_str(s)}"'
        out.append(f"{key}{fields} {t}")
    return out


def _status_error(where: str, status: int, body: str) -> Exception:
    msg = f"{where}: HTTP {status}: {body[:300]}"
    if status in (401, 403, 404, 408, 429) or status >= 500:
        return BackendUnavailable(msg)
    return BatchRejected(msg)


class InfluxV1Backend(Backend):
    """InfluxDB 1.x over its HTTP API (database + retention policy)."""

    name = "influxdb-v1"
    capabilities = frozenset({Capability.WRITE, Capability.RAW, Capability.AGGREGATE, Capability.DECIMATE,
                              Capability.VALUE_AT, Capability.TEXT, Capability.RETENTION, Capability.DOWNSAMPLE})

    def __init__(self, url: str, database: str, *, retention_policy: str | None = None, username: str | None = None,
                 password: str | None = None, measurement: str = "history", timeout_s: float = 10.0,
                 create_database: bool = True, max_lines: int = MAX_LINES) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.database = database
        self.rp = retention_policy
        self.measurement = measurement
        self.max_lines = max_lines
        auth = (username, password or "") if username else None
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, auth=auth)
        self._db_ok = False
        self._create = create_database

    def _ensure_db(self) -> None:
        if self._db_ok or not self._create:
            return
        self.influxql(f'CREATE DATABASE "{self.database}"', post=True)
        self._db_ok = True

    # ------------------------------------------------------------------ write
    def write(self, points: Points) -> None:
        if not len(points):
            return
        self._ensure_db()
        lines = to_lines(points, self.measurement)
        params = {"db": self.database, "precision": "ns"}
        if self.rp:
            params["rp"] = self.rp
        for a in range(0, len(lines), self.max_lines):
            body = "\n".join(lines[a:a + self.max_lines]).encode()
            try:
                r = self.http.post("/write", params=params, content=body)
            except httpx.HTTPError as exc:
                raise BackendUnavailable(f"{self.name} {self.url}: write failed: {exc!r}") from exc
            if r.status_code != 204:
                raise _status_error(f"{self.name} {self.url} write", r.status_code, r.text)

    # ------------------------------------------------------------------ InfluxQL
    def influxql(self, q: str, post: bool = False, bind: dict[str, str | int | float] | None = None,
                 ) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``series`` list of the first statement (raises on errors).

        Values go in ``bind`` (``$name`` in ``q``, InfluxDB's bound parameters), never into ``q``."""
        params = {"q": q, "db": self.database, "epoch": "ns"}
        if bind:
            params["params"] = json.dumps(bind)
        try:
            r = self.http.post("/query", params=params) if post else self.http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{self.name} {self.url}: query failed: {exc!r}") from exc
        if r.status_code != 200:
            raise _status_error(f"{self.name} {self.url} query", r.status_code, r.text)
        data = r.json()
        results = data.get("results") or [{}]
        err = results[0].get("error") or data.get("error")
        if err:
            raise BatchRejected(f"{self.name} query {q[:120]!r}: {err}")
        return list(results[0].get("series") or [])

    def _from(self, rp: str | None = None, measurement: str | None = None) -> str:
        rp = rp or self.rp
        m = measurement or self.measurement
        return f'"{self.database}"."{rp}"."{m}"' if rp else f'"{m}"'

    def _series(self, tag: str, where: str, tail: str = "") -> Series:
        # identifiers from the settings, ``where`` and ``tail`` from this class with int times; the tag bound
        q = f'SELECT "value", "quality", "text" FROM {self._from()} WHERE "tagname" = $tag AND {where} {tail}'  # noqa: S608
        series = self.influxql(q, bind={"tag": tag})
        if not series:
            return Series.empty(tag)
        cols = series[0]["columns"]
        rows = series[0]["values"]
        ci = {c: i for i, c in enumerate(cols)}
        ts = np.array([r[ci["time"]] for r in rows], np.int64)
        v = np.array([np.nan if r[ci["value"]] is None else float(r[ci["value"]]) for r in rows])
        q_ = np.array([0 if r[ci["quality"]] is None else int(r[ci["quality"]]) for r in rows], np.uint8)
        texts = [r[ci["text"]] for r in rows]
        return Series(tag, ts, v, q_, texts if any(x is not None for x in texts) else None)

    def tags(self) -> list[str]:
        series = self.influxql(f'SHOW TAG VALUES FROM "{self.measurement}" WITH KEY = "tagname"')
        return sorted(str(r[1]) for s in series for r in (s.get("values") or []))

    def raw(self, tag: str, start_ns: int, end_ns: int) -> Series:
        return self._series(tag, f"time >= {int(start_ns)} AND time < {int(end_ns)}", "ORDER BY time ASC")

    def point_before(self, tag: str, ts_ns: int) -> Series:
        return self._series(tag, f"time <= {int(ts_ns)}", "ORDER BY time DESC LIMIT 1")

    def point_after(self, tag: str, ts_ns: int) -> Series:
        return self._series(tag, f"time > {int(ts_ns)}", "ORDER BY time ASC LIMIT 1")

    # ------------------------------------------------------------------ retention / downsampling
    def ensure_retention(self, policy: RetentionPolicy, raw_rp: str = "raw", rollup_rp: str = "rollup") -> None:
        """Create (or alter) the raw retention policy (made the default) and, when roll-ups are kept, a
        roll-up policy with a continuous query that downsamples into ``<measurement>_rollup``."""
        self._ensure_db()
        db = self.database
        raw_d = f"{max(3600, int(policy.raw_s))}s"
        self._rp_upsert(raw_rp, raw_d, default=True)
        self.rp = raw_rp
        if policy.rollup_keep_s > 0:
            self._rp_upsert(rollup_rp, f"{max(3600, int(policy.rollup_keep_s))}s", default=False)
            every = f"{int(policy.rollup_interval_s)}s"
            m = self.measurement
            existing = {r[0] for s in self.influxql("SHOW CONTINUOUS QUERIES") if s.get("name") == db
                        for r in (s.get("values") or [])}
            cq = f"cq_{m}_rollup"
            if cq not in existing:  # identifiers from the settings, a duration from the policy: no value to bind
                self.influxql(
                    f'CREATE CONTINUOUS QUERY "{cq}" ON "{db}" BEGIN SELECT min("value") AS "vmin", '  # noqa: S608
                    f'max("value") AS "vmax", mean("value") AS "avg", last("value") AS "last", count("value") AS "n" '
                    f'INTO "{db}"."{rollup_rp}"."{m}_rollup" FROM "{db}"."{raw_rp}"."{m}" '
                    f"GROUP BY time({every}), * END", post=True)

    def _rp_upsert(self, name: str, duration: str, default: bool) -> None:
        existing = {r[0] for s in self.influxql(f'SHOW RETENTION POLICIES ON "{self.database}"')
                    for r in (s.get("values") or [])}
        verb = "ALTER" if name in existing else "CREATE"
        rep = "" if verb == "ALTER" else " REPLICATION 1"
        self.influxql(f'{verb} RETENTION POLICY "{name}" ON "{self.database}" DURATION {duration}{rep}'
                      f'{" DEFAULT" if default else ""}', post=True)

    def close(self) -> None:
        self.http.close()


class InfluxV2Backend(Backend):
    """InfluxDB 2.x/3.x write path (org, bucket, token) through influxdb-client, synchronously."""

    name = "influxdb-v2"
    capabilities = frozenset({Capability.WRITE, Capability.TEXT})

    def __init__(self, url: str, org: str, bucket: str, token: str, *, measurement: str = "history",
                 timeout_s: float = 10.0, max_lines: int = MAX_LINES) -> None:
        super().__init__()
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url
        self.org = org
        self.bucket = bucket
        self.measurement = measurement
        self.max_lines = max_lines
        self.client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        # SYNCHRONOUS: write() raises on failure (the default batching API only logs errors)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, points: Points) -> None:
        if not len(points):
            return
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        lines = to_lines(points, self.measurement)
        for a in range(0, len(lines), self.max_lines):
            try:
                self.api.write(bucket=self.bucket, org=self.org, record=lines[a:a + self.max_lines],
                               write_precision=WritePrecision.NS)  # type: ignore[arg-type]
            except ApiException as exc:
                raise _status_error(f"{self.name} {self.url} write", int(exc.status or 0) or 503,
                                    str(exc.body or exc.reason)) from exc
            except Exception as exc:  # urllib3 connection errors, timeouts (no common base): BackendUnavailable
                raise BackendUnavailable(f"{self.name} {self.url}: write failed: {exc!r}") from exc

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
