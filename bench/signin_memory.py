"""What a burst of failed sign-ins costs the API process: peak memory and time, with
argon2id hashing bounded (alerts/passwords.py, at most CONCURRENT at once) against the
baseline of the same hashes unbounded (what the API did before issue 15). Each side runs
in a fresh child process, and its peak resident memory (VmHWM) is read from /proc.

Usage: python bench/signin_memory.py [--attempts 40]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import threading
import time
from pathlib import Path


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _burst(bounded: bool, attempts: int, out: multiprocessing.Queue[tuple[float, float]]) -> None:
    from argon2 import PasswordHasher
    from argon2.exceptions import VerifyMismatchError

    from alerts import passwords

    stored = PasswordHasher().hash("the real password of someone")
    verify = passwords.verify if bounded else PasswordHasher().verify
    base = _peak_mb()

    def one() -> None:
        with contextlib.suppress(VerifyMismatchError):  # the bare hasher raises on a miss
            verify(stored, "a wrong guess")

    threads = [threading.Thread(target=one) for _ in range(attempts)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((_peak_mb() - base, time.perf_counter() - started))


def measure(bounded: bool, attempts: int) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[float, float]] = ctx.Queue()
    child = ctx.Process(target=_burst, args=(bounded, attempts, out))
    child.start()
    found = out.get(timeout=600)
    child.join(60)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=40)
    args = parser.parse_args()
    from alerts.passwords import CONCURRENT

    unbounded_mb, unbounded_s = measure(False, args.attempts)
    bounded_mb, bounded_s = measure(True, args.attempts)
    print(f"{args.attempts} failed sign-ins at once (argon2id, 64 MiB each)")
    print(f"  unbounded (baseline): +{unbounded_mb:7.0f} MB peak, {unbounded_s:5.2f} s")
    print(f"  at most {CONCURRENT} at once:    +{bounded_mb:7.0f} MB peak, {bounded_s:5.2f} s")
    print(
        f"  ratio bounded/unbounded: memory {bounded_mb / unbounded_mb:.2f}, "
        f"time {bounded_s / unbounded_s:.2f}"
    )


if __name__ == "__main__":
    main()
