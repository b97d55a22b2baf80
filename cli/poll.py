"""``scada poll``: poll the configured devices into a tag database and show a live summary.

For engineers checking a new device (or a whole city against the simulator) before the full
server::

    scada sim --state-dir /tmp/sim &                      # writes /tmp/sim/endpoints.json
    scada poll --config tags.yaml --endpoints /tmp/sim/endpoints.json --duration 30
    scada poll --config tags.yaml --devices 'J00*' --show-tags 'dijon/junction/J001/*'

The live table (rich) shows per device: protocol, status (starting/ok/lost/refused), requests,
errors, last cycle latency, achieved period, and how many of its tags are good / bad. The exit
code is 1 when a device ended lost or refused, 2 for a configuration error, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import logging
import time
from pathlib import Path

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from drivers.registry import DriverFactory
from scada.config import CityConfig, load_city
from scada.errors import ConfigError
from scada.poll import STATUS_ENUM, Poller, device_stat_tags, percentile
from scada.quality import Quality
from scada.tagdb import TagDatabase

log = logging.getLogger(__name__)

_STYLE = {"ok": "green", "lost": "red", "refused": "magenta", "starting": "yellow"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="tags.yaml", help="tags file (default tags.yaml)")
    parser.add_argument("--alarms", default=None, help="alarms file to validate with the tags (optional)")
    parser.add_argument("--endpoints", default=None,
                        help="JSON {logical endpoint: address} overriding tags.yaml (the simulator's endpoints.json)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to poll (default 10)")
    parser.add_argument("--devices", default="*", help="glob on device names (default every device)")
    parser.add_argument("--show-tags", default=None, help="glob of tag names whose values are listed live")
    parser.add_argument("--refresh", type=float, default=1.0, help="live summary refresh period, s")
    parser.add_argument("--no-live", action="store_true", help="no live display: print the summary at the end")


def summary_table(config: CityConfig, poller: Poller, db: TagDatabase, elapsed: float) -> Table:
    table = Table(title=f"{config.site}: {len(poller.stats)} devices, {elapsed:.0f} s", expand=False)
    for col, justify in (("device", "left"), ("protocol", "left"), ("status", "left"), ("requests", "right"),
                         ("errors", "right"), ("latency ms", "right"), ("period ms", "right"),
                         ("good", "right"), ("bad", "right"), ("last error", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, st in poller.stats.items():
        dev = config.devices[name]
        idx = db.indices(dev.tags)
        q = db.qualities[idx]
        good = int(np.count_nonzero(q == Quality.GOOD))
        bad = int(np.count_nonzero(q >= Quality.BAD_COMM))
        label = STATUS_ENUM[st.status]
        periods = list(st.intervals)
        table.add_row(name, dev.protocol, f"[{_STYLE.get(label, '')}]{label}[/]", str(st.requests), str(st.errors),
                      f"{st.latency_s * 1000:.1f}", f"{percentile(periods, 50) * 1000:.0f}" if periods else "-",
                      str(good), str(bad), st.last_error[:60])
    return table


def tags_table(db: TagDatabase, pattern: str) -> Table:
    table = Table(title=f"tags {pattern}")
    for col in ("tag", "value", "quality"):
        table.add_column(col)
    for i in db.match(pattern)[:40]:
        s = db.read(db.names[int(i)])
        table.add_row(db.names[int(i)], repr(s.value), s.quality.label)
    return table


async def run(config: CityConfig, devices: list[str], duration: float, refresh: float, live: bool,
              show_tags: str | None, console: Console) -> int:
    db = TagDatabase(config.tags + device_stat_tags(config, devices))
    factory = DriverFactory(config)
    poller = Poller(config, factory, db, devices=devices)
    t0 = time.monotonic()
    await poller.start()

    def render() -> Table | Group:
        t = summary_table(config, poller, db, time.monotonic() - t0)
        return Group(t, tags_table(db, show_tags)) if show_tags else t

    try:
        if live:
            with Live(render(), console=console, refresh_per_second=max(1.0, 1 / refresh)) as view:
                while time.monotonic() - t0 < duration:
                    await asyncio.sleep(min(refresh, max(0.0, duration - (time.monotonic() - t0))))
                    view.update(render())
        else:
            await asyncio.sleep(duration)
    finally:
        await poller.aclose()
        await factory.aclose()
    if not live:
        console.print(render())
    # devices whose first scheduled cycle has not come yet (a 60 s class in a 10 s run) are not failures
    ok = all(STATUS_ENUM[st.status] in ("ok", "starting") for st in poller.stats.values())
    return 0 if ok else 1


def main(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    overrides: dict[str, str] = {}
    if args.endpoints:
        try:
            overrides = {str(k): str(v) for k, v in json.loads(Path(args.endpoints).read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            console.print(f"[red]{args.endpoints}: cannot read the endpoints JSON: {exc}[/]")
            return 2
    try:
        config = load_city(args.config, args.alarms, endpoint_overrides=overrides)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    devices = [n for n in config.devices if fnmatch.fnmatchcase(n, args.devices)]
    if not devices:
        console.print(f"[red]no device matches {args.devices!r}[/]")
        return 2
    console.print(f"polling {len(devices)} device(s), {sum(len(config.devices[d].tags) for d in devices)} tags, "
                  f"for {args.duration:g} s")
    return asyncio.run(run(config, devices, args.duration, args.refresh, not args.no_live, args.show_tags, console))


__all__ = ["add_arguments", "main", "run", "summary_table"]
