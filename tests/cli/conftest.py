"""A fake deployed environment for the CLI tests: CloudFormation stacks in moto's server.

`C2C-test-Messaging` is created with cloudformation create_stack from a small template holding a
real SNS topic, the SQS start queue subscribed to it, and the DLQ, with the output keys the real
stacks publish. moto's CloudFormation has no AWS::SNS::Subscription resource, so the inline topic
subscription is switched to raw delivery with one SNS call afterwards (as the stack's
`raw_message_delivery=True` does on AWS).
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from c2c_sync.cli import app
from c2c_sync.environments import CONFIG_DIR_ENV, REPO_ROOT
from tests.support.services import MotoServer, free_port

ENV = "test"
REGION = "eu-west-1"

MESSAGING_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "c2c-{env}-start-dlq"}},
        "StartQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": "c2c-{env}-start",
                "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}, "maxReceiveCount": 3},
            },
        },
        "StartTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {
                "TopicName": "c2c-{env}-start",
                "Subscription": [{"Protocol": "sqs", "Endpoint": {"Fn::GetAtt": ["StartQueue", "Arn"]}}],
            },
        },
    },
    "Outputs": {
        "StartTopicArn": {"Value": {"Ref": "StartTopic"}},
        "StartQueueUrl": {"Value": {"Ref": "StartQueue"}},
        "DlqUrl": {"Value": {"Ref": "Dlq"}},
    },
}


def outputs_only_template(**outputs: str) -> str:
    """A stack whose only content is outputs (e.g. the Trigger stack's function URL pointing at a local server)."""
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {}}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


@dataclass
class DeployedEnv:
    moto: MotoServer
    env: str
    topic_arn: str
    start_queue_url: str
    dlq_url: str

    def aws_args(self) -> list[str]:
        return ["--region", REGION, "--endpoint-url", self.moto.url]


def deploy_messaging(moto, env: str) -> DeployedEnv:
    cloudformation = moto.client("cloudformation")
    template = json.dumps(MESSAGING_TEMPLATE).replace("{env}", env)
    cloudformation.create_stack(StackName=f"C2C-{env}-Messaging", TemplateBody=template)
    stack = cloudformation.describe_stacks(StackName=f"C2C-{env}-Messaging")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    sns = moto.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=outputs["StartTopicArn"])["Subscriptions"]:
        sns.set_subscription_attributes(
            SubscriptionArn=subscription["SubscriptionArn"], AttributeName="RawMessageDelivery", AttributeValue="true"
        )
    return DeployedEnv(moto, env, outputs["StartTopicArn"], outputs["StartQueueUrl"], outputs["DlqUrl"])


def deploy_outputs_stack(moto, name: str, **outputs: str) -> None:
    moto.client("cloudformation").create_stack(StackName=name, TemplateBody=outputs_only_template(**outputs))


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    """Known environments `test` and `prod` (valid configs copied from the repository's dev/prod)."""
    directory = tmp_path / "config"
    directory.mkdir()
    shutil.copy(REPO_ROOT / "config" / "dev.yaml", directory / "test.yaml")
    shutil.copy(REPO_ROOT / "config" / "prod.yaml", directory / "prod.yaml")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(directory))
    return directory


@pytest.fixture
def deployed(moto, config_dir) -> DeployedEnv:
    return deploy_messaging(moto, ENV)


@pytest.fixture
def cli(config_dir):
    """Run the real Typer app in-process; stdout and stderr are kept apart."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, list(args), env={"COLUMNS": "160", **(env or {})})

    return run


@dataclass
class RecordingServer:
    """A local HTTP server standing in for the Lambda function URL: records each request, answers as told."""

    port: int = field(default_factory=free_port)
    status: int = 202
    body: dict = field(default_factory=lambda: {"id": "11111111-2222-4333-8444-555555555555", "command": "sync_now"})
    requests: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> RecordingServer:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                recorder.requests.append(
                    {
                        "method": "POST",
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body": self.rfile.read(length),
                    }
                )
                payload = json.dumps(recorder.body).encode()
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def function_url_server():
    server = RecordingServer().start()
    yield server
    server.stop()
