"""The project's one exception tree.

Library exceptions (pymodbus, asyncua, pysnmp, pyserial, sqlite3, HTTP clients) are translated
into these at the package boundary, so callers catch one family::

    ScadaError
    ├── ConfigError            a configuration cannot be used; carries every problem found
    ├── DriverError            a field-device operation failed
    │   ├── CommError          no usable answer (timeout, refused, disconnected, garbled frame)
    │   ├── DeviceError        the device answered with an error (Modbus exception, SNMP error-status)
    │   │   └── WriteNotConfirmed  the write was accepted but the read-back shows another value
    │   ├── AuthError          the device refused our credentials (SNMPv3, OPC UA certificates)
    │   └── WriteNotAllowed    the write is outside the device's declared allow-list
    │       └── NotLeaseholder the server does not hold the failover pair's lease (also a Refused)
    ├── CommandRejected        the fail-safe gate refused a command (reason and Refusal code given)
    ├── Refused                a request a subsystem will not do: what, why and a Refusal code
    └── StorageError           journal / historian storage failure

A refusal carries a :class:`Refusal` code, never a message to be matched: the API maps each code to
one HTTP status in one table (``server/routes/errors.py``), the console and ``scada`` commands show
``why``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum


class ScadaError(Exception):
    """Base of every error raised on purpose by this project."""


@dataclass(frozen=True, order=True)
class ConfigProblem:
    """One configuration problem, printed as ``file:line: who: what, got what``."""

    file: str
    line: int
    who: str
    what: str

    def __str__(self) -> str:
        who = f"{self.who}: " if self.who else ""
        return f"{self.file}:{self.line}: {who}{self.what}"


class ConfigError(ScadaError):
    """A configuration cannot be used. ``problems`` lists every problem found in one run."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def report(self, what_stops: str) -> int:
        """Print every problem, then the count and what does not start (stderr); the exit code (1)."""
        for p in self.problems:
            print(p, file=sys.stderr)
        print(f"{len(self.problems)} problem(s); {what_stops}", file=sys.stderr)
        return 1


class DriverError(ScadaError):
    """A field-device operation failed."""


class CommError(DriverError):
    """No usable answer from the device: timeout, connection refused or lost, garbled frame."""


class DeviceError(DriverError):
    """The device answered with an error (e.g. a Modbus exception response)."""


class WriteNotConfirmed(DeviceError):
    """The device accepted the write but the read-back does not show the requested value.

    ``sample`` is the read-back (what the device reports now, a :class:`scada.quality.Sample`). The
    gate reports the command as *not confirmed*: the device may have refused it by its own logic (a
    bollard's presence interlock, an invalid traffic plan replaced by the local plan).
    """

    def __init__(self, message: str, sample: object) -> None:
        super().__init__(message)
        self.sample = sample


class AuthError(DriverError):
    """The device refused our credentials."""


class WriteNotAllowed(DriverError):
    """The write targets a point that configuration does not declare writable."""


class Refusal(StrEnum):
    """Why a request is refused, as a machine-readable code (the value is what the API sends as ``code``)."""

    INVALID = "invalid_request"           # the request itself is malformed or out of range
    NOT_FOUND = "not_found"               # the thing named (ticket, alarm, user, plan, tag) does not exist
    COMMAND_REJECTED = "command_rejected"  # the fail-safe gate refused the command (reason given)
    ALARM_ACTION_REFUSED = "alarm_action_refused"  # the alarm engine refused the action (state, role...)
    USER_REFUSED = "user_refused"         # a user-management change the store refuses
    UNSUPPORTED = "unsupported"           # the backend cannot answer this kind of query
    UNAVAILABLE = "unavailable"           # the subsystem is not running (or its storage is down)
    CONFLICT = "conflict"                 # the request conflicts with the current state
    ALREADY_DONE = "already_done"         # a replayed step on a finished command: the original outcome is given
    WORK_ORDER_REFUSED = "work_order_refused"  # the work order's state machine refuses the action
    NOT_LEASEHOLDER = "not_leaseholder"   # failover pair: this server does not hold the field-write lease


class CommandRejected(ScadaError):
    """The fail-safe gate refused a command; ``reason`` says why, ``code`` classifies it."""

    def __init__(self, reason: str, code: Refusal = Refusal.COMMAND_REJECTED) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


class Refused(ScadaError):
    """A request that cannot be done: ``what`` was asked, ``why`` not, and the :class:`Refusal` code.

    Raised before anything changes: a refused request has no effect. ``detail``: more fields for the answer
    (the original outcome of a command replayed), sent next to what, why and code."""

    def __init__(self, what: str, why: str, code: Refusal = Refusal.CONFLICT,
                 detail: dict[str, object] | None = None) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what
        self.why = why
        self.code = code
        self.detail = dict(detail or {})


class NotLeaseholder(WriteNotAllowed, Refused):
    """A field write refused before any packet because this server does not hold the failover pair's lease
    (server.components.ha). A WriteNotAllowed, so the gate answers "rejected" and a lease refresh "failed"
    as for any write the policy forbids; a Refused with code NOT_LEASEHOLDER, so the API answers 503."""

    def __init__(self, what: str, why: str) -> None:
        Refused.__init__(self, what, why, Refusal.NOT_LEASEHOLDER)


class StorageError(ScadaError):
    """A persistent store (journal, historian buffer) failed."""
