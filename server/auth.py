"""Authentication for the API: login, expiring bearer tokens, sessions that end with the account's changes.

    POST /api/v1/auth/login {user, password}
          │
          ├─ LoginLimiter.reserve(user, client)  (scada.throttle: per account AND per address, atomic)
          │     └─ refused → 429 + Retry-After, audited; counted for the burst alarm; no hash checked
          ├─ UserStore.verify (argon2id, in a worker thread: ~50 ms, never on the event loop)
          │     ├─ wrong → LoginLimiter.failed(...) → 401 (audited "login failure", no password)
          │     └─ right → LoginLimiter.succeeded(...) → TokenManager.issue(user)
          │                  → {token, expires_ms, role, must_change_password}
          ▼
    Authorization: Bearer <token>      (REST; WebSocket: same header or a first {"type": "auth"} message)
          │
          └─ TokenManager.check(token) → Session, or Ended(code, why) → 401
                ├─ expired (absolute: a shift, 8 h by default) or unknown          token_invalid
                ├─ the account changed since login: its generation in the store    token_invalid
                │    moved (password, role, disabled, by the API or `scada users`), or it is gone
                └─ idle longer than the role's idle timeout (REST only)             session_idle

Tokens are 256-bit random strings; the server keeps only their SHA-256 (a memory dump shows no usable
token) and forgets them at expiry, on logout, on server restart, and when the account changes.

Account state on every request: :meth:`scada.users.UserStore.session_state` is one primary-key read
of the users database (a few microseconds; FastAPI resolves the session dependency once per request).
It is what makes a change made by another process (the ``scada users`` command) end sessions at once.

Idle timeout: every REST request refreshes it; roles that can act on the city (any permission beyond
``read``: operator and above) default to 30 min, read-only roles to none. WebSocket traffic is not
activity and the idle timeout does not close a console's subscription: a console left alone keeps
*showing* the city (the WebSocket checks expiry and account changes, not idleness), but its next action
is refused 401 ``session_idle`` and needs the password again. (The console also pings by itself: counting
that would keep an unattended console's authority alive for ever.)

Burst alarm: ``burst_failures`` failed or refused logins within 60 s for one account or one address
raise the P3 system alarm ``system.auth.login_burst``; it clears after a quiet minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from scada.throttle import LoginThrottle, Refused, Reservation, ThrottlePolicy
from scada.users import PERMISSIONS, READ_ONLY, AccountState, User, UserStore

if TYPE_CHECKING:
    from server.settings import Login


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: str
    issued_ns: int
    expires_ns: int
    client: str
    generation: int = 0  # the account's generation at login (scada.users)
    must_change: bool = False  # the account must change its password before anything else
    next_generation: int | None = None  # the holder's own password change in progress (see expect)

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS.get(permission, frozenset())


class Ended(NamedTuple):
    """Why a token no longer opens a session: the 401's code and reason."""

    code: str
    why: str


class Accounts(Protocol):
    def session_state(self, name: str) -> AccountState | None: ...


def acts(role: str) -> bool:
    """True for a role holding any permission beyond reading (operator and above, a crew): the short idle
    timeout."""
    return any(role in roles for perm, roles in PERMISSIONS.items() if perm not in READ_ONLY)


class TokenManager:
    """Opaque bearer tokens: absolute expiry, idle timeout, checked against the account store. Thread-safe."""

    def __init__(self, ttl_s: float = 8 * 3600, max_sessions: int = 10_000, idle_s: float = 0.0,
                 read_only_idle_s: float = 0.0, accounts: Accounts | None = None) -> None:
        self.ttl_ns = int(ttl_s * 1e9)
        self.max_sessions = max_sessions
        self.idle_ns = int(idle_s * 1e9)
        self.read_only_idle_ns = int(read_only_idle_s * 1e9)
        self.accounts = accounts  # the user store: None only in tests of the tokens alone
        self._sessions: dict[str, Session] = {}
        self._seen: dict[str, int] = {}  # token key → last REST request (ns)
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def idle_limit_ns(self, role: str) -> int:
        return self.idle_ns if acts(role) else self.read_only_idle_ns

    def issue(self, user: User, client: str = "", now_ns: int | None = None) -> tuple[str, Session]:
        now = time.time_ns() if now_ns is None else now_ns
        token = secrets.token_urlsafe(32)
        session = Session(user.name, user.role, now, now + self.ttl_ns, client, user.generation, user.must_change)
        with self._lock:
            self._purge(now)
            if len(self._sessions) >= self.max_sessions:  # bounded memory: drop the oldest session
                oldest = min(self._sessions, key=lambda k: self._sessions[k].issued_ns)
                self._drop(oldest)
            key = self._key(token)
            self._sessions[key] = session
            self._seen[key] = now
        return token, session

    def check(self, token: str, now_ns: int | None = None, touch: bool = True) -> Session | Ended:
        """The session of ``token`` (its ``must_change`` as the store says now), or why it ended.

        ``touch``: a REST request, which is checked against the idle timeout and refreshes it."""
        now = time.time_ns() if now_ns is None else now_ns
        key = self._key(token)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return Ended("token_invalid", "token expired or unknown: log in again")
            if session.expires_ns <= now:
                self._drop(key)
                return Ended("token_invalid", "token expired: log in again")
            if touch:
                limit = self.idle_limit_ns(session.role)
                if limit and now - self._seen.get(key, now) > limit:
                    self._drop(key)
                    return Ended("session_idle", f"session idle for more than {limit // 60_000_000_000} min: "
                                                 "log in again")
                self._seen[key] = now
        if self.accounts is not None:
            state = self.accounts.session_state(session.user)
            if state is None or state.disabled or state.generation not in (session.generation,
                                                                            session.next_generation):
                with self._lock:
                    self._drop(key)
                why = ("account removed" if state is None else "account disabled" if state.disabled
                       else "account changed (password or role)")
                return Ended("token_invalid", f"{why} since this session began: log in again")
            if state.must_change != session.must_change:
                session = dataclasses.replace(session, must_change=state.must_change)
        return session

    def resolve(self, token: str, now_ns: int | None = None) -> Session | None:
        """The session of ``token``, or None (expired, unknown, account changed); not an activity."""
        s = self.check(token, now_ns, touch=False)
        return s if isinstance(s, Session) else None

    def expect(self, token: str, generation: int | None) -> None:
        """Let ``token``'s session through ``generation`` too: the holder's own password change is about to
        move it, and the console's concurrent requests must not see their session end meanwhile. ``None``
        withdraws it (the change was refused)."""
        key = self._key(token)
        with self._lock:
            s = self._sessions.get(key)
            if s is not None:
                self._sessions[key] = dataclasses.replace(s, next_generation=generation)

    def rebind(self, token: str, user: User) -> None:
        """Keep ``token`` open after its own account changed (the holder's own password change)."""
        key = self._key(token)
        with self._lock:
            s = self._sessions.get(key)
            if s is not None:
                self._sessions[key] = dataclasses.replace(s, role=user.role, generation=user.generation,
                                                          must_change=user.must_change, next_generation=None)

    def revoke(self, token: str) -> bool:
        with self._lock:
            return self._drop(self._key(token))

    def revoke_user(self, name: str, keep: str | None = None) -> int:
        """End every session of ``name`` (but the one of token ``keep``); how many ended."""
        kept = self._key(keep) if keep else None
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.user == name and k != kept]
            for k in keys:
                self._drop(k)
            return len(keys)

    def snapshot(self) -> dict[str, list[Any]]:
        """The open sessions by token key (the tokens' SHA-256: no usable token), for the failover pair's
        standby (server.ha.state)."""
        with self._lock:
            return {k: list(dataclasses.astuple(s)) for k, s in self._sessions.items()}

    def take_over(self, sessions: dict[str, list[Any]], now_ns: int | None = None) -> None:
        """Open the failover pair's old active's sessions here too (a takeover): a console's token keeps
        working, each session ending when it would have ended there; the takeover counts as activity."""
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            for key, fields in sessions.items():
                session = Session(*fields)
                if session.expires_ns > now:
                    self._sessions[key] = session
                    self._seen.setdefault(key, now)

    def _drop(self, key: str) -> bool:
        self._seen.pop(key, None)
        return self._sessions.pop(key, None) is not None

    def _purge(self, now: int) -> None:
        for k in [k for k, s in self._sessions.items() if s.expires_ns <= now]:
            self._drop(k)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


class FailureBurst:
    """``threshold`` failures within ``window_s`` for one key (an account or an address): a burst, which ends
    after ``quiet_s`` without any failure. Memory bounded (LRU of keys, ``threshold`` stamps each)."""

    def __init__(self, threshold: int = 20, window_s: float = 60.0, quiet_s: float = 60.0,
                 max_keys: int = 10_000) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.quiet_s = quiet_s
        self.max_keys = max_keys
        self.active = False
        self.last = 0.0
        self._stamps: OrderedDict[str, deque[float]] = OrderedDict()

    def note(self, keys: list[str], now: float) -> bool:
        """Count one failure for each key; True when a burst starts now."""
        self.last = now
        burst = False
        for key in keys:
            d = self._stamps.pop(key, None) or deque(maxlen=self.threshold)
            self._stamps[key] = d
            d.append(now)
            burst |= len(d) == self.threshold and d[0] >= now - self.window_s
        while len(self._stamps) > self.max_keys:
            self._stamps.popitem(last=False)
        if burst and not self.active:
            self.active = True
            return True
        return False

    def ended(self, now: float) -> bool:
        """True (once) when an active burst has been quiet for ``quiet_s``."""
        if self.active and now - self.last >= self.quiet_s:
            self.active = False
            return True
        return False


AlarmSwitch = Callable[[bool], None]


class LoginLimiter:
    """The server's login throttle (state in the users database, :mod:`scada.throttle`) and burst alarm."""

    def __init__(self, store: UserStore, login: Login) -> None:
        self.throttle = LoginThrottle(store, ThrottlePolicy(
            max_failures=login.max_failures, window_s=login.window, lockout_s=login.lockout,
            max_lockout_s=login.max_lockout, max_per_hour=login.max_per_hour,
            address_max_failures=login.address_max_failures))
        self.burst = FailureBurst(login.burst_failures)
        self._timer: asyncio.TimerHandle | None = None

    def reserve(self, user: str, client: str) -> Reservation | Refused:
        return self.throttle.reserve(user, client)

    def succeeded(self, res: Reservation) -> None:
        self.throttle.succeeded(res)

    def failed(self, res: Reservation) -> float:
        return self.throttle.failed(res)

    def count_failure(self, user: str, client: str, alarm: AlarmSwitch | None) -> None:
        """A failed or refused login, for the burst alarm (event loop thread: the clear timer is the loop's)."""
        keys = [f"account:{user.lower()}", *([f"address:{client}"] if client else [])]
        if self.burst.note(keys, time.monotonic()) and alarm is not None:
            alarm(True)
            self._schedule_clear(alarm)

    def _schedule_clear(self, alarm: AlarmSwitch) -> None:
        def check() -> None:
            self._timer = None
            if self.burst.ended(time.monotonic()):
                alarm(False)
            elif self.burst.active:
                self._schedule_clear(alarm)

        wait = max(0.05, self.burst.last + self.burst.quiet_s - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(wait, check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
