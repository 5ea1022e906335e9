"""Passwords: the one rule every path that sets one applies, and argon2id hashing bounded
in how many run at once (docs/design-security.md, "Passwords" and "Sizes").

The rule (:func:`check`): at least :data:`MIN_LENGTH` characters, not containing the
user name, not one of the 30,000 common passwords of zxcvbn's frequency list, and not
guessable by zxcvbn's estimate in under 10^6 guesses (its score 2).

Each hash takes 64 MiB and a good part of a second: at most :data:`CONCURRENT` run at
once, and a caller waits up to :data:`WAIT_S` for its turn before :class:`Busy`.
"""

from __future__ import annotations

import threading
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from alerts.errors import Busy, Refused

MIN_LENGTH = 12
MIN_SCORE = 2
CONCURRENT = 4
WAIT_S = 10.0

_hasher = PasswordHasher()
_turns = threading.BoundedSemaphore(CONCURRENT)


@cache
def _common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check(password: str, username: str) -> None:
    """Refused, saying why, unless the password follows the rule."""
    if len(password) < MIN_LENGTH:
        raise Refused(f"a password needs at least {MIN_LENGTH} characters")
    folded = password.casefold()
    name = username.casefold()
    parts = {name, *(p for p in name.replace("-", ".").replace("_", ".").split(".") if len(p) > 2)}
    if any(part in folded for part in parts):
        raise Refused("a password must not contain the user name")
    if folded in _common() or folded.strip() in _common():
        raise Refused("that is one of the most common passwords: choose another")
    from zxcvbn import zxcvbn

    # it estimates up to 72 characters; past them a password is long enough anyway
    if zxcvbn(password[:72], user_inputs=[username])["score"] < MIN_SCORE:
        raise Refused(
            "that password is too easy to guess: use a few unrelated words or more characters"
        )


def _turn() -> None:
    if not _turns.acquire(timeout=WAIT_S):
        raise Busy("too many sign-ins at once: try again in a moment")


def hash_password(password: str) -> str:
    _turn()
    try:
        return _hasher.hash(password)
    finally:
        _turns.release()


def verify(password_hash: str, password: str) -> bool:
    """Whether the password is the one hashed (a damaged hash is not)."""
    _turn()
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    finally:
        _turns.release()
