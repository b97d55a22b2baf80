"""Runs with provenance: commit, date and machine of a run; A/B against an older commit; staleness.

* ``run_info`` says which code a run measured: the short commit of the tree, ``+dirty`` when the files
  the area depends on (``protocol.depends``) differ from it, and a digest of their content.
* ``compare`` measures an area on an older commit and on the working tree in the same invocation. The
  older commit is checked out with ``git worktree`` in a temporary directory, and its ``bench/`` is
  replaced by the working tree's: the *current* measurement runs against the *old* code under test
  (same figures, same sizes, same baselines; only the product code differs). Each side runs in a
  child process of the same interpreter (``sys.executable``, i.e. the same venv) with cwd and
  ``PYTHONPATH`` = its tree, so its imports resolve there before the venv's editable install. Rounds
  are interleaved baseline, new, baseline, new... so that a change of machine load hits both sides.
  The worktree is removed afterwards. An old commit whose API the current bench does not fit fails
  loudly in the child (the traceback is shown); no figure is made up for it.
* ``stale`` lists the areas whose code changed since their BENCHMARKS.md block was measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import document, protocol
from bench.protocol import ROOT, Metric, Section

BASELINE_ENV = "BENCH_BASELINE_REV"  # set in the baseline child: its bench/ is the working tree's


def scada_command(root: Path = ROOT) -> list[str]:
    """``python -m <the scada command's module>`` of the tree under test, for benches that start processes.

    The command moved from ``scada/cli.py`` to the top-level ``cli/`` package; a bench run against an
    older commit (``--baseline-rev``) must start that commit's own command. The file in ``root`` decides,
    not an import: the venv's editable install would otherwise hand an old tree the new command.
    """
    for module, path in (("cli", root / "cli" / "__main__.py"), ("scada.cli", root / "scada" / "cli.py")):
        if path.is_file():
            return [sys.executable, "-m", module]
    raise RuntimeError(f"no scada command in {root} (neither cli/__main__.py nor scada/cli.py)")


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _files(paths: list[str], root: Path) -> list[str]:
    """Tracked and untracked (not ignored) files under ``paths`` that exist in the tree."""
    out = git("ls-files", "-co", "--exclude-standard", "-z", "--", *paths, cwd=root)
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def digest(paths: list[str], root: Path = ROOT) -> str:
    """Content digest of the files under ``paths`` (names and bytes): equal digests, same code measured."""
    h = hashlib.sha256()
    for f in _files(paths, root):
        h.update(f.encode() + b"\0" + (root / f).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def commit(paths: list[str], root: Path = ROOT) -> str:
    short = git("rev-parse", "--short", "HEAD", cwd=root)
    if os.environ.get(BASELINE_ENV):  # bench/ is the working tree's on purpose: judge the code under test only
        paths = [p for p in paths if not p.startswith("bench/")]
    dirty = bool(git("status", "--porcelain", "--", *paths, cwd=root)) if paths else False
    return short + ("+dirty" if dirty else "")


def changed_since(rev: str, paths: list[str], root: Path = ROOT) -> list[str]:
    """Files under ``paths`` that differ between ``rev`` and the working tree (untracked ones included)."""
    diff = git("diff", "--name-only", rev.removesuffix("+dirty"), "--", *paths, cwd=root).splitlines()
    new = git("ls-files", "-o", "--exclude-standard", "--", *paths, cwd=root).splitlines()
    return sorted(set(diff) | set(new))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(fh.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}, {platform.system()}"


@dataclass(frozen=True)
class RunInfo:
    area: str
    commit: str
    date: str  # ISO minute, UTC: 2026-11-23T02:15Z
    machine: str
    load: float  # 1-minute load average at the start
    deps: str
    quick: bool

    def header(self, command: str) -> str:
        when = dt.datetime.strptime(self.date, "%Y-%m-%dT%H:%MZ")
        return (f"Commit `{self.commit}`, run {when:%Y-%m-%d %H:%M} UTC on {self.machine}; load average "
                f"{self.load:.1f} at the start (`{command}`).")

    def attrs(self) -> dict[str, str]:
        out = {"commit": self.commit, "date": self.date, "deps": self.deps}
        return out | ({"quick": ""} if self.quick else {})


def run_info(area: str, quick: bool, root: Path = ROOT) -> RunInfo:
    paths = protocol.depends(area)
    return RunInfo(area, commit(paths, root), f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%MZ}", machine(),
                   os.getloadavg()[0], digest(paths, root), quick)


# ---- one area in a child process (both sides of a comparison)

def child_main(area: str, quick: bool, out: Path) -> None:
    """In the child: run the area here and write the section, its figures and its provenance as JSON."""
    info = run_info(area, quick)
    section = protocol.run(area, quick)
    _check_imports()
    out.write_text(json.dumps({"info": asdict(info), "markdown": section.markdown,
                               "metrics": {k: asdict(m) for k, m in section.metrics.items()}}), encoding="utf-8")


def _check_imports() -> None:
    """Every first-party package this process imported comes from its own tree (not the venv's install)."""
    ours = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    for name in ours & set(sys.modules):
        where = Path(getattr(sys.modules[name], "__file__", None) or "").resolve()
        if not where.is_relative_to(ROOT):
            raise RuntimeError(f"{name} was imported from {where}, not from the measured tree {ROOT}")


def run_child(area: str, quick: bool, root: Path, baseline_of: str = "") -> tuple[RunInfo, Section]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env.pop(BASELINE_ENV, None)
    if baseline_of:
        env[BASELINE_ENV] = baseline_of
    with tempfile.TemporaryDirectory(prefix="bench-child-") as d:
        out = Path(d) / "section.json"
        cmd = [sys.executable, "-m", "bench", "--only", area, "--json-out", str(out), *(["--quick"] if quick else [])]
        # the child's own prints are progress: they go to our stderr, our stdout is the report
        subprocess.run(cmd, cwd=root, env=env, check=True, stdout=sys.stderr)
        data = json.loads(out.read_text(encoding="utf-8"))
    metrics = {k: Metric(**m) for k, m in data["metrics"].items()}
    return RunInfo(**data["info"]), Section(data["markdown"], metrics)


# ---- A/B against an older commit

@dataclass(frozen=True)
class Side:
    label: str
    runs: list[tuple[RunInfo, Section]]

    def values(self, name: str) -> list[float]:
        return [s.metrics[name].value for _, s in self.runs if name in s.metrics]


def _fmt(v: float) -> str:
    if v == 0 or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3g}"


def ratio_table(base: Side, new: Side) -> str:
    """new / baseline per declared figure (medians over the rounds), with which direction is better."""
    first = new.runs[0][1].metrics
    names = [n for n in first if base.values(n)]
    if not names:
        return "The bench declares no comparable figures (no `measure()`): compare the two sections by eye."
    rounds = len(new.runs)
    lines = [f"| figure | baseline {base.label} | working tree | new / baseline | better | verdict |",
             "|---|---|---|---|---|---|"]
    for n in names:
        b, w = base.values(n), new.values(n)
        mb, mw = statistics.median(b), statistics.median(w)
        ratio = mw / mb if mb else float("nan")
        better = first[n].better
        if rounds > 1 and min(w) <= max(b) and min(b) <= max(w):
            verdict = "within noise (ranges overlap)"
        elif ratio == 1 or ratio != ratio:
            verdict = "same"
        else:
            verdict = "better" if (ratio > 1) == (better == "higher") else "worse"
            if rounds == 1:
                verdict += " (1 round: no noise estimate, use --repeat)"
        spread = f" ({_fmt(min(b))}–{_fmt(max(b))})" if rounds > 1 else ""
        spread_w = f" ({_fmt(min(w))}–{_fmt(max(w))})" if rounds > 1 else ""
        lines.append(f"| {n} | {_fmt(mb)}{spread} {first[n].unit} | {_fmt(mw)}{spread_w} {first[n].unit} | "
                     f"{ratio:.2f} | {better} | {verdict} |")
    what = "median of " + (f"{rounds} interleaved rounds each (range in brackets)" if rounds > 1 else "1 round")
    return f"New / baseline, same invocation, {what}:\n\n" + "\n".join(lines)


def compare(area: str, rev: str, quick: bool, repeat: int) -> tuple[Side, Side]:
    """Measure ``area`` on ``rev`` and on the working tree, interleaved A/B ``repeat`` times."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    tree = tmp / "tree"
    git("worktree", "add", "--detach", str(tree), sha)
    try:
        shutil.rmtree(tree / "bench", ignore_errors=True)
        shutil.copytree(protocol.HERE, tree / "bench", ignore=shutil.ignore_patterns("__pycache__"))
        base = Side(f"`{git('rev-parse', '--short', sha)}` ({rev})", [])
        new = Side("working tree", [])
        for k in range(repeat):
            print(f"--- {area}: round {k + 1}/{repeat}, baseline {rev}", file=sys.stderr, flush=True)
            base.runs.append(run_child(area, quick, tree, baseline_of=rev))
            print(f"--- {area}: round {k + 1}/{repeat}, working tree", file=sys.stderr, flush=True)
            new.runs.append(run_child(area, quick, ROOT))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False,
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False, capture_output=True)
    return base, new


# ---- staleness of BENCHMARKS.md

def stale(text: str, root: Path = ROOT) -> list[tuple[str, str]]:
    """(area, why) for every area whose block is missing, legacy, or measured on other code than today's."""
    blocks = {b.area: b for b in document.parse(text)}
    out = []
    for area in protocol.areas():
        paths = protocol.depends(area)
        block = blocks.get(area)
        if block is None:
            out.append((area, "no section in BENCHMARKS.md"))
            continue
        if not block.legacy and block.attrs.get("deps") == digest(paths, root):
            continue
        try:
            files = changed_since(block.commit, paths, root)
        except subprocess.CalledProcessError:
            files = []
        why = "legacy: figures copied by hand before `--out`" if block.legacy else "code changed"
        if files:
            shown = ", ".join(files[:8]) + (f" and {len(files) - 8} more" if len(files) > 8 else "")
            why += f"; differ from {block.commit.removesuffix('+dirty')}: {shown}"
        elif not block.legacy:
            why += f" (content differs from the run at {block.commit})"
        out.append((area, why))
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values; with 30 values p99 is the maximum)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (from /proc; NaN when it has none)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def print_log_tails(work: Path, names: Sequence[str] = ("sim.log", "server.log"), lines: int = 15) -> None:
    """The last ``lines`` of each child's log in ``work`` on stderr (a bench that failed says why)."""
    for name in names:
        with contextlib.suppress(OSError):
            tail = (work / name).read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {name} (last lines)\n" + "\n".join(tail), file=sys.stderr)


def stop_children(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    """Stop the bench's child processes, the last started first: SIGINT, then a kill after ``timeout_s``."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def wait_json(path: Path, pid: int, timeout: float, proc: subprocess.Popen[bytes],
                    every: float = 0.2) -> dict[str, Any]:
    """The JSON file a child process (``scada sim`` / ``scada server``) writes once it is up, checked to be
    that child's (its ``pid``); the child exiting first, or ``timeout`` passing, raises."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if data.get("pid") == pid:
                return dict(data)
        await asyncio.sleep(every)
    raise TimeoutError(f"{path} not written within {timeout} s")
