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

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from scada.config import load_city
from scada.tagdb import TagDatabase
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
config = load_city(sys.argv[1], sys.argv[2])
t1 = time.perf_counter()
db = TagDatabase(config.tags)
t2 = time.perf_counter()
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tags": len(config.tags), "devices": len(config.devices), "equipment": len(config.equipment),
                  "load_s": t1 - t0, "tagdb_s": t2 - t1, "rss0_mb": rss0 / 1024, "rss1_mb": rss1 / 1024}))
"""


def main(quick: bool = False) -> str:
    from scada.config.generate import generate

    scale = "demo" if quick else "dijon"
    with tempfile.TemporaryDirectory() as tmp:
        tags = generate(Path(tmp), scale, 42, ROOT)
        out = subprocess.run([sys.executable, "-c", CHILD, str(tags), str(Path(tmp) / "alarms.yaml")],
                             capture_output=True, text=True, check=True, cwd=ROOT)
    r = json.loads(out.stdout)
    return "\n".join([
        f"### Configuration load ({scale} scale)", "",
        "| equipment | devices | tags | load + validate | tag database build | RSS before | RSS after |",
        "|---|---|---|---|---|---|---|",
        f"| {r['equipment']:,} | {r['devices']:,} | {r['tags']:,} | {r['load_s']:.2f} s | {r['tagdb_s']:.2f} s | "
        f"{r['rss0_mb']:.0f} MB | {r['rss1_mb']:.0f} MB |", "",
        "Targets: load + validate < 10 s; tag database RSS < 1 GB.", ""])


if __name__ == "__main__":
    print(main())
