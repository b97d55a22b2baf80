"""``scada poll`` against the simulator's SNMP agent."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import pytest

from cli import poll as cli
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent
from tests.drivers.conftest import ROOT, demo_city, models_for


async def test_scada_poll_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = models_for(demo_city(), "junction", JunctionController.from_equipment)
    for m in models.values():
        m.step(time.time())
    agent = SnmpAgent(models, v3_auth_key="auth-key-123", v3_priv_key="priv-key-123")
    await agent.start()
    try:
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps({"snmp-traffic": agent.endpoint}))
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        args = parser.parse_args(["--config", str(ROOT / "tags.yaml"), "--endpoints", str(endpoints),
                                  "--duration", "1.5", "--devices", "J00[1-3]", "--no-live",
                                  "--show-tags", "*/J001/phase_*"])
        # cli.main runs its own loop: run it in a thread while this loop serves the agent
        rc = await asyncio.to_thread(cli.main, args)
    finally:
        await agent.aclose()
    out = capsys.readouterr().out
    assert rc == 0, out
    # 22 tags a junction: 10 status objects, sysUpTime, 3 patternCycleTime, 8 phaseConcurrency
    assert "polling 3 device(s), 66 tags" in out
    for name in ("J001", "J002", "J003", "phase_greens", "ok"):
        assert name in out
    assert "J004" not in out
    # phaseConcurrency of a phase the controller lacks is bad_config (noSuchInstance), of the others good
    rows = {line.split("phase_concurrency_")[1].split()[0]: line for line in out.splitlines()
            if "J001/phase_concurrency_" in line}
    assert sorted(rows) == [str(p) for p in range(1, 9)], out
    for p, line in rows.items():
        assert ("bad_config" in line) == (int(p) > models["J001"].phases), line


def test_scada_poll_config_errors(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    bad = tmp_path / "endpoints.json"
    bad.write_text("[not json")
    assert cli.main(parser.parse_args(["--config", str(ROOT / "tags.yaml"), "--endpoints", str(bad)])) == 2
    assert cli.main(parser.parse_args(["--config", str(ROOT / "tags.yaml"), "--devices", "nothing*"])) == 2
