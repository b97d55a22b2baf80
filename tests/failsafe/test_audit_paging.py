"""Security 5: GET /commands never reads the whole history. On a 50 MB log the history is read newest first
through the index: the right entries, in the right order, and a bounded number of bytes per request (the
speed itself is bench/bench_audit.py's). The build takes ~12 s through real appends (2 KiB entries), under
the 30 s above which it would be marked slow."""

from __future__ import annotations

from pathlib import Path

from failsafe.audit import AuditLog

KEY = b"test-audit-key-of-thirty-2-bytes"
EQUIPMENT = [f"C{i:04d}" for i in range(500)] + [f"J{i:03d}" for i in range(1, 101)]


def test_reads_on_a_50_mb_log_are_paged_and_bounded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit", KEY, fsync=False)
    by_equipment: dict[str, list[int]] = {}
    size, n = 0, 0
    while size < 50 * 1024 * 1024:
        for _ in range(500):
            eq = EQUIPMENT[(n * 7919) % len(EQUIPMENT)]
            entry = log.append("operate", user=f"op{n % 9}", target=[eq], ticket=f"t{n}",
                               requested={eq: {"text": "m" * 1800}}, note="evening dimming, sector 4")
            by_equipment.setdefault(eq, []).append(entry["seq"])
            n += 1
        size = sum(p.stat().st_size for p in log.path.glob("*.log"))
    assert len(list(log.path.glob("*.log"))) == 4  # 16 MiB segments

    log.latest(None, 1)  # the index catches up over the whole log once (persisted: a restart does not redo it)
    newest = log.latest(None, 200)
    assert [e["seq"] for e in newest] == list(range(log.last_seq, log.last_seq - 200, -1))
    eq = "J042"
    page1 = log.latest(eq, 50)
    assert [e["seq"] for e in page1] == by_equipment[eq][::-1][:50] and all(e["target"] == [eq] for e in page1)
    read0 = log.bytes_read
    page2 = log.latest(eq, 50, before=page1[-1]["seq"])
    assert [e["seq"] for e in page2] == by_equipment[eq][::-1][50:100]
    deep = log.latest(None, 200, before=log.last_seq // 2)
    assert [e["seq"] for e in deep] == list(range(log.last_seq // 2 - 1, log.last_seq // 2 - 201, -1))
    # two requests (250 entries of ~2 KiB) read about 500 KiB of a 50 MiB log: bounded by the answer
    assert log.bytes_read - read0 < 250 * 2300, (log.bytes_read - read0, size)
    reopened = AuditLog(tmp_path / "audit", KEY, fsync=False)  # a restart: the index is still there
    reopened.latest(eq, 1)
    assert reopened.bytes_read < 4096
