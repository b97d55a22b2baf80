"""The gettext catalogues (``<lang>/LC_MESSAGES/messages.po``, package data) and what feeds them.

The catalogues are read at run time by :mod:`scada.i18n`; :mod:`scada.locale.yaml_texts` is the Babel
extractor for the texts the product shows that live in YAML rather than in Python (babel.cfg).
"""
