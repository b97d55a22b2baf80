"""The server's components: each starts, reloads, reports and stops one subsystem through its façade.

    component    subsystem (façade)                              status name(s)
    ─────────    ──────────────────────────────────────────────  ──────────────────
    alarms       scada.alarms.AlarmEngine + scada.journal        alarms, journal
    historian    historian.service.Historian                     historian
    poll         scada.poll.Poller + drivers.registry            poll
                 (+ the junctions' field-safety thread: safety)
    failsafe     failsafe.service.Failsafe (+ DriverWriter)      failsafe
    stale        TagDatabase.mark_stale                          stale
    health       the server's own health as tags                 (none)
    hub          server.hub.Hub (WebSocket fan-out)              api

Each implements :class:`server.components.base.Component`; :mod:`server.assemble` builds them, wires the
few ports between them (fail-safe writes through the drivers' own loops: a junction's on the field-safety
thread, the others on the poll loop; the monitor runs on the junctions' database in that thread; an alarm
reset resets the monitor's latch) and starts them in order.
"""
