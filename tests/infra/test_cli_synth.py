"""`cdk synth` through the pinned CLI, as a user runs it: no AWS credentials, no Docker engine.

The environment is scrubbed of AWS_* variables, IMDS is disabled, HOME is empty (no ~/.aws), and
CDK_DOCKER points at a stand-in that records any call and fails, so a Docker call cannot go unseen.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.naming import REPO_ROOT
from tests.infra.conftest import PARTS
from tests.infra.test_config import write_env

pytestmark = pytest.mark.infra

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def offline_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    marker = tmp_path / "docker-was-called"
    fake_docker = tmp_path / "docker"
    fake_docker.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    fake_docker.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir()
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(home),
        CDK_DOCKER=str(fake_docker),
        PATH=f"{tmp_path}:{env['PATH']}",  # a plain `docker` resolves to the stand-in too
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    return env, marker


@dataclass
class CliRun:
    result: subprocess.CompletedProcess[str]
    outdir: Path
    docker_marker: Path


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, CliRun]:
    """All CLI synths of this module, started together (each is mostly process start-up)."""
    broken_dir = write_env(
        tmp_path_factory.mktemp("config"), "broken", log_retention_days=13, schedule="hourly", cache={"port": 6379}
    )
    cases = {
        "dev": ["-c", "env=dev"],
        "prod": ["-c", "env=prod"],
        "unknown": ["-c", "env=staging"],
        "broken": ["-c", "env=broken", "-c", f"config_dir={broken_dir}"],
    }
    started = {}
    for name, args in cases.items():
        tmp = tmp_path_factory.mktemp(f"cli-{name}")
        env, marker = offline_env(tmp)
        cmd = [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(tmp / "cdk.out"), *args]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started[name] = (proc, cmd, tmp, marker)
    runs = {}
    for name, (proc, cmd, tmp, marker) in started.items():
        stdout, stderr = proc.communicate(timeout=300)
        runs[name] = CliRun(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), tmp / "cdk.out", marker)
    return runs


@pytest.mark.parametrize("env_name", ["dev", "prod"])
def test_synth_succeeds_offline_without_credentials_or_docker(cli_runs, env_name):
    run = cli_runs[env_name]
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    assert not run.docker_marker.exists(), f"docker was called: {run.docker_marker.read_text()}"
    manifest = json.loads((run.outdir / "manifest.json").read_text())
    assert "missing" not in manifest
    for part in PARTS:
        assert (run.outdir / f"C2C-{env_name}-{part}.template.json").is_file()


def test_unknown_environment_fails_listing_the_known_ones(cli_runs):
    result = cli_runs["unknown"].result
    assert result.returncode != 0
    assert "unknown environment 'staging'" in result.stderr
    assert "Known environments: dev, prod" in result.stderr


def test_invalid_config_fails_naming_every_bad_field(cli_runs):
    result = cli_runs["broken"].result
    assert result.returncode != 0
    assert "3 invalid field(s)" in result.stderr
    for field in ("log_retention_days", "schedule", "cache.port"):
        assert f"- {field}:" in result.stderr
