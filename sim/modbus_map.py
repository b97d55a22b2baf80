"""What a Modbus-served model offers the servers (pure: no pymodbus import, so models stay pure).

    ModbusGateway (TCP) ──┐                             ┌─ LightingCabinet
                          ├─ model.modbus_read(table, address, count) -> list[int]
    SerialBus (RTU) ──────┘  model.modbus_write(table, address, values)   ├─ Bollard
                             raises ModbusRefusal(code) ──▶ exception PDU └─ ParkingCounter

Tables: "co" coils, "di" discrete inputs, "hr" holding registers, "ir" input registers. Bits come
back as 0/1. A model raises IllegalAddress (exception 2) outside its map, IllegalValue (3) for a
refused value (out of range, a raise while a vehicle stands on the loop, "off" at night) and
DeviceFailure (4) when a faulty device cannot act.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "TABLES",
    "DeviceFailure",
    "IllegalAddress",
    "IllegalFunction",
    "IllegalValue",
    "ModbusModel",
    "ModbusRefusal",
    "Table",
    "float32_words",
    "read_slice",
    "u16",
]

Table = Literal["co", "di", "hr", "ir"]
TABLES: tuple[Table, ...] = ("co", "di", "hr", "ir")


class ModbusRefusal(Exception):
    """A request the device refuses; ``code`` is the Modbus exception code of the answer."""

    code = 4

    def __init__(self, equipment: str, detail: str) -> None:
        super().__init__(f"{equipment}: {detail}")
        self.equipment = equipment
        self.detail = detail


class IllegalFunction(ModbusRefusal):
    code = 1


class IllegalAddress(ModbusRefusal):
    code = 2


class IllegalValue(ModbusRefusal):
    code = 3


class DeviceFailure(ModbusRefusal):
    code = 4


@runtime_checkable
class ModbusModel(Protocol):
    id: str

    def modbus_read(self, table: Table, address: int, count: int) -> list[int]: ...

    def modbus_write(self, table: Table, address: int, values: Sequence[int]) -> None: ...


def u16(value: float) -> int:
    """Clamp and round to an unsigned 16-bit register."""
    if math.isnan(value):
        return 0
    return max(0, min(0xFFFF, round(value)))


def float32_words(value: float) -> list[int]:
    """IEEE-754 float32 as two registers, high word first (pymodbus / mbpoll -B default order)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def read_slice(equipment: str, table: Table, image: Sequence[int], address: int, count: int) -> list[int]:
    """``image[address:address+count]`` or IllegalAddress when any of it is outside the map."""
    if count < 1 or address < 0 or address + count > len(image):
        raise IllegalAddress(equipment, f"{table}:{address}+{count} outside the map ({table} has {len(image)})")
    return list(image[address : address + count])


class RegisterImage:
    """Mixin for the Modbus-served models: reads come from the live register image of each table,
    or from the image frozen by the ``frozen`` fault (the device keeps answering with stale values).

    The model provides ``id`` and ``registers(table)``; ``freeze_image()`` / ``thaw_image()`` are called
    by its ``inject("frozen")`` / ``clear("frozen")``.
    """

    id: str
    _frozen: dict[Table, list[int]] | None

    def registers(self, table: Table) -> list[int]:
        raise NotImplementedError

    def freeze_image(self) -> None:
        self._frozen = {t: self.registers(t) for t in ("co", "di", "hr", "ir")}

    def thaw_image(self) -> None:
        self._frozen = None

    def modbus_read(self, table: Table, address: int, count: int) -> list[int]:
        image = self._frozen[table] if self._frozen is not None else self.registers(table)
        return read_slice(self.id, table, image, address, count)
