"""``scada audit``: tools for the command audit log.

    scada audit verify [--log PATH] [--key-env VAR]   check the hash chain and the head anchor;
                                                      exit 0 intact, 1 broken (first bad line printed)
    scada audit show [--log PATH] [-n N] [--target ID] [--format text|json]
                                                      print the last entries, one line each
    scada audit vocabulary [--commands PATH] [--tags PATH]  check commands.yaml against the city and list
                                                      every write the system can issue (SNMP allow-list)

The log is ``--log``, else ``$SCADA_AUDIT_LOG``, else ``failsafe/audit.log`` of the server's data folder,
found as every command finds it (``--data-dir``, ``$SCADA_DATA_DIR``, ``scada-data``; ``--city``, or the
only city folder there: :mod:`scada.datadir`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from pathlib import Path

from cli.options import add_data_dir, instance
from failsafe.audit import KEY_ENV, AuditLog, verify_file
from scada.datadir import DataDirError

LOG_ENV = "SCADA_AUDIT_LOG"
LOG_IN_DATA_DIR = Path("failsafe") / "audit.log"  # where the server's fail-safe component writes it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("verify", help="check the audit log's hash chain (tamper evidence)")
    log_help = f"audit log path (default ${LOG_ENV}, else {LOG_IN_DATA_DIR} of the data folder)"
    v.add_argument("--log", default=None, help=log_help)
    add_data_dir(v)
    v.add_argument("--key-env", default=KEY_ENV, help=f"environment variable holding the HMAC key (default {KEY_ENV})")
    s = sub.add_parser("show", help="print the last audit entries")
    s.add_argument("--log", default=None, help=log_help)
    add_data_dir(s)
    s.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    s.add_argument("--target", help="only entries about this equipment")
    s.add_argument("--format", choices=["text", "json"], default="text", help="one line each (default) or raw JSON")
    s.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    c = sub.add_parser("vocabulary", help="check commands.yaml and list every write the system can issue")
    c.add_argument("--commands", default="commands.yaml")
    c.add_argument("--tags", default="tags.yaml")
    c.add_argument("--alarms", default="alarms.yaml")


def log_path(args: argparse.Namespace) -> Path:
    """``--log``, else ``$SCADA_AUDIT_LOG``, else the data folder's (DataDirError if ambiguous)."""
    given = args.log or os.environ.get(LOG_ENV)
    return Path(given) if given else instance(args) / LOG_IN_DATA_DIR


def main(args: argparse.Namespace) -> int:
    if args.action in ("verify", "show"):
        try:
            args.log = log_path(args)
        except DataDirError as exc:
            print(f"scada audit {args.action}: {exc}", file=sys.stderr)
            return 2
    if args.action == "verify":
        key_text = os.environ.get(args.key_env)
        report = verify_file(Path(args.log), key_text.encode() if key_text else None)
        print(report)
        return 0 if report.ok else 1
    if args.action == "show":
        return _show(args)
    return _vocabulary(args)


def _show(args: argparse.Namespace) -> int:
    path = Path(args.log)
    if not path.exists():
        print(f"{path}: no audit log", file=sys.stderr)
        return 1
    last: deque[dict[str, object]] = deque(maxlen=max(1, args.n))
    for entry in AuditLog(path, fsync=False).entries():
        target = entry.get("target")
        if args.target and not (target == args.target or (isinstance(target, list) and args.target in target)):
            continue
        last.append(entry)
    for e in last:
        if args.format == "json":
            print(json.dumps(e, ensure_ascii=False))
            continue
        target = e.get("target")
        target_text = ",".join(target) if isinstance(target, list) else str(target or "")
        parts = [f"#{e['seq']}", str(e.get("kind")), target_text, str(e.get("verb") or ""),
                 f"user={e.get('user')}" if e.get("user") else "",
                 f"approver={e.get('approver')}" if e.get("approver") else "",
                 f"outcome={e.get('outcome')}" if e.get("outcome") else "",
                 str(e.get("reason") or "")]
        print(" ".join(p for p in parts if p))
    return 0


def _vocabulary(args: argparse.Namespace) -> int:
    from failsafe.vocabulary import SNMP_SET_ALLOW_LIST, check_vocabulary, enumerate_writes
    from scada.config.loader import check_city

    city, problems = check_city(args.tags, args.alarms)
    if city is None:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    vocab, vproblems = check_vocabulary(args.commands, city)
    if vocab is None:
        for p in vproblems:
            print(p, file=sys.stderr)
        print(f"{len(vproblems)} problem(s) in {args.commands}", file=sys.stderr)
        return 1
    bad = 0
    for w in enumerate_writes(vocab, city):
        flag = ""
        if w.protocol == "snmp" and w.address not in SNMP_SET_ALLOW_LIST:
            flag, bad = "  OUTSIDE THE ALLOW-LIST", bad + 1
        print(f"{w.type:<18} {w.verb or '(heartbeat)':<20} {w.phase:<9} {w.tag:<24} {w.protocol:<12} {w.address}{flag}")
    return 1 if bad else 0
