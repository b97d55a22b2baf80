"""User accounts and roles, in SQLite, with argon2 password hashes.

    users.sqlite  (PRAGMA user_version = schema version, migrated on open)
    ┌─────────┬──────┬─────────────────────┬──────────┬────────────┬────────────┬────────────┬─────────────┐
    │ name PK │ role │ hash (argon2id PHC) │ disabled │ created_ns │ changed_ns │ generation │ must_change │
    └─────────┴──────┴─────────────────────┴──────────┴────────────┴────────────┴────────────┴─────────────┘
    + the login throttle's tables (:mod:`scada.throttle`): its state lives here so that ``scada users
      unlock`` reaches a running server

``generation`` is bumped by every change that must end the account's sessions: password changed, role
changed, account disabled (a removed account has no row at all). A session records the generation it
was opened under and the server compares it on every request (:meth:`UserStore.session_state`, one
primary-key read), so a change made by ``scada users`` in another process ends the sessions at once,
exactly like one made through the API.

``must_change``: the password was set under an older policy (set by the schema migration on every
existing account) and must be changed before anything else; cleared by a password change.

Roles (IEC 62443 FR2 "use control": least privilege, one role per account)::

    viewer        read everything (tags, equipment, alarms, journal, trends)
    operator      + acknowledge and shelve alarms, send commands
    supervisor    + approve commands (second person), crisis plans, suppress/reset alarms
    maintenance   read + acknowledge, out-of-service (work order), reset latched alarms
    engineer      read + configuration reload
    administrator everything, including user management
    crew          a field crew's account: only its own work orders (no tags, alarms or journal); reports
                  en route, on site, done, cannot repair (crews.yaml names the accounts of each crew)

There is no default account and no default password: ``scada users add`` creates accounts; the first
administrator comes from ``SCADA_ADMIN_PASSWORD`` (user ``SCADA_ADMIN_USER``, default ``admin``) or
an interactive prompt (see :func:`ensure_first_admin`). Every password set follows
:mod:`scada.passwords` (NIST SP 800-63B-4). Passwords are never stored, logged or echoed; only argon2id
hashes are kept (parameters in the hash, re-hashed on login when they change).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from scada.errors import Refusal, ScadaError
from scada.passwords import MIN_LENGTH, WeakPassword, check_password

ROLES: tuple[str, ...] = ("viewer", "operator", "supervisor", "maintenance", "engineer", "administrator", "crew")
#: roles that read the control room's data (a crew reads only its own missions)
READERS = frozenset(ROLES) - {"crew"}

#: permission → roles holding it. The API checks permissions, never role names.
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": READERS,
    "alarm.ack": frozenset({"operator", "supervisor", "maintenance", "administrator"}),
    "alarm.shelve": frozenset({"operator", "supervisor", "administrator"}),
    "alarm.suppress": frozenset({"supervisor", "administrator"}),
    "alarm.out_of_service": frozenset({"maintenance", "supervisor", "administrator"}),
    "alarm.reset": frozenset({"maintenance", "supervisor", "administrator"}),
    "command.operate": frozenset({"operator", "supervisor", "administrator"}),
    "command.approve": frozenset({"supervisor", "administrator"}),
    "crisis": frozenset({"supervisor", "administrator"}),
    "config.reload": frozenset({"engineer", "administrator"}),
    "users.manage": frozenset({"administrator"}),
    "audit.read": frozenset({"supervisor", "administrator"}),
    # work orders (scada.workorders): a crew sees and reports on its own missions only (the routes filter)
    "workorder.read": frozenset(ROLES),
    "workorder.create": frozenset({"operator", "supervisor", "maintenance", "administrator"}),
    "workorder.assign": frozenset({"operator", "supervisor", "maintenance", "administrator"}),
    "workorder.field": frozenset({"crew", "maintenance", "supervisor", "administrator"}),
    "workorder.close": frozenset({"supervisor", "administrator"}),
    "workorder.note": frozenset({"operator", "supervisor", "maintenance", "administrator", "crew"}),
}
#: permissions that only read: a role holding nothing else (viewer) gets the long, read-only idle timeout
READ_ONLY = frozenset({"read", "workorder.read"})

MIN_PASSWORD_LENGTH = MIN_LENGTH
SCHEMA_VERSION = 1  # 1: generation + must_change (accounts from version 0 must change their password)
_NAME = re.compile(r"^[A-Za-z0-9_.\-@]{1,64}$")


class UserError(ScadaError):
    """A user-management request cannot be done (unknown user, weak password, bad role...).

    ``code`` classifies it for the API: :attr:`Refusal.NOT_FOUND` for an unknown user, else
    :attr:`Refusal.USER_REFUSED`."""

    def __init__(self, message: str, code: Refusal = Refusal.USER_REFUSED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    disabled: bool
    created_ns: int
    changed_ns: int
    generation: int = 0
    must_change: bool = False

    def can(self, permission: str) -> bool:
        return not self.disabled and self.role in PERMISSIONS.get(permission, frozenset())


def role_can(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, frozenset())


def check_password_strength(password: str, name: str = "") -> None:
    """Raise :class:`UserError` for a password the policy refuses (:func:`scada.passwords.check_password`)."""
    try:
        check_password(password, name)
    except WeakPassword as exc:
        raise UserError(str(exc)) from None


class AccountState(NamedTuple):
    """What a session check needs of an account: one primary-key read."""

    generation: int
    disabled: bool
    must_change: bool


_COLUMNS = "name, role, disabled, created_ns, changed_ns, generation, must_change"


def _user(r: tuple[Any, ...]) -> User:
    return User(str(r[0]), str(r[1]), bool(r[2]), int(r[3]), int(r[4]), int(r[5]), bool(r[6]))


class UserStore:
    """The accounts database. Thread-safe (one connection, one lock); hashing is the slow part."""

    def __init__(self, path: Path | str, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=10000")  # the CLI and the server write the same file
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.RLock()
        self._migrate()
        # the per-request session check reads through its own connection: a login's write transaction (and
        # its fsync) on the main one, or the CLI's in another process, never makes a request wait (WAL)
        self._reader, self._read_lock = self._db, self._lock
        if str(path) != ":memory:":
            self._reader = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._read_lock = threading.RLock()
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        if str(path) != ":memory:":
            os.chmod(self.path, 0o600)

    def _migrate(self) -> None:
        """Create or upgrade the schema (one transaction: a server and a CLI opening together agree)."""
        with self.transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            exists = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='users'").fetchone()
            if not exists:
                db.execute(
                    "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, "
                    "disabled INTEGER NOT NULL DEFAULT 0, created_ns INTEGER NOT NULL, changed_ns INTEGER NOT NULL, "
                    "generation INTEGER NOT NULL DEFAULT 0, must_change INTEGER NOT NULL DEFAULT 0)")
            elif version < 1:
                # passwords set under the old policy (10 characters) are asked to change at next login
                db.execute("ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0")
                db.execute("ALTER TABLE users ADD COLUMN must_change INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE users SET must_change=1")
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction (BEGIN IMMEDIATE: no other writer, in this process
        or another, between its reads and its writes), committed on exit, rolled back on an error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:  # even a cancellation must not leave the transaction open: re-raised
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._read_lock:
            if self._reader is not self._db:
                self._reader.close()
        with self._lock:
            self._db.close()

    def _dummy(self) -> str:
        """A hash of a random string: verifying an unknown user costs the same time as a known one."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(os.urandom(16).hex())
        return self._dummy_hash

    # ------------------------------------------------------------------ queries
    def get(self, name: str) -> User | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM users WHERE name=?", (name,)).fetchone()  # noqa: S608 - fixed column list
        return None if row is None else _user(row)

    def list(self) -> list[User]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")  # noqa: S608 - fixed column list
            return [_user(r) for r in rows]

    def session_state(self, name: str) -> AccountState | None:
        """Generation, disabled, must_change of ``name`` (None once removed): what every request checks."""
        with self._read_lock:
            row = self._reader.execute("SELECT generation, disabled, must_change FROM users WHERE name=?",
                                       (name,)).fetchone()
        return None if row is None else AccountState(int(row[0]), bool(row[1]), bool(row[2]))

    def count(self, role: str | None = None) -> int:
        with self._lock:
            if role is None:
                return int(self._db.execute("SELECT count(*) FROM users WHERE disabled=0").fetchone()[0])
            return int(self._db.execute("SELECT count(*) FROM users WHERE role=? AND disabled=0",
                                        (role,)).fetchone()[0])

    def rows(self) -> tuple[tuple[Any, ...], ...]:
        """Every account as stored, its password hash included (the failover pair's replication: server.ha)."""
        with self._lock:
            return tuple(tuple(r) for r in self._db.execute(f"SELECT {_COLUMNS}, hash FROM users ORDER BY name"))  # noqa: S608 - fixed column list

    def replace_all(self, rows: Iterable[Sequence[Any]]) -> None:
        """Make the accounts exactly ``rows`` (:meth:`rows` of the failover pair's active server), in one
        transaction: a standby's accounts are a copy, generations included, so a session opened on the active
        is checked the same way here."""
        with self.transaction() as db:
            db.execute("DELETE FROM users")
            db.executemany(f"INSERT INTO users ({_COLUMNS}, hash) VALUES (?,?,?,?,?,?,?,?)",  # noqa: S608 - fixed column list
                           [tuple(r) for r in rows])

    # ------------------------------------------------------------------ changes
    def add(self, name: str, role: str, password: str) -> User:
        if not _NAME.match(name):
            raise UserError(f"user name must be 1-64 characters of letters, digits, _ . - @, got {name!r}")
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        check_password_strength(password, name)
        digest = self.hasher.hash(password)
        now = time.time_ns()
        with self._lock:
            try:
                self._db.execute("INSERT INTO users (name, role, hash, disabled, created_ns, changed_ns, generation, "
                                 "must_change) VALUES (?, ?, ?, 0, ?, ?, 0, 0)", (name, role, digest, now, now))
            except sqlite3.IntegrityError:
                raise UserError(f"user {name!r} already exists") from None
        return User(name, role, False, now, now)

    def set_password(self, name: str, password: str) -> None:
        """A new password (policy checked); clears ``must_change`` and ends the account's sessions."""
        check_password_strength(password, name)
        digest = self.hasher.hash(password)
        self._update(name, "hash=?, must_change=0, generation=generation+1", (digest,))

    def set_role(self, name: str, role: str) -> None:
        """A new role: ends the account's sessions (they carry the old role)."""
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self._guard_last_admin(name, leaving=role != "administrator")
        self._update(name, "role=?, generation=generation+1", (role,))

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (ends the account's sessions) or enable an account."""
        if disabled:
            self._guard_last_admin(name, leaving=True)
            self._update(name, "disabled=1, generation=generation+1", ())
        else:
            self._update(name, "disabled=0", ())

    def remove(self, name: str) -> None:
        """Remove an account (its sessions end: the server finds no account behind them)."""
        self._guard_last_admin(name, leaving=True)
        with self._lock:
            cur = self._db.execute("DELETE FROM users WHERE name=?", (name,))
        if cur.rowcount == 0:
            raise UserError(f"unknown user {name!r}", Refusal.NOT_FOUND)

    def _guard_last_admin(self, name: str, leaving: bool) -> None:
        user = self.get(name)
        if user is None:
            raise UserError(f"unknown user {name!r}", Refusal.NOT_FOUND)
        if leaving and user.role == "administrator" and not user.disabled and self.count("administrator") <= 1:
            raise UserError(f"{name!r} is the last administrator; create another administrator first")

    def _update(self, name: str, assignment: str, params: tuple[object, ...]) -> None:
        with self._lock:
            cur = self._db.execute(f"UPDATE users SET {assignment}, changed_ns=? WHERE name=?",  # noqa: S608 - a fixed 'col=?' from this module's callers; values bound
                                   (*params, time.time_ns(), name))
        if cur.rowcount == 0:
            raise UserError(f"unknown user {name!r}", Refusal.NOT_FOUND)

    # ------------------------------------------------------------------ authentication
    def verify(self, name: str, password: str) -> User | None:
        """The user if ``password`` is right and the account enabled, else None (same cost either way).

        A user whose ``must_change`` is set is returned (the login answers ``must_change_password``)."""
        with self._lock:
            row = self._db.execute("SELECT hash FROM users WHERE name=?", (name,)).fetchone()
        digest = self._dummy() if row is None else str(row[0])
        try:
            self.hasher.verify(digest, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        user = self.get(name)
        if user is None or user.disabled:
            return None
        if self.hasher.check_needs_rehash(digest):
            self._update(name, "hash=?", (self.hasher.hash(password),))
        return user


def ensure_first_admin(store: UserStore, prompt: Callable[[str, bool], str] | None = None,
                       environ: dict[str, str] | None = None, say: Callable[[str], None] = print) -> str | None:
    """Create the first administrator if none exists; return its name (None if one existed or none made).

    From ``SCADA_ADMIN_PASSWORD`` (user name ``SCADA_ADMIN_USER``, default ``admin``) or, when
    ``prompt(text, secret)`` is given (an interactive terminal), by asking twice. Never a default password.
    """
    if store.count("administrator") > 0:
        return None
    env = os.environ if environ is None else environ
    name = env.get("SCADA_ADMIN_USER", "admin")
    password = env.get("SCADA_ADMIN_PASSWORD")
    if password:
        store.add(name, "administrator", password)
        say(f"created administrator {name!r} from SCADA_ADMIN_PASSWORD")
        return name
    if prompt is None:
        return None
    say("No administrator account exists yet: create the first one.")
    entered = prompt(f"administrator name [{name}]: ", False).strip()
    name = entered or name
    for _ in range(3):
        first = prompt("password: ", True)
        if first != prompt("again: ", True):
            say("the two passwords differ")
            continue
        try:
            store.add(name, "administrator", first)
        except UserError as exc:
            say(str(exc))
            continue
        say(f"created administrator {name!r}")
        return name
    return None
