"""``scada users``: manage accounts and roles (no default account, no default password).

    scada users add NAME --role operator        (password asked twice, or from --password-env VAR)
    scada users list                            (with "must change password" and lock-outs)
    scada users passwd NAME
    scada users role NAME supervisor
    scada users disable NAME | enable NAME | remove NAME
    scada users unlock NAME                     lift NAME's login lock-out

The database is ``users.sqlite`` in the server's data folder (``--data-dir``, else ``$SCADA_DATA_DIR``,
else ``scada-data``; ``--city`` or the only city folder there, as in :mod:`scada.datadir`).

A running server sees every change at once: a password change, a role change, a disable or a removal
moves the account's generation in the store, which the server checks on every request, so the
account's sessions end at the next request (401), exactly as when the change is made through the API.
The login throttle's state lives in the same database, so ``unlock`` reaches a running server too.

Every change is recorded in the server's audit trail (``audit.sqlite``, configuration_change, source
``cli@<host>``, user = the operating-system account) and in the alarm journal (``journal.sqlite``), as
the API's changes are.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cli.options import add_data_dir, instance
from scada.alarms.states import Event
from scada.datadir import DataDirError
from scada.errors import StorageError
from scada.journal import Journal, JournalEntry
from scada.throttle import LoginThrottle
from scada.users import ROLES, UserError, UserStore
from server.audit import AuditTrail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    sub.add_parser("list", help="list accounts")
    pw = sub.add_parser("passwd", help="change a password (ends the account's sessions)")
    pw.add_argument("name")
    pw.add_argument("--password-env", metavar="VAR")
    role = sub.add_parser("role", help="change a role (ends the account's sessions)")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    for action, what in (("disable", "disable an account (ends its sessions)"), ("enable", "enable an account"),
                         ("remove", "remove an account (ends its sessions)"),
                         ("unlock", "lift an account's login lock-out")):
        sub.add_parser(action, help=what).add_argument("name")


def _password(args: argparse.Namespace) -> str:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise UserError(f"environment variable {args.password_env} is not set or empty")
        return value
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask the password: use --password-env VAR")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise UserError("the two passwords differ")
    return first


def _record(data: Path, action: str, target: str, detail: str, **extra: object) -> None:
    """The change in the audit trail and the alarm journal, as the API records its own; a store that cannot
    be written is reported, the change itself is done."""
    who = getpass.getuser()
    source = f"cli@{socket.gethostname()}"
    kind = "access_control" if action == "unlocked" else "configuration_change"
    try:
        trail = AuditTrail(data / "audit.sqlite")
        try:
            trail.record(kind, f"user_{action}", "ok", user=who, source=source, target=target, tool="scada users",
                         **extra)
        finally:
            trail.close()
        with Journal(data / "journal.sqlite") as journal:
            journal.append([JournalEntry(time.time_ns(), Event.CONFIG_CHANGE, user=who, comment=source,
                                         detail=f"scada users: {detail}"[:2000])])
    except (OSError, sqlite3.Error, StorageError) as exc:
        print(f"scada users: warning: the change is done but could not be recorded: {exc}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    try:
        data = instance(args)
    except DataDirError as exc:
        print(f"scada users: {exc}", file=sys.stderr)
        return 2
    store = UserStore(data / "users.sqlite")
    try:
        if args.action == "add":
            user = store.add(args.name, args.role, _password(args))
            print(f"created {user.name} ({user.role})")
            _record(data, "added", user.name, f"user {user.name!r} added ({user.role})", role=user.role)
        elif args.action == "list":
            throttle = LoginThrottle(store)
            for u in store.list():
                created = datetime.fromtimestamp(u.created_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
                notes = [*(["must change password"] if u.must_change else []),
                         *([f"locked {lock:.0f} s"] if (lock := throttle.locked_for(u.name)) > 0 else [])]
                print(f"{u.name:<24} {u.role:<14} {'disabled' if u.disabled else 'enabled':<9} created {created} UTC"
                      + (f"  ({', '.join(notes)})" if notes else ""))
        elif args.action == "passwd":
            store.set_password(args.name, _password(args))
            print(f"password of {args.name} changed (its sessions ended)")
            _record(data, "changed", args.name, f"user {args.name!r} password set", password_changed=True)
        elif args.action == "role":
            store.set_role(args.name, args.role)
            print(f"{args.name} is now {args.role} (its sessions ended)")
            _record(data, "changed", args.name, f"user {args.name!r} changed: role {args.role}", role=args.role)
        elif args.action in ("disable", "enable"):
            store.set_disabled(args.name, args.action == "disable")
            print(f"{args.name} {args.action}d" + (" (its sessions ended)" if args.action == "disable" else ""))
            _record(data, "changed", args.name, f"user {args.name!r} {args.action}d",
                    disabled=args.action == "disable")
        elif args.action == "remove":
            store.remove(args.name)
            print(f"{args.name} removed")
            _record(data, "removed", args.name, f"user {args.name!r} removed")
        elif args.action == "unlock":
            if store.get(args.name) is None:
                raise UserError(f"unknown user {args.name!r}")
            was = LoginThrottle(store).unlock(args.name)
            print(f"{args.name} unlocked" if was else f"{args.name} was not locked (failures forgotten)")
            _record(data, "unlocked", args.name, f"user {args.name!r} login lock-out lifted", was_locked=was)
    except UserError as exc:
        print(f"scada users {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
