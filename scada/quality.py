"""Qualities and samples.

A sample is a value plus a quality plus two timestamps (as OPC UA's DataValue):

    Sample(value=230.4, quality=Quality.GOOD, source_ns=..., receive_ns=...)

``source_ns`` is when the device measured it (or when we received it if the device gives no
time); ``receive_ns`` is when the driver got it. Both are UTC epoch nanoseconds.

Qualities, from best to worst (the integer codes are stored in the tag database's uint8 column):

    good        the value is valid and current
    uncertain   a value exists but is doubtful: e.g. stale (no update for N scan periods); or no value
                yet: a tag that never received a sample (receive_ns 0) is uncertain, "not read yet"
    bad_comm    communication with the device is lost; the value shown is the last known one
    bad_device  the device answered with an error for this point (exception, fault flag)
    bad_config  the point cannot be read as configured (wrong address/type); a configuration fix is needed

Communication loss is a quality, never an exception escaping the poller and never a bare None.
:func:`reason` says in words what the quality alone does not (``not read yet``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass


class Quality(enum.IntEnum):
    GOOD = 0
    UNCERTAIN = 1
    BAD_COMM = 2
    BAD_DEVICE = 3
    BAD_CONFIG = 4

    @property
    def label(self) -> str:
        """The readable name used in logs, the API and the HMI (``bad_comm``)."""
        return self.name.lower()

    @property
    def is_good(self) -> bool:
        return self is Quality.GOOD

    @property
    def is_bad(self) -> bool:
        return self >= Quality.BAD_COMM

    @classmethod
    def parse(cls, text: str) -> Quality:
        return cls[text.upper()]


Value = float | int | bool | str | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one point: value, quality and the two timestamps (epoch ns, UTC)."""

    value: Value
    quality: Quality
    source_ns: int
    receive_ns: int

    @classmethod
    def good(cls, value: Value, source_ns: int | None = None) -> Sample:
        now = time.time_ns()
        return cls(value, Quality.GOOD, source_ns if source_ns is not None else now, now)

    @classmethod
    def bad(cls, quality: Quality, value: Value = None) -> Sample:
        """A bad sample; ``value`` is what the driver last knew (None if nothing)."""
        now = time.time_ns()
        return cls(value, quality, now, now)


#: the reason of an uncertain tag that never received a sample (its device not read yet since the start)
NOT_READ_YET = "not read yet"


def reason(quality: Quality, receive_ns: int) -> str:
    """Why a tag of ``quality``, last received at ``receive_ns`` (0: never), is not good, where the quality
    alone does not say it: ``not read yet`` for an uncertain tag that never received a sample, else ""."""
    return NOT_READ_YET if quality is Quality.UNCERTAIN and receive_ns == 0 else ""
