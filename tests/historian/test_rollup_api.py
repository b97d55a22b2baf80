"""Through the real server's API (embedded historian): a daily trend over a period whose raw data has
expired comes back from the roll-ups with the counts and extremes of the original points."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from historian.backend import Points, TagInfo
from historian.sqlite_backend import SqliteBackend
from scada.config import load_city
from tests.server.conftest import ROOT, login, running_server

NS = 1_000_000_000
DAY = 86400 * NS


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, UTC).isoformat().replace("+00:00", "Z")


async def test_daily_trend_over_expired_raw_data(tmp_path: Path) -> None:
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    tag = next(t.name for t in config.tags if t.dtype == "float")
    now = time.time_ns()
    d0 = (now // DAY - 200) * DAY
    ts = d0 + np.arange(0, 199 * 86400, 600, dtype=np.int64) * NS
    v = 100.0 + 50.0 * np.sin(np.arange(ts.size) / 37.0)
    be = SqliteBackend(tmp_path / "d" / "historian" / "history.sqlite")  # the path the server opens
    # as the server registers its tags (Recorder.tag_infos: retention class "default" for every tag)
    be.register_tags([TagInfo(tag)])
    be.write(Points([tag], np.zeros(ts.size, np.int64), ts, v, np.zeros(ts.size, np.uint8)))
    be.compact()
    assert be.maintain(now)["dropped"] > 0  # default retention: 90 days raw
    be.close()
    start, end = d0 + 10 * DAY, d0 + 40 * DAY
    async with running_server(tmp_path / "d", **{"historian.backend": "embedded"}) as (_server, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as c:
        h = await login(c, "view")
        r = await c.get("/api/v1/history/aggregate", headers=h, params={
            "tag": tag, "start": iso(start), "end": iso(end), "interval_s": 86400, "functions": "min,max,count"})
        assert r.status_code == 200, r.text
        pts = r.json()["points"]
        assert len(pts) == 30
        assert r.json()["source"] == "rollup" and r.json()["resolution_s"] is None  # exact from the hourly roll-ups
        assert r.json()["raw_from_ms"] > end // 1_000_000
        day = (ts[(ts >= start) & (ts < end)] - start) // DAY
        vv = v[(ts >= start) & (ts < end)]
        assert [p["count"] for p in pts] == np.bincount(day, minlength=30).tolist()
        assert [p["max"] for p in pts] == [float(vv[day == k].max()) for k in range(30)]
        assert [p["min"] for p in pts] == [float(vv[day == k].min()) for k in range(30)]
        r = await c.get("/api/v1/history/decimated", headers=h, params={
            "tag": tag, "start": iso(start), "end": iso(end), "pixels": 100})
        assert r.status_code == 200, r.text
        vals = [p["value"] for p in r.json()["points"]]
        assert r.json()["source"] == "rollup" and r.json()["resolution_s"] == 3600  # min+max per expired hour
        assert max(vals) == float(vv.max()) and min(vals) == float(vv.min())
        # a finer request than the roll-ups keep: hourly buckets, and the response says so
        r = await c.get("/api/v1/history/aggregate", headers=h, params={
            "tag": tag, "start": iso(start), "end": iso(start + DAY), "interval_s": 600, "functions": "max"})
        assert r.json()["source"] == "rollup" and r.json()["resolution_s"] == 3600 and len(r.json()["points"]) == 24
