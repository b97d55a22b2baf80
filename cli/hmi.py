"""``scada hmi``: the operator console (PyQt6) against a running server.

::

    scada hmi --server http://127.0.0.1:8480            # asks for user and password
    scada hmi --server URL --user operator              # password from SCADA_PASSWORD, else asked
    scada hmi --check-layouts [--layouts FILE]          # validate the synoptic layouts and exit
    scada hmi --server URL --user op --screenshots DIR  # log in, save one PNG per display level, exit

``scada run`` starts it with ``--url`` and the demo operator's password in ``SCADA_PASSWORD``
(``SCADA_URL`` / ``SCADA_USER`` are read too). The password stays in memory only, to log in again by
itself when the server restarts. Without a display, use ``QT_QPA_PLATFORM=offscreen``.

Sessions and closing (what a control room expects): "Log out", or the server ending the session
(expiry, idle timeout, password or role changed), brings the login dialog back over the window — the
next operator logs in, the console never disappears by itself. Closing the window is deliberate: it
asks first, then says so on this terminal (``the operator console was closed …``) and exits 0; the
server is a separate process and keeps supervising and journalling (``scada run`` reports the closed
console too and keeps the server and simulator running until Ctrl-C).

Language: ``scada --lang`` / ``$SCADA_LANG`` if given, else the server's: the login dialog asks the unauthenticated
``GET /health`` first (:func:`hmi.language.before_login`), the window is built after the login in the one ``GET
/config`` names (:func:`hmi.language.follow_site`), and built again in another one a reload brings
(:class:`hmi.window_host.WindowHost`).

Lazy imports here: PyQt6 and the console load only when the console starts, and the layouts loader
when it is used, so ``scada hmi --help`` and ``--check-layouts`` run without Qt (CI, a headless box).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from cli.options import chosen_lang
from scada.i18n import _, ngettext


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", "--url", dest="server", default=os.environ.get("SCADA_URL", "http://127.0.0.1:8480"),
                        help="server URL (default $SCADA_URL or http://127.0.0.1:8480)")
    parser.add_argument("--pair-url", default=os.environ.get("SCADA_PAIR_URL"),
                        help="the failover pair's other server: the console follows whichever is active "
                             "(default $SCADA_PAIR_URL; docs/ha.md)")
    parser.add_argument("--user", default=os.environ.get("SCADA_USER", ""), help="user name (default $SCADA_USER)")
    parser.add_argument("--layouts", type=Path, default=None, help="synoptic layouts YAML (default: shipped)")
    parser.add_argument("--check-layouts", action="store_true", help="validate the layouts file and exit")
    parser.add_argument("--workstation", default=None, help="workstation name sent with every request")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="log in, save a screenshot of each display level into DIR, then exit")
    parser.add_argument("--audible", action=argparse.BooleanOptionalAction, default=True,
                        help="sound unacknowledged alarms per priority until silenced (default on)")
    parser.add_argument("--page", default="overview", help="first display shown (overview, alarms, traffic...)")


def check_layouts(path: Path | None) -> int:
    from hmi.models.layouts import load_layouts

    lay, problems = load_layouts(path)
    for p in problems:
        print(p, file=sys.stderr)
    # in the process's language, as the problems above (scada --lang / $SCADA_LANG, else French)
    if problems:
        print(ngettext("{n} problem in {file}", "{n} problems in {file}", len(problems)).format(
            n=len(problems), file=lay.file), file=sys.stderr)
        return 1
    print(_("{file}: ok (junction layouts: {layouts}, junctions: {junctions}, corridors: {corridors}, views: "
            "{views})").format(file=lay.file, layouts=len(lay.junction_layouts), junctions=len(lay.junctions),
                               corridors=len(lay.corridors), views=len(lay.views)))
    return 0


def main(args: argparse.Namespace) -> int:
    if args.check_layouts:
        return check_layouts(args.layouts)
    from hmi.models.layouts import load_layouts

    layouts, problems = load_layouts(args.layouts)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(ngettext("{n} problem; the console does not start", "{n} problems; the console does not start",
                       len(problems)).format(n=len(problems)), file=sys.stderr)
        return 1
    if args.screenshots is not None and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication, QDialog

    from hmi.bridge import Bridge, wait_reply
    from hmi.console import ConsoleModel
    from hmi.language import before_login, follow_site
    from hmi.mainwindow import LoginDialog, MainWindow
    from hmi.window_host import WindowHost

    app = QApplication.instance() or QApplication(sys.argv[:1])
    bridge = Bridge(args.server, args.workstation)
    bridge.start()
    console = ConsoleModel(bridge, layouts)
    console.audible = bool(args.audible)
    failover = None
    if args.pair_url:  # a failover pair: follow its active server (from the login on), its state in the status bar
        from hmi.failover import Failover

        failover = Failover(bridge, [args.server, args.pair_url])
        failover.start()
    try:
        if chosen_lang(args) is None:  # the login dialog in the server's language (GET /health, no token needed)
            before_login(console)
        password = os.environ.get("SCADA_PASSWORD", "")
        if args.user and password:
            r = wait_reply(console.login(args.user, password), 30)
            if not r.ok:
                print(f"scada hmi: login as {args.user!r} refused: {r.why()}", file=sys.stderr)
                if args.screenshots is not None:
                    return 1
                if LoginDialog(console, args.user).exec() != QDialog.DialogCode.Accepted:
                    return 1
        else:
            if args.screenshots is not None:
                print("scada hmi: --screenshots needs --user and SCADA_PASSWORD", file=sys.stderr)
                return 2
            if LoginDialog(console, args.user).exec() != QDialog.DialogCode.Accepted:
                return 1
        # the window is built in the server's language (GET /config, asked at the login), and again in another one a
        # reload brings (WindowHost), unless scada --lang / $SCADA_LANG chose one
        if chosen_lang(args) is None:
            follow_site(console)

        def dress(window: MainWindow) -> None:  # every window (a reload in another language builds it again)
            if failover is not None:
                failover.setParent(window)
                bar = window.statusBar()
                if bar is not None:
                    bar.addPermanentWidget(failover.label())

        host = WindowHost(console, dress)
        window = host.window
        if args.page in window.pages:
            window.show_page(args.page)
        window.confirm_close = args.screenshots is None
        window.show()
        # Ctrl-C / SIGTERM (scada run stops its children so) close the console cleanly; the timer lets the
        # Python interpreter run its signal handlers while Qt's loop waits in C
        signalled: list[int] = []

        def stop(num: int, _frame: object) -> None:
            signalled.append(num)
            app.quit()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
        tick = QTimer()
        tick.timeout.connect(lambda: None)
        tick.start(250)
        if args.screenshots is not None:
            from hmi.screenshots import save_levels

            deadline = time.monotonic() + 60
            while console.stale and time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.02)
            for path in save_levels(host.window, args.screenshots):
                print(path)
            return 0
        code = int(app.exec())
        if not signalled:  # the operator closed it (a signal is scada run stopping everything: it says so)
            who = console.session.user or console.last_user or "nobody logged in"
            print(f"scada hmi: the operator console was closed ({who}); the server at {args.server} keeps "
                  f"supervising and journalling", file=sys.stderr, flush=True)
        return code
    finally:
        if failover is not None:
            failover.stop()
        console.close()
