"""One translation mechanism for the whole product: gettext catalogues, read with Babel.

The source strings (msgids) are English; each language has a ``.po`` catalogue::

    scada/ server/ hmi/ cli/     _("{why}: try again in {seconds} s")   N_("...") marks a text used later
        │  pybabel extract -F babel.cfg -o scada/locale/messages.pot --no-location --sort-output --no-wrap
        │                  --omit-header .                                   (the commands are in babel.cfg)
        ▼
    scada/locale/messages.pot
        │  pybabel update -i scada/locale/messages.pot -d scada/locale --no-wrap --ignore-obsolete
        ▼                                                                    (then translate the new entries)
    scada/locale/<lang>/LC_MESSAGES/messages.po   (fr, en)   ← package data (pyproject.toml)
        │  first use of a language in a process: Babel read_po → write_mo into memory → Translations
        ▼
    _(), ngettext(), gettext_in(lang, ...), in_every_language(msgid), localise(text, lang)

Why the ``.po`` is read at run time instead of shipping or building a ``.mo``: an editable install, a
wheel and a fresh clone then read the very same file, there is no build hook to forget and no compiled
artefact that can fall behind its source. Reading a catalogue costs a few milliseconds, once per
language per process. ``tests/core/test_i18n.py`` checks that the ``.pot`` matches the sources and
that every msgid has a French translation.

The process has one language (:func:`set_language`): the site's ``lang`` from ``tags.yaml`` (``site:``
section), or ``--lang`` on the command line. Code that must answer in another language than the
process's (an API client asking ``?lang=en``) uses :func:`gettext_in`. A reason that is stored or logged
before anyone reads it (an alarm action refused) stays an English msgid until it is shown, where
:func:`localise` translates it. Alarm messages of ``alarms.yaml`` are not in the catalogue: they are given
per language in the file itself (:mod:`scada.alarms.messages`).
"""

from __future__ import annotations

import functools
import gettext
import io
import re
from pathlib import Path
from typing import Final, Literal, get_args

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

Lang = Literal["fr", "en"]
LANGUAGES: Final[tuple[Lang, ...]] = get_args(Lang)
SOURCE_LANGUAGE: Final[Lang] = "en"  # the language of the msgids
DEFAULT_LANGUAGE: Final[Lang] = "fr"  # French first: the language of a site that names none
LOCALE_DIR: Final = Path(__file__).resolve().parent / "locale"
DOMAIN: Final = "messages"
#: the Babel/CLDR locale used for numbers and dates of each language (24-hour clock, day/month/year)
CLDR_LOCALE: Final[dict[Lang, str]] = {"fr": "fr_FR", "en": "en_GB"}

_current: Lang = DEFAULT_LANGUAGE


def parse_lang(text: str) -> Lang:
    """``"fr"``, ``"FR"``, ``"fr_FR"``, ``"fr-FR.UTF-8"`` → ``"fr"``; ValueError for a language without catalogue."""
    code = text.strip().replace("-", "_").split("_")[0].split(".")[0].lower()
    for lang in LANGUAGES:
        if code == lang:
            return lang
    raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {text!r}")


@functools.cache
def _catalog(lang: Lang) -> Catalog:
    with (LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as f:
        return read_po(f, locale=CLDR_LOCALE[lang], domain=DOMAIN)


@functools.cache
def translations(lang: Lang) -> gettext.NullTranslations:
    """The catalogue of ``lang``, compiled in memory from its ``.po`` on first use."""
    buf = io.BytesIO()
    write_mo(buf, _catalog(lang), use_fuzzy=False)  # a fuzzy entry is a guess: the English until it is checked
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


def set_language(lang: str) -> Lang:
    """Make ``lang`` the process's language (loads its catalogue now, so a missing one fails at start-up)."""
    global _current  # noqa: PLW0603 - one language per process, set once at start-up by the CLI or the server
    code = parse_lang(lang)
    translations(code)
    _current = code
    return code


def get_language() -> Lang:
    return _current


def _(message: str) -> str:
    """``message`` in the process's language."""
    return translations(_current).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the process's language (French: 0 and 1 are singular)."""
    return translations(_current).ngettext(singular, plural, n)


def N_(message: str) -> str:  # the name gettext extraction tools look for
    """Mark ``message`` for extraction without translating it now (a table translated when shown)."""
    return message


def gettext_in(lang: str | None, message: str) -> str:
    """``message`` in ``lang`` (the process's language when None)."""
    return translations(_current if lang is None else parse_lang(lang)).gettext(message)


def ngettext_in(lang: str | None, singular: str, plural: str, n: int) -> str:
    return translations(_current if lang is None else parse_lang(lang)).ngettext(singular, plural, n)


def in_every_language(message: str) -> dict[Lang, str]:
    """``{"fr": ..., "en": ...}``: what a per-language alarm message is made of for a built-in msgid."""
    return {lang: translations(lang).gettext(message) for lang in LANGUAGES}


@functools.cache
def _phrases(lang: Lang) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """The catalogue's constant sentences (three words or more, no placeholder) and one pattern finding them."""
    pairs = {str(m.id): str(m.string) for m in _catalog(lang)
             if isinstance(m.id, str) and m.id.count(" ") >= 2 and "{" not in m.id and isinstance(m.string, str)
             and m.string and m.string != m.id and not m.fuzzy}
    if not pairs:
        return None, pairs
    alternatives = "|".join(re.escape(k) for k in sorted(pairs, key=len, reverse=True))  # the longest first
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)"), pairs


def localise(text: str, lang: str | None = None) -> str:
    """``text`` with the catalogue's sentences found in it translated into ``lang`` (the process's by default).

    For texts that travel in English through the stores and the logs and are shown later (an alarm action's
    refusal reason, joined with the alarm id: ``"<id>: priority-1 (critical) alarms cannot be shelved"``):
    the reasons are msgids marked ``N_`` where they are written, translated where a person reads them.
    Only sentences of three words or more are looked for (``"no"`` must not turn inside ``"no such user"``).
    """
    pattern, pairs = _phrases(_current if lang is None else parse_lang(lang))
    if pattern is None or not text:
        return text
    return pattern.sub(lambda m: pairs[m.group(0)], text)
