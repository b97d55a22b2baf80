"""Qt objects built from the style guide (hmi.style): brushes, pens, priority icons and map symbols; and how
lists fit their page (filter boxes whole, tables without a sideways scroll bar).

Brushes are created once and reused: pyqtgraph's symbol atlas caches by brush identity, so a
marker that changes state only swaps which of these few objects it points at.

    a list page at 1280 px:  [status ▾][all communes ▾][crew ▾][text…………][sort ▾]   fit_choices: each box as wide
                             ┌ P │ state │ since │ equipment │ message ……………… ┐    as its longest choice (capped)
                             │ fixed columns, text elided (whole in the tooltip) │    fit_columns: one column
                             └───────────────────────────────────────────────────┘    takes the rest of the width
"""

from __future__ import annotations

from functools import cache

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF, QTransform
from PyQt6.QtWidgets import QComboBox, QHeaderView, QTableView

from hmi import style


def colour(hex_: str) -> QColor:
    return QColor(hex_)


@cache
def brush(hex_: str, hatched: bool = False) -> QBrush:
    b = QBrush(QColor(hex_), Qt.BrushStyle.BDiagPattern if hatched else Qt.BrushStyle.SolidPattern)
    return b


@cache
def pen(hex_: str, width: float = 1.0) -> QPen:
    p = QPen(QColor(hex_))
    p.setWidthF(width)
    p.setCosmetic(True)
    return p


def code_brush(code: int, normal_hex: str) -> QBrush:
    """Fill of a map marker with display ``code`` (hmi.style codes)."""
    if code == style.UNKNOWN:
        return brush(style.UNKNOWN_LINE, hatched=True)
    fill = style.CODE_FILL.get(code)
    return brush(fill if fill else normal_hex)


def code_pen(code: int) -> QPen:
    if code == style.ABNORMAL:
        return pen(style.ABNORMAL_LINE, 1.2)
    if code == style.UNKNOWN:
        return pen(style.UNKNOWN_LINE, 1.0)
    if code >= style.ALARM_P4:
        return pen("#000000", 1.2)
    return pen("#2a2a2a", 0.6)


def shape_path(shape: str, size: float = 1.0) -> QPainterPath:
    """Unit-square path (-0.5..0.5) of a priority shape."""
    p = QPainterPath()
    h = 0.5 * size
    if shape == "square":
        p.addRect(QRectF(-h, -h, 2 * h, 2 * h))
    elif shape == "triangle":
        p.addPolygon(QPolygonF([QPointF(0, -h), QPointF(h, h), QPointF(-h, h), QPointF(0, -h)]))
    elif shape == "diamond":
        p.addPolygon(QPolygonF([QPointF(0, -h), QPointF(h, 0), QPointF(0, h), QPointF(-h, 0), QPointF(0, -h)]))
    else:
        p.addEllipse(QRectF(-h, -h, 2 * h, 2 * h))
    return p


@cache
def priority_symbol(priority: int) -> QPainterPath:
    """Map symbol of an alarm indicator: the priority's shape with its number cut out (readable in grey)."""
    st = style.PRIORITIES[priority]
    path = shape_path(st.shape, 1.0)
    text = QPainterPath()
    f = QFont("DejaVu Sans")
    f.setBold(True)
    f.setPixelSize(100)
    text.addText(0, 0, f, st.text)
    r = text.boundingRect()
    scale = 0.42 / max(r.height(), 1.0)
    t = QTransform()
    t.scale(scale, scale)
    t.translate(-r.center().x(), -r.center().y() + (8 if st.shape == "triangle" else 0))
    path.addPath(t.map(text))
    path.setFillRule(Qt.FillRule.OddEvenFill)
    return path


@cache
def priority_icon(priority: int, px: int = 18, active: bool = True) -> QIcon:
    return QIcon(priority_pixmap(priority, px, active))


def priority_pixmap(priority: int, px: int = 18, active: bool = True) -> QPixmap:
    """The priority indicator as a small picture: coloured shape, black outline, the number in black.

    ``active=False`` draws the same shape and number in greys (a legend with nothing to report: no
    alarm colour on screen when there is no alarm).
    """
    pm = QPixmap(px, px)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    if priority in style.PRIORITIES:
        st = style.PRIORITIES[priority]
        p.translate(px / 2, px / 2)
        p.setPen(QPen(QColor("#000000"), 1.2))
        p.setBrush(QBrush(QColor(st.colour if active else style.PANEL)))
        if not active:
            p.setPen(QPen(QColor(style.TEXT_MUTED), 1.0))
        p.drawPath(shape_path(st.shape, px - 2))
        f = QFont("DejaVu Sans")
        f.setBold(True)
        f.setPixelSize(int(px * 0.55))
        p.setFont(f)
        p.setPen(QColor("#000000" if active else style.TEXT_MUTED))
        dy = px * 0.12 if st.shape == "triangle" else 0
        p.drawText(QRectF(-px / 2, -px / 2 + dy, px, px), Qt.AlignmentFlag.AlignCenter, st.text)
    else:
        p.setPen(QColor(style.TEXT_MUTED))
        p.drawText(QRectF(0, 0, px, px), Qt.AlignmentFlag.AlignCenter, "D")
    p.end()
    return pm


def hide_row_numbers(table: QTableView) -> None:
    header = table.verticalHeader()
    if header is not None:
        header.setVisible(False)


def hatch_rect(p: QPainter, rect: QRectF) -> None:
    """Paint 'state unknown': grey hatch with a dark outline."""
    p.save()
    p.setPen(QPen(QColor(style.UNKNOWN_LINE), 1.0))
    p.setBrush(QBrush(QColor(style.UNKNOWN_FILL)))
    p.drawRect(rect)
    p.setBrush(QBrush(QColor(style.UNKNOWN_LINE), Qt.BrushStyle.BDiagPattern))
    p.drawRect(rect)
    p.restore()


#: a filter box never grows past this: a longer choice (a crew's or commune's name from the configuration) is
#: elided in the box, whole in its drop-down list and its tooltip
CHOICE_MAX_PX = 240


def fit_choices(box: QComboBox, max_px: int = CHOICE_MAX_PX) -> None:
    """``box`` as wide as its longest choice (so the chosen one is never cut), up to ``max_px``."""
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    box.setMaximumWidth(max_px)
    box.currentTextChanged.connect(box.setToolTip)


def text_px(table: QTableView, texts: list[str], pad: int = 18) -> int:
    """The width a column needs for the widest of ``texts`` (and its header's padding) in the table's font."""
    fm = table.fontMetrics()
    return max(fm.horizontalAdvance(t) for t in texts) + pad


def fit_columns(table: QTableView, widths: dict[int, int], stretch: int) -> None:
    """Columns of the given widths (the operator may still resize them) and column ``stretch`` taking the rest
    of the table's width, its text elided: no sideways scroll bar while the fixed columns fit."""
    hh = table.horizontalHeader()
    if hh is None:  # a QTableView always has its header (Qt's stub says Optional)
        return
    hh.setStretchLastSection(False)
    hh.setMinimumSectionSize(24)
    for col, px in widths.items():
        table.setColumnWidth(col, px)
    hh.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    table.setTextElideMode(Qt.TextElideMode.ElideRight)
