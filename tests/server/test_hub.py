"""The WebSocket fan-out without sockets: batching, coalescing, slow consumers, bounded memory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from scada.config import CityConfig, load_city
from scada.tagdb import TagDatabase
from server.hub import Hub, Subscription

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def city() -> CityConfig:
    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


def lighting(db: TagDatabase) -> np.ndarray:
    return np.array([i for i, t in enumerate(db.defs) if "/lighting/" in t.name], dtype=np.int64)


async def test_storm_coalesces_into_one_message_per_batch(city: CityConfig) -> None:
    db = TagDatabase(city.tags)
    got: list[dict] = []

    async def send(text: str) -> None:
        got.append(json.loads(text))

    hub = Hub(city, db, batch_s=0.05, queue_size=4)
    c = await hub.connect("t", send)
    hub.subscribe(c, Subscription(tags=["*/lighting/*"], alarms=False))
    hub.flush()
    await asyncio.sleep(0)
    assert got[-1]["type"] == "snapshot"
    idx = lighting(db)
    for k in range(50):  # 50 storms before one flush: one delta with the last values
        db.apply(idx, np.full(idx.size, float(k)), np.zeros(idx.size, dtype=np.uint8), 1)
    hub.flush()
    await asyncio.sleep(0)
    delta = got[-1]
    assert delta["type"] == "delta" and len(delta["tags"]) == idx.size
    assert {r[1] for r in delta["tags"] if r[0].endswith("/level")} == {49}
    await hub.aclose()


async def test_slow_consumer_is_resynchronised_with_bounded_queue(city: CityConfig) -> None:
    db = TagDatabase(city.tags)
    release = asyncio.Event()
    received: list[dict] = []

    async def stuck(text: str) -> None:
        await release.wait()
        received.append(json.loads(text))

    hub = Hub(city, db, batch_s=0.01, queue_size=3)
    slow = await hub.connect("slow", stuck)
    hub.subscribe(slow, Subscription(tags=["*/lighting/*"], alarms=False))
    idx = lighting(db)
    for k in range(40):
        db.apply(idx, np.full(idx.size, float(k)), np.zeros(idx.size, dtype=np.uint8), 1)
        hub.flush()
        await asyncio.sleep(0)
        assert slow.queue.qsize() <= 3  # never more than the bound, whatever the rate
    assert slow.resyncs > 0 and hub.stats["resyncs"] == slow.resyncs
    release.set()
    for _ in range(20):
        hub.flush()
        await asyncio.sleep(0.01)
    # after the resync the client ends with a snapshot carrying the latest values
    assert any(m["type"] == "snapshot" and m["reason"] == "resync" for m in received)
    state: dict[str, object] = {}
    for m in received:  # what a console shows after applying every message in order
        if m["type"] == "snapshot":
            state = {}
        state.update({r[0]: r[1] for r in m["tags"]})
    assert {v for k, v in state.items() if k.endswith("/level")} == {39}
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs)
    await hub.aclose()


async def test_alarm_filter_by_area_and_overflow(city: CityConfig) -> None:
    db = TagDatabase(city.tags)
    got: list[dict] = []

    async def send(text: str) -> None:
        got.append(json.loads(text))

    active = [{"id": "a1", "area": "Dijon", "equipment": "X"}, {"id": "a2", "area": "Talant", "equipment": "Y"}]
    hub = Hub(city, db, alarm_snapshot=lambda: active)
    c = await hub.connect("t", send)
    hub.subscribe(c, Subscription(areas=["Talant"]))
    hub.flush()
    await asyncio.sleep(0)
    assert [a["id"] for a in got[-1]["alarms"]] == ["a2"]
    hub.on_alarm({"id": "a3", "area": "Dijon"})
    hub.on_alarm({"id": "a4", "area": "talant"})
    hub.flush()
    await asyncio.sleep(0)
    assert [a["id"] for a in got[-1]["alarms"]] == ["a4"]
    for i in range(5000):  # more than the per-client bound: replaced by one fresh list
        hub.on_alarm({"id": f"s{i}", "area": "Talant"})
    assert len(c.alarm_events) <= 2000
    hub.flush()
    await asyncio.sleep(0)
    assert got[-1]["type"] == "snapshot" and got[-1]["reason"] == "resync"
    await hub.aclose()
