"""The failover pair (issue 19): who is ACTIVE is decided by a lease in etcd, and only the
leaseholder writes to the field.

    server.ha.etcd       EtcdClient: etcd's v3 JSON gateway over httpx (lease grant / keepalive / revoke,
                         txn create-if-absent, range, watch), trying each member URL in turn
    server.ha.election   Election: the lease + key state machine and the write fence ``may_write()``
    server.ha.replication  the stream drawn whole: Feed (the active) → Follower (the standby): tag rows,
                         journal rows, the command audit log's entries, work-order changes, the state snapshot,
                         acknowledgements over one WebSocket authenticated by the pair's secret
    server.ha.wire       the stream's frames (encode/decode, tags_frame), the pair's secret, the fingerprints
    server.ha.feed       Feed: the active's side (the hello's checks, the frames, ``sync()``)
    server.ha.follower   Follower, Sink: the standby's side (applying the frames, acknowledging, reconnecting)
    server.ha.state      the leases, approvals, users and sessions the standby keeps, and the takeover that
                         goes on with them through each store's own façade
    server.ha.routes     GET /ha, POST /ha/switchover, POST /ha/force-active (the ``scada ha`` commands), the
                         replication WebSocket, and the middleware that makes operator actions synchronous
    server.components.ha HaComponent: the server component that runs the election, raises the P1s,
                         journals, and hands ``may_write`` to the fail-safe layer's DriverWriter
    server.components.ha_sink  HaSink: the server's parts as the stream reads (active) and writes (standby)
                         them, and the standby's polling pause

docs/ha.md has the design, the residual window between the check and the send with its bound, the
replication stream and what is left.
"""
