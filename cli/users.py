"""``scada users``: manage accounts and roles (no default account, no default password).

    scada users add NAME --role operator        (password asked twice, or from --password-env VAR)
    scada users list
    scada users passwd NAME
    scada users role NAME supervisor
    scada users disable NAME | enable NAME | remove NAME

The database is ``users.sqlite`` in the server's data folder (``--data-dir``, else ``$SCADA_DATA_DIR``,
else ``scada-data``; ``--city`` or the only city folder there, as in :mod:`scada.datadir`).
A running server picks changes up at the next login (tokens of a disabled user expire on their own,
or at once when changed through the API).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime

from cli.options import add_data_dir, instance
from scada.datadir import DataDirError
from scada.users import ROLES, UserError, UserStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    sub.add_parser("list", help="list accounts")
    pw = sub.add_parser("passwd", help="change a password")
    pw.add_argument("name")
    pw.add_argument("--password-env", metavar="VAR")
    role = sub.add_parser("role", help="change a role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    for action in ("disable", "enable", "remove"):
        sub.add_parser(action, help=f"{action} an account").add_argument("name")


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
        elif args.action == "list":
            for u in store.list():
                created = datetime.fromtimestamp(u.created_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
                print(f"{u.name:<24} {u.role:<14} {'disabled' if u.disabled else 'enabled':<9} created {created} UTC")
        elif args.action == "passwd":
            store.set_password(args.name, _password(args))
            print(f"password of {args.name} changed")
        elif args.action == "role":
            store.set_role(args.name, args.role)
            print(f"{args.name} is now {args.role}")
        elif args.action in ("disable", "enable"):
            store.set_disabled(args.name, args.action == "disable")
            print(f"{args.name} {args.action}d")
        elif args.action == "remove":
            store.remove(args.name)
            print(f"{args.name} removed")
    except UserError as exc:
        print(f"scada users {args.action}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
