"""Retake the console screenshots of README.md and docs/hmi.md: ``.venv/bin/python docs/screenshots/capture.py``.

The demo started as the HMI tests start it (tests/hmi/stack.py), the console in this process, offscreen::

    stack thread (asyncio)                                   this thread (Qt, offscreen, 1280×800)
    ──────────────────────────────────────────────           ──────────────────────────────────────────
    sim.runner.Simulator (demo city, seed 42, port 0)  ◄──   stack.inject(): a fire alarm in B003, 8 failed
    uvicorn: the real server (127.0.0.1, port 0,              luminaires in C0002, a conflicting green in J005
    embedded historian, the shipped crews.yaml)        ◄──   Bridge ── ConsoleModel ── MainWindow, logged in
                                                              as the operator "op", in French (the site's lang)

Once the console is live and the alarms have reached it, the operator acknowledges the lamp failures and
makes work orders from the fire alarm (given to the buildings crew) and the junction's fault flash, through
the console's own calls. Then each display is grabbed (``QWidget.grab()``) and written with Qt's PNG writer
at its highest compression:

    L1-overview.png           Level 1: the métropole's commune outlines, the equipment, the alarm banner
    L2-traffic-corridor.png   Level 2: a traffic corridor          L2-lighting-district.png  a lighting district
    L3-junction.png           Level 3: junction J003's synoptic    L3-lighting-cabinet.png   cabinet C0001
    alarm-list.png            the alarm list                       L4-diagnostics.png        Level 4 diagnostics
    journal.png               the journal                          work-orders.png           the work-order list

The display sequence is the console's own (:func:`hmi.screenshots.save_levels`, which ``scada hmi
--screenshots`` uses too); this script adds the scene (events, operator actions, language, window size),
the work-order list and the compression. The file names never change; the times on screen are the
capture's. Everything stops at the end (about half a minute on a quiet machine).

    --out DIR   write somewhere else (default: this folder)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real imports wait until main() has set up sys.path and Qt's platform (see capture())
    from hmi.bridge import Reply
    from hmi.console import ConsoleModel

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SIZE = (1280, 800)
#: Qt's PNG "quality" is the inverse of zlib's level: 0 is the strongest compression (lossless either way)
PNG_QUALITY = 0
#: what happens in the city before the pictures: (equipment, simulator fault, its parameters)
EVENTS: tuple[tuple[str, str, dict[str, object]], ...] = (
    ("B003", "fire_alarm", {"zone": 2}),          # a building's fire zone: priority 1
    ("C0002", "lamp_failure", {"count": 8}),      # a cabinet's luminaires: priority 3, and a work order by itself
    ("J005", "conflicting_green", {}),            # the junction's own monitor latches flashing amber: priority 1
)


def wait_for(what: str, cond: Callable[[], object], timeout_s: float = 60.0) -> None:
    """Run Qt's events until ``cond()`` holds; stop the script, naming ``what``, after ``timeout_s``."""
    from hmi.screenshots import settle

    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"capture: gave up waiting for {what} after {timeout_s:.0f} s")
        settle(0.1)


def done(reply: Reply, what: str) -> Reply:
    """``reply`` once answered; the script stops, naming ``what``, when the server refused it."""
    from hmi.bridge import wait_reply

    r = wait_reply(reply, 30)
    if not r.ok:
        raise SystemExit(f"capture: {what} refused: {r.why()}")
    return r


def alarmed(console: ConsoleModel, eq: str) -> bool:
    """The console has an annunciated (not diagnostic) alarm of ``eq``."""
    return any(a.equipment == eq and not a.diagnostic for a in console.alarms.alarms.values())


def stage(console: ConsoleModel) -> str:
    """What the operator did before the pictures, through the console's own calls (the server's API): the
    lamp failures acknowledged, a work order from the fire alarm given to the buildings crew, another from the
    junction's fault flash. Returns the fire order's id."""
    alarms = list(console.alarms.alarms.values())
    lamps = [a.id for a in alarms if a.equipment == "C0002" and a.priority == 3]
    done(console.ack(lamps, "équipe éclairage prévenue"), "acknowledging C0002")
    fire = next(a.id for a in alarms if a.equipment == "B003" and not a.diagnostic)
    order = str(done(console.order_from_alarm(fire), "a work order from B003's alarm").data["id"])
    done(console.order_action(order, "assign", {"crew": "buildings-1", "vehicle": "V004",
                                                "note": "levée de doute sur place"}), f"assigning {order}")
    flash = next(a.id for a in alarms if a.equipment == "J005" and a.priority == 1)
    done(console.order_from_alarm(flash), "a work order from J005's alarm")
    return order


def compress(path: Path) -> int:
    """Rewrite ``path`` through Qt's PNG writer at its highest compression; its size in bytes."""
    from PyQt6.QtGui import QImage

    img = QImage(str(path))
    if img.isNull() or not img.save(str(path), "PNG", PNG_QUALITY):
        raise SystemExit(f"capture: could not rewrite {path}")
    return path.stat().st_size


def capture(out: Path, tmp: Path) -> list[Path]:
    """Start the demo, set the scene, save every display into ``out``; the PNGs written."""
    # Imported here, not at the top: the repository root has to be on sys.path first (this file runs as a
    # script from docs/, and the demo stack is the HMI tests' own helper), and Qt must see the offscreen
    # platform main() chose before it loads.
    from PyQt6.QtWidgets import QApplication

    from hmi.bridge import Bridge, wait_reply
    from hmi.console import ConsoleModel
    from hmi.mainwindow import MainWindow
    from hmi.screenshots import save_levels, settle
    from scada.i18n import set_language
    from tests.hmi.stack import PASSWORDS, LiveStack

    _app = QApplication.instance() or QApplication(sys.argv[:1])  # kept alive until the pictures are taken
    (tmp / "city").mkdir(parents=True)
    shutil.copy(ROOT / "crews.yaml", tmp / "city" / "crews.yaml")  # work orders need crews beside tags.yaml
    print("capture: starting the simulator and the server (demo city)…", flush=True)
    stack = LiveStack(tmp).start()
    console: ConsoleModel | None = None
    window: MainWindow | None = None
    try:
        # the test server starts in English (its tests read English); the site's language is French, and the
        # process has one language, which the server in this process then answers in too
        set_language("fr")
        bridge = Bridge(stack.url, "capture")
        bridge.start()
        console = c = ConsoleModel(bridge)
        console.audible = False  # nobody listens offscreen
        window = MainWindow(console)
        window.confirm_close = False
        window.resize(*SIZE)
        window.show()
        r = wait_reply(console.login("op", PASSWORDS["op"]), 30)
        if not r.ok:
            raise SystemExit(f"capture: login refused: {r.why()}")
        wait_for("the console to be live", lambda: c.state == "online" and len(c.tags.values) > 400
                 and bool(c.config_info) and bool(c.vocabulary))
        for eq, fault, params in EVENTS:
            stack.inject(eq, fault, **params)
        for eq, _fault, _params in EVENTS:
            wait_for(f"an alarm of {eq}", partial(alarmed, c, eq))
        orders = window.workorders
        wait_for("the lamp failures' work order", lambda: any(o.equipment == "C0002"
                                                              for o in orders.feed.orders.values()))
        fire = stage(console)
        wait_for(f"work order {fire} in the console", lambda: fire in orders.feed.orders)
        settle(2.0)  # the last pushes (map colours, counts, the orders' feed) land
        window.resize(*SIZE)
        print("capture: live; grabbing the displays", flush=True)
        paths = save_levels(window, out)
        window.show_page("workorders")
        orders.refresh()
        orders.select_order(fire)  # its detail and change history beside the list
        settle(1.5)
        path = out / "work-orders.png"
        if not window.grab().save(str(path)):
            raise SystemExit(f"capture: could not write {path}")
        return [*paths, path]
    finally:
        if console is not None:
            console.close()
        if window is not None:
            window.close()
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="Retake the console screenshots (README.md, docs/hmi.md).")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNGs (default: %(default)s)")
    args = parser.parse_args()
    # offscreen whatever the desktop: the same window size everywhere, no window manager in the picture
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false;qt.multimedia.*=false")  # their start-up noise
    sys.path.insert(0, str(ROOT))
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="scada-capture-"))
    t0 = time.monotonic()
    try:
        paths = capture(out, tmp)
        for path in paths:
            print(f"{path}  {compress(path) / 1024:.0f} KB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"capture: {len(paths)} screenshots in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
