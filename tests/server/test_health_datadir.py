"""``scada server`` on a data folder it cannot write: one clear line (what, which path, why), exit 2.

A real process each time. Tests run as root, where permission bits stop nothing, so the folder is made
unwritable in ways that fail for root too: a store replaced by a directory, a folder under a regular
file, and (where the filesystem and capabilities allow it) ``chattr +i`` on the folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import ROOT


def serve(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "server", "--data-dir", str(data), "--port", "0",
                           "--tags", str(ROOT / "tags.yaml"), "--alarms", str(ROOT / "alarms.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def assert_one_clear_line(run: subprocess.CompletedProcess[str], path: Path, why: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("scada server:")]
    assert len(lines) == 1, run.stderr
    assert "not writable" in lines[0] and str(path) in lines[0] and why in lines[0], lines[0]


def test_a_store_replaced_by_a_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "users.sqlite").mkdir(parents=True)
    assert_one_clear_line(serve(data), data / "users.sqlite", "Is a directory")


def test_a_data_folder_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    assert_one_clear_line(serve(data), data, "Not a directory")


def test_an_immutable_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / ".lock").write_text("")  # the lock file exists (a folder that served before), the folder is frozen
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(data)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (filesystem or capabilities)")
    try:
        assert_one_clear_line(serve(data), data, "Operation not permitted")
    finally:
        subprocess.run([chattr, "-i", str(data)], check=True)
