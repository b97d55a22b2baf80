"""`scada run --distributed --headless` for real (slow step, ~60 s): the simulator, the server, Mosquitto over TLS
(a CA made in the data folder) with a password per edge and the ACL, and one `scada edge` for the demo's lighting
partition; the server consumes it over `mqtts://` (edge online, its devices OK, the cabinets' tags good, its broker
user the ACL's), a client that does not trust the demo's CA is refused, and Ctrl-C stops every child.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_run import start_run, stop_run
from tests.peers import require_peer


@pytest.mark.slow
def test_run_distributed_feeds_the_server_through_an_edge(tmp_path: Path) -> None:
    require_peer("mosquitto", "Debian package mosquitto (.ci/debian-packages.txt)")
    root = tmp_path / "data"
    proc, _env, lines = start_run(root, "--distributed")
    try:
        banner = "".join(lines)
        api = re.search(r"^API\s+(http://127\.0\.0\.1:\d+)$", banner, re.M)
        op = re.search(r"^\s+operator\s+(\S+)$", banner, re.M)
        broker = re.search(r"^broker\s+mqtts://127\.0\.0\.1:(\d+) ", banner, re.M)
        assert api and op and broker, banner
        assert "edges       1 `scada edge`" in banner, banner
        with httpx.Client(base_url=api[1], timeout=30) as c:
            token = c.post("/api/v1/auth/login", json={"user": "operator", "password": op[1]}).json()["token"]
            h = {"Authorization": f"Bearer {token}"}

            def edge() -> dict[str, Any]:
                got: dict[str, Any] = c.get("/api/v1/health", headers=h).json()["subsystems"]["edge"]
                return got

            end = time.monotonic() + 90
            while time.monotonic() < end:
                st = edge()
                nodes = [n for k, v in st["stats"].items() if k != "host" for n in v["nodes"].values()]
                if st["status"] == "ok" and nodes and all(n["online"] and set(n["devices"].values()) == {1}
                                                          for n in nodes):
                    break
                time.sleep(1)
            else:
                raise AssertionError(f"the edge never fed the server: {edge()}")
            rows = c.get("/api/v1/tags", params={"equipment": "C0001"}, headers=h).json()["tags"]
            assert rows and all(t["quality"] == "good" for t in rows), rows
        folder = root / "demo" / "distributed"
        log = (folder / "mosquitto.log").read_text()
        assert "u'edge-lighting'" in log and "u'scada-" in log  # each connected with its own credential
        conf = (folder / "mosquitto.conf").read_text()
        assert "certfile" in conf and "persistence true" in conf and (folder / "tls" / "ca.pem").is_file()
        assert f"→ mqtts://127.0.0.1:{broker[1]} as" in (folder / "edge-lighting.log").read_text()  # the edge over TLS
        # TLS only: the broker's certificate is the demo CA's; a client trusting only the system's CAs is refused
        port = int(broker[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            ctx = ssl.create_default_context()
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            ctx = ssl.create_default_context(cafile=str(folder / "tls" / "ca.pem"))
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        stop_run(proc, lines, root)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
