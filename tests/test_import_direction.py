"""Data flows one way: each package imports (at module level) only the packages below it, never a CLI module;
the test doubles of tests/fakes stay out of the product and out of the wheel."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from setuptools.config.setupcfg import read_configuration

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
    # the portability check (run from the checkout, not installed): the benchmarks' machine and memory records,
    # train's split rule and file digests (stdlib only), in the base install on either machine
    "tests/portability": {"runtime", "models", "train", "benchmarks"},
    # test doubles (imported as `fakes`, tests/ being on the path): they speak the services' protocols and use
    # none of the product, so what they check the product against is not the product itself
    "tests/fakes": set(),
}
CLI_MODULES = ("cli", "data_cli", "train_cli")
HEAVY = ("tensorflow", "keras", "tf2onnx")
FRONT_ENDS = ("runtime", "bot", "serve", "tag", "benchmarks", "tests/portability")
TEST_ONLY = ("fakes", "tests")  # top-level names of test code, which the product never imports
# bench_bot takes the fake Bot API server from a source checkout at run time (fake_bot_api()), inside a function
LOADS_TEST_DOUBLES = {"benchmarks/bench_bot.py"}


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return []


def _module_level(tree: ast.Module) -> list[str]:
    """Imports that run when the module is imported: top level, also inside if/try blocks, not in functions
    and not under ``if TYPE_CHECKING:``."""
    found: list[str] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        found += _imported(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            stack += node.orelse
            continue
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            stack += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
            if isinstance(node, ast.Try):
                for handler in node.handlers:
                    stack += handler.body
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else []


def _wheel_folders() -> dict[str, Path]:
    """Each package the wheel holds and the checkout folder it is built from (setup.cfg's options)."""
    options = read_configuration(ROOT / "setup.cfg")["options"]
    package_dir: dict[str, str] = options["package_dir"]
    folders = {}
    for package in options["packages"]:
        mapped = max((p for p in package_dir if f"{package}.".startswith(f"{p}.")), key=len)
        folders[package] = ROOT.joinpath(package_dir[mapped], *package[len(mapped):].split(".")[1:])
    return folders


CASES = [(pkg, path) for pkg in ALLOWED for path in _sources(pkg)]
PRODUCT = {folder.relative_to(ROOT).parts[0] for folder in _wheel_folders().values()}


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


def test_the_product_never_imports_the_test_doubles() -> None:
    """Only bench_bot uses one, loaded from a source checkout when it runs; no product module imports test code
    when it is imported."""
    offenders = []
    for package, path in CASES:
        if package not in PRODUCT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.relative_to(ROOT).as_posix() in LOADS_TEST_DOUBLES:
            names = _module_level(tree)
        else:
            names = [name for node in ast.walk(tree) for name in _imported(node)]
        offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.split(".")[0] in TEST_ONLY]
    assert not offenders, offenders
    assert PRODUCT >= {"runtime", "bot", "benchmarks"}, PRODUCT


def test_the_wheel_holds_no_tests_and_so_no_test_doubles() -> None:
    tests = ROOT / "tests"
    for package, folder in _wheel_folders().items():
        assert folder.is_dir(), f"setup.cfg names {package} in {folder}, which does not exist"
        assert tests not in (folder, *folder.parents), f"the wheel's {package} would come from {folder}"
