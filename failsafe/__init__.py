"""Fail-safe layer: the command gate (the only path to a field write) and the field-safety monitor.

The central system is never the safety layer: field controllers keep local autonomy, and everything
here only asks, leases, double-checks and journals::

    HMI ─► API ─► Failsafe (service.py) ─► CommandGate (gate.py) ─► Writer port ─► drivers ─► device
                        │                      │ 1 user 2 target 3 inputs 4 interlocks 5 blast radius
                        │                      │ 6 rate 7 approval 8 select ─ operate: 9 write 10 confirm
                        │                      ├─► LeaseManager (leases.py): refresh / expiry / heartbeat
                        │                      └─► AuditLog (audit.py): hash-chained, `scada audit verify`
                        ├─ FieldSafetyMonitor (monitor.py) ◄── the junctions' samples (in the server: their own
                        │                                      database, in the field-safety thread, first)
                        └─ CrisisRunner (crisis.py): named plans, step by step through the same gate

    commands.yaml (schema.py, vocabulary.py): verbs per equipment type, their writes, interlocks, limits, leases,
    junction compatibility matrices and crisis plans. No verb sets a signal head, channel or phase.
"""

from __future__ import annotations

import importlib
from typing import Any

# exported name → module (imported on first use, so `scada audit verify` stays light)
_EXPORTS = {
    "AuditLog": "failsafe.audit", "verify_file": "failsafe.audit", "CrisisRunner": "failsafe.crisis",
    "CommandGate": "failsafe.gate", "LeaseManager": "failsafe.leases", "FieldSafetyMonitor": "failsafe.monitor",
    "JunctionView": "failsafe.monitor", "Failsafe": "failsafe.service", "MONITOR": "failsafe.types",
    "CommandRequest": "failsafe.types", "CommandResult": "failsafe.types", "FailsafeAlarm": "failsafe.types",
    "Outcome": "failsafe.types", "Principal": "failsafe.types", "Ticket": "failsafe.types",
    "TicketState": "failsafe.types", "Writer": "failsafe.types", "SNMP_SET_ALLOW_LIST": "failsafe.vocabulary",
    "Vocabulary": "failsafe.vocabulary", "check_vocabulary": "failsafe.vocabulary",
    "load_vocabulary": "failsafe.vocabulary", "DriverWriter": "failsafe.writer",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'failsafe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "MONITOR",
    "SNMP_SET_ALLOW_LIST",
    "AuditLog",
    "CommandGate",
    "CommandRequest",
    "CommandResult",
    "CrisisRunner",
    "DriverWriter",
    "Failsafe",
    "FailsafeAlarm",
    "FieldSafetyMonitor",
    "JunctionView",
    "LeaseManager",
    "Outcome",
    "Principal",
    "Ticket",
    "TicketState",
    "Vocabulary",
    "Writer",
    "check_vocabulary",
    "load_vocabulary",
    "verify_file",
]
