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
    assert "polling 3 device(s), 30 tags" in out
    for name in ("J001", "J002", "J003", "phase_greens", "ok"):
        assert name in out
    assert "J004" not in out


def test_scada_poll_config_errors(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    bad = tmp_path / "endpoints.json"
    bad.write_text("[not json")
    assert cli.main(parser.parse_args(["--config", str(ROOT / "tags.yaml"), "--endpoints", str(bad)])) == 2
    assert cli.main(parser.parse_args(["--config", str(ROOT / "tags.yaml"), "--devices", "nothing*"])) == 2
