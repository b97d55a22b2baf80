"""The console's language: our texts through gettext (:mod:`scada.i18n`), Qt's own through Qt's catalogue.

    our widgets' texts        _("Log out")            scada/locale/<lang>/LC_MESSAGES/messages.po
    Qt's standard texts       OK · Cancel · Yes · No  qtbase_<lang>.qm shipped with PyQt6 (QLibraryInfo)
    (button boxes, message boxes, file and print dialogs)

The process has one language (:func:`scada.i18n.get_language`). Which one, for ``scada hmi``:

    scada --lang fr|en, $SCADA_LANG ──────────────────────────────► that one (the operator chose)
    else: start in French ── log in ── GET /config "lang" ─────────► the server's (its setting, else the
          (the login dialog)            follow_site()                site's tags.yaml lang), BEFORE the
                                                                     window is built: every widget takes
                                                                     its texts from the start

A widget's texts are set when it is built, so the language is decided before the window exists rather than
retranslated after. The login dialog shown before that is in French (the first language); a later login
(switch user, a server restart) talks to the same site. :func:`use_qt_translations` installs Qt's catalogue
for the process's language once, before the window builds its widgets, and takes it out again when the
language changes (a test switching between French and English). English needs no catalogue: Qt's source
texts are English.
"""

from __future__ import annotations

import logging
import time

from PyQt6.QtCore import QCoreApplication, QEventLoop, QLibraryInfo, QTranslator

from hmi.console import ConsoleModel
from scada.i18n import SOURCE_LANGUAGE, Lang, get_language, set_language

#: how long the console waits for GET /config after the login before building its window in the language it has
SITE_WAIT_S = 10.0

log = logging.getLogger(__name__)

_installed: list[tuple[Lang, QTranslator]] = []  # at most one: (its language, the translator in the application)


def use_qt_translations() -> bool:
    """Qt's catalogue for the process's language installed in the application; False when Qt has none for it
    (its standard buttons then stay English) or there is no application yet."""
    app = QCoreApplication.instance()
    lang = get_language()
    if app is None:
        return False
    if _installed and _installed[0][0] == lang:
        return True
    while _installed:  # another language was installed before: out with it
        QCoreApplication.removeTranslator(_installed.pop()[1])
    if lang == SOURCE_LANGUAGE:
        return True
    translator = QTranslator(app)
    if not translator.load(f"qtbase_{lang}", QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath)):
        return False
    QCoreApplication.installTranslator(translator)
    _installed.append((lang, translator))
    return True


def follow_site(console: ConsoleModel, timeout_s: float = SITE_WAIT_S) -> Lang:
    """After the login, before the window: make the server's language (``GET /config``, asked by the login) the
    process's, with Qt's catalogue for it. Without an answer within ``timeout_s`` (or a language the console has
    no catalogue for) the console keeps its own and says so in its log. Returns the language in force."""
    app = QCoreApplication.instance()
    deadline = time.monotonic() + timeout_s
    while not console.config_info and time.monotonic() < deadline:
        if app is not None:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        else:
            time.sleep(0.01)
    lang = console.site_language()
    if not console.config_info:
        log.warning("console: no answer to GET /config within %.0f s: keeping %s", timeout_s, get_language())
    elif lang is None:
        log.warning("console: the server named no language it has a catalogue for (%r): keeping %s",
                    console.config_info.get("lang"), get_language())
    elif lang != get_language():
        set_language(lang)
        log.info("console: in %s, the language of the server at %s", lang,
                 console.bridge.url if console.bridge else "(none)")
    use_qt_translations()
    return get_language()
