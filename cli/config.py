"""``scada config generate``: write a demo or full-scale city (templates + inventory + alarms)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import Progress

from scada.config.generate import SCALES, count_rows, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    gen = sub.add_parser("generate", help="write tags.yaml, alarms.yaml and inventory.csv into --out")
    gen.add_argument("--scale", choices=sorted(SCALES), default="dijon")
    gen.add_argument("--out", type=Path, default=Path("city-dijon"))
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--root", type=Path, default=Path("."), help="where the shipped tags.yaml/alarms.yaml are")


def main(args: argparse.Namespace) -> int:
    scale = SCALES[args.scale]
    with Progress() as progress:
        task = progress.add_task(f"generating {args.scale}", total=count_rows(scale))
        path = generate(args.out, args.scale, args.seed, args.root,
                        lambda n: progress.advance(task, n))
    print(f"wrote {path}, {args.out / 'alarms.yaml'}, {args.out / 'inventory.csv'}")
    return 0
