"""The command audit log: always keyed, hash-chained across segments; every kind of tampering is detected with
the line that broke; a torn tail is cut aside at start; fields and refusals are bounded; reads are paged."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from cli import audit as cli
from failsafe.audit import (
    GENESIS,
    KEY_ENV,
    AuditKeyError,
    AuditLog,
    bound_fields,
    fingerprint,
    provision_key,
    recorded_fingerprint,
    verify_file,
)
from scada.errors import StorageError

KEY = b"test-audit-key-of-thirty-2-bytes"
OTHER = b"another-key-nobody-should-hold!!"
T0 = 1_750_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def filled(tmp_path: Path, n: int = 6, key: bytes = KEY, **kw: object) -> AuditLog:
    log = AuditLog(tmp_path / "audit", key, fsync=False, clock=lambda: T0, **kw)  # type: ignore[arg-type]
    for i in range(n):
        log.append("operate" if i % 2 else "select", ticket=f"t{i}", user="alice", approver=None,
                   target=["J001"], requested={"J001": {"system_pattern_control": 255}}, lease_end=T0 + 900)
    return log


def segment(log: AuditLog, k: int = 1) -> Path:
    return log.path / f"{k:06d}.log"


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_append_and_verify(tmp_path: Path) -> None:
    log = filled(tmp_path)
    report = log.verify()
    assert report.ok and report.entries == 7 and report.key_fingerprint == fingerprint(KEY), report
    header, first = (json.loads(x) for x in lines(segment(log))[:2])
    assert header["kind"] == "segment" and header["prev"] == GENESIS and header["key_fingerprint"] == fingerprint(KEY)
    assert first["seq"] == 2 and first["prev"] == header["hash"] and "approver" not in first  # None fields omitted
    body = {k: v for k, v in first.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert first["hash"] == hmac.new(KEY, canonical, hashlib.sha256).hexdigest()  # an HMAC, never a bare hash
    assert next(e["kind"] for e in log.entries()) == "select"  # headers are structure, not events
    again = AuditLog(tmp_path / "audit", KEY, fsync=False)  # a restart continues the chain
    assert again.damage is None and again.repaired == []
    again.append("lease_expired", target=["J001"])
    assert again.verify().ok and again.last_seq == 8


def test_forged_audit_entry_is_detected(tmp_path: Path) -> None:
    """Named test: editing who did what (here: the user of entry 3) breaks the chain at that line."""
    log = filled(tmp_path)
    text = lines(segment(log))
    text[2] = text[2].replace('"user": "alice"', '"user": "mallory"')
    segment(log).write_text("".join(text), encoding="utf-8")
    report = verify_file(log.path, KEY)
    assert not report.ok
    assert report.problems == [f"{segment(log)}:3: hash mismatch for entry 3 (edited, forged or written with "
                               f"another key)"]


def test_a_rewritten_history_does_not_verify_without_the_key(tmp_path: Path) -> None:
    """A forger who recomputes every hash and the anchor with a key of their own (or plain SHA-256, as the
    unkeyed default allowed) cannot make the log verify under the log's key, and the key check names both."""
    log = filled(tmp_path)
    entries = [json.loads(x) for x in lines(segment(log))]
    entries[2]["user"] = "mallory"
    prev = GENESIS
    out = []
    for e in entries:
        e.pop("hash")
        e["prev"] = prev
        if e["kind"] == "segment":
            e["key_fingerprint"] = fingerprint(OTHER)
        canonical = json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        e["hash"] = prev = hmac.new(OTHER, canonical, hashlib.sha256).hexdigest()
        out.append(json.dumps(e, sort_keys=True) + "\n")
    segment(log).write_text("".join(out), encoding="utf-8")
    head = {"seq": len(entries), "hash": prev, "segment": 1}
    head["mac"] = hmac.new(OTHER, json.dumps(head, sort_keys=True, separators=(",", ":")).encode(),
                           hashlib.sha256).hexdigest()
    log.head_path.write_text(json.dumps(head))
    assert verify_file(log.path, OTHER).ok  # consistent under the forger's key ...
    report = verify_file(log.path, KEY)
    assert not report.ok and f"keyed with fingerprint {fingerprint(OTHER)}" in report.problems[0]  # ... not ours
    with pytest.raises(AuditKeyError) as refused:  # and the server refuses to go on with it
        AuditLog(log.path, KEY, fsync=False)
    assert refused.value.expected == fingerprint(OTHER) and refused.value.got == fingerprint(KEY)


@pytest.mark.parametrize("tamper, expected", [
    ("delete_middle", ":4: sequence 5 after 3"),
    ("delete_last", "entries at the end were deleted"),
    ("reorder", ":3: sequence 4 after 2"),
    ("insert", ":4: sequence 3 after 3"),
    ("truncate", "last line is incomplete"),
    ("delete_head", "head anchor missing"),
    ("garbage", ":4: not a valid JSON entry"),
    ("edit_head", "head anchor was edited"),
    ("edit_byte", ":3: hash mismatch for entry 3"),
])
def test_tampering_is_detected(tmp_path: Path, tamper: str, expected: str) -> None:
    log = filled(tmp_path)
    text = lines(segment(log))
    if tamper == "delete_middle":
        del text[3]
    elif tamper == "delete_last":
        del text[-1]
    elif tamper == "reorder":
        text[2], text[3] = text[3], text[2]
    elif tamper == "insert":
        text.insert(3, text[2])
    elif tamper == "truncate":
        text[-1] = text[-1][:40]
    elif tamper == "garbage":
        text[3] = "{not json\n"
    elif tamper == "edit_byte":
        text[2] = text[2].replace("t1", "t7")
    if tamper == "delete_head":
        log.head_path.unlink()
    elif tamper == "edit_head":
        head = json.loads(log.head_path.read_text())
        head["seq"] = 5
        log.head_path.write_text(json.dumps(head))
    else:
        segment(log).write_text("".join(text), encoding="utf-8")
    report = verify_file(log.path, KEY)
    assert not report.ok
    assert expected in report.problems[0], report.problems


def test_segments_rotate_and_keep_one_chain(tmp_path: Path) -> None:
    log = filled(tmp_path, n=60, segment_bytes=4096)
    segments = sorted(log.path.glob("*.log"))
    assert len(segments) >= 5 and all(p.stat().st_size <= 4096 for p in segments)
    for i, path in enumerate(segments[1:], start=1):  # each opens with a header linking the previous segment
        header = json.loads(lines(path)[0])
        last = json.loads(lines(segments[i - 1])[-1])
        assert header["kind"] == "segment" and header["segment"] == i + 1 and header["prev"] == last["hash"]
        assert header["key_fingerprint"] == fingerprint(KEY)
    report = verify_file(log.path, KEY)
    assert report.ok and report.segments == len(segments) and report.entries == 60 + len(segments)
    assert [e["seq"] for e in log.entries()] == sorted(e["seq"] for e in log.entries())
    # deleting a whole segment, or editing a sealed one, is found
    middle = segments[2]
    saved = middle.read_bytes()
    middle.write_bytes(saved.replace(b'"t2', b'"t9', 1))
    assert f"{middle}:" in verify_file(log.path, KEY).problems[0]
    middle.unlink()
    assert "000003.log missing" in verify_file(log.path, KEY).problems[0]


def test_an_interrupted_anchor_write_is_a_note_not_a_break(tmp_path: Path) -> None:
    log = filled(tmp_path)
    head = log.head_path.read_bytes()
    log.append("select")
    log.head_path.write_bytes(head)  # as if the process died between the log and the anchor write
    report = verify_file(log.path, KEY)
    assert report.ok and report.notes


@pytest.mark.parametrize("torn", [b'{"seq": 8, "kin', b"\0" * 300 + b"\n"])
def test_a_torn_tail_is_cut_aside_at_start(tmp_path: Path, torn: bytes) -> None:
    """Fail-safe 2: an interrupted write (half a line; or zeros after a crash) never keeps the log from opening."""
    log = filled(tmp_path)
    before = segment(log).read_bytes()
    with segment(log).open("ab") as fh:
        fh.write(torn)
    assert not verify_file(log.path, KEY).ok
    again = AuditLog(log.path, KEY, fsync=False)
    assert again.damage is None and len(again.repaired) == 1 and "torn last line" in again.repaired[0]
    assert segment(log).read_bytes() == before  # cut at the last complete entry
    quarantine = list(log.path.glob("000001.log.torn-*"))
    assert len(quarantine) == 1 and quarantine[0].read_bytes() == torn  # the torn bytes kept for the record
    again.append("audit_repaired", reason=again.repaired[0])
    assert verify_file(log.path, KEY).ok and again.last_seq == 8


def test_a_torn_header_of_a_new_segment_goes_with_its_segment(tmp_path: Path) -> None:
    log = filled(tmp_path, n=30, segment_bytes=2048)
    k = len(list(log.path.glob("*.log")))
    (log.path / f"{k + 1:06d}.log").write_bytes(b'{"seq": 99, "kind": "segm')  # the process died mid-rotation
    again = AuditLog(log.path, KEY, fsync=False, segment_bytes=2048)
    assert again.damage is None and again.repaired and not (log.path / f"{k + 1:06d}.log").exists()
    again.append("select", user="alice")
    assert verify_file(log.path, KEY).ok


def test_a_middle_break_is_damage_and_appends_go_on(tmp_path: Path) -> None:
    log = filled(tmp_path)
    text = lines(segment(log))
    text[3] = text[3].replace("alice", "alicf")
    segment(log).write_text("".join(text), encoding="utf-8")
    again = AuditLog(log.path, KEY, fsync=False)
    assert again.damage is not None and ":4: hash mismatch" in again.damage and not again.repaired
    again.append("audit_damaged", reason=again.damage)  # the record goes on; verify still names the break
    assert ":4: hash mismatch" in verify_file(log.path, KEY).problems[0]


def test_fields_are_bounded_and_the_cut_part_is_named_by_its_hash() -> None:
    huge = "x" * 100_000
    out = bound_fields({"params": {"text": huge}, "note": "n" * 5000, "user": "alice", "reason": None,
                        "target": [f"C{i:04d}" for i in range(1200)]})
    assert "reason" not in out and out["user"] == "alice"
    assert len(out["target"]) == 1200  # the largest approved mass command stays listed (the equipment index)
    cut = out["params"]
    full = json.dumps({"text": huge}, sort_keys=True, ensure_ascii=False).encode()
    assert full.startswith(cut["cut"].encode()) and len(cut["cut"].encode()) + cut["cut_bytes"] == len(full)
    assert cut["cut_sha256"] == hashlib.sha256(full[len(cut["cut"].encode()):]).hexdigest()
    others = {k: v for k, v in out.items() if k != "target"}
    assert len(json.dumps(others).encode()) <= 8192
    many = bound_fields({f"f{i}": "y" * 3000 for i in range(10)})  # ten fields at the per-field bound
    assert len(json.dumps(many).encode()) <= 8192 + 10 * 40


def test_refusals_beyond_the_rate_are_summarised_never_dropped(tmp_path: Path) -> None:
    """Security 5: a refusal flood writes a bounded number of entries; every refusal is still counted."""
    clock = Clock()
    log = AuditLog(tmp_path / "audit", KEY, fsync=False, clock=clock, refusals_per_minute=5)
    for i in range(200):
        clock.now = T0 + i * 0.1
        log.append("refusal", user="mallory", step="target", verb="flash", target=[f"X{i % 30}"],
                   params={"blob": "z" * 1_000_000})
        log.append("refusal", user="alice", step="rate_limit", verb="select_plan", target=["J001"])
    size = sum(p.stat().st_size for p in log.path.glob("*.log"))
    assert size < 100_000  # 400 refusals carrying 200 MB of parameters
    written = [e for e in log.entries() if e["kind"] == "refusal"]
    assert len(written) == 10 and all(e["params"]["cut_bytes"] > 900_000 for e in written if "params" in e)
    clock.now = T0 + 61
    log.flush()  # the fail-safe sweeper does this every second
    summaries = [e for e in log.entries() if e["kind"] == "refusals_summarised"]
    assert {e["user"]: e["count"] for e in summaries} == {"mallory": 195, "alice": 195}
    mallory = next(e for e in summaries if e["user"] == "mallory")
    assert mallory["steps"] == {"target": 195} and mallory["verbs"] == {"flash": 195} and len(mallory["target"]) == 20
    clock.now = T0 + 62
    log.append("refusal", user="mallory", step="target", verb="flash")  # the next minute: written again
    log.append("refusal", user="bob", step="user", verb="flash")
    for _ in range(6):
        log.append("refusal", user="bob", step="user", verb="flash")
    log.close()  # a shutdown writes what is pending
    counted = {e["user"]: e["count"] for e in log.entries() if e["kind"] == "refusals_summarised" and e["ts"] >= T0 + 62}
    assert counted == {"bob": 2}
    assert verify_file(log.path, KEY).ok


def test_latest_reads_newest_first_through_the_index(tmp_path: Path) -> None:
    log = filled(tmp_path, n=0, segment_bytes=8192)
    for i in range(300):
        log.append("select", user="alice", target=[f"J{i % 7:03d}"], ticket=f"t{i}")
    page = log.latest("J003", 5)
    assert [e["ticket"] for e in page] == ["t297", "t290", "t283", "t276", "t269"]
    nxt = log.latest("J003", 5, before=page[-1]["seq"])
    assert [e["ticket"] for e in nxt] == ["t262", "t255", "t248", "t241", "t234"]
    assert [e["ticket"] for e in log.latest(None, 3)] == ["t299", "t298", "t297"]
    assert all(e["kind"] != "segment" for e in log.latest(None, 400))
    # bounded bytes: once caught up, a read costs exactly what was appended since plus the lines returned
    size_before = sum(p.stat().st_size for p in log.path.glob("*.log"))
    for i in range(5):
        log.append("operate", user="bob", target=["J003"], ticket=f"u{i}")
    appended = sum(p.stat().st_size for p in log.path.glob("*.log")) - size_before
    before = log.bytes_read
    got = log.latest("J003", 3)
    assert [e["ticket"] for e in got] == ["u4", "u3", "u2"]
    returned = sum(len(json.dumps(e, sort_keys=True, ensure_ascii=False).encode()) + 1 for e in got)
    assert log.bytes_read - before == appended + returned
    # a lost or stale index is rebuilt from the segments
    log._index.drop()
    (log.path / "index.sqlite").write_bytes(b"not a database at all" * 100)
    assert [e["ticket"] for e in log.latest("J003", 2)] == ["u4", "u3"]


def test_verify_on_a_live_log_sees_a_consistent_snapshot(tmp_path: Path) -> None:
    """Security 6: verify took the log and the anchor at different moments and cried tampering on a live log."""
    log = filled(tmp_path, segment_bytes=16_384)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            log.append("select", user="alice", target=["J001"], ticket=f"w{i}")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        reports = [verify_file(log.path, KEY) for _ in range(40)]
    finally:
        stop.set()
        thread.join()
    assert all(r.ok for r in reports), next(r for r in reports if not r.ok)
    assert reports[-1].entries > reports[0].entries  # it did verify a growing log


def test_the_key_is_created_once_then_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    keys, logdir = tmp_path / "keys", tmp_path / "failsafe" / "audit"
    key = provision_key(keys, logdir)
    assert key.created and len(key.key) == 32 and key.fingerprint == hashlib.sha256(key.key).hexdigest()[:16]
    assert stat.S_IMODE((keys / "audit.key").stat().st_mode) == 0o600
    log = AuditLog(logdir, key, fsync=False)
    log.append("select", user="alice")
    assert recorded_fingerprint(logdir) == key.fingerprint
    again = provision_key(keys, logdir)
    assert not again.created and again.key == key.key
    (keys / "audit.key").unlink()  # the log exists, its key is gone: never a new one
    with pytest.raises(AuditKeyError, match=f"expects the key with fingerprint {key.fingerprint}"):
        provision_key(keys, logdir)
    assert not (keys / "audit.key").exists()
    monkeypatch.setenv(KEY_ENV, "some other secret")
    with pytest.raises(AuditKeyError, match=f"fingerprint {key.fingerprint}, but \\$SCADA_AUDIT_KEY"):
        provision_key(keys, logdir)
    (keys / "audit.key").write_bytes(key.key)
    monkeypatch.delenv(KEY_ENV)
    assert provision_key(keys, logdir).key == key.key


def _legacy_log(path: Path, n: int, key: bytes | None = None) -> None:
    """A single-file log as earlier versions wrote it (plain SHA-256 unless SCADA_AUDIT_KEY was set)."""
    prev, out = GENESIS, []
    for i in range(n):
        e = {"seq": i + 1, "ts": T0 + i, "kind": "select", "user": "alice", "target": ["J001"], "prev": prev}
        data = json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        e["hash"] = prev = hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()
        out.append(json.dumps(e, sort_keys=True) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(out), encoding="utf-8")
    path.with_name(path.name + ".head").write_text("{}")


@pytest.mark.parametrize("legacy_key", [None, b"the old env key"])
def test_a_single_file_log_is_migrated_chain_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     legacy_key: bytes | None) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    state = tmp_path / "failsafe"
    _legacy_log(state / "audit.log", 5, legacy_key)
    if legacy_key is not None:
        with pytest.raises(AuditKeyError, match="written with a key"):  # the old key is needed to migrate it
            provision_key(tmp_path / "keys", state / "audit")
        assert (state / "audit.log").exists()  # nothing moved
        monkeypatch.setenv(KEY_ENV, legacy_key.decode())
    key = provision_key(tmp_path / "keys", state / "audit")
    log = AuditLog(state / "audit", key, fsync=False, legacy=state / "audit.log")
    assert not (state / "audit.log").exists() and (state / "audit" / "legacy.head").exists()
    assert [e["seq"] for e in log.entries()] == [1, 2, 3, 4, 5]
    seal = json.loads(lines(state / "audit" / "000001.log")[-1])
    assert seal["kind"] == "segment" and seal["migrated"].endswith("audit.log") and seal["legacy_entries"] == 5
    log.append("select", user="bob")
    report = verify_file(state / "audit", key.key)
    assert report.ok and report.entries == 7, report
    assert any("before the log was keyed" in n for n in report.notes) == (legacy_key is None)
    again = AuditLog(state / "audit", key, fsync=False, legacy=state / "audit.log")  # a restart: nothing to migrate
    assert again.damage is None and again.last_seq == 7


def test_two_writers_on_one_folder_keep_one_chain(tmp_path: Path) -> None:
    a = AuditLog(tmp_path / "audit", KEY, fsync=False, segment_bytes=1024)
    b = AuditLog(tmp_path / "audit", KEY, fsync=False, segment_bytes=1024)  # e.g. a second process
    for i in range(20):
        (a if i % 3 else b).append("select", user="alice", ticket=f"t{i}")
    assert [e["ticket"] for e in a.entries()] == [f"t{i}" for i in range(20)]
    assert verify_file(a.path, KEY).ok


def test_unwritable_log_raises_storage_error(tmp_path: Path) -> None:
    log = filled(tmp_path, n=1)
    segment(log).unlink()
    segment(log).mkdir()  # a directory where the segment was: appends fail
    with pytest.raises(StorageError):
        log.append("select")


def test_cli_verify_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    log = filled(tmp_path)
    keyfile = tmp_path / "audit.key"
    keyfile.write_bytes(KEY)
    os.chmod(keyfile, 0o600)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)

    def run(*argv: str) -> int:
        return cli.main(parser.parse_args(list(argv)))

    assert run("verify", "--log", str(log.path), "--key-file", str(keyfile)) == 0
    out = capsys.readouterr().out
    assert "audit log OK: 7 entries" in out and f"fingerprint {fingerprint(KEY)}" in out and str(keyfile) in out
    assert run("verify", "--log", str(log.path), "--data-dir", str(tmp_path / "nowhere")) == 2  # no key: exit 2
    assert "no key" in capsys.readouterr().err
    assert run("verify", "--log", str(tmp_path / "missing"), "--key-file", str(keyfile)) == 2  # no log: exit 2
    assert "no audit log" in capsys.readouterr().out
    text = lines(segment(log))
    text[4] = text[4].replace("t3", "t9")
    segment(log).write_text("".join(text))
    assert run("verify", "--log", str(log.path), "--key-file", str(keyfile)) == 1
    assert "000001.log:5: hash mismatch" in capsys.readouterr().out
    assert run("show", "--log", str(log.path), "-n", "2") == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 2 and shown[-1].startswith("#7 operate J001")


def test_scada_audit_verify_through_the_main_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import main

    log = filled(tmp_path)
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert main(["audit", "verify", "--log", str(log.path)]) == 0
    assert "OK" in capsys.readouterr().out
