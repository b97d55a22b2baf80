"""``scada audit``: tools for the command audit log.

    scada audit verify [--log PATH] [--key-env VAR]   check the hash chain and the head anchor;
                                                      exit 0 intact, 1 broken (first bad line printed)
    scada audit show [--log PATH] [-n N] [--target ID] print the last entries, one line each
    scada audit vocabulary [--commands PATH] [--tags PATH]  check commands.yaml against the city and list
                                                      every write the system can issue (SNMP allow-list)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from pathlib import Path

from failsafe.audit import KEY_ENV, AuditLog, verify_file

DEFAULT_LOG = "scada-data/failsafe/audit.log"  # <server data_dir>/failsafe/audit.log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("verify", help="check the audit log's hash chain (tamper evidence)")
    v.add_argument("--log", default=os.environ.get("SCADA_AUDIT_LOG", DEFAULT_LOG),
                   help=f"audit log path (default $SCADA_AUDIT_LOG or {DEFAULT_LOG})")
    v.add_argument("--key-env", default=KEY_ENV, help=f"environment variable holding the HMAC key (default {KEY_ENV})")
    s = sub.add_parser("show", help="print the last audit entries")
    s.add_argument("--log", default=os.environ.get("SCADA_AUDIT_LOG", DEFAULT_LOG))
    s.add_argument("-n", type=int, default=20, help="how many entries (default 20)")
    s.add_argument("--target", help="only entries about this equipment")
    s.add_argument("--json", action="store_true", help="raw JSON lines")
    c = sub.add_parser("vocabulary", help="check commands.yaml and list every write the system can issue")
    c.add_argument("--commands", default="commands.yaml")
    c.add_argument("--tags", default="tags.yaml")
    c.add_argument("--alarms", default="alarms.yaml")


def main(args: argparse.Namespace) -> int:
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
        if args.json:
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
