"""What the SNMP driver's two request paths share: the target, the typed answer, the error-status error.

``drivers.snmp`` plans requests and turns ``Varbind`` answers into samples; ``drivers.snmp_puresnmp``
(v2c) and ``drivers.snmp_pysnmp`` (v3) send them and answer with these, so the driver never sees a
library's own types::

    Target ──► session.get / bulk / set ──► [Varbind(oid, kind, value)]
                                         or CommError / AuthError / ErrorStatus (a DeviceError)

``Varbind.kind``: "int" (INTEGER, Counter32/64, Gauge32, TimeTicks, Unsigned32), "bytes" (OCTET STRING,
exact bytes), "text" (OBJECT IDENTIFIER, IpAddress), "absent" (noSuchObject/noSuchInstance), "end"
(endOfMibView), "other" (anything else, printed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from scada.errors import DeviceError

Kind = Literal["int", "bytes", "text", "absent", "end", "other"]


@dataclass(frozen=True, slots=True)
class Varbind:
    """One answered variable, library-neutral."""

    oid: tuple[int, ...]
    kind: Kind
    value: int | bytes | str | None


class ErrorStatus(DeviceError):
    """The agent answered with an SNMP error-status (``status``: its name, e.g. ``wrongValue``)."""

    def __init__(self, text: str, status: str) -> None:
        super().__init__(text)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom: one agent context (v2c community, or v3 user + contextName)."""

    host: str
    port: int
    timeout_s: float
    version: Literal["v2c", "v3"]
    community: str = ""
    user: str = ""
    context: str = ""
    auth_protocol: str = "sha"
    priv_protocol: str = "aes"
    auth_key: str = ""
    priv_key: str = ""

    def __repr__(self) -> str:  # never show the keys
        who = f"user {self.user!r} context {self.context!r}" if self.version == "v3" else "v2c"
        return f"Target({self.host}:{self.port} {who})"


@lru_cache(maxsize=1 << 16)  # the same few thousand OIDs come and go every poll: parse each once
def parse_oid(text: str) -> tuple[int, ...]:
    """``"1.3.6.1.2.1.1.3.0"`` (a leading dot allowed) → (1, 3, 6, 1, 2, 1, 1, 3, 0); ValueError if not numeric."""
    return tuple(int(x) for x in text.strip(".").split("."))


__all__ = ["ErrorStatus", "Kind", "Target", "Varbind", "parse_oid"]
