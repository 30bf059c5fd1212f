"""Sending a start signal to a deployed environment over one of its three entry points.

- `sns`:   publish the full StartSignal to the start topic (what the trigger Lambda does);
- `url`:   POST {"command", "stations"} to the trigger's function URL, SigV4-signed (AWS_IAM auth);
           the Lambda then builds and publishes the signal itself (source "http");
- `redis`: PUBLISH the signal on the worker's pub/sub channel (C2C_SIGNAL_URL=redis mode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from pydantic import ValidationError

from c2c_sync.aws import AwsTarget
from c2c_sync.errors import CliError
from c2c_sync.redis_target import RedisTarget
from functions.common.signal import (
    REDIS_SIGNAL_CHANNEL,
    Command,
    InvalidSignal,
    Source,
    StartSignal,
)
from functions.common.validation import describe_validation_error

_HTTP_TIMEOUT_S = 30


class Via(StrEnum):
    SNS = "sns"
    URL = "url"
    REDIS = "redis"


#: CLI verb -> signal command.
VERBS: dict[str, Command] = {
    "start": Command.START_SYNC,
    "stop": Command.STOP_SYNC,
    "sync-now": Command.SYNC_NOW,
    "reload": Command.RELOAD,
}


@dataclass(frozen=True)
class Sent:
    via: Via
    signal_id: str | None
    command: Command
    stations: list[str] | None
    detail: str


def build_signal(command: Command, stations: list[str] | None) -> StartSignal:
    """A validated CLI signal; a bad station id fails here, before anything is sent."""
    try:
        return StartSignal(command=command, source=Source.CLI, stations=stations or None)
    except ValidationError as exc:
        raise InvalidSignal(describe_validation_error(exc, top_level="body")) from None


def send_sns(signal: StartSignal, topic_arn: str, aws: AwsTarget) -> Sent:
    response = aws.client("sns").publish(TopicArn=topic_arn, Message=signal.to_json())
    return Sent(
        Via.SNS,
        str(signal.id),
        signal.command,
        signal.stations,
        f"published to {topic_arn} (message id {response['MessageId']})",
    )


def signed_function_url_request(url: str, body: bytes, aws: AwsTarget) -> AWSRequest:
    """The POST signed with SigV4 for service `lambda`, as a function URL with AWS_IAM auth requires."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(aws.credentials(), "lambda", aws.region_name).add_auth(request)
    return request


def send_url(command: Command, stations: list[str] | None, function_url: str, aws: AwsTarget) -> Sent:
    body: dict[str, object] = {"command": command.value}
    if stations:
        body["stations"] = stations
    payload = json.dumps(body).encode()
    request = signed_function_url_request(function_url, payload, aws)
    try:
        response = requests.post(
            function_url, data=payload, headers=dict(request.headers.items()), timeout=_HTTP_TIMEOUT_S
        )
    except requests.RequestException as exc:
        raise CliError(f"cannot reach the trigger function URL {function_url}: {exc}") from None
    if response.status_code >= 300:
        raise CliError(f"the trigger function URL answered HTTP {response.status_code}: {response.text.strip()[:300]}")
    return Sent(
        Via.URL,
        _signal_id_from_response(response),
        command,
        stations,
        f"POST {function_url} -> HTTP {response.status_code}",
    )


def _signal_id_from_response(response: requests.Response) -> str | None:
    """The trigger assigns the id when called over HTTP; read it back if the response carries it."""
    try:
        document = response.json()
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    for candidate in (
        document.get("id"),
        document.get("signal_id"),
        (document.get("signal") or {}).get("id") if isinstance(document.get("signal"), dict) else None,
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def send_redis(signal: StartSignal, target: RedisTarget) -> Sent:
    client = target.connect()
    receivers = client.publish(REDIS_SIGNAL_CHANNEL, signal.to_json())
    return Sent(
        Via.REDIS,
        str(signal.id),
        signal.command,
        signal.stations,
        f"PUBLISH {REDIS_SIGNAL_CHANNEL} on {target.describe()} -> {receivers} subscriber(s)",
    )
