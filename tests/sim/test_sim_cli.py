"""``scada sim`` as a process: prints its endpoints, writes the state files, stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def wait_state(state: Path, proc: subprocess.Popen[str], timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        control = state / "control.json"
        if control.exists() and json.loads(control.read_text()).get("pid") == proc.pid:
            endpoints: dict[str, str] = json.loads((state / "endpoints.json").read_text())
            return endpoints
        time.sleep(0.1)
    raise AssertionError("the simulator did not write its state files in time")


def test_scada_sim_runs_a_scenario_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "sim", "--ports", "test", "--state-dir", str(state), "--seed", "3",
         "--scenario", "fire_in_building", "--speed", "100"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        endpoints = wait_state(state, proc, 60)
        assert {"opcua-bms", "opcua-fleet"} <= set(endpoints)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    for name, address in endpoints.items():
        assert f"{name:<14}" in out and address in out
    assert "scenario fire_in_building: 6 actions" in out
    assert "stopped:" in out and "Traceback" not in out


def test_scada_sim_reports_a_bad_scenario_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nactions:\n  - {at: 1s, do: inject, fault: fire_alarm, equipment: B0001}\n")
    proc = subprocess.run([sys.executable, "-m", "cli", "sim", "--ports", "test", "--state-dir",
                           str(tmp_path / "state"), "--scenario", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{bad}:3: action 1: unknown equipment 'B0001' (did you mean 'B001'?)" in proc.stderr
    assert not (tmp_path / "state" / "endpoints.json").exists()
    # without --state-dir: <data root>/<scale>/sim, the folder `scada run` gives its simulator ($SCADA_DATA_DIR here)
    proc = subprocess.run([sys.executable, "-m", "cli", "sim", "--ports", "test", "--scenario", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SCADA_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 1 and "unknown equipment 'B0001'" in proc.stderr
    assert [p.name for p in (tmp_path / "data" / "demo" / "sim").iterdir()] == [".lock"]


@pytest.mark.slow
async def test_full_scale_city_starts_and_serves(tmp_path: Path) -> None:
    from scada.config import load_city
    from scada.config.generate import generate
    from sim.runner import Simulator

    tags = generate(tmp_path / "city", "dijon", 42, ROOT)
    config = load_city(tags, tmp_path / "city" / "alarms.yaml")
    async with Simulator(config, seed=42, ports="test", state_dir=tmp_path / "state", autostep=False) as sim:
        assert len(sim.models) == len(config.equipment) == 1948
        assert not [k for k in sim.skipped if k.startswith("template:")]
        assert len(sim.endpoints) == 12
        await sim.advance(60)
        assert sim.step_errors == 0
