"""The `scada` command: help, check of the three configuration files (exit codes and messages), config generation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli.main import COMMANDS, main
from scada.config import load_city
from scada.config.generate import SCALES, rows

ROOT = Path(__file__).resolve().parents[2]


def _scada(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_help_lists_every_subcommand() -> None:
    out = _scada("--help")
    assert out.returncode == 0
    for name, (text, _) in COMMANDS.items():
        assert f"  {name:<10} {text}" in out.stdout


def test_check_shipped_city_is_valid() -> None:
    out = _scada("check", "tags.yaml", "alarms.yaml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok: 91 equipment") and "6 commandable types" in out.stdout
    bare = _scada("check")  # the defaults: the three files of the working directory
    assert bare.returncode == 0 and bare.stdout.startswith("ok: 91 equipment"), bare.stderr


def _line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in ln)


def test_check_validates_commands_yaml_beside_the_tags(tmp_path: Path) -> None:
    """A broken commands.yaml beside tags.yaml is found with no argument, with the city's own problems."""
    tags = tmp_path / "tags.yaml"
    tags.write_text((ROOT / "tags.yaml").read_text(encoding="utf-8")
                    .replace("file: inventory/demo.csv", f"file: {ROOT}/inventory/demo.csv"), encoding="utf-8")
    commands = tmp_path / "commands.yaml"
    text = (ROOT / "commands.yaml").read_text(encoding="utf-8")
    commands.write_text(text.replace("  window: 120s", "  window: soon", 1)
                        .replace("max_with_approval: 20}", "max_with_approval: 20, blast: 3}", 1), encoding="utf-8")
    out = _scada("check", str(tags), str(ROOT / "alarms.yaml"))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    window = _line_of(commands, "window: soon")
    assert f"{commands}:{window}: approval: 'window' must be a duration like 10s, 500ms, 5min, got 'soon'" in lines
    assert any(ln.startswith(f"{commands}:{_line_of(commands, 'blast: 3')}: ") and "blast" in ln for ln in lines)
    assert lines[-1] == f"{len(lines) - 1} problem(s); the configuration cannot be used"
    # the third argument names another vocabulary; the shipped one is valid against the same city
    assert _scada("check", str(tags), str(ROOT / "alarms.yaml"), str(ROOT / "commands.yaml")).returncode == 0


def test_check_catches_an_unknown_role_in_commands_yaml(tmp_path: Path) -> None:
    commands = tmp_path / "commands.yaml"
    commands.write_text((ROOT / "commands.yaml").read_text(encoding="utf-8")
                        .replace("approver_roles: [supervisor, administrator]", "approver_roles: [supervisor, admin]"),
                        encoding="utf-8")
    out = _scada("check", "tags.yaml", "alarms.yaml", str(commands))
    assert out.returncode == 1
    line = _line_of(commands, "approver_roles: [supervisor, admin]")
    assert any(ln.startswith(f"{commands}:{line}: approval: 'approver_roles' ") and ln.endswith("got 'admin' (did you mean 'administrator'?)")
               for ln in out.stderr.splitlines()), out.stderr


def test_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    text = (ROOT / "tags.yaml").read_text(encoding="utf-8")
    text = text.replace("    scan: safety\n", "    scan: quick\n", 1)  # the junction template's class
    text = text.replace("type: int, address: 1.3.6.1.4.1.1206.4.2.1.1.4.1.2.1", "type: integer, address: 1.3.6.1")
    (tmp_path / "tags.yaml").write_text(text.replace("file: inventory/demo.csv", f"file: {ROOT}/inventory/demo.csv"))
    out = _scada("check", str(tmp_path / "tags.yaml"), str(ROOT / "alarms.yaml"))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    line = 1 + text.splitlines().index("    scan: quick")
    assert any(f":{line}: template 'junction': 'scan' must be one of safety, fast, normal, slow, got 'quick'" in ln
               for ln in lines), lines
    assert any("tag 'phase_reds': 'type' must be one of bool, int, float, string, enum, got 'integer'" in ln
               for ln in lines)
    assert lines[-1] == f"{len(lines) - 1} problem(s); the configuration cannot be used"


def test_unknown_and_missing_commands() -> None:
    assert main([]) == 0
    assert _scada("nonsense").returncode == 2


def test_generated_demo_matches_shipped_inventory(tmp_path: Path) -> None:
    """The shipped inventory is exactly `config generate --scale demo --seed 42`."""
    out = _scada("config", "generate", "--scale", "demo", "--seed", "42", "--out", str(tmp_path), "--root", str(ROOT))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "inventory.csv").read_text() == (ROOT / "inventory" / "demo.csv").read_text()
    config = load_city(tmp_path / "tags.yaml", tmp_path / "alarms.yaml")
    assert len(config.equipment) == 91


def test_full_scale_inventory_counts() -> None:
    scale = SCALES["dijon"]
    counts: dict[str, int] = {}
    luminaires = 0
    for row in rows(scale, seed=1):
        counts[str(row["type"])] = counts.get(str(row["type"]), 0) + 1
        luminaires += int(row.get("luminaires", 0) or 0)  # type: ignore[call-overload]
    assert counts == {"junction": 113, "lighting_cabinet": 1100, "bollard": 26, "building": 180, "camera": 269,
                      "panel": 25, "parking": 30, "vehicle": 205}
    assert luminaires == 34_000
    layouts = {row["layout"] for row in rows(scale, seed=1) if row["type"] == "junction"}
    assert layouts == {"cross4", "nema8", "tee"}  # simulator and fail-safe monitor read the same column


def test_generated_city_carries_its_vocabulary(tmp_path: Path) -> None:
    """A generated city gets commands.yaml; at full scale the per-junction demo list gives way to the column."""
    from scada.config.generate import generate

    generate(tmp_path / "demo", "demo", 42, ROOT)
    generate(tmp_path / "dijon", "dijon", 42, ROOT)
    demo = (tmp_path / "demo" / "commands.yaml").read_text()
    dijon = (tmp_path / "dijon" / "commands.yaml").read_text()
    assert demo == (ROOT / "commands.yaml").read_text() and "\n  J001: " in demo
    assert "\n  J001: " not in dijon and "crisis_plans:" in dijon
