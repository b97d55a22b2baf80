"""Info panel behaviour (pure): protocol handling through drivers.panel_framing, brightness, faults."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from drivers.panel_framing import MSG_MAX_CHARS, Frame, NakCode, parse_frame, read_request, write_request
from scada.config import load_city
from sim.lighting import PARIS
from sim.panel import NIGHT_BRIGHTNESS, InfoPanel, daylight_brightness

NOON = datetime(2026, 6, 21, 13, 0, tzinfo=PARIS).timestamp()
MIDNIGHT = datetime(2026, 6, 22, 0, 30, tzinfo=PARIS).timestamp()


def ask(panel: InfoPanel, raw: bytes) -> Frame:
    reply = panel.handle(parse_frame(raw))
    assert reply is not None
    return parse_frame(reply)


@pytest.fixture
def panel() -> InfoPanel:
    p = InfoPanel("P-test", 4, message="Bienvenue à Dijon")
    p.step(NOON)
    return p


def test_read_all_and_subset(panel: InfoPanel) -> None:
    reply = ask(panel, read_request(4))
    assert reply.is_reply and reply.addr == 4 and reply.command == "RD"
    assert reply.typed_values() == {"MSG": "Bienvenue à Dijon", "STATUS": 0, "BRIGHT": 100}
    assert ask(panel, read_request(4, [])).names == ("MSG", "STATUS", "BRIGHT")  # RD alone = all fields
    assert ask(panel, read_request(4, ["BRIGHT"])).typed_values() == {"BRIGHT": 100}


def test_write_then_read_back(panel: InfoPanel) -> None:
    text = "Accident A38 : déviation par Plombières"
    reply = ask(panel, write_request(4, text))
    assert reply.command == "WR" and reply.value("MSG") == text
    assert ask(panel, read_request(4, ["MSG"])).value("MSG") == text
    assert panel.displayed == text and panel.writes == 1
    assert ask(panel, write_request(4, "")).value("MSG") == ""  # blank the panel


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        (Frame(False, 4, "RD", (("COLOR", None),)), NakCode.UNKNOWN_FIELD, "COLOR"),
        (Frame(False, 4, "WR", (("STATUS", "0"),)), NakCode.READ_ONLY, "STATUS"),
        (Frame(False, 4, "WR", (("BRIGHT", "50"),)), NakCode.READ_ONLY, "BRIGHT"),
        (Frame(False, 4, "WR", (("MSG", None),)), NakCode.BAD_VALUE, "MSG"),
        (Frame(False, 4, "WR", (("MSG", "x" * (MSG_MAX_CHARS + 1)),)), NakCode.BAD_VALUE, "MSG"),
        (Frame(False, 4, "WR", (("FOO", "1"),)), NakCode.UNKNOWN_FIELD, "FOO"),
        (Frame(False, 4, "WR"), NakCode.MALFORMED, None),
        (Frame(False, 4, "ZZ"), NakCode.UNKNOWN_COMMAND, None),
    ],
)
def test_refusals(panel: InfoPanel, frame: Frame, code: NakCode, field: str | None) -> None:
    reply = panel.handle(frame)
    assert reply is not None
    decoded = parse_frame(reply)
    assert decoded.command == "NK" and decoded.nak is code and decoded.nak_field == field
    assert panel.message == "Bienvenue à Dijon"


def test_other_addresses_and_replies_are_ignored(panel: InfoPanel) -> None:
    assert panel.handle(parse_frame(read_request(5))) is None
    assert panel.handle(Frame(True, 4, "RD")) is None


def test_brightness_follows_daylight() -> None:
    assert daylight_brightness(NOON) == 100
    assert daylight_brightness(MIDNIGHT) == NIGHT_BRIGHTNESS
    # civil twilight after the 21:40 sunset: in between, decreasing
    dusk = [daylight_brightness(datetime(2026, 6, 21, 21, m, tzinfo=PARIS).timestamp()) for m in range(0, 60, 10)]
    assert dusk == sorted(dusk, reverse=True) and NIGHT_BRIGHTNESS < dusk[3] < 100


def test_faults(panel: InfoPanel) -> None:
    panel.inject("led_fault")
    assert ask(panel, read_request(4, ["STATUS"])).typed_values() == {"STATUS": 1}
    panel.inject("power_fault")
    assert ask(panel, read_request(4, ["STATUS", "BRIGHT"])).typed_values() == {"STATUS": 2, "BRIGHT": 0}
    refused = ask(panel, write_request(4, "Bonjour"))
    assert refused.nak is NakCode.DEVICE_FAULT
    panel.clear("power_fault")
    assert ask(panel, read_request(4, ["STATUS", "BRIGHT"])).typed_values() == {"STATUS": 1, "BRIGHT": 100}
    panel.clear()
    panel.inject("comm_fault")
    assert ask(panel, write_request(4, "Nouveau")).value("MSG") == "Nouveau"
    assert panel.displayed == "Bienvenue à Dijon" and panel.status == 3  # the LED boards did not follow
    panel.clear("comm_fault")
    assert panel.displayed == "Nouveau"
    panel.inject("frozen")
    ask(panel, write_request(4, "Encore"))
    panel.step(MIDNIGHT)
    assert ask(panel, read_request(4)).typed_values() == {"MSG": "Nouveau", "STATUS": 0, "BRIGHT": 100}
    panel.clear()
    assert ask(panel, read_request(4)).typed_values() == {"MSG": "Encore", "STATUS": 0, "BRIGHT": NIGHT_BRIGHTNESS}
    with pytest.raises(ValueError):
        panel.inject("meteor")


def test_from_equipment() -> None:
    eq = load_city("tags.yaml", "alarms.yaml").equipment["P02"]
    p = InfoPanel.from_equipment(eq, random.Random(1))
    assert p.id == "P02" and p.address == 2 and p.message == "Bienvenue à Quetigny"
    with pytest.raises(ValueError):
        InfoPanel("bad", 0)
