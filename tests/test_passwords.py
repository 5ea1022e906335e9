"""The password rule (alerts/passwords.py) every path that sets a password applies, and
the bounded argon2id hashing (docs/design-security.md, "Passwords" and "Sizes")."""

from __future__ import annotations

import threading
import time

import pytest
from argon2 import PasswordHasher

from alerts import passwords
from alerts.errors import Busy, Refused

USER = "li.store"

#: (password, the words its refusal must contain); the issue's measured examples first
REFUSED = [
    ("aaaaaaaaaa", "12 characters"),
    (" " * 10, "12 characters"),
    ("password12", "12 characters"),
    ("aaaaaaaaaaaa", "too easy"),
    (" " * 12, "too easy"),
    ("password1234", "most common"),
    ("1qaz2wsx3edc", "most common"),
    ("QAZWSXEDCRFV", "most common"),  # the list is matched without case
    ("li.store2026!", "user name"),
    ("Store-of-the-county", "user name"),  # a part of the name (li.store → store)
]
ACCEPTED = [
    "yak butter tea 42",
    "barley field sunrise",
    "Lizhang-walnut-7",
    "牦牛肉干在冷库里放好了啊",
]


@pytest.mark.parametrize(("password", "why"), REFUSED)
def test_a_weak_password_is_refused_saying_why(password: str, why: str) -> None:
    with pytest.raises(Refused) as refused:
        passwords.check(password, USER)
    assert why in str(refused.value)


@pytest.mark.parametrize("password", ACCEPTED)
def test_a_long_password_of_unrelated_words_is_accepted(password: str) -> None:
    passwords.check(password, USER)


def test_a_password_longer_than_the_estimator_reads_is_judged_on_its_start() -> None:
    passwords.check("cold room two " * 10, USER)
    with pytest.raises(Refused):
        passwords.check("a" * 500, USER)


def test_a_hash_verifies_its_own_password_only_and_a_damaged_hash_verifies_none() -> None:
    stored = passwords.hash_password("yak butter tea 42")
    assert passwords.verify(stored, "yak butter tea 42")
    assert not passwords.verify(stored, "yak butter tea 43")
    assert not passwords.verify("$argon2id$v=19$broken", "yak butter tea 42")


def test_no_more_hashes_run_at_once_than_the_bound_and_a_caller_waits_then_is_told_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = peak = 0
    lock = threading.Lock()

    class Counting:
        """The real hasher, counting how many hash at once."""

        def __init__(self, real: PasswordHasher) -> None:
            self.real = real

        def hash(self, password: str) -> str:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                return self.real.hash(password)
            finally:
                with lock:
                    running -= 1

    monkeypatch.setattr(passwords, "_hasher", Counting(passwords._hasher))
    threads = [
        threading.Thread(target=passwords.hash_password, args=("yak butter tea 42",))
        for _ in range(3 * passwords.CONCURRENT)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert 1 < peak <= passwords.CONCURRENT

    # every turn taken: the next caller waits its time, then is told to come back
    monkeypatch.setattr(passwords, "WAIT_S", 0.3)
    for _ in range(passwords.CONCURRENT):
        assert passwords._turns.acquire(timeout=1)
    try:
        started = time.monotonic()
        with pytest.raises(Busy):
            passwords.verify("not a hash", "x")
        assert time.monotonic() - started >= 0.3
    finally:
        for _ in range(passwords.CONCURRENT):
            passwords._turns.release()
