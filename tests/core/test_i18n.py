"""scada.i18n: one gettext mechanism; the French catalogue is complete and matches the sources."""

from __future__ import annotations

import fnmatch
import string
import tomllib
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from scada import i18n

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "scada" / "locale"


def _po(lang: str) -> Catalog:
    with (LOCALE / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f)


def _pot() -> Catalog:
    with (LOCALE / "messages.pot").open("rb") as f:
        return read_po(f)


def _ids(catalog: Catalog) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_the_pot_lists_exactly_what_the_sources_mark() -> None:
    """babel.cfg over scada, server, hmi, cli: a string marked and not extracted (or left behind) fails."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)  # type: ignore[no-untyped-call]  # Babel leaves it untyped
    found = {msg if isinstance(msg, str) else msg[0]
             for _, _, msg, _, _ in extract_from_dir(str(ROOT), method_map, options_map)}
    pot = _ids(_pot())
    assert found - pot == set(), "run the pybabel extract/update of babel.cfg, then translate"
    assert pot - found == set(), "msgids no longer in the sources: run the pybabel extract/update of babel.cfg"
    assert {"yes", "kB"} <= pot  # the scan saw scada.format: the test can fail


def test_every_msgid_has_a_french_translation_with_the_same_placeholders() -> None:
    pot, fr = _pot(), _po("fr")
    missing, fuzzy, fields = [], [], []
    for m in pot:
        if not m.id:
            continue
        got = fr.get(m.id, m.context)  # tags.yaml's enum labels have their own context (scada.locale.yaml_texts)
        if got is None or not got.string:
            missing.append(m.id)
        elif got.fuzzy:
            fuzzy.append(m.id)
        elif _fields(str(m.id)) != _fields(str(got.string)):
            fields.append(m.id)
    assert not missing, f"no French for: {missing}"
    assert not fuzzy, f"fuzzy (unchecked) French for: {fuzzy}"
    assert not fields, f"French placeholders differ from the English ones for: {fields}"
    assert _ids(_po("en")) == _ids(pot)  # the English catalogue follows the same template


def test_catalogues_are_package_data() -> None:
    """The .po files ship in the wheel (read at run time; no compiled .mo to build or keep in step)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["scada"]
    for lang in i18n.LANGUAGES:
        rel = f"locale/{lang}/LC_MESSAGES/messages.po"
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel
        assert (i18n.LOCALE_DIR / rel.removeprefix("locale/")).is_file()
    assert "babel" in " ".join(pyproject["project"]["dependencies"]).lower()


def test_translation_in_the_process_language_and_on_request() -> None:
    before = i18n.get_language()
    try:
        assert i18n.set_language("fr_FR.UTF-8") == "fr"
        assert i18n._("yes") == "oui"
        assert i18n.ngettext("{n} alarm", "{n} alarms", 2) == "{n} alarms"  # no entry: the English form for n
        assert i18n.set_language("en") == "en"
        assert i18n._("yes") == "yes"
        assert i18n.gettext_in("fr", "kB") == "ko"
        assert i18n.in_every_language("no") == {"fr": "non", "en": "no"}
        assert i18n._("a text without entry") == "a text without entry"  # the source text, never blank
    finally:
        i18n.set_language(before)
    with pytest.raises(ValueError, match="language must be one of fr, en, got 'de'"):
        i18n.set_language("de")
    assert i18n.get_language() == before
