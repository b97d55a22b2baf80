"""A storm at Dijon scale: 34,000 luminaire tags change in one batch, evaluated in one vectorised pass."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from scada.alarms import AlarmEngine, Event, Transitions
from scada.config import CityConfig, load_city
from scada.config.generate import generate
from scada.journal import Journal, JournalQuery
from scada.quality import Quality
from scada.tagdb import TagDatabase
from tests.alarms.conftest import T0, S

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dijon(tmp_path_factory: pytest.TempPathFactory) -> CityConfig:
    out = tmp_path_factory.mktemp("dijon")
    tags = generate(out, "dijon", 42, ROOT)
    return load_city(tags, out / "alarms.yaml")


def _set(db: TagDatabase, idx: np.ndarray, value: float, t: int, quality: Quality = Quality.GOOD) -> None:
    db.apply(idx, np.full(idx.size, value), np.full(idx.size, int(quality), dtype=np.uint8), t, t)


def test_34000_luminaires_fail_at_once(dijon: CityConfig, tmp_path: Path) -> None:
    db = TagDatabase(dijon.tags)
    lamps = db.match("*/lighting/*/lamp_*/status")
    mains = db.match("*/lighting/*/mains_ok")
    assert lamps.size == 34_000 and mains.size == 1_100
    with Journal(tmp_path / "journal.sqlite") as journal:
        engine = AlarmEngine(dijon, db, journal)
        engine.attach()
        batches: list[Transitions] = []
        engine.subscribe(batches.append)
        everything = np.arange(len(db), dtype=np.int64)
        db.apply(everything, np.zeros(len(db)), np.zeros(len(db), dtype=np.uint8), T0, T0)
        _set(db, mains, 1.0, T0)
        engine.tick(T0 + 10 * S)
        batches.clear()
        rows_before = journal.count()

        start = time.perf_counter()
        _set(db, lamps, 1.0, T0 + 20 * S)  # every luminaire reports "failed" in the same poll cycle
        took = time.perf_counter() - start

        assert len(batches) == 1, "one change batch → one evaluation pass → one journal transaction"
        tr = batches[0]
        assert len(tr) == 34_000 and set(tr.event.tolist()) == {int(Event.CONDITION_ON)}
        assert journal.count() - rows_before == 34_000
        assert took < 5.0, f"storm evaluated and journalled in {took:.2f} s"
        # diagnostic events: journalled, never on the operator's list, never a flood
        assert engine.alarm_list()[0] == 0 and engine.flood_areas() == []
        one = journal.query(JournalQuery(equipment=["C0001"], event=[Event.CONDITION_ON], limit=100)).rows
        assert len(one) == dijon.equipment["C0001"].params["luminaires"]
        # the lamp by its number (the {index} of lamp_{i:02d}/status), not its tag identifier; site language fr
        assert re.match(r"Luminaire \d+ de l'armoire C0001 ", one[0].message), one[0].message
        en = journal.query(JournalQuery(equipment=["C0001"], event=[Event.CONDITION_ON], limit=1), lang="en").rows
        assert re.match(r"Luminaire \d+ of cabinet C0001 ", en[0].message), en[0].message


def test_mains_storm_suppresses_lamps_and_floods(dijon: CityConfig, tmp_path: Path) -> None:
    db = TagDatabase(dijon.tags)
    lamps = db.match("*/lighting/*/lamp_*/status")
    mains = db.match("*/lighting/*/mains_ok")
    engine = AlarmEngine(dijon, db)  # no journal: evaluation only
    engine.attach()
    db.apply(np.arange(len(db), dtype=np.int64), np.zeros(len(db)), np.zeros(len(db), dtype=np.uint8), T0, T0)
    _set(db, mains, 1.0, T0)
    engine.tick(T0 + 10 * S)
    # the storm: every cabinet loses mains, every luminaire goes dark ("failed") in one batch
    idx = np.concatenate([mains, lamps])
    vals = np.concatenate([np.zeros(mains.size), np.ones(lamps.size)])
    db.apply(idx, vals, np.zeros(idx.size, dtype=np.uint8), T0 + 20 * S, T0 + 20 * S)
    assert int(engine.sup_design.sum()) == 34_000  # every lamp alarm suppressed by its cabinet's mains alarm
    engine.tick(T0 + 26 * S)  # mains on-delay 5 s
    s = engine.summary()
    assert s.unacked == 1_100 and s.suppressed == 34_000
    assert "Dijon" in s.flood_areas
    view = engine.console(area="Dijon")
    assert view.flood and view.groups and not view.items
    assert all(g.count == 1 for g in view.groups)  # one mains alarm per cabinet: the lamps stay hidden
    # bad quality on the whole lighting network: communication alarms, no limit/discrete alarm from stale data
    fc = db.match("*/lighting/*/failed_count")
    _set(db, fc, 30.0, T0 + 30 * S, Quality.BAD_COMM)
    _set(db, mains, 0.0, T0 + 30 * S, Quality.BAD_COMM)
    engine.tick(T0 + 61 * S)
    comm = engine.catalog.rule_by_name["cabinet_comm_loss"]
    many = engine.catalog.rule_by_name["cabinet_many_failures"]
    assert int((engine.state[comm.start:comm.start + comm.count] == 1).sum()) == 1_100
    assert int(engine.state[many.start:many.start + many.count].astype(bool).sum()) == 0
