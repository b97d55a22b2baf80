"""Screenshots of each display level (README, tests): ``save_levels(window, directory)``.

Also the pixel checks the screenshot tests use: :func:`alarm_pixels` counts pixels whose colour is
close to one of the style guide's alarm colours (AC-HMI-01: none in an all-normal scene).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PyQt6.QtCore import QCoreApplication
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QWidget

from hmi import style
from hmi.mainwindow import MainWindow


def settle(seconds: float = 0.5) -> None:
    """Let queued signals, timers and network replies run for a while."""
    app = QCoreApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if app is not None:
            app.processEvents()
        time.sleep(0.01)


def grab(widget: QWidget) -> QImage:
    return widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)


def pixels(img: QImage) -> npt.NDArray[np.uint8]:
    """H×W×3 RGB array of an RGB32 image."""
    ptr = img.constBits()
    if ptr is None:  # a null image has no pixels
        raise ValueError("pixels() of a null image")
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr.asstring(img.sizeInBytes()), dtype=np.uint8)
    arr = arr.reshape(img.height(), img.bytesPerLine() // 4, 4)
    out: npt.NDArray[np.uint8] = arr[:, : img.width(), [2, 1, 0]].copy()
    return out


def _rgb(hex_: str) -> npt.NDArray[np.int32]:
    return np.array([int(hex_[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int32)


def alarm_pixels(img: QImage, colours: tuple[str, ...] = style.ALARM_PALETTE, tol: int = 40) -> dict[str, int]:
    """How many pixels are within ``tol`` (per channel) of each alarm colour."""
    px = pixels(img).astype(np.int32)
    out = {}
    for c in colours:
        d = np.abs(px - _rgb(c)).max(axis=2)
        out[c] = int(np.count_nonzero(d <= tol))
    return out


def saturated_pixels(img: QImage, min_sat: float = 0.45, min_val: int = 90) -> int:
    """Pixels with a clear hue (HSV saturation above ``min_sat``): an ISA-101 normal display has almost none."""
    px = pixels(img).astype(np.float32)
    mx = px.max(axis=2)
    mn = px.min(axis=2)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1), 0)
    return int(np.count_nonzero((sat >= min_sat) & (mx >= min_val)))


def save_levels(window: object, directory: Path) -> list[Path]:
    """Show each level in turn and save it as PNG (returns the paths)."""
    if not isinstance(window, MainWindow):
        raise TypeError(f"save_levels() needs the console's MainWindow, got {type(window).__name__}")
    directory.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    c = window.console

    def shot(name: str, wait: float = 1.0) -> None:
        settle(wait)
        path = directory / f"{name}.png"
        window.grab().save(str(path))
        out.append(path)

    window.show_page("overview")
    window.overview.fit()
    shot("L1-overview", 0.8)
    window.show_page("traffic")
    shot("L2-traffic-corridor", 1.0)
    window.show_page("lighting")
    shot("L2-lighting-district", 1.0)
    junctions = sorted(e.id for e in c.registry.of_template("junction"))
    if junctions:
        window.open_equipment("J003" if "J003" in junctions else junctions[0])
        shot("L3-junction", 1.2)
    cabinets = sorted(e.id for e in c.registry.of_template("lighting_cabinet"))
    if cabinets:
        window.open_equipment(cabinets[0])
        shot("L3-lighting-cabinet", 1.2)
    window.show_page("alarms")
    shot("alarm-list", 0.5)
    window.open_diagnostics(junctions[0] if junctions else "")
    shot("L4-diagnostics", 1.0)
    window.show_page("journal")
    window.journal.load()
    shot("journal", 0.8)
    return out
