"""Electronic information panel (LED message sign) on the RS-485 panel bus.

The panel answers the ASCII line protocol of drivers/panel_framing.py; ``handle(frame)`` is the pure
device side (a decoded request in, the reply bytes out) that sim.serial_server.SerialBus calls.

    request ─▶ RD [fields]  ─▶ #aaRD MSG=… STATUS=… BRIGHT=…     (no field named = all fields)
               WR MSG=text  ─▶ #aaWR MSG=<text now displayed>    (read-back confirmation)
               anything refused ─▶ #aaNK <code> [FIELD]          (NakCode: unknown command/field,
                                                                  read-only, bad value, device fault)

Brightness follows daylight (solar elevation at the panel): 100 % above +6°, NIGHT_BRIGHTNESS below
−6° (civil twilight), linear in between. STATUS: 0 ok, 1 led_fault (some LED modules dark, the message
is still shown), 2 power_fault (LED supply lost: dark, brightness 0, writes refused with
DEVICE_FAULT; the controller is battery-backed and still answers), 3 comm_fault (controller ↔ LED
boards link lost: the shown message no longer follows writes).

Faults: led_fault, power_fault, comm_fault, frozen (answers stop changing: a stuck controller cache).
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drivers.panel_framing import (
    ALL_FIELDS,
    FIELDS,
    MSG_MAX_CHARS,
    Command,
    Frame,
    NakCode,
    nak_reply,
    read_reply,
    write_reply,
)
from sim.astro import DIJON_LAT, DIJON_LON, solar_elevation
from sim.faults import check_fault, unknown_fault

if TYPE_CHECKING:
    from scada.config import EquipmentDef

__all__ = ["NIGHT_BRIGHTNESS", "STATUS_NAMES", "InfoPanel", "daylight_brightness"]

log = logging.getLogger(__name__)

NIGHT_BRIGHTNESS = 30
STATUS_OK, STATUS_LED_FAULT, STATUS_POWER_FAULT, STATUS_COMM_FAULT = 0, 1, 2, 3
STATUS_NAMES = {0: "ok", 1: "led_fault", 2: "power_fault", 3: "comm_fault"}


def daylight_brightness(now_s: float, lat: float = DIJON_LAT, lon: float = DIJON_LON) -> int:
    elevation = solar_elevation(datetime.fromtimestamp(now_s, UTC), lat, lon)
    if elevation >= 6.0:
        return 100
    if elevation <= -6.0:
        return NIGHT_BRIGHTNESS
    return round(NIGHT_BRIGHTNESS + (100 - NIGHT_BRIGHTNESS) * (elevation + 6.0) / 12.0)


class InfoPanel:
    """One message sign. Pure: time only comes in through step(now_s)."""

    FAULTS = ("led_fault", "power_fault", "comm_fault", "frozen")

    def __init__(
        self,
        equipment_id: str,
        address: int,
        *,
        message: str = "",
        lat: float = DIJON_LAT,
        lon: float = DIJON_LON,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= address <= 99:
            raise ValueError(f"{equipment_id}: panel bus address must be 1..99, got {address}")
        self.id = equipment_id
        self.address = address
        self.lat, self.lon = lat, lon
        self.rng = rng if rng is not None else random.Random(equipment_id)
        self.message = message[:MSG_MAX_CHARS]  # what the controller holds (and displays when healthy)
        self.displayed = self.message  # what the LED boards show
        self.brightness = 100
        self.led_fault = False
        self.power_fault = False
        self.comm_fault = False
        self.now: float | None = None
        self.writes = 0
        self._frozen: dict[str, str | int] | None = None

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> InfoPanel:
        params: dict[str, Any] = eq.params
        address = int(params.get("unit", params.get("address", 1)))
        return cls(eq.id, address, message=f"Bienvenue à {eq.commune}", lat=eq.lat, lon=eq.lon, rng=rng)

    @property
    def status(self) -> int:
        if self.power_fault:
            return STATUS_POWER_FAULT
        if self.comm_fault:
            return STATUS_COMM_FAULT
        if self.led_fault:
            return STATUS_LED_FAULT
        return STATUS_OK

    @property
    def faults(self) -> set[str]:
        out = {name for name in ("led_fault", "power_fault", "comm_fault") if getattr(self, name)}
        if self._frozen is not None:
            out.add("frozen")
        return out

    def step(self, now_s: float) -> None:
        self.now = now_s
        self.brightness = 0 if self.power_fault else daylight_brightness(now_s, self.lat, self.lon)

    def fields(self) -> dict[str, str | int]:
        """Live field values (MSG is what the controller holds)."""
        return {"MSG": self.message, "STATUS": self.status, "BRIGHT": self.brightness}

    # --------------------------------------------------------------------------------------- protocol
    def handle(self, frame: Frame) -> bytes | None:
        """Answer one decoded request addressed to this panel (None: no answer)."""
        if frame.is_reply or frame.addr != self.address:
            return None
        values = self._frozen if self._frozen is not None else self.fields()
        if frame.command == Command.READ:
            names = frame.names or ALL_FIELDS
            for name in names:
                if name not in FIELDS:
                    return nak_reply(self.address, NakCode.UNKNOWN_FIELD, name)
            return read_reply(self.address, {name: values[name] for name in names})
        if frame.command == Command.WRITE:
            if not frame.items:
                return nak_reply(self.address, NakCode.MALFORMED)
            for name, value in frame.items:
                spec = FIELDS.get(name)
                if spec is None:
                    return nak_reply(self.address, NakCode.UNKNOWN_FIELD, name)
                if not spec.writable:
                    return nak_reply(self.address, NakCode.READ_ONLY, name)
                if value is None or len(value) > MSG_MAX_CHARS:
                    return nak_reply(self.address, NakCode.BAD_VALUE, name)
            if self.power_fault:
                return nak_reply(self.address, NakCode.DEVICE_FAULT, "MSG")
            text = frame.value("MSG") or ""
            self.set_message(text)
            shown = self._frozen["MSG"] if self._frozen is not None else self.message
            return write_reply(self.address, str(shown))
        return nak_reply(self.address, NakCode.UNKNOWN_COMMAND)

    def set_message(self, text: str) -> None:
        if len(text) > MSG_MAX_CHARS:
            raise ValueError(f"{self.id}: message longer than {MSG_MAX_CHARS} characters")
        self.message = text
        self.writes += 1
        if not self.comm_fault:
            self.displayed = text
        log.info("%s: message set to %r", self.id, text)

    # ----------------------------------------------------------------------------------------- faults
    def inject(self, fault: str, **params: Any) -> None:
        if fault == "led_fault":
            self.led_fault = True
        elif fault == "power_fault":
            self.power_fault = True
            self.brightness = 0
        elif fault == "comm_fault":
            self.comm_fault = True
        elif fault == "frozen":
            self._frozen = self.fields()
        else:
            raise unknown_fault(self.id, fault, self.FAULTS)
        log.info("%s: fault %s injected", self.id, fault)

    def clear(self, fault: str | None = None, **params: Any) -> None:
        check_fault(self.id, fault, self.FAULTS)
        for name in ("led_fault", "power_fault", "comm_fault"):
            if fault in (None, name):
                setattr(self, name, False)
        if fault in (None, "frozen"):
            self._frozen = None
        if not self.comm_fault:
            self.displayed = self.message
        if self.now is not None:
            self.step(self.now)
        log.info("%s: fault %s cleared", self.id, fault or "(all)")
