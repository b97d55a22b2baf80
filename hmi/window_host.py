"""The console's main window, built again in the server's language when a reload changes it.

    reload on the server ── WebSocket snapshot "reload" ──► ConsoleModel: GET /config again (hmi.bridge flags it)
                                                              │ lang ≠ the process's, and the console follows the
                                                              │ server (no scada --lang / $SCADA_LANG)
                                                              ▼
                                        set_language(lang) ── languageChanged(lang)
                                                              ▼
    WindowHost.rebuild():  old.view_state() ─► old.retire() ─► MainWindow(console) in the new language
                           (page, equipment, trended tags,     │ dress(new): what the caller adds to every window
                            place on screen)                   │ (scada hmi: the failover indicator)
                                                               ▼ new.restore_view(state) · horn state carried over
                                                               shown where the old one was ─► ``rebuilt(new)``

Every widget takes its texts when it is built (hmi.language), so a new window is the one way to change them all
at once; the session, the bridge and every model stay (``ConsoleModel`` is not rebuilt): the new window replays
what the console knows (``ConsoleModel.replay``) and nothing is asked of the server again but what a display
asks when it opens. Widgets connect only bound methods to the console's signals, so the old window's connections
go with it. A dialog open over the window (a command being confirmed, the login) is never pulled from under the
operator: the rebuild waits until no modal dialog or popup is open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PyQt6.QtCore import QObject, QTimer, pyqtSignal
from PyQt6.QtWidgets import QApplication

from hmi.area import AreaSettings
from hmi.console import ConsoleModel
from hmi.language import use_qt_translations
from hmi.mainwindow import MainWindow
from scada.i18n import get_language

log = logging.getLogger(__name__)

#: how often a rebuild put off by an open dialog looks again
RETRY_MS = 500


class WindowHost(QObject):
    """Owns the console's current :class:`MainWindow` (``window``); ``rebuilt(new_window)`` after each rebuild."""

    rebuilt = pyqtSignal(object)

    def __init__(self, console: ConsoleModel, dress: Callable[[MainWindow], None] | None = None,
                 area_settings: AreaSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.dress = dress
        self.area_settings = area_settings
        self.window = self._build()
        self.rebuilds = 0
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(RETRY_MS)
        self._later.timeout.connect(self.rebuild)
        console.languageChanged.connect(self.rebuild)

    def _build(self) -> MainWindow:
        use_qt_translations()  # Qt's own buttons in the process's language (MainWindow does it too: once is enough)
        window = MainWindow(self.console, self.area_settings)
        if self.dress is not None:
            self.dress(window)
        return window

    def rebuild(self, *_lang: object) -> MainWindow | None:
        """The window again, in the process's language, showing what the old one showed; None when put off (a
        dialog is open: tried again in :data:`RETRY_MS`)."""
        if QApplication.activeModalWidget() is not None or QApplication.activePopupWidget() is not None:
            self._later.start()
            return None
        old = self.window
        state = old.view_state()
        old.retire()  # first: its displays let go of their subscriptions before the new ones take theirs
        new = self._build()
        new.banner.annunciator.adopt(old.banner.annunciator)
        new.restore_view(state)
        if state.visible:
            new.show()
        self.window = new
        self.rebuilds += 1
        log.info("console: window built again in %s (%s shown)", get_language(), state.page)
        self.rebuilt.emit(new)
        return new


__all__ = ["WindowHost"]
