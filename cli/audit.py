"""``scada audit``: tools for the command audit log.

    scada audit verify [--log DIR] [--key-env VAR] [--key-file PATH]
                        check every segment's chain and the head anchor on a snapshot taken under the
                        writer's lock (a live log is consistent), with the key ($SCADA_AUDIT_KEY, else
                        --key-file, else <data>/keys/audit.key) whose fingerprint it prints;
                        exit 0 intact, 1 broken (first bad line printed), 2 no log or no key
    scada audit show [--log DIR] [-n N] [--target ID] [--format text|json]
                        print the newest entries, one line each (read through the log's index: only the
                        lines printed, never the whole history; the log itself is not written)
    scada audit vocabulary [--commands PATH] [--tags PATH]  check commands.yaml against the city and list
                                                      every write the system can issue (SNMP allow-list)

The log is ``--log``, else ``$SCADA_AUDIT_LOG``, else ``failsafe/audit/`` of the server's data folder,
found as every command finds it (``--data-dir``, ``$SCADA_DATA_DIR``, ``scada-data``; ``--city``, or the
only city folder there: :mod:`scada.datadir`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cli.options import add_data_dir, instance
from failsafe.audit import (
    KEY_ENV,
    KEY_FILE,
    LOG_DIR_NAME,
    STATE_DIR,
    AuditIndex,
    AuditKeyError,
    load_key,
    verify_file,
)
from scada.config.loader import check_city
from scada.datadir import DataDirError, keys_dir

LOG_ENV = "SCADA_AUDIT_LOG"
LOG_IN_DATA_DIR = Path(STATE_DIR) / LOG_DIR_NAME  # failsafe/audit: where the server's fail-safe layer writes it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    v = sub.add_parser("verify", help="check the audit log's hash chain (tamper evidence)")
    log_help = f"audit log path (default ${LOG_ENV}, else {LOG_IN_DATA_DIR} of the data folder)"
    v.add_argument("--log", default=None, help=log_help)
    add_data_dir(v)
    v.add_argument("--key-env", default=KEY_ENV, help=f"environment variable holding the HMAC key (default {KEY_ENV})")
    v.add_argument("--key-file", type=Path, default=None,
                   help=f"the key file when the variable is not set (default keys/{KEY_FILE} of the data folder)")
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
        return _verify(args)
    if args.action == "show":
        return _show(args)
    return _vocabulary(args)


def _verify(args: argparse.Namespace) -> int:
    """Exit 0 intact, 1 broken, 2 when there is no log or no key to check it with."""
    try:
        key_file = args.key_file or keys_dir(instance(args)) / KEY_FILE
    except DataDirError:  # --log given outside any data folder, and no --key-file: only the variable can help
        key_file = None
    try:
        key = load_key(key_file, args.key_env)
    except (AuditKeyError, OSError) as exc:
        print(f"scada audit verify: {exc}", file=sys.stderr)
        return 2
    if key is None:
        print(f"scada audit verify: no key: set ${args.key_env} or give --key-file (the log is always keyed; "
              f"looked for {key_file or 'a data folder'})", file=sys.stderr)
        return 2
    report = verify_file(Path(args.log), key.key)
    print(report)
    print(f"key: {key.source} (fingerprint {key.fingerprint})")
    if report.missing:
        return 2
    return 0 if report.ok else 1


def _show(args: argparse.Namespace) -> int:
    path = Path(args.log)
    if not path.is_dir():
        print(f"{path}: no audit log", file=sys.stderr)
        return 1
    last = list(reversed(AuditIndex(path).latest(args.target, max(1, args.n))))
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
    # lazy: only `audit vocabulary` needs the vocabulary checker; `audit verify` stays light
    from failsafe.vocabulary import SNMP_SET_ALLOW_LIST, check_vocabulary, enumerate_writes

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
