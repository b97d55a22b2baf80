"""Area of responsibility per console: chosen in a dialog, kept per user on this workstation, shown in
the status bar.

    status bar ┌ … ─────────────────────────────── [Area: Dijon, Talant · lighting] ┐   (a button: click to change)
               └──────────────────────────────────────────────────────────────────────┘
    AreaDialog   ☑ communes (from the equipment list)   ☑ services (from the server's configuration)
                 nothing ticked on a side = all of it   [Whole city] [OK] [Cancel]

    log in as U ──► AreaSettings.load(U) ──► console.set_area(...)  (the area this user last chose here)
    OK          ──► AreaSettings.save(U, area) ──► console.set_area(area)

Settings live in QSettings (``~/.config/city-scada/console.conf`` on Linux: this workstation, this OS
account), one key per console user, so two operators sharing a desk each find their own area. The
filter itself is the alarm store's (:mod:`hmi.models.area`); this module only asks, keeps and shows it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QGroupBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from hmi import style
from hmi.console import ConsoleModel
from hmi.models.area import WHOLE_CITY, Area, from_json, to_json
from scada.i18n import _

ORGANISATION = "city-scada"
APPLICATION = "console"


class AreaSettings:
    """Each console user's area on this workstation (``settings``: tests give their own file)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.settings = settings if settings is not None else QSettings(ORGANISATION, APPLICATION)

    def load(self, user: str) -> Area:
        raw = self.settings.value(f"area/{user}", "")
        try:
            return from_json(json.loads(str(raw))) if raw else WHOLE_CITY
        except ValueError:
            return WHOLE_CITY  # a damaged entry: show everything rather than hide alarms

    def save(self, user: str, area: Area) -> None:
        self.settings.setValue(f"area/{user}", json.dumps(to_json(area)))
        self.settings.sync()


def services_of(console: ConsoleModel) -> list[str]:
    """The services an alarm can name: the server's configuration, plus any seen on an alarm."""
    return sorted({str(s) for s in console.config_info.get("services", [])}
                  | {a.service for a in console.alarms.alarms.values() if a.service})


class AreaDialog(QDialog):
    """Tick the communes and services this console watches; none ticked on a side means all of them."""

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(_("Area of responsibility of this console"))
        area = console.alarms.area
        self.communes = self._boxes(console.registry.communes(), area.communes)
        self.services = self._boxes(services_of(console), area.services, style.domain_text)
        lay = QVBoxLayout(self)
        for title, boxes in ((_("Communes (none ticked: all)"), self.communes),
                             (_("Services (none ticked: all)"), self.services)):
            group = QGroupBox(title)
            grid = QGridLayout(group)
            for n, box in enumerate(boxes.values()):
                grid.addWidget(box, n // 3, n % 3)
            lay.addWidget(group)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        whole = self.buttons.addButton(_("Whole city"), QDialogButtonBox.ButtonRole.ResetRole)
        if whole is not None:
            whole.clicked.connect(self.clear)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)

    @staticmethod
    def _boxes(names: list[str], ticked: frozenset[str], label: Callable[[str], str] = str) -> dict[str, QCheckBox]:
        out = {}
        for name in names:
            box = QCheckBox(label(name))  # a service in words; the key stays its code
            box.setChecked(name in ticked)
            out[name] = box
        return out

    def clear(self) -> None:
        for box in (*self.communes.values(), *self.services.values()):
            box.setChecked(False)

    def area(self) -> Area:
        return Area(frozenset(n for n, b in self.communes.items() if b.isChecked()),
                    frozenset(n for n, b in self.services.items() if b.isChecked()))


class AreaIndicator(QPushButton):
    """The status bar's "Area: …" (flat button): always says what this console watches; a click changes it."""

    def __init__(self, console: ConsoleModel, settings: AreaSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.settings = settings if settings is not None else AreaSettings()
        self.setFlat(True)
        self.setAccessibleName(_("area of responsibility"))
        self.setToolTip(_("the communes and services this console watches: banner, alarm list, map and sound "
                          "follow it; click to change"))
        self.clicked.connect(self.ask)
        self._user = ""
        console.areaChanged.connect(self.refresh)
        console.sessionChanged.connect(self._session)
        self.refresh()

    def refresh(self) -> None:
        self.setText(_("Area: {area}").format(area=self.console.alarms.area.text))

    def _session(self) -> None:
        """A user logged in: their area on this workstation (a logout keeps the area until the next login)."""
        user = self.console.session.user
        if user and user != self._user:
            self._user = user
            self.console.set_area(self.settings.load(user))

    def choose(self, area: Area) -> None:
        """Apply and keep ``area`` for the logged-in user (what OK in the dialog does)."""
        if self.console.session.user:
            self.settings.save(self.console.session.user, area)
        self.console.set_area(area)

    def ask(self) -> AreaDialog:
        d = AreaDialog(self.console, self)
        d.accepted.connect(lambda: self.choose(d.area()))
        d.finished.connect(d.deleteLater)
        d.open()
        return d
