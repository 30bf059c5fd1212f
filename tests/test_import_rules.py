"""Import rules between the repository's packages, checked on the source (see ARCHITECTURE.md).

- `functions/` is what runs in AWS (the worker image, the trigger bundle): it imports nothing of
  `stacks/`, `config/`, `c2c_sync/`, `simulator/`, `vendor_mocks/` or the CDK, or the image would need them.
- `config/` (the environment schema) imports only itself and `functions.common`.
- `stacks/` imports `config/`, `functions.common` (shared names: metric namespace, key layout) and
  `infra/`, never the worker's or the trigger's code.
- `infra/` is below the stacks, except `infra/environment.py`, which composes them.
- The cycle runner does not import paho: it only creates and waits on `PublishBatch`es.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {
    "functions",
    "config",
    "stacks",
    "infra",
    "c2c_sync",
    "simulator",
    "vendor_mocks",
    "app",
    "aws_cdk",
    "constructs",
    "cdk_nag",
}

#: package -> the first-party (or CDK) import prefixes it may use.
ALLOWED: dict[str, tuple[str, ...]] = {
    "functions": ("functions",),
    "config": ("config", "functions.common"),
    "infra": ("infra", "config", "functions.common", "aws_cdk", "constructs", "cdk_nag"),
    "stacks": ("stacks", "infra", "config", "functions.common", "aws_cdk", "constructs", "cdk_nag"),
}
#: file -> what it may import on top of its package's list.
EXTRA: dict[str, tuple[str, ...]] = {"infra/environment.py": ("stacks",)}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n for n in names if n.split(".")[0] in FIRST_PARTY]


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_its_layer_may(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    offending = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if not _allowed(name, ALLOWED[package] + EXTRA.get(str(path.relative_to(ROOT)), ()))
    ]
    assert offending == []


def _module_level_imports(path: Path) -> list[str]:
    """What importing `path` imports: module-level statements only (a function's own imports run
    when it is called; `if TYPE_CHECKING:` blocks never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
    return names


def _source_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_closure(module: str) -> set[str]:
    """Every module importing `module` imports, following first-party modules (their packages'
    `__init__` included) and stopping at third-party ones."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            source = _source_of(prefix)
            if source is not None:
                pending.extend(_module_level_imports(source))
    return seen


def test_the_cycle_runner_does_not_import_paho() -> None:
    closure = import_closure("functions.sync_worker.cycle")
    assert "functions.sync_worker.uplink.batch" in closure  # the closure follows first-party imports
    assert not {m for m in closure if m == "paho" or m.startswith("paho.")}
    # ...and it would see paho where it is imported:
    assert "paho.mqtt.client" in import_closure("functions.sync_worker.uplink.connection")
