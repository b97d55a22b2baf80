"""The HMI style guide (ISA-101 high-performance style): the ONE place where colours are defined.

    background greys (60-70 %)   process/equipment in muted greys   colour = alarm, and nothing else

    priority  colour    shape       text   (redundant coding: readable in greyscale and by the
    ───────── ───────── ─────────── ────    colour-blind; the shape and the number say the
    1 crit.   red       square      "1"     priority on their own)
    2 high    orange    triangle    "2"
    3 medium  yellow    diamond     "3"
    4 low     cyan      circle      "4"
    shelved / suppressed / out of service: magenta, outlined, with text "SHV" / "SUP" / "OOS"

Non-alarm states are never coloured: abnormal-without-alarm (a failed luminaire, a door open) is
white with a black outline; "state unknown" (communication lost, stale, no value yet) is a grey
hatch with "?"; traffic-signal aspects are drawn as labelled grey icons (lit = white with the
letter R/A/G, unlit = dark), never with the alarm red (AC-HMI-03, AC-TS-16).

This module has no Qt import, so pure models and tests can use the palette; Qt brushes are built
from these hex strings by the widgets (``hmi.qtstyle``).
"""

from __future__ import annotations

from dataclasses import dataclass

from scada.i18n import N_, _

# ---------------------------------------------------------------------- greys (no hue)
BACKGROUND = "#b4b4b4"  # display background, ~70 % grey
PANEL = "#c8c8c8"  # panels, tables
PANEL_DARK = "#a0a0a0"
TEXT = "#141414"
TEXT_MUTED = "#464646"
EQUIPMENT = "#505050"  # a normal equipment marker
LUMINAIRE = "#7a7a7a"  # a normal luminaire (tiny, muted)
ABNORMAL_FILL = "#ffffff"  # off-normal without an alarm (white, black outline)
ABNORMAL_LINE = "#000000"
UNKNOWN_FILL = "#8c8c8c"  # drawn hatched: state unknown
UNKNOWN_LINE = "#3c3c3c"
ASPECT_LIT = "#f0f0f0"  # a lit signal lamp (with its letter)
ASPECT_DARK = "#3a3a3a"  # an unlit signal lamp
ASPECT_HOUSING = "#1e1e1e"
COMMUNE_TEXT = "#2a2a2a"
COMMUNE_LINE = "#8f8f8f"  # commune outlines: thin, a shade darker than the background, never filled
GRID = "#9a9a9a"

# ---------------------------------------------------------------------- alarm palette (alarms only)
P1 = "#e00000"
P2 = "#ff8c00"
P3 = "#ffd700"
P4 = "#00bfff"
HIDDEN = "#b04fd8"  # shelved / suppressed / out of service
ALARM_COLOURS: dict[int, str] = {1: P1, 2: P2, 3: P3, 4: P4}
ALARM_PALETTE: tuple[str, ...] = (P1, P2, P3, P4, HIDDEN)


@dataclass(frozen=True, slots=True)
class PriorityStyle:
    priority: int
    colour: str
    shape: str  # square | triangle | diamond | circle
    text: str  # the number shown inside / next to the shape
    label: str  # the word in lists and tooltips (an English msgid: shown through _())
    symbol: str  # a unicode glyph with the same shape, for text cells


PRIORITIES: dict[int, PriorityStyle] = {
    1: PriorityStyle(1, P1, "square", "1", N_("critical"), "■"),
    2: PriorityStyle(2, P2, "triangle", "2", N_("high"), "▲"),
    3: PriorityStyle(3, P3, "diamond", "3", N_("medium"), "◆"),
    4: PriorityStyle(4, P4, "circle", "4", N_("low"), "●"),
}
DIAGNOSTIC = 5


def priority_text(priority: int) -> str:
    """``"■1 critical"`` (fr ``"■1 critique"``): shape glyph + number + word (redundant coding for lists and
    banners)."""
    st = PRIORITIES.get(priority)
    if st is None:
        return _("D diagnostic")
    return f"{st.symbol}{st.text} {_(st.label)}"


# ---------------------------------------------------------------------- map marker display codes
NORMAL, ABNORMAL, UNKNOWN = 0, 1, 2
ALARM_P4, ALARM_P3, ALARM_P2, ALARM_P1 = 4, 5, 6, 7
N_CODES = 8


def alarm_code(priority: int) -> int:
    """Display code of an equipment marker whose worst visible active alarm has ``priority``."""
    return {1: ALARM_P1, 2: ALARM_P2, 3: ALARM_P3, 4: ALARM_P4}.get(priority, NORMAL)


def code_priority(code: int) -> int | None:
    return {ALARM_P1: 1, ALARM_P2: 2, ALARM_P3: 3, ALARM_P4: 4}.get(code)


#: marker fill per display code (None = the kind's normal grey)
CODE_FILL: dict[int, str | None] = {NORMAL: None, ABNORMAL: ABNORMAL_FILL, UNKNOWN: UNKNOWN_FILL, 3: None,
                                    ALARM_P4: P4, ALARM_P3: P3, ALARM_P2: P2, ALARM_P1: P1}

# ---------------------------------------------------------------------- equipment type shapes (pyqtgraph symbols)
#: template → (pyqtgraph symbol, size px, legend text: an English msgid, shown through _())
KIND_SYMBOLS: dict[str, tuple[str, int, str]] = {
    "luminaire": ("o", 4, N_("luminaire")),
    "lighting_cabinet": ("s", 9, N_("lighting cabinet")),
    "junction": ("+", 12, N_("junction")),
    "camera": ("t", 9, N_("camera")),
    "bollard": ("d", 9, N_("bollard")),
    "building": ("h", 11, N_("building")),
    "parking": ("t1", 10, N_("parking")),
    "panel": ("p", 10, N_("information panel")),
    "vehicle": ("star", 11, N_("service vehicle")),
    "other": ("o", 8, N_("other")),
}

#: the equipment domains and alarm services of the configuration (tags.yaml, alarms.yaml) in words (msgids)
DOMAIN_NAMES: dict[str, str] = {
    "traffic": N_("traffic"), "lighting": N_("lighting"), "buildings": N_("buildings"), "cctv": N_("cameras"),
    "fleet": N_("fleet"), "panels": N_("information panels"), "parking": N_("parking"), "bollards": N_("bollards"),
    "police": N_("police"), "fire": N_("fire brigade"), "workorders": N_("work orders")}


#: shorter names where the full one is too wide for a narrow place (the map's side panel, 270 px)
DOMAIN_SHORT: dict[str, str] = {"panels": N_("panels")}


def domain_text(domain: str, short: bool = False) -> str:
    """A domain or service in words, in the console's language (one not listed reads as its name);
    ``short``: its short name where it has one (:data:`DOMAIN_SHORT`)."""
    if not domain:
        return _("(other)")
    if short and domain in DOMAIN_SHORT:
        return _(DOMAIN_SHORT[domain])
    return _(DOMAIN_NAMES[domain]) if domain in DOMAIN_NAMES else domain.replace("_", " ")


QUALITY_MARK = {"good": "", "uncertain": "~", "bad_comm": "?", "bad_device": "!", "bad_config": "#"}


def quality_mark(quality: str) -> str:
    """A non-colour marker for a value's quality (AC-HMI-05): '' good, '~' uncertain/stale, '?' comm lost."""
    return QUALITY_MARK.get(quality, "?")


def stylesheet() -> str:
    """The Qt stylesheet of the console: greys only."""
    return f"""
    QWidget {{ background: {PANEL}; color: {TEXT}; font-size: 12px; }}
    QMainWindow, QStackedWidget {{ background: {BACKGROUND}; }}
    QTableView, QTreeView, QListView, QTextEdit, QPlainTextEdit, QLineEdit, QSpinBox, QComboBox,
    QDoubleSpinBox, QDateTimeEdit {{ background: #d8d8d8; selection-background-color: #6e6e6e;
        selection-color: #ffffff; gridline-color: {GRID}; }}
    QHeaderView::section {{ background: {PANEL_DARK}; color: {TEXT}; border: 0; padding: 3px; }}
    QPushButton {{ background: #d2d2d2; border: 1px solid #6e6e6e; padding: 4px 10px; }}
    QPushButton:disabled {{ color: #7a7a7a; border-color: #9a9a9a; }}
    QPushButton:checked {{ background: #6e6e6e; color: #ffffff; }}
    QToolTip {{ background: #f0f0f0; color: {TEXT}; border: 1px solid #3c3c3c; }}
    """
