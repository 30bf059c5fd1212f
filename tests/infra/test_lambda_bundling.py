"""The Docker-free Lambda bundler: which requirements it installs, what it removes, what it copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.lambda_bundling import RUNTIME_PROVIDED, LocalPythonBundling, remove_distributions
from infra.naming import FUNCTIONS_DIR

pytestmark = pytest.mark.infra


def test_only_the_runtime_sdk_and_its_dependencies_are_left_to_the_runtime():
    assert {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"} == RUNTIME_PROVIDED
    assert not {"aws-lambda-powertools", "pydantic", "pydantic-core", "aws-xray-sdk", "redis"} & RUNTIME_PROVIDED


def _fake_distribution(target: Path, name: str, files: dict[str, str]) -> None:
    """A dist-info with a RECORD, as `pip install --target` leaves it."""
    info = target / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    for rel, text in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    record = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD", "../../bin/tool"]
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in record))


def test_removal_follows_each_records_files_and_keeps_everything_else(tmp_path):
    _fake_distribution(tmp_path, "botocore", {"botocore/__init__.py": "", "botocore/data/s3/x.json": "{}"})
    _fake_distribution(tmp_path, "python-dateutil", {"dateutil/__init__.py": ""})
    _fake_distribution(tmp_path, "six", {"six.py": ""})
    _fake_distribution(tmp_path, "redis", {"redis/__init__.py": ""})
    (tmp_path / "botocore" / "__pycache__").mkdir()
    outside = tmp_path.parent / "bin" / "tool"  # a RECORD path outside the target is never touched
    outside.parent.mkdir(exist_ok=True)
    outside.write_text("keep")
    assert remove_distributions(tmp_path, {"Botocore", "python_dateutil", "six", "boto3"}) == [
        "botocore",
        "python-dateutil",
        "six",
    ]
    left = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert left == {
        "redis",
        "redis/__init__.py",
        "redis-1.0.dist-info",
        "redis-1.0.dist-info/METADATA",
        "redis-1.0.dist-info/RECORD",
    }
    assert outside.read_text() == "keep"


def test_bundle_copies_the_listed_parts_under_the_package_without_caches(tmp_path):
    source = tmp_path / "src"
    (source / "common" / "__pycache__").mkdir(parents=True)
    (source / "common" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (source / "common" / "signal.py").write_text("SIGNAL = 1\n")
    (source / "trigger").mkdir()
    (source / "trigger" / "handler.py").write_text("def handler(e, c): ...\n")
    (source / "sync_worker").mkdir()
    (source / "sync_worker" / "worker.py").write_text("")
    (source / "__init__.py").write_text("")
    bundler = LocalPythonBundling(
        source_root=source,
        package_name="functions",
        packages=("__init__.py", "common", "trigger"),
        requirements_lock=None,
        python_version="3.11",
        pip_platform="manylinux2014_aarch64",
        cache_dir=tmp_path / "cache",
    )
    out = tmp_path / "out"
    out.mkdir()
    assert bundler.try_bundle(str(out)) is True  # True: the CDK must not fall back to Docker
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["functions/__init__.py", "functions/common/signal.py", "functions/trigger/handler.py"]


def test_pip_failure_raises_instead_of_falling_back_to_docker(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("--no-index\nsurely-not-a-package==0.0.1 --hash=sha256:" + "0" * 64 + "\n")
    bundler = LocalPythonBundling(
        source_root=FUNCTIONS_DIR,
        package_name="functions",
        packages=("__init__.py",),
        requirements_lock=lock,
        python_version="3.11",
        pip_platform="manylinux2014_aarch64",
        cache_dir=tmp_path / "cache",
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="pip could not install"):
        bundler.try_bundle(str(out))
    assert not [p for p in (tmp_path / "cache").iterdir()]  # no half-filled cache entry


def test_cached_dependencies_are_reused(tmp_path):
    bundler = LocalPythonBundling(
        source_root=FUNCTIONS_DIR,
        package_name="functions",
        packages=("__init__.py",),
        requirements_lock=FUNCTIONS_DIR / "trigger" / "requirements.lock",
        python_version="3.11",
        pip_platform="manylinux2014_aarch64",
        cache_dir=tmp_path / "cache",
    )
    # Pre-fill the cache entry: a cache hit must not run pip (no network needed).
    entry = tmp_path / "cache" / bundler._cache_key()
    (entry / "redis").mkdir(parents=True)
    (entry / "redis" / "__init__.py").write_text("# cached\n")
    out = tmp_path / "out"
    out.mkdir()
    bundler.try_bundle(str(out))
    assert (out / "redis" / "__init__.py").read_text() == "# cached\n"
    assert Path(out / "functions" / "__init__.py").is_file()


def test_a_changed_lock_is_a_new_cache_entry(tmp_path):
    def key(lock_text: str) -> str:
        lock = tmp_path / "requirements.lock"
        lock.write_text(lock_text)
        return LocalPythonBundling(
            source_root=FUNCTIONS_DIR,
            package_name="functions",
            packages=(),
            requirements_lock=lock,
            python_version="3.11",
            pip_platform="manylinux2014_aarch64",
            cache_dir=tmp_path / "cache",
        )._cache_key()

    assert key("redis==8.1.0 --hash=sha256:aa\n") != key("redis==8.1.0 --hash=sha256:bb\n")
