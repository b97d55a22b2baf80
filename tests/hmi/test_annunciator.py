"""Audible annunciation (hmi.annunciator), offscreen: the state machine, the tones, the banner's Silence.

No audio device here: the Sounder records every play request (``played``), and the tests check those
requests and the state — which priority sounds, silenced, repeated, sounding again.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from pytestqt.qtbot import QtBot

from hmi.annunciator import REPEAT_S, TONES, Annunciator, Sounder, tone_wav
from hmi.console import ConsoleModel
from hmi.models.area import Area


def alarm(aid: str, priority: int, state: str = "unack", commune: str = "Dijon", **kw: Any) -> dict[str, Any]:
    return {"id": aid, "priority": priority, "state": state, "equipment": aid.upper(), "commune": commune,
            "service": "lighting", "message": f"alarm {aid}", "since_ms": 1, **kw}


@pytest.fixture
def console() -> ConsoleModel:
    c = ConsoleModel(None)
    c.set_stale(False)
    return c


@pytest.fixture
def horn(qtbot: QtBot, console: ConsoleModel) -> Annunciator:
    a = Annunciator(console)
    a.repeat_s = {p: 0.1 for p in REPEAT_S}  # repeats fast enough to count in a test
    return a


def test_tones_are_wav_files_generated_at_run_time(tmp_path: Path, qtbot: QtBot) -> None:
    f = tone_wav(tmp_path / "p1.wav", TONES[1])
    with wave.open(str(f)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 44_100)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert pcm.size == int(44_100 * 0.15) * 4 and 10_000 < np.abs(pcm).max() <= 32767 // 2 + 1
    s = Sounder()
    # one WAV per priority, and one sound object on each where there is an audio output
    assert sorted(s.files) == [1, 2, 3, 4]
    for p, path in s.files.items():
        assert path.name == f"p{p}.wav" and path.stat().st_size > 1000
    assert sorted(s.effects) == ([1, 2, 3, 4] if s.audio else [])
    for p, effect in s.effects.items():
        assert Path(effect.source().toLocalFile()) == s.files[p]
    s.play(2)
    assert s.played == [2]
    s.deleteLater()


def test_sounds_per_priority_repeats_and_silences(qtbot: QtBot, console: ConsoleModel, horn: Annunciator) -> None:
    played = horn.sounder.played
    assert horn.state == "idle" and played == []
    console.feed([], alarm_snapshot=[alarm("a3", 3)])
    assert (horn.state, horn.priority) == ("sounding", 3) and played == [3]
    qtbot.waitUntil(lambda: len(played) >= 4, timeout=3000)  # repeats until silenced
    assert set(played) == {3}
    # a new P1: the tone follows the worst unacknowledged priority
    console.feed([], alarm_events=[alarm("a1", 1)])
    assert (horn.state, horn.priority) == ("sounding", 1) and played[-1] == 1
    horn.silence()
    assert (horn.state, horn.priority) == ("silenced", 1)
    n = len(played)
    qtbot.wait(400)
    assert len(played) == n  # silenced: no repeat
    # a new alarm of the same or a lower priority stays silent
    console.feed([], alarm_events=[alarm("b1", 1), alarm("a2", 2)])
    qtbot.wait(300)
    assert horn.state == "silenced" and len(played) == n
    # the P1s acknowledged: still silenced, now at the worst left (P2)
    console.feed([], alarm_events=[alarm("a1", 1, "acked"), alarm("b1", 1, "acked")])
    assert (horn.state, horn.priority) == ("silenced", 2)
    # a new alarm of a higher priority than what was silenced sounds again
    console.feed([], alarm_events=[alarm("c1", 1)])
    assert (horn.state, horn.priority) == ("sounding", 1) and played[-1] == 1 and len(played) == n + 1
    # everything acknowledged: quiet, and the next episode sounds whatever its priority
    console.feed([], alarm_events=[alarm(i, p, "acked") for i, p in (("c1", 1), ("a2", 2), ("a3", 3))])
    assert horn.state == "idle" and horn.priority == 0
    n = len(played)
    qtbot.wait(300)
    assert len(played) == n
    console.feed([], alarm_events=[alarm("d4", 4)])
    assert (horn.state, horn.priority) == ("sounding", 4) and played[-1] == 4


def test_only_annunciated_alarms_of_the_area_sound(qtbot: QtBot, console: ConsoleModel, horn: Annunciator) -> None:
    console.feed([], alarm_snapshot=[alarm("s2", 2, flags=["shelved"]), alarm("d", 5),
                                     alarm("o3", 3, out_of_service=True)])
    assert horn.state == "idle" and horn.sounder.played == []
    console.set_area(Area(frozenset({"Talant"})))
    console.feed([], alarm_events=[alarm("dijon1", 1, commune="Dijon")])
    assert horn.state == "idle"  # not this console's area
    console.feed([], alarm_events=[alarm("talant3", 3, commune="Talant")])
    assert (horn.state, horn.priority) == ("sounding", 3)
    console.set_area(Area())  # the whole city: Dijon's P1 is this console's too now
    assert (horn.state, horn.priority) == ("sounding", 1)


def test_sound_off_follows_the_state_but_plays_nothing(qtbot: QtBot, console: ConsoleModel,
                                                       horn: Annunciator) -> None:
    console.audible = False  # scada hmi --no-audible
    console.feed([], alarm_snapshot=[alarm("a1", 1)])
    qtbot.wait(300)
    assert horn.state == "sounding" and horn.sounder.played == []


def test_banner_silence_button_and_f12(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.alarms_view import Banner

    b = Banner(console)
    qtbot.addWidget(b)
    b.show()
    qtbot.waitExposed(b)
    a = b.annunciator
    assert not b.silence.isEnabled() and a.state == "idle"
    console.feed([], alarm_snapshot=[alarm("a2", 2)])
    assert a.state == "sounding" and b.silence.isEnabled() and "priority 2 sounding" in b.silence.toolTip()
    assert a.sounder.played == [2]
    qtbot.mouseClick(b.silence, Qt.MouseButton.LeftButton)
    assert a.state == "silenced" and not b.silence.isEnabled()
    console.feed([], alarm_events=[alarm("a1", 1)])
    assert a.state == "sounding" and a.priority == 1
    b.activateWindow()
    qtbot.waitUntil(b.isActiveWindow, timeout=3000)  # F12 is a shortcut of the window holding the banner
    qtbot.keyClick(b, Qt.Key.Key_F12)
    assert a.state == "silenced"
