"""Users, roles, password hashing, tokens and login rate limiting (pure, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scada.users import UserError, UserStore, ensure_first_admin, role_can
from server.auth import LoginLimiter, TokenManager
from tests.server.conftest import FAST_HASHER


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    return UserStore(tmp_path / "users.sqlite", hasher=FAST_HASHER)


def test_add_verify_and_hash_only(store: UserStore, tmp_path: Path) -> None:
    store.add("alice", "operator", "correct horse battery")
    assert store.verify("alice", "correct horse battery").role == "operator"  # type: ignore[union-attr]
    assert store.verify("alice", "wrong") is None
    assert store.verify("nobody", "correct horse battery") is None
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("users.sqlite*"))
    assert b"correct horse battery" not in raw and b"$argon2id$" in raw
    assert (tmp_path / "users.sqlite").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(("name", "role", "password", "why"), [
    ("bob", "operator", "short", "too short"),
    ("bob", "operator", "bob-is-my-password", "user name"),
    ("bob", "operator", "aaaaaaaaaaaa", "too simple"),
    ("bob", "god", "a-good-password-1", "role must be one of"),
    ("bad name!", "operator", "a-good-password-1", "user name must be"),
])
def test_add_refusals(store: UserStore, name: str, role: str, password: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        store.add(name, role, password)
    assert store.list() == []


def test_duplicate_and_last_admin(store: UserStore) -> None:
    store.add("root", "administrator", "admin-password-1")
    with pytest.raises(UserError, match="already exists"):
        store.add("root", "viewer", "another-password")
    with pytest.raises(UserError, match="last administrator"):
        store.set_role("root", "viewer")
    with pytest.raises(UserError, match="last administrator"):
        store.remove("root")
    with pytest.raises(UserError, match="last administrator"):
        store.set_disabled("root", True)
    store.add("root2", "administrator", "admin-password-2")
    store.set_disabled("root", True)
    assert store.verify("root", "admin-password-1") is None


def test_first_admin_from_env_or_prompt(store: UserStore) -> None:
    assert ensure_first_admin(store, None, environ={}, say=lambda s: None) is None
    assert store.count() == 0
    answers = iter(["chief", "head-of-room-pw", "head-of-room-pw"])
    assert ensure_first_admin(store, lambda text, secret: next(answers), environ={}, say=lambda s: None) == "chief"
    assert store.get("chief").role == "administrator"  # type: ignore[union-attr]
    # an administrator exists: nothing more is created
    assert ensure_first_admin(store, None, environ={"SCADA_ADMIN_PASSWORD": "x-password-123"}) is None


def test_first_admin_env(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.sqlite", hasher=FAST_HASHER)
    name = ensure_first_admin(store, None, environ={"SCADA_ADMIN_PASSWORD": "env-admin-pass", "SCADA_ADMIN_USER": "ops"},
                              say=lambda s: None)
    assert name == "ops" and store.verify("ops", "env-admin-pass") is not None


def test_roles() -> None:
    assert role_can("supervisor", "command.approve") and not role_can("operator", "command.approve")
    assert role_can("maintenance", "alarm.out_of_service") and not role_can("viewer", "alarm.ack")
    assert role_can("engineer", "config.reload") and not role_can("operator", "config.reload")
    assert all(role_can(r, "read") for r in ("viewer", "operator", "supervisor", "maintenance", "engineer"))


def test_tokens_expire_and_are_stored_hashed(store: UserStore) -> None:
    user = store.add("carol", "viewer", "viewer-password-1")
    tm = TokenManager(ttl_s=10)
    token, session = tm.issue(user, "127.0.0.1", now_ns=0)
    assert tm.resolve(token, now_ns=5 * 10**9) == session
    assert token not in repr(tm._sessions)
    assert tm.resolve(token, now_ns=11 * 10**9) is None
    assert tm.resolve(token, now_ns=1) is None  # forgotten at expiry
    t2, _ = tm.issue(user)
    assert tm.revoke_user("carol") == 1 and tm.resolve(t2) is None


def test_login_limiter_locks_and_doubles() -> None:
    lim = LoginLimiter(max_failures=3, window_s=60, lockout_s=10)
    assert lim.failure("dave", "1.2.3.4", now=0) == 0
    assert lim.failure("dave", "1.2.3.4", now=1) == 0
    assert lim.failure("dave", "1.2.3.4", now=2) == 10
    assert lim.retry_after("dave", "5.6.7.8", now=3) == pytest.approx(9)  # the user name is locked everywhere
    assert lim.retry_after("erin", "1.2.3.4", now=3) == pytest.approx(9)  # and so is the client
    assert lim.retry_after("dave", "1.2.3.4", now=13) == 0
    for t in (13, 14):
        lim.failure("dave", "1.2.3.4", now=t)
    assert lim.failure("dave", "1.2.3.4", now=15) == 20  # doubled
    lim2 = LoginLimiter(max_failures=3, window_s=5, lockout_s=10)
    for t in (0, 10, 20):  # outside the window: never locked
        assert lim2.failure("x", "", now=t) == 0
