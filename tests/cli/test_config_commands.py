"""`validate-config` through config.load_environment, and the `synth` wrapper's cdk command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from c2c_sync.cli import synth_args
from c2c_sync.environments import REPO_ROOT
from c2c_sync.errors import ExitCode
from tests.cli.conftest import ENV


def test_validate_config_ok(cli, config_dir):
    result = cli("validate-config", "--env", ENV)

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"OK {config_dir / 'test.yaml'}"


def test_validate_config_lists_every_bad_field(cli, config_dir):
    path = config_dir / "test.yaml"
    text = path.read_text()
    broken = (
        text.replace("log_retention_days: 14", "log_retention_days: 15")
        .replace("schedule: rate(3 minutes)", "schedule: every 3 minutes")
        .replace("retain_data: false", "retain_data: false\nunexpected_key: 1")
    )
    assert broken.count("\n") == text.count("\n") + 1  # all three edits applied
    path.write_text(broken)

    result = cli("validate-config", "--env", ENV)

    assert result.exit_code == int(ExitCode.UNKNOWN_ENV)
    assert "Traceback" not in result.output
    problems = result.stderr.strip().splitlines()
    assert problems[0] == f"{path}: 3 problem(s)"
    fields = sorted(line.strip().split(":")[0] for line in problems[1:])
    assert fields == ["log_retention_days", "schedule", "unexpected_key"]
    assert "unknown field" in result.stderr and "EventBridge expression" in result.stderr


def test_synth_runs_the_repository_cdk_with_the_env_context():
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        pytest.fail(f"{cdk} missing: run `make install`")

    assert synth_args("dev", None, quiet=True) == [
        str(cdk),
        "synth",
        "-c",
        "env=dev",
        "--output",
        str(Path("cdk.out") / "dev"),
        "--quiet",
    ]
