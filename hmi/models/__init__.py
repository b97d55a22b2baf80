"""Pure models of the console (no Qt, no network): tested on their own, wrapped by hmi.console.

    live.py      tag values (snapshot + deltas), equipment registry, session/permissions
    alarms.py    alarm store (ISA-18.2 states), banner counts, list filtering/sorting/grouping
    mapmodel.py  the Level-1 map: markers by type and state, per-marker deltas, counts, picking
    junction.py  phase bitmaps → labelled aspects ("unknown" when the data cannot be trusted)
    trends.py    history points → curves with quality gaps; cursor read-out
    journal.py   journal filters → API query, CSV export
    commands.py  vocabulary → command forms; ticket → steps and outcome text; approval inbox
    layouts.py   synoptic layouts (YAML, validated with file:line problems)
    workorders.py  work orders: filter, overdue first, actions by role and state, history rows, crews ranked
"""
