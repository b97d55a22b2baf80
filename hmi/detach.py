"""Any display detachable to a second screen, and back when its window closes.

    main window stack                          its own top-level window (another screen if there is one)
    ┌ … │ Alarms │ …  ┐  ──Detach──►  ┌ … │ placeholder │ … ┐    ┌ Alarms — city supervisory console ┐
    └─────────────────┘               └ "shown in its own ┘    │ the same AlarmList widget, live    │
                                         window" [Show] [Bring back]  └────────────────────────────┘
                          ◄──closing the window (or Bring back)── the widget returns to its slot

The widget itself moves (reparented), so it keeps its model connections, filters and selection: there
is one instance of each display. A display that has no permanent slot (the Level-3 equipment display:
the next "open equipment" builds a new one) is handed over to its window for good — an operator can
keep several equipment displays on the second screen — and closing that window deletes it.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QGuiApplication
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStackedWidget, QVBoxLayout, QWidget

from scada.i18n import N_, _

TITLE = N_("city supervisory console")  # shown through _()


class DetachedWindow(QWidget):
    """A top-level window around one display; ``closed`` when the operator closes it."""

    closed = pyqtSignal(QWidget)

    def __init__(self, display: QWidget, title: str, style_sheet: str = "") -> None:
        super().__init__(None, Qt.WindowType.Window)
        self.display = display
        self.setWindowTitle(f"{title} — {_(TITLE)}")
        self.setStyleSheet(style_sheet)  # a top-level window does not inherit the main window's sheet
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(display)
        display.show()

    def closeEvent(self, ev: QCloseEvent | None) -> None:
        self.closed.emit(self.display)
        super().closeEvent(ev)


class Placeholder(QWidget):
    """What the stack shows where a detached display was."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.label = QLabel(_("“{display}” is shown in its own window.").format(display=title))
        self.show_btn = QPushButton(_("Show its window"))
        self.back_btn = QPushButton(_("Bring it back here"))
        row = QHBoxLayout()
        row.addWidget(self.show_btn)
        row.addWidget(self.back_btn)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.label)
        lay.addLayout(row)
        lay.addStretch(1)


class Detacher(QObject):
    """Moves displays of ``stack`` into their own windows and back."""

    changed = pyqtSignal()

    def __init__(self, stack: QStackedWidget, style_sheet: str = "") -> None:
        super().__init__(stack)
        self.stack = stack
        self.style_sheet = style_sheet
        self.windows: dict[QWidget, DetachedWindow] = {}
        self.placeholders: dict[QWidget, Placeholder] = {}

    def detach(self, display: QWidget, title: str, keep_slot: bool = True) -> DetachedWindow:
        """Move ``display`` into a window of its own (on another screen when there is one)."""
        if display in self.windows:
            self.raise_window(display)
            return self.windows[display]
        index = self.stack.indexOf(display)
        if keep_slot and index >= 0:
            ph = Placeholder(title)
            ph.show_btn.clicked.connect(lambda: self.raise_window(display))
            ph.back_btn.clicked.connect(lambda: self.bring_back(display))
            self.stack.insertWidget(index, ph)
            self.placeholders[display] = ph
            if self.stack.currentWidget() is display:
                self.stack.setCurrentWidget(ph)
        self.stack.removeWidget(display)
        window = DetachedWindow(display, title, self.style_sheet)
        window.closed.connect(self._closed)
        self.windows[display] = window
        self._place(window)
        window.show()
        self.changed.emit()
        return window

    def _place(self, window: QWidget) -> None:
        """On a screen other than the main window's when there is one, else offset on the same screen."""
        main = self.stack.window()
        here = main.screen() if main is not None else None
        others = [s for s in QGuiApplication.screens() if s is not here]
        screen = others[0] if others else here or QGuiApplication.primaryScreen()
        if screen is None:  # no screen at all: the window manager places it
            return
        area = screen.availableGeometry()
        window.resize(min(1280, area.width()), min(900, area.height()))
        window.move(area.topLeft() if others else area.topLeft() + area.center() / 8)

    def is_detached(self, display: QWidget | None) -> bool:
        return display is not None and display in self.windows

    def slot_of(self, display: QWidget) -> QWidget:
        """What the stack shows for ``display``: itself, or its placeholder while detached."""
        return self.placeholders.get(display, display)

    def raise_window(self, display: QWidget) -> None:
        w = self.windows.get(display)
        if w is not None:
            w.show()
            w.raise_()
            w.activateWindow()

    def bring_back(self, display: QWidget) -> None:
        """Close the display's window: it returns to its slot (what closing the window does)."""
        w = self.windows.get(display)
        if w is not None:
            w.close()

    def _closed(self, display: QWidget) -> None:
        self.windows.pop(display, None)
        ph = self.placeholders.pop(display, None)
        if ph is None:  # no slot to return to: the display goes with its window
            display.setParent(None)
            display.deleteLater()
        else:
            index = self.stack.indexOf(ph)
            was_current = self.stack.currentWidget() is ph
            self.stack.insertWidget(index, display)
            self.stack.removeWidget(ph)
            ph.deleteLater()
            if was_current:
                self.stack.setCurrentWidget(display)
        self.changed.emit()

    def close_all(self) -> None:
        for window in list(self.windows.values()):
            window.close()
