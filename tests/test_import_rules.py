"""Import rules between the repository's packages, checked on the source (see ARCHITECTURE.md).

- `functions/` is what runs in AWS (the worker image, the trigger bundle): it imports nothing of
  `stacks/`, `config/`, `c2c_sync/`, `simulator/` or the CDK, or the image would need them.
- `config/` (the environment schema) imports only itself and `functions.common`.
- `stacks/` imports `config/`, `functions.common` (shared names: metric namespace, key layout) and
  `infra/`, never the worker's or the trigger's code.
- `infra/` is below the stacks, except `infra/environment.py`, which composes them.
- The cycle runner does not import paho: it only creates and waits on `PublishBatch`es.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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


def test_the_cycle_runner_does_not_import_paho() -> None:
    code = "import sys, functions.sync_worker.cycle; print(sorted(m for m in sys.modules if m.startswith('paho')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
