"""Stack-output discovery: find an output by key across all stacks of one environment.

The CLI does not hardcode which stack exports which output (`StartTopicArn` may move from the
Messaging stack to another one); it reads every `C2C-<env>-*` stack and indexes their outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from c2c_sync.aws import AwsTarget
from c2c_sync.environments import stack_prefix
from c2c_sync.errors import CliError, ExitCode


class OutputKey:
    """The CfnOutput keys the stacks publish."""

    START_TOPIC_ARN = "StartTopicArn"
    START_QUEUE_URL = "StartQueueUrl"
    DLQ_URL = "DlqUrl"
    TRIGGER_FUNCTION_URL = "TriggerFunctionUrl"
    CLUSTER_NAME = "ClusterName"
    SERVICE_NAME = "ServiceName"
    REDIS_ENDPOINT = "RedisEndpoint"
    REDIS_PORT = "RedisPort"
    REDIS_AUTH_SECRET_ARN = "RedisAuthSecretArn"
    DASHBOARD_NAME = "DashboardName"
    ALARM_TOPIC_ARN = "AlarmTopicArn"


# A stack in one of these states has no usable outputs (it is gone or never finished creating).
_UNUSABLE_STATUSES = {
    "DELETE_COMPLETE",
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "CREATE_IN_PROGRESS",
    "DELETE_IN_PROGRESS",
}


@dataclass(frozen=True)
class StackOutputs:
    env: str
    region: str
    #: output key -> (value, stack name)
    values: dict[str, tuple[str, str]]
    stacks: tuple[str, ...]

    def get(self, key: str) -> str:
        try:
            return self.values[key][0]
        except KeyError:
            raise CliError(
                f"stack output {key} not found in the deployed stacks of {self.env!r} "
                f"({', '.join(self.stacks)}) in {self.region}: deploy the stack that defines it "
                f"(make deploy ENV={self.env})",
                ExitCode.NOT_DEPLOYED,
            ) from None

    def optional(self, key: str) -> str | None:
        entry = self.values.get(key)
        return entry[0] if entry else None


def discover(env: str, aws: AwsTarget) -> StackOutputs:
    """Read the outputs of every usable `C2C-<env>-*` stack; fail if the environment has none."""
    cloudformation = aws.client("cloudformation")
    prefix = stack_prefix(env)
    values: dict[str, tuple[str, str]] = {}
    stacks: list[str] = []
    for page in cloudformation.get_paginator("describe_stacks").paginate():
        for stack in page["Stacks"]:
            name = stack["StackName"]
            if not name.startswith(prefix) or stack["StackStatus"] in _UNUSABLE_STATUSES:
                continue
            stacks.append(name)
            for output in stack.get("Outputs", []):
                values[output["OutputKey"]] = (output["OutputValue"], name)
    if not stacks:
        raise CliError(
            f"stack not deployed: no stack named {prefix}* in {aws.region_name} (make deploy ENV={env})",
            ExitCode.NOT_DEPLOYED,
        )
    return StackOutputs(env=env, region=aws.region_name, values=values, stacks=tuple(sorted(stacks)))
