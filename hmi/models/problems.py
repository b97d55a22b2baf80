"""The layouts file's problems in the console's language (:mod:`hmi.models.layouts`, :mod:`hmi.models.tiles`).

    city.yaml:12: view 'camras': unknown key 'colums' (did you mean 'columns'?)         English (the msgids)
    city.yaml:12: vue 'camras': clé inconnue 'colums' (vouliez-vous dire 'columns'?)   French

Each message is a msgid formatted after translation (``_("unknown key {key!r}{hint}").format(...)``); the
did-you-mean hint comes from the configuration's one matcher (:func:`scada.config.yamlsource.did_you_mean`),
its words translated here.
"""

from __future__ import annotations

from collections.abc import Iterable

from scada.config.yamlsource import did_you_mean
from scada.i18n import _


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'cameras'?)`` in the console's language, or "" when nothing is close."""
    hint = did_you_mean(word, list(choices))
    return hint.replace("did you mean", _("did you mean"))
