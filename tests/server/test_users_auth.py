"""Users, roles, the password policy, the schema migration, tokens, sessions and login throttling (no server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from scada.passwords import common_passwords
from scada.throttle import LoginThrottle, Refused, Reservation, ThrottlePolicy
from scada.users import UserError, UserStore, ensure_first_admin, role_can
from server.auth import Ended, FailureBurst, Session, TokenManager, acts
from tests.server.conftest import FAST_HASHER

S = 10**9


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
    # the attacker report's weak passwords (finding 11)
    ("bob", "operator", "Password1!", "too short"),
    ("bob", "operator", "1234567890", "too short"),
    ("bob", "operator", "abcdabcdab", "too short"),
    # NIST SP 800-63B-4: 15 characters, no composition rule, a blocklist, no user name
    ("bob", "operator", "fourteen-chars", "too short"),
    ("bob", "operator", "bob-is-my-password", "user name"),
    ("BoB", "operator", "this-is-bob-at-work", "user name"),  # case-insensitive
    ("bob", "operator", "1qaz2wsx3edc4rfv", "commonly used or breached"),
    ("bob", "operator", "passwordpassword", "too easy to guess"),
    ("bob", "operator", "aaaaaaaaaaaaaaaa", "too easy to guess"),
    ("bob", "operator", "abcdabcdabcdabcd", "too easy to guess"),
    ("bob", "operator", "123456789012345678", "too easy to guess"),
    ("bob", "operator", "Password1234567!", "too easy to guess"),
    ("bob", "operator", "x" * 257, "too long"),
    ("bob", "god", "a-good-long-passphrase", "role must be one of"),
    ("bad name!", "operator", "a-good-long-passphrase", "user name must be"),
])
def test_add_refusals(store: UserStore, name: str, role: str, password: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        store.add(name, role, password)
    assert store.list() == []


def test_policy_accepts_passphrases_without_composition_rules(store: UserStore) -> None:
    for i, pw in enumerate(["correct horse battery staple", "tramway lumière place darcy", "MOUTARDE DE DIJON 1856"]):
        store.add(f"user{i}", "viewer", pw)  # no digit, no capital, no symbol required
    assert len(store.list()) == 3


def test_the_breached_list_is_big_and_offline() -> None:
    common = common_passwords()
    assert len(common) >= 10_000 and "password" in common and "123456" in common


def test_duplicate_and_last_admin(store: UserStore) -> None:
    store.add("root", "administrator", "admin-password-number-1")
    with pytest.raises(UserError, match="already exists"):
        store.add("root", "viewer", "another-long-passphrase")
    with pytest.raises(UserError, match="last administrator"):
        store.set_role("root", "viewer")
    with pytest.raises(UserError, match="last administrator"):
        store.remove("root")
    with pytest.raises(UserError, match="last administrator"):
        store.set_disabled("root", True)
    store.add("root2", "administrator", "admin-password-number-2")
    store.set_disabled("root", True)
    assert store.verify("root", "admin-password-number-1") is None


def test_first_admin_follows_the_policy(store: UserStore) -> None:
    assert ensure_first_admin(store, None, environ={}, say=lambda s: None) is None
    assert store.count() == 0
    said: list[str] = []
    answers = iter(["chief", "Password1!", "Password1!", "head-of-room-passphrase", "head-of-room-passphrase"])
    assert ensure_first_admin(store, lambda text, secret: next(answers), environ={}, say=said.append) == "chief"
    assert any("too short" in s for s in said)  # the weak one was refused, the prompt asked again
    assert store.get("chief").role == "administrator"  # type: ignore[union-attr]
    # an administrator exists: nothing more is created
    assert ensure_first_admin(store, None, environ={"SCADA_ADMIN_PASSWORD": "x-password-123"}) is None


def test_first_admin_env(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "u.sqlite", hasher=FAST_HASHER)
    with pytest.raises(UserError, match="too short"):
        ensure_first_admin(store, None, environ={"SCADA_ADMIN_PASSWORD": "1234567890"}, say=lambda s: None)
    name = ensure_first_admin(store, None, environ={"SCADA_ADMIN_PASSWORD": "env-admin-passphrase",
                                                   "SCADA_ADMIN_USER": "ops"}, say=lambda s: None)
    assert name == "ops" and store.verify("ops", "env-admin-passphrase") is not None


def test_roles() -> None:
    assert role_can("supervisor", "command.approve") and not role_can("operator", "command.approve")
    assert role_can("maintenance", "alarm.out_of_service") and not role_can("viewer", "alarm.ack")
    assert role_can("engineer", "config.reload") and not role_can("operator", "config.reload")
    assert all(role_can(r, "read") for r in ("viewer", "operator", "supervisor", "maintenance", "engineer"))
    assert [r for r in ("viewer", "operator", "supervisor", "maintenance", "engineer", "administrator")
            if acts(r)] == ["operator", "supervisor", "maintenance", "engineer", "administrator"]


def test_generation_moves_with_every_change_that_ends_sessions(store: UserStore) -> None:
    store.add("root", "administrator", "admin-password-number-1")
    store.add("op", "operator", "lamp-watch-passphrase")
    gen = store.session_state("op").generation  # type: ignore[union-attr]
    store.set_password("op", "another-lamp-passphrase")
    store.set_role("op", "viewer")
    store.set_disabled("op", True)
    state = store.session_state("op")
    assert state is not None and state.generation == gen + 3 and state.disabled
    store.set_disabled("op", False)  # enabling starts no session: nothing to end
    assert store.session_state("op").generation == gen + 3  # type: ignore[union-attr]
    store.remove("op")
    assert store.session_state("op") is None


def test_migration_asks_old_accounts_to_change(tmp_path: Path) -> None:
    """A users.sqlite of the previous schema (no generation, no must_change): every account must change."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, "
               "disabled INTEGER NOT NULL DEFAULT 0, created_ns INTEGER NOT NULL, changed_ns INTEGER NOT NULL)")
    db.execute("INSERT INTO users VALUES ('old', 'operator', ?, 0, 1, 1)", (FAST_HASHER.hash("Old-Policy-1"),))
    db.commit()
    db.close()
    store = UserStore(path, hasher=FAST_HASHER)
    old = store.verify("old", "Old-Policy-1")
    assert old is not None and old.must_change and old.generation == 0
    store.add("new", "viewer", "a-fresh-long-passphrase")
    assert not store.get("new").must_change  # type: ignore[union-attr]
    store.set_password("old", "a-compliant-passphrase")
    assert not store.get("old").must_change  # type: ignore[union-attr]
    store.close()
    again = UserStore(path, hasher=FAST_HASHER)  # opening again migrates nothing more
    assert not again.get("old").must_change  # type: ignore[union-attr]


def test_tokens_expire_and_are_stored_hashed(store: UserStore) -> None:
    user = store.add("carol", "viewer", "viewer-password-number-1")
    tm = TokenManager(ttl_s=10)
    token, session = tm.issue(user, "127.0.0.1", now_ns=0)
    assert tm.resolve(token, now_ns=5 * S) == session
    assert token not in repr(tm._sessions)
    assert tm.resolve(token, now_ns=11 * S) is None
    assert tm.resolve(token, now_ns=1) is None  # forgotten at expiry
    t2, _ = tm.issue(user)
    assert tm.revoke_user("carol") == 1 and tm.resolve(t2) is None


def test_sessions_follow_the_store(store: UserStore) -> None:
    store.add("root", "administrator", "admin-password-number-1")
    op = store.add("op", "operator", "lamp-watch-passphrase")
    tm = TokenManager(accounts=store)
    token, _ = tm.issue(op)
    other, _ = tm.issue(op)
    assert isinstance(tm.check(token), Session)
    store.set_role("op", "viewer")  # a demotion, as `scada users role` does it
    ended = tm.check(token)
    assert isinstance(ended, Ended) and ended.code == "token_invalid" and "changed" in ended.why
    assert tm.resolve(other) is None  # the WebSocket's check sees it too
    viewer = store.get("op")
    assert viewer is not None
    t3, _ = tm.issue(viewer)
    store.set_disabled("op", True)
    assert "disabled" in tm.check(t3).why  # type: ignore[union-attr]


def test_idle_timeout_for_roles_that_act(store: UserStore) -> None:
    op = store.add("op", "operator", "lamp-watch-passphrase")
    view = store.add("view", "viewer", "look-only-passphrase")
    tm = TokenManager(ttl_s=8 * 3600, idle_s=1800, read_only_idle_s=0, accounts=store)
    t_op, _ = tm.issue(op, now_ns=0)
    t_view, _ = tm.issue(view, now_ns=0)
    assert isinstance(tm.check(t_op, now_ns=1700 * S), Session)  # a request refreshes the idle time
    assert isinstance(tm.check(t_op, now_ns=3400 * S), Session)
    assert tm.resolve(t_op, now_ns=5300 * S) is not None  # the WebSocket's check is not activity, nor idle-ended
    ended = tm.check(t_op, now_ns=5300 * S)
    assert isinstance(ended, Ended) and ended.code == "session_idle"
    assert isinstance(tm.check(t_view, now_ns=7 * 3600 * S), Session)  # read-only: no idle limit by default


# ---------------------------------------------------------------------- the throttle
def _fail(t: LoginThrottle, name: str, addr: str, now: int) -> float | Refused:
    res = t.reserve(name, addr, now_ns=now)
    if isinstance(res, Refused):
        return res
    return t.failed(res, now_ns=now)


def test_throttle_reserves_before_the_check(store: UserStore) -> None:
    """Reservations count before any hash is checked: parallel attempts cannot outrun the budget."""
    t = LoginThrottle(store, ThrottlePolicy(max_failures=5))
    held = [t.reserve("sup", "10.0.0.9", now_ns=0) for _ in range(8)]
    assert sum(isinstance(r, Reservation) for r in held) == 5
    refused = [r for r in held if isinstance(r, Refused)]
    assert len(refused) == 3 and all(r.scope == "account" for r in refused)
    locks = [t.failed(r, now_ns=S) for r in held if isinstance(r, Reservation)]
    assert locks.count(60.0) == 1  # the fifth failure starts the lock, once
    assert t.locked_for("SUP", now_ns=2 * S) == pytest.approx(59)  # account names are case-insensitive


def test_throttle_back_off_is_capped_and_unlock_lifts_it(store: UserStore) -> None:
    t = LoginThrottle(store, ThrottlePolicy(max_failures=3, window_s=60, lockout_s=60, max_lockout_s=900))
    now, locks = 0, []
    for _ in range(8):
        for _ in range(3):
            assert not isinstance(_fail(t, "dave", "", now), Refused)
        locks.append(t.locked_for("dave", now_ns=now))
        now += int(locks[-1] * S) + S
    assert locks == [60, 120, 240, 480, 900, 900, 900, 900]  # doubling, never more than 15 min
    for _ in range(3):
        _fail(t, "dave", "", now)
    locked = t.reserve("dave", "", now_ns=now + 899 * S)
    assert isinstance(locked, Refused) and locked.scope == "account" and locked.wait_s == pytest.approx(1)
    assert t.unlock("dave", now_ns=now) and t.locked_for("dave", now_ns=now) == 0
    assert isinstance(t.reserve("dave", "", now_ns=now + S), Reservation)


def test_throttle_hourly_cap(store: UserStore) -> None:
    t = LoginThrottle(store, ThrottlePolicy(max_failures=50, window_s=1, lockout_s=1, max_per_hour=100))
    now = 0
    for _ in range(100):
        assert not isinstance(_fail(t, "erin", "", now), Refused)
        now += S // 10
    r = t.reserve("erin", "", now_ns=now)
    assert isinstance(r, Refused) and "last hour" in r.why and 3400 < r.wait_s <= 3600


def test_address_throttle_spares_accounts_known_there(store: UserStore) -> None:
    """Password spraying from one address throttles it for new accounts, never for one that logs in from it."""
    t = LoginThrottle(store, ThrottlePolicy(max_failures=5, address_max_failures=20))
    ok = t.reserve("sup", "10.0.0.9", now_ns=0)
    assert isinstance(ok, Reservation)
    t.succeeded(ok, now_ns=0)  # the supervisor works from this address
    for i in range(20):  # one guess on each of 20 accounts
        assert not isinstance(_fail(t, f"user{i}", "10.0.0.9", S), Refused)
    r = t.reserve("user99", "10.0.0.9", now_ns=2 * S)
    assert isinstance(r, Refused) and r.scope == "address"
    assert isinstance(t.reserve("sup", "10.0.0.9", now_ns=2 * S), Reservation)
    assert isinstance(t.reserve("user99", "10.0.0.10", now_ns=2 * S), Reservation)  # another address


def test_throttle_state_is_shared_through_the_database(tmp_path: Path) -> None:
    """The CLI's store (another connection, as another process has) lifts the server's lock."""
    server_side = UserStore(tmp_path / "u.sqlite", hasher=FAST_HASHER)
    t = LoginThrottle(server_side)
    for _ in range(5):
        res = t.reserve("op", "10.1.1.1")
        assert isinstance(res, Reservation)
        t.failed(res)
    assert isinstance(t.reserve("op", "10.1.1.1"), Refused)
    cli_side = UserStore(tmp_path / "u.sqlite", hasher=FAST_HASHER)
    assert LoginThrottle(cli_side).unlock("op")
    assert isinstance(t.reserve("op", "10.1.1.1"), Reservation)


def test_failure_burst() -> None:
    b = FailureBurst(threshold=20, window_s=60, quiet_s=60)
    assert not any(b.note(["account:x", "address:a"], float(i) * 4) for i in range(19))  # 19 in 72 s
    assert not b.note(["account:x"], 76.0)  # 20 but over 76 s: no burst
    assert [b.note(["address:b"], 100 + i) for i in range(20)][-1]  # 20 within 19 s
    assert b.active and not b.ended(150.0) and b.ended(180.0) and not b.active
