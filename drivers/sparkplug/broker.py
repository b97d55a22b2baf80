"""Mosquitto access control for a city's Sparkplug traffic: one credential per edge, one for the host.

    user edge-<partition>   write  spBv1.0/<site>/{NBIRTH,NDEATH,NDATA}/<partition>       its own node
                                   spBv1.0/<site>/{DBIRTH,DDEATH,DDATA}/<partition>/+    its own devices
                            read   spBv1.0/<site>/NCMD/<partition>, .../DCMD/<partition>/+   its own commands
                                   spBv1.0/STATE/<host id>                                the primary host's state
    user <host id>          read   spBv1.0/<site>/#                                       every edge
                            write  spBv1.0/<site>/NCMD/+, .../DCMD/+/+                    commands
                            readwrite spBv1.0/STATE/<host id>                             its own state

An edge may publish only as itself and read only its own commands: a compromised or misconfigured edge
cannot pose as another, nor command one. Passwords are hashed by Mosquitto's own ``mosquitto_passwd``
(Debian ``mosquitto`` package); this module writes the ACL and the listener configuration (with TLS: the
broker's certificate and key; :func:`demo_ca` makes a CA and that certificate for the demo), and builds the
clients' TLS context (:func:`tls_context`: ``mqtts://`` brokers,
the broker's certificate verified against a CA file, TLS 1.2 at least).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Iterable
from pathlib import Path

from drivers.sparkplug.topics import NAMESPACE, STATE
from scada.config.partitions import Broker


def edge_user(partition: str) -> str:
    return f"edge-{partition}"


def acl(site: str, partitions: Iterable[str], host_id: str) -> str:
    """The ``acl_file`` text for the edges ``partitions`` of ``site`` and the host ``host_id``."""
    g = f"{NAMESPACE}/{site}"
    lines = [f"# Sparkplug B access control for {site} (drivers.sparkplug.broker)", ""]
    for p in partitions:
        lines += [f"user {edge_user(p)}"]
        lines += [f"topic write {g}/{kind}/{p}" for kind in ("NBIRTH", "NDEATH", "NDATA")]
        lines += [f"topic write {g}/{kind}/{p}/+" for kind in ("DBIRTH", "DDEATH", "DDATA")]
        lines += [f"topic read {g}/NCMD/{p}", f"topic read {g}/DCMD/{p}/+", f"topic read {NAMESPACE}/{STATE}/{host_id}",
                  ""]
    lines += [f"user {host_id}", f"topic read {g}/#", f"topic write {g}/NCMD/+", f"topic write {g}/DCMD/+/+",
              f"topic readwrite {NAMESPACE}/{STATE}/{host_id}", ""]
    return "\n".join(lines)


def set_password(password_file: Path, user: str, password: str) -> None:
    """Add or replace ``user`` in a Mosquitto password file (hashed by ``mosquitto_passwd``)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise FileNotFoundError("mosquitto_passwd not found (Debian package mosquitto)")
    if not password_file.exists():
        password_file.touch(mode=0o600)
    # -b: the password on the command line (a local file written by the operator's own process)
    subprocess.run([tool, "-b", str(password_file), user, password], check=True, capture_output=True)  # noqa: S603


#: what the broker may hold for one client while it is away (Mosquitto's default, 1,000, is a few seconds of a
#: city's edges): the host's persistent session queues an edge's births and replay while the host reconnects
MAX_QUEUED = 200_000


def persistence_config(folder: Path, autosave_s: int = 10) -> str:
    """Mosquitto's persistence in ``folder``: retained messages, persistent sessions (the host's subscriptions) and
    the QoS 1 messages queued or in flight for them are written to ``folder``/mosquitto.db at a clean stop and
    every ``autosave_s``, and read back at start (a session unused for 7 days is forgotten): a message the broker
    acknowledged to an edge survives the broker's restart and reaches the host (docs/sparkplug.md, "No value lost
    at a broker's stop")."""
    return (f"persistence true\npersistence_location {folder}/\nautosave_interval {autosave_s}\n"
            f"max_queued_messages {MAX_QUEUED}\npersistent_client_expiration 7d\n")


def listener_config(port: int, password_file: Path, acl_file: Path, host: str = "127.0.0.1", *,
                    certfile: Path | None = None, keyfile: Path | None = None, persistence: Path | None = None) -> str:
    """A Mosquitto 2.x configuration: one listener, no anonymous client, the password file and the ACL; with
    ``certfile`` and ``keyfile`` the listener speaks TLS only (1.2 at least): clients use ``mqtts://``;
    ``persistence``: the folder of its database (:func:`persistence_config`; None: nothing kept across a restart,
    so what it queued for the host is lost with it)."""
    tls = (f"certfile {certfile}\nkeyfile {keyfile}\ntls_version tlsv1.2\n"
           if certfile is not None and keyfile is not None else "")
    keep = persistence_config(persistence) if persistence is not None else "persistence false\n"
    return (f"listener {port} {host}\n{tls}allow_anonymous false\npassword_file {password_file}\n"
            f"acl_file {acl_file}\n{keep}")


def demo_ca(folder: Path, host: str = "127.0.0.1", days: int = 365) -> tuple[Path, Path, Path]:
    """A CA of its own and the broker's certificate for ``host`` signed by it, written into ``folder`` (``ca.pem``,
    ``broker.pem``, ``broker.key``, the key readable by its owner only): ``scada run --distributed``'s TLS, the
    clients given ``ca.pem`` (``--ca``, ``$SCADA_MQTT_CA``). Made anew at each call (EC P-256, SHA-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "city-scada demo broker CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "broker.pem", folder / "broker.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.unlink(missing_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def tls_context(broker: Broker, ca_file: Path | None = None) -> ssl.SSLContext | None:
    """The client side of ``mqtts://``: the broker's certificate and name verified against ``ca_file`` (None: the
    system's CAs); None for a plain ``mqtt://`` broker."""
    if not broker.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


__all__ = ["MAX_QUEUED", "acl", "demo_ca", "edge_user", "listener_config", "persistence_config", "set_password",
           "tls_context"]
