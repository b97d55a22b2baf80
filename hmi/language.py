"""The console's language: our texts through gettext (:mod:`scada.i18n`), Qt's own through Qt's catalogue.

    our widgets' texts        _("Log out")            scada/locale/<lang>/LC_MESSAGES/messages.po
    Qt's standard texts       OK · Cancel · Yes · No  qtbase_<lang>.qm shipped with PyQt6 (QLibraryInfo)
    (button boxes, message boxes, file and print dialogs)

The process has one language (``scada --lang``, ``$SCADA_LANG``, else French: :func:`scada.i18n.get_language`);
:func:`use_qt_translations` installs Qt's catalogue for it once, before the window builds its widgets,
and takes it out again when the language changes (a test switching between French and English).
English needs no catalogue: Qt's source texts are English.
"""

from __future__ import annotations

from PyQt6.QtCore import QCoreApplication, QLibraryInfo, QTranslator

from scada.i18n import SOURCE_LANGUAGE, Lang, get_language

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
