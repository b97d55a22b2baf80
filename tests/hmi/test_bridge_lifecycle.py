"""Bridge lifecycle edge: GUI callbacks queued before stop() may still run after it."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from hmi.bridge import Bridge


def test_set_channel_after_stop_is_ignored_but_before_start_is_an_error(qtbot: QtBot) -> None:
    bridge = Bridge("http://127.0.0.1:9", "hmi-test-lifecycle")  # port 9: nothing listens, nothing is sent
    with pytest.raises(RuntimeError, match="not started"):
        bridge.set_channel("city", {"tags": ["*"]})
    bridge.start()
    bridge.stop()
    bridge.set_channel("city", {"tags": ["*"], "alarms": False})  # e.g. a late equipment-list reply
