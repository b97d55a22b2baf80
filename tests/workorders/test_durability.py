"""kill -9 of a writer loses nothing it acknowledged: a subprocess creates and advances orders through the
real façade and prints each order id once its call returned; the parent kills it mid-stream and reopens the
store. Every acknowledged change is there, and the journal still replays to the stored orders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scada.workorders import Status, WorkOrderStore
from tests.workorders.conftest import ROOT

WRITER = """
import sys
from pathlib import Path
from scada.config import load_city
from scada.workorders import Action, WorkOrders, WorkOrderStore, load_crews
root = Path(sys.argv[2])
city = load_city(root / "tags.yaml", root / "alarms.yaml")
book = WorkOrders(WorkOrderStore(sys.argv[1]), city, load_crews(root / "crews.yaml", city))
cabinets = sorted(e.id for e in city.equipment.values() if e.template == "lighting_cabinet")
t = 1_800_000_000_000
for k in range(100_000):
    t += 1000
    order, _ = book.create("op", cabinets[k % len(cabinets)], f"order {k}", 3, t)
    print("created", order.id, flush=True)
    book.act(order.id, Action.ASSIGN, "op", t, {"crew": "lighting-day"})
    print("assigned", order.id, flush=True)
"""


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "workorders.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(ROOT)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    acked: list[tuple[str, str]] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acked) < 120 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            kind, oid = line.split()
            acked.append((kind, oid))
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writer never closes anything
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert len(acked) >= 120, err
    with WorkOrderStore(db) as store:
        for kind, oid in acked:
            order = store.get(oid)
            assert order is not None, oid
            if kind == "assigned":
                assert order.status is Status.ASSIGNED and order.crew == "lighting-day"
        assert store.verify() == []
        orders, changes = store.count()
        assert orders >= len({oid for _, oid in acked}) and changes >= len(acked)
