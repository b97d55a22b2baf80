"""The replication stream of the failover pair: the ACTIVE feeds its STANDBY, which does not poll the field.

This module only draws the whole stream; the code is in three modules:

    server.ha.wire      the frames (encode/decode, tags_frame), the pair's secret, the fingerprints
    server.ha.feed      Feed: the active's side (the hello's checks, the frames it sends, sync())
    server.ha.follower  Follower, FollowerState, Sink: the standby's side (applying frames, acknowledging)

One WebSocket from the standby to the active's API (``/api/v1/ha/replication``), authenticated by the pair's
shared secret (settings ``ha.secret_file``, compared in constant time). Binary frames go active → standby,
small JSON acknowledgements come back on the same socket::

    STANDBY (Follower)                                         ACTIVE (Feed)
      hello {fingerprint, journal: [last id, last ref, alarm],  ─►  same configuration?  journal a prefix of mine
             gap_from: its newest sample's source time,           (its newest row and definition the same here)?
             candidates: {rows: [(id, digest)],
                          defs: [(ref, digest)]},                 the newest offered audit entry I hold (the
             set_aside: what it set aside, or null,               common point)? work orders a prefix of mine?
             audit: [seq, hash, key fingerprint, offered],        a set_aside said: journalled here, P2
             workorders: [last seq, order, ts]}                   ha/set_aside (count, file)
                                                               ◄─ refused {why}  (P2 ha/not_in_sync on both)
                                                               ◄─ diverged {row, ref}: the common point
      Journal.set_aside_after (its own rows after it kept in
        journal.standby-<UTC>.sqlite), then a new hello at once
                                                               ◄─ config {fingerprint}: this server reloaded
      not fed any more (P2 ha/not_in_sync); its next hello         (the session ends; the next hello of the
        is refused until it reloads onto the same files (live:     old configuration is refused: P2 here too)
        by itself when its files match, or POST /config/reload)
                                                               ◄─ tags (every tag whose receive time moved
      city tags ──► TagDatabase.apply_readings                     since the last frame: columnar, at most
      junction tags ──► the field-safety thread's database         every 0.1 s; the first frame is all of them)
         (the monitor decides first, then the main database)
                                                               ◄─ journal {defs, rows}: the active's rows
      Journal.insert_copied (same ids and refs) ──► alarm          under their own ids (its sequence), and the
         engine states (acks, shelving, suppression, out of        alarm definitions they reference
         service) from the rows' carried state
                                                               ◄─ state {leases, tickets, users, sessions}
      users, logins ──► UserStore / LoginThrottle.replace_all;     (server.ha.state: when it changed, at most
         the rest kept for the takeover (server.ha.state.Replica)   every 0.5 s, at once before a sync; with the
                                                                   login throttle and the crisis runs awaiting
                                                                   a group approval)
                                                               ◄─ audit {lines, cut | restart}: the command
      AuditLog.append_copied (verbatim: the chain goes on;         audit log's entries after the common point,
        its own entries after the common point set aside)          up to the tip read before the state snapshot
                                                               ◄─ workorders {rows, photos}: the work-order
      PhotoStore.add_copied, then WorkOrderStore.commit_copied     changes after the standby's last one, the photo
        (same changes, same seqs)                                  files they name first
                                                               ◄─ history: this server's stored points since the
      Historian.backfill (at their source times)                   standby's gap_from (its newest sample: it was
                                                                   not fed), tag by tag
      ack {journal, audit, workorders: last applied} ──────────►  sync(): an operator action waits for this
                                                               ◄─ beat (every 0.5 s when nothing else moves)

Why this transport: tag values at city scale (10^5 samples per scan period, a storm of 10^5 changes) must not
go through etcd (its requests are limited to 1.5 MB and every write is a raft round to three members); the
API server already terminates TLS and the standby already knows the active's URL. A WebSocket carries the
bulk one way and the acknowledgements of the synchronous operator actions the other way on one connection
(an HTTP stream would need a second request per acknowledgement).

The work orders' photo files ride with the changes that name them; the login throttle and the crisis runs
awaiting a group approval with the state snapshot. A reload on the active ends the session ("config"): the
standby is refused until it reloads onto the same files (live: server.components.ha). The historian is not
carried as such: the standby's historian records the streamed samples, which go through its tag database's apply
path like its own polls; a standby that reconnects after a cut is sent the active's stored points of the period
it was not fed ("history"). What is left: docs/ha.md.

The frame layout is drawn in server.ha.wire.
"""
