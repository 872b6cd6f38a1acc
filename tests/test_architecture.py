"""The house rules of issue 14, checked on the source tree: small files, no private names across modules,
a typed run everywhere a run is passed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sinerec"
MAX_LINES = 450
SOURCES = sorted(p for p in SRC.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_too_long_to_read_in_one_sitting(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (> {MAX_LINES}): a concept waiting for a name"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    tree = ast.parse(path.read_text())
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sinerec"):
            if node.module == _module_name(path):
                continue
            offenders += [f"{node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, f"{path.relative_to(SRC)} imports private names: {offenders}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_a_run_is_always_typed(path: Path) -> None:
    """A parameter or attribute named ``run`` is a LoadedRun (or a narrower type), never ``Any``."""
    tree = ast.parse(path.read_text())
    untyped = [f"line {n.lineno}" for n in ast.walk(tree)
               if isinstance(n, ast.arg) and n.arg == "run"
               and (n.annotation is None or ast.unparse(n.annotation) in ("Any", "typing.Any"))]
    assert not untyped, f"{path.relative_to(SRC)}: `run` without a type at {untyped}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The checks above would notice an offender (so an empty result means something)."""
    bad = "from sinerec.evaluate import _private\n\ndef f(run, x: int) -> None:\n    pass\n"
    tree = ast.parse(bad)
    assert any(isinstance(n, ast.ImportFrom) and n.names[0].name.startswith("_") for n in ast.walk(tree))
    assert any(isinstance(n, ast.arg) and n.arg == "run" and n.annotation is None for n in ast.walk(tree))
