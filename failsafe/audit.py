"""The command audit log: append-only, hash-chained, always keyed, in segments, read newest first.

Every command, approval, refusal, select timeout, lease event, crisis run and monitor action is one
JSON line; each entry carries the HMAC of the previous one, so editing, inserting, reordering or
deleting any entry breaks the chain, and without the key nobody can recompute it::

    <data>/keys/audit.key       32 random bytes, mode 0600, created at the first start (unless
                                $SCADA_AUDIT_KEY is given); kept apart from the log. Its fingerprint (first
                                16 hex of its SHA-256) is logged and written in every segment header. The
                                failover pair shares one key, provisioned the same way (copy the file, or
                                the same $SCADA_AUDIT_KEY on both servers).
    <data>/failsafe/audit/      the log
        000001.log 000002.log   segments, JSON lines, rotated at ``segment_bytes`` (16 MiB)
        head                    anchor: one 256-byte record {"seq","hash","segment","mac"} rewritten in place
                                after every append (deleting entries at the end no longer matches it)
        lock                    fcntl.flock: a writer holds it exclusive while it appends, a reader (verify)
                                shared while it takes its snapshot (segment sizes + anchor)
        index.sqlite            derived read index (seq → segment, offset; equipment → seq), rebuilt if lost
        000002.log.torn-<UTC>   a torn tail set aside at start (quarantine)

    segment k   {"seq":41,"kind":"segment","segment":k,"key_fingerprint":"3f2a…","format":2,"prev":<hash 40>,"hash":…}
                {"seq":42,"kind":"select","user":"alice","target":["J001"],…,"prev":<hash 41>,"hash":…}
    hash = HMAC-SHA-256(key, canonical JSON of the entry without "hash")

Bounded: every field is cut to ``field_bytes`` (2 KiB) and an entry's fields together to ``entry_bytes``
(8 KiB); a cut value becomes ``{"cut": <kept prefix>, "cut_sha256": <SHA-256 of the cut bytes>,
"cut_bytes": <their length>}``. ``target`` is bounded apart (``target_bytes``, 64 KiB: every equipment of
the largest approved mass command stays listed, so the equipment index finds it). Refusals are written
up to ``refusals_per_minute`` per user; further ones are counted and summarised in one
``refusals_summarised`` entry per user and minute (how many, which steps, verbs, targets), never
dropped silently. The gate refuses exactly as before: only what is written changes.

Start-up (``AuditLog(...)``): an old single ``audit.log`` (``legacy=``) becomes segment 1 as it is, its
chain intact, followed by a keyed ``segment`` entry marked ``migrated`` (entries before it were written
with no key or $SCADA_AUDIT_KEY; the keyed entry's ``prev`` seals them). A torn last line (an
interrupted write: no final newline, or a last line that is not JSON) is copied to a quarantine file
next to its segment and the segment is cut at the last valid entry (``repaired``); the last segment is
then checked entry by entry. Any other damage (a chain break, a hash that does not verify, an anchor
ahead of the log) is ``damage``: the layer still starts, the gate then refuses every command except
safety-increasing ones (failsafe.service). A log whose headers name another key fingerprint, or an
existing log with no key at all, raises :class:`AuditKeyError` (``scada server`` exits 2).

Reads never scan the history: :meth:`AuditLog.latest` asks the index (brought up to date from the
bytes appended since its last read) for the newest matching sequence numbers and reads only those
lines (``bytes_read`` counts every byte read). ``verify_file`` checks every segment under a consistent
snapshot and says which key (fingerprint) it used. Writes are fsynced; a write that fails raises
:class:`scada.errors.StorageError` (the gate then refuses every command except safety-increasing ones).

The failover pair (server.ha.replication): the standby's log is the active's, entry for entry — the active
reads its stored lines through the index (:meth:`AuditLog.lines_after`, segment headers included), the standby
writes them verbatim (:meth:`AuditLog.append_copied`: each checked as ``verify`` checks it, with the pair's one
key) and, while ``copy_only``, writes nothing of its own; after a takeover its own entries continue the chain.

Threads: one log is appended to from the server's main loop (operator commands, leases, crisis plans, the
watch) and from the field-safety thread (the monitor's entries and flash commands), and read from worker
threads (``latest``, ``verify``). ``append`` / ``flush`` / ``close`` hold the log's ``threading.RLock`` (the
chain head, the segment, the refusal bounds) and, inside it, the ``lock`` file's exclusive flock (another
process); ``latest`` holds the index's own lock; ``verify`` takes the flock shared on a descriptor of its own,
so it waits for an append in progress in this process too. Callers may hold their own lock (the gate's, the
lease manager's) when they append: the log never calls back into them.

Entry fields (AC-CMD-08): ``seq ts kind ticket user approver workstation target verb requested previous
lease_end outcome reason`` plus kind-specific extras. Kinds: segment, select, approval, refusal,
refusals_summarised, operate, outcome, cancel, select_timeout, approval_timeout, lease_start,
lease_expired, lease_released, lease_superseded, lease_refresh_failed, lease_resumed, crisis_step,
crisis_run, monitor, commandable, lease_dropped, uncommanded, audit_opened, audit_repaired, audit_damaged,
audit_writable_again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failsafe.types import Clock, system_clock
from scada.datadir import keys_dir
from scada.errors import ScadaError, StorageError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
FORMAT = 2
HEAD_SIZE = 256  # the anchor file is one fixed-size JSON record, rewritten in place
KEY_ENV = "SCADA_AUDIT_KEY"
KEY_FILE = "audit.key"  # in the instance's key folder (scada.datadir.keys_dir)
LOG_DIR_NAME = "audit"  # in the fail-safe state folder: <data>/failsafe/audit/
LEGACY_LOG = "audit.log"  # the single-file log of earlier versions, migrated at the first start
STATE_DIR = "failsafe"  # the fail-safe layer's folder in an instance's data folder
KEY_BYTES = 32
SEGMENT_KIND = "segment"
REFUSAL_KIND = "refusal"
SUMMARY_KIND = "refusals_summarised"
SEGMENT_BYTES = 16 * 1024 * 1024
FIELD_BYTES = 2048
ENTRY_BYTES = 8192
TARGET_BYTES = 64 * 1024
REFUSALS_PER_MINUTE = 20
SUMMARY_WINDOW_S = 60.0
SMALL_CUT = 256  # what is kept of a field cut again to fit the entry bound
_CUT_OVERHEAD = 128  # {"cut": …, "cut_sha256": 64 hex, "cut_bytes": n}
_SUMMARY_TARGETS = 20
_INDEXED = ("target", "targets", "equipment")  # the fields naming equipment (history by equipment)
_RESERVED = {"seq", "ts", "kind", "prev", "hash"}


class AuditKeyError(ScadaError):
    """The audit log's key is missing or is not the one the log was written with (the server exits 2)."""

    def __init__(self, message: str, expected: str | None = None, got: str | None = None) -> None:
        self.expected, self.got = expected, got
        super().__init__(message)


# ====================================================================== keys
def fingerprint(key: bytes) -> str:
    """First 16 hex digits of the key's SHA-256: names a key without revealing it."""
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AuditKey:
    key: bytes = field(repr=False)
    source: str  # "$SCADA_AUDIT_KEY" or the key file's path
    created: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def load_key(key_file: Path | None, env: str = KEY_ENV) -> AuditKey | None:
    """The key from ``$env`` if set, else from ``key_file`` if it exists, else None."""
    value = os.environ.get(env)
    if value:
        return AuditKey(value.encode(), f"${env}")
    if key_file is None or not key_file.is_file():
        return None
    data = key_file.read_bytes()
    if not data:
        raise AuditKeyError(f"{key_file}: the audit key file is empty")
    if key_file.stat().st_mode & 0o077:
        log.warning("%s: audit key readable by others (mode %o): chmod 600", key_file, key_file.stat().st_mode & 0o777)
    return AuditKey(data, str(key_file))


def recorded_fingerprint(directory: Path) -> str | None:
    """The key fingerprint the log's newest readable segment header names (None: no keyed log yet)."""
    for _, path in reversed(_segments(directory)):
        with contextlib.suppress(OSError):
            with path.open("rb") as fh:
                for raw in fh:
                    try:
                        entry = json.loads(raw)
                    except ValueError:
                        break
                    if isinstance(entry, dict) and entry.get("kind") == SEGMENT_KIND:
                        fp = entry.get("key_fingerprint")
                        return str(fp) if fp is not None else None
    return None


def _legacy_keyed(legacy: Path, key: bytes | None) -> bool | None:
    """Whether a single-file log of earlier versions verifies: its first entry's hash is a plain SHA-256 or
    the HMAC with ``key`` (True), or was made with a key we do not have (False); None: nothing to check."""
    try:
        with legacy.open("rb") as fh:
            entry = json.loads(fh.readline())
        body = _canonical({k: v for k, v in entry.items() if k != "hash"})
    except (OSError, ValueError, AttributeError):
        return None
    return entry.get("hash") == hashlib.sha256(body).hexdigest() or (key is not None and
                                                                    entry.get("hash") == _mac(key, body))


def provision_key(key_dir: Path, directory: Path, *, env: str = KEY_ENV) -> AuditKey:
    """The log's key: ``$env``, else ``key_dir/audit.key``; created (32 random bytes, mode 0600) when
    neither exists and the log has no keyed segment yet. AuditKeyError when the log exists and the key
    is missing or is another one (the message names the fingerprint the log expects), or when a
    single-file log of earlier versions beside ``directory`` was written with a key not given."""
    key_file = Path(key_dir) / KEY_FILE
    recorded = recorded_fingerprint(Path(directory))
    key = load_key(key_file, env)
    legacy = Path(directory).with_name(LEGACY_LOG)
    if recorded is None and _legacy_keyed(legacy, key.key if key is not None else None) is False:
        raise AuditKeyError(f"{legacy}: this audit log was written with a key (${KEY_ENV}) other than "
                            f"{key.source if key is not None else 'any given'}: set ${env} to its key to migrate it")
    if key is None:
        if recorded is not None:
            raise AuditKeyError(f"{directory}: the command audit log exists but its key is missing (no ${env}, no "
                                f"{key_file}): it expects the key with fingerprint {recorded}; restore that key "
                                f"(never a new one: the log could not be verified any more)", recorded, None)
        key = _create_key(key_file)
    if recorded is not None and key.fingerprint != recorded:
        raise AuditKeyError(f"{directory}: the command audit log was written with the key of fingerprint {recorded}, "
                            f"but {key.source} has fingerprint {key.fingerprint}: give the log's own key",
                            recorded, key.fingerprint)
    return key


def log_dir(instance: Path) -> Path:
    """The audit log folder of a server's data folder."""
    return Path(instance) / STATE_DIR / LOG_DIR_NAME


def provision_for(instance: Path, env: str = KEY_ENV) -> AuditKey:
    """:func:`provision_key` for a server's data folder (its key folder, its log)."""
    return provision_key(keys_dir(instance), log_dir(instance), env=env)


def _create_key(key_file: Path) -> AuditKey:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(key_file.parent, 0o700)
    data = secrets.token_bytes(KEY_BYTES)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite an existing key
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    key = AuditKey(data, str(key_file), created=True)
    log.warning("audit: created the command audit key %s (fingerprint %s); back it up apart from the log, and "
                "give the failover server the same key", key_file, key.fingerprint)
    return key


# ====================================================================== format
def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()


def _segment_name(k: int) -> str:
    return f"{k:06d}.log"


def _segments(directory: Path) -> list[tuple[int, Path]]:
    """(number, path) of the segment files, in order."""
    out: list[tuple[int, Path]] = []
    with contextlib.suppress(OSError):
        for p in directory.iterdir():
            if p.suffix == ".log" and p.stem.isdigit() and len(p.stem) == 6:
                out.append((int(p.stem), p))
    return sorted(out)


def _cut(value: Any, keep: int) -> dict[str, Any]:
    """A value's JSON text cut after ``keep`` bytes: the kept prefix, the cut bytes' SHA-256 and length."""
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()
    prefix = data[:keep].decode("utf-8", "ignore")  # never half a character
    rest = data[len(prefix.encode()):]
    return {"cut": prefix, "cut_sha256": hashlib.sha256(rest).hexdigest(), "cut_bytes": len(rest)}


def bound_fields(fields: dict[str, Any], field_bytes: int = FIELD_BYTES, entry_bytes: int = ENTRY_BYTES,
                 target_bytes: int = TARGET_BYTES) -> dict[str, Any]:
    """The fields (None ones left out) with every value cut to its bound (see the module docstring)."""
    out: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for k, value in fields.items():
        if value is None:
            continue
        limit = target_bytes if k in _INDEXED else field_bytes
        if isinstance(value, (bool, int, float)) or (isinstance(value, str) and 6 * len(value) + 2 <= limit):
            out[k], sizes[k] = value, 6 * len(value) + 2 if isinstance(value, str) else 24  # an upper bound, no dump
            continue
        size = len(json.dumps(value, ensure_ascii=False, default=str).encode())
        if size > limit:
            value = _cut(value, max(0, limit - _CUT_OVERHEAD))  # noqa: PLW2901 (the bounded value replaces it)
            size = len(json.dumps(value, ensure_ascii=False).encode())
        out[k], sizes[k] = value, size
    others = [k for k in out if k not in _INDEXED]
    total = sum(sizes[k] for k in others)
    if total > entry_bytes:  # the upper bounds above may overstate: measure exactly before cutting
        sizes.update({k: len(json.dumps(out[k], ensure_ascii=False, default=str).encode()) for k in others})
        total = sum(sizes[k] for k in others)
    for k in sorted(others, key=lambda k: -sizes[k]):  # the largest first, until the entry fits
        if total <= entry_bytes or sizes[k] <= SMALL_CUT + _CUT_OVERHEAD:
            break
        out[k] = _cut(fields[k], SMALL_CUT)
        new = len(json.dumps(out[k], ensure_ascii=False).encode())
        total -= sizes[k] - new
        sizes[k] = new
    return out


def equipment_of(entry: dict[str, Any]) -> list[str]:
    """The equipment an entry is about (its ``target``, ``targets`` or ``equipment`` field)."""
    for name in _INDEXED:
        value = entry.get(name)
        if value:
            if isinstance(value, list):
                return [str(v) for v in value if isinstance(v, str)]
            if isinstance(value, str):
                return [value]
    return []


@dataclass(slots=True)
class VerifyReport:
    ok: bool
    entries: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key_fingerprint: str = ""
    segments: int = 0
    missing: bool = False  # no log at all (the command line exits 2)

    def __str__(self) -> str:
        head = (f"audit log {'OK' if self.ok else 'BROKEN'}: {self.entries} entries in {self.segments} segment(s), "
                f"key fingerprint {self.key_fingerprint}")
        return "\n".join([head, *self.problems, *self.notes])


class _Chain:
    """Walks entries in order and says what breaks the chain (shared by start-up and ``verify_file``)."""

    def __init__(self, key: bytes, prev: str = GENESIS, seq: int = 0) -> None:
        self.key = key
        self.fp = fingerprint(key)
        self.prev, self.seq = prev, seq
        self.keyed = seq > 0  # entries after a segment header; before the first one: legacy (segment 1 only)
        self.legacy = 0
        self.before_last = prev
        self.foreign: str | None = None  # a header naming another key fingerprint

    def feed(self, entry: dict[str, Any], where: str, segment: int, first: bool) -> str | None:
        body = {k: v for k, v in entry.items() if k != "hash"}
        stored = entry.get("hash")
        if body.get("seq") != self.seq + 1:
            return (f"{where}: sequence {body.get('seq')!r} after {self.seq} (an entry was deleted, inserted or "
                    f"reordered)")
        if body.get("prev") != self.prev:
            return f"{where}: 'prev' does not match the hash of entry {self.seq} (an entry before it was edited, " \
                   f"deleted or inserted)"
        data = _canonical(body)
        header = body.get("kind") == SEGMENT_KIND
        if header:
            if body.get("segment") != segment:
                return f"{where}: the header of segment {segment} names segment {body.get('segment')!r}"
            if body.get("key_fingerprint") != self.fp:
                self.foreign = str(body.get("key_fingerprint"))
                return (f"{where}: segment {segment} was keyed with fingerprint {self.foreign}, the key given has "
                        f"fingerprint {self.fp}")
        elif first and (segment > 1 or self.keyed):
            return f"{where}: segment {segment} does not start with its header"
        if stored != _mac(self.key, data):
            legacy = not self.keyed and segment == 1 and stored == hashlib.sha256(data).hexdigest()
            if not legacy:
                return (f"{where}: hash mismatch for entry {body.get('seq')} (edited, forged or written with "
                        f"another key)")
            self.legacy += 1
        if header:
            self.keyed = True
        self.before_last, self.prev, self.seq = self.prev, str(stored), int(body["seq"])
        return None


def _head_problem(head_path: Path, data: bytes | None, key: bytes, seq: int, last_hash: str, before_last: str,
                  notes: list[str]) -> str | None:
    """What the anchor (its bytes, None: no anchor) says against the log's last entry (None: it matches, or
    is one entry behind: a write interrupted between the log and the anchor)."""
    if data is None:
        return f"{head_path}: head anchor missing (entries at the end may have been deleted)" if seq else None
    try:
        head = json.loads(data.decode("utf-8").strip())
        mac = head.pop("mac", None)
    except (ValueError, AttributeError) as exc:
        return f"{head_path}: unreadable head anchor ({exc})"
    if mac != _mac(key, _canonical(head)):
        return f"{head_path}: head anchor was edited or written with another key (its MAC does not match)"
    if head.get("seq") == seq and head.get("hash") == last_hash:
        return None
    if isinstance(head.get("seq"), int) and head["seq"] > seq:
        return f"the log ends at entry {seq} but the head anchor says {head['seq']} (entries at the end were deleted)"
    if head.get("seq") == seq - 1 and seq > 0 and head.get("hash") == before_last:
        notes.append(f"{head_path}: anchor one entry behind the log (write interrupted between log and anchor); "
                     f"the chain itself is intact")
        return None
    return f"{head_path}: head anchor (seq {head.get('seq')}) does not match the log (last entry {seq})"


def _last_line(path: Path) -> bytes:
    """The last complete line of a file, read backwards in growing steps (a legacy line may be megabytes)."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        step = 65536
        while True:
            start = max(0, size - step)
            fh.seek(start)
            tail = fh.read(size - start)
            end = tail.rfind(b"\n")  # the end of the last complete line
            cut = tail.rfind(b"\n", 0, max(end, 0))
            if end >= 0 and (cut >= 0 or start == 0):
                return tail[cut + 1:end]
            if start == 0:
                raise ValueError(f"{path}: no complete line")
            step *= 4


# ====================================================================== the log
@dataclass(slots=True)
class _Suppressed:
    """Refusals of one user beyond the per-minute bound, waiting for their summary entry."""

    since: float
    last: float = 0.0
    count: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    verbs: Counter[str] = field(default_factory=Counter)
    targets: dict[str, None] = field(default_factory=dict)  # first distinct ones, in order


class AuditLog:
    """The command audit log. ``append`` is thread-safe and durable (fsync) by default; ``latest`` and
    ``verify`` may run in worker threads. ``repaired``: what start-up cut from a torn tail (quarantine
    file); ``damage``: the first problem found (None: intact as far as checked)."""

    def __init__(self, directory: Path | str, key: bytes | AuditKey, *, fsync: bool = True,
                 clock: Clock = system_clock, segment_bytes: int = SEGMENT_BYTES, field_bytes: int = FIELD_BYTES,
                 entry_bytes: int = ENTRY_BYTES, target_bytes: int = TARGET_BYTES,
                 refusals_per_minute: int = REFUSALS_PER_MINUTE, legacy: Path | str | None = None) -> None:
        self.path = Path(directory)
        self.head_path = self.path / "head"
        self.key = key.key if isinstance(key, AuditKey) else key
        if not self.key:
            raise AuditKeyError("the command audit log is always keyed: no key given")
        self.fingerprint = fingerprint(self.key)
        self.fsync, self.clock = fsync, clock
        self.segment_bytes, self.field_bytes = segment_bytes, field_bytes
        self.entry_bytes, self.target_bytes = entry_bytes, target_bytes
        self.refusals_per_minute = refusals_per_minute
        self.repaired: list[str] = []
        self.damage: str | None = None
        self._lock = threading.RLock()
        self._head_fd: int | None = None
        self._lock_fd: int | None = None
        self._seq, self._hash, self._segment, self._size = 0, GENESIS, 0, 0
        self._written: dict[str, deque[float]] = {}  # user → times of the refusals written this minute
        self._suppressed: dict[str, _Suppressed] = {}
        self._index = AuditIndex(self.path)
        #: a failover standby's log is the active's copy (server.ha.replication: append_copied); its own entries
        #: are logged, not written (they would fork the chain the new active continues after a takeover)
        self.copy_only = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._open(Path(legacy) if legacy is not None else None)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except OSError as exc:  # the layer starts anyway (the monitor must run); every append will fail
            self.damage = f"{self.path}: cannot open the audit log: {exc}"
            log.error("audit: %s", self.damage)
            self._close_fds()
        except AuditKeyError:
            self._close_fds()
            raise

    # ------------------------------------------------------------------ start-up
    def _open(self, legacy: Path | None) -> None:
        segments = _segments(self.path)
        if not segments and legacy is not None and legacy.is_file():
            self._migrate(legacy)
            return
        if not segments:
            if self.head_path.exists():  # an anchor with no log: the log was deleted; keep the evidence
                self.damage = f"{self.path}: no segment, but its head anchor exists (the log was deleted)"
                self.head_path.rename(self.path / f"head.orphan-{_stamp()}")
            self._start_segment(1)
            return
        k, path = self._repair_tail(segments)
        if path is None:  # the only segment held nothing but a torn line
            self._start_segment(1)
            return
        self._check_last(k, path)

    def _repair_tail(self, segments: list[tuple[int, Path]]) -> tuple[int, Path | None]:
        """Cut a torn last line off the last segment (copied aside first); an emptied later segment goes."""
        while segments:
            k, path = segments[-1]
            data = path.read_bytes()
            keep = len(data)
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1  # the unfinished write: from the last newline on
            elif data:
                last_start = data.rfind(b"\n", 0, len(data) - 1) + 1
                try:
                    json.loads(data[last_start:])
                except ValueError:  # a complete line of garbage at the very end (zeros after a crash)
                    keep = last_start
            if keep == len(data):
                return k, path
            quarantine = path.with_name(f"{path.name}.torn-{_stamp()}")
            quarantine.write_bytes(data[keep:])
            with path.open("r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())
            what = (f"{path}: torn last line ({len(data) - keep} bytes, an interrupted write) copied to "
                    f"{quarantine.name}; the segment is cut at its last complete entry")
            self.repaired.append(what)
            log.error("audit: %s", what)
            self._index.drop()
            if keep:
                return k, path
            if k == 1:
                path.unlink()
                return 1, None
            path.unlink()
            segments = segments[:-1]
        return 1, None

    def _check_last(self, k: int, path: Path) -> None:
        """Check the last segment entry by entry, compare the anchor; set where appends continue."""
        data = path.read_bytes()
        lines = data.split(b"\n")[:-1]
        chain: _Chain | None = None
        for lineno, raw in enumerate(lines, start=1):
            where = f"{path}:{lineno}"
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.damage = self.damage or f"{where}: not a valid JSON entry ({exc})"
                continue
            if chain is None:  # trust the first entry's position; the links between segments are verify's
                start = (GENESIS, 0) if k == 1 else (str(entry.get("prev")), int(entry.get("seq", 1)) - 1)
                chain = _Chain(self.key, *start)
            problem = chain.feed(entry, where, k, lineno == 1)
            if chain.foreign is not None:
                raise AuditKeyError(f"{self.path}: the command audit log was written with the key of fingerprint "
                                    f"{chain.foreign}, the key given has fingerprint {self.fingerprint}",
                                    chain.foreign, self.fingerprint)
            if problem and self.damage is None:
                self.damage = problem
            if problem:  # go on from this entry: appends continue the chain as it ends
                chain.prev, chain.seq = str(entry.get("hash")), int(entry.get("seq", chain.seq + 1))
        if chain is None:  # an empty last segment (a rotation interrupted before its header): write it now
            prev_seq, prev_hash = self._last_of(k - 1) if k > 1 else (0, GENESIS)
            self._seq, self._hash = prev_seq, prev_hash
            path.unlink()
            self._start_segment(k)
            return
        if k == 1 and not chain.keyed and self.damage is None:
            self.damage = f"{path}: no keyed segment header (the log is not keyed)"
        self._seq, self._hash, self._segment, self._size = chain.seq, chain.prev, k, len(data)
        if self.damage is None:
            notes: list[str] = []
            head = self.head_path.read_bytes() if self.head_path.exists() else None
            self.damage = _head_problem(self.head_path, head, self.key, chain.seq, chain.prev, chain.before_last, notes)
        if self.damage:
            log.error("audit: %s", self.damage)

    def _last_of(self, k: int) -> tuple[int, str]:
        """(seq, hash) of segment k's last complete entry."""
        last = json.loads(_last_line(self.path / _segment_name(k)))
        return int(last["seq"]), str(last["hash"])

    def _migrate(self, legacy: Path) -> None:
        """The old single file becomes segment 1 as it is; a keyed ``segment`` entry seals it."""
        if _legacy_keyed(legacy, self.key) is False:  # checked before anything moves
            raise AuditKeyError(f"{legacy}: this audit log was written with a key other than the one given "
                                f"(fingerprint {self.fingerprint}): set ${KEY_ENV} to its key to migrate it")
        target = self.path / _segment_name(1)
        os.replace(legacy, target)
        old_head = legacy.with_name(legacy.name + ".head")
        if old_head.exists():
            os.replace(old_head, self.path / "legacy.head")  # kept for the record; the new anchor replaces it
        _, path = self._repair_tail([(1, target)])
        entries = 0
        if path is not None:
            data = path.read_bytes()
            lines = [x for x in data.split(b"\n") if x.strip()]
            entries = len(lines)
            self._size, self._segment = len(data), 1
            if lines:
                try:
                    last = json.loads(lines[-1])
                    self._seq, self._hash = int(last["seq"]), str(last["hash"])
                except (ValueError, KeyError, TypeError) as exc:
                    self.damage = f"{path}: the migrated log's last entry is not valid ({exc})"
        self._start_segment(1, migrated=str(legacy), legacy_entries=entries)
        log.warning("audit: migrated %s (%d entries) to %s; keyed from entry %d on (fingerprint %s)",
                    legacy, entries, self.path, self._seq, self.fingerprint)

    # ------------------------------------------------------------------ writing
    def _start_segment(self, k: int, **extra: Any) -> None:
        """Write segment k's header (the previous segment's last hash as ``prev``). The lock is held."""
        self._segment = k
        path = self.path / _segment_name(k)
        if not path.exists():
            self._size = 0
        entry = self._make(SEGMENT_KIND, {"segment": k, "key_fingerprint": self.fingerprint, "format": FORMAT,
                                          **extra}, round(self.clock(), 6))
        self._write(entry)

    def _make(self, kind: str, fields: dict[str, Any], ts: float) -> dict[str, Any]:
        entry: dict[str, Any] = {"seq": self._seq + 1, "ts": ts, "kind": kind}
        entry.update(fields)
        entry["prev"] = self._hash
        entry["hash"] = _mac(self.key, _canonical(entry))
        return entry

    def _write(self, entry: dict[str, Any], data: bytes | None = None) -> None:
        data = data if data is not None else _line(entry)
        path = self.path / _segment_name(self._segment)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._size += len(data)
        self._seq, self._hash = int(entry["seq"]), str(entry["hash"])
        self._write_head()

    def _write_head(self) -> None:
        """Rewrite the anchor in place: one fixed-size record at offset 0 (a single small pwrite, no rename:
        renames cost milliseconds on some filesystems and the anchor is rewritten after every entry)."""
        head: dict[str, Any] = {"seq": self._seq, "hash": self._hash, "segment": self._segment}
        head["mac"] = _mac(self.key, _canonical(head))
        data = (json.dumps(head).ljust(HEAD_SIZE - 1) + "\n").encode()
        if self._head_fd is None:
            self._head_fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT, 0o640)
        os.pwrite(self._head_fd, data, 0)
        if self.fsync:
            os.fsync(self._head_fd)

    def _follow(self) -> None:
        """Another writer (a second process, a CLI) may have appended or rotated: go on from its tail."""
        current = self.path / _segment_name(self._segment)
        nxt = self.path / _segment_name(self._segment + 1)
        size = current.stat().st_size if current.exists() else -1
        if size == self._size and not nxt.exists():
            return
        k, path = _segments(self.path)[-1]
        self._segment, self._size = k, path.stat().st_size
        self._seq, self._hash = self._last_of(k)

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one entry (fields bounded, None ones left out); return it with seq and hash. A refusal
        beyond the user's per-minute bound is counted for its summary instead (returned with
        ``summarised: True`` and no seq). Raises StorageError if it cannot be stored."""
        with self._lock:
            if self.copy_only:
                log.info("audit: %s not written (this log is the failover pair's copy of the active's): %s", kind,
                         {k: v for k, v in fields.items() if v is not None})
                return {"kind": kind, "not_written": "copy of the active server's log", **fields}
            now = self.clock()
            self._flush(now, force=False)
            if kind == REFUSAL_KIND and self._over_bound(fields, now):
                return {"kind": kind, "summarised": True, **bound_fields(fields, self.field_bytes, self.entry_bytes,
                                                                        self.target_bytes)}
            extra = {k: v for k, v in fields.items() if k not in _RESERVED}
            return self._append(kind, bound_fields(extra, self.field_bytes, self.entry_bytes, self.target_bytes), now)

    def _append(self, kind: str, fields: dict[str, Any], now: float) -> dict[str, Any]:
        if self._lock_fd is None:
            raise StorageError(f"{self.path}: cannot append audit entry: the log could not be opened ({self.damage})")
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._follow()
                entry = self._make(kind, fields, round(now, 6))
                line = _line(entry)
                if self._size and self._size + len(line) > self.segment_bytes:
                    self._start_segment(self._segment + 1)
                    entry = self._make(kind, fields, round(now, 6))
                    line = _line(entry)
                self._write(entry, line)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise StorageError(f"{self.path}: cannot append audit entry: {exc}") from exc
        return entry

    def _over_bound(self, fields: dict[str, Any], now: float) -> bool:
        """True when this refusal goes to its user's summary (more than the bound this minute)."""
        user = str(fields.get("user") or "")
        written = self._written.setdefault(user, deque())
        while written and written[0] <= now - SUMMARY_WINDOW_S:
            written.popleft()
        pending = self._suppressed.get(user)
        if pending is None and len(written) < self.refusals_per_minute:
            written.append(now)
            return False
        if pending is None:
            pending = self._suppressed[user] = _Suppressed(since=now)
        pending.count += 1
        pending.last = now
        pending.steps[str(fields.get("step") or "")] += 1
        pending.verbs[str(fields.get("verb") or "")] += 1
        for t in equipment_of(fields):
            if len(pending.targets) >= _SUMMARY_TARGETS:
                break
            pending.targets.setdefault(t, None)
        return True

    def _flush(self, now: float, force: bool) -> None:
        for user in [u for u, p in self._suppressed.items() if force or now - p.since >= SUMMARY_WINDOW_S]:
            p = self._suppressed[user]
            fields = bound_fields({"user": user, "count": p.count, "first_ts": p.since, "last_ts": p.last,
                                   "steps": dict(p.steps), "verbs": dict(p.verbs),
                                   "target": list(p.targets) or None,
                                   "note": f"{p.count} refusals of {user} beyond {self.refusals_per_minute} a "
                                           f"minute, counted here instead of one entry each"},
                                  self.field_bytes, self.entry_bytes, self.target_bytes)
            self._append(SUMMARY_KIND, fields, now)  # StorageError: the count stays pending for the next try
            del self._suppressed[user]
            self._written.pop(user, None)

    def flush(self) -> None:
        """Write the refusal summaries whose minute has passed (the fail-safe sweeper calls it every second)."""
        with self._lock:
            self._flush(self.clock(), force=False)

    def close(self) -> None:
        """Write every pending refusal summary, then close the files."""
        with self._lock:
            try:
                self._flush(self.clock(), force=True)
            except StorageError as exc:
                log.error("audit: refusal summaries not written at close: %s", exc)
            self._close_fds()

    def _close_fds(self) -> None:
        for name in ("_head_fd", "_lock_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, None)
        self._index.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._close_fds()

    # ------------------------------------------------------------------ reading
    def entries(self, headers: bool = False) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first, across the segments (a full read: tests and tools, not the API); the
        segment headers (structure, not events) only with ``headers``."""
        for _, path in _segments(self.path):
            with path.open("rb") as fh:
                for raw in fh:
                    if raw.endswith(b"\n") and raw.strip():
                        entry = json.loads(raw)
                        if headers or entry.get("kind") != SEGMENT_KIND:
                            yield entry

    def latest(self, equipment: str | None = None, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (about ``equipment`` if given, with seq < ``before`` if given), newest
        first, read through the index: only the bytes appended since the last read and the lines returned."""
        return self._index.latest(equipment, limit, before)

    @property
    def bytes_read(self) -> int:
        """Every byte the read path (index catch-up, entry fetch) has read: tests bound it."""
        return self._index.bytes_read

    def verify(self) -> VerifyReport:
        return verify_file(self.path, self.key)

    @property
    def last_seq(self) -> int:
        return self._seq

    # ------------------------------------------------------------------ the failover pair's copy
    def tip(self) -> tuple[int, str]:
        """(seq, hash) of the last entry ((0, GENESIS): empty)."""
        with self._lock:
            return self._seq, self._hash

    def lines_after(self, seq: int, limit: int) -> list[bytes]:
        """Up to ``limit`` stored lines after entry ``seq``, segment headers included (the active's side of the
        pair's copy), read through the index."""
        return self._index.lines_after(seq, limit)

    def holds(self, seq: int, hash_: str) -> bool:
        """Whether entry ``seq`` of this log has hash ``hash_`` (seq 0: the empty log, always)."""
        if seq == 0:
            return True
        got = self.lines_after(seq - 1, 1)
        return bool(got) and json.loads(got[0]).get("hash") == hash_

    def candidates(self) -> list[tuple[int, str]]:
        """(seq, hash) of entries of the last segment, newest first, then ever further apart: what a failover
        standby offers the active to find the last entry both logs hold (:meth:`append_copied` ``cut``)."""
        with self._lock:
            path = self.path / _segment_name(self._segment)
            lines = path.read_bytes().split(b"\n")[:-1] if path.exists() else []
        out: list[tuple[int, str]] = []
        k, step = len(lines) - 1, 1
        while k >= 0:
            entry = json.loads(lines[k])
            out.append((int(entry["seq"]), str(entry["hash"])))
            k -= step
            if len(out) >= 8:
                step *= 2
        return out

    def append_copied(self, lines: list[bytes], restart: bool = False, cut: int | None = None) -> None:
        """The standby's copy of the active's log: ``lines`` (its stored lines, in order) written verbatim after
        this log's last entry, each checked as ``verify`` checks it (sequence, ``prev``, MAC with the pair's one
        key); their segment headers start the same segment files. ``cut``: the last entry this log shares with
        the active's (one of its :meth:`candidates`): its entries after it, its own, are set aside first
        (``<segment>.standby-<UTC>``). ``restart``: no shared entry: this log is set aside whole
        (``audit.standby-<UTC>``) and the copy starts at the active's first entry. Whatever is set aside is kept
        for the record. StorageError when a line does not continue the chain."""
        with self._lock:
            if self._lock_fd is None:
                raise StorageError(f"{self.path}: cannot copy audit entries: the log could not be opened")
            if restart:
                self._set_aside()
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                try:
                    if cut is not None and not restart:
                        self._cut_after(cut)
                    self._copy(lines)
                finally:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"{self.path}: cannot copy audit entries: {exc}") from exc

    def _copy(self, lines: list[bytes]) -> None:
        chain = _Chain(self.key, self._hash, self._seq)
        run: list[bytes] = []
        last: dict[str, Any] = {}
        for raw in lines:
            entry = json.loads(raw)
            header = entry.get("kind") == SEGMENT_KIND
            if header and run:  # a new segment file: what belongs to the current one first
                self._write(last, b"".join(run))
                run = []
            segment = int(entry["segment"]) if header else self._segment
            problem = chain.feed(entry, f"copied entry {entry.get('seq')}", segment,
                                 header or (self._size == 0 and not run))
            if problem:
                raise ValueError(f"not the continuation of this log: {problem}")
            if header:
                self._segment, self._size = segment, 0
            run.append(raw if raw.endswith(b"\n") else raw + b"\n")
            last = entry
        if run:
            self._write(last, b"".join(run))  # one fsync per segment run, not per entry

    def _cut_after(self, seq: int) -> None:
        """Set aside this log's entries after ``seq``, which is in its last segment (copied next to it, then
        the segment cut after ``seq``; the anchor rewritten, the index rebuilt at its next read)."""
        path = self.path / _segment_name(self._segment)
        data = path.read_bytes()
        end, last = 0, None
        for raw in data.split(b"\n")[:-1]:
            end += len(raw) + 1
            entry = json.loads(raw)
            if int(entry["seq"]) == seq:
                last = entry
                break
        if last is None:
            raise ValueError(f"entry {seq} is not in the last segment {path.name}")
        if end < len(data):
            aside = path.with_name(f"{path.name}.standby-{_stamp()}")
            aside.write_bytes(data[end:])
            with path.open("r+b") as fh:
                fh.truncate(end)
                os.fsync(fh.fileno())
            log.warning("audit: entries %d..%d of this standby's own set aside as %s: the active's follow entry %d",
                        seq + 1, self._seq, aside.name, seq)
            self._index.drop()
        self._seq, self._hash, self._size = seq, str(last["hash"]), end
        self._write_head()

    def _set_aside(self) -> None:
        aside = self.path.with_name(f"{self.path.name}.standby-{_stamp()}")
        log.warning("audit: %s is not a copy of the active server's log: set aside as %s, copying the active's",
                    self.path, aside.name)
        self._close_fds()
        os.replace(self.path, aside)
        self.path.mkdir(parents=True)
        self._lock_fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._index = AuditIndex(self.path)
        self._seq, self._hash, self._segment, self._size = 0, GENESIS, 0, 0
        self.damage, self.repaired = None, []


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


# ====================================================================== the read index
class AuditIndex:
    """SQLite side index of the segments: derived data, brought up to date from the bytes appended since
    its last read, rebuilt from the segments when it does not match them (a cut tail, a lost file). The
    log's own reader, and a read-only one for tools (``scada audit show``): it never writes the log."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS seg(segment INTEGER PRIMARY KEY, indexed_to INTEGER NOT NULL)",
              "CREATE TABLE IF NOT EXISTS entry(seq INTEGER PRIMARY KEY, segment INTEGER NOT NULL, "
              "offset INTEGER NOT NULL, length INTEGER NOT NULL)",
              "CREATE TABLE IF NOT EXISTS target(equipment TEXT NOT NULL, seq INTEGER NOT NULL, "
              "PRIMARY KEY(equipment, seq)) WITHOUT ROWID")

    def __init__(self, directory: Path | str) -> None:
        self.path = Path(directory)
        self.file = self.path / "index.sqlite"
        self.bytes_read = 0
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.file, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")  # derived data: rebuilt if a crash loses some
            for stmt in self.SCHEMA:
                db.execute(stmt)
            self._db = db
        return self._db

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._db is not None:
                self._db.close()
        self._db = None

    def drop(self) -> None:
        """Forget the index (the segments changed under it: a repaired tail)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(str(self.file) + suffix).unlink()

    def _catch_up(self, db: sqlite3.Connection) -> None:
        segments = _segments(self.path)
        done = dict(db.execute("SELECT segment, indexed_to FROM seg").fetchall())
        sizes = {k: p.stat().st_size for k, p in segments}
        if any(k not in sizes or sizes[k] < to for k, to in done.items()):
            log.warning("audit: %s does not match the segments; rebuilding it", self.file)
            db.execute("BEGIN")
            db.execute("DELETE FROM seg")
            db.execute("DELETE FROM entry")
            db.execute("DELETE FROM target")
            db.execute("COMMIT")
            done = {}
        start = max(done) if done else 0
        db.execute("BEGIN")
        try:
            for k, path in segments:
                if k < start or sizes[k] == done.get(k, 0):
                    continue
                pos = done.get(k, 0)
                with path.open("rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read(sizes[k] - pos)
                self.bytes_read += len(chunk)
                end = chunk.rfind(b"\n") + 1  # complete lines only: a write in progress is read next time
                entries: list[tuple[int, int, int, int]] = []
                targets: list[tuple[str, int]] = []
                offset = pos
                for raw in chunk[:end].split(b"\n")[:-1]:
                    length = len(raw) + 1
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        e = json.loads(raw)
                        seq = int(e["seq"])
                        if e.get("kind") != SEGMENT_KIND:  # structure, not an event: never listed
                            entries.append((seq, k, offset, length))
                        targets.extend((eq, seq) for eq in dict.fromkeys(equipment_of(e)))
                    offset += length
                db.executemany("INSERT OR REPLACE INTO entry VALUES (?,?,?,?)", entries)
                db.executemany("INSERT OR IGNORE INTO target VALUES (?,?)", targets)
                db.execute("INSERT OR REPLACE INTO seg VALUES (?,?)", (k, pos + end))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def lines_after(self, seq: int, limit: int) -> list[bytes]:
        """See :meth:`AuditLog.lines_after`. Headers are not indexed: the entry before a segment's first indexed
        one is that segment's header, its first line."""
        with self._lock:
            db = self._conn()
            self._catch_up(db)
            rows = db.execute("SELECT seq, segment, offset, length FROM entry WHERE seq > ? ORDER BY seq LIMIT ?",
                              (seq, limit)).fetchall()
        out: list[bytes] = []
        expect = seq + 1
        files: dict[int, int] = {}
        try:
            for s, k, offset, length in rows:
                fd = files.get(k)
                if fd is None:
                    fd = files[k] = os.open(self.path / _segment_name(k), os.O_RDONLY)
                if s == expect + 1:  # the segment's header
                    first = os.pread(fd, ENTRY_BYTES + TARGET_BYTES, 0)
                    out.append(first[:first.index(b"\n") + 1])
                elif s != expect:
                    raise StorageError(f"{self.path}: entries {expect}..{s - 1} are not in the index")
                out.append(os.pread(fd, length, offset))
                expect = s + 1
        finally:
            for fd in files.values():
                os.close(fd)
        self.bytes_read += sum(len(x) for x in out)
        return out[:limit]

    def latest(self, equipment: str | None = None, limit: int = 200,
               before: int | None = None) -> list[dict[str, Any]]:
        """See :meth:`AuditLog.latest`."""
        with self._lock:
            for _ in (1, 2):
                try:
                    db = self._conn()
                    self._catch_up(db)
                    out = self._query(db, equipment, limit, before)
                    if out is not None:
                        return out
                except sqlite3.DatabaseError as exc:
                    log.warning("audit: read index %s unusable (%s); rebuilding it", self.file, exc)
                self.drop()  # an offset that no longer holds its entry, or a broken file: rebuild once
            raise StorageError(f"{self.path}: the audit log cannot be read through its index")

    def _query(self, db: sqlite3.Connection, equipment: str | None, limit: int,
               before: int | None) -> list[dict[str, Any]] | None:
        bound = before if before is not None else 2**62
        if equipment is None:
            rows = db.execute("SELECT seq, segment, offset, length FROM entry WHERE seq < ? ORDER BY seq DESC "
                              "LIMIT ?", (bound, limit)).fetchall()
        else:
            rows = db.execute("SELECT e.seq, e.segment, e.offset, e.length FROM target t JOIN entry e "
                              "ON e.seq = t.seq WHERE t.equipment = ? AND t.seq < ? ORDER BY t.seq DESC LIMIT ?",
                              (equipment, bound, limit)).fetchall()
        out: list[dict[str, Any]] = []
        files: dict[int, int] = {}
        try:
            for seq, k, offset, length in rows:
                fd = files.get(k)
                if fd is None:
                    fd = files[k] = os.open(self.path / _segment_name(k), os.O_RDONLY)
                raw = os.pread(fd, length, offset)
                self.bytes_read += len(raw)
                try:
                    entry = json.loads(raw)
                except ValueError:
                    return None
                if not isinstance(entry, dict) or entry.get("seq") != seq:
                    return None
                out.append(entry)
        except OSError:
            return None
        finally:
            for fd in files.values():
                os.close(fd)
        return out


# ====================================================================== verification
def _snapshot(directory: Path) -> tuple[list[tuple[int, Path, int]], bytes | None]:
    """The segments, their sizes and the anchor's bytes, taken under the writers' lock (shared): a consistent
    cut of a live log (segments only grow between appends, so reading up to these sizes later is safe)."""
    lock = directory / "lock"
    fd = os.open(lock, os.O_RDONLY) if lock.exists() else None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        segments = [(k, p, p.stat().st_size) for k, p in _segments(directory)]
        head = directory / "head"
        return segments, head.read_bytes() if head.exists() else None
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def verify_file(directory: Path | str, key: bytes) -> VerifyReport:
    """Check the whole chain across the segments and the head anchor, on a snapshot taken under the writers'
    lock; report the first break with its file and line, and the key fingerprint used."""
    directory = Path(directory)
    report = VerifyReport(True, 0, key_fingerprint=fingerprint(key))

    def broken(problem: str) -> VerifyReport:
        report.ok = False
        report.problems.append(problem)
        return report

    if directory.is_file():
        return broken(f"{directory}: a single-file audit log of an older version; the server migrates it into "
                      f"{directory.with_suffix('')}/ at its next start")
    if not directory.is_dir():
        report.missing = True
        return broken(f"{directory}: no audit log")
    segments, head_copy = _snapshot(directory)
    report.segments = len(segments)
    if not segments:
        if head_copy is not None:
            return broken(f"{directory}: no segment, but its head anchor exists (the log was deleted)")
        report.missing = True
        return broken(f"{directory}: no audit log")
    numbers = [k for k, _, _ in segments]
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        return broken(f"{directory}: segment(s) {', '.join(_segment_name(k) for k in missing)} missing")
    chain = _Chain(key)
    for i, (k, path, size) in enumerate(segments):
        with path.open("rb") as fh:
            data = fh.read(size)
        if data and not data.endswith(b"\n"):
            last = i == len(segments) - 1
            return broken(f"{path}: last line is incomplete (truncated or interrupted write"
                          f"{'; the server cuts it aside at its next start' if last else ''})")
        for lineno, raw in enumerate(data.split(b"\n")[:-1], start=1):
            where = f"{path}:{lineno}"
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                return broken(f"{where}: not a valid JSON entry ({exc})")
            report.entries += 1
            problem = chain.feed(entry, where, k, lineno == 1)
            if problem:
                return broken(problem)
        if k == 1 and not chain.keyed and chain.seq:
            return broken(f"{path}: no keyed segment header (the log is not keyed)")
    if chain.legacy:
        report.notes.append(f"{chain.legacy} entries written before the log was keyed (a migrated audit.log); "
                            f"the keyed entry after them seals them")
    problem = _head_problem(directory / "head", head_copy, key, chain.seq, chain.prev, chain.before_last,
                            report.notes)
    if problem:
        return broken(problem)
    return report

