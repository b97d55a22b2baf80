"""OPC UA load source for bench_drivers: one asyncua 2.1.0 server per process, changing many Doubles.

    python -m bench.opcua_load --items 5000 --period-ms 500 --lifetime 300 [--stats FILE] [--stock]

    ┌ child process (this module) ─────────────────────────────┐
    │ asyncua Server on 127.0.0.1:0/load, ns urn:bench:load    │  prints "127.0.0.1:PORT" once listening
    │   L000/v000 .. L049/v099  Doubles (≤ 100 per object)     │
    │ writer: a new value for EVERY item once per publishing   │── PublishResponses ──► the bench client
    │   interval (server.write_attribute_value → monitored     │   (one per subscription per period,
    │   items), right after each publish                       │    `items` notifications each)
    │ stats FILE (JSON, every 0.5 s): rounds, writes, late     │
    └──────────────────────────────────────────────────────────┘

Offered rate = items / period. The client subscribes with publishing interval = period and queue
size 1; the writer writes the next round as soon as the previous one has been published (never
sooner than period / 2), so every write becomes exactly one notification and every PublishResponse
carries all the items (see ``serve``).

Why a patch (fast path, the default): asyncua's server deep-copies every written DataValue into each
monitored item (``MonitoredItemValues.set_current_datavalue``: ``copy.deepcopy``, ~30 µs per write):
measured in bench_drivers, a stock process costs 2-2.5x more CPU per notification than this one
(~11,500 vs ~27,000 notifications per server CPU-second on the 2-core bench machine). The writer
builds a fresh DataValue for every write and never mutates it, so this process keeps a reference
instead of a deep copy. Everything else (the address space write, type check, datachange callbacks,
change detection, the per-subscription queue, the publish loop and the binary encoding on the wire)
is asyncua's own code; ``--stock`` keeps the deep copy, for comparison.

Bounded lifetime: the process exits after ``--lifetime`` seconds, as soon as its parent process is
gone (polled every 0.5 s), and SIGALRM kills it ``--lifetime + 30`` s after start even if its event
loop were stuck. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

NAMESPACE = "urn:bench:load"
PATH = "/load"
PER_OBJECT = 100


def node_key(n: int) -> str:
    """The string identifier of item ``n`` (``L{object}/v{index}``, ≤ 100 variables per object)."""
    return f"L{n // PER_OBJECT:03d}/v{n % PER_OBJECT:03d}"


def _nid(identifier: str, idx: int) -> Any:
    from asyncua import ua

    return ua.NodeId(identifier, idx)  # type: ignore[arg-type]  # asyncua's NewType aliases of str/int


def _patch_no_deepcopy() -> None:
    from asyncua.server.monitored_item_service import MonitoredItemValues

    def set_current_datavalue(self: MonitoredItemValues, cur_val: Any) -> None:
        self.old_dvalue = self.current_dvalue
        self.current_dvalue = cur_val  # the writer never mutates a DataValue it has written

    MonitoredItemValues.set_current_datavalue = set_current_datavalue  # type: ignore[method-assign]


async def serve(items: int, period_s: float, lifetime_s: float, stats: Path | None) -> None:
    from asyncua import ua
    from asyncua.server.server import Server

    parent = os.getppid()
    deadline = time.monotonic() + lifetime_s
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:0{PATH}")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NAMESPACE)
    ids: list[Any] = []
    obj: Any = None
    for n in range(items):
        if n % PER_OBJECT == 0:
            name = f"L{n // PER_OBJECT:03d}"
            obj = await server.nodes.objects.add_object(_nid(name, idx), f"{idx}:{name}")
        v = await obj.add_variable(_nid(node_key(n), idx), f"{idx}:v{n % PER_OBJECT:03d}", 0.0,
                                   varianttype=ua.VariantType.Double)
        ids.append(v.nodeid)
    await server.start()
    assert server.bserver is not None
    print(f"127.0.0.1:{server.bserver.port}", flush=True)

    rounds = writes = late = 0

    def dump() -> None:
        if stats is not None:
            tmp = stats.with_suffix(".tmp")
            tmp.write_text(json.dumps({"rounds": rounds, "writes": writes, "late": late,
                                       "cpu_s": time.process_time(), "t": time.monotonic(), "items": items,
                                       "period_s": period_s}))
            os.replace(tmp, stats)

    async def watchdog() -> None:
        while time.monotonic() < deadline and os.getppid() == parent:
            dump()
            await asyncio.sleep(0.5)

    guard = asyncio.create_task(watchdog())
    double = ua.VariantType.Double
    write = server.write_attribute_value
    subs = server.iserver.subscription_service.subscriptions
    last = -math.inf
    while not guard.done():
        # Paced on the publishes: with queue size 1 a second write of an item before its previous
        # value has left in a PublishResponse would overwrite it (a lost change), so the next round is
        # written as soon as every subscription has published the previous one (i.e. once per
        # publishing interval), never sooner than half a period after the previous round; with no
        # subscription, once per period. A round more than 1.5 periods after the previous one is
        # counted in `late` (a publish that went out without new values).
        now_m = time.monotonic()
        if any(sub._triggered_datachanges for sub in subs.values()) or now_m < last + (
                period_s / 2 if subs else period_s):
            await asyncio.sleep(0.01)
            continue
        if now_m - last > 1.5 * period_s and rounds:
            late += 1
        last = now_m
        now = dt.datetime.now(dt.UTC)
        base = float(rounds * items)
        for n, nid in enumerate(ids):
            await write(nid, ua.DataValue(ua.Variant(base + n, double),
                                          SourceTimestamp=now, ServerTimestamp=now))  # type: ignore[arg-type]
        rounds += 1
        writes += items
    dump()
    # asyncua's stop() waits for its 1 s server-clock loop to notice a flag; cancel it instead
    time_task = getattr(server.iserver, "time_task", None)
    if time_task is not None and not time_task.done():
        time_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await time_task
        server.iserver.time_task = None
    with contextlib.suppress(Exception):  # exiting anyway
        await asyncio.wait_for(server.stop(), 5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.opcua_load", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--period-ms", type=float, default=500.0)
    parser.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    parser.add_argument("--stats", type=Path, help="JSON counters written every 0.5 s")
    parser.add_argument("--stock", action="store_true", help="keep asyncua's deep copy per monitored item")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(args.lifetime) + 30)  # hard bound, even with a stuck loop
    logging.basicConfig(level=logging.ERROR)
    if not args.stock:
        _patch_no_deepcopy()
    asyncio.run(serve(args.items, args.period_ms / 1000.0, args.lifetime, args.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
