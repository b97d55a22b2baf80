"""HMI tests: Qt offscreen (set before anything imports Qt), model tests without Qt, live tests against a
real simulator + server started in a background thread (see tests/hmi/stack.py).

Language: the console's tests read its English texts (the msgids). The language is one per process
(:func:`scada.i18n.set_language`), so each test starts in English whatever a module before it chose;
tests/hmi/test_french.py switches to French (and this fixture puts English back after it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from scada.i18n import get_language, set_language

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")


@pytest.fixture(autouse=True)
def english_console() -> Iterator[None]:
    before = get_language()
    set_language("en")
    yield
    set_language(before)
