"""Load + validate the full-scale generated Dijon configuration; tag database RSS for it.

Runs in a child process so the RSS figure is the loader's and the tag database's alone. The
baseline in the same run is the interpreter with numpy and the loader imported but nothing loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.protocol import Metric, Section

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Configuration load"
DEPENDS = ["scada/config", "scada/tagdb.py", "scada/quality.py", "tags.yaml", "alarms.yaml", "commands.yaml",
           "inventory"]

CHILD = r"""
import json, sys, time


def peak_mb():
    # VmHWM is this process's own peak RSS; getrusage's ru_maxrss would carry the peak of the parent
    # that forked it (Linux keeps it across exec), i.e. of whatever bench ran before in that process
    with open("/proc/self/status", encoding="utf-8") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


from scada.config import load_city
from scada.tagdb import TagDatabase
rss0 = peak_mb()
t0 = time.perf_counter()
config = load_city(sys.argv[1], sys.argv[2])
t1 = time.perf_counter()
db = TagDatabase(config.tags)
t2 = time.perf_counter()
rss1 = peak_mb()
print(json.dumps({"tags": len(config.tags), "devices": len(config.devices), "equipment": len(config.equipment),
                  "load_s": t1 - t0, "tagdb_s": t2 - t1, "rss0_mb": rss0, "rss1_mb": rss1}))
"""


def main(quick: bool = False) -> str:
    return measure(quick).markdown


def measure(quick: bool = False) -> Section:
    from scada.config.generate import generate

    scale = "demo" if quick else "dijon"
    with tempfile.TemporaryDirectory() as tmp:
        tags = generate(Path(tmp), scale, 42, ROOT)
        out = subprocess.run([sys.executable, "-c", CHILD, str(tags), str(Path(tmp) / "alarms.yaml")],
                             capture_output=True, text=True, check=True, cwd=ROOT)
    r = json.loads(out.stdout)
    load_met = "met" if r["load_s"] < 10 else "NOT met"
    rss_met = "met" if r["rss1_mb"] < 1024 else "NOT met"
    markdown = "\n".join([
        f"### Configuration load ({scale} scale)", "",
        "A child process loads and validates the generated city and builds its tag database, so the RSS is the "
        "loader's alone. Baseline (same run): the RSS of that interpreter with numpy and the loader imported but "
        "nothing loaded (\"peak RSS before\", the kernel's VmHWM); the times have no baseline, only targets.", "",
        "| equipment | devices | tags | load + validate | tag database build | peak RSS before | peak RSS after |",
        "|---|---|---|---|---|---|---|",
        f"| {r['equipment']:,} | {r['devices']:,} | {r['tags']:,} | {r['load_s']:.2f} s | {r['tagdb_s']:.2f} s | "
        f"{r['rss0_mb']:.0f} MB | {r['rss1_mb']:.0f} MB |", "",
        f"Targets: load + validate < 10 s ({load_met}, {r['load_s']:.2f} s); tag database RSS < 1 GB ({rss_met}, "
        f"{r['rss1_mb']:.0f} MB for the process)" + (" — quick run: the targets are for the dijon scale." if quick
                                                    else "."), ""])
    return Section(markdown, {
        "load + validate": Metric(r["load_s"], "s", "lower"),
        "tag database build": Metric(r["tagdb_s"], "s", "lower"),
        "peak RSS after minus before": Metric(r["rss1_mb"] - r["rss0_mb"], "MB", "lower"),
    })

if __name__ == "__main__":
    print(main())
