"""One data directory, one instance: resolution order, the city folders, and the OS lock between real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scada.datadir import (
    DEFAULT_ROOT,
    ENV_DATA_DIR,
    DataDirBusy,
    DataDirError,
    DataDirLock,
    instance_dir,
    read_holder,
    resolve,
    resolve_root,
)

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from scada.datadir import DataDirLock
    lock = DataDirLock.acquire(Path(sys.argv[1]), "scada server --port 0")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_root_option_then_environment_then_settings_then_default(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert resolve_root(None) == DEFAULT_ROOT == Path("scada-data")
    assert resolve_root(None, tmp_path / "from-settings") == tmp_path / "from-settings"
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "from-env"))
    assert resolve_root(None, tmp_path / "from-settings") == tmp_path / "from-env"
    assert resolve_root(tmp_path / "from-option", tmp_path / "from-settings") == tmp_path / "from-option"


def test_city_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert instance_dir(root) == root  # nothing there yet: the folder itself (a server's --data-dir)
    assert instance_dir(root, "dijon") == root / "dijon"
    DataDirLock.acquire(root / "demo", "scada run").release()
    assert instance_dir(root) == root / "demo"  # what `scada run` left: found with no option
    DataDirLock.acquire(root / "dijon", "scada run --scale dijon").release()
    with pytest.raises(DataDirError, match=r"several cities \(demo, dijon\): choose one with --city"):
        instance_dir(root)
    assert instance_dir(root, "dijon") == root / "dijon"
    DataDirLock.acquire(root, "scada server").release()
    assert instance_dir(root) == root  # an instance in the root itself is what --data-dir named
    assert resolve(root, "demo") == root / "demo"


def test_a_second_process_is_refused_with_the_holders_pid_and_command(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(data), "60"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirBusy) as busy:
            DataDirLock.acquire(data, "scada run")
        assert busy.value.pid == holder.pid and busy.value.command == "scada server --port 0"
        assert f"in use by PID {holder.pid} (scada server --port 0)" in str(busy.value)
        # the command line refuses with exit 2 and the same words, before writing anything
        out = subprocess.run([sys.executable, "-m", "cli", "server", "--data-dir", str(data), "--port", "0"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        assert f"{data} is in use by PID {holder.pid} (scada server --port 0)" in out.stderr
        assert sorted(p.name for p in data.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with the process (SIGKILL included): the next instance gets it
    with DataDirLock.acquire(data, "scada run") as lock:
        assert read_holder(data) == (os.getpid(), "scada run") and lock.owned


def test_a_child_adopts_the_lock_its_parent_passes_down(tmp_path: Path) -> None:
    state = tmp_path / "sim"
    child_code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from scada.datadir import DataDirLock
        lock = DataDirLock.acquire(Path(sys.argv[1]), "scada sim")
        print("adopted" if not lock.owned else "locked", flush=True)
        lock.release()
    """)
    with DataDirLock.acquire(state, "scada run") as lock:
        out = subprocess.run([sys.executable, "-c", child_code, str(state)], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, pass_fds=(lock.fd,), env={**os.environ, **lock.child_env()})
        assert out.stdout.strip() == "adopted", out.stderr
        # the child's release did not release the parent's lock: a third process is still refused
        third = subprocess.run([sys.executable, "-c", HOLDER, str(state), "0"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
        assert third.returncode == 1 and f"in use by PID {os.getpid()} (scada run)" in third.stderr
    # a descriptor for another folder is not adopted: that folder is locked normally
    other = tmp_path / "other"
    with DataDirLock.acquire(state, "scada run") as lock:
        out = subprocess.run([sys.executable, "-c", child_code, str(other)], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, pass_fds=(lock.fd,), env={**os.environ, **lock.child_env()})
        assert out.stdout.strip() == "locked", out.stderr
    started = time.monotonic()
    with DataDirLock.acquire(state, "again"):
        assert time.monotonic() - started < 1
