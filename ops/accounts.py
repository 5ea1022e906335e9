"""Broker accounts for the production Mosquitto: a password file entry (hashed by
Debian's ``mosquitto_passwd``, never stored in the clear) and an ACL block per account.

A gateway may write only its own streams under ``coldchain/v1/{site}/{gateway}/`` and
read only its own ``stored`` watermark and ``limits``; each service reads what it
consumes and writes only its heartbeat (the alert service also the gateways' limits).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from coldchain import wire
from coldchain.heartbeat import SERVICES_ROOT
from coldchain.wire import Stream

SERVICE_RULES: dict[str, list[str]] = {
    "collector": [
        f"topic read {wire.subscription(Stream.READINGS, '+')}",
        f"topic read {wire.subscription(Stream.EVENTS, '+')}",
        f"topic write {wire.subscription(Stream.STORED, '+')}",
        f"topic write {SERVICES_ROOT}/collector/#",
    ],
    "alerts": [
        f"topic read {wire.subscription(Stream.READINGS, '+')}",
        f"topic read {wire.subscription(Stream.STATUS, '+')}",
        f"topic write {wire.subscription(Stream.LIMITS, '+')}",
        f"topic write {SERVICES_ROOT}/alerts/#",
    ],
    "api": [
        f"topic read {wire.subscription(Stream.READINGS, '+')}",
        f"topic read {wire.subscription(Stream.STATUS, '+')}",
        f"topic read {SERVICES_ROOT}/#",
    ],
    "watchdog": [f"topic read {SERVICES_ROOT}/#"],
}


class AccountError(RuntimeError):
    pass


def gateway_rules(site: str, gateway: str) -> list[str]:
    """A gateway writes its own streams and reads only what the store holds of them."""
    return [
        *(f"topic write {wire.topic(site, gateway, s)}" for s in sorted(wire.GATEWAY_STREAMS)),
        f"topic read {wire.topic(site, gateway, Stream.STORED)}",
        f"topic read {wire.topic(site, gateway, Stream.LIMITS)}",
    ]


def _hash(username: str, password: str) -> str:
    """``username:$7$…`` as mosquitto_passwd writes it (the password goes through a
    private temporary file, never a command line)."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        raise AccountError("mosquitto_passwd is missing (apt-get install mosquitto)")
    if ":" in username or "\n" in password:
        raise AccountError("a user name cannot hold ':' and a password cannot hold a newline")
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "passwd"
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{username}:{password}\n")
        done = subprocess.run([tool, "-U", str(plain)], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AccountError(f"mosquitto_passwd failed: {done.stderr.strip()}")
        return plain.read_text().strip()


def _replace_lines(path: Path, username: str, new_line: str) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if not line.startswith(f"{username}:")]
    path.write_text("\n".join([*kept, new_line]) + "\n")
    path.chmod(0o600)


def _replace_acl(path: Path, username: str, rules: list[str]) -> None:
    """Drop the account's block (``user NAME`` up to the next ``user``), append the new."""
    lines = path.read_text().splitlines() if path.exists() else []
    out: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith("user "):
            skipping = line.split(None, 1)[1].strip() == username
        if not skipping:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    out += ["", f"user {username}", *rules]
    path.write_text("\n".join(out) + "\n")


def add_account(passwd: Path, acl: Path, username: str, password: str, rules: list[str]) -> None:
    """Create or replace an account: its hashed password and its ACL block."""
    _replace_lines(passwd, username, _hash(username, password))
    _replace_acl(acl, username, rules)
