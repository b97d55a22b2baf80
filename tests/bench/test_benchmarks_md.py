"""BENCHMARKS.md can be trusted: every figure sits in a block a run wrote, with its commit and date.

Also the machinery that keeps it so: ``--out`` replaces one area's block and keeps everything else,
``--stale`` lists the areas whose code changed since their block was measured.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import document, harness, protocol
from bench.protocol import ROOT

MD = ROOT / "BENCHMARKS.md"
COMMIT = re.compile(r"^[0-9a-f]{7,40}(\+dirty)?$")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def _date(block: document.Block) -> dt.datetime:
    return dt.datetime.strptime(block.attrs["date"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def blocks() -> list[document.Block]:
    return document.parse(MD.read_text(encoding="utf-8"))


def test_every_section_holds_a_block_with_commit_and_date(blocks: list[document.Block]) -> None:
    text = MD.read_text(encoding="utf-8")
    for heading, body in document.sections(text):
        assert "<!-- bench " in body, f"section {heading!r} has no bench block (figures must come from a run)"
    for b in blocks:
        assert COMMIT.match(b.commit), f"{b.area}: no commit in its marker: {b.attrs}"
        assert b.attrs.get("date"), f"{b.area}: no date in its marker"
        assert _date(b) <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5), f"{b.area}: run date in the future"
        if not b.legacy:
            assert b.attrs.get("deps"), f"{b.area}: a run's block carries the digest of what it measured"
            assert f"Commit `{b.commit}`, run {_date(b):%Y-%m-%d %H:%M} UTC" in b.body, \
                f"{b.area}: the block's header line must say the commit and date of its marker"


def test_every_commit_is_in_the_history(blocks: list[document.Block]) -> None:
    for b in blocks:
        sha = b.commit.removesuffix("+dirty")
        assert _git("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0, f"{b.area}: {sha} is not a commit"
        if not b.legacy:  # a run measures a commit that exists: its commit time precedes the run
            committed = int(_git("show", "-s", "--format=%ct", sha).stdout)
            assert committed <= _date(b).timestamp() + 60, f"{b.area}: run dated before its commit {sha}"


def test_one_block_per_bench_area(blocks: list[document.Block]) -> None:
    areas = [b.area for b in blocks]
    assert sorted(areas) == sorted(set(areas)), "an area has two blocks"
    assert set(areas) == set(protocol.areas()), "every bench module has its block, and only they have one"


def test_no_table_outside_a_block() -> None:
    """A markdown table outside the markers would be figures typed by hand."""
    text = MD.read_text(encoding="utf-8")
    spans = [(b.start, b.end) for b in document.parse(text)]
    pos = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("|"):
            assert any(a <= pos < e for a, e in spans), f"table row outside every bench block: {line.strip()}"
        pos += len(line)


# ---- the document functions and the CLI that write and judge it

def test_update_replaces_only_its_block_and_keeps_the_prose() -> None:
    text = ("# B\n\nintro\n\n## A\n\n" + document.render("a", {"commit": "1", "date": "d"}, "old a") +
            "\n\nnotes on a\n\n## B\n\n" + document.render("b", {"commit": "2", "date": "d"}, "old b") + "\n")
    out = document.update(text, "a", "A", document.render("a", {"commit": "3", "date": "e"}, "new a"))
    assert "old a" not in out and "new a" in out and "notes on a" in out and "old b" in out
    assert [b.commit for b in document.parse(out)] == ["3", "2"]
    added = document.update(out, "c", "C", document.render("c", {"commit": "4", "date": "f"}, "c body"))
    assert added.startswith(out.rstrip("\n")) and added.endswith("## C\n\n" + document.render(
        "c", {"commit": "4", "date": "f"}, "c body") + "\n")


def test_parse_refuses_unpaired_markers() -> None:
    with pytest.raises(ValueError):
        document.parse("<!-- bench area=a commit=1 -->\nx\n")
    with pytest.raises(ValueError):
        document.parse("<!-- bench area=a commit=1 -->\nx\n<!-- /bench area=b -->\n")
    with pytest.raises(ValueError):
        document.parse("x\n<!-- /bench area=a -->\n")


def test_stale_judges_by_the_content_measured() -> None:
    paths = protocol.depends("tagdb")
    head = harness.git("rev-parse", "--short", "HEAD")
    fresh = document.render("tagdb", {"commit": head, "date": "2026-01-01T00:00Z", "deps": harness.digest(paths)}, "x")
    old = document.render("config", {"commit": head, "date": "2026-01-01T00:00Z", "deps": "0" * 16}, "x")
    legacy = document.render("historian", {"commit": head, "date": "2026-01-01T00:00Z", "legacy": ""}, "x")
    stale = dict(harness.stale("\n".join([fresh, old, legacy])))
    assert "tagdb" not in stale
    assert "config" in stale and stale["config"].startswith("code changed")
    assert stale["historian"].startswith("legacy")
    assert stale["alarms"] == "no section in BENCHMARKS.md"


def test_stale_cli_lists_the_legacy_blocks(blocks: list[document.Block]) -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--stale"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    listed = {line.split(":", 1)[0] for line in out.splitlines()}
    assert {b.area for b in blocks if b.legacy} <= listed


def test_out_writes_the_run_into_its_block(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    shutil.copyfile(MD, md)
    before = {b.area: b for b in document.parse(md.read_text(encoding="utf-8"))}
    started = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    run = subprocess.run([sys.executable, "-m", "bench", "--only", "config", "--quick", "--out", str(md)], cwd=ROOT,
                         check=True, capture_output=True, text=True, timeout=300)
    text = md.read_text(encoding="utf-8")
    after = {b.area: b for b in document.parse(text)}
    assert set(after) == set(before)
    for area, b in before.items():
        if area != "config":
            assert after[area].body == b.body and after[area].attrs == b.attrs
    cfg = after["config"]
    assert cfg.commit == harness.commit(protocol.depends("config"))
    assert cfg.attrs["deps"] == harness.digest(protocol.depends("config")) and "quick" in cfg.attrs
    assert started <= _date(cfg) <= dt.datetime.now(dt.UTC)
    assert "### Configuration load (demo scale)" in cfg.body
    assert cfg.body.strip() in run.stdout, "the block is what the run printed, verbatim"
    # the prose outside the blocks is untouched
    strip = [(b.start, b.end) for b in document.parse(MD.read_text(encoding="utf-8"))]
    orig = MD.read_text(encoding="utf-8")
    outside = "".join(orig[e:s] for (_, e), (s, _) in zip([(0, 0), *strip], [*strip, (len(orig), 0)], strict=True))
    strip2 = [(b.start, b.end) for b in document.parse(text)]
    outside2 = "".join(text[e:s] for (_, e), (s, _) in zip([(0, 0), *strip2], [*strip2, (len(text), 0)],
                                                          strict=True))
    assert outside2 == outside
