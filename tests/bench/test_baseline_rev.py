"""``python -m bench --baseline-rev``: an older commit and the working tree measured in one invocation.

A real run of the quick tag database bench on HEAD~1 (a ``git worktree``) and on the working tree,
two interleaved rounds each; the ratio table must be new / baseline of the medians it prints, the
baseline must have measured the old commit, and the worktree must be gone afterwards.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys

import pytest

from bench import protocol
from bench.protocol import ROOT

ROW = re.compile(r"^\| (?P<name>[^|]+) \| (?P<base>[\d.,e+-]+) \(.*?\) [^|]+ \| (?P<new>[\d.,e+-]+) \(.*?\) [^|]+ \| "
                 r"(?P<ratio>[\d.]+) \| (?P<better>higher|lower) \| (?P<verdict>[^|]+) \|$")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def test_tagdb_against_the_previous_commit() -> None:
    try:
        old = _git("rev-parse", "--short", "HEAD~1")
    except subprocess.CalledProcessError:
        pytest.skip("shallow clone: no HEAD~1")
    worktrees = _git("worktree", "list", "--porcelain")
    run = subprocess.run([sys.executable, "-m", "bench", "--only", "tagdb", "--quick", "--baseline-rev", "HEAD~1",
                          "--repeat", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    # both sections, each headed by the commit it measured
    assert f"**Baseline `{old}` (HEAD~1)** (its code under test, this bench): Commit `{old}`," in out
    head = _git("rev-parse", "--short", "HEAD")
    assert re.search(rf"\*\*Working tree\*\*: Commit `{head}(\+dirty)?`,", out)
    assert out.count("### Tag database (34,000 tags") == 2
    # interleaved A/B/A/B
    rounds = re.findall(r"round (\d)/2, (baseline|working tree)", run.stderr)
    assert rounds == [("1", "baseline"), ("1", "working tree"), ("2", "baseline"), ("2", "working tree")]
    # one ratio row per declared figure, ratio = new / baseline of the printed medians
    rows = [m for line in out.splitlines() if (m := ROW.match(line))]
    section = protocol.run("tagdb", quick=True)  # the figures the bench declares (names and directions)
    assert {m["name"] for m in rows} == set(section.metrics)
    for m in rows:
        assert m["better"] == section.metrics[m["name"]].better
        expected = _num(m["new"]) / _num(m["base"])
        assert abs(float(m["ratio"]) - expected) <= 0.01 + 0.01 * expected, m.group(0)
        assert m["verdict"].strip() in {"better", "worse", "same", "within noise (ranges overlap)"}
    assert statistics.median([float(m["ratio"]) for m in rows]) > 0
    # the worktree is removed
    assert _git("worktree", "list", "--porcelain") == worktrees
