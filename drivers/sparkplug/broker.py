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
broker's certificate and key), and builds the clients' TLS context (:func:`tls_context`: ``mqtts://`` brokers,
the broker's certificate verified against a CA file, TLS 1.2 at least).
"""

from __future__ import annotations

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


def listener_config(port: int, password_file: Path, acl_file: Path, host: str = "127.0.0.1", *,
                    certfile: Path | None = None, keyfile: Path | None = None) -> str:
    """A Mosquitto 2.x configuration: one listener, no anonymous client, the password file and the ACL; with
    ``certfile`` and ``keyfile`` the listener speaks TLS only (1.2 at least): clients use ``mqtts://``."""
    tls = (f"certfile {certfile}\nkeyfile {keyfile}\ntls_version tlsv1.2\n"
           if certfile is not None and keyfile is not None else "")
    return (f"listener {port} {host}\n{tls}allow_anonymous false\npassword_file {password_file}\n"
            f"acl_file {acl_file}\npersistence false\n")


def tls_context(broker: Broker, ca_file: Path | None = None) -> ssl.SSLContext | None:
    """The client side of ``mqtts://``: the broker's certificate and name verified against ``ca_file`` (None: the
    system's CAs); None for a plain ``mqtt://`` broker."""
    if not broker.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


__all__ = ["acl", "edge_user", "listener_config", "set_password", "tls_context"]
