"""A YAML file that does not parse is told in the process's language (scada.config.yamlsource).

Each usual mistake is written to a file and loaded in French, then in English: the French line has the same
``file:line`` and none of the English words of its English line (what stays is data: the file name, quoted
characters, the key); the English line is ruamel's own description, unchanged (the corpus tests read it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from scada.config.yamlsource import _SYNTAX, _TOKENS, load_yaml
from scada.i18n import get_language, gettext_in, set_language

#: (file text, the French line without "file:") — one per description of the table, plus the file-level problems
CASES = [
    ("a: b: c\n", "1: erreur de syntaxe YAML : deux-points inattendu ici (un texte qui contient « : » s'écrit "
                  "entre guillemets)"),
    ("a: 1\nb\nc: 2\n", "3: erreur de syntaxe YAML : le ':' attendu après une clé est absent"),
    ("a:\n\tb: 1\n", "2: erreur de syntaxe YAML : caractère '\\t' qui ne peut pas commencer une valeur (une "
                     "tabulation pour indenter, ou un texte à mettre entre guillemets)"),
    ("a:\n  b: 1\n c: 2\n", "3: erreur de syntaxe YAML : l'indentation ne correspond pas aux lignes au-dessus, "
                            "trouvé une clé mal alignée (début d'un bloc)"),
    ("a: 'x\n", "2: erreur de syntaxe YAML : fin de fichier inattendue (un guillemet non fermé ?)"),
    ("a: [1, 2\n", "2: erreur de syntaxe YAML : ',' ou ']' attendu (un crochet ou une accolade non fermé ?), "
                   "trouvé la fin du fichier"),
    ("a: {b: 1\n", "2: erreur de syntaxe YAML : ',' ou '}' attendu (un crochet ou une accolade non fermé ?), "
                   "trouvé la fin du fichier"),
    ("a: *x\n", "1: erreur de syntaxe YAML : alias 'x' vers une ancre qui n'est pas définie"),
    ("a: 1\na: 2\n", "2: clé 'a' en double (définie d'abord ligne 1) ; supprimez ou renommez l'une des deux"),
    ("", "1: fichier vide, une table de sections était attendue"),
]
#: words both languages write the same
SHARED = frozenset({"yaml", "alias", "sections"})
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_WORD = re.compile(r"[A-Za-zÀ-ÿ]{3,}")


@pytest.fixture(autouse=True)
def _restore_language() -> Iterator[None]:
    before = get_language()
    yield
    set_language(before)


def _line(path: Path, lang: str) -> str:
    set_language(lang)
    _tree, problems = load_yaml(path)
    assert len(problems) == 1, problems
    return str(problems[0])


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(_QUOTED.sub(" ", text))}


@pytest.mark.parametrize(("text", "french"), CASES, ids=[c[1].split(": ", 1)[1][:28] for c in CASES])
def test_a_broken_yaml_file_reads_in_french(tmp_path: Path, text: str, french: str) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(text, encoding="utf-8")
    fr, en = _line(path, "fr"), _line(path, "en")
    assert fr == f"{path}:{french}"
    english = _words(en.removeprefix(str(path))) - SHARED  # (the file name is data)
    assert english and not english & _words(fr.removeprefix(str(path))), (en, fr)


def test_the_english_is_the_parsers_own(tmp_path: Path) -> None:
    """In English the line is what it always was (ruamel's words): tests and engineers' searches still match."""
    path = tmp_path / "commands.yaml"
    path.write_text("limits: {window: [120s\n", encoding="utf-8")
    assert _line(path, "en") == f"{path}:2: YAML syntax error: expected ',' or ']', but got '<stream end>'"
    assert _line(tmp_path / "missing.yaml", "en").endswith(":0: file not found")
    assert _line(tmp_path / "missing.yaml", "fr").endswith(":0: fichier introuvable")


def test_every_description_and_token_of_the_table_has_its_french() -> None:
    for _pattern, msgid in _SYNTAX:
        assert gettext_in("fr", msgid) != msgid, msgid
    for token, msgid in _TOKENS.items():
        assert gettext_in("fr", msgid) != token, token


def test_a_description_the_table_does_not_know_stays_as_the_parser_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("%x\n", encoding="utf-8")
    line = _line(path, "fr")
    assert line.startswith(f"{path}:2: erreur de syntaxe YAML : expected '<document start>'"), line
