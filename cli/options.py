"""Options every data-using subcommand spells the same way, and how they resolve.

``--data-dir`` and ``--city`` follow :mod:`scada.datadir` (``--data-dir`` > ``$SCADA_DATA_DIR`` >
``scada-data``; the city folder under it); time ranges are ``--from``/``--to``; ``--csv`` writes CSV;
``--format`` chooses the printed form. Older spellings stay as aliases where a test or a document
uses them (``--since``/``--until``, ``--start``/``--end``, ``--json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scada.datadir import ENV_DATA_DIR, DataDirBusy, DataDirError, DataDirLock, resolve


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
