"""Login throttling (IEC 62443 CR 1.11, OWASP ASVS V2.2), atomic under concurrency, kept in users.sqlite.

Every login attempt first *reserves* its place, then the password hash is checked, then the
reservation is settled::

    reserve(account, address) ── one BEGIN IMMEDIATE transaction ──┐
       │ account locked?                        → Refused (429, wait until the lock ends)
       │ attempts for the account in the window  (failed + in flight) ≥ max_failures → Refused
       │ failures for the account in the last hour ≥ max_per_hour                  → Refused
       │ address throttled and the account not known from this address            → Refused
       └─ else: an "in flight" row is inserted → Reservation      (only now is the hash checked)
    succeeded(res): the row and the account's failures are deleted, its lock lifted, the address
                    remembered as a known origin of the account
    failed(res):    the row becomes a failure; max_failures in the window → the account is locked
                    for lockout · 2^n (n = locks in the last hour), never more than max_lockout

Because a reservation counts before its hash is checked, 100 parallel guesses get at most
``max_failures`` hash checks; the others are refused without one. An attempt that crashes between
reserve and settle stays counted as a failure (the safe side).

Per account AND per address, designed so that neither locks out somebody else's right password:

- *account*: the lock-out above. It stops guessing one account's password from everywhere; it is
  capped (15 min by default) and ``scada users unlock NAME`` lifts it at once (the state is in this
  database: the CLI and a running server see the same rows).
- *address*: ``address_max_failures`` failures from one address in the window (password spraying:
  one guess on each of many accounts) throttle that address with the same capped back-off, but only
  for accounts that have never logged in successfully from it (in the last 30 days). The supervisor
  who works behind the same NAT as an attacker keeps logging in with the right password; the
  attacker cannot start on new accounts from there. A colleague's first login from that address is
  refused while the address is throttled (at most ``max_lockout``).

A refused attempt is never a hash check and never extends a lock; the caller still audits it.

    users.sqlite (beside ``users``):
    login_attempts (id, account, address, ts_ns, failed)        in flight (failed=0) or failed (1), ≤ 1 h
    login_locks    (key, locked_until_ns, since_ns, lockouts, last_lock_ns)   key "account:x" / "address:y"
    login_origins  (account, address, last_ok_ns)               where an account last logged in from
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from scada.i18n import N_

if TYPE_CHECKING:
    import sqlite3

    from scada.users import UserStore

HOUR_NS = 3600 * 10**9
ORIGIN_TTL_NS = 30 * 24 * HOUR_NS


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5  # per account in ``window_s``
    window_s: float = 300.0
    lockout_s: float = 60.0  # the first lock; doubled on each further lock within an hour
    max_lockout_s: float = 900.0  # ASVS: a lock-out is never longer than about 15 minutes
    max_per_hour: int = 100  # ASVS V2.2.1: no more than 100 failed attempts per hour on one account
    address_max_failures: int = 20  # per address in ``window_s`` (spraying across accounts)


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int
    account: str
    address: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The attempt is refused without checking the password; retry after ``wait_s``."""

    wait_s: float
    scope: Literal["account", "address"]
    why: str


def account_key(name: str) -> str:
    return name.lower()


class LoginThrottle:
    """The throttle over a :class:`scada.users.UserStore`'s database (its tables created on first use)."""

    def __init__(self, store: UserStore, policy: ThrottlePolicy | None = None) -> None:
        self.store = store
        self.policy = policy or ThrottlePolicy()
        with store.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS login_attempts (id INTEGER PRIMARY KEY, account TEXT NOT NULL, "
                       "address TEXT NOT NULL, ts_ns INTEGER NOT NULL, failed INTEGER NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS login_attempts_account ON login_attempts (account, ts_ns)")
            db.execute("CREATE INDEX IF NOT EXISTS login_attempts_address ON login_attempts (address, ts_ns)")
            db.execute("CREATE TABLE IF NOT EXISTS login_locks (key TEXT PRIMARY KEY, locked_until_ns INTEGER "
                       "NOT NULL, since_ns INTEGER NOT NULL, lockouts INTEGER NOT NULL, last_lock_ns INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS login_origins (account TEXT NOT NULL, address TEXT NOT NULL, "
                       "last_ok_ns INTEGER NOT NULL, PRIMARY KEY (account, address))")

    # ------------------------------------------------------------------ the three steps of an attempt
    def reserve(self, name: str, address: str, now_ns: int | None = None) -> Reservation | Refused:
        now = time.time_ns() if now_ns is None else now_ns
        p = self.policy
        window = int(p.window_s * 1e9)
        account = account_key(name)
        with self.store.transaction() as db:
            db.execute("DELETE FROM login_attempts WHERE ts_ns < ?", (now - HOUR_NS,))
            until, since = self._lock(db, f"account:{account}")
            if until > now:
                return Refused((until - now) / 1e9, "account", N_("too many failed logins for this account"))
            n = self._count(db, "account", account, max(now - window, since))
            if n >= p.max_failures:  # the budget is taken by attempts still being checked
                return Refused(1.0, "account", N_("too many login attempts for this account at once"))
            hour = db.execute("SELECT count(*), min(ts_ns) FROM login_attempts WHERE account=? AND ts_ns>=?",
                              (account, now - HOUR_NS)).fetchone()
            if int(hour[0]) >= p.max_per_hour:
                return Refused((int(hour[1]) + HOUR_NS - now) / 1e9, "account",
                               f"{p.max_per_hour} failed logins for this account in the last hour")
            if address and not self._known(db, account, address, now):
                until, since = self._lock(db, f"address:{address}")
                if until > now:
                    return Refused((until - now) / 1e9, "address", N_("too many failed logins from this address"))
                if self._count(db, "address", address, max(now - window, since)) >= p.address_max_failures:
                    return Refused(1.0, "address", N_("too many login attempts from this address at once"))
            cur = db.execute("INSERT INTO login_attempts (account, address, ts_ns, failed) VALUES (?, ?, ?, 0)",
                             (account, address, now))
            return Reservation(int(cur.lastrowid or 0), account, address)

    def succeeded(self, res: Reservation, now_ns: int | None = None) -> None:
        """The password was right: the account's failures and lock are forgotten, the address remembered."""
        now = time.time_ns() if now_ns is None else now_ns
        with self.store.transaction() as db:
            db.execute("DELETE FROM login_attempts WHERE id=? OR (account=? AND failed=1)", (res.id, res.account))
            db.execute("DELETE FROM login_locks WHERE key=?", (f"account:{res.account}",))
            if res.address:
                db.execute("INSERT INTO login_origins VALUES (?, ?, ?) ON CONFLICT (account, address) "
                           "DO UPDATE SET last_ok_ns=excluded.last_ok_ns", (res.account, res.address, now))
                db.execute("DELETE FROM login_origins WHERE last_ok_ns < ?", (now - ORIGIN_TTL_NS,))

    def failed(self, res: Reservation, now_ns: int | None = None) -> float:
        """The password was wrong: count it; return the account lock-out that starts now (0 if none)."""
        now = time.time_ns() if now_ns is None else now_ns
        p = self.policy
        window = int(p.window_s * 1e9)
        with self.store.transaction() as db:
            db.execute("UPDATE login_attempts SET failed=1 WHERE id=?", (res.id,))
            started = 0.0
            for scope, value, limit in (("account", res.account, p.max_failures),
                                        ("address", res.address, p.address_max_failures)):
                if not value:
                    continue
                key = f"{scope}:{value}"
                until, since = self._lock(db, key)
                if until <= now and self._count(db, scope, value, max(now - window, since), failed_only=True) >= limit:
                    lock_s = self._start_lock(db, key, now)
                    if scope == "account":
                        started = lock_s
            return started

    # ------------------------------------------------------------------ administration
    def unlock(self, name: str, now_ns: int | None = None) -> bool:
        """Lift ``name``'s lock-out and forget its failures (``scada users unlock``); True if it was locked."""
        account = account_key(name)
        now = time.time_ns() if now_ns is None else now_ns
        with self.store.transaction() as db:
            until, _ = self._lock(db, f"account:{account}")
            db.execute("DELETE FROM login_locks WHERE key=?", (f"account:{account}",))
            db.execute("DELETE FROM login_attempts WHERE account=? AND failed=1", (account,))
            return until > now

    def locked_for(self, name: str, now_ns: int | None = None) -> float:
        """Seconds left of ``name``'s lock-out (0 when not locked)."""
        now = time.time_ns() if now_ns is None else now_ns
        with self.store.transaction() as db:
            until, _ = self._lock(db, f"account:{account_key(name)}")
        return max(0.0, (until - now) / 1e9)

    # ------------------------------------------------------------------ the failover pair (server.ha.state)
    def snapshot(self) -> dict[str, list[list[Any]]]:
        """The throttle's rows (attempts in the last hour, locks, known origins), for the failover pair's standby:
        a takeover must not hand an attacker fresh attempts."""
        with self.store.transaction() as db:
            return {"attempts": [list(r) for r in db.execute(
                        "SELECT account, address, ts_ns, failed FROM login_attempts ORDER BY id")],
                    "locks": [list(r) for r in db.execute("SELECT * FROM login_locks ORDER BY key")],
                    "origins": [list(r) for r in db.execute("SELECT * FROM login_origins ORDER BY account, address")]}

    def replace_all(self, state: dict[str, list[list[Any]]], previous: dict[str, list[list[Any]]] | None = None
                    ) -> None:
        """Take the active's throttle (:meth:`snapshot` there) in one transaction: its rows replace the ones
        ``previous`` (its last snapshot applied here) brought, so a failure counted, a lock lifted (a success,
        ``scada users unlock``) or an attempt expired there is the same here; rows this server wrote itself (an
        attempt on the standby's own login route) stay."""
        before = previous or {}
        with self.store.transaction() as db:
            db.executemany("DELETE FROM login_attempts WHERE account=? AND address=? AND ts_ns=?",
                           [tuple(r[:3]) for r in before.get("attempts") or []])
            db.executemany("INSERT INTO login_attempts (account, address, ts_ns, failed) VALUES (?, ?, ?, ?)",
                           [tuple(r) for r in state.get("attempts") or []])
            db.executemany("DELETE FROM login_locks WHERE key=?", [(r[0],) for r in before.get("locks") or []])
            db.executemany("INSERT OR REPLACE INTO login_locks VALUES (?, ?, ?, ?, ?)",
                           [tuple(r) for r in state.get("locks") or []])
            db.executemany("DELETE FROM login_origins WHERE account=? AND address=?",
                           [tuple(r[:2]) for r in before.get("origins") or []])
            db.executemany("INSERT OR REPLACE INTO login_origins VALUES (?, ?, ?)",
                           [tuple(r) for r in state.get("origins") or []])

    # ------------------------------------------------------------------ inside a transaction
    @staticmethod
    def _lock(db: sqlite3.Connection, key: str) -> tuple[int, int]:
        row = db.execute("SELECT locked_until_ns, since_ns FROM login_locks WHERE key=?", (key,)).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    @staticmethod
    def _count(db: sqlite3.Connection, scope: str, value: str, since_ns: int, failed_only: bool = False) -> int:
        col = "account" if scope == "account" else "address"
        sql = f"SELECT count(*) FROM login_attempts WHERE {col}=? AND ts_ns>=?"  # noqa: S608 - fixed column name
        if failed_only:
            sql += " AND failed=1"
        return int(db.execute(sql, (value, since_ns)).fetchone()[0])

    @staticmethod
    def _known(db: sqlite3.Connection, account: str, address: str, now: int) -> bool:
        return db.execute("SELECT 1 FROM login_origins WHERE account=? AND address=? AND last_ok_ns>=?",
                          (account, address, now - ORIGIN_TTL_NS)).fetchone() is not None

    def _start_lock(self, db: sqlite3.Connection, key: str, now: int) -> float:
        row = db.execute("SELECT lockouts, last_lock_ns FROM login_locks WHERE key=?", (key,)).fetchone()
        # back-off doubles on each lock within an hour of the previous one, and starts over after a quiet hour
        n = 0 if row is None or int(row[1]) < now - HOUR_NS else int(row[0])
        lock_s = float(min(self.policy.lockout_s * 2 ** n, self.policy.max_lockout_s))
        until = now + int(lock_s * 1e9)
        db.execute("INSERT INTO login_locks VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                   "locked_until_ns=excluded.locked_until_ns, since_ns=excluded.since_ns, "
                   "lockouts=excluded.lockouts, last_lock_ns=excluded.last_lock_ns", (key, until, until, n + 1, now))
        return lock_s
