"""The English finder of tests/hmi/i18n_check.py, on a small widget tree with French, English and ids."""

from __future__ import annotations

from PyQt6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from pytestqt.qtbot import QtBot

from tests.hmi.i18n_check import english_words, visible_english


def _panel() -> QWidget:
    root = QWidget()
    root.setObjectName("panel")
    root.setWindowTitle("Console — Dijon")
    lay = QVBoxLayout(root)
    for name, w in (("title", QLabel("<b>Alarmes actives</b> : 3")),
                    ("ids", QLabel("J001 — 1\u202f200\u00a0W — 12 km/h — C0001/lamp_03")),
                    ("ack", QPushButton("Acquitter")),
                    ("logout", QPushButton("Log out")),
                    ("stale", QLabel("DATA STALE — reconnecting")),
                    ("word", QLabel("yes")),  # a catalogue msgid shown as is (its French is "oui")
                    ("proper", QLabel("Quetigny — Open Data Dijon"))):
        w.setObjectName(name)
        lay.addWidget(w)
    box = QGroupBox("Filters")
    box.setObjectName("box")
    search = QLineEdit()
    search.setObjectName("search")
    search.setPlaceholderText("Rechercher un équipement")
    QVBoxLayout(box).addWidget(search)
    lay.addWidget(box)
    combo = QComboBox()
    combo.setObjectName("commune")
    combo.addItems(["Toutes les communes", "Dijon"])
    lay.addWidget(combo)
    table = QTableWidget(2, 2)
    table.setObjectName("list")
    table.setHorizontalHeaderLabels(["Priorité", "Message"])
    table.setItem(0, 0, QTableWidgetItem("1"))
    table.setItem(0, 1, QTableWidgetItem("Carrefour J001 : communication perdue"))
    table.setItem(1, 1, QTableWidgetItem("Cabinet C0002 (Dijon): communication lost"))
    lay.addWidget(table)
    hidden = QLabel("Hidden English text")
    hidden.setObjectName("hidden")
    lay.addWidget(hidden)
    hidden.hide()
    tip = QLabel("ok")
    tip.setObjectName("tip")
    tip.setToolTip("Click to acknowledge")
    lay.addWidget(tip)
    return root


def test_finds_the_visible_english_and_nothing_else(qtbot: QtBot) -> None:
    root = _panel()
    qtbot.addWidget(root)
    root.show()
    found = [(f.where, f.text, f.words) for f in visible_english(root, allow=["Open Data"])]
    assert found == [
        ("panel/logout", "Log out", ("log", "out")),
        ("panel/stale", "DATA STALE — reconnecting", ("data", "stale", "reconnecting")),
        ("panel/word", "yes", ("yes",)),
        ("panel/box", "Filters", ("filters",)),
        ("panel/list", "Cabinet C0002 (Dijon): communication lost", ("lost",)),
        ("panel/tip", "Click to acknowledge", ("to", "acknowledge")),
    ]
    # the allow-list takes whole texts or words; without it "Open" reads as English
    assert [f.where for f in visible_english(root) if f.where == "panel/proper"] == ["panel/proper"]
    assert visible_english(root, allow=["Open Data", "Log out", "DATA STALE — reconnecting", "yes", "Filters",
                                        "lost", "Click to acknowledge"]) == []


def test_words() -> None:
    assert english_words("Armoire C0001 : porte ouverte, 3 luminaires en panne") == ()
    assert english_words("Cabinet C0001: door open") == ("door", "open")
    assert english_words("Service éclairage, mode local, plan 3, date du jour") == ()
