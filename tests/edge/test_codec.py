"""The Sparkplug pieces that need no broker: payload codec, topics and STATE, the store-and-forward, seq/bdSeq."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from drivers.sparkplug import codec
from drivers.sparkplug import sparkplug_b_pb2 as pb
from drivers.sparkplug.edge import EdgeNode
from drivers.sparkplug.store import ForwardStore
from drivers.sparkplug.topics import Topic, default_host_id, parse_state, state_payload, state_topic
from scada.config import load_city
from scada.config.partitions import Broker
from scada.quality import Quality
from tests.edge.test_edge_host import partitioned
from tests.server.test_e2e import fast_city

T0 = 1_767_225_600_123_456_789  # ns: sub-millisecond digits are lost on the wire (Sparkplug's unit is ms)


@pytest.mark.parametrize(("dtype", "value", "text"), [
    ("bool", 1.0, None), ("bool", 0.0, None), ("int", -5.0, None), ("int", 2.0**53, None), ("enum", -2.0, None),
    ("enum", 7.0, None), ("float", -273.15, None), ("float", math.nan, None), ("string", math.nan, "Bonjour"),
    ("string", math.nan, None),
])
def test_metric_round_trip(dtype: str, value: float, text: str | None) -> None:
    d = codec.MetricDef(f"t/{dtype}", 3, codec.DATATYPES[dtype], "kW")
    texts = {0: text} if text is not None else {}
    for birth in (True, False):
        payload = codec.build_metrics([d], np.array([value]), np.array([int(Quality.BAD_DEVICE)], dtype=np.uint8),
                                      np.array([T0], dtype=np.int64), texts, timestamp_ns=T0, seq=200, birth=birth)
        raw = payload.SerializeToString()
        back = codec.decode(raw)
        assert back.seq == 200 and back.timestamp == T0 // 1_000_000
        got = codec.decode_metrics(back, None if birth else {3: d.datatype}, receive_ns=T0 + 5)
        r = got.readings
        assert got.aliases == [3] and got.historical == [False]
        assert got.names == ([d.name] if birth else [""])
        assert got.units == (["kW"] if birth else [""])
        assert r.qualities.tolist() == [int(Quality.BAD_DEVICE)]
        assert r.source_ns.tolist() == [T0 // 1_000_000 * 1_000_000] and r.receive_ns.tolist() == [T0 + 5]
        if text is not None:
            assert r.texts == {0: text}
        elif math.isnan(value):
            assert math.isnan(r.values[0]) and back.metrics[0].is_null
        else:
            assert r.values[0] == value


def test_quality_codes_both_ways() -> None:
    for q, code in codec.QUALITY_CODES.items():
        assert codec.quality_of(code) is q
    # other OPC DA codes by their class: 0xC0 good, 0x40 uncertain, else bad
    assert codec.quality_of(0xD8) is Quality.GOOD and codec.quality_of(0x44) is Quality.UNCERTAIN
    assert codec.quality_of(0x1C) is Quality.BAD_DEVICE


def test_historical_replay_marks_every_metric_and_numbers_it() -> None:
    d = [codec.MetricDef("a", 0, codec.DOUBLE), codec.MetricDef("b", 1, codec.INT64)]
    raw = codec.build_metrics(d, np.array([1.5, 2.0]), np.zeros(2, dtype=np.uint8), np.array([T0, T0]), {},
                              timestamp_ns=T0).SerializeToString()
    back = codec.decode(codec.set_historical(raw, 255))
    assert back.seq == 255 and all(m.is_historical for m in back.metrics)
    assert codec.decode_metrics(back, {0: codec.DOUBLE, 1: codec.INT64}).historical == [True, True]


def test_node_control_metrics() -> None:
    death = codec.decode(codec.encode_node([codec.node_metric_bd_seq(17, T0)], timestamp_ns=T0, seq=None))
    assert codec.bd_seq_of(death) == 17 and not death.HasField("seq")  # an NDEATH carries no seq
    assert codec.asks_rebirth(codec.decode(codec.rebirth_request(T0)))
    assert not codec.asks_rebirth(codec.decode(codec.encode_node([codec.node_metric_rebirth(T0)], timestamp_ns=T0,
                                                                 seq=0)))
    # node control metrics are not tag values
    assert codec.decode_metrics(codec.decode(codec.rebirth_request(T0))).aliases == []


def test_topics_and_state() -> None:
    for text in ("spBv1.0/dijon/NBIRTH/east", "spBv1.0/dijon/DDATA/east/cab-1", "spBv1.0/STATE/scada-dijon"):
        t = Topic.parse(text)
        assert t is not None and str(t) == text
    assert Topic.parse("spBv1.0/dijon/XDATA/east") is None and Topic.parse("other/topic") is None
    assert state_topic(default_host_id("dijon")) == "spBv1.0/STATE/scada-dijon"
    assert parse_state(state_payload(True, 1234)) == (True, 1234)
    assert parse_state(b"ONLINE") is None  # Sparkplug 2.x's text STATE is not 3.0's JSON
    assert parse_state(b'{"online": "yes"}') is None


def test_store_keeps_order_caps_and_remembers_bd_seq(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = ForwardStore(path, max_rows=5)
    for k in range(8):
        store.put("t", bytes([k]))
    assert len(store) == 5 and store.dropped == 3  # full: the oldest went, counted
    rows = store.oldest(10)
    assert [p for _i, _t, p in rows] == [bytes([k]) for k in range(3, 8)]
    store.drop(rows[1][0])
    assert [p for _i, _t, p in store.oldest(10)] == [bytes([k]) for k in range(5, 8)]
    seqs = [store.next_bd_seq() for _ in range(3)]
    store.close()
    reopened = ForwardStore(path)
    assert seqs == [0, 1, 2] and reopened.next_bd_seq() == 3 and len(reopened) == 3  # across a restart
    for _ in range(252):
        reopened.next_bd_seq()
    assert reopened.next_bd_seq() == 0  # 255 wraps to 0
    reopened.close()


def test_edge_seq_wraps_at_256(tmp_path: Path) -> None:
    tags = partitioned(fast_city(tmp_path), "mqtt://127.0.0.1:1")
    config = load_city(tags, tags.parent / "alarms.yaml")
    edge = EdgeNode(config, "lighting", Broker("127.0.0.1", 1), tmp_path / "s.sqlite")
    try:
        assert [edge._next_seq() for _ in range(258)][-3:] == [255, 0, 1]
        # every metric of the partition has an alias of its own across the node (Sparkplug: unique per node)
        aliases = [d.alias for dev in edge.devices.values() for d in dev.defs]
        assert len(aliases) == len(set(aliases)) == len(edge.db)
        edge.bd_seq = 255
        birth = edge._node_birth(T0)
        assert isinstance(birth, pb.Payload) and codec.bd_seq_of(birth) == 255
    finally:
        edge.store.close()
