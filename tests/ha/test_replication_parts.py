"""The replication stream's parts on real SQLite journals and a real tag database, without servers:

    frames          encode → decode gives the header and the columns back
    tags_frame      only the tags whose receive time moved; a text goes aside, its change counter does not
    Journal copy    the active's rows under their ids; a row twice is refused; a copy refuses rows of its own
    Feed._check     a copy that is a prefix is fed from its tip; a diverged journal or another configuration
                    is refused with the reason
    AuditLog copy   the command audit log copied verbatim (a standby with no entry in common starts over, its
                    own log set aside), incrementally across segment rotations; a line that does not continue
                    the chain or another key is refused; after the takeover one chain that verifies; a standby
                    restarted with entries of its own goes on from the newest entry both hold (its own set aside)
    work orders     a standby's store refuses its own writers, takes the active's changes under the same seqs
    login throttle  the standby takes the active's failures, locks and origins; a lock lifted there is lifted here,
                    an attempt made on the standby itself stays
    photo copy      a copied photo is stored under its own name only (the name is its bytes' digest)
    catalog lookup  a copy's journal looks up the active's (copied) alarm definitions; a new one is refused
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from failsafe.audit import AuditLog, verify_file
from scada.alarms import AlarmInfo, AlarmState, Event
from scada.config.model import TagDef
from scada.errors import Refused, StorageError
from scada.journal import Journal, JournalEntry
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase
from scada.throttle import LoginThrottle
from scada.users import UserStore
from scada.workorders.model import Action, Change
from scada.workorders.photos import PhotoStore
from scada.workorders.store import WorkOrderStore
from server.ha.feed import Feed, common_point
from server.ha.wire import decode, encode, secret_ok, tags_frame

INFO = AlarmInfo(alarm="hi:dijon/x/E1/level", rule="hi", kind="high", equipment="E1", commune="Dijon", area="Dijon",
                 service="lighting", tag="dijon/x/E1/level", priority=2, latched=False, message="E1 high {value}",
                 dtype="float", units="%", enum=None, limit=80.0)


def tag(name: str, dtype: str = "float") -> TagDef:
    return TagDef(name, "a", name.split("/", 1)[1], name.split("/", 1)[1], "dev", "hr:0", dtype)


def rows(n: int, t0_ms: int = 1_760_000_000_000) -> list[JournalEntry]:
    seq = [(Event.CONDITION_ON, AlarmState.NORMAL, AlarmState.UNACK),
           (Event.ACKNOWLEDGE, AlarmState.UNACK, AlarmState.ACKED),
           (Event.CONDITION_OFF, AlarmState.ACKED, AlarmState.NORMAL)]
    return [JournalEntry(ts_ns=(t0_ms + k) * 1_000_000, event=seq[k % 3][0], info=INFO, prev_state=seq[k % 3][1],
                         state=seq[k % 3][2], value=float(k), quality=Quality.GOOD,
                         user="alice" if seq[k % 3][0] is Event.ACKNOWLEDGE else None) for k in range(n)]


def test_a_frame_round_trip() -> None:
    idx = np.array([3, 7], dtype=np.int64)
    vals = np.array([1.5, np.nan])
    header, arrays = decode(encode({"k": "tags", "texts": {"1": "Bonjour"}}, [idx, vals]))
    assert header["k"] == "tags" and header["texts"] == {"1": "Bonjour"}
    assert arrays[0].tolist() == [3, 7] and arrays[1][0] == 1.5 and np.isnan(arrays[1][1])
    assert secret_ok("Pair s3cret", b"s3cret") and not secret_ok("Pair other", b"s3cret") and not secret_ok(None, b"x")


def test_tags_frame_carries_what_moved_and_texts_aside() -> None:
    db = TagDatabase([tag("a/level"), tag("a/message", "string"), tag("a/other")])
    last = np.full(3, -1, dtype=np.int64)
    first, last = tags_frame(db, last)
    assert first is not None and first[1] == 3  # the first frame: every tag
    assert tags_frame(db, last)[0] is None  # nothing moved
    db.apply_samples([("a/level", Sample.good(12.0)), ("a/message", Sample.good("Route barrée"))])
    got, last = tags_frame(db, last)
    assert got is not None and got[1] == 2
    header, (idx, values, qualities, _src, rcv) = decode(got[0])
    assert idx.tolist() == [0, 1] and values[0] == 12.0 and np.isnan(values[1])  # the counter stays here
    assert header["texts"] == {"1": "Route barrée"} and qualities.tolist() == [0, 0] and (rcv > 0).all()
    db.apply_samples([("a/level", Sample.good(12.0))])  # the same value read again: its receive time moved
    got, last = tags_frame(db, last)
    assert got is not None and decode(got[0])[1][0].tolist() == [0]


def test_the_copy_holds_the_active_rows_under_their_ids(tmp_path: Path) -> None:
    with Journal(tmp_path / "active.sqlite") as active, Journal(tmp_path / "standby.sqlite") as standby:
        assert active.append(rows(10)) == list(range(1, 11))
        standby.insert_copied(active.raw_defs_after(0), active.raw_rows_after(0, 4))
        standby.insert_copied([], active.raw_rows_after(4))
        assert standby.raw_rows_after(0) == active.raw_rows_after(0) and standby.tip() == active.tip()
        with pytest.raises(StorageError):
            standby.insert_copied([], active.raw_rows_after(9))  # row 10 twice
        standby.copy_only = True
        with pytest.raises(StorageError, match="standby's copy"):
            standby.append(rows(1))
        assert standby.last_id() == 10


async def test_the_feed_serves_a_prefix_and_refuses_a_diverged_copy_or_another_configuration(tmp_path: Path) -> None:
    with Journal(tmp_path / "active.sqlite") as active, Journal(tmp_path / "standby.sqlite") as standby:
        active.append(rows(6))
        standby.insert_copied(active.raw_defs_after(0), active.raw_rows_after(0, 4))
        db = TagDatabase([tag("a/level")])
        feed = Feed(lambda: db, lambda: active, lambda: "fp-1", lambda: 1)
        assert await feed._check({"fingerprint": "fp-1", "journal": list(standby.tip())}, active) == ("", 4, 1)
        why, _, _ = await feed._check({"fingerprint": "fp-2", "journal": list(standby.tip())}, active)
        assert "configurations differ" in why
        standby.append(rows(3, t0_ms=1_770_000_000_000))  # rows of its own (an old active's last ones)
        active.append(rows(2))  # and the new active went on
        assert standby.tip()[0] == 7
        why, _, _ = await feed._check({"fingerprint": "fp-1", "journal": [99, 1, INFO.alarm]}, active)
        assert "diverged" in why
        why, _, _ = await feed._check({"hello": True}, active)
        assert "not a replication hello" in why


def test_a_diverged_copy_sets_its_own_rows_aside_and_copies_the_active_after_the_common_point(tmp_path: Path) -> None:
    """An old active with rows the new active never got, which took the same ids there: the digests find the
    common point (the row ids alone would say "prefix": row 7 exists on both), its rows after it go aside in a
    kept file, and the active's rows are copied after it: the same journal on both."""
    with Journal(tmp_path / "active.sqlite") as active, Journal(tmp_path / "journal.sqlite") as standby:
        active.append(rows(4))
        standby.insert_copied(active.raw_defs_after(0), active.raw_rows_after(0))
        standby.append(rows(3, t0_ms=1_770_000_000_000))  # its own last rows (it was the active): ids 5..7
        active.append(rows(5))  # the new active's own: ids 5..9
        rows_c, defs_c = standby.candidates()
        assert [i for i, _ in rows_c] == [7, 6, 5, 4, 3, 2, 1] and defs_c[0][0] == 1
        db = TagDatabase([tag("a/level")])
        feed = Feed(lambda: db, lambda: active, lambda: "fp-1", lambda: 1)
        hello = {"fingerprint": "fp-1", "journal": list(standby.tip()), "candidates": {"rows": rows_c, "defs": defs_c}}
        assert (await_(feed._check(hello, active)))[0] == "diverged:4:1"
        own = standby.raw_rows_after(4)
        n_rows, n_defs, aside = standby.set_aside_after(4, 1)
        assert (n_rows, n_defs) == (3, 0) and aside is not None and aside.name.startswith("journal.standby-")
        with Journal(aside, readonly=True) as kept:  # nothing lost: the whole old file, its own rows included
            assert kept.raw_rows_after(4) == own
        assert standby.raw_rows_after(0) == active.raw_rows_after(0, 4)
        standby.insert_copied(active.raw_defs_after(standby.tip()[1]), active.raw_rows_after(4))
        assert standby.raw_rows_after(0) == active.raw_rows_after(0)
        rows_c, defs_c = standby.candidates()  # now a prefix: fed
        hello["candidates"] = {"rows": rows_c, "defs": defs_c}
        assert await_(feed._check(hello, active))[0] == ""
        assert standby.set_aside_after(9, 1) == (0, 0, None)  # nothing after the point: nothing moved


def await_(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------------- the command audit log's copy
KEY = b"k" * 32


def test_the_audit_log_copied_verbatim_goes_on_as_one_chain(tmp_path: Path) -> None:
    """The standby's own entries make it no prefix of the active's: it is set aside whole and copied from the
    first entry (segment headers included: small segments rotate); later entries come incrementally; after the
    takeover its own appends continue the active's chain, and the whole log verifies."""
    active = AuditLog(tmp_path / "a", KEY, fsync=False, segment_bytes=2048)
    for k in range(30):
        active.append("operate", ticket=f"t{k}", user="op", target=["E1"], verb="set_level")
    standby = AuditLog(tmp_path / "b", KEY, fsync=False)
    standby.append("audit_opened", note="its own start")
    seq, hash_ = standby.tip()
    assert not active.holds(seq, hash_)  # the feed restarts it
    standby.copy_only = True
    standby.append("monitor", user="field-safety-monitor", target=["J1"])  # its own: not written
    lines = active.lines_after(0, 10)
    assert [json.loads(x)["seq"] for x in lines] == list(range(1, 11))
    standby.append_copied(lines, restart=True)
    assert any(p.name.startswith("b.standby-") for p in tmp_path.iterdir())  # its own log kept for the record
    while standby.last_seq < active.last_seq:  # incremental from its tip, across the segment headers
        assert active.holds(*standby.tip())
        standby.append_copied(active.lines_after(standby.last_seq, 7))
    assert standby.tip() == active.tip()
    files = sorted(p.name for p in (tmp_path / "b").glob("*.log"))
    assert files == sorted(p.name for p in (tmp_path / "a").glob("*.log")) and len(files) > 2
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    with pytest.raises(StorageError, match="not the continuation"):
        standby.append_copied(active.lines_after(standby.last_seq - 2, 1))  # an entry it already holds
    standby.copy_only = False  # the takeover
    standby.append("lease_resumed", user="op", target=["E1"])
    assert verify_file(tmp_path / "b", KEY).ok
    entries = list(standby.entries(headers=True))
    assert entries[:active.last_seq] == list(active.entries(headers=True))
    assert entries[-1]["prev"] == active.tip()[1] and entries[-1]["kind"] == "lease_resumed"
    assert not any(e.get("kind") == "monitor" for e in entries)
    copied_to = active.last_seq
    # the standby restarts: its start-up writes entries of its own after the copy; meanwhile the active goes on.
    # The newest entry both hold is found among the ones it offers; its own after it are set aside, not the copy
    for k in range(3):
        standby.append("lease_resumed", user="op", target=[f"E{k}"])
    for k in range(4):
        active.append("operate", ticket=f"u{k}", user="op", target=["E1"], verb="set_level")
    common = common_point(active, standby.candidates())
    assert common == copied_to
    standby.append_copied(active.lines_after(common, 100), cut=common)
    assert standby.tip() == active.tip() and verify_file(tmp_path / "b", KEY).ok
    assert list(standby.entries(headers=True)) == list(active.entries(headers=True))
    assert len(list((tmp_path / "b").glob("*.log.standby-*"))) == 1  # its own entries, kept for the record
    other = AuditLog(tmp_path / "c", b"another-key-of-32-bytes-00000000", fsync=False)
    with pytest.raises(StorageError, match="fingerprint"):
        other.append_copied(active.lines_after(0, 3), restart=True)
    for log_ in (active, standby, other):
        log_.close()


def test_a_standby_s_work_orders_take_only_the_active_s_changes(tmp_path: Path) -> None:
    """The standby's store refuses its own writers (geofence, auto-close) while it is a copy; the active's changes
    committed there get the active's seqs."""
    active, standby = WorkOrderStore(tmp_path / "a.sqlite"), WorkOrderStore(tmp_path / "b.sqlite")
    create = Change("WO-000001", 1_760_000_000_000, "maint", Action.CREATE,
                    {"equipment": "C0001", "service": "lighting", "commune": "Dijon", "priority": 3,
                     "due_ms": 1_760_086_400_000, "what": "lamp out"}, "k1")
    note = Change("WO-000001", 1_760_000_001_000, "maint", Action.NOTE, {"text": "photo 1"}, "k2")
    active.commit([create, note])
    standby.copy_only = True
    with pytest.raises(StorageError, match="standby"):
        standby.commit([create])
    standby.commit_copied([r.change for r in active.history()])
    assert [(r.seq, r.change) for r in standby.history()] == [(r.seq, r.change) for r in active.history()]
    copy = standby.get("WO-000001")
    assert copy is not None and [n.text for n in copy.notes] == ["photo 1"]
    active.close()
    standby.close()


def test_the_login_throttle_copy_follows_the_active_and_keeps_the_standby_s_own_attempts(tmp_path: Path) -> None:
    active, standby = (LoginThrottle(UserStore(tmp_path / f"{n}.sqlite")) for n in ("a", "b"))
    t = 1_800_000_000 * 10**9
    for k in range(5):  # op2 locked out on the active
        res = active.reserve("op2", "10.0.0.9", t + k)
        assert not isinstance(res, Refused) and hasattr(res, "id")
        active.failed(res, t + k)  # type: ignore[arg-type]
    own = standby.reserve("view", "10.0.0.7", t)  # an attempt on the standby's own login route
    standby.failed(own, t)  # type: ignore[arg-type]
    first = active.snapshot()
    standby.replace_all(first)
    assert standby.locked_for("op2", t + 10) > 0
    assert standby.snapshot()["attempts"].count(["view", "10.0.0.7", t, 1]) == 1
    # the administrator unlocks op2 on the active: lifted on the standby too, its own failure still counted
    assert active.unlock("op2", t + 20)
    standby.replace_all(active.snapshot(), first)
    assert standby.locked_for("op2", t + 21) == 0
    assert [r[0] for r in standby.snapshot()["attempts"]] == ["view"]


def test_a_copied_photo_is_stored_under_its_own_name_only(tmp_path: Path) -> None:
    body = b"\xff\xd8\xff" + b"cleaned jpeg bytes"
    name = hashlib.sha256(body).hexdigest()[:16] + ".jpg"
    store = PhotoStore(tmp_path)
    assert store.add_copied("WO-1", name, body)
    assert not store.add_copied("WO-1", name, body)  # there already
    assert store.path("WO-1", name).read_bytes() == body
    with pytest.raises(Refused):
        store.add_copied("WO-1", "0" * 16 + ".jpg", body)
    with pytest.raises(Refused):
        store.add_copied("../x", name, body)


def test_a_copy_s_journal_looks_up_the_active_s_definitions_and_refuses_new_ones(tmp_path: Path) -> None:
    active, copy = Journal(tmp_path / "a.sqlite"), Journal(tmp_path / "b.sqlite")
    ref = int(active.register([INFO])[0])
    copy.insert_copied(active.raw_defs_after(0), [])
    copy.copy_only = True
    assert int(copy.register([INFO])[0]) == ref  # a reload on the standby: the copied definition
    with pytest.raises(StorageError):
        copy.register([dataclasses.replace(INFO, limit=90.0)])  # a definition the active never registered
