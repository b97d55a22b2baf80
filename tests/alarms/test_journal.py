"""The alarm journal: filters, paging, CSV, follow, append-only, definitions, restart states, kill -9."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scada.alarms import AlarmInfo, AlarmState, Event, Flag
from scada.errors import StorageError
from scada.journal import Journal, JournalEntry, JournalQuery
from scada.quality import Quality

T0_MS = 1_800_000_000_000
MS = 1_000_000

ROOT = Path(__file__).resolve().parents[2]


def info(rule: str, eq: str, commune: str, service: str, priority: int, tag: str = "level",
         message: str = "{id} alarm {value}") -> AlarmInfo:
    return AlarmInfo(alarm=f"{rule}:{commune.lower()}/x/{eq}/{tag}", rule=rule, kind="high", equipment=eq,
                     commune=commune, area=commune, service=service, tag=f"{commune.lower()}/x/{eq}/{tag}",
                     priority=priority, latched=False, message=message.replace("{id}", eq), dtype="float",
                     units="%", enum=None, limit=80.0)


INFOS = [
    info("hi", "E1", "Dijon", "lighting", 3),
    info("hi", "E2", "Dijon", "traffic", 2),
    info("hi", "E3", "Chenôve", "lighting", 4),
    info("trip", "E1", "Dijon", "lighting", 1, tag="fault", message="{id} tripped"),
]


def synthetic(n: int = 400) -> list[JournalEntry]:
    """Deterministic rows over 4 alarms: activations, clears, acks by two users, comments."""
    out = []
    seq = [(Event.CONDITION_ON, AlarmState.NORMAL, AlarmState.UNACK),
           (Event.ACKNOWLEDGE, AlarmState.UNACK, AlarmState.ACKED),
           (Event.CONDITION_OFF, AlarmState.ACKED, AlarmState.NORMAL)]
    for k in range(n):
        a = INFOS[k % 4]
        ev, prev, st = seq[(k // 4) % 3]
        out.append(JournalEntry(ts_ns=(T0_MS + k * 60_000) * MS, event=ev, info=a, state=st, prev_state=prev,
                                value=float(k), quality=Quality.GOOD,
                                user=("alice" if k % 8 < 4 else "bob") if ev is Event.ACKNOWLEDGE else None,
                                comment="pump noise" if k == 77 else None))
    return out


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Journal(tmp_path / "journal.sqlite") as j:
        ids = j.append(synthetic())
        assert ids == list(range(1, 401))
        yield j


def ids(rows) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.id for r in rows]


def test_filters(journal: Journal) -> None:
    everything = synthetic()
    q = journal.query

    def expect(pred) -> list[int]:  # type: ignore[no-untyped-def]
        return sorted((k + 1 for k, e in enumerate(everything) if pred(e)), reverse=True)  # newest first

    assert ids(q(JournalQuery(limit=1000)).rows) == expect(lambda e: True)
    lo, hi = T0_MS + 100 * 60_000, T0_MS + 200 * 60_000
    assert ids(q(JournalQuery(start_ms=lo, end_ms=hi, limit=1000)).rows) == \
        expect(lambda e: lo <= e.ts_ns // MS < hi)
    assert ids(q(JournalQuery(equipment=["E1"], limit=1000)).rows) == expect(lambda e: e.info.equipment == "E1")
    assert ids(q(JournalQuery(commune=["Chenôve"], limit=1000)).rows) == expect(lambda e: e.info.commune == "Chenôve")
    assert ids(q(JournalQuery(service=["traffic"], limit=1000)).rows) == expect(lambda e: e.info.service == "traffic")
    assert ids(q(JournalQuery(priority=[1, 2], limit=1000)).rows) == expect(lambda e: e.info.priority in (1, 2))
    assert ids(q(JournalQuery(state=[AlarmState.ACKED], limit=1000)).rows) == \
        expect(lambda e: e.state is AlarmState.ACKED)
    assert ids(q(JournalQuery(event=[Event.ACKNOWLEDGE], user="bob", limit=1000)).rows) == \
        expect(lambda e: e.user == "bob")
    assert ids(q(JournalQuery(text="TRIPPED", limit=1000)).rows) == expect(lambda e: e.info.rule == "trip")
    assert ids(q(JournalQuery(text="pump noise")).rows) == [78]
    assert q(JournalQuery(text="100%")).rows == []  # LIKE wildcards are literal
    combo = JournalQuery(equipment=["E1"], priority=[1], start_ms=lo, state=[AlarmState.UNACK], limit=1000)
    assert ids(q(combo).rows) == expect(lambda e: e.info.equipment == "E1" and e.info.priority == 1
                                        and e.ts_ns // MS >= lo and e.state is AlarmState.UNACK)
    row = q(JournalQuery(alarm=[INFOS[0].alarm], limit=1)).rows[0]
    assert row.message == f"E1 alarm {row.value_text}" and row.units == "%" and row.time_utc.endswith("Z")


def test_keyset_and_offset_paging(journal: Journal) -> None:
    seen: list[int] = []
    q = JournalQuery(limit=37)
    while True:
        page = journal.query(q, with_total=not seen)
        if not seen:
            assert page.total == 400
        seen += ids(page.rows)
        if page.next_cursor is None:
            break
        q = JournalQuery(limit=37, cursor=page.next_cursor)
    assert seen == list(range(400, 0, -1))
    assert ids(journal.query(JournalQuery(limit=10, offset=20)).rows) == list(range(380, 370, -1))
    asc = journal.query(JournalQuery(limit=5, ascending=True, equipment=["E3"])).rows
    assert ids(asc) == [3, 7, 11, 15, 19]


def test_csv_export(journal: Journal) -> None:
    out = io.StringIO()
    n = journal.export_csv(JournalQuery(equipment=["E2"], limit=7), out)
    assert n == 100  # every matching row, not one page
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 100 and rows[0]["id"] == "2"  # oldest first
    first = rows[0]
    assert first["time_utc"] == "2027-01-15T08:01:00.000Z"
    assert (first["event"], first["equipment"], first["commune"], first["service"], first["priority"],
            first["state"], first["value"], first["outcome"]) == \
        ("condition_on", "E2", "Dijon", "traffic", "2", "unack", "1", "done")
    assert first["message"] == "E2 alarm 1"


def test_append_only(journal: Journal) -> None:
    for sql in ("UPDATE journal SET user = 'mallory' WHERE id = 1", "DELETE FROM journal WHERE id = 1",
                "UPDATE alarm_def SET priority = 4", "DELETE FROM alarm_def"):
        with pytest.raises(StorageError, match="append-only"):
            journal.execute_sql(sql)
    assert journal.count() == 400
    assert not any(hasattr(journal, verb) for verb in ("update", "delete", "remove", "edit"))


def test_follow(journal: Journal) -> None:
    last = journal.last_id()
    assert journal.follow(JournalQuery(), last) == []
    new = journal.append([JournalEntry((T0_MS + 10**8) * MS, Event.CONDITION_ON, INFOS[2], AlarmState.UNACK),
                          JournalEntry((T0_MS + 10**8) * MS, Event.CONDITION_ON, INFOS[1], AlarmState.UNACK)])
    assert ids(journal.follow(JournalQuery(), last)) == new
    assert ids(journal.follow(JournalQuery(service=["traffic"]), last)) == [new[1]]
    assert journal.follow(JournalQuery(), last, upto_id=new[0]) == journal.follow(JournalQuery(), last)[:1]


def test_definition_versions(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        j.append([JournalEntry(T0_MS * MS, Event.CONDITION_ON, INFOS[0], AlarmState.UNACK, value=90.0)])
        changed = AlarmInfo(**{**{f: getattr(INFOS[0], f) for f in AlarmInfo.__dataclass_fields__},
                               "message": "E1 level high ({value})", "priority": 2})
        j.append([JournalEntry((T0_MS + 1) * MS, Event.CONDITION_OFF, changed, AlarmState.RTN_UNACK, AlarmState.UNACK,
                               value=50.0)])
        refs = j.register([changed, INFOS[0]])
        assert refs[0] != refs[1]
        old, new = j.query(JournalQuery(alarm=[INFOS[0].alarm], ascending=True)).rows
        assert (old.message, old.priority) == ("E1 alarm 90", 3)  # the old row keeps its definition
        assert (new.message, new.priority) == ("E1 level high (50)", 2)
    with Journal(tmp_path / "j.sqlite") as j:  # reopened: the same definition reuses its ref
        assert list(j.register([changed])) == [refs[0]]


def test_current_states_for_restart(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as j:
        a, b, c = INFOS[0], INFOS[1], INFOS[2]
        t = T0_MS * MS
        j.append([
            JournalEntry(t, Event.CONDITION_ON, a, AlarmState.UNACK, AlarmState.NORMAL),
            JournalEntry(t + MS, Event.ACKNOWLEDGE, a, AlarmState.ACKED, AlarmState.UNACK, user="alice",
                         since_ns=t),
            JournalEntry(t + 2 * MS, Event.ACKNOWLEDGE, a, AlarmState.ACKED, AlarmState.ACKED, outcome=1,
                         user="bob", detail="already acknowledged", since_ns=t),
            JournalEntry(t, Event.CONDITION_ON, b, AlarmState.UNACK, AlarmState.NORMAL),
            JournalEntry(t + 3 * MS, Event.SHELVE, b, AlarmState.UNACK, AlarmState.UNACK,
                         flags=int(Flag.SHELVED_TIMED), user="alice", detail="noise", until_ns=t + 3600 * 10**9,
                         since_ns=t),
            JournalEntry(t + 4 * MS, Event.REMOVE_FROM_SERVICE, c, AlarmState.NORMAL, AlarmState.NORMAL,
                         flags=int(Flag.OUT_OF_SERVICE), user="maint", detail="WO-1"),
        ])
        st = j.current_states()
    assert st[a.alarm].state is AlarmState.ACKED and st[a.alarm].active_since_ms == T0_MS
    assert st[b.alarm].flags == Flag.SHELVED_TIMED and st[b.alarm].shelved_until_ms == T0_MS + 3_600_000
    assert st[c.alarm].work_order == "WO-1" and st[c.alarm].state is AlarmState.NORMAL


def test_readonly(tmp_path: Path, journal: Journal) -> None:
    with pytest.raises(StorageError, match="no alarm journal"):
        Journal(tmp_path / "missing.sqlite", readonly=True)
    with Journal(journal.path, readonly=True) as ro:
        assert ro.count() == 400
        with pytest.raises(StorageError, match="read-only"):
            ro.append(synthetic(1))


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from scada.alarms import AlarmInfo, AlarmState, Event
    from scada.journal import Journal, JournalBatch, JournalEntry
    info = AlarmInfo("hi:x/E1/level", "hi", "high", "E1", "Dijon", "Dijon", "lighting", "x/E1/level", 3, False,
                     "E1 {value}", "float", "", None, 80.0)
    j = Journal(sys.argv[1])
    ref = j.register([info])
    k = 0
    while True:
        if (k // 100) % 2 == 0:  # the generic path
            batch = [JournalEntry((1_800_000_000_000 + k + n) * 1_000_000, Event.CONDITION_ON, info,
                                  AlarmState.UNACK, value=float(k + n), comment=f"row {k + n}") for n in range(100)]
            last = j.append(batch)[-1]
        else:  # the engine's fast path (one run of 100 rows)
            z = np.zeros(100, dtype=np.uint8)
            _, last = j.append_batch(JournalBatch(
                ref=np.repeat(ref, 100), ts_ns=np.full(100, (1_800_000_000_000 + k) * 1_000_000),
                event=np.ones(100, dtype=np.uint8), state=np.ones(100, dtype=np.uint8), prev_state=z, flags=z,
                value=np.arange(k, k + 100, dtype=np.float64), quality=z))
        k += 100
        print(last, flush=True)   # acknowledged as written: the id is durable
""")


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True)
    acked = 0
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    lines = 0
    while lines < 40 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
        lines += 1
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: it is writing the next batch
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert lines == 40, "the writer did not report 40 committed batches"
    with Journal(path) as j:
        assert j.execute_sql("PRAGMA integrity_check") == [("ok",)]
        n = j.count()
        assert n >= acked
        rows = j.execute_sql("SELECT id, value, comment FROM journal WHERE id <= ? ORDER BY id", [acked])
        assert [r[0] for r in rows] == list(range(1, acked + 1))
        assert all(r[1] == r[0] - 1 and r[2] in (f"row {r[0] - 1}", None) for r in rows)
        assert sum(1 for r in rows if r[2] is None) >= acked // 2 - 100  # both write paths were exercised
        assert n % 100 == 0  # a batch is one transaction: all of it or none of it
