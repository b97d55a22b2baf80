"""``scada reload``: ask a running server to reload its configuration.

The server validates the files first, then has every component prepare its new state aside, and
applies them only if all of that worked (server.reload: prepare, then apply; a component failing to
switch rolls all of them back); every problem is printed otherwise and nothing changes. A change of
the safety configuration (commands.yaml: verbs, interlocks, compatibility matrices and layouts, the
monitor's settings) is not applied at once: the server answers that it is pending a second person's
approval and prints what changes (the diff). Two ways to ask:

* through the API (default when ``--user`` is given): ``POST /api/v1/config/reload`` as an engineer or
  administrator (password from ``--password-env VAR`` or asked); the answer lists what changed;
* by signal (default otherwise): SIGHUP to the pid in ``server.json`` of the server's data folder — only
  someone who can signal the server process can do that; the outcome is in the server log and the
  audit trail.

The data folder is found as every command finds it (``--data-dir``, ``$SCADA_DATA_DIR``, ``scada-data``;
``--city``): :mod:`scada.datadir`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from cli.options import add_data_dir, instance
from scada.datadir import DataDirError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(parser)
    parser.add_argument("--url", help="server URL (default: from <data-dir>/server.json)")
    parser.add_argument("--user", help="reload through the API as this user (engineer or administrator)")
    parser.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    parser.add_argument("--cafile", type=Path, help="CA bundle to verify a TLS server")


def _state(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((data_dir / "server.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def pending_text(body: dict[str, Any]) -> str:
    """A 202 answer: the safety configuration changes, so nothing was applied until a second person approves."""
    change = body.get("change") or {}
    deadline = change.get("deadline")
    until = time.strftime("%H:%M:%S UTC", time.gmtime(deadline)) if isinstance(deadline, (int, float)) else "?"
    lines = [f"configuration NOT applied yet: it changes the safety configuration and waits for a second person's "
             f"approval (change {change.get('id')}, expires at {until})", "safety changes:"]
    lines += [f"  {d}" for d in change.get("diff", [])]
    if change.get("summary"):
        lines.append(f"other changes: {change['summary']}")
    lines.append(f"another account with one of commands.yaml's approval.approver_roles approves it: "
                 f"POST /api/v1/config/changes/{change.get('id')}/approve (or from the console's approvals)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        data = instance(args)
    except DataDirError as exc:
        print(f"scada reload: {exc}", file=sys.stderr)
        return 2
    state = _state(data)
    if args.user is None:
        pid = state.get("pid")
        if not isinstance(pid, int):
            print(f"scada reload: no running server found in {data / 'server.json'} "
                  f"(give --data-dir, or --url and --user)", file=sys.stderr)
            return 1
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            print(f"scada reload: cannot signal server pid {pid}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"asked server pid {pid} to reload (outcome in its log and audit trail)")
        return 0
    import httpx  # lazy: only the API path needs an HTTP client (~0.1 s to import); SIGHUP does not

    url = args.url or state.get("url")
    if not url:
        print("scada reload: no server URL: give --url or --data-dir of a running server", file=sys.stderr)
        return 1
    if args.password_env:
        password = os.environ.get(args.password_env, "")
    else:
        password = getpass.getpass(f"password of {args.user}: ")
    verify: Any = str(args.cafile) if args.cafile else True
    try:
        with httpx.Client(base_url=url, timeout=120, verify=verify) as client:
            r = client.post("/api/v1/auth/login", json={"user": args.user, "password": password})
            if r.status_code != 200:
                body = r.json()
                print(f"scada reload: login refused: {body.get('why', r.text)}", file=sys.stderr)
                return 1
            token = r.json()["token"]
            r = client.post("/api/v1/config/reload", headers={"Authorization": f"Bearer {token}"})
            body = r.json()
            client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        print(f"scada reload: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if r.status_code == 202:
        print(pending_text(body))
        return 0
    if r.status_code == 200:
        changes = body.get("changes", {})
        print(f"configuration reloaded (generation {body.get('generation')}): "
              f"+{len(changes.get('devices_added', []))} / -{len(changes.get('devices_removed', []))} / "
              f"~{len(changes.get('devices_changed', []))} devices, "
              f"{changes.get('tags_before')} → {changes.get('tags_after')} tags")
        return 0
    for p in body.get("problems", []):
        print(p, file=sys.stderr)
    print(f"scada reload: refused: {body.get('why', r.text)}", file=sys.stderr)
    return 1
