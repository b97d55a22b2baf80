"""Benchmarks: `python -m bench` runs them all (`--quick` for a smoke run, `--only tagdb,alarms`).

Each bench_<area>.py exposes ``main(quick: bool = False) -> str`` returning a markdown section that
compares against a baseline measured in the same run (a ratio), because these machines are noisy;
optionally ``measure()`` with the comparable figures, ``TITLE`` and ``DEPENDS`` (bench/protocol.py).
``--out`` writes the sections into BENCHMARKS.md with their commit and date, ``--baseline-rev`` measures
an older commit in the same invocation, ``--stale`` lists what changed since (bench/README.md).
"""
