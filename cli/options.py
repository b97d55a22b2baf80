"""Options every data-using subcommand spells the same way, and how they resolve.

``--data-dir`` and ``--city`` follow :mod:`scada.datadir` (``--data-dir`` > ``$SCADA_DATA_DIR`` >
``scada-data``; the city folder under it); time ranges are ``--from``/``--to``; ``--csv`` writes CSV;
``--format`` chooses the printed form; ``--lang`` (before the command: ``scada --lang en run``, or
``$SCADA_LANG``) the language of messages and numbers, else the site's (tags.yaml ``lang:``). Older
spellings stay as aliases where a test or a document uses them (``--since``/``--until``,
``--start``/``--end``, ``--json``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scada.datadir import ENV_DATA_DIR, DataDirBusy, DataDirError, DataDirLock, resolve
from scada.i18n import LANGUAGES, Lang, parse_lang, set_language

ENV_LANG = "SCADA_LANG"  # how ``--lang`` reaches the processes ``scada run`` starts (server, console)


def add_lang(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=LANGUAGES, default=None,
                        help=f"language of messages, numbers and the console (default ${ENV_LANG}, else the "
                             "site's: tags.yaml lang:)")


def chosen_lang(args: argparse.Namespace | None = None) -> Lang | None:
    """``--lang``, else ``$SCADA_LANG``, else None (the site's language applies)."""
    asked = getattr(args, "lang", None) or os.environ.get(ENV_LANG)
    return parse_lang(asked) if asked else None


def use_lang(lang: str | None) -> None:
    """``--lang`` for this process and the ones it starts (the environment carries it to them)."""
    if lang:
        os.environ[ENV_LANG] = set_language(lang)


def add_data_dir(parser: argparse.ArgumentParser, city: bool = True) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"data root (default ${ENV_DATA_DIR}, else scada-data)")
    if city:
        parser.add_argument("--city", default=None,
                            help="city folder under the data root (demo, dijon...; default: the data root itself "
                                 "if an instance lives there, else its only city folder)")


def instance(args: argparse.Namespace) -> Path:
    """The instance folder named by ``--data-dir`` / ``--city`` (DataDirError if ambiguous)."""
    return resolve(getattr(args, "data_dir", None), getattr(args, "city", None))


def lock(path: Path, args: argparse.Namespace, prog: str) -> DataDirLock | None:
    """Lock ``path`` for this command; None (message printed) when another instance holds it."""
    try:
        return DataDirLock.acquire(path, getattr(args, "command_line", prog))
    except DataDirBusy as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return None


def fail(prog: str, exc: DataDirError | OSError) -> int:
    print(f"{prog}: {exc}", file=sys.stderr)
    return 2
