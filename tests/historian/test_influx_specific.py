"""InfluxDB specifics: failed writes are never silent; retention policies and downsampling on 1.6.7."""

from __future__ import annotations

import time

import pytest

from historian.backend import BackendUnavailable, BatchRejected, Points, RetentionPolicy
from historian.influx import InfluxV1Backend, InfluxV2Backend, to_lines
from tests.historian.servers import InfluxServer, free_port

T0 = 1_763_800_000_000_000_000


def test_line_protocol_escaping() -> None:
    p = Points.from_rows([("a b,c=d", T0, 1.5, 0), ("t", T0 + 1, None, 2), ("s", T0 + 2, 'say "hi"\\', 0)])
    assert to_lines(p) == [f"history,tagname=a\\ b\\,c\\=d value=1.5,quality=0i {T0}",
                           f"history,tagname=t quality=2i {T0 + 1}",
                           f'history,tagname=s quality=0i,text="say \\"hi\\"\\\\" {T0 + 2}']


def test_v2_write_to_a_server_without_the_v2_api_raises(influx_server: InfluxServer) -> None:
    # influxd 1.6.7 answers /api/v2/write with 404: the synchronous client raises, we do not swallow it
    be = InfluxV2Backend(influx_server.url, org="o", bucket="b", token="t")
    with pytest.raises(BackendUnavailable, match="404"):
        be.write(Points.from_rows([("x", T0, 1.0, 0)]))
    be.close()


def test_unreachable_server_raises() -> None:
    be = InfluxV1Backend(f"http://127.0.0.1:{free_port()}", "nowhere", timeout_s=1)
    with pytest.raises(BackendUnavailable):
        be.write(Points.from_rows([("x", T0, 1.0, 0)]))
    be.close()


def test_retention_policies_and_continuous_query_on_1_6_7(influx_server: InfluxServer) -> None:
    be = InfluxV1Backend(influx_server.url, "retained")
    be.ensure_retention(RetentionPolicy(raw_s=90 * 86400, rollup_interval_s=3600, rollup_keep_s=5 * 365 * 86400))
    be.ensure_retention(RetentionPolicy(raw_s=30 * 86400))  # idempotent: alters
    rps = {r[0]: r for s in be.influxql('SHOW RETENTION POLICIES ON "retained"') for r in s["values"]}
    assert rps["raw"][1] == "720h0m0s" and rps["raw"][4] is True
    assert rps["rollup"][1] == "43800h0m0s"
    cqs = [r[0] for s in be.influxql("SHOW CONTINUOUS QUERIES") if s["name"] == "retained" for r in s["values"]]
    assert cqs == ["cq_history_rollup"]
    now = time.time_ns()
    be.write(Points.from_rows([("x", now, 1.0, 0)]))  # goes to the raw policy
    assert be.raw("x", 0, 2**62).value.tolist() == [1.0]
    # a point older than the raw policy: influxd refuses it (partial write), we raise, never silent
    with pytest.raises(BatchRejected, match="beyond retention policy"):
        be.write(Points.from_rows([("x", now - 40 * 86400 * 10**9, 2.0, 0)]))
    be.close()
