"""Qt objects built from the style guide (hmi.style): brushes, pens, priority icons and map symbols.

Brushes are created once and reused: pyqtgraph's symbol atlas caches by brush identity, so a
marker that changes state only swaps which of these few objects it points at.
"""

from __future__ import annotations

from functools import cache

from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF, QTransform
from PyQt6.QtWidgets import QTableView

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
