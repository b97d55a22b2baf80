"""Work-order KPIs: a small case computed by hand, and a golden report over a generated month of orders
(every order driven through the real façade and store at fixed times; ``UPDATE_GOLDEN=1`` rewrites the file
after a deliberate change of the report)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from scada.config import CityConfig
from scada.workorders import Action, compute
from tests.workorders.conftest import HOUR, MIN, T0, Book

GOLDEN = Path(__file__).parent / "golden" / "kpi_month.json"
DAY = 24 * HOUR


def test_hand_computed_figures(book: Book) -> None:
    o = book.orders
    a, _ = o.create("op", "C0001", "lamp out", 4, T0)  # lighting P4: due in 3 days
    o.act(a.id, Action.ASSIGN, "op", T0 + 10 * MIN, {"crew": "lighting-day"})
    o.act(a.id, Action.EN_ROUTE, "c", T0 + 30 * MIN)
    o.act(a.id, Action.ON_SITE, "c", T0 + 50 * MIN)
    o.act(a.id, Action.DONE, "c", T0 + 90 * MIN)  # no alarm active: resolved at once
    b, _ = o.create("op", "C0001", "cabinet door", 1, T0 + HOUR)  # lighting P1: due in 4 h, never done
    o.act(b.id, Action.ASSIGN, "op", T0 + HOUR + 30 * MIN, {"crew": "lighting-night"})
    c, _ = o.create("op", "J001", "bad plan", 3, T0 + 2 * HOUR)
    o.act(c.id, Action.CANCEL, "op", T0 + 3 * HOUR, {"reason": "duplicate"})
    o.create("op", "C0002", "outside the period", 3, T0 + 2 * DAY)
    r = compute(book.store.iter_orders(), T0, T0 + DAY)
    assert r.total.orders == 3
    assert (r.total.to_acknowledge.count, r.total.to_acknowledge.mean_min) == (2, 20.0)  # 10 and 30 min
    assert (r.total.to_dispatch.count, r.total.to_dispatch.median_min) == (1, 30.0)
    assert (r.total.to_repair.count, r.total.to_repair.mean_min) == (1, 90.0)
    assert r.total.backlog == 2  # a: resolved but not closed, b: assigned; c cancelled
    assert r.total.sla_breaches == 1  # b, due at T0 + 5 h, not done by the end of the day
    lighting = next(g for g in r.by_service if g.service == "lighting")
    assert (lighting.orders, lighting.sla_breaches) == (2, 1)
    assert r.repeat_failures == [("C0001", 1)]
    assert {(g.service, g.commune) for g in r.by_service_commune} == {("lighting", "Dijon"), ("traffic", "Talant")}


def generate_month(book: Book, city: CityConfig, seed: int = 18) -> None:
    """A month of orders: ~15 a day over the demo city's cabinets, junctions and buildings; crews answer
    with random delays; a few cannot repair, a few are cancelled, some recur; time passes in ticks."""
    rnd = random.Random(seed)
    o = book.orders
    pool = sorted(e.id for e in city.equipment.values() if e.template in ("lighting_cabinet", "junction", "building"))
    crews_of = {"lighting": ["lighting-day", "lighting-night"], "traffic": ["traffic-east", "traffic-west"],
                "buildings": ["buildings-1"]}
    t = T0
    for day in range(30):
        t = max(t, T0 + day * DAY)
        for _ in range(rnd.randint(10, 20)):
            t += rnd.randint(20, 140) * MIN
            eq = rnd.choice(pool)
            order, created = o.create("op", eq, f"fault at {eq}", rnd.choice([1, 2, 3, 4, 4, 4]), t,
                                      alarms=[f"rule:{eq}/x{rnd.randint(1, 3)}"])
            if not created or rnd.random() < 0.1:
                continue  # joined an open order, or left in the queue
            if rnd.random() < 0.05:
                o.act(order.id, Action.CANCEL, "op", t + MIN, {"reason": "false alarm"})
                continue
            step = t + rnd.randint(2, 90) * MIN
            o.act(order.id, Action.ASSIGN, "op", step, {"crew": rnd.choice(crews_of[order.service])})
            if rnd.random() < 0.1:
                o.act(order.id, Action.CANNOT_REPAIR, "c", step + HOUR, {"reason": "part missing"})
                continue
            step += rnd.randint(5, 240) * MIN
            o.act(order.id, Action.EN_ROUTE, "c", step)
            step += rnd.randint(10, 60) * MIN
            o.act(order.id, Action.ON_SITE, "c", step)
            step += rnd.randint(15, 600) * MIN
            o.act(order.id, Action.DONE, "c", step, {"cause": "worn part", "action": "replaced"})
        o.tick(t)


def test_golden_month(book: Book, city: CityConfig) -> None:
    generate_month(book, city)
    report = compute(book.store.iter_orders(), T0, T0 + 31 * DAY).as_dict()
    assert book.store.verify() == []
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert report == golden
    # and what the golden file must show by construction
    total = report["total"]
    assert 150 <= total["orders"] <= 600 and total["backlog"] > 0 and total["sla_breaches"] > 0
    assert total["to_acknowledge"]["count"] > total["to_dispatch"]["count"] >= total["to_repair"]["count"] > 0
    assert sum(g["orders"] for g in report["by_service"]) == total["orders"]
    assert sum(g["orders"] for g in report["by_commune"]) == total["orders"]
    assert report["repeat_failures"] and report["repeat_failures"][0]["repeats"] >= 2
