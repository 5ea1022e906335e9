"""Installed size of a gateway box against a server (issue 17).

Makes fresh virtualenvs and installs this project into each from its folder, as an
installer would (``pip install ".[gateway]"``, then ``".[server]"`` and ``".[all]"`` for
the baseline), then measures the installed packages (site-packages, without pip and
setuptools, which every virtualenv has) and proves the light one works: ``coldchain
gateway check`` on a gateway config and ``coldchain profile check`` on a shipped profile,
run from that virtualenv. Needs PyPI (or a pip cache).

Target: ``coldchain[gateway]`` at most 30 MB installed.

Usage: python bench/install_size.py [--extras gateway server all]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 30.0
EVERY_VENV = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel")

GATEWAY_CONFIG = """
[gateway]
id = "truck-09"
site = "fleet"
[outbox]
path = "outbox.sqlite"
[cab]
port = 8090
[[buses]]
kind = "modbus_rtu"
name = "reefer"
port = "/dev/ttyUSB0"
[[buses.devices]]
id = "t09-ctrl"
profile = "dixell_xr60cx"
[[buses]]
kind = "nmea_gps"
name = "gps"
port = "/dev/ttyS1"
[[buses.devices]]
id = "t09-gps"
profile = "beidou_atgm336h"
"""


def size_mb(site: Path) -> tuple[float, int]:
    total, files = 0, 0
    for path in site.rglob("*"):
        top = path.relative_to(site).parts[0]
        if path.is_file() and not top.startswith(EVERY_VENV):
            total += path.stat().st_size
            files += 1
    return total / 2**20, files


def install(extra: str, work: Path) -> tuple[float, int, float, Path]:
    venv = work / extra
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    started = time.monotonic()
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{ROOT}[{extra}]"],
        check=True,
        cwd=work,  # not the project folder: its packages must come from the install
    )
    took = time.monotonic() - started
    (site,) = (venv / "lib").glob("python3*/site-packages")
    mb, files = size_mb(site)
    return mb, files, took, venv


def works(venv: Path, work: Path) -> str:
    config = work / "gateway.toml"
    config.write_text(GATEWAY_CONFIG)
    coldchain = str(venv / "bin" / "coldchain")
    checked = subprocess.run(
        [coldchain, "gateway", "check", str(config)], capture_output=True, text=True, cwd=work
    )
    profile = subprocess.run(
        [coldchain, "profile", "check", "dixell_xr60cx"], capture_output=True, text=True, cwd=work
    )
    ok = checked.returncode == 0
    return (
        f"gateway check {'ok' if ok else 'FAILED: ' + checked.stderr.strip()[-300:]}; "
        f"profile check exit {profile.returncode}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extras", nargs="+", default=["gateway", "server", "all"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldchain-install-"))
    sizes: dict[str, float] = {}
    for extra in args.extras:
        mb, files, took, venv = install(extra, work)
        sizes[extra] = mb
        line = f"coldchain[{extra}]: {mb:6.1f} MB in {files} files (installed in {took:.0f} s)"
        if extra == "gateway":
            line += f"; {works(venv, work)}"
        print(line, flush=True)
    if "gateway" in sizes:
        for other in sizes.keys() - {"gateway"}:
            print(f"gateway / {other}: x{sizes['gateway'] / sizes[other]:.3f}")
        verdict = "met" if sizes["gateway"] <= TARGET_MB else "NOT met"
        print(f"target: coldchain[gateway] <= {TARGET_MB:g} MB -> {verdict}")


if __name__ == "__main__":
    main()
