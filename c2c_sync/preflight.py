"""`c2c-sync preflight --env NAME`: what would make a first deploy fail or leave it deaf, found first.

`make deploy` runs it before `cdk deploy`. Each problem is one line naming what to change:
placeholder endpoints (the service would deploy, then its first task fails and the create rolls
back), secrets the config names but Secrets Manager lacks, credentials for another account or
region, a data-retaining environment without a pinned account, a Docker that cannot build the
linux/arm64 worker image, nobody subscribed to the alarms, and the CDK asset repository without
scan on push.
"""

from __future__ import annotations

import fnmatch
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from c2c_sync import outputs
from c2c_sync.aws import AwsTarget
from c2c_sync.errors import CliError
from config.schema import CpuArchitecture, EnvironmentConfig

#: Hosts that are documentation placeholders (RFC 2606 / 6761), never a real endpoint.
PLACEHOLDER_HOST = re.compile(r"(^|\.)(example\.(com|org|net)|example|invalid|test|localhost)$")
#: The default CDK bootstrap qualifier: the asset repository is cdk-<qualifier>-container-assets-...
BOOTSTRAP_QUALIFIER = "hnb659fds"
BINFMT_COMMAND = "docker run --privileged --rm tonistiigi/binfmt --install arm64"


@dataclass(frozen=True)
class Problem:
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


def endpoint_problems(config: EnvironmentConfig) -> list[Problem]:
    found = []
    for field, url in (
        ("platform.endpoint", config.platform.endpoint),
        ("source.base_url", str(config.source.base_url)),
    ):
        host = urlsplit(url).hostname or ""
        if PLACEHOLDER_HOST.search(host):
            found.append(Problem("endpoint", f"{field} is the placeholder {url!r}: set the real endpoint"))
    return found


def named_secrets(config: EnvironmentConfig) -> dict[str, str]:
    """Config field -> name of every operator-created secret the environment reads."""
    source = config.source
    names = {
        "source.api_key_secret" if name == "api_key" and source.api_key_secret else f"source.secrets.{name}": secret
        for name, secret in source.named_secrets.items()
    }
    for field, value in config.platform.secrets.model_dump().items():
        if value is not None:
            names[f"platform.secrets.{field}"] = value
    return names


def secret_problems(config: EnvironmentConfig, secretsmanager: Any) -> list[Problem]:
    found = []
    for field, name in named_secrets(config).items():
        try:
            secretsmanager.describe_secret(SecretId=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            found.append(
                Problem(
                    "secret",
                    f"{field} names {name!r}, which does not exist: "
                    f"aws secretsmanager create-secret --name {name} --secret-string '...'",
                )
            )
    return found


def identity_problems(config: EnvironmentConfig, account: str, region: str) -> list[Problem]:
    found = []
    if config.account is None and config.retain_data:
        found.append(
            Problem(
                "account",
                f"{config.name} retains data but pins no account: set `account: {account}` (if that is the "
                f"right one) in config/{config.name}.yaml so a deploy with other credentials fails",
            )
        )
    if config.account is not None and config.account != account:
        found.append(Problem("account", f"the credentials are for account {account}, config pins {config.account}"))
    if config.region is not None and config.region != region:
        found.append(
            Problem(
                "region", f"the credentials point at {region}, config pins {config.region}: AWS_REGION={config.region}"
            )
        )
    return found


def notify_problems(config: EnvironmentConfig, sns: Any, alarm_topic_arn: str | None) -> list[Problem]:
    notify = config.alarms.notify
    if not notify.emails and notify.topic_arn is None:
        return [Problem("alarms", "nobody is notified: set alarms.notify.emails and/or alarms.notify.topic_arn")]
    found = []
    if notify.topic_arn is not None:
        try:
            sns.get_topic_attributes(TopicArn=notify.topic_arn)
        except ClientError:
            found.append(Problem("alarms", f"alarms.notify.topic_arn {notify.topic_arn} does not exist"))
    if alarm_topic_arn is not None:  # deployed before: the e-mail subscriptions must be confirmed
        confirmed: set[str] = set()
        pending: set[str] = set()
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=alarm_topic_arn):
            for sub in page["Subscriptions"]:
                (pending if sub["SubscriptionArn"] == "PendingConfirmation" else confirmed).add(sub["Endpoint"])
        for email in notify.emails:
            if email in pending:
                found.append(Problem("alarms", f"{email} has not confirmed its alarm subscription (check the inbox)"))
            elif email not in confirmed:
                found.append(Problem("alarms", f"{email} is not subscribed to {alarm_topic_arn} yet (next deploy)"))
    return found


def asset_repository_problems(ecr: Any, account: str, region: str) -> list[Problem]:
    name = f"cdk-{BOOTSTRAP_QUALIFIER}-container-assets-{account}-{region}"
    try:
        (repository,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise
        return [Problem("bootstrap", f"no {name}: run node_modules/.bin/cdk bootstrap aws://{account}/{region}")]
    if not repository.get("imageScanningConfiguration", {}).get("scanOnPush") and not _registry_scans_on_push(
        ecr, name
    ):
        return [
            Problem(
                "image-scan",
                f"{name} does not scan images on push: aws ecr put-image-scanning-configuration "
                f"--repository-name {name} --image-scanning-configuration scanOnPush=true "
                "(or a registry scanning rule that covers it: aws ecr put-registry-scanning-configuration)",
            )
        ]
    return []


#: Registry scanning frequencies that scan an image when it is pushed (basic: SCAN_ON_PUSH;
#: enhanced: SCAN_ON_PUSH or CONTINUOUS_SCAN, which also scans on push).
_ON_PUSH = frozenset({"SCAN_ON_PUSH", "CONTINUOUS_SCAN"})


def _registry_scans_on_push(ecr: Any, repository: str) -> bool:
    """Whether the registry's scanning configuration scans `repository` on push.

    ECR deprecated the per-repository setting in favour of registry-level rules, and the CDK
    bootstrap template no longer sets it, so an account may scan through a registry rule alone.
    """
    rules = ecr.get_registry_scanning_configuration()["scanningConfiguration"].get("rules", [])
    return any(
        fnmatch.fnmatchcase(repository, scope["filter"])
        for rule in rules
        if rule.get("scanFrequency") in _ON_PUSH
        for scope in rule.get("repositoryFilters", [])
    )


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


def docker_problems(
    architecture: CpuArchitecture, run: Runner = _run, which: Callable[[str], str | None] = shutil.which
) -> list[Problem]:
    """cdk deploy builds the worker image with Docker for the task's architecture."""
    if which("docker") is None:
        return [Problem("docker", "not found: cdk deploy builds the worker image with Docker (Engine + buildx)")]
    server = run(["docker", "version", "--format", "{{.Server.Version}}"])
    if server.returncode != 0:
        reason = (server.stderr.strip().splitlines() or ["no answer"])[0]
        return [Problem("docker", f"the daemon does not answer ({reason}): start it or join the docker group")]
    if architecture is not CpuArchitecture.ARM64 or platform.machine() in ("aarch64", "arm64"):
        return []
    builder = run(["docker", "buildx", "inspect", "--bootstrap"])
    if builder.returncode != 0 or "linux/arm64" not in builder.stdout:
        return [
            Problem("docker", f"cannot build linux/arm64 on this {platform.machine()} host: run `{BINFMT_COMMAND}`")
        ]
    return []


def run_preflight(
    config: EnvironmentConfig, aws: AwsTarget, docker: Callable[[CpuArchitecture], list[Problem]] = docker_problems
) -> tuple[list[Problem], str, str]:
    """Every problem found, and the account and region the credentials point at."""
    region = aws.region_name
    account = aws.client("sts").get_caller_identity()["Account"]
    try:
        alarm_topic = outputs.discover(config.name, aws).optional(outputs.OutputKey.ALARM_TOPIC_ARN)
    except CliError:
        alarm_topic = None  # not deployed yet
    found = [
        *endpoint_problems(config),
        *identity_problems(config, account, region),
        *secret_problems(config, aws.client("secretsmanager")),
        *notify_problems(config, aws.client("sns"), alarm_topic),
        *asset_repository_problems(aws.client("ecr"), account, region),
        *docker(config.worker.architecture),
    ]
    return found, account, region
