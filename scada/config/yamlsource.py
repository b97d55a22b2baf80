"""YAML with line marks.

Configuration files are parsed with ruamel.yaml's round-trip loader, which keeps the line of
every key and list item. Validation errors carry a *location path* such as
``("templates", "junction", "tags", 3, "type")``; :func:`line_of` walks the parsed tree along that
path and returns the 1-based line of the deepest node it can find, so every problem prints as
``tags.yaml:42: ...`` even when it is found long after parsing.

Parsing is the slow part of a configuration check (ruamel's round-trip loader: ~80 ms for the demo's
tags.yaml or commands.yaml), and a reload checks every file again although an engineer usually changed
one. So parsed trees are kept by the SHA-256 of the file's bytes:

    bytes ──sha256──► known? ── yes ──► a fresh copy of the tree (unpickled: ~1-7 ms, line marks kept)
                         └──── no ───► parse (line marks) ──► kept (the newest _PARSED_MAX files)

A changed file has other bytes, so it is parsed and validated again; only the parse of identical bytes is
skipped (the checks on the tree always run). Each caller gets its own copy, so a caller that changed its
tree could not change what the next one reads. Files that do not parse are not kept (their problems are
found again, the same).

A file that does not parse gives one problem in the process's language (:mod:`scada.i18n`), as the layouts'
problems do: ``tags.yaml:3: erreur de syntaxe YAML : ',' ou '}' attendu, trouvé ':'``. ruamel's own
description of the usual mistakes is a msgid of the catalogue (:data:`_SYNTAX`, its English as ruamel writes
it, the token it found translated too: ``'<stream end>'`` → « la fin du fichier »); a description the table
does not know is shown as ruamel wrote it.
"""

from __future__ import annotations

import difflib
import hashlib
import pickle
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from scada.errors import ConfigProblem
from scada.i18n import N_, _

Loc = Sequence[str | int]

#: ruamel's descriptions of the usual syntax mistakes (its English is the msgid; ``{got}``: what it found,
#: ``{closing}``: the bracket a flow collection lacks, a placeholder so that no msgid holds a lone brace)
_SYNTAX: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), msgid) for pattern, msgid in (
    (r"mapping values are not allowed here", N_("mapping values are not allowed here")),
    (r"could not find expected ':'", N_("could not find expected ':'")),
    (r"found character (?P<got>'.+') that cannot start any token",
     N_("found character {got} that cannot start any token")),
    (r"expected <block end>, but found (?P<got>.+)", N_("expected <block end>, but found {got}")),
    (r"found unexpected end of stream", N_("found unexpected end of stream")),
    (r"expected ',' or (?P<closing>'[\]}]'), but got (?P<got>.+)", N_("expected ',' or {closing}, but got {got}")),
    (r"found undefined alias (?P<got>'.+')", N_("found undefined alias {got}")),
))
#: the tokens ruamel names in those descriptions (anything else, a character, is shown as it is)
_TOKENS = {"'<stream end>'": N_("'<stream end>'"), "'<scalar>'": N_("'<scalar>'"),
           "'<block mapping start>'": N_("'<block mapping start>'"),
           "'<block sequence start>'": N_("'<block sequence start>'"), "'<block end>'": N_("'<block end>'")}


def syntax_problem(problem: str) -> str:
    """ruamel's description of a syntax error in the process's language (as it is when the table lacks it)."""
    for pattern, msgid in _SYNTAX:
        m = pattern.fullmatch(problem)
        if m is not None:
            got = m.groupdict().get("got") or ""
            # replace, not str.format: what ruamel found may be a brace
            return _(msgid).replace("{closing}", m.groupdict().get("closing") or "").replace(
                "{got}", _(_TOKENS[got]) if got in _TOKENS else got)
    return problem


#: How many parsed files are kept (a city's tags, alarms, commands, crews and intake files, and a few
#: earlier versions of each: a reload that is refused is usually followed by one of the previous files).
_PARSED_MAX = 32
#: SHA-256 of a file's bytes → its parsed tree, pickled (pickle keeps ruamel's line marks; unpickling gives
#: each caller its own tree). Bytes, not path: the same bytes parse to the same tree wherever they are.
_parsed: OrderedDict[bytes, bytes] = OrderedDict()
_parsed_lock = threading.Lock()  # a reload checks its candidate in a worker thread


def load_yaml(path: Path) -> tuple[Any, list[ConfigProblem]]:
    """Parse ``path``; return (tree, problems). On a syntax error the tree is None.

    Bytes parsed before (the same content, any path) are not parsed again: the tree comes from the parse
    cache (module docstring), as a fresh copy.
    """
    try:
        data = path.read_bytes()
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text's newlines
    except FileNotFoundError:
        return None, [ConfigProblem(str(path), 0, "", _("file not found"))]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigProblem(str(path), 0, "", _("cannot read file, got {error}").format(error=exc))]
    key = hashlib.sha256(data).digest()
    with _parsed_lock:
        kept = _parsed.get(key)
        if kept is not None:
            _parsed.move_to_end(key)
    if kept is not None:
        return pickle.loads(kept), []  # noqa: S301 - our own pickle of our own parse, never read from outside
    tree, problems = _parse(path, text)
    if tree is not None:
        try:
            kept = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
            kept = None  # a tree pickle cannot copy is simply not kept: the next read parses it again
        if kept is not None:
            with _parsed_lock:
                _parsed[key] = kept
                while len(_parsed) > _PARSED_MAX:
                    _parsed.popitem(last=False)
    return tree, problems


def _parse(path: Path, text: str) -> tuple[Any, list[ConfigProblem]]:
    """ruamel's round-trip parse of ``text`` (read from ``path``), every failure as a problem with its line."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        key = _dup_key_name(exc)
        first = _first_definition(text, exc, key)
        what = _("duplicate key {key!r} (first defined on line {first}); remove or rename one").format(
            key=key, first=first)
        return None, [ConfigProblem(str(path), line, "", what)]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = _("YAML syntax error: {problem}").format(problem=syntax_problem(str(exc.problem or exc.context)))
        return None, [ConfigProblem(str(path), line, "", what)]
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        return None, [ConfigProblem(str(path), 0, "", _("YAML error: {error}").format(error=exc))]
    if tree is None:
        return None, [ConfigProblem(str(path), 1, "", _("file is empty, expected a mapping of sections"))]
    return tree, []


def _first_definition(text: str, exc: DuplicateKeyError, key: str) -> int:
    """1-based line where ``key`` was first defined (0 if unknown).

    ruamel marks the start of the enclosing mapping, not the first ``key``: in a block mapping, that
    is the line between the mapping's start and the duplicate with ``key:`` at the duplicate's column.
    """
    if exc.context_mark is None:
        return 0
    start = int(exc.context_mark.line)
    if exc.problem_mark is None:
        return start + 1
    col = int(exc.problem_mark.column)
    lines = text.splitlines()
    pattern = re.compile(re.escape(key) + r"\s*:")
    for n in range(start, min(exc.problem_mark.line, len(lines))):
        if lines[n][:col].strip() in ("", "-") and pattern.match(lines[n], col):
            return n + 1
    return start + 1  # a flow mapping: its start


def _dup_key_name(exc: DuplicateKeyError) -> str:
    problem = str(exc.problem or "")
    # ruamel says: found duplicate key "name" with value ...
    if '"' in problem:
        return problem.split('"')[1]
    return problem


def line_of(tree: Any, loc: Loc) -> int:
    """1-based line of the deepest node reachable along ``loc`` (0 if none)."""
    line = 0
    node = tree
    if isinstance(node, (CommentedMap, CommentedSeq)) and node.lc.line is not None:
        line = node.lc.line + 1
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                kl = node.lc.key(part)
                if kl is not None:
                    line = kl[0] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                il = node.lc.item(part)
                if il is not None:
                    line = il[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def did_you_mean(word: str, choices: list[str] | set[str] | Any) -> str:
    """`` (did you mean 'fast'?)`` when a close match exists, else an empty string.

    A word that begins exactly one choice also matches (``admin`` → ``administrator``): an
    abbreviation is too short for the similarity ratio but no less clear.
    """
    names = [str(c) for c in choices]
    match = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    if not match and len(str(word)) >= 3:
        match = [n for n in names if n.startswith(str(word))]
    return f" (did you mean {match[0]!r}?)" if len(match) == 1 else ""


def one_of(choices: list[str] | Any) -> str:
    return ", ".join(str(c) for c in choices)
