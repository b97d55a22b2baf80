"""Fixtures: real servers per test session (stopped by finalizers) and the backends under contract."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from historian.backend import Backend, Capability, Series
from historian.influx import InfluxV1Backend, InfluxV2Backend
from historian.sqlite_backend import SqliteBackend
from tests.historian.servers import InfluxServer, VictoriaServer, VMExportReader
from tests.peers import require_peer

_counter = itertools.count()


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    require_peer("influxd", "Debian package influxdb")
    srv = InfluxServer(tmp_path_factory.mktemp("influxd"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def vm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaServer]:
    require_peer("victoria-metrics", "Debian package victoria-metrics")
    srv = VictoriaServer(tmp_path_factory.mktemp("victoria"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@dataclass
class Store:
    """A backend under contract: ``backend`` writes, ``reader`` reads back (the backend itself, or a
    test-side reader when the backend has no query path), ``caps`` what can be checked."""

    kind: str
    backend: Backend
    reader: Any
    caps: frozenset[Capability]
    prefix: str  # unique per test: the session servers are shared

    def read(self, tag: str, start_ns: int, end_ns: int, n: int | None = None) -> Series:
        self.backend.flush()
        if isinstance(self.reader, VMExportReader):
            return self.reader.wait_count(tag, start_ns, end_ns, n if n is not None else 1)
        return self.reader.raw(tag, start_ns, end_ns)


@pytest.fixture(params=["sqlite", "influxdb-v1", "victoria-v2"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    prefix = f"t{next(_counter)}"
    if request.param == "sqlite":
        b: Backend = SqliteBackend(tmp_path / "h.sqlite", compact_points=50)
        st = Store("sqlite", b, b, b.capabilities, prefix)
    elif request.param == "influxdb-v1":
        srv = request.getfixturevalue("influx_server")
        b = InfluxV1Backend(srv.url, f"db_{prefix}")
        st = Store("influxdb-v1", b, b, b.capabilities, prefix)
    else:
        srv = request.getfixturevalue("vm_server")
        b = InfluxV2Backend(srv.url, org="city", bucket="scada", token="unused")
        reader = VMExportReader(srv.url)
        st = Store("victoria-v2", b, reader, frozenset({Capability.WRITE, Capability.RAW}), prefix)
    try:
        yield st
    finally:
        b.close()
