"""Audible annunciation per priority: on by default, repeating until silenced.

    alarm store (this console's area) ──alarmsChanged──► Annunciator.update()
                                                                 │
          ┌──────────── nothing unacknowledged ◄─────────────────┤ (every state: all acknowledged → IDLE)
          ▼                                                      │
        IDLE ──an unacknowledged alarm──► SOUNDING(p) ──Silence──► SILENCED(p)
                                          │  ▲  p = worst unacked     │
                                          │  └── the tone follows p   │ a NEW unacknowledged alarm of a
                                          │                           │ higher priority (number < p)
                                          └──── every REPEAT_S[p] s ◄─┘ sounds again: SOUNDING(its p);
                                                                        else p follows the worst unacked
                                                the tone of p is played again

One tone per priority (P1 a fast high two-tone, P4 a single low beep), repeated at the priority's
period until the operator silences it (the banner's Silence button, key F12) or acknowledges every
alarm. Silence covers the alarms heard so far and new ones of the same or lower priority — a flood of
P3 does not restart the horn every second — and ends with the episode: once nothing is unacknowledged,
the next alarm sounds whatever its priority. Only annunciated alarms sound (not shelved, suppressed, out
of service or diagnostic), and only those of the console's area of responsibility (the store's area).

The tones are generated at run time (16-bit mono WAV, :mod:`wave`) into a temporary folder and played
with QtMultimedia's QSoundEffect; :class:`Sounder` records what it was asked to play (``played``), which
offscreen tests check: a machine without an audio output plays nothing (and Qt is not asked to).
"""

from __future__ import annotations

import logging
import math
import tempfile
import wave
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, QTimer, QUrl, pyqtSignal
from PyQt6.QtMultimedia import QMediaDevices, QSoundEffect

from hmi.console import ConsoleModel

log = logging.getLogger(__name__)

RATE = 44_100
#: seconds between two plays of a priority's tone while it sounds
REPEAT_S = {1: 2.0, 2: 4.0, 3: 8.0, 4: 15.0}
#: each priority's tone: (frequency Hz, duration s) pieces, silences as frequency 0
TONES: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((988.0, 0.15), (740.0, 0.15), (988.0, 0.15), (740.0, 0.15)),
    2: ((880.0, 0.2), (0.0, 0.1), (880.0, 0.2)),
    3: ((660.0, 0.3),),
    4: ((440.0, 0.25),),
}


def tone_wav(path: Path, pieces: tuple[tuple[float, float], ...], volume: float = 0.5) -> Path:
    """Write a 16-bit mono WAV of sine pieces (5 ms fades: no click at each edge)."""
    chunks = []
    for freq, dur in pieces:
        n = int(RATE * dur)
        t = np.arange(n) / RATE
        s = np.sin(2 * math.pi * freq * t) if freq > 0 else np.zeros(n)
        fade = min(n // 2, int(RATE * 0.005))
        if fade:
            ramp = np.linspace(0.0, 1.0, fade)
            s[:fade] *= ramp
            s[-fade:] *= ramp[::-1]
        chunks.append(s)
    pcm = (np.concatenate(chunks) * volume * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


class Sounder(QObject):
    """One QSoundEffect per priority on WAV tones written at start-up (``files``); ``played`` lists every
    request, whether or not this machine has an audio output (``audio``)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._dir = tempfile.TemporaryDirectory(prefix="scada-tones-")
        self.files = {p: tone_wav(Path(self._dir.name) / f"p{p}.wav", pieces) for p, pieces in TONES.items()}
        self.played: list[int] = []
        # no audio output (a headless box, CI): record the requests and load no sound (Qt warns on each)
        self.audio = not QMediaDevices.defaultAudioOutput().isNull()
        self.effects: dict[int, QSoundEffect] = {}
        for p, path in self.files.items() if self.audio else ():
            effect = QSoundEffect(self)
            effect.setSource(QUrl.fromLocalFile(str(path)))
            self.effects[p] = effect
        self.destroyed.connect(self._dir.cleanup)

    def play(self, priority: int) -> None:
        self.played.append(priority)
        if not self.audio:
            return
        for p, effect in self.effects.items():
            if p != priority and effect.isPlaying():
                effect.stop()
        self.effects[priority].play()

    def stop(self) -> None:
        for effect in self.effects.values():
            effect.stop()


class Annunciator(QObject):
    """The state machine of the module docstring; ``enabled`` False (``scada hmi --no-audible``) keeps it
    silent while the state is still followed."""

    changed = pyqtSignal()

    IDLE, SOUNDING, SILENCED = "idle", "sounding", "silenced"

    def __init__(self, console: ConsoleModel, sounder: Sounder | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.sounder = sounder if sounder is not None else Sounder(self)
        self.state = self.IDLE
        self.priority = 0  # the priority sounding or silenced (0: idle)
        self._heard: set[str] = set()
        self.repeat_s = dict(REPEAT_S)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._repeat)
        console.alarmsChanged.connect(self.update)
        self.update()

    @property
    def enabled(self) -> bool:
        return self.console.audible

    def unacknowledged(self) -> dict[str, int]:
        """Alarm id → priority of the annunciated unacknowledged alarms of the console's area."""
        return {a.id: a.priority for a in self.console.alarms.in_area() if a.annunciated and a.unacked}

    def update(self) -> None:
        unacked = self.unacknowledged()
        new = {i: p for i, p in unacked.items() if i not in self._heard}
        self._heard = set(unacked)
        if not unacked:
            self._set(self.IDLE, 0)
        elif self.state == self.SILENCED:
            louder = [p for p in new.values() if p < self.priority]
            # still silenced: at the worst priority left unacknowledged (acknowledging the P2s of a silenced
            # P2 episode with a P4 left lets a new P3 sound)
            if louder:
                self._set(self.SOUNDING, min(louder))
            else:
                self._set(self.SILENCED, min(unacked.values()))
        else:
            self._set(self.SOUNDING, min(unacked.values()))

    def adopt(self, other: Annunciator) -> None:
        """Carry on from ``other`` (the window rebuilt in another language: hmi.window_host): what it heard, and
        silenced stays silenced; ``other`` goes quiet."""
        other._timer.stop()
        other.sounder.stop()
        self._heard = set(other._heard)
        self._set(other.state, other.priority)

    def silence(self) -> None:
        """The operator heard it: quiet until a new alarm of a higher priority (or the next episode)."""
        if self.state == self.SOUNDING:
            self._set(self.SILENCED, self.priority)

    def _set(self, state: str, priority: int) -> None:
        if (state, priority) == (self.state, self.priority):
            return
        self.state, self.priority = state, priority
        self._timer.stop()
        if state == self.SOUNDING:
            self._repeat()
            self._timer.start(int(self.repeat_s[priority] * 1000))
        else:
            self.sounder.stop()
        log.info("annunciator: %s%s", state, f" P{priority}" if priority else "")
        self.changed.emit()

    def _repeat(self) -> None:
        if self.state == self.SOUNDING and self.enabled:
            self.sounder.play(self.priority)
