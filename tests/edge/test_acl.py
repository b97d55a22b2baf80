"""A credential per edge and an ACL (drivers.sparkplug.broker) on a real Mosquitto: an edge publishes only as
itself and reads only its own commands; an unknown client is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from drivers.sparkplug import codec
from drivers.sparkplug.broker import acl, edge_user, listener_config, set_password
from drivers.sparkplug.topics import device_topic, group_filter, node_topic
from tests.edge.conftest import Mosquitto
from tests.peers import require_peer

SITE, HOST = "dijon-metropole", "scada-dijon-metropole"
PASSWORDS = {edge_user("east"): "east-secret-1", edge_user("west"): "west-secret-2", HOST: "host-secret-3"}


@pytest.fixture
async def guarded(tmp_path: Path) -> Mosquitto:
    require_peer("mosquitto_passwd", "Debian package mosquitto")
    broker = Mosquitto(tmp_path / "broker")
    passwd, acl_file = broker.folder / "passwd", broker.folder / "acl"
    for user, password in PASSWORDS.items():
        set_password(passwd, user, password)
    acl_file.write_text(acl(SITE, ["east", "west"], HOST))
    broker.conf.write_text(listener_config(broker.port, passwd, acl_file) + broker.own_user()
                           + f"log_dest file {broker.folder / 'log'}\n")
    return broker


def client(broker: Mosquitto, user: str, password: str, name: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.port, identifier=name, username=user, password=password, timeout=5)


async def test_an_edge_cannot_publish_as_another_nor_read_its_commands(guarded: Mosquitto) -> None:
    async with guarded, client(guarded, HOST, PASSWORDS[HOST], "host") as host, \
            client(guarded, edge_user("east"), PASSWORDS[edge_user("east")], "east") as east:
        await host.subscribe(group_filter(SITE), qos=1)
        await east.subscribe(node_topic(SITE, "NCMD", "east"), qos=1)
        await east.subscribe(node_topic(SITE, "NCMD", "west"), qos=1)  # not its own: the broker never delivers
        birth = codec.encode_node([codec.node_metric_bd_seq(0, 0)], timestamp_ns=0, seq=0)
        # east poses as west: accepted on the wire (MQTT 3.1.1 has no refusal), dropped by the broker
        await east.publish(node_topic(SITE, "NBIRTH", "west"), birth, qos=1)
        await east.publish(device_topic(SITE, "DDATA", "west", "cab-9"), birth, qos=1)
        await east.publish(node_topic(SITE, "NBIRTH", "east"), birth, qos=1)  # as itself: delivered
        await host.publish(node_topic(SITE, "NCMD", "west"), codec.rebirth_request(0), qos=1)
        await host.publish(node_topic(SITE, "NCMD", "east"), codec.rebirth_request(0), qos=1)
        seen_by_host: list[str] = []
        seen_by_east: list[str] = []

        async def collect(c: aiomqtt.Client, into: list[str]) -> None:
            async for m in c.messages:
                into.append(str(m.topic))

        tasks = [asyncio.create_task(collect(host, seen_by_host)), asyncio.create_task(collect(east, seen_by_east))]
        await asyncio.sleep(1.5)
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
    assert node_topic(SITE, "NBIRTH", "east") in seen_by_host
    assert not [t for t in seen_by_host if "/west" in t and ("NBIRTH" in t or "DDATA" in t)], seen_by_host
    assert seen_by_east == [node_topic(SITE, "NCMD", "east")]


async def test_no_anonymous_and_no_wrong_password(guarded: Mosquitto) -> None:
    async with guarded:
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", guarded.port, identifier="anon", timeout=5):
                pass
        with pytest.raises(aiomqtt.MqttError):
            async with client(guarded, edge_user("east"), "wrong", "east"):
                pass


def test_acl_text_names_only_its_own_topics() -> None:
    text = acl(SITE, ["east"], HOST)
    east = text.split(f"user {HOST}")[0]
    assert f"topic write spBv1.0/{SITE}/NBIRTH/east" in east and f"topic read spBv1.0/{SITE}/NCMD/east" in east
    rules = [line for line in east.splitlines() if line.startswith("topic")]
    assert rules and not [r for r in rules if "#" in r or "west" in r]
