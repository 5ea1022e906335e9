"""The layering of docs/design-layout.md, read from the code's own imports: a package
imports only packages below it, and nothing outside tests, migrations and data grows
past about 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: package: layer (a package may import only packages of a lower layer, and itself)
LAYERS = {
    "coldchain": 1,
    "firmware_configs": 2,
    "gateway": 3,
    "collector": 3,
    "alerts": 4,
    "api": 5,
    "simulator": 6,
    "ops": 7,
}

MAX_LINES = 420


def modules() -> list[Path]:
    return sorted(p for package in LAYERS for p in (ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that the module imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in LAYERS)
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_the_layers_below_its_own(path: Path) -> None:
    own = path.relative_to(ROOT).parts[0]
    upward = sorted(
        other for other in imported_packages(path) if other != own and LAYERS[other] >= LAYERS[own]
    )
    assert upward == [], f"{path.relative_to(ROOT)} ({own}) imports {upward}"


def test_the_foundation_names_no_package_above_it() -> None:
    offenders = {
        str(p.relative_to(ROOT)): imported_packages(p) - {"coldchain"}
        for p in (ROOT / "coldchain").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_module_outside_tests_migrations_and_data_is_long() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if "migrations" not in p.parts
        and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_paho_clients_are_made_in_one_module() -> None:
    makers = sorted(
        str(p.relative_to(ROOT))
        for p in modules()
        if "mqtt.Client(" in p.read_text(encoding="utf-8")
    )
    assert makers == ["coldchain/mqtt.py"]
