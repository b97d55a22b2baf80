"""The simulated SNMP devices' object tables, free of any SNMP codec: what the agent answers, not how it is encoded.

::

    JunctionController ─┐                     DeviceMib(<id>): sorted OIDs → Obj(oid, syntax, read[, write, lo..hi])
    Camera ─────────────┴──► objects_for ──►    get(oids)         [(oid, Value)]  noSuchObject / noSuchInstance
                                                next(oids)        [(successor, Value)]  endOfMibView past the end
                                                bulk(oids, N, M)  GETBULK rows, no more rows once all have ended
                                                check_set(items)  [(Obj, int)] to write, all or nothing
                                                                  or SetRefused(status, index)
    Value = (syntax, python value):  ("Integer32", 5)  ("OctetString", b"J1")  ("TimeTicks", 100)
                                     ("Counter32", 12)  ("noSuchObject", None)  ("endOfMibView", None) ...

Two codecs turn a Value into bytes on the wire, each with its thin adapter: puresnmp's x690 for v2c
(``sim.snmp_v2c``) and pysnmp for v1 and v3 (``sim.snmp_agent``). The SMI semantics live here once, so
both versions answer alike: values are read from the model when the request is answered; everything is
readable; only the objects with a ``write`` (systemPatternControl, unitBackupTime) are writable, anything
else → notWritable, a value that is not an INTEGER → wrongType, out of range → wrongValue; the var-binds of
a SET are checked in order and the first refusal names its 0-based index (the codecs send index + 1).
A model that raises while read is a bug in the simulator: logged, and the request gets genErr at that
var-bind (``ReadFailed``) rather than killing the agent.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from sim.camera import Camera
from sim.junction import JunctionController
from sim.mib2 import MibSystem

__all__ = [
    "ASC",
    "MAX_BULK_VARBINDS",
    "DeviceMib",
    "Obj",
    "Oid",
    "ReadFailed",
    "SetRefused",
    "Syntax",
    "Value",
    "device_oids",
    "objects_for",
]

logger = logging.getLogger(__name__)

Oid = tuple[int, ...]
Syntax = Literal[
    "Integer32", "OctetString", "TimeTicks", "Counter32", "noSuchObject", "noSuchInstance", "endOfMibView"
]
Value = tuple[Syntax, int | bytes | None]

NO_SUCH_OBJECT: Value = ("noSuchObject", None)
NO_SUCH_INSTANCE: Value = ("noSuchInstance", None)
END_OF_MIB_VIEW: Value = ("endOfMibView", None)

#: a GETBULK answers at most this many var-binds (pysnmp's responder bound, kept for both versions)
MAX_BULK_VARBINDS = 64

ASC = (1, 3, 6, 1, 4, 1, 1206, 4, 2, 1)  # NTCIP 1202 asc node
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
RECORDING = (1, 3, 6, 1, 4, 1, 99999, 2, 1, 0)
SYSTEM_PATTERN_CONTROL = (*ASC, 4, 14, 0)
UNIT_BACKUP_TIME = (*ASC, 3, 3, 0)


@dataclass(frozen=True, slots=True)
class Obj:
    """One served object: its syntax, a getter read at request time, and for a writable one its setter and range."""

    oid: Oid
    syntax: Syntax
    read: Callable[[], int | bytes]
    write: Callable[[int], object] | None = None
    lo: int = 0
    hi: int = 0


class ReadFailed(Exception):
    """The model raised while one of the request's objects was read: genErr at ``index`` (0-based)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"genErr at var-bind {index}")
        self.index = index


class SetRefused(Exception):
    """A SET refused: ``status`` is the RFC 3416 error-status name, ``index`` the 0-based var-bind."""

    def __init__(self, status: Literal["notWritable", "wrongType", "wrongValue"], index: int) -> None:
        super().__init__(f"{status} at var-bind {index}")
        self.status = status
        self.index = index


def _system_objects(model: MibSystem) -> list[Obj]:
    """MIB-II system group: sysDescr, sysUpTime, sysName."""
    return [
        # DisplayStrings as UTF-8 (what the SNMP driver decodes them with), read at request time as every value
        Obj(SYS_DESCR, "OctetString", lambda: model.sys_descr.encode()),  # noqa: PLW0108
        Obj(SYS_UPTIME, "TimeTicks", lambda: model.uptime_cs),
        Obj(SYS_NAME, "OctetString", lambda: model.sys_name.encode()),  # noqa: PLW0108
    ]


def objects_for(model: Any) -> list[Obj]:
    """The objects a model serves (unsorted); TypeError for a model the agent does not serve."""
    if isinstance(model, JunctionController):
        j = model
        return [
            *_system_objects(model),
            Obj((*ASC, 1, 1, 0), "Integer32", lambda: j.phases),  # maxPhases
            Obj((*ASC, 1, 3, 0), "Integer32", lambda: 1),  # maxPhaseGroups
            Obj((*ASC, 1, 4, 1, 2, 1), "Integer32", lambda: j.phase_reds),
            Obj((*ASC, 1, 4, 1, 3, 1), "Integer32", lambda: j.phase_yellows),
            Obj((*ASC, 1, 4, 1, 4, 1), "Integer32", lambda: j.phase_greens),
            Obj(UNIT_BACKUP_TIME, "Integer32", lambda: j.unit_backup_time, j.set_unit_backup_time, 0, 65535),
            Obj((*ASC, 3, 5, 0), "Integer32", lambda: j.unit_control_status),
            Obj((*ASC, 3, 6, 0), "Integer32", lambda: j.unit_flash_status),
            Obj((*ASC, 3, 9, 0), "Integer32", lambda: j.short_alarm_status),
            Obj((*ASC, 4, 10, 0), "Integer32", lambda: j.coord_pattern_status),
            Obj((*ASC, 4, 11, 0), "Integer32", lambda: j.local_free_status),
            Obj(
                SYSTEM_PATTERN_CONTROL, "Integer32", lambda: j.system_pattern_control,
                j.set_system_pattern_control, 0, 255,
            ),
            # static configuration: phaseConcurrency.p (the controller's compatibility matrix, an OCTET STRING of
            # phase numbers) and patternCycleTime.n of each plan it has (the frozen-status check's cycle)
            *(
                Obj((*ASC, 1, 2, 1, 23, p), "OctetString", partial(j.phase_concurrency, p))
                for p in range(1, j.phases + 1)
            ),
            *(Obj((*ASC, 4, 7, 1, 2, n), "Integer32", partial(j.pattern_cycle_time, n)) for n in sorted(j.plans)),
        ]
    if isinstance(model, Camera):
        c = model
        return [
            *_system_objects(model),
            Obj(IF_NUMBER, "Integer32", lambda: 1),
            Obj((*IF_ENTRY, 1, 1), "Integer32", lambda: 1),  # ifIndex.1
            Obj((*IF_ENTRY, 2, 1), "OctetString", lambda: b"eth0"),  # ifDescr.1
            Obj((*IF_ENTRY, 8, 1), "Integer32", lambda: c.if_oper_status),  # ifOperStatus.1
            Obj((*IF_ENTRY, 10, 1), "Counter32", lambda: c.in_octets),  # ifInOctets.1
            Obj(RECORDING, "Integer32", lambda: int(c.recording)),
        ]
    raise TypeError(f"SnmpAgent serves JunctionController and Camera models, got {type(model).__name__}")


def device_oids(model: Any) -> list[str]:
    """The dotted OIDs served for a model (sorted), e.g. to document or to check a tag map."""
    return [".".join(map(str, o.oid)) for o in sorted(objects_for(model), key=lambda o: o.oid)]


class DeviceMib:
    """One device's objects: the GET / GETNEXT / GETBULK / SET semantics on codec-neutral values."""

    def __init__(self, device_id: str, model: Any) -> None:
        self.id = device_id
        self.model = model
        self._objs = {o.oid: o for o in objects_for(model)}
        self._oids = sorted(self._objs)
        self._parents = {oid[:-1] for oid in self._oids}

    def _value(self, obj: Obj, index: int) -> Value:
        try:
            return obj.syntax, obj.read()
        except Exception as exc:  # a model bug must not kill the agent: answer genErr (logged)
            logger.error("%s: reading %s failed: %r", self.id, ".".join(map(str, obj.oid)), exc)
            raise ReadFailed(index) from exc

    def get(self, oids: Sequence[Oid]) -> list[tuple[Oid, Value]]:
        out: list[tuple[Oid, Value]] = []
        for index, oid in enumerate(oids):
            obj = self._objs.get(oid)
            if obj is None:
                out.append((oid, NO_SUCH_INSTANCE if oid[:-1] in self._parents else NO_SUCH_OBJECT))
            else:
                out.append((oid, self._value(obj, index)))
        return out

    def next(self, oids: Sequence[Oid]) -> list[tuple[Oid, Value]]:
        out: list[tuple[Oid, Value]] = []
        for index, oid in enumerate(oids):
            i = bisect.bisect_right(self._oids, oid)
            if i >= len(self._oids):
                out.append((oid, END_OF_MIB_VIEW))
            else:
                obj = self._objs[self._oids[i]]
                out.append((obj.oid, self._value(obj, index)))
        return out

    def bulk(self, oids: Sequence[Oid], non_repeaters: int, max_repetitions: int) -> list[tuple[Oid, Value]]:
        """RFC 3416 GETBULK, except that it stops repeating once every repeater has reached the end of the
        device's objects (one endOfMibView row; pysnmp's own responder keeps appending such rows, and
        snmpbulkwalk prints each of them). At most MAX_BULK_VARBINDS var-binds from the repeaters."""
        n = min(max(non_repeaters, 0), len(oids))
        r = len(oids) - n
        m = min(max(max_repetitions, 0), MAX_BULK_VARBINDS // r) if r else 0
        out = self.next(oids[:n]) if n else []
        row: Sequence[Oid] = oids[n:]
        while m > 0 and r:
            got = self.next(row)
            out.extend(got)
            if all(value is END_OF_MIB_VIEW for _, value in got):
                break
            row = [oid for oid, _ in got]
            m -= 1
        return out

    def check_set(self, items: Sequence[tuple[Oid, int | None]]) -> list[tuple[Obj, int]]:
        """Validate every var-bind of a SET (value None: not an INTEGER) before anything is written."""
        checked: list[tuple[Obj, int]] = []
        for index, (oid, value) in enumerate(items):
            obj = self._objs.get(oid)
            if obj is None or obj.write is None:
                raise SetRefused("notWritable", index)
            if value is None:
                raise SetRefused("wrongType", index)
            if not obj.lo <= value <= obj.hi:
                raise SetRefused("wrongValue", index)
            checked.append((obj, value))
        return checked
