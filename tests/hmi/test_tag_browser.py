"""The trend's tag browser (hmi.tag_browser) against a real simulator + server (one stack for the module).

    Trends → "Browse tags…" → every tag, paged (50 a page; Next/Previous) → a text ("power": anywhere in the
    name) or a glob → select → "Add to trend" → the trend draws the tag (its type and live value)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

import pytest
from PyQt6.QtCore import Qt
from pytestqt.qtbot import QtBot

from hmi.tag_browser import glob_of
from tests.hmi.stack import LiveStack
from tests.hmi.test_live import UI


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    s = LiveStack(tmp_path_factory.mktemp("hmi-tag-browser")).start()
    try:
        yield s
    finally:
        s.stop()


def test_glob_of() -> None:
    assert glob_of("power") == "*power*"
    assert glob_of(" dijon/lighting/*/power ") == "dijon/lighting/*/power"
    assert glob_of("lamp_0?") == "lamp_0?"
    assert glob_of("") == "*"


def test_browse_page_filter_and_add_to_the_trend(qtbot: QtBot, stack: LiveStack) -> None:
    ui = UI(qtbot, stack, "op")
    w = ui.window
    try:
        w.show_page("trends")
        b = w.trends.browse()
        names: list[str] = list(stack.call(lambda: list(stack.server.tagdb.names)))
        # every tag of the city, one page at a time
        ui.wait(lambda: b.total > 0)
        assert b.total == len(names) and b.table.rowCount() == 50
        assert b.where.text() == f"1–50 of {len(names)}"
        assert not b.prev_btn.isEnabled() and b.next_btn.isEnabled()
        first = b.names()
        qtbot.mouseClick(b.next_btn, Qt.MouseButton.LeftButton)
        ui.wait(lambda: b.offset == 50 and b.names() and b.names() != first)
        assert not set(b.names()) & set(first) and b.prev_btn.isEnabled()
        assert b.where.text() == f"51–100 of {len(names)}"
        # a text: anywhere in the name
        b.filter.setText("C0001/power")
        qtbot.keyClick(b.filter, Qt.Key.Key_Return)
        want = sorted(n for n in names if "C0001/power" in n)
        ui.wait(lambda: b.offset == 0 and b.total == len(want) and b.table.rowCount() == len(want))
        assert sorted(b.names()) == want and want
        assert not b.next_btn.isEnabled()
        # a glob, as is
        b.filter.setText("*/lighting/C0002/lamp_0?/status")
        b.search()
        want = sorted(n for n in names if fnmatch.fnmatchcase(n, "*/lighting/C0002/lamp_0?/status"))
        ui.wait(lambda: sorted(b.names()) == want)
        assert len(want) == 9 and b.total == 9
        # nothing
        b.filter.setText("no-such-tag-anywhere")
        b.search()
        ui.wait(lambda: b.table.rowCount() == 0 and "no tag matches" in b.where.text())
        assert not b.add_btn.isEnabled()
        # add: the cabinet's power goes on the trend, typed (float: a line) and drawn with its live value
        b.filter.setText("C0001/power")
        b.search()
        tag = next(n for n in names if n.endswith("lighting/C0001/power"))
        ui.wait(lambda: tag in b.names())
        b.table.selectRow(b.names().index(tag))
        qtbot.mouseClick(b.add_btn, Qt.MouseButton.LeftButton)
        assert tag in w.trends.curves
        ui.wait(lambda: w.trends.step.get(tag) is False)  # GET /tags/{name}: a float
        ui.wait(lambda: w.trends.curves[tag].getData()[0] is not None and len(w.trends.curves[tag].getData()[0]) > 0)
        assert "added" in b.where.text() and b.isVisible()  # stays open for more
        assert w.trends.browse() is b  # one browser per trend view
    finally:
        ui.console.close()
        ui.window.close()
