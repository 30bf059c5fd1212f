"""Locked dependencies per runtime: each requirements file's pins are in its lock, every locked
distribution carries its hashes, the image and the Lambda install the lock with --require-hashes,
and the tests, the worker image and the Lambda run one Python version."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: requirements file (what we ask for) -> its lock (what is installed), per runtime.
LOCKS = {
    "dev venv": (ROOT / "requirements-dev.txt", ROOT / "requirements-dev.lock"),
    "worker image": (ROOT / "functions/sync_worker/requirements.txt", ROOT / "functions/sync_worker/requirements.lock"),
    "trigger Lambda": (ROOT / "functions/trigger/requirements.txt", ROOT / "functions/trigger/requirements.lock"),
    "checkov venv": (ROOT / "requirements-checkov.txt", ROOT / "requirements-checkov.lock"),
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#\\]+)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, following `-r other.txt`."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(requirement_pins(ROOT / line[3:].strip()))
        elif match := _PIN.match(line):
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def lock_entries(path: Path) -> dict[str, list[tuple[str, int]]]:
    """name -> [(version, number of hashes)] (a universal lock may hold one per Python/platform)."""
    entries: dict[str, list[tuple[str, int]]] = {}
    current: list[tuple[str, int]] | None = None
    version = ""
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            current = entries.setdefault(_normalise(match.group(1)), [])
            version = match.group(2)
            current.append((version, 0))
        elif current is not None and "--hash=sha256:" in line:
            current[-1] = (version, current[-1][1] + 1)
    return entries


@pytest.mark.parametrize("runtime", sorted(LOCKS))
def test_every_pin_is_locked_at_its_version(runtime: str) -> None:
    requirements, lock = LOCKS[runtime]
    locked = lock_entries(lock)
    stale = {
        name: (version, [v for v, _ in locked.get(name, [])])
        for name, version in requirement_pins(requirements).items()
        if version not in [v for v, _ in locked.get(name, [])]
    }
    assert stale == {}, f"{lock.relative_to(ROOT)} is behind {requirements.relative_to(ROOT)}: run `make lock`"


@pytest.mark.parametrize("runtime", sorted(LOCKS))
def test_every_locked_distribution_has_hashes(runtime: str) -> None:
    _, lock = LOCKS[runtime]
    entries = lock_entries(lock)
    assert len(entries) >= 10
    assert [name for name, versions in entries.items() if any(n == 0 for _, n in versions)] == []


def test_the_worker_image_and_the_venv_install_only_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "functions/sync_worker/Dockerfile").read_text()
    assert "COPY sync_worker/requirements.lock" in dockerfile
    assert "pip install --require-hashes --no-deps -r /app/requirements.lock" in dockerfile
    assert "requirements.txt" not in dockerfile.split("COPY sync_worker/requirements.lock")[1]
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes --no-deps -r requirements-dev.lock" in makefile


def test_tests_worker_image_and_lambda_run_one_python_version() -> None:
    (version,) = re.findall(r"^PYTHON_VERSION := (\d+\.\d+)$", (ROOT / "Makefile").read_text(), re.M)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version, "the tests run on another Python"
    dockerfile = (ROOT / "functions/sync_worker/Dockerfile").read_text()
    assert re.findall(r"^FROM \S+/python:(\d+\.\d+)-slim", dockerfile, re.M) == [version]
    assert "--python-version $(PYTHON_VERSION)" in (ROOT / "Makefile").read_text()  # the locks are for it


def test_the_lambda_runtime_is_the_python_its_bundle_is_locked_for() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (version,) = re.findall(r"^LAMBDA_PYTHON_VERSION := (\d+\.\d+)$", makefile, re.M)
    trigger = (ROOT / "stacks/trigger.py").read_text()
    assert f'PYTHON_VERSION = "{version}"' in trigger
    assert f"RUNTIME = lambda_.Runtime.PYTHON_{version.replace('.', '_')}" in trigger
    assert "--python-version $(LAMBDA_PYTHON_VERSION) --python-platform aarch64-manylinux2014" in makefile
    for _, lock in LOCKS.values():
        assert "make lock" in lock.read_text().splitlines()[1]
