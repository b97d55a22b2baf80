"""The console's language: our texts through gettext (:mod:`scada.i18n`), Qt's own through Qt's catalogue.

    our widgets' texts        _("Log out")            scada/locale/<lang>/LC_MESSAGES/messages.po
    Qt's standard texts       OK · Cancel · Yes · No  qtbase_<lang>.qm shipped with PyQt6 (QLibraryInfo)
    (button boxes, message boxes, file and print dialogs)

The process has one language (:func:`scada.i18n.get_language`). Which one, for ``scada hmi``:

    scada --lang fr|en, $SCADA_LANG ──────────────────────────────► that one (the operator chose), for good
    else: GET /health "config.lang" (no token) ───────────────────► the login dialog in the server's language
          before_login()                                            (French when the server does not answer)
          log in ── GET /config "lang" ───────────────────────────► the server's (its setting, else the
                    follow_site()                                   site's tags.yaml lang), BEFORE the
                                                                    window is built
          later: a reload or a reconnection ── GET /config again ─► another language: the window is built
                    (hmi.console: follow_server_language)           again in it (hmi.window_host), same session

A widget's texts are set when it is built, so the language is decided before the window exists, and a change
while it runs builds a new window rather than retranslating every widget in place. :func:`use_qt_translations`
installs Qt's catalogue for the process's language once, before the window builds its widgets, and takes it out
again when the language changes. English needs no catalogue: Qt's source texts are English.
"""

from __future__ import annotations

import logging
import time

from PyQt6.QtCore import QCoreApplication, QEventLoop, QLibraryInfo, QTranslator

from hmi.bridge import wait_reply
from hmi.console import ConsoleModel
from scada.i18n import SOURCE_LANGUAGE, Lang, get_language, parse_lang

#: how long the console waits for GET /config after the login before building its window in the language it has
SITE_WAIT_S = 10.0
#: how long it waits for GET /health before showing the login dialog (a server that does not answer: French)
HEALTH_WAIT_S = 5.0

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


def before_login(console: ConsoleModel, timeout_s: float = HEALTH_WAIT_S) -> Lang:
    """Before the login dialog: the language the server speaks (the unauthenticated ``GET /health``, its
    ``config.lang``) made the process's, with Qt's catalogue for it, so that the dialog speaks it. Without an
    answer within ``timeout_s`` (the server is not up yet) or with a language the console has no catalogue for,
    the console keeps its own (French) and says so in its log. Returns the language in force."""
    if console.bridge is None:
        raise RuntimeError("console: no bridge to the server")
    r = wait_reply(console.bridge.get("/health"), timeout_s)
    config = r.data.get("config") if r.ok and isinstance(r.data, dict) else None
    said = config.get("lang") if isinstance(config, dict) else None
    try:
        lang = parse_lang(str(said or ""))
    except ValueError:
        log.warning("console: %s named no language before the login (%s): keeping %s", console.bridge.url,
                    r.why() or repr(said), console.language)
    else:
        console.use_language(lang)
    use_qt_translations()
    return console.language


def follow_site(console: ConsoleModel, timeout_s: float = SITE_WAIT_S) -> Lang:
    """After the login, before the window: make the server's language (``GET /config``, asked by the login) the
    process's, with Qt's catalogue for it, and keep following it (``console.follow_language``: a reload that
    changes it changes the console's). Without an answer within ``timeout_s`` (or a language the console has
    no catalogue for) the console keeps its own and says so in its log. Returns the language in force."""
    console.follow_language = True
    app = QCoreApplication.instance()
    deadline = time.monotonic() + timeout_s
    while not console.config_info and time.monotonic() < deadline:
        if app is not None:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        else:
            time.sleep(0.01)
    if not console.config_info:
        log.warning("console: no answer to GET /config within %.0f s: keeping %s", timeout_s, console.language)
    elif console.site_language() is None:
        log.warning("console: the server named no language it has a catalogue for (%r): keeping %s",
                    console.config_info.get("lang"), console.language)
    else:
        console.follow_server_language()  # (done already if GET /config answered after follow_language was set)
    use_qt_translations()
    return console.language
