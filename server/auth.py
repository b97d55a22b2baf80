"""Authentication for the API: login, expiring bearer tokens, login-failure rate limiting.

    POST /api/v1/auth/login {user, password}
          │
          ├─ LoginLimiter.check(user, client)  → 429 + Retry-After while locked out (journalled)
          ├─ UserStore.verify (argon2id, in a worker thread: ~50 ms, never on the event loop)
          │     ├─ wrong → LoginLimiter.failure(...) → 401 (journalled "login failure", no password)
          │     └─ right → TokenManager.issue(user) → {token, expires_at_ns, role}
          ▼
    Authorization: Bearer <token>      (REST; WebSocket: same header or a first {"type": "auth"} message)
          │
          └─ TokenManager.resolve(token) → Session(user, role, expires_ns) or 401 "token expired/unknown"

Tokens are 256-bit random strings; the server keeps only their SHA-256 (a memory dump shows no usable
token) and forgets them at expiry, on logout, on server restart, and when the user is disabled or
removed. Expiry is absolute (a shift, 8 h by default): an operator logs in again at the next shift.

Rate limiting (IEC 62443 CR 1.11 "unsuccessful login attempts"): after ``max_failures`` failures within
``window_s`` for one user name or one client address, further attempts are refused for ``lockout_s``
(doubling on repeated lockouts, capped), without even checking the password.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from scada.users import PERMISSIONS, User


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: str
    issued_ns: int
    expires_ns: int
    client: str

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS.get(permission, frozenset())


class TokenManager:
    """Opaque bearer tokens with an absolute expiry. Thread-safe."""

    def __init__(self, ttl_s: float = 8 * 3600, max_sessions: int = 10_000) -> None:
        self.ttl_ns = int(ttl_s * 1e9)
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue(self, user: User, client: str = "", now_ns: int | None = None) -> tuple[str, Session]:
        now = time.time_ns() if now_ns is None else now_ns
        token = secrets.token_urlsafe(32)
        session = Session(user.name, user.role, now, now + self.ttl_ns, client)
        with self._lock:
            self._purge(now)
            if len(self._sessions) >= self.max_sessions:  # bounded memory: drop the oldest session
                oldest = min(self._sessions, key=lambda k: self._sessions[k].issued_ns)
                del self._sessions[oldest]
            self._sessions[self._key(token)] = session
        return token, session

    def resolve(self, token: str, now_ns: int | None = None) -> Session | None:
        """The session of ``token``, or None if unknown or expired (an expired token is forgotten)."""
        now = time.time_ns() if now_ns is None else now_ns
        key = self._key(token)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if session.expires_ns <= now:
                del self._sessions[key]
                return None
            return session

    def revoke(self, token: str) -> bool:
        with self._lock:
            return self._sessions.pop(self._key(token), None) is not None

    def revoke_user(self, name: str) -> int:
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.user == name]
            for k in keys:
                del self._sessions[k]
            return len(keys)

    def _purge(self, now: int) -> None:
        for k in [k for k, s in self._sessions.items() if s.expires_ns <= now]:
            del self._sessions[k]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


@dataclass
class _Bucket:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    lockouts: int = 0


class LoginLimiter:
    """Per-user-name and per-client failure counting with lockout. Memory bounded (LRU of keys)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 max_lockout_s: float = 3600.0, max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _keys(self, user: str, client: str) -> list[str]:
        return [f"user:{user.lower()}", f"client:{client}"] if client else [f"user:{user.lower()}"]

    def retry_after(self, user: str, client: str, now: float | None = None) -> float:
        """Seconds until an attempt is allowed (0 = allowed now)."""
        t = time.monotonic() if now is None else now
        with self._lock:
            waits = [b.locked_until - t for k in self._keys(user, client) if (b := self._buckets.get(k))]
        return max([0.0, *waits])

    def failure(self, user: str, client: str, now: float | None = None) -> float:
        """Count one failure; return the lockout that starts now (0 if none)."""
        t = time.monotonic() if now is None else now
        started = 0.0
        with self._lock:
            for key in self._keys(user, client):
                b = self._buckets.pop(key, None) or _Bucket()
                self._buckets[key] = b  # re-insert: most recent last (LRU order)
                while b.failures and b.failures[0] < t - self.window_s:
                    b.failures.popleft()
                b.failures.append(t)
                if len(b.failures) >= self.max_failures:
                    lock = min(self.lockout_s * (2 ** b.lockouts), self.max_lockout_s)
                    b.lockouts += 1
                    b.locked_until = t + lock
                    b.failures.clear()
                    started = max(started, lock)
            while len(self._buckets) > self.max_keys:
                del self._buckets[next(iter(self._buckets))]
        return started

    def success(self, user: str, client: str) -> None:
        with self._lock:
            self._buckets.pop(f"user:{user.lower()}", None)
