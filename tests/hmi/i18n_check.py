"""Find English left on screen: walk a Qt widget tree and return the visible texts that read as English.

For the French pass over every console view (issue 17: "a test opens every view offscreen in French and
fails on any visible English text"). What counts as visible text of a widget the user can see
(``isVisibleTo(root)``)::

    QLabel text (rich text stripped) · button text · group box title · line edit placeholder
    combo box items · tab titles · item views: column headers and the displayed cells (first rows)
    menu bar / tool bar / widget actions · status bar message · window title · tool tips

A text reads as English when it is an English msgid of the catalogue whose French differs (our own
strings, left untranslated), or when one of its words is in :data:`ENGLISH_WORDS`: common English
words of this product's screens that are not French words (``the``, ``alarm``, ``lost``...). Words
shared by both languages (``service``, ``date``, ``message``, ``parking``) are not in the list, and
identifiers and units (``J001``, ``C0001``, ``kW``, ``km/h``) never match it. ``allow`` takes texts or
phrases or words that may stay (a proper name, a protocol term).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from babel.messages.pofile import read_po
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QStatusBar,
    QTabBar,
    QWidget,
)

from scada.i18n import LOCALE_DIR

ENGLISH_WORDS = frozenset("""
    the of and or is are was were not yes to at by for from with without all none any this that these those an
    be been has have had will would can cannot could should must please here there when where which who what
    open opened close closed lost failed fault faults alarm alarms acknowledge acknowledged ack shelve shelved
    unshelve suppress suppressed unsuppress login logout log user users password cancel save print filter filters
    search clear refresh reload settings help quit exit edit view window show hide map trend trends history
    command commands equipment junction junctions bollard bollards camera cameras building buildings vehicle
    vehicles lighting traffic fire door mains power level value values state status priority time since until
    age online offline stale connected disconnected connecting reconnecting unknown newest oldest new old more
    less seconds hours hour days day week today yesterday loading error errors warning warnings failure failures
    name address send sent request requested requests apply applied running stopped started start waiting done
    rejected refused confirmed outcome reason duration lamp lamps recording flashing manual remote lease leases
    expired left remaining returned return shelf out back next previous first last select selected add remove
    delete changed current live data
""".split())  # English only: words French shares (service, date, message, mode, plan, local, active...) are not here
_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ]+(?:'[a-z]+)?")
_TOKEN = re.compile(r"[^\s,;:()\[\]{}—–«»\"!?]+")
_TAGS = re.compile(r"<[^>]+>")
MAX_ROWS = 200  # cells of an item view looked at (the first rows: enough to see a column's kind of text)


@dataclass(frozen=True, slots=True)
class Finding:
    """English text on screen: which widget (object name or class path), the text, why it reads as English."""

    where: str
    text: str
    words: tuple[str, ...]


@cache
def _untranslated() -> frozenset[str]:
    """English msgids whose French reads differently: shown as is, they are English left on screen."""
    with (LOCALE_DIR / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    return frozenset(str(m.id) for m in catalog if m.id and isinstance(m.id, str) and m.string != m.id)


def _where(w: QWidget, root: QWidget) -> str:
    parts: list[str] = []
    node: QWidget | None = w
    while node is not None:
        parts.append(node.objectName() or type(node).__name__)
        if node is root:
            break
        node = node.parentWidget()
    return "/".join(reversed(parts))


def _texts(w: QWidget) -> Iterator[str]:
    """The texts ``w`` itself shows (not its children's)."""
    if isinstance(w, QLabel):
        yield _TAGS.sub(" ", w.text())
    if isinstance(w, QAbstractButton):
        yield w.text()
    if isinstance(w, QGroupBox):
        yield w.title()
    if isinstance(w, QLineEdit):
        yield w.placeholderText()
    if isinstance(w, QComboBox):
        yield from (w.itemText(i) for i in range(w.count()))
    if isinstance(w, QTabBar):
        yield from (w.tabText(i) for i in range(w.count()))
    if isinstance(w, QStatusBar):
        yield w.currentMessage()
    if isinstance(w, QAbstractItemView) and not isinstance(w, QHeaderView) and w.model() is not None:
        model = w.model()
        assert model is not None  # for mypy: checked just above
        is_list = isinstance(w, QListView)  # a list model's columnCount() is private in PyQt6: one column
        for c in range(1 if is_list else model.columnCount()):
            if not is_list:
                yield str(model.headerData(c, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole) or "")
            for r in range(min(model.rowCount(), MAX_ROWS)):
                yield str(model.data(model.index(r, c), Qt.ItemDataRole.DisplayRole) or "")
    for action in w.actions():  # menus, tool bars, context actions
        if action.isVisible():
            yield action.text().replace("&", "")
            yield action.toolTip() if action.toolTip() != action.text().replace("&", "") else ""
    if isinstance(w, QMainWindow) or w.isWindow():
        yield w.windowTitle()
    yield w.toolTip()


def english_words(text: str, allow: Iterable[str] = ()) -> tuple[str, ...]:
    """The words of ``text`` that are English (lower-cased, in order), once the ``allow`` phrases are taken out."""
    for phrase in allow:
        text = re.sub(re.escape(phrase), " ", text, flags=re.IGNORECASE)
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if any(ch.isdigit() or ch == "_" for ch in token):  # an identifier (J001, lamp_03, C0001/lamp_03)
            continue
        out.extend(w for w in (m.group(0).lower() for m in _WORD.finditer(token))
                   if w in ENGLISH_WORDS)
    return tuple(out)


def visible_english(root: QWidget, allow: Iterable[str] = ()) -> list[Finding]:
    """Every visible text under ``root`` (itself included) that reads as English, in tree order; ``allow``:
    texts, phrases or words that may stay (proper names, protocol terms)."""
    allowed = sorted(set(allow), key=len, reverse=True)  # the longest phrase first: "Open Data" before "Open"
    allowed_texts = frozenset(allow)
    untranslated = _untranslated()
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for w in [root, *root.findChildren(QWidget)]:
        if w is not root and not w.isVisibleTo(root):
            continue
        for raw in _texts(w):
            text = " ".join(raw.split())
            if not text or text in allowed_texts:
                continue
            words = english_words(text, allowed)
            if not words and text not in untranslated:
                continue
            key = (_where(w, root), text)
            if key not in seen:
                seen.add(key)
                out.append(Finding(key[0], text, words or ("(catalogue msgid)",)))
    return out
