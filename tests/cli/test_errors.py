"""Operator mistakes end in one line naming what is wrong, a non-zero exit code, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from c2c_sync.environments import CONFIG_DIR_ENV, REPO_ROOT
from c2c_sync.errors import ExitCode, translate
from tests.cli.conftest import ENV, REGION
from tests.support.services import free_port

pytestmark = pytest.mark.integration


def assert_one_line_error(result, exit_code: ExitCode, *fragments: str) -> None:
    assert result.exit_code == int(exit_code), result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", [["signal", "start"], ["status"], ["validate-config"], ["synth"]])
def test_unknown_env_lists_the_known_ones(cli, argv):
    result = cli(*argv, "--env", "staging")

    assert_one_line_error(result, ExitCode.UNKNOWN_ENV, "unknown environment 'staging'", "known: prod, test")


@pytest.mark.parametrize("argv", [["signal", "start", "--via", "sns"], ["signal", "start", "--via", "url"], ["status"]])
def test_stack_not_deployed(moto, cli, argv):
    result = cli(*argv, "--env", ENV, "--region", REGION, "--endpoint-url", moto.url)

    assert_one_line_error(result, ExitCode.NOT_DEPLOYED, "stack not deployed", f"C2C-{ENV}-*", REGION)


def test_missing_output_names_the_key_and_the_stacks_searched(deployed, cli):
    result = cli("signal", "start", "--env", ENV, "--via", "url", *deployed.aws_args())

    assert_one_line_error(
        result, ExitCode.NOT_DEPLOYED, "stack output TriggerFunctionUrl not found", f"C2C-{ENV}-Messaging"
    )


def test_cloudformation_does_not_exist_error_is_translated(moto):
    """The ValidationError AWS returns for a named stack that is not there (read from moto's server)."""
    with pytest.raises(Exception) as caught:
        moto.client("cloudformation").describe_stacks(StackName=f"C2C-{ENV}-Messaging")

    failure = translate(caught.value)

    assert failure is not None and failure.exit_code is ExitCode.NOT_DEPLOYED
    assert failure.message.startswith("stack not deployed:") and f"C2C-{ENV}-Messaging" in failure.message


def test_no_aws_credentials(moto, cli, monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup (and no 1s wait)

    result = cli("status", "--env", ENV, "--region", REGION, "--endpoint-url", moto.url)

    assert_one_line_error(result, ExitCode.AWS_ACCESS, "no AWS credentials found")


def test_no_region(moto, cli, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    result = cli("signal", "start", "--env", ENV, "--endpoint-url", moto.url)

    assert_one_line_error(result, ExitCode.AWS_ACCESS, "no AWS region", "--region")


def test_status_with_unreachable_redis(deployed, cli):
    url = f"redis://127.0.0.1:{free_port()}/0"

    result = cli("status", "--env", ENV, "--redis-url", url, *deployed.aws_args())

    assert_one_line_error(result, ExitCode.REDIS_UNREACHABLE, "Redis unreachable at redis://127.0.0.1:")


def test_installed_script_reports_an_unknown_env_without_traceback(config_dir):
    """The `c2c-sync` console script from pyproject's [project.scripts], run as its own process."""
    script = Path(sys.executable).with_name("c2c-sync")
    completed = subprocess.run(
        [str(script), "status", "--env", "nope"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, CONFIG_DIR_ENV: str(config_dir)},
    )

    assert completed.returncode == int(ExitCode.UNKNOWN_ENV)
    assert completed.stderr.strip() == "error: unknown environment 'nope' (known: prod, test)"
