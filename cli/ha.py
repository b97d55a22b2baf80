"""``scada ha``: the failover pair, through the servers' API (server.ha.routes).

    scada ha status --url URL_A --url URL_B          each server's role, who is active, lease left (GET /health,
                                                     no account needed; with --user: GET /ha, the full state)
    scada ha switchover --url URL --user sup          the active resigns its lease; the standby takes it (journalled)
    scada ha force-active --confirm-other-is-down --url URL --user sup
                                                     break-glass when etcd is lost: this server writes without a
                                                     lease (journalled, P1 while forced). Only after checking that
                                                     the other server is really down: two writers is what the
                                                     pair exists to prevent

Without ``--url`` the server of the data folder (``--data-dir``, ``--city``: its server.json) is asked. The
password comes from ``--password-env VAR`` or is asked.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from cli.options import add_data_dir, instance
from scada.datadir import DataDirError


def _common(p: argparse.ArgumentParser, user_required: bool) -> None:
    add_data_dir(p)
    p.add_argument("--url", action="append", default=[], help="a server's URL (repeat for both of the pair)")
    p.add_argument("--user", required=user_required, help="the account (supervisor or administrator for actions)")
    p.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    p.add_argument("--cafile", type=Path, help="CA bundle to verify a TLS server")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    _common(sub.add_parser("status", help="each server's role, who is active, lease left"), False)
    _common(sub.add_parser("switchover", help="the active server resigns its lease (maintenance)"), True)
    force = sub.add_parser("force-active", help="break-glass: write without a lease (etcd lost, the other down)")
    _common(force, True)
    force.add_argument("--confirm-other-is-down", action="store_true",
                       help="required: you checked that the other server of the pair is down")


def _urls(args: argparse.Namespace) -> list[str]:
    if args.url:
        return list(args.url)
    try:
        state = json.loads((instance(args) / "server.json").read_text())
    except (OSError, ValueError, DataDirError):
        return []
    return [state["url"]] if isinstance(state, dict) and isinstance(state.get("url"), str) else []


def _line(url: str, st: dict[str, Any]) -> str:
    lease = f", lease left {st['lease_left_s']:.1f} s" if st.get("lease_left_s") else ""
    active = f", active: {st['leader']}" if st.get("leader") else ", no active server known"
    return f"{url}: {st.get('name')}: {str(st.get('role')).upper()}{active}{lease}" + \
        ("" if st.get("coordinated", True) else " — etcd UNREACHABLE: nobody writes")


def main(args: argparse.Namespace) -> int:
    import httpx  # lazy: ~0.1 s to import, only when the command runs

    prog = f"scada ha {args.action}"
    urls = _urls(args)
    if not urls:
        print(f"{prog}: no server URL: give --url (or --data-dir of a running server)", file=sys.stderr)
        return 2
    if args.action == "force-active" and not args.confirm_other_is_down:
        print(f"{prog}: refused: check that the other server is down, then add --confirm-other-is-down",
              file=sys.stderr)
        return 2
    if args.action != "status" and len(urls) != 1:
        print(f"{prog}: give exactly one --url (the server to act on)", file=sys.stderr)
        return 2
    password = ""
    if args.user:
        password = os.environ.get(args.password_env, "") if args.password_env else \
            getpass.getpass(f"password of {args.user}: ")
    verify: Any = str(args.cafile) if args.cafile else True
    code = 0
    for url in urls:
        try:
            with httpx.Client(base_url=url, timeout=30, verify=verify) as client:
                code = max(code, _one(client, url, args, password, prog))
        except httpx.HTTPError as exc:
            print(f"{url}: unreachable ({exc})" if args.action == "status" else f"{prog}: cannot reach {url}: {exc}",
                  file=sys.stdout if args.action == "status" else sys.stderr)
            code = max(code, 1)
    return code


def _one(client: Any, url: str, args: argparse.Namespace, password: str, prog: str) -> int:
    if args.action == "status" and not args.user:
        sub = client.get("/api/v1/health").json().get("subsystems", {}).get("ha")
        print(f"{url}: {sub['status']}: {sub['detail']}" if sub else f"{url}: not part of a failover pair")
        return 0
    r = client.post("/api/v1/auth/login", json={"user": args.user, "password": password})
    if r.status_code != 200:
        print(f"{prog}: login refused: {r.json().get('why', r.text)}", file=sys.stderr)
        return 1
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    try:
        if args.action == "status":
            r = client.get("/api/v1/ha", headers=h)
        elif args.action == "switchover":
            r = client.post("/api/v1/ha/switchover", headers=h)
        else:
            r = client.post("/api/v1/ha/force-active", json={"confirm_other_is_down": True}, headers=h)
    finally:
        client.post("/api/v1/auth/logout", headers=h)
    body = r.json()
    if r.status_code != 200:
        print(f"{prog}: refused: {body.get('why', r.text)}", file=sys.stderr)
        return 1
    print(_line(url, body))
    return 0
