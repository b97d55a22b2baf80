"""``scada check``: validate the configuration and print every problem (exit 1 if any)."""

from __future__ import annotations

import argparse
import sys
import time

from scada.config import check_city


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tags", nargs="?", default="tags.yaml", help="tags file (default tags.yaml)")
    parser.add_argument("alarms", nargs="?", default="alarms.yaml", help="alarms file (default alarms.yaml)")


def main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    config, problems = check_city(args.tags, args.alarms)
    if problems or config is None:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} problem(s); the configuration cannot be used", file=sys.stderr)
        return 1
    took = time.perf_counter() - start
    print(f"ok: {len(config.equipment)} equipment, {len(config.devices)} devices, {len(config.tags)} tags, "
          f"{len(config.alarm_rules)} alarm rules ({took:.2f} s)")
    return 0
