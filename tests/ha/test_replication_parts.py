"""The replication stream's parts on real SQLite journals and a real tag database, without servers:

    frames          encode → decode gives the header and the columns back
    tags_frame      only the tags whose receive time moved; a text goes aside, its change counter does not
    Journal copy    the active's rows under their ids; a row twice is refused; a copy refuses rows of its own
    Feed._check     a copy that is a prefix is fed from its tip; a diverged journal or another configuration
                    is refused with the reason
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scada.alarms import AlarmInfo, AlarmState, Event
from scada.config.model import TagDef
from scada.errors import StorageError
from scada.journal import Journal, JournalEntry
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase
from server.ha.replication import Feed, decode, encode, secret_ok, tags_frame

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
