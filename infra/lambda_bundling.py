"""Bundle the trigger Lambda's code without Docker.

`cdk synth` must work on a machine without a Docker engine, so the Lambda asset is built by a
`cdk.ILocalBundling` that runs in the synth process: it copies the function's package parts and
pip-installs the function's lock file (every distribution pinned with its hashes, made by `make
lock`) as ARM64/CPython wheels (`--platform manylinux2014_aarch64 --only-binary=:all:
--require-hashes --no-deps`), so what is bundled is exactly what the lock pins, byte for byte,
whatever the build machine is (no Lambda layer whose contents we cannot check at synth). Then it
removes the distributions the Lambda runtime itself provides (the AWS SDK and its dependencies, see
RUNTIME_PROVIDED) file by file from their dist-info RECORDs.

The result is cached under build/lambda-deps/<hash of lock+target+exclusions> so repeated
synths (tests, `make synth` for every environment) install once; the cache is filled atomically.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

import aws_cdk as cdk
import jsii

#: What the Lambda Python runtime ships in /var/runtime: boto3 and its dependency closure. Pip
#: pulls some of them in (aws-xray-sdk, Powertools' tracer extra, requires botocore; Powertools
#: requires jmespath); bundled copies would sit before the runtime's on sys.path and shadow the
#: versions the runtime's boto3 was built with. Our code needs no newer ones: Powertools asks
#: jmespath>=1.0.1,<2 and aws-xray-sdk botocore>=1.11.3, which the runtime's copies satisfy.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"})

_IGNORED_NAMES = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", "tests")


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def remove_distributions(target: Path, names: Collection[str]) -> list[str]:
    """Delete every file the dist-info RECORD of each distribution in `names` lists (code, data,
    the dist-info itself) from a `pip install --target` directory; returns the removed names."""
    wanted = {normalise(n) for n in names}
    root = Path(target).resolve()
    removed = []
    for dist in importlib.metadata.distributions(path=[str(root)]):
        name = normalise(dist.metadata["Name"])
        if name not in wanted:
            continue
        directories: set[Path] = set()
        for entry in dist.files or ():
            path = (root / entry).resolve()
            if root not in path.parents:  # e.g. ../../bin scripts: never outside the target
                continue
            path.unlink(missing_ok=True)
            directories.update(p for p in path.parents if root in p.parents)
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            for cache in directory.glob("__pycache__"):
                shutil.rmtree(cache)
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        removed.append(name)
    return sorted(removed)


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundling:
    """Copy `packages` of `source_root` under `package_name/`, pip-install the hash-locked
    `requirements_lock` (None: no dependencies), then remove the `exclude_distributions` (what the
    runtime provides)."""

    def __init__(
        self,
        *,
        source_root: Path,
        package_name: str,
        packages: Sequence[str],
        requirements_lock: Path | None,
        python_version: str,
        pip_platform: str,
        cache_dir: Path,
        exclude_distributions: Collection[str] = (),
    ) -> None:
        self.source_root = Path(source_root)
        self.package_name = package_name
        self.packages = tuple(packages)
        self.requirements_lock = requirements_lock
        self.python_version = python_version
        self.pip_platform = pip_platform
        self.cache_dir = Path(cache_dir)
        self.exclude_distributions = tuple(sorted({normalise(n) for n in exclude_distributions}))

    def try_bundle(self, output_dir: str, *args: object, **kwargs: object) -> bool:
        """Called by the CDK; returning True means "bundled locally, do not start Docker"."""
        out = Path(output_dir)
        package_dir = out / self.package_name
        package_dir.mkdir(parents=True, exist_ok=True)
        for part in self.packages:
            src = self.source_root / part
            if src.is_dir():
                shutil.copytree(src, package_dir / part, ignore=_IGNORED_NAMES, dirs_exist_ok=True)
            else:
                shutil.copy2(src, package_dir / part)
        if self.requirements_lock is not None:
            shutil.copytree(self._installed_dependencies(), out, dirs_exist_ok=True)
        return True

    def _cache_key(self) -> str:
        material = "\n".join(
            [
                self.python_version,
                self.pip_platform,
                self._lock_text(),
                "exclude:",
                *self.exclude_distributions,
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def _lock_text(self) -> str:
        return "" if self.requirements_lock is None else self.requirements_lock.read_text(encoding="utf-8")

    def _installed_dependencies(self) -> Path:
        target = self.cache_dir / self._cache_key()
        if target.is_dir():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="pip-", dir=self.cache_dir))
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(staging),
            "--platform",
            self.pip_platform,
            "--implementation",
            "cp",
            "--python-version",
            self.python_version,
            "--only-binary=:all:",
            "--require-hashes",
            "--no-deps",  # the lock lists every distribution: nothing is resolved here
            "--requirement",
            str(self.requirements_lock),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            # Raising (not returning False) on purpose: False would make the CDK fall back to Docker.
            raise RuntimeError(
                f"pip could not install the trigger Lambda's dependencies ({self.requirements_lock}) "
                f"for {self.pip_platform}/py{self.python_version}:\n{result.stderr.strip()}"
            )
        remove_distributions(staging, self.exclude_distributions)
        for scripts in staging.glob("bin"):
            shutil.rmtree(scripts)
        try:
            os.replace(staging, target)  # atomic: a concurrent synth either sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another synth won the race
        return target
