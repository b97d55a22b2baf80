"""``python -m bench``: run benchmarks, write them into BENCHMARKS.md, compare with an older commit.

    python -m bench [--quick] [--only tagdb,config]      print the sections
    python -m bench --only tagdb --out                   ... and replace the area's block in BENCHMARKS.md
    python -m bench --only tagdb --baseline-rev HEAD~3 [--repeat 3]
                                                         old commit vs working tree, same invocation
    python -m bench --stale | --rerun-stale              which blocks were measured on other code

See bench/README.md for the protocol of a bench module and the format of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import document, harness, protocol
from bench.protocol import ROOT

DEFAULT_OUT = ROOT / "BENCHMARKS.md"


def _command(area: str, args: argparse.Namespace) -> str:
    parts = ["python -m bench", f"--only {area}"]
    if args.quick:
        parts.append("--quick")
    if args.baseline_rev:
        parts.append(f"--baseline-rev {args.baseline_rev}")
        if args.repeat > 1:
            parts.append(f"--repeat {args.repeat}")
    if args.out is not None:
        parts.append("--out")
    return " ".join(parts)


def _write(out: Path, area: str, info: harness.RunInfo, body: str) -> None:
    text = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    block = document.render(area, info.attrs(), body)
    out.write_text(document.update(text, area, protocol.title(area), block), encoding="utf-8")
    print(f"--- {area}: block written to {out}", file=sys.stderr, flush=True)


def _run(area: str, args: argparse.Namespace) -> None:
    if args.baseline_rev:
        base, new = harness.compare(area, args.baseline_rev, args.quick, args.repeat)
        binfo, bsec = base.runs[0]
        ninfo, nsec = new.runs[0]
        cmd = _command(area, args)
        table = harness.ratio_table(base, new)
        print(f"## {protocol.title(area)}: baseline {base.label} vs working tree\n")
        print(f"**Baseline {base.label}** (its code under test, this bench): {binfo.header(cmd)}\n")
        print(bsec.markdown)
        print(f"**Working tree**: {ninfo.header(cmd)}\n")
        print(nsec.markdown)
        print(table + "\n")
        if args.out is not None:
            _write(args.out, area, ninfo, f"{ninfo.header(cmd)}\n\n{nsec.markdown.rstrip()}\n\n"
                   f"Against {base.label}, {binfo.header(cmd)}\n\n{table}")
        return
    info = harness.run_info(area, args.quick)
    print(f"--- {area} ...", file=sys.stderr, flush=True)
    section = protocol.run(area, args.quick)
    header = info.header(_command(area, args))
    print(f"## {protocol.title(area)}\n\n{header}\n\n{section.markdown}")
    if args.out is not None:
        _write(args.out, area, info, f"{header}\n\n{section.markdown}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated areas, e.g. tagdb,config")
    parser.add_argument("--out", type=Path, nargs="?", const=DEFAULT_OUT, default=None,
                        help="replace each area's block in this file (default BENCHMARKS.md)")
    parser.add_argument("--baseline-rev", default="", help="also measure this commit (git worktree), A/B")
    parser.add_argument("--repeat", type=int, default=1, help="A/B rounds with --baseline-rev")
    parser.add_argument("--stale", action="store_true", help="list the areas measured on other code")
    parser.add_argument("--rerun-stale", action="store_true", help="re-run the stale areas with --out")
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)  # child side of --baseline-rev
    args = parser.parse_args()
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    for area in wanted:
        if area not in protocol.areas():  # unknown names fail before anything runs
            parser.error(f"unknown area {area!r}; areas: {', '.join(protocol.areas())}")
    if args.json_out:
        if len(wanted) != 1:
            parser.error("--json-out needs exactly one --only area")
        harness.child_main(wanted[0], args.quick, args.json_out)
        return 0
    if args.repeat < 1 or (args.repeat > 1 and not args.baseline_rev):
        parser.error("--repeat N (N >= 1) goes with --baseline-rev")
    if args.baseline_rev and len(wanted) != 1:
        parser.error("--baseline-rev compares one area: give --only AREA")
    if args.stale or args.rerun_stale:
        doc = args.out or DEFAULT_OUT
        stale = harness.stale(doc.read_text(encoding="utf-8"))
        for area, why in stale:
            print(f"{area}: {why}")
        if args.stale:
            return 0
        args.out = doc
        for area in [a for a, _ in stale if not wanted or a in wanted]:
            _run(area, args)
        return 0
    for area in wanted or protocol.areas():
        _run(area, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
