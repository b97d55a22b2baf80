"""MQTT Sparkplug B (spBv1.0, Sparkplug 3.0): edge pollers and the server as host application.

    edge (``scada edge --partition P``)                    broker (Mosquitto)          server
    ┌──────────────────────────────────────┐                                   ┌───────────────────────────┐
    │ drivers ─► scada.poll ─► TagDatabase │ NBIRTH/DBIRTH/DDATA/DDEATH ──►   │ SparkplugHost ─► the tag   │
    │ EdgeNode (edge.py) ─► ForwardStore   │ ◄── NCMD rebirth, STATE/<host>    │ database's apply (host.py) │
    └──────────────────────────────────────┘     NDEATH = the edge's will      └───────────────────────────┘

    topics.py   topic names, STATE JSON          codec.py   payloads ↔ tag columns (pure)
    store.py    store-and-forward + bdSeq        edge.py    the Edge Node           host.py   the Host Application

The payload codec is generated from the specification's ``sparkplug_b.proto`` (committed beside it, with the
generated ``sparkplug_b_pb2``); the library choice is in docs/sparkplug.md. A protocol package like the
other drivers: it imports only scada (and its libraries: protobuf, aiomqtt).
"""
