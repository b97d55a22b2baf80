"""The server's components: each starts, reloads, reports and stops one subsystem through its façade.

    component    subsystem (façade)                              status name(s)
    ─────────    ──────────────────────────────────────────────  ──────────────────
    alarms       scada.alarms.AlarmEngine + scada.journal        alarms, journal
    historian    historian.service.Historian                     historian
    poll         scada.poll.Poller + drivers.registry            poll
    failsafe     failsafe.service.Failsafe (+ DriverWriter)      failsafe
    stale        TagDatabase.mark_stale                          stale
    health       the server's own health as tags                 (none)
    hub          server.hub.Hub (WebSocket fan-out)              api

Each implements :class:`server.components.base.Component`; :mod:`server.assemble` builds them, wires the
few ports between them (fail-safe writes through the poll loop; an alarm reset resets the monitor's
latch) and starts them in order.
"""
