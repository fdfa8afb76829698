"""The shape of the code, as docs/architecture.md states it: layers import only downward (import-linter's
contracts in pyproject.toml), nothing reaches into another module's private names, and modules and functions stay
small enough to read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "electives"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules(root: Path) -> list[Path]:
    """The .py files under root, leaving out caches and hidden folders (benchmarks/peers/.venv-recbole)."""
    return sorted(
        p
        for p in root.rglob("*.py")
        if "__pycache__" not in p.parts and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_import_contracts_hold() -> None:
    """Layers: cli > web > serving > models > evaluation > data > core; data/ and evaluation/ never import torch."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"{lint} is missing: install the dev extras (pip install -e '.[dev]')")
    done = subprocess.run(
        [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _private_imports(path: Path, own: str) -> list[str]:
    """`from electives.x import _name` and `alias._name` where alias is another electives module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("electives"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {a.name} from {node.module}")
                elif node.module != own:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("electives") and a.name != own:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path.name}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """A `_name` is private to its module: the package, its benchmarks and its tests use public names only."""
    paths = _modules(SRC) + _modules(ROOT / "benchmarks") + _modules(ROOT / "tests")
    bad = [hit for p in paths for hit in _private_imports(p, _module_name(p) if SRC in p.parents else "")]
    assert not bad, "\n".join(bad)


def test_modules_and_functions_stay_small() -> None:
    """The package and its benchmarks (tests may be longer): modules of at most 600 lines, functions of 80."""
    too_long: list[str] = []
    for path in _modules(SRC) + _modules(ROOT / "benchmarks"):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC.parent if SRC in path.parents else ROOT)
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {n} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {length} lines (at most {MAX_FUNCTION_LINES})")
    assert not too_long, "\n".join(too_long)


def test_modules_are_named_for_what_they_hold() -> None:
    vague = {"utils", "helpers", "misc", "common", "tools"}
    assert not [p for p in _modules(SRC) if p.stem in vague]
