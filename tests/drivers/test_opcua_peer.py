"""OPC UA driver against an independent server: node-opcua (tests/peers/opcua_server.js).

The simulator's asyncua server and our driver share a library; these tests check the driver against
another implementation, on what a real server may send or answer::

    node-opcua server ── a numeric tag's value becomes a DateTime, LocalizedText, NodeId, StatusCode
                      ── a UInt16 node (our write of 70000 cannot be encoded)
                      ── --secure: Basic256Sha256 SignAndEncrypt, unknown client certificates refused
"""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua import OpcUaDriver
from scada.config.model import CityConfig, DeviceDef, TagDef
from scada.errors import AuthError, WriteNotAllowed
from scada.poll import Poller, device_stat_tags, stat_tag_name
from scada.quality import Quality
from scada.tagdb import TagDatabase
from tests.drivers.conftest import wait_for
from tests.peers import NodeScript

NUMBERS = ("num/a", "num/b", "num/c")
ODD = ("odd/datetime", "odd/text", "odd/nodeid", "odd/status")


def point(key: str, dtype: str = "float", access: str = "r", name: str = "") -> TagDef:
    name = name or key
    return TagDef(f"peer/{name}", "P", name, name, "peer", f"nsu=urn:test:peer;s=peer/{key}", dtype, access=access)


def peer_city(url: str, points: list[TagDef], **connection: str) -> CityConfig:
    dev = DeviceDef("peer", "opcua", {"url": url, **connection}, "normal", 0.3, 2.0, 0,
                    tags=[p.name for p in points])
    return CityConfig("peer", "UTC", {"normal": 0.3}, {}, {"peer": dev}, {}, points, [], [], [])


class Polled:
    """A Poller on the one peer device, keeping every driver it made (one per poller, or it re-created one)."""

    def __init__(self, cfg: CityConfig) -> None:
        self.db = TagDatabase(cfg.tags + device_stat_tags(cfg, ["peer"]))
        self.drivers: list[OpcUaDriver] = []
        self.poller = Poller(cfg, self._factory, self.db, devices=["peer"], max_backoff_s=0.6)

    def _factory(self, dev: DeviceDef) -> OpcUaDriver:
        self.drivers.append(OpcUaDriver(dev))
        return self.drivers[-1]

    def value(self, key: str) -> object:
        return self.db.read(f"peer/{key}").value

    def quality(self, key: str) -> Quality:
        return self.db.read(f"peer/{key}").quality

    def stat(self, name: str) -> object:
        return self.db.read(stat_tag_name("peer", name)).value


async def test_a_non_numeric_value_is_bad_config_for_that_point_and_the_session_stays() -> None:
    """Defect: one DateTime on a numeric tag raised in int(raw), dropped the session and lost the batch."""
    points = [point(k) for k in NUMBERS] + [point(k) for k in ODD[:3]] + [point(ODD[3], "int")]
    async with NodeScript("opcua_server.js", "--lifetime", "90") as peer:
        cfg = peer_city(peer.ready["url"], points)
        polled = Polled(cfg)
        await polled.poller.start()
        try:
            await wait_for(lambda: all(polled.quality(k) is Quality.GOOD for k in NUMBERS + ODD), 15.0)
            assert polled.value("num/c") == 3.5 and polled.value("odd/datetime") == 0.0
            (drv,) = polled.drivers
            session = drv._client
            assert session is not None
            # one publish carries the four odd values and the three new numbers (num/c is last on the server)
            await peer.command("morph")
            await wait_for(lambda: polled.value("num/c") == 13.5, 5.0)
            await wait_for(lambda: all(polled.quality(k) is Quality.BAD_CONFIG for k in ODD), 5.0)
            assert (polled.value("num/a"), polled.value("num/b")) == (11.5, 12.5)
            assert all(polled.quality(k) is Quality.GOOD for k in NUMBERS)
            # the same session, never dropped: the device stayed "ok" and no attempt failed
            assert drv.connected and drv._client is session and polled.drivers == [drv]
            assert polled.stat("status") == 1 and polled.stat("errors") == 0
            assert drv.last_error is None
            # and its subscription still delivers
            await peer.command("bump")
            await wait_for(lambda: polled.value("num/a") == 21.5 and polled.value("num/c") == 23.5, 5.0)
            assert drv._client is session
        finally:
            await polled.poller.aclose()

        # a new session whose first Read (not a notification) meets the odd values
        fresh = OpcUaDriver(cfg.devices["peer"])
        await fresh.connect()
        try:
            samples = dict(zip([p.tag for p in points], await fresh.read(points), strict=True))
            assert {k: samples[k].quality for k in ODD} == dict.fromkeys(ODD, Quality.BAD_CONFIG)
            assert [samples[k].value for k in NUMBERS] == [21.5, 22.5, 23.5]
            assert fresh.connected and fresh.last_error is None
            # a string tag takes the LocalizedText's text
            (text,) = await fresh.read([point("odd/text", "string", name="odd/text_as_string")])
            assert (text.value, text.quality) == ("porte ouverte", Quality.GOOD)
        finally:
            await fresh.aclose()


async def test_a_value_outside_the_nodes_type_is_a_value_refusal_and_the_session_stays() -> None:
    """Defect: 70000 written to a UInt16 node failed in asyncua's encoder and was reported as a comm failure."""
    u16 = point("num/u16", "int", access="rw")
    async with NodeScript("opcua_server.js", "--lifetime", "60") as peer:
        cfg = peer_city(peer.ready["url"], [u16])
        drv = OpcUaDriver(cfg.devices["peer"])
        await drv.connect()
        try:
            session = drv._client
            with pytest.raises(WriteNotAllowed, match=r"out of range for the node's UInt16 \(0\.\.65535\)"):
                await drv.write(u16, 70_000)
            with pytest.raises(WriteNotAllowed, match="out of range"):
                await drv.write(u16, -1)
            assert drv.connected and drv._client is session
            assert (await peer.command("u16")) == {"u16": 7}  # nothing reached the server
            back = await drv.write(u16, 65_535)  # the top of the range is a plain write
            assert (back.value, back.quality) == (65_535, Quality.GOOD)
            assert (await peer.command("u16")) == {"u16": 65_535}
            assert drv._client is session
        finally:
            await drv.aclose()


async def client_certificate(folder: Path, device: str) -> tuple[Path, Path]:
    """A self-signed client certificate whose URI is the driver's default application URI."""
    key, cert = folder / "client-key.pem", folder / "client-cert.der"
    await setup_self_signed_certificate(key, cert, f"urn:city:scada:{device}", "localhost",
                                        [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": f"scada-{device}"})
    return cert, key


async def test_an_untrusted_client_certificate_is_an_auth_error_and_the_device_refused(tmp_path: Path) -> None:
    """Defect: node-opcua's refusal of our certificate surfaced as "AssertionError" and the device as "lost"."""
    cert, key = await client_certificate(tmp_path, "peer")
    (tmp_path / "other").mkdir()
    other_cert, _ = await client_certificate(tmp_path / "other", "someone-else")  # not the server's
    points = [point(k) for k in NUMBERS]
    async with NodeScript("opcua_server.js", "--lifetime", "120", "--secure", "--pki", str(tmp_path / "pki"),
                          start_timeout_s=60) as peer:
        url = peer.ready["url"]
        secure = {"security": "basic256sha256", "certificate": str(cert), "private_key": str(key)}
        # the driver alone: connect() raises AuthError, never a bare AssertionError or a CommError
        drv = OpcUaDriver(peer_city(url, points, **secure).devices["peer"])
        with pytest.raises(AuthError, match="certificate refused") as refused:
            await drv.connect()
        assert "AssertionError" not in str(refused.value) and not drv.connected
        # a pinned server certificate that is not the server's is refused too
        pinned = OpcUaDriver(peer_city(url, points, **secure, server_certificate=str(other_cert)).devices["peer"])
        with pytest.raises(AuthError, match=r"certificate refused.*pinned server_certificate"):
            await pinned.connect()
        await pinned.aclose()

        # the poller shows the DEVICE as refused (its points stay bad_comm: nothing was read)
        cfg = peer_city(url, points, **secure)
        polled = Polled(cfg)
        await polled.poller.start()
        try:
            await wait_for(lambda: polled.poller.stats["peer"].status_label == "refused", 15.0)
            assert polled.stat("status") == 3
            assert "certificate refused" in polled.poller.stats["peer"].last_error
            assert all(polled.quality(k) is Quality.BAD_COMM for k in NUMBERS)
            # once the server trusts the certificate, the same configuration connects: it was the trust
            await peer.command(f"trust {cert}")
            await wait_for(lambda: polled.poller.stats["peer"].status_label == "ok", 15.0)
            await wait_for(lambda: all(polled.quality(k) is Quality.GOOD for k in NUMBERS), 5.0)
            assert polled.value("num/a") == 1.5
        finally:
            await polled.poller.aclose()
        await drv.connect()  # trusted now: the first driver's next attempt gets through as well
        assert drv.connected
        await drv.aclose()
