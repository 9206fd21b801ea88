"""Data flows one way: each package imports (at module level) only the packages below it, never a CLI module."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the hashtag packages its modules may import at module level (itself included)
ALLOWED = {
    "runtime": {"runtime", "models"},
    "models": {"models"},
    "train": {"runtime", "train"},
    "export": {"runtime", "train", "export"},
    "bot": {"runtime", "models", "bot"},
    "serve": {"runtime", "models", "serve"},
    "tag": {"runtime", "models", "tag"},
    "benchmarks": {"runtime", "models", "bot", "benchmarks"},
}
CLI_MODULES = ("cli", "data_cli", "train_cli")
HEAVY = ("tensorflow", "keras", "tf2onnx")
FRONT_ENDS = ("runtime", "bot", "serve", "tag", "benchmarks")


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def _module_level(tree: ast.Module) -> list[str]:
    """Imports that run when the module is imported: top level, also inside if/try blocks, not in functions."""
    found: list[str] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        found += _imported(node)
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            stack += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    stack += handler.body
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []


CASES = [(pkg, path) for pkg in ALLOWED for path in _sources(pkg)]


@pytest.mark.parametrize(("package", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_module_imports_follow_the_data_flow(package: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for name in _module_level(tree):
        parts = name.split(".")
        if parts[0] == "hashtag" and len(parts) > 1:
            assert parts[1] in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name} at module level"
        if package in FRONT_ENDS:
            assert parts[0] not in HEAVY, f"{path.relative_to(ROOT)} imports {name}"


@pytest.mark.parametrize(("package", "path"), CASES, ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_no_package_imports_another_packages_cli(package: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        for name in _imported(node):
            parts = name.split(".")
            if parts[0] == "hashtag" and len(parts) > 2 and parts[1] != package:
                assert parts[2] not in CLI_MODULES, f"{path.relative_to(ROOT)} imports {name}"


def test_the_rules_see_every_package() -> None:
    """A new top-level package must be given its place in the flow above."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)
    assert sum(1 for _ in CASES) > 50
