"""Layering (ARCHITECTURE.md section 2), checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("providers", ("grpc", "google.protobuf", "voicecall_client", "voicecall_server")),
        ("voicecall_client", ("voicecall_server", "providers")),
    ],
)
def test_layers(package: str, forbidden: tuple[str, ...]) -> None:
    modules = imported_modules(package)
    assert modules, f"no modules found in {package}"
    bad = {
        path: sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        for path, names in modules.items()
    }
    assert {p: n for p, n in bad.items() if n} == {}


def test_the_walker_sees_imports() -> None:
    # Guards the test above against passing vacuously.
    assert "grpc" in set().union(*imported_modules("voicecall_server").values())
