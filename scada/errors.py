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
    ├── CommandRejected        the fail-safe gate refused a command (reason given)
    └── StorageError           journal / historian storage failure
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


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


class CommandRejected(ScadaError):
    """The fail-safe gate refused a command; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StorageError(ScadaError):
    """A persistent store (journal, historian buffer) failed."""
