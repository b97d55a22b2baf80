"""TLS to Mosquitto and the server's own broker credential, with the real server, an edge and the simulator.

A test CA (a self-signed certificate for 127.0.0.1, made with ``cryptography`` in the test's folder), Mosquitto
with a TLS-only listener on 127.0.0.1, a password per client and the ACL (drivers.sparkplug.broker). The
partition's source is ``mqtts://``: the server (its password from ``$SCADA_MQTT_PASSWORD_FILE``, the CA from
``$SCADA_MQTT_CA``) and the edge (``ca_file``) verify the broker's certificate; the partition's data reach the
server. A plain MQTT client, a TLS client that does not trust the test CA and a client without a password are
refused; the server's password appears in no log line and not in /health.
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiomqtt
import pytest

from drivers.sparkplug.broker import acl, edge_user, listener_config, set_password, tls_context
from scada.config.partitions import Broker
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_commands import room
from tests.peers import require_peer
from tests.server.test_cli_tls import _self_signed
from tests.server.test_e2e import until

SITE, HOST = "dijon-metropole", "scada-dijon-metropole"
SERVER_PASSWORD = "host-secret-4f1c9b"
EDGE_PASSWORD = "edge-secret-77a2"


@pytest.fixture
async def tls_broker(tmp_path: Path) -> Mosquitto:
    require_peer("mosquitto_passwd", "Debian package mosquitto")
    broker = Mosquitto(tmp_path / "broker")
    cert, key = _self_signed(broker.folder)
    passwd, acl_file = broker.folder / "passwd", broker.folder / "acl"
    set_password(passwd, HOST, SERVER_PASSWORD)
    set_password(passwd, edge_user("lighting"), EDGE_PASSWORD)
    acl_file.write_text(acl(SITE, ["lighting"], HOST))
    broker.conf.write_text(listener_config(broker.port, passwd, acl_file, certfile=cert, keyfile=key)
                           + broker.own_user() + f"log_dest file {broker.folder / 'log'}\n")
    return broker


async def refused(**options: object) -> bool:
    try:
        async with aiomqtt.Client("127.0.0.1", timeout=5, **options):  # type: ignore[arg-type]
            return False
    except aiomqtt.MqttError:
        return True


async def test_tls_broker_with_the_servers_own_credential(tmp_path: Path, tls_broker: Mosquitto,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cert = tls_broker.folder / "server.crt"
    secret = tmp_path / "mqtt-password"
    secret.write_text(SERVER_PASSWORD + "\n")
    monkeypatch.setenv("SCADA_MQTT_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("SCADA_MQTT_CA", str(cert))
    source = f"mqtts://127.0.0.1:{tls_broker.port}"
    async with tls_broker, room(tmp_path, tls_broker, source=source,
                                edge_options={"username": edge_user("lighting"), "password": EDGE_PASSWORD,
                                              "ca_file": cert}) as r:
        host = r.component.hosts[Broker.parse(source)]
        assert host.tls is not None and host.username == HOST and r.edge.tls is not None
        await until("the edge's data good on the server over TLS", r.good, 60)
        assert r.node(tls_broker).online and r.node(tls_broker).fingerprint == r.node(tls_broker).expected

        port = tls_broker.port
        ours = tls_context(Broker.parse(source), cert)
        assert await refused(port=port, username=HOST, password=SERVER_PASSWORD)  # plain MQTT on a TLS port
        assert await refused(port=port, username=HOST, password=SERVER_PASSWORD,  # a CA we do not trust
                             tls_context=tls_context(Broker.parse(source)))
        assert await refused(port=port, tls_context=ours)  # TLS, but no credential
        assert not await refused(port=port, username=HOST, password=SERVER_PASSWORD, tls_context=ours)

        health = (await r.client.get("/api/v1/health", headers=r.headers)).text
        assert source in health and SERVER_PASSWORD not in health
    assert SERVER_PASSWORD not in caplog.text and EDGE_PASSWORD not in caplog.text
    assert f"user {HOST}" in caplog.text  # the credential in use is said, its password never
