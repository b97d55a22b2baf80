"""The edge pollers as the control room sees them (docs/sparkplug.md): one row per Sparkplug edge node.

    GET /edges     every edge partition of the configuration, per broker:                         read
                   online · last birth · age of its last message · sequence gaps · store-and-forward
                   backlog, bound and drops (as its births and NDATA report them) · configuration
                   fingerprint ours or not · the host epoch it obeys against ours · its devices

Read from the edge component's Sparkplug hosts (server.components.edge, drivers.sparkplug.host's NodeState):
nothing is asked of an edge to answer. No edge partition: an empty list (``enabled`` false).
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from scada.poll import OK
from server.components.edge import EdgeComponent, store_text
from server.routes.deps import PREFIX, Reader, ServerDep

router = APIRouter(prefix=PREFIX, tags=["server"])


class EdgeNodeOut(BaseModel):
    node: str = Field(description="the edge node id: its partition's name")
    broker: str = Field(description="the broker's URL (mqtt:// or mqtts://)")
    online: bool = Field(description="born and not dead, and this server connected to its broker")
    last_birth: float | None = Field(None, description="epoch seconds of its last NBIRTH (None: never born)")
    last_data_age_s: float | None = Field(None, description="seconds since its last message (None: none yet)")
    seq_gaps: int = Field(description="sequence gaps seen (each answered by a rebirth request)")
    store_backlog: int = Field(description="messages in its store-and-forward, as it last reported")
    store_capacity: int = Field(description="its store-and-forward's bound (0: not reported)")
    store_dropped: int = Field(description="messages its store dropped (full), as its births reported, summed")
    store_alarm: str | None = Field(None, description="why its store is an alarm (full, or dropped while away), "
                                                      "in the server's language")
    fingerprint: str | None = Field(None, description="the configuration fingerprint its last birth carried")
    expected_fingerprint: str | None = Field(None, description="ours for its partition (None: not checked)")
    fingerprint_ok: bool | None = Field(None, description="the same as ours (None: not checked or not born)")
    edge_epoch: int | None = Field(None, description="the highest host epoch it obeys (its last birth)")
    epoch_obeyed: bool | None = Field(None, description="our epoch is not below it: it obeys our commands")
    devices: int = Field(description="its devices")
    devices_ok: int = Field(description="of which reporting (status ok)")
    duplicates: int = Field(0, description="messages received twice (a replay after a lost PUBACK), dropped")


class EdgesOut(BaseModel):
    enabled: bool = Field(description="some partition is polled by an edge")
    epoch: int = Field(description="this server's host epoch (its commands carry it)")
    primary: bool = Field(description="this server is the Sparkplug primary host now (a pair: the active)")
    edges: list[EdgeNodeOut]


@router.get("/edges", response_model=EdgesOut,
            description="Every edge poller (Sparkplug edge node) of the configuration: online, last birth, age "
                        "of its last message, sequence gaps, store-and-forward backlog, configuration "
                        "fingerprint, the host epoch it obeys, its devices.")
async def edges(_session: Reader, server: ServerDep) -> EdgesOut:
    comp = server.components.get("edge")
    if not isinstance(comp, EdgeComponent) or not comp.hosts:
        return EdgesOut(enabled=False, epoch=0, primary=False, edges=[])
    now = time.time_ns()
    rows = []
    for broker, host in comp.hosts.items():
        for name, st in host.nodes.items():
            checked = bool(st.expected) and st.fingerprint is not None
            rows.append(EdgeNodeOut(
                node=name, broker=broker.url, online=st.online and host.connected,
                last_birth=st.last_birth_ns / 1e9 if st.last_birth_ns else None,
                last_data_age_s=round((now - st.last_message_ns) / 1e9, 3) if st.last_message_ns else None,
                seq_gaps=st.seq_gaps, store_backlog=st.backlog, store_capacity=st.capacity, store_dropped=st.dropped,
                store_alarm=store_text(st) or None, fingerprint=st.fingerprint,
                expected_fingerprint=st.expected or None,
                fingerprint_ok=(st.fingerprint == st.expected) if checked else None,
                edge_epoch=st.edge_epoch,
                epoch_obeyed=None if st.edge_epoch is None else st.edge_epoch <= host.epoch,
                devices=len(st.devices), devices_ok=sum(1 for d in st.devices.values() if d.status == OK),
                duplicates=st.duplicates))
    rows.sort(key=lambda r: r.node)
    return EdgesOut(enabled=True, epoch=comp.epoch, primary=comp.primary_now, edges=rows)
