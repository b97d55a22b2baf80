"""`scada users` and `scada reload` commands, health tags, and the API over TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import httpx
import pytest

from cli.main import main as cli
from server.app import ScadaServer
from tests.server.conftest import PASSWORDS, login, running_server


@pytest.fixture(autouse=True)
def _keep_root_logging() -> object:
    """`scada ...` configures the root logger on the captured stderr: restore it after each test."""
    import logging

    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = saved
    root.setLevel(level)


def test_users_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "d")
    monkeypatch.setenv("NEW_PW", "Fresh-Secret-123")
    assert cli(["users", "--data-dir", data, "add", "alice", "--role", "operator", "--password-env", "NEW_PW"]) == 0
    assert cli(["users", "--data-dir", data, "add", "alice", "--role", "viewer", "--password-env", "NEW_PW"]) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setenv("WEAK", "short")
    assert cli(["users", "--data-dir", data, "passwd", "alice", "--password-env", "WEAK"]) == 1
    assert "too short" in capsys.readouterr().err
    assert cli(["users", "--data-dir", data, "role", "alice", "supervisor"]) == 0
    assert cli(["users", "--data-dir", data, "list"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "supervisor" in out and "Fresh-Secret-123" not in out
    assert cli(["users", "--data-dir", data, "disable", "alice"]) == 0
    assert cli(["users", "--data-dir", data, "remove", "alice"]) == 0
    assert cli(["users", "--data-dir", data, "remove", "alice"]) == 1


async def test_reload_command_and_health_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_server(tmp_path / "d") as (server, _url):
        monkeypatch.setenv("ENG_PW", PASSWORDS["eng"])
        code = await asyncio.to_thread(cli, ["reload", "--data-dir", str(tmp_path / "d"), "--user", "eng",
                                             "--password-env", "ENG_PW"])
        assert code == 0 and server.config_generation == 2
        monkeypatch.setenv("OP_PW", PASSWORDS["op"])
        code = await asyncio.to_thread(cli, ["reload", "--data-dir", str(tmp_path / "d"), "--user", "op",
                                             "--password-env", "OP_PW"])
        assert code == 1 and server.config_generation == 2  # an operator may not reload
        await asyncio.sleep(1.5)
        s = server.tagdb.read("system/server/api/status")
        assert s.quality.is_good and s.value == 0  # ok
        assert server.tagdb.read("system/server/rss_mb").value > 0


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "server.crt", tmp / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    async with running_server(tmp_path / "d", **{"tls.cert": cert, "tls.key": key}) as (server, url):
        assert url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=url, verify=ctx, timeout=30) as c:
            h = await login(c, "view")
            assert (await c.get("/api/v1/auth/me", headers=h)).json()["user"] == "view"
        plain = url.replace("https://", "http://")
        async with httpx.AsyncClient(base_url=plain, timeout=5) as c:
            with pytest.raises(httpx.HTTPError):
                await c.get("/api/v1/health")
        assert isinstance(server, ScadaServer)


def test_server_refuses_to_start_printing_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.server.conftest import ROOT

    bad = tmp_path / "tags.yaml"
    bad.write_text((ROOT / "tags.yaml").read_text().replace("scan: fast", "scan: quick", 1)
                   .replace("scan: slow", "scan: sometimes", 1)
                   .replace("file: inventory/demo.csv", f"file: {ROOT / 'inventory' / 'demo.csv'}"))
    code = cli(["server", "--tags", str(bad), "--alarms", str(ROOT / "alarms.yaml"), "--data-dir",
                str(tmp_path / "d"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "quick" in err and "sometimes" in err and "the server does not start" in err
    code = cli(["server", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")])
    assert code == 1 and "plain HTTP is only served on loopback" in capsys.readouterr().err
