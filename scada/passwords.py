"""The password policy (NIST SP 800-63B-4 §3.1.1.2, passwords as the only factor).

    check_password(password, name)
      ├─ length: at least 15 characters (password-only login), at most 256 (long passphrases welcome)
      ├─ the user name inside it (case-insensitive)                      → refused
      ├─ a commonly used or breached password (case-insensitive)         → refused
      │     the 30,000-entry "passwords" frequency list that the zxcvbn package ships (MIT licence;
      │     built from leaked password corpora), read offline from the installed package
      └─ guessable from dictionaries and patterns (repeats "aaaa…", sequences "1234…", keyboard rows,
            a common password with digits or symbols around it, the user name): zxcvbn's estimate below
            10^10 guesses (its score 4) → refused, with zxcvbn's own hint

No composition rules (no "one digit, one capital, one symbol": NIST forbids them) and no periodic change.
A refusal says which rule and why, never the password.

``POLICY_VERSION`` names this policy: an account whose password was set under an older one is asked to
change it at its next login (:mod:`scada.users` migration, ``must_change``).
"""

from __future__ import annotations

from functools import lru_cache

MIN_LENGTH = 15
MAX_LENGTH = 256
MIN_GUESSES = 1e10  # zxcvbn's score 4: "very unguessable, strong protection from offline slow-hash attacks"
POLICY_VERSION = 2  # 1 was "10 characters, 4 different ones"


class WeakPassword(ValueError):
    """The password breaks the policy; the message says which rule (never the password)."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The offline list of common/breached passwords (lower case), loaded once."""
    # imported at the first check, not with the server: zxcvbn builds its ranked dictionaries at import (~12 MB
    # of a server's RSS for an operation made at the first start and at password changes)
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def check_password(password: str, name: str = "") -> None:
    """Raise :class:`WeakPassword` if ``password`` may not be used by the account ``name``."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password too short: at least {MIN_LENGTH} characters are needed "
                           f"(a few unrelated words make a good one)")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password too long: at most {MAX_LENGTH} characters")
    if name and name.lower() in password.lower():
        raise WeakPassword("password must not contain the user name")
    if password.lower() in common_passwords():
        raise WeakPassword("password is in the list of commonly used or breached passwords")
    from zxcvbn import zxcvbn  # imported here: see common_passwords

    # zxcvbn only looks at the first 72 characters (its default): enough to judge a passphrase's guessability
    result = zxcvbn(password, user_inputs=[name] if name else None)
    if float(result["guesses"]) < MIN_GUESSES:
        hint = result["feedback"].get("warning") or "avoid repeats, sequences, keyboard rows and common words"
        raise WeakPassword(f"password too easy to guess: {hint.rstrip('.')}")
