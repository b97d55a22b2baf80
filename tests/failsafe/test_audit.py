"""The hash-chained audit log: every kind of tampering is detected, with the line that broke."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cli import audit as cli
from failsafe.audit import GENESIS, AuditLog, verify_file
from scada.errors import StorageError


def filled(tmp_path: Path, n: int = 6, key: bytes | None = None) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", key, fsync=False, clock=lambda: 1_750_000_000.0)
    for i in range(n):
        log.append("operate" if i % 2 else "select", ticket=f"t{i}", user="alice", approver=None,
                   target=["J001"], requested={"J001": {"system_pattern_control": 255}}, lease_end=1_750_000_900.0)
    return log


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_append_and_verify(tmp_path: Path) -> None:
    log = filled(tmp_path)
    report = log.verify()
    assert report.ok and report.entries == 6, report
    first = next(log.entries())
    assert first["prev"] == GENESIS and first["seq"] == 1 and "approver" not in first  # None fields omitted
    again = AuditLog(tmp_path / "audit.jsonl", fsync=False)  # a restart continues the chain
    again.append("lease_expired", target=["J001"])
    assert again.verify().ok and again.last_seq == 7


def test_forged_audit_entry_is_detected(tmp_path: Path) -> None:
    """Named test: editing who did what (here: the user of entry 3) breaks the chain at that line."""
    log = filled(tmp_path)
    text = lines(log.path)
    text[2] = text[2].replace('"user": "alice"', '"user": "mallory"')
    log.path.write_text("".join(text), encoding="utf-8")
    report = verify_file(log.path)
    assert not report.ok
    assert report.problems == [f"{log.path}:3: hash mismatch for entry 3 (edited or forged, or written with a key: "
                               f"pass --key-env)"]


def test_forged_entry_with_recomputed_hashes_is_detected_with_a_key(tmp_path: Path) -> None:
    """A forger who recomputes every plain SHA-256 (and the anchor) cannot produce the HMAC without the key."""
    key = b"secret-kept-out-of-the-log"
    log = filled(tmp_path, key=key)
    entries = [json.loads(x) for x in lines(log.path)]
    entries[1]["user"] = "mallory"
    prev = GENESIS
    out = []
    for e in entries:
        e.pop("hash")
        e["prev"] = prev
        e["hash"] = prev = hashlib.sha256(json.dumps(e, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        out.append(json.dumps(e, sort_keys=True) + "\n")
    log.path.write_text("".join(out), encoding="utf-8")
    head = {"seq": 6, "hash": prev}
    head["mac"] = hashlib.sha256(json.dumps(head, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    log.head_path.write_text(json.dumps(head), encoding="utf-8")
    assert verify_file(log.path).ok  # without the key a complete rewrite is undetectable (documented) ...
    report = verify_file(log.path, key)
    assert not report.ok and ":1: hash mismatch" in report.problems[0]  # ... with it, it is


@pytest.mark.parametrize("tamper, expected", [
    ("delete_middle", ":3: sequence 4 after 2"),
    ("delete_last", "entries at the end were deleted"),
    ("reorder", ":2: sequence 3 after 1"),
    ("insert", ":3: sequence 2 after 2"),
    ("truncate", "last line is incomplete"),
    ("delete_head", "head anchor missing"),
    ("garbage", ":4: not a valid JSON entry"),
    ("edit_head", "head anchor was edited"),
])
def test_tampering_is_detected(tmp_path: Path, tamper: str, expected: str) -> None:
    log = filled(tmp_path)
    text = lines(log.path)
    if tamper == "delete_middle":
        del text[2]
    elif tamper == "delete_last":
        del text[-1]
    elif tamper == "reorder":
        text[1], text[2] = text[2], text[1]
    elif tamper == "insert":
        text.insert(2, text[1])
    elif tamper == "truncate":
        text[-1] = text[-1][:40]
    elif tamper == "garbage":
        text[3] = "{not json\n"
    if tamper == "delete_head":
        log.head_path.unlink()
    elif tamper == "edit_head":
        head = json.loads(log.head_path.read_text())
        head["seq"] = 5
        log.head_path.write_text(json.dumps(head))
    else:
        log.path.write_text("".join(text), encoding="utf-8")
    report = verify_file(log.path)
    assert not report.ok
    assert expected in report.problems[0], report.problems


def test_an_interrupted_anchor_write_is_a_note_not_a_break(tmp_path: Path) -> None:
    log = filled(tmp_path)
    head = json.loads(log.head_path.read_text())
    log2 = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    log2.append("select")
    log.head_path.write_text(json.dumps(head))  # as if the process died between the log and the anchor write
    report = verify_file(log.path)
    assert report.ok and report.notes


def test_an_incomplete_tail_refuses_to_append(tmp_path: Path) -> None:
    log = filled(tmp_path)
    with log.path.open("a") as fh:
        fh.write('{"seq": 7, "kin')
    with pytest.raises(StorageError, match="incomplete"):
        AuditLog(log.path)


def test_unwritable_log_raises_storage_error(tmp_path: Path) -> None:
    log = filled(tmp_path, n=1)
    log.path.unlink()
    log.path.mkdir()  # a directory where the file was: appends fail
    with pytest.raises(StorageError):
        log.append("select")


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    log = filled(tmp_path)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["verify", "--log", str(log.path)])) == 0
    assert "audit log OK: 6 entries" in capsys.readouterr().out
    text = lines(log.path)
    text[4] = text[4].replace("t4", "t9")
    log.path.write_text("".join(text))
    assert cli.main(parser.parse_args(["verify", "--log", str(log.path)])) == 1
    assert "audit.jsonl:5: hash mismatch" in capsys.readouterr().out
    assert cli.main(parser.parse_args(["show", "--log", str(log.path), "-n", "2"])) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[-1].startswith("#6 operate J001")


def test_scada_audit_verify_through_the_main_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    log = filled(tmp_path)
    assert main(["audit", "verify", "--log", str(log.path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    a = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    b = AuditLog(tmp_path / "audit.jsonl", fsync=False)  # e.g. a second process
    a.append("select")
    b.append("select")
    a.append("operate")
    assert [e["seq"] for e in a.entries()] == [1, 2, 3]
    assert verify_file(a.path).ok
