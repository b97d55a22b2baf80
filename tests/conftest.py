"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scada.i18n import get_language, set_language


@pytest.fixture
def english() -> Iterator[None]:
    """The process's language is English for the test (then restored): for tests that compare texts with their
    English, since a YAML file that does not parse, among others, is told in the process's language
    (scada.config.yamlsource), French unless a test before set another."""
    before = get_language()
    set_language("en")
    yield
    set_language(before)
