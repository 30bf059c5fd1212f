"""Bundle the trigger Lambda's code without Docker.

`cdk synth` must work on a machine without a Docker engine, so the Lambda asset is built by a
`cdk.ILocalBundling` that runs in the synth process: it copies the function's package parts and
pip-installs the few dependencies the Powertools layer does not provide, as ARM64/CPython wheels
(`--platform manylinux2014_aarch64 --only-binary=:all:`), so what is bundled is what Lambda runs
whatever the build machine is.

The pip result is cached under build/lambda-deps/<hash of requirements+target> so repeated synths
(tests, `make synth` for every environment) install once; the cache is filled atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import aws_cdk as cdk
import jsii

#: Distributions the Powertools for AWS Lambda (Python) v3 layer already ships (it is built with
#: the `all` extra: pydantic, aws-xray-sdk, ...); boto3 comes with the Lambda runtime.
LAYER_PROVIDED = frozenset({"aws-lambda-powertools", "pydantic", "pydantic-core", "aws-xray-sdk", "boto3", "botocore"})

_IGNORED_NAMES = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", "tests")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(line: str) -> str | None:
    """Normalised distribution name of one requirements line, or None for comments/blank lines."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    match = _REQ_NAME.match(line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def non_layer_requirements(requirements_file: Path, layer_provided: Iterable[str] = LAYER_PROVIDED) -> list[str]:
    """The requirement lines of `requirements_file` that the Powertools layer does not provide."""
    provided = {re.sub(r"[-_.]+", "-", n).lower() for n in layer_provided}
    kept = []
    for raw in requirements_file.read_text(encoding="utf-8").splitlines():
        name = requirement_name(raw)
        if name is not None and name not in provided:
            kept.append(raw.split("#", 1)[0].strip())
    return kept


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundling:
    """Copy `packages` of `source_root` under `package_name/` and pip-install `requirements`."""

    def __init__(
        self,
        *,
        source_root: Path,
        package_name: str,
        packages: Sequence[str],
        requirements: Sequence[str],
        python_version: str,
        pip_platform: str,
        cache_dir: Path,
    ) -> None:
        self.source_root = Path(source_root)
        self.package_name = package_name
        self.packages = tuple(packages)
        self.requirements = tuple(requirements)
        self.python_version = python_version
        self.pip_platform = pip_platform
        self.cache_dir = Path(cache_dir)

    def try_bundle(self, output_dir: str, *args: object, **kwargs: object) -> bool:  # noqa: ARG002
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
        if self.requirements:
            shutil.copytree(self._installed_dependencies(), out, dirs_exist_ok=True)
        return True

    def _cache_key(self) -> str:
        material = "\n".join([self.python_version, self.pip_platform, *sorted(self.requirements)])
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def _installed_dependencies(self) -> Path:
        target = self.cache_dir / self._cache_key()
        if target.is_dir():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="pip-", dir=self.cache_dir))
        cmd = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-compile", "--target", str(staging),
            "--platform", self.pip_platform, "--implementation", "cp",
            "--python-version", self.python_version, "--only-binary=:all:",
            *self.requirements,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            # Raising (not returning False) on purpose: False would make the CDK fall back to Docker.
            raise RuntimeError(
                f"pip could not install the trigger Lambda's dependencies {list(self.requirements)} "
                f"for {self.pip_platform}/py{self.python_version}:\n{result.stderr.strip()}"
            )
        for meta in staging.glob("bin"):
            shutil.rmtree(meta)
        try:
            os.replace(staging, target)  # atomic: a concurrent synth either sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another synth won the race
        return target
