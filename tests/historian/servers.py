"""Real InfluxDB 1.6.7 and VictoriaMetrics servers for the tests, on 127.0.0.1 in a temp dir.

Each server binds a free loopback port chosen at start (kept across ``restart`` so clients
reconnect), writes its data under the given directory and is stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx
import numpy as np

from historian.backend import Capability, Series

INFLUXD = shutil.which("influxd")
VICTORIA = shutil.which("victoria-metrics")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout_s: float = 20.0) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command()[0]} exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                if self.ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.command()[0]} did not become ready on {self.url}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class InfluxServer(_Server):
    """influxd 1.x with a generated config: everything in the temp dir, reporting off, loopback only."""

    def command(self) -> list[str]:
        cfg = self.root / "influxdb.conf"
        rpc = free_port()
        cfg.write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{self.root}/meta"
  logging-enabled = false
[data]
  dir = "{self.root}/data"
  wal-dir = "{self.root}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  pprof-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
  suppress-logo = true
""")
        assert INFLUXD
        return [INFLUXD, "run", "-config", str(cfg)]

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/ping", timeout=1).status_code == 204


class VictoriaServer(_Server):
    def command(self) -> list[str]:
        assert VICTORIA
        return [VICTORIA, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.root}/data",
                "-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms", "-loggerLevel=ERROR"]

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=1).status_code == 200


class VMExportReader:
    """Test-side reader of what the v2 write path stored in VictoriaMetrics (its /api/v1/export).

    VictoriaMetrics stores ``<measurement>_<field>`` metrics with ms timestamps and drops string
    fields, so this reader offers raw reads of value + quality only."""

    capabilities = frozenset({Capability.RAW})

    def __init__(self, url: str, measurement: str = "history") -> None:
        self.url = url
        self.measurement = measurement

    def _export(self, tag: str) -> dict[str, dict[int, float]]:
        match = f'{{__name__=~"{self.measurement}_(value|quality)",tagname="{tag}"}}'
        r = httpx.get(f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match}), timeout=10)
        r.raise_for_status()
        out: dict[str, dict[int, float]] = {}
        for line in r.text.splitlines():
            if line.strip():
                d = json.loads(line)
                field = d["metric"]["__name__"].rsplit("_", 1)[1]
                out.setdefault(field, {}).update(dict(zip(d["timestamps"], d["values"], strict=True)))
        return out

    def raw(self, tag: str, start_ns: int, end_ns: int) -> Series:
        d = self._export(tag)
        q = d.get("quality", {})
        v = d.get("value", {})
        ms = sorted(t for t in set(q) | set(v) if start_ns <= t * 1_000_000 < end_ns)
        return Series(tag, np.array([t * 1_000_000 for t in ms], np.int64),
                      np.array([v.get(t, np.nan) for t in ms], float),
                      np.array([int(q.get(t, 0)) for t in ms], np.uint8))

    def wait_count(self, tag: str, start_ns: int, end_ns: int, n: int, timeout_s: float = 20.0) -> Series:
        deadline = time.monotonic() + timeout_s
        while True:
            httpx.get(f"{self.url}/internal/force_flush", timeout=10)  # make recent writes searchable
            s = self.raw(tag, start_ns, end_ns)
            if len(s) >= n or time.monotonic() > deadline:
                return s
            time.sleep(0.2)
