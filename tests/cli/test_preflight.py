"""`c2c-sync preflight`: every deploy blocker as one line, against moto's server (STS, Secrets
Manager, SNS, ECR, CloudFormation).

Docker cannot run on this machine (no daemon): a stand-in `docker` script on PATH answers the
two commands preflight runs (`docker version`, `docker buildx inspect --bootstrap`) the way a
daemon with or without the arm64 emulation does. Everything else is moto's real server.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from c2c_sync.preflight import BINFMT_COMMAND, asset_repository_problems, docker_problems
from config.schema import CpuArchitecture
from tests.cli.conftest import REGION, deploy_outputs_stack

pytestmark = pytest.mark.integration

MOTO_ACCOUNT = "123456789012"  # what moto's STS answers
ASSET_REPOSITORY = f"cdk-hnb659fds-container-assets-{MOTO_ACCOUNT}-{REGION}"
FAKE_DOCKER = """#!/bin/sh
case "$1 $2" in
  "version --format") echo 27.3.1 ;;
  "buildx inspect") echo "Name: default"; echo "Platforms: linux/amd64, linux/386${ARM64:+, linux/arm64}" ;;
  *) exit 1 ;;
esac
"""


@pytest.fixture
def docker_bin(tmp_path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    script = directory / "docker"
    script.write_text(FAKE_DOCKER)
    script.chmod(0o755)
    return directory


def preflight(cli, moto, docker_bin, env: str, *, arm64: bool, region: str = REGION):
    path = f"{docker_bin}:/usr/bin:/bin"
    environ = {"PATH": path, "ARM64": "1" if arm64 else ""}
    return cli("preflight", "--env", env, "--region", region, "--endpoint-url", moto.url, env=environ)


def lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_a_fresh_account_and_the_shipped_dev_config_list_every_blocker_one_line_each(cli, moto, docker_bin):
    result = preflight(cli, moto, docker_bin, "test", arm64=False)
    assert result.exit_code == 1
    found = lines(result)
    assert sorted(line.split(":")[0] for line in found) == [
        "alarms",
        "bootstrap",
        "docker",
        "endpoint",
        "endpoint",
        "secret",
        "secret",
    ]
    text = "\n".join(found)
    assert "platform.endpoint is the placeholder 'mqtts://mqtt.example.com:8883'" in text
    assert "source.api_key_secret names 'c2c-sync/dev/source-api-key', which does not exist" in text
    assert "platform.secrets.mqtt_password names 'c2c-sync/dev/mqtt-password'" in text
    assert f"cdk bootstrap aws://{MOTO_ACCOUNT}/{REGION}" in text
    assert BINFMT_COMMAND in text and "nobody is notified" in text
    assert "7 problem(s)" in result.stderr


def ready_config(config_dir: Path, topic_arn: str) -> None:
    raw = yaml.safe_load((config_dir / "test.yaml").read_text())
    raw["platform"]["endpoint"] = "mqtts://broker.acme-energy.net:8883"
    raw["source"]["base_url"] = "https://api.storage-cloud.net"
    raw["alarms"]["notify"] = {"emails": ["ops@acme-energy.net"], "topic_arn": topic_arn}
    (config_dir / "test.yaml").write_text(yaml.safe_dump(raw))


def test_a_ready_account_passes(cli, moto, docker_bin, config_dir):
    topic = moto.client("sns", REGION).create_topic(Name="ops-paging")["TopicArn"]
    ready_config(config_dir, topic)
    secrets = moto.client("secretsmanager", REGION)
    for name in ("c2c-sync/dev/source-api-key", "c2c-sync/dev/mqtt-password"):
        secrets.create_secret(Name=name, SecretString="value")
    moto.client("ecr", REGION).create_repository(
        repositoryName=ASSET_REPOSITORY, imageScanningConfiguration={"scanOnPush": True}
    )
    result = preflight(cli, moto, docker_bin, "test", arm64=True)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert lines(result) == [f"preflight OK: test can deploy to {MOTO_ACCOUNT}/{REGION}"]


def test_prod_without_a_pinned_account_a_missing_topic_and_no_scan_on_push(cli, moto, docker_bin, config_dir):
    raw = yaml.safe_load((config_dir / "prod.yaml").read_text())
    raw["alarms"]["notify"] = {"topic_arn": f"arn:aws:sns:{REGION}:{MOTO_ACCOUNT}:nobody"}
    (config_dir / "prod.yaml").write_text(yaml.safe_dump(raw))
    moto.client("ecr", REGION).create_repository(repositoryName=ASSET_REPOSITORY)
    result = preflight(cli, moto, docker_bin, "prod", arm64=True)
    text = "\n".join(lines(result))
    assert f"account: prod retains data but pins no account: set `account: {MOTO_ACCOUNT}`" in text
    assert f"alarms.notify.topic_arn arn:aws:sns:{REGION}:{MOTO_ACCOUNT}:nobody does not exist" in text
    assert f"--repository-name {ASSET_REPOSITORY} --image-scanning-configuration scanOnPush=true" in text

    raw["account"] = "999988887777"
    (config_dir / "prod.yaml").write_text(yaml.safe_dump(raw))
    result = preflight(cli, moto, docker_bin, "prod", arm64=True)
    assert f"account: the credentials are for account {MOTO_ACCOUNT}, config pins 999988887777" in result.stdout


def test_a_registry_scanning_rule_counts_as_scan_on_push(moto):
    # The CDK bootstrap template has set no repository-level scan since aws/aws-cdk#21342 (ECR
    # moved the setting to registry-level rules); an account that scans through a rule passes.
    ecr = moto.client("ecr", REGION)
    ecr.create_repository(repositoryName=ASSET_REPOSITORY)
    assert [p.check for p in asset_repository_problems(ecr, MOTO_ACCOUNT, REGION)] == ["image-scan"]
    ecr.put_registry_scanning_configuration(
        scanType="BASIC",
        rules=[
            {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "other-*", "filterType": "WILDCARD"}]}
        ],
    )
    assert [p.check for p in asset_repository_problems(ecr, MOTO_ACCOUNT, REGION)] == ["image-scan"]
    ecr.put_registry_scanning_configuration(
        scanType="BASIC",
        rules=[{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "cdk-*", "filterType": "WILDCARD"}]}],
    )
    assert asset_repository_problems(ecr, MOTO_ACCOUNT, REGION) == []


def test_a_deployed_environment_whose_email_is_not_subscribed_is_reported(cli, moto, docker_bin, config_dir):
    sns = moto.client("sns", REGION)
    paging = sns.create_topic(Name="ops-paging")["TopicArn"]
    ready_config(config_dir, paging)
    alarm_topic = sns.create_topic(Name="c2c-test-alarms")["TopicArn"]
    deploy_outputs_stack(moto, "C2C-test-Monitoring", AlarmTopicArn=alarm_topic)
    result = preflight(cli, moto, docker_bin, "test", arm64=True)
    assert f"alarms: ops@acme-energy.net is not subscribed to {alarm_topic} yet" in result.stdout


def _completed(code: int, stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, stdout, stderr)


def test_docker_missing_or_its_daemon_down_are_one_line_each():
    missing = docker_problems(CpuArchitecture.ARM64, which=lambda _: None)
    assert [str(p) for p in missing] == [
        "docker: not found: cdk deploy builds the worker image with Docker (Engine + buildx)"
    ]
    down = docker_problems(
        CpuArchitecture.ARM64,
        run=lambda args: _completed(1, stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n"),
        which=lambda _: "/usr/bin/docker",
    )
    assert len(down) == 1 and "Cannot connect to the Docker daemon" in str(down[0])
    x86_only = docker_problems(
        CpuArchitecture.X86_64, run=lambda args: _completed(0, "27.3.1"), which=lambda _: "/usr/bin/docker"
    )
    assert x86_only == []
