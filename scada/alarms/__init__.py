"""Alarm management (ISA-18.2 / IEC 62682 / EEMUA 191): rules, states, engine, KPIs.

::

    alarms.yaml ─► rules.compile_rules(config, db) ─► AlarmCatalog (one alarm per rule × matched tag)
                                                          │
    TagDatabase ──ChangeEvent──► engine.AlarmEngine ◄─────┘   states.transition (pure state machine,
        tick(now_ns) ──────────►   │    ▲                     tables for the vectorised engine)
    operator actions ──────────►   │    └── restore: journal.current_states()
                                   ▼
                          scada.journal.Journal (SQLite WAL, append-only) ──► kpi.compute_kpis
                                                                          ──► `scada journal`, `scada alarms kpi`

The package imports no Qt and no protocol library. Evaluation never reads a clock: time is passed in.
"""

from scada.alarms.engine import (
    ActionResult,
    AlarmActionRefused,
    AlarmEngine,
    AlarmGroup,
    AlarmView,
    ConsoleView,
    Refusal,
    Summary,
    Transitions,
    make_engine,
)
from scada.alarms.rules import AlarmCatalog, AlarmInfo, compile_rules
from scada.alarms.states import AlarmState, Event, Flag, Refused, Shelving, Status, transition

__all__ = [
    "ActionResult", "AlarmActionRefused", "AlarmCatalog", "AlarmEngine", "AlarmGroup", "AlarmInfo", "AlarmState",
    "AlarmView", "ConsoleView", "Event", "Flag", "Refusal", "Refused", "Shelving", "Status", "Summary",
    "Transitions", "compile_rules", "make_engine", "transition",
]
