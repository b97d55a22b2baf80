"""Append-only, hash-chained audit log of every command, approval, refusal, select timeout and lease expiry.

One JSON object per line; each entry carries the hash of the previous one, so editing, inserting,
reordering or deleting any entry breaks the chain::

    audit.log (JSON lines)
    {"seq":1,"ts":...,"kind":"select","user":"alice",...,"prev":"000…0","hash":"3f2a…"}
    {"seq":2,"ts":...,"kind":"approval","approver":"bob",...,"prev":"3f2a…","hash":"9c41…"}
         hash = SHA-256(canonical JSON of the entry without "hash")          (no key)
              = HMAC-SHA-256(key, same bytes)                                (SCADA_AUDIT_KEY set)

    audit.log.head     {"seq": 2, "hash": "9c41…", "mac": …}   anchor rewritten in place (one 256-byte
                       record) after every append: deleting entries at the end (which a bare chain
                       cannot show) no longer matches it.

Without a key, anyone able to rewrite the whole file can recompute every hash; with a key (kept out
of the log, e.g. in the server's secret store) a forged entry cannot be made to verify. ``verify()``
names the first line where the chain breaks. Writes are fsynced; a write that fails raises
:class:`scada.errors.StorageError` (the gate then refuses every command except safety-increasing ones).

Entry fields (AC-CMD-08): ``seq ts kind ticket user approver workstation target verb requested
previous lease_end outcome reason`` plus kind-specific extras. Kinds: select, approval, refusal,
operate, outcome, cancel, select_timeout, approval_timeout, lease_start, lease_expired, lease_released,
lease_superseded, lease_refresh_failed, lease_resumed, crisis_step, crisis_run, monitor, audit_opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failsafe.types import Clock, system_clock
from scada.errors import StorageError

GENESIS = "0" * 64
HEAD_SIZE = 256  # the anchor file is one fixed-size JSON record, rewritten in place
KEY_ENV = "SCADA_AUDIT_KEY"


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _digest(key: bytes | None, data: bytes) -> str:
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def key_from_env(env: str = KEY_ENV) -> bytes | None:
    value = os.environ.get(env)
    return value.encode() if value else None


@dataclass(slots=True)
class VerifyReport:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"audit log {'OK' if self.ok else 'BROKEN'}: {self.entries} entries"
        return "\n".join([head, *self.problems, *self.notes])


class AuditLog:
    """The command audit log. ``append`` is thread-safe and durable (fsync) by default."""

    def __init__(self, path: Path | str, key: bytes | None = None, *, fsync: bool = True,
                 clock: Clock = system_clock) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.key = key
        self.fsync = fsync
        self.clock = clock
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._hash = self._tail()
        self._size = self.path.stat().st_size if self.path.exists() else 0
        self._head_fd: int | None = None

    # ------------------------------------------------------------------ writing
    def _tail(self) -> tuple[int, str]:
        """(seq, hash) of the last complete entry; refuses to continue a broken tail."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with self.path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            pos = max(0, size - 65536)
            fh.seek(pos)
            tail = fh.read()
        if not tail.endswith(b"\n"):
            raise StorageError(f"{self.path}: last entry is incomplete (interrupted write?); run `scada audit "
                               f"verify` and repair before appending")
        lines = tail.rstrip(b"\n").split(b"\n")
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{self.path}: last entry is not a valid audit entry ({exc})") from exc

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one entry; return it (with seq and hash). Raises StorageError if it cannot be stored."""
        with self._lock:
            entry: dict[str, Any] = {"seq": self._seq + 1, "ts": round(self.clock(), 6), "kind": kind}
            for k, v in fields.items():
                if v is not None:
                    entry[k] = v
            entry["prev"] = self._hash
            entry["hash"] = _digest(self.key, _canonical(entry))
            try:
                with self.path.open("a", encoding="utf-8") as fh:
                    # another writer (a second process, a CLI) may have appended: lock, then re-read the tail
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                    try:
                        size = os.fstat(fh.fileno()).st_size
                        if size != self._size:
                            self._seq, self._hash = self._tail()
                            entry["seq"], entry["prev"] = self._seq + 1, self._hash
                            del entry["hash"]
                            entry["hash"] = _digest(self.key, _canonical(entry))
                        line = json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str) + "\n"
                        fh.write(line)
                        fh.flush()
                        if self.fsync:
                            os.fsync(fh.fileno())
                        self._size = os.fstat(fh.fileno()).st_size
                        self._write_head(entry["seq"], entry["hash"])
                    finally:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except OSError as exc:
                raise StorageError(f"{self.path}: cannot append audit entry: {exc}") from exc
            self._seq, self._hash = entry["seq"], entry["hash"]
            return entry

    def _write_head(self, seq: int, digest: str) -> None:
        """Rewrite the anchor in place: one fixed-size record at offset 0 (a single small pwrite, no rename:
        renames cost milliseconds on some filesystems and the anchor is rewritten after every entry)."""
        head = {"seq": seq, "hash": digest}
        head["mac"] = _digest(self.key, _canonical(head))
        data = (json.dumps(head).ljust(HEAD_SIZE - 1) + "\n").encode()
        if self._head_fd is None:
            self._head_fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self._head_fd, data, 0)
        if self.fsync:
            os.fsync(self._head_fd)

    def close(self) -> None:
        if self._head_fd is not None:
            os.close(self._head_fd)
            self._head_fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ reading
    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> VerifyReport:
        return verify_file(self.path, self.key)

    @property
    def last_seq(self) -> int:
        return self._seq


def verify_file(path: Path | str, key: bytes | None = None) -> VerifyReport:
    """Check the whole chain and the head anchor; report the first break with its line number."""
    path = Path(path)
    head_path = path.with_name(path.name + ".head")
    report = VerifyReport(True, 0)
    if not path.exists():
        if head_path.exists():
            report.ok = False
            report.problems.append(f"{path}: missing, but its head anchor exists (log deleted)")
        else:
            report.notes.append(f"{path}: no audit log yet")
        return report
    prev, seq = GENESIS, 0
    last_hash = before_last = GENESIS
    with path.open("rb") as fh:
        data = fh.read()
    if data and not data.endswith(b"\n"):
        report.ok = False
        report.problems.append(f"{path}: last line is incomplete (truncated or interrupted write)")
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            report.ok = False
            report.problems.append(f"{where}: not a valid JSON entry ({exc})")
            return report
        report.entries += 1
        stored = entry.pop("hash", None)
        if entry.get("seq") != seq + 1:
            report.ok = False
            report.problems.append(f"{where}: sequence {entry.get('seq')!r} after {seq} "
                                   f"(an entry was deleted, inserted or reordered)")
            return report
        if entry.get("prev") != prev:
            report.ok = False
            report.problems.append(f"{where}: 'prev' does not match the hash of entry {seq} "
                                   f"(an entry before it was edited, deleted or inserted)")
            return report
        if stored != _digest(key, _canonical(entry)):
            report.ok = False
            report.problems.append(f"{where}: hash mismatch for entry {entry.get('seq')} (edited or forged"
                                   f"{'' if key else ', or written with a key: pass --key-env'})")
            return report
        before_last = entry["prev"]
        seq, prev, last_hash = entry["seq"], stored, stored
    if not head_path.exists():
        if seq:
            report.ok = False
            report.problems.append(f"{head_path}: head anchor missing (entries at the end may have been deleted)")
        return report
    try:
        head = json.loads(head_path.read_text(encoding="utf-8").strip())
        mac = head.pop("mac", None)
    except (OSError, ValueError) as exc:
        report.ok = False
        report.problems.append(f"{head_path}: unreadable head anchor ({exc})")
        return report
    if mac != _digest(key, _canonical(head)):
        report.ok = False
        report.problems.append(f"{head_path}: head anchor was edited (its MAC does not match)")
    elif head.get("seq") == seq and head.get("hash") == last_hash:
        pass
    elif isinstance(head.get("seq"), int) and head["seq"] > seq:
        report.ok = False
        report.problems.append(f"{path}: the log ends at entry {seq} but the head anchor says {head['seq']} "
                               f"(entries at the end were deleted)")
    elif head.get("seq") == seq - 1 and seq > 0 and head.get("hash") == before_last:
        report.notes.append(f"{head_path}: anchor one entry behind the log (write interrupted between log and "
                            f"anchor); chain itself is intact")
    else:
        report.ok = False
        report.problems.append(f"{head_path}: head anchor (seq {head.get('seq')}) does not match the log "
                               f"(last entry {seq})")
    return report
