"""What the deployed system looks like, taken from the CDK code itself rather than retyped:
the messaging stack's synthesized template, the worker's container environment and the command
a scheduled event becomes.

Run as a child process (`python -m c2c_sync.demo.blueprint --config-env dev --env demo-ab12cd`,
JSON on stdout) because importing aws-cdk-lib starts a jsii/Node kernel: the demo synthesizes
while its services start, and its own process stays free of Node.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from c2c_sync.demo.services import REPO_ROOT


@dataclass(frozen=True)
class Blueprint:
    #: env name the resources, Redis keys and MQTT topics of this run are named after
    env: str
    #: the config/<name>.yaml the values come from
    config_env: str
    #: CloudFormation template of the Messaging stack (`C2C-<env>-Messaging`)
    messaging_template: dict[str, Any]
    #: the worker's plain C2C_* variables as the sync-service stack sets them
    worker_environment: dict[str, str]
    #: SCHEDULE_COMMAND of the trigger Lambda (sync_now in per-signal mode)
    schedule_command: str
    worker_mode: str


def build(config_env: str, env: str) -> Blueprint:
    """Synthesize in this process (slow: starts Node); the demo calls `start()`/`collect()` instead."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk

    from config import load_environment
    from config.schema import WorkerMode
    from functions.common.signal import Command
    from infra.naming import stack_name
    from infra.worker_env import worker_environment
    from stacks.messaging import MessagingStack

    config = load_environment(config_env).model_copy(update={"name": env})
    app = cdk.App(analytics_reporting=False)
    name = stack_name(env, "Messaging")
    MessagingStack(
        app, name, env_name=env, max_cycle_s=config.worker.max_cycle_s, removal_policy=cdk.RemovalPolicy.DESTROY
    )
    template = app.synth().get_stack_by_name(name).template
    # The same rule as infra.environment.add_environment's TriggerStack(schedule_command=...).
    command = Command.SYNC_NOW if config.worker.mode is WorkerMode.PER_SIGNAL else Command.START_SYNC
    return Blueprint(
        env=env,
        config_env=config_env,
        messaging_template=template,
        worker_environment=worker_environment(config),
        schedule_command=command.value,
        worker_mode=config.worker.mode.value,
    )


def start(config_env: str, env: str, log_path: os.PathLike[str]) -> subprocess.Popen:
    """Start the synthesis in a child process; `collect()` waits for it."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "c2c_sync.demo.blueprint", "--config-env", config_env, "--env", env],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )


def collect(proc: subprocess.Popen, log_path: os.PathLike[str], timeout: float = 90.0) -> Blueprint:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        with open(log_path, errors="replace") as log:
            tail = log.read()[-3000:]
        raise RuntimeError(f"synthesizing the messaging stack failed (exit {proc.returncode}):\n{tail}")
    return Blueprint(**json.loads(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m c2c_sync.demo.blueprint", description=__doc__)
    parser.add_argument("--config-env", default="dev")
    parser.add_argument("--env", required=True)
    args = parser.parse_args(argv)
    blueprint = build(args.config_env, args.env)
    json.dump(blueprint.__dict__, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
