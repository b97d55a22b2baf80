"""``scada run``: refuses to start without a display, says when the console dies at once, prints every URL,
keeps one instance per data directory and leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cli.run import HEADLESS_HINT, display_problem, watch_hmi
from scada.datadir import DataDirLock

ROOT = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of the live processes whose arguments contain ``text`` (the test's own folder)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args if a)
        if text in line:
            found.append(line)
    return found


def test_display_detection() -> None:
    assert display_problem({}, "linux") is not None
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "xcb"}, "linux") is not None  # X11 asked for, and no X server
    assert display_problem({}, "darwin") is None


def test_no_display_refuses_before_starting_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    data = tmp_path / "data"
    out = subprocess.run([sys.executable, "-m", "cli", "run", "--port", "0", "--data-dir", str(data)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "no display for the operator console" in out.stderr and "nothing started" in out.stderr
    assert "scada run --headless" in out.stderr
    assert not data.exists()  # no lock, no state file, no log written
    assert processes_mentioning(str(data)) == []  # and no simulator or server left behind


async def test_a_console_that_dies_at_once_stops_the_demo(capsys) -> None:
    stop = asyncio.Event()
    # a real child that exits as Qt does when it cannot open its display (abort)
    proc = subprocess.Popen([sys.executable, "-c", "import os; os.abort()"])
    code = await asyncio.wait_for(watch_hmi(proc, stop, grace_s=30, period_s=0.05), 30)
    assert code == -signal.SIGABRT and stop.is_set()
    err = capsys.readouterr().err
    assert "the operator console could not start" in err and HEADLESS_HINT in err
    # closed later (or cleanly): the server and the simulator keep running
    stop = asyncio.Event()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    assert await asyncio.wait_for(watch_hmi(proc, stop, grace_s=30, period_s=0.05), 30) is None
    assert not stop.is_set() and "keep running" in capsys.readouterr().out


def start_run(root: Path, *flags: str) -> tuple[subprocess.Popen[str], dict[str, str], list[str]]:
    """``scada run --headless --port 0 *flags`` on data folder ``root``, read up to its banner's last line
    ("Ctrl-C ..."): (the process, its environment, the banner's lines). The caller stops it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SCADA_DATA_DIR": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "run", *flags, "--headless", "--port", "0"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "scada run stopped early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc, env, lines


def stop_run(proc: subprocess.Popen[str], lines: list[str], root: Path) -> None:
    """Ctrl-C to a ``start_run`` process: it exits 0 saying "stopped.", and no process mentions ``root``."""
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, "".join(lines) + rest
    assert rest.rstrip().endswith("stopped.") and "Traceback" not in rest
    assert processes_mentioning(str(root)) == []  # every child (simulator, broker, edges) is gone too


def test_headless_demo_prints_every_url_and_is_the_only_instance(tmp_path: Path) -> None:
    """One real headless demo (~20-40 s): the banner, a refused second instance, the maintenance tools
    finding its data with no option, and Ctrl-C stopping every child and releasing the locks."""
    root = tmp_path / "data"
    proc, env, lines = start_run(root)
    try:
        banner = "".join(lines)
        data = root / "demo"
        api = re.search(r"^API\s+(http://127\.0\.0\.1:\d+)$", banner, re.M)
        control = re.search(r"control API (http://127\.0\.0\.1:\d+)", banner)
        assert api and control, banner
        assert re.search(rf"^data\s+{re.escape(str(data))} ", banner, re.M)
        assert f"OpenAPI     {api[1]}/docs" in banner
        assert f"WebSocket   {api[1].replace('http', 'ws')}/api/v1/ws" in banner
        assert f"kill -INT {proc.pid}" in banner
        assert httpx.get(f"{api[1]}/docs", timeout=30).status_code == 200
        assert "sim_time" in httpx.get(f"{control[1]}/status", timeout=30).json()
        assert json.loads((data / "sim" / "control.json").read_text())["url"] == control[1]

        for cmd in (["run", "--headless", "--port", "0"], ["sim", "--ports", "test"], ["server", "--port", "0"]):
            second = subprocess.run([sys.executable, "-m", "cli", *cmd, "--data-dir", str(root),
                                     *(["--city", "demo"] if cmd[0] == "server" else [])],
                                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            assert second.returncode == 2, (cmd, second.stderr)
            assert f"in use by PID {proc.pid} (scada run --headless --port 0)" in second.stderr

        journal = subprocess.run([sys.executable, "-m", "cli", "journal", "--limit", "1"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=60)
        assert journal.returncode == 0 and "row(s), page 1" in journal.stderr, journal.stderr

        stop_run(proc, lines, root)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for folder in (data, data / "sim"):
        with DataDirLock.acquire(folder, "next"):  # released
            pass


def test_a_log_whose_key_is_missing_refuses_to_run(tmp_path: Path) -> None:
    """As `scada server`: an existing command audit log and no key (or another one) → exit 2, nothing started."""
    from failsafe.audit import AuditLog, keys_dir, log_dir, provision_for

    data = tmp_path / "data"
    instance = data / "demo"
    key = provision_for(instance)  # the key of a previous run, and a log written with it
    log = AuditLog(log_dir(instance), key)
    log.append("audit_opened", note="a previous run")
    log.close()
    for f in keys_dir(instance).iterdir():
        f.unlink()  # the key is lost (or the log was copied without it)
    env = {k: v for k, v in os.environ.items() if k != "SCADA_AUDIT_KEY"}
    out = subprocess.run([sys.executable, "-m", "cli", "run", "--headless", "--port", "0", "--data-dir", str(data)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert key.fingerprint in out.stderr  # it says which key the log expects
    assert "starting the simulator" not in out.stdout
    assert processes_mentioning(str(data)) == []
