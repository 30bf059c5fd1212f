"""`c2c-sync signal ...` against a fake deployed environment (moto server), a local function URL and a real Redis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
import redis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from c2c_sync.aws import AwsTarget
from c2c_sync.environments import CONFIG_DIR_ENV, REPO_ROOT
from c2c_sync.outputs import discover
from c2c_sync.redis_target import from_outputs
from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, parse_signal
from tests.cli.conftest import ENV, REGION, deploy_messaging, deploy_outputs_stack
from tests.support.services import free_port

pytestmark = pytest.mark.integration


def receive_all(sqs, queue_url: str, expected: int = 1, timeout: float = 5.0) -> list[dict]:
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(messages) < expected and time.monotonic() < deadline:
        messages += sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
    return messages


def test_signal_start_via_sns_reaches_the_env_start_queue_as_a_valid_signal(deployed, cli):
    other = deploy_messaging(deployed.moto, "prod")  # another environment's stacks must not be used

    result = cli("signal", "start", "--env", ENV, "--via", "sns", "--stations", "st-1, st-2", *deployed.aws_args())

    assert result.exit_code == 0, result.output
    signal_id = result.stdout.strip()
    sqs = deployed.moto.client("sqs")
    messages = receive_all(sqs, deployed.start_queue_url)
    assert len(messages) == 1
    signal = parse_signal(messages[0]["Body"])  # raw delivery: the body is the signal itself
    assert (str(signal.id), signal.command, signal.source, signal.stations) == (
        signal_id,
        Command.START_SYNC,
        Source.CLI,
        ["st-1", "st-2"],
    )
    assert sqs.receive_message(QueueUrl=other.start_queue_url, WaitTimeSeconds=0).get("Messages") is None


@pytest.mark.parametrize(
    "verb, command", [("stop", Command.STOP_SYNC), ("sync-now", Command.SYNC_NOW), ("reload", Command.RELOAD)]
)
def test_each_verb_sends_its_command(deployed, cli, verb, command):
    result = cli("signal", verb, "--env", ENV, *deployed.aws_args())

    assert result.exit_code == 0, result.output
    [message] = receive_all(deployed.moto.client("sqs"), deployed.start_queue_url)
    signal = parse_signal(message["Body"])
    assert signal.command is command and signal.stations is None


def test_signal_via_url_posts_a_sigv4_signed_body_to_the_function_url(deployed, cli, function_url_server):
    deploy_outputs_stack(deployed.moto, f"C2C-{ENV}-Trigger", TriggerFunctionUrl=function_url_server.url)

    result = cli("signal", "sync-now", "--env", ENV, "--via", "url", "--stations", "a,b", *deployed.aws_args())

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == function_url_server.body["id"]  # the id the trigger assigned
    [request] = function_url_server.requests
    assert json.loads(request["body"]) == {"command": "sync_now", "stations": ["a", "b"]}
    headers = request["headers"]
    authorization = headers["Authorization"]
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=testing/(\d{8})/eu-west-1/lambda/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        authorization,
    )
    assert match, authorization
    signed_headers = match.group(2).split(";")
    assert {"host", "x-amz-date", "content-type", "x-amz-security-token"} <= set(signed_headers)
    # Recompute the signature from what the server received: proves it covers this body and these headers.
    by_lower = {name.lower(): value for name, value in headers.items()}
    replay = AWSRequest(
        method="POST",
        url=f"http://127.0.0.1:{function_url_server.port}{request['path']}",
        data=request["body"],
        headers={name: by_lower[name] for name in signed_headers},
    )
    replay.context["timestamp"] = by_lower["x-amz-date"]
    auth = SigV4Auth(Credentials("testing", "testing", "testing"), "lambda", REGION)
    expected = auth.signature(auth.string_to_sign(replay, auth.canonical_request(replay)), replay)
    assert match.group(3) == expected
    replay.data = request["body"] + b" "
    assert auth.signature(auth.string_to_sign(replay, auth.canonical_request(replay)), replay) != expected


def test_signal_via_url_reports_the_function_url_refusal(deployed, cli, function_url_server):
    deploy_outputs_stack(deployed.moto, f"C2C-{ENV}-Trigger", TriggerFunctionUrl=function_url_server.url)
    function_url_server.status, function_url_server.body = 403, {"Message": "Forbidden"}

    result = cli("signal", "start", "--env", ENV, "--via", "url", *deployed.aws_args())

    assert result.exit_code == 1
    assert "HTTP 403" in result.stderr and "Forbidden" in result.stderr
    assert "Traceback" not in result.output


def test_signal_via_redis_publishes_on_the_worker_channel(redis_server, cli):
    subscriber = redis.Redis.from_url(redis_server.url).pubsub()
    subscriber.subscribe(REDIS_SIGNAL_CHANNEL)
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"

    result = cli("signal", "start", "--env", ENV, "--via", "redis", "--redis-url", redis_server.url)

    assert result.exit_code == 0, result.output
    assert "1 subscriber(s)" in result.stderr
    message = subscriber.get_message(timeout=5)
    signal = parse_signal(message["data"])
    assert (str(signal.id), signal.command, signal.source) == (result.stdout.strip(), Command.START_SYNC, Source.CLI)
    subscriber.close()


def test_redis_target_from_outputs_uses_tls_and_the_auth_token_secret(deployed):
    secret_arn = deployed.moto.client("secretsmanager").create_secret(
        Name="c2c/test/redis-auth", SecretString=json.dumps({"password": "s3cr3t-token"})
    )["ARN"]
    deploy_outputs_stack(
        deployed.moto,
        f"C2C-{ENV}-Cache",
        RedisEndpoint="master.c2c-test.cache.amazonaws.com",
        RedisPort="6380",
        RedisAuthSecretArn=secret_arn,
    )
    aws = AwsTarget(region=REGION, endpoint_url=deployed.moto.url)

    target = from_outputs(discover(ENV, aws), aws)

    assert (target.host, target.port, target.tls, target.password) == (
        "master.c2c-test.cache.amazonaws.com",
        6380,
        True,
        "s3cr3t-token",
    )
    assert "s3cr3t" not in target.describe()


def test_signal_via_redis_from_stack_outputs_reports_an_unreachable_redis(deployed, cli):
    secret_arn = deployed.moto.client("secretsmanager").create_secret(Name="c2c/test/redis-auth", SecretString="token")[
        "ARN"
    ]
    closed_port = free_port()  # nothing listens there
    deploy_outputs_stack(
        deployed.moto,
        f"C2C-{ENV}-Cache",
        RedisEndpoint="127.0.0.1",
        RedisPort=str(closed_port),
        RedisAuthSecretArn=secret_arn,
    )

    result = cli("signal", "start", "--env", ENV, "--via", "redis", *deployed.aws_args())

    assert result.exit_code == 6
    assert result.stderr.startswith(f"error: Redis unreachable at rediss://127.0.0.1:{closed_port}/0")
    assert "Traceback" not in result.output and "token" not in result.output


def test_bad_station_id_is_refused_before_sending(deployed, cli):
    result = cli("signal", "start", "--env", ENV, "--stations", "ok,bad id!", *deployed.aws_args())

    assert result.exit_code == 2
    assert "invalid signal: stations.1" in result.stderr
    assert receive_all(deployed.moto.client("sqs"), deployed.start_queue_url, timeout=1) == []


def test_python_dash_m_c2c_sync_sends_a_signal(deployed, config_dir):
    """The module entry point in its own process, as an operator's shell runs it."""
    completed = subprocess.run(
        [sys.executable, "-m", "c2c_sync", "signal", "reload", "--env", ENV, *deployed.aws_args()],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, CONFIG_DIR_ENV: str(config_dir)},
    )

    assert completed.returncode == 0, completed.stderr
    [message] = receive_all(deployed.moto.client("sqs"), deployed.start_queue_url)
    assert str(parse_signal(message["Body"]).id) == completed.stdout.strip()
