"""Sparkplug B topics (spBv1.0, Sparkplug 3.0)::

    spBv1.0/<group_id>/<NBIRTH|NDEATH|NDATA|NCMD>/<edge_node_id>
    spBv1.0/<group_id>/<DBIRTH|DDEATH|DDATA|DCMD>/<edge_node_id>/<device_id>
    spBv1.0/STATE/<host_id>                     the host application's state: JSON {"online", "timestamp"},
                                                retained, QoS 1; its will says offline

Here the group is the site (tags.yaml ``site:``), an edge node is a partition, a device is a configured device.
Ids may not contain ``/``, ``+`` or ``#`` (the configuration's names cannot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

NAMESPACE = "spBv1.0"
NODE_TYPES = ("NBIRTH", "NDEATH", "NDATA", "NCMD")
DEVICE_TYPES = ("DBIRTH", "DDEATH", "DDATA", "DCMD")
STATE = "STATE"


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    kind: str  # NBIRTH ... DCMD, or STATE (then ``node`` is the host id)
    node: str
    device: str | None = None

    def __str__(self) -> str:
        if self.kind == STATE:
            return f"{NAMESPACE}/{STATE}/{self.node}"
        tail = f"/{self.device}" if self.device is not None else ""
        return f"{NAMESPACE}/{self.group}/{self.kind}/{self.node}{tail}"

    @classmethod
    def parse(cls, topic: str) -> Topic | None:
        """A Sparkplug topic, or None for anything else."""
        parts = topic.split("/")
        if len(parts) == 3 and parts[0] == NAMESPACE and parts[1] == STATE:
            return cls("", STATE, parts[2])
        if len(parts) == 4 and parts[0] == NAMESPACE and parts[2] in NODE_TYPES:
            return cls(parts[1], parts[2], parts[3])
        if len(parts) == 5 and parts[0] == NAMESPACE and parts[2] in DEVICE_TYPES:
            return cls(parts[1], parts[2], parts[3], parts[4])
        return None


def node_topic(group: str, kind: str, node: str) -> str:
    return str(Topic(group, kind, node))


def device_topic(group: str, kind: str, node: str, device: str) -> str:
    return str(Topic(group, kind, node, device))


def state_topic(host_id: str) -> str:
    return str(Topic("", STATE, host_id))


def group_filter(group: str) -> str:
    """Everything of one group (the host's subscription)."""
    return f"{NAMESPACE}/{group}/#"


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """Sparkplug 3.0 STATE: JSON, the timestamp the host's current MQTT session began (the will carries the same)."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def parse_state(raw: bytes) -> tuple[bool, int] | None:
    """(online, timestamp) of a STATE payload; None if it is not Sparkplug 3.0 JSON (a 2.x "ONLINE" text)."""
    try:
        got = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(got, dict) or not isinstance(got.get("online"), bool):
        return None
    ts = got.get("timestamp")
    return got["online"], int(ts) if isinstance(ts, int) else 0


def default_host_id(site: str) -> str:
    """The primary host application's id when none is configured (the server's, the edges' STATE topic)."""
    return f"scada-{site}"
