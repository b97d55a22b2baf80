"""``scada run``: the demo — simulator + server (embedded historian) + HMI, all on loopback.

::

    scada run                    # the shipped demo city; opens the HMI (needs a display)
    scada run --headless         # no HMI: use the API / WebSocket (URLs printed)
    scada run --scale dijon      # the full-scale métropole (34,000 luminaires...), generated once
    scada run --speed 10         # simulation clock 10× faster
    scada run --ha               # as a failover pair: 3 etcd members + main room + failover room (docs/ha.md)
    scada run --distributed      # + Mosquitto and one `scada edge` per edge partition (docs/sparkplug.md)

    ┌ scada run ────────────────────────────────────────────────────────────────────────────────┐
    │  locks <data>/<city>/.lock and <data>/<city>/sim/.lock (a second instance exits 2)        │
    │  child: scada sim --ports test --state-dir <data>/<city>/sim  (own process: second core;  │
    │            inherits the sim lock)  └─ writes sim/endpoints.json + sim/control.json ──┐    │
    │  this process: scada server (endpoint overrides ◄────────────────────────────────────┘,   │
    │                embedded historian, 127.0.0.1:8480)                                        │
    │  child: scada hmi --url http://127.0.0.1:8480 --user operator (SCADA_PASSWORD env)        │
    └───────────────────────────────────────────────────────────────────────────────────────────┘

``<data>`` is ``--data-dir``, else ``$SCADA_DATA_DIR``, else ``scada-data``; ``<city>`` is the
``--scale`` (``demo`` or ``dijon``), so ``scada journal`` and the other maintenance tools find the
demo's data with no option (:mod:`scada.datadir`). It prints where the data go, the API, OpenAPI,
WebSocket and simulator control API URLs (the control API is on an OS-assigned port, also written
in ``sim/control.json``) and how to stop.

Without a display (no ``DISPLAY``/``WAYLAND_DISPLAY`` and no non-X ``QT_QPA_PLATFORM``) it refuses to
start unless ``--headless``; if the console exits at once (a display it cannot open) it stops
everything and exits 1 with the same hint. Demo accounts ``operator`` and ``supervisor`` get fresh
random passwords at every start, printed once on this terminal (never logged, never stored in
clear). Ctrl-C stops the HMI, the server (buffers flushed, journal closed) and the simulator, then
releases the locks.

With ``--ha`` (docs/ha.md): three etcd members on loopback (clients 127.0.0.1:23790-23792, peers
23800-23802, data in ``<data>/etcd``), a pair secret (``<data>/ha.secret``, 0600), this process as the
``main room`` (primary, ``--port``) and a child ``scada server --ha standby`` as the ``failover room``
(``--port`` + 1, data in ``<data>/failover``, the same audit key and demo passwords); the console is given
both servers. Kill either server (``kill -9``) to see the other take over.

With ``--distributed`` (docs/sparkplug.md): the city's folder is copied to ``<data>/distributed/city`` with the
demo's partitions added when it has none (the lighting cabinets at an edge, the rest polled here), Debian's
Mosquitto listens on a free loopback port with a random password per edge and for the server and the ACL
(``drivers.sparkplug.broker``), and one child ``scada edge`` per edge partition polls its devices of the
simulator; this server is their Sparkplug host (its credential in its environment). The broker speaks TLS only
(``mqtts://``): a CA and its certificate are made in ``<data>/distributed/tls`` at each start, the server and the
edges given ``ca.pem``; it persists its queues in ``<data>/distributed/mosquitto``.

Lazy imports here: the server stack (FastAPI, uvicorn, the drivers' protocol libraries), the user store
and the city generator load when the demo starts, so ``scada run --help`` stays instant.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.edge import Distributed, start_distributed
from cli.options import add_data_dir, chosen_lang, lock
from scada.datadir import DataDirError, DataDirLock, resolve_root
from scada.errors import ConfigError

log = logging.getLogger(__name__)

DEMO_ACCOUNTS = (("operator", "operator"), ("supervisor", "supervisor"))
#: an HMI that exits within this many seconds of its start did not start (no display, bad Qt install...)
HMI_START_GRACE_S = 10.0
HEADLESS_HINT = "run `scada run --headless` (API and WebSocket only), or set QT_QPA_PLATFORM=offscreen"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", default="demo", choices=["demo", "dijon"],
                        help="the city, and its folder under the data root (default demo)")
    parser.add_argument("--headless", action="store_true", help="no HMI (use the API/WebSocket)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulation clock speed (default 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--port", type=int, default=8480, help="API port on 127.0.0.1 (default 8480; 0 = any)")
    add_data_dir(parser, city=False)
    parser.add_argument("--config", type=Path, default=None, help="tags.yaml of the demo city (default: shipped)")
    parser.add_argument("--log-json", action="store_true", help="structured server logs")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--distributed", action="store_true",
                        help="edge pollers: Mosquitto (a password per edge, the ACL) and one `scada edge` per edge "
                             "partition (the demo's: the lighting cabinets) feeding this server over Sparkplug B")
    parser.add_argument("--ha", action="store_true",
                        help="as a failover pair: 3 etcd members + a standby server on --port + 1 (docs/ha.md)")


def shipped_city() -> Path:
    """The shipped demo ``tags.yaml``: in the working directory, else next to the installed package."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / "tags.yaml").is_file() and (base / "alarms.yaml").is_file():
            return base / "tags.yaml"
    raise FileNotFoundError("tags.yaml / alarms.yaml of the demo city not found: run from the repository root "
                            "or give --config")


def city_files(args: argparse.Namespace, data: Path) -> tuple[Path, Path]:
    tags = args.config or shipped_city()
    if args.scale == "demo":
        return tags, tags.parent / "alarms.yaml"
    from scada.config.generate import generate

    out = data / "city"
    if not (out / "tags.yaml").is_file():
        print(f"generating the {args.scale} city into {out} (once) ...", flush=True)
        generate(out, args.scale, args.seed, tags.parent)
    return out / "tags.yaml", out / "alarms.yaml"


def display_problem(env: dict[str, str] | os._Environ[str] = os.environ, platform: str = sys.platform) -> str | None:
    """Why a Qt window cannot open here, or None. Qt picks X11 (xcb) or Wayland on Linux and the BSDs;
    any other ``QT_QPA_PLATFORM`` (offscreen, vnc, eglfs...) needs no display server."""
    if platform in ("darwin", "win32"):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "")
    if qpa and not qpa.startswith(("xcb", "wayland")):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return "no display for the operator console (DISPLAY and WAYLAND_DISPLAY are not set)"


def hmi_problem() -> str | None:
    """Why the operator console cannot start at all, or None (checked before anything starts)."""
    if importlib.util.find_spec("PyQt6") is None or importlib.util.find_spec("hmi.mainwindow") is None:
        return "the operator console (PyQt6) is not installed in this environment"
    return display_problem()


def demo_accounts(data_dir: Path, passwords: dict[str, str] | None = None) -> dict[str, str]:
    """Create or reset the demo accounts with fresh random passwords (or ``passwords``: the pair's other
    server gets the same); returns name → password."""
    from scada.users import UserStore

    store = UserStore(data_dir / "users.sqlite")
    out: dict[str, str] = {}
    try:
        for name, role in DEMO_ACCOUNTS:
            password = (passwords or {}).get(name) or secrets.token_urlsafe(12)
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


def start_simulator(args: argparse.Namespace, tags: Path, alarms: Path, state: Path,
                    sim_lock: DataDirLock) -> subprocess.Popen[bytes]:
    """``scada sim`` as a child; it inherits the lock of its state directory (it does not lock it again)."""
    for f in ("endpoints.json", "control.json"):
        with contextlib.suppress(FileNotFoundError):
            (state / f).unlink()
    cmd = [sys.executable, "-m", "cli", "sim", "--config", str(tags), "--alarms", str(alarms),
           "--ports", "test", "--state-dir", str(state), "--seed", str(args.seed), "--speed", str(args.speed)]
    with open(state.parent / "simulator.log", "wb") as log_file:
        # our own interpreter and module with a fixed argument list: no shell, no untrusted program
        return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,  # noqa: S603
                                pass_fds=(sim_lock.fd,), env={**os.environ, **sim_lock.child_env()})


@dataclass(frozen=True)
class SimState:
    endpoints: dict[str, str]
    control_url: str | None  # the simulator's control API (fault injection), OS-assigned port


def wait_endpoints(proc: subprocess.Popen[bytes], state: Path, timeout_s: float) -> SimState:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the simulator stopped (exit {proc.returncode}); see {state.parent / 'simulator.log'}")
        try:
            control = json.loads((state / "control.json").read_text())
            if control.get("pid") == proc.pid:
                data = json.loads((state / "endpoints.json").read_text())
                url = control.get("url")
                return SimState({str(k): str(v) for k, v in data.items()}, str(url) if url else None)
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


def start_hmi(url: str, user: str, password: str, pair_url: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SCADA_URL": url, "SCADA_USER": user, "SCADA_PASSWORD": password}
    pair = ["--pair-url", pair_url] if pair_url else []
    # own session: Ctrl-C reaches `scada run`, which closes the console first (SIGTERM), then the server
    return subprocess.Popen([sys.executable, "-m", "cli", "hmi", "--url", url, "--user", user, *pair], env=env,  # noqa: S603 - our interpreter
                            start_new_session=True)


# ---------------------------------------------------------------------- --ha: the failover pair
ETCD_CLIENT_PORTS = (23790, 23791, 23792)
ETCD_PEER_PORTS = (23800, 23801, 23802)
ETCD_HINT = "Debian etcd-server: apt-get install etcd-server"


@dataclass
class Pair:
    """What ``--ha`` starts besides the main room's server (stopped in reverse order)."""

    etcd: list[subprocess.Popen[bytes]]
    secret: Path
    standby_dir: Path
    standby: subprocess.Popen[bytes] | None = None

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in ETCD_CLIENT_PORTS]

    def stop(self) -> None:
        stop_child(self.standby, "failover room server")
        for proc in self.etcd:
            stop_child(proc, "etcd", signal.SIGTERM)


def start_etcd(root: Path, timeout_s: float = 30.0, client_ports: tuple[int, ...] = ETCD_CLIENT_PORTS,
               peer_ports: tuple[int, ...] = ETCD_PEER_PORTS) -> list[subprocess.Popen[bytes]]:
    """Three etcd members on loopback (their data in ``root``), healthy; RuntimeError otherwise (the demo's
    ports by default; bench/bench_ha.py gives free ones)."""
    import shutil

    import httpx

    etcd = shutil.which("etcd")
    if etcd is None:
        raise RuntimeError(f"--ha needs etcd ({ETCD_HINT})")
    root.mkdir(parents=True, exist_ok=True)
    names = tuple(f"m{k}" for k in range(len(client_ports)))
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
    procs: list[subprocess.Popen[bytes]] = []
    for name, cport, pport in zip(names, client_ports, peer_ports, strict=True):
        with open(root / f"{name}.log", "wb") as log_file:
            procs.append(subprocess.Popen(  # noqa: S603 - the etcd found on PATH, fixed arguments
                [etcd, "--name", name, "--data-dir", str(root / name),
                 "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls",
                 f"http://127.0.0.1:{cport}", "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}", "--initial-cluster", initial,
                 "--initial-cluster-state", "new", "--initial-cluster-token", f"scada-{client_ports[0]}",
                 "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn"],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + timeout_s
    pending = {f"http://127.0.0.1:{p}" for p in client_ports}
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"{url}/health", timeout=1).json().get("health") == "true":
                    pending.discard(url)
        time.sleep(0.2)
    if pending:
        for proc in procs:
            stop_child(proc, "etcd", signal.SIGTERM)
        raise RuntimeError(f"etcd did not become healthy on {sorted(pending)}: see {root}/*.log")
    return procs


def pair_secret(path: Path) -> Path:
    """The pair's shared secret: created once (0600 from its creation), the same file for both servers."""
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def start_standby(pair: Pair, settings: dict[str, Any], port: int, main_url: str) -> subprocess.Popen[bytes]:
    """``scada server`` as the failover room: its own data folder, the main room's audit key (one key for the
    pair), the pair's settings; started once the main room holds the lease."""
    import shutil

    folder = pair.standby_dir
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    key = Path(settings["data_dir"]) / "keys" / "audit.key"
    if key.is_file() and not (folder / "keys" / "audit.key").is_file():
        shutil.copy2(key, folder / "keys" / "audit.key")
        os.chmod(folder / "keys" / "audit.key", 0o600)
    mine = {**{k: str(v) for k, v in settings.items() if k in ("tags", "alarms", "commands", "endpoints_file")},
            "data_dir": str(folder), "listen": {"host": "127.0.0.1", "port": port},
            "historian": {"backend": "embedded"},
            "ha": {"role": "standby", "name": "failover room", "etcd": pair.urls, "peer_url": main_url,
                   "secret_file": str(pair.secret)}}
    (folder / "settings.yaml").write_text(json.dumps(mine, indent=1))  # JSON is YAML
    with open(folder / "server.log", "wb") as log_file:
        return subprocess.Popen([sys.executable, "-m", "cli", "server", "--settings", str(folder / "settings.yaml")],  # noqa: S603 - our interpreter
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


async def watch_hmi(proc: subprocess.Popen[Any], stop: asyncio.Event, grace_s: float = HMI_START_GRACE_S,
                    period_s: float = 0.2) -> int | None:
    """Until ``stop``: if the console exits within ``grace_s`` of its start, it could not start: say so,
    set ``stop`` and return its exit code. A console closed later leaves the server and simulator running."""
    started = time.monotonic()
    while not stop.is_set():
        code = proc.poll()
        if code is not None:
            if code != 0 and time.monotonic() - started < grace_s:
                print(f"scada run: the operator console could not start (exit {code}; its message is above). "
                      f"Stopping the server and the simulator; {HEADLESS_HINT}", file=sys.stderr, flush=True)
                stop.set()
                return code
            print(f"the operator console closed (exit {code}); the server and the simulator keep running, "
                  f"Ctrl-C stops them", flush=True)
            return None
        await asyncio.sleep(period_s)
    return None


def banner(data: Path, sim: SimState, url: str, accounts: dict[str, str]) -> str:
    ws = url.replace("http", "ws", 1)
    lines = [
        "",
        f"data        {data}  (journal, historian, users, audit; simulator state in {data / 'sim'}, "
        f"its log {data / 'simulator.log'})",
        f"API         {url}",
        f"OpenAPI     {url}/docs",
        f"WebSocket   {ws}/api/v1/ws",
        f"simulator   control API {sim.control_url or '(off)'}  (POST /fault, /clear, /comm; GET /status), "
        f"{len(sim.endpoints)} endpoints in {data / 'sim' / 'endpoints.json'}",
        "demo accounts (new passwords at every start, shown only here):",
        *(f"    {name:<11} {password}" for name, password in accounts.items()),
        f"Ctrl-C (or kill -INT {os.getpid()}) stops the console, the server and the simulator.",
        "",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    prog = "scada run"
    if not args.headless:
        why = hmi_problem()
        if why is not None:
            print(f"{prog}: {why}; nothing started. To run without the console, {HEADLESS_HINT}.", file=sys.stderr)
            return 2
    data = resolve_root(args.data_dir) / args.scale
    state = data / "sim"
    try:
        held = lock(data, args, prog)
        if held is None:
            return 2
        with held:
            sim_lock = lock(state, args, prog)
            if sim_lock is None:
                return 2
            with sim_lock:
                return _run(args, data, state, sim_lock)
    except (DataDirError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, data: Path, state: Path, sim_lock: DataDirLock) -> int:
    from server.logs import setup_logging
    from server.main import serve
    from server.settings import load_settings

    setup_logging(args.log_json, getattr(logging, args.log_level))
    try:
        tags, alarms = city_files(args, data)
        commands = tags.parent / "commands.yaml"
        if not commands.is_file():  # a generated city has no vocabulary of its own: the shipped one
            commands = shipped_city().parent / "commands.yaml"
        chosen: dict[str, Any] = {"data_dir": data, "tags": tags, "alarms": alarms, "listen.port": args.port,
                                  "listen.host": "127.0.0.1", "historian.backend": "embedded",
                                  "endpoints_file": state / "endpoints.json", "commands": commands,
                                  "lang": chosen_lang(args)}  # scada --lang / $SCADA_LANG, else the site's
        settings = load_settings(None, chosen)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"scada run: {exc}", file=sys.stderr)
        return 1
    dist: Distributed | None = None
    if args.distributed:  # the city's copy with its partitions, Mosquitto, the server's credential (edges: below)
        try:
            dist = start_distributed(tags, data / "distributed")
            chosen["tags"] = dist.tags
            os.environ.update(dist.server_env())  # read by the server's edge component (and a --ha standby child)
            settings = load_settings(None, chosen)
        except (RuntimeError, OSError, ConfigError, subprocess.CalledProcessError) as exc:
            if dist is not None:
                dist.stop()
            print(f"scada run: --distributed: {exc}", file=sys.stderr)
            return 1
        print(f"broker      {dist.url} (Mosquitto, TLS with the CA {dist.ca}, a password per edge, ACL; log "
              f"{dist.folder / 'mosquitto.log'})", flush=True)
    pair: Pair | None = None
    if args.ha:
        if args.port == 0:
            print("scada run: --ha needs a fixed --port (the failover room uses --port + 1)", file=sys.stderr)
            return 2
        try:
            print("starting etcd (3 members on 127.0.0.1:23790-23792) ...", flush=True)
            pair = Pair(start_etcd(data / "etcd"), pair_secret(data / "ha.secret"), data / "failover")
            settings = load_settings(None, {**chosen, "ha.role": "primary", "ha.name": "main room",
                                            "ha.etcd": pair.urls, "ha.secret_file": pair.secret,
                                            "ha.peer_url": f"http://127.0.0.1:{args.port + 1}"})
        except (RuntimeError, OSError, ConfigError) as exc:
            if pair is not None:
                pair.stop()
            print(f"scada run: {exc}", file=sys.stderr)
            return 1
    from failsafe.audit import AuditKeyError, provision_for

    try:  # as `scada server`: the command audit log is always keyed; a log whose key is missing or wrong refuses
        key = provision_for(data)
    except AuditKeyError as exc:
        print(f"scada run: {exc}", file=sys.stderr)
        return 2
    print(f"command audit log key: {key.source} (fingerprint {key.fingerprint})", flush=True)
    sim: subprocess.Popen[bytes] | None = None
    hmi: subprocess.Popen[bytes] | None = None
    hmi_failed: int | None = None
    watcher: asyncio.Task[int | None] | None = None
    try:
        print(f"starting the simulator ({args.scale} city, ×{args.speed:g}) into {data} ...", flush=True)
        sim = start_simulator(args, tags, alarms, state, sim_lock)
        sim_state = wait_endpoints(sim, state, 600 if args.scale == "dijon" else 120)
        if dist is not None:
            dist.start_edges(state / "endpoints.json", data)
            print(f"edges       {len(dist.edges)} `scada edge` (logs in {dist.folder})", flush=True)
        accounts = demo_accounts(data)

        def ready(server: Any, url: str) -> None:
            nonlocal hmi, watcher
            print(banner(data, sim_state, url, accounts), flush=True)
            pair_url = None
            if pair is not None:
                demo_accounts(pair.standby_dir, accounts)  # the same passwords on both (users are not replicated)
                pair_url = f"http://127.0.0.1:{args.port + 1}"
                pair.standby = start_standby(pair, dict(chosen), args.port + 1, url)
                print(f"failover    {pair_url} (standby, fed by this server; log {pair.standby_dir / 'server.log'})"
                      f"\n            etcd {', '.join(pair.urls)}; `scada ha status --url {url} --url {pair_url}`",
                      flush=True)
            if not args.headless:
                hmi = start_hmi(url, "operator", accounts["operator"], pair_url)
                watcher = asyncio.get_running_loop().create_task(watch_hmi(hmi, server.stop_event))

        def close_hmi() -> None:
            nonlocal hmi_failed
            if watcher is not None and watcher.done() and not watcher.cancelled():
                hmi_failed = watcher.result()
            elif watcher is not None:
                watcher.cancel()
            stop_child(hmi, "HMI", signal.SIGTERM)

        code = asyncio.run(serve(settings, sim_state.endpoints, ready=ready, on_stop=close_hmi))
        return 1 if hmi_failed is not None else code
    except ConfigError as exc:
        return exc.report("the demo does not start")
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"scada run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stop_child(hmi, "HMI", signal.SIGTERM)
        if pair is not None:
            pair.stop()
        if dist is not None:
            dist.stop()
        stop_child(sim, "simulator")
        print("stopped.", flush=True)
