"""``scada run``: the demo — simulator + server (embedded historian) + HMI, all on loopback.

::

    scada run                    # the shipped demo city; opens the HMI when it is installed
    scada run --headless         # no HMI: use the API / WebSocket (URL printed)
    scada run --scale dijon      # the full-scale métropole (34,000 luminaires...), generated once
    scada run --speed 10         # simulation clock 10× faster

    ┌ scada run ─────────────────────────────────────────────────────────────────────────┐
    │  child: scada sim --ports test --state-dir <data>/sim   (own process: second core)  │
    │            └─ writes <data>/sim/endpoints.json ──┐                                   │
    │  this process: scada server (endpoint overrides ◄┘, embedded historian, 127.0.0.1)  │
    │  child: scada hmi --url http://127.0.0.1:8480 --user operator (SCADA_PASSWORD env)  │
    └─────────────────────────────────────────────────────────────────────────────────────┘

Demo accounts ``operator`` and ``supervisor`` get fresh random passwords at every start, printed once
on this terminal (never logged, never stored in clear). Ctrl-C stops the HMI, the server (buffers
flushed, journal closed) and the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEMO_ACCOUNTS = (("operator", "operator"), ("supervisor", "supervisor"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="demo", choices=["demo", "dijon"])
    parser.add_argument("--headless", action="store_true", help="no HMI (use the API/WebSocket)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulation clock speed (default 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--port", type=int, default=8480, help="API port on 127.0.0.1 (default 8480; 0 = any)")
    parser.add_argument("--data-dir", type=Path, default=Path(".scada-demo"),
                        help="journal, historian, users and simulator state (default .scada-demo)")
    parser.add_argument("--config", type=Path, default=None, help="tags.yaml of the demo city (default: shipped)")
    parser.add_argument("--log-json", action="store_true", help="structured server logs")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def shipped_city() -> Path:
    """The shipped demo ``tags.yaml``: in the working directory, else next to the installed package."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / "tags.yaml").is_file() and (base / "alarms.yaml").is_file():
            return base / "tags.yaml"
    raise FileNotFoundError("tags.yaml / alarms.yaml of the demo city not found: run from the repository root "
                            "or give --config")


def city_files(args: argparse.Namespace) -> tuple[Path, Path]:
    tags = args.config or shipped_city()
    if args.scale == "demo":
        return tags, tags.parent / "alarms.yaml"
    from scada.config.generate import generate

    out = args.data_dir / f"city-{args.scale}"
    if not (out / "tags.yaml").is_file():
        print(f"generating the {args.scale} city into {out} (once) ...", flush=True)
        generate(out, args.scale, args.seed, tags.parent)
    return out / "tags.yaml", out / "alarms.yaml"


def demo_accounts(data_dir: Path) -> dict[str, str]:
    """Create or reset the demo accounts with fresh random passwords; returns name → password."""
    from scada.users import UserStore

    store = UserStore(data_dir / "users.sqlite")
    out: dict[str, str] = {}
    try:
        for name, role in DEMO_ACCOUNTS:
            password = secrets.token_urlsafe(12)
            if store.get(name) is None:
                store.add(name, role, password)
            else:
                store.set_role(name, role)
                store.set_password(name, password)
                store.set_disabled(name, False)
            out[name] = password
    finally:
        store.close()
    return out


def start_simulator(args: argparse.Namespace, tags: Path, alarms: Path, state: Path) -> subprocess.Popen[bytes]:
    for f in ("endpoints.json", "control.json"):
        with contextlib.suppress(FileNotFoundError):
            (state / f).unlink()
    cmd = [sys.executable, "-m", "cli", "sim", "--config", str(tags), "--alarms", str(alarms),
           "--ports", "test", "--state-dir", str(state), "--seed", str(args.seed), "--speed", str(args.speed)]
    log_file = open(state.parent / "simulator.log", "wb")
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def wait_endpoints(proc: subprocess.Popen[bytes], state: Path, timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the simulator stopped (exit {proc.returncode}); see {state.parent / 'simulator.log'}")
        try:
            control = json.loads((state / "control.json").read_text())
            if control.get("pid") == proc.pid:
                data = json.loads((state / "endpoints.json").read_text())
                return {str(k): str(v) for k, v in data.items()}
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the simulator did not publish its endpoints within {timeout_s:.0f} s")


def stop_child(proc: subprocess.Popen[Any] | None, name: str, sig: int = signal.SIGINT) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in 15 s: killing it", name)
        proc.kill()
        proc.wait()


def start_hmi(url: str, user: str, password: str) -> subprocess.Popen[bytes] | None:
    if importlib.util.find_spec("hmi.mainwindow") is None:
        print("HMI: not in this build (use the API, or --headless to silence this)", flush=True)
        return None
    env = {**os.environ, "SCADA_URL": url, "SCADA_USER": user, "SCADA_PASSWORD": password}
    # own session: Ctrl-C reaches `scada run`, which closes the console first (SIGTERM), then the server
    return subprocess.Popen([sys.executable, "-m", "cli", "hmi", "--url", url, "--user", user], env=env,
                            start_new_session=True)


def main(args: argparse.Namespace) -> int:
    from scada.errors import ConfigError
    from server.logs import setup_logging
    from server.main import serve
    from server.settings import load_settings

    setup_logging(args.log_json, getattr(logging, args.log_level))
    data = args.data_dir
    state = data / "sim"
    state.mkdir(parents=True, exist_ok=True)
    try:
        tags, alarms = city_files(args)
        commands = tags.parent / "commands.yaml"
        if not commands.is_file():  # a generated city has no vocabulary of its own: the shipped one
            commands = shipped_city().parent / "commands.yaml"
        settings = load_settings(None, {"data_dir": data, "tags": tags, "alarms": alarms, "listen.port": args.port,
                                        "listen.host": "127.0.0.1", "historian.backend": "embedded",
                                        "endpoints_file": state / "endpoints.json", "commands": commands})
    except (ConfigError, FileNotFoundError) as exc:
        print(f"scada run: {exc}", file=sys.stderr)
        return 1
    sim: subprocess.Popen[bytes] | None = None
    hmi: subprocess.Popen[bytes] | None = None
    try:
        print(f"starting the simulator ({args.scale} city, ×{args.speed:g}) ...", flush=True)
        sim = start_simulator(args, tags, alarms, state)
        endpoints = wait_endpoints(sim, state, 600 if args.scale == "dijon" else 120)
        print(f"simulator: {len(endpoints)} endpoints (log {data / 'simulator.log'})", flush=True)
        accounts = demo_accounts(data)

        def ready(server: Any, url: str) -> None:
            nonlocal hmi
            print(f"\nserver: {url}   (OpenAPI {url}/docs, WebSocket {url.replace('http', 'ws')}/api/v1/ws)")
            print("demo accounts (new passwords at every start, shown only here):")
            for name, password in accounts.items():
                print(f"    {name:<11} {password}")
            print("Ctrl-C stops everything.\n", flush=True)
            if not args.headless:
                hmi = start_hmi(url, "operator", accounts["operator"])

        def close_hmi() -> None:
            stop_child(hmi, "HMI", signal.SIGTERM)

        return asyncio.run(serve(settings, endpoints, ready=ready, on_stop=close_hmi))
    except ConfigError as exc:
        return exc.report("the demo does not start")
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"scada run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop_child(hmi, "HMI", signal.SIGTERM)
        stop_child(sim, "simulator")
        print("stopped.", flush=True)
