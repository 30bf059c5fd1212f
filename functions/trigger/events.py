"""Recognise the three event shapes the trigger accepts and turn each into what it asks for.

Parsing uses Powertools' parser models and envelopes (EventBridgeModel, LambdaFunctionUrlModel,
SnsEnvelope) so the
envelopes are AWS's documented shapes, validated, rather than hand-walked dicts. Everything else is
`UnknownEvent`: the handler logs and counts it, and never raises on it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser import envelopes, parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel, LambdaFunctionUrlModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from functions.common.signal import Command, StationId
from functions.common.validation import describe_validation_error


class ScheduledEventModel(EventBridgeModel):
    """The event an EventBridge schedule rule delivers (source aws.events, detail-type Scheduled Event)."""

    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")


class HttpCommand(BaseModel):
    """Body of a function-URL POST: `{"command": ..., "stations": [...]}`; anything else is a 400."""

    model_config = ConfigDict(extra="forbid")

    command: Command
    stations: list[StationId] | None = Field(default=None, min_length=1, max_length=10_000)


class AlarmStateChange(BaseModel):
    """The JSON CloudWatch puts in an SNS notification's Message when an alarm changes state."""

    AlarmName: str
    NewStateValue: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    OldStateValue: str | None = None
    NewStateReason: str | None = None
    StateChangeTime: str | None = None
    AlarmArn: str | None = None


@dataclass(frozen=True)
class Scheduled:
    event_id: str


@dataclass(frozen=True)
class HttpRequest:
    command: HttpCommand
    request_id: str
    caller: str | None  # the IAM principal that signed the call (function URL auth AWS_IAM)


@dataclass(frozen=True)
class BadHttpRequest:
    """A function-URL call we must answer with 400; `reason` names what is wrong."""

    reason: str
    request_id: str


@dataclass(frozen=True)
class AlarmNotifications:
    alarms: list[AlarmStateChange]


@dataclass(frozen=True)
class UnknownEvent:
    reason: str


TriggerEvent = Scheduled | HttpRequest | BadHttpRequest | AlarmNotifications | UnknownEvent


def classify(event: Any) -> TriggerEvent:
    """Which of the accepted shapes `event` is, parsed; `UnknownEvent` when it is none of them."""
    if not isinstance(event, dict):
        return UnknownEvent(f"event is a {type(event).__name__}, not a JSON object")
    if event.get("detail-type") is not None:
        return _scheduled(event)
    if isinstance(event.get("requestContext"), dict) and "http" in event["requestContext"]:
        return _http(event)
    if isinstance(event.get("Records"), list):
        return _alarms(event)
    return UnknownEvent(f"unrecognised event with keys {sorted(event)[:10]}")


def _scheduled(event: dict[str, Any]) -> TriggerEvent:
    try:
        parsed = parse(event=event, model=ScheduledEventModel)
    except ValidationError as exc:
        return UnknownEvent(
            f"EventBridge event that is not a scheduled event: {describe_validation_error(exc, top_level='body')}"
        )
    return Scheduled(event_id=parsed.id)


def _http(event: dict[str, Any]) -> TriggerEvent:
    # A function URL accepts any method, so GET, PUT, etc. arrive here too and must get a 400.
    method = str(event["requestContext"]["http"].get("method", "")).upper()
    if method != "POST":
        return BadHttpRequest(
            f"method: {method or 'missing'} is not allowed, use POST", str(event["requestContext"].get("requestId", ""))
        )
    try:
        request = parse(event=event, model=LambdaFunctionUrlModel)
    except ValidationError as exc:
        return UnknownEvent(f"malformed function URL event: {describe_validation_error(exc, top_level='body')}")
    request_id = request.requestContext.requestId
    authorizer = request.requestContext.authorizer
    caller = authorizer.iam.userArn if authorizer and authorizer.iam else None
    try:
        body = _decode_body(request.body, bool(request.isBase64Encoded))
        return HttpRequest(HttpCommand.model_validate(body), request_id, caller)
    except _BadBody as exc:
        return BadHttpRequest(str(exc), request_id)
    except ValidationError as exc:
        return BadHttpRequest(describe_validation_error(exc, top_level="body"), request_id)


class _BadBody(ValueError):
    pass


def _decode_body(raw: Any, is_base64: bool) -> Any:
    if raw is None or raw == "":
        raise _BadBody('body: required, a JSON object like {"command": "sync_now"}')
    text = raw
    if is_base64:
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _BadBody("body: isBase64Encoded is true but the body is not base64 of UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadBody(f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _alarms(event: dict[str, Any]) -> TriggerEvent:
    try:
        alarms = parse(event=event, model=AlarmStateChange, envelope=envelopes.SnsEnvelope)
    except ValidationError as exc:
        problems = describe_validation_error(exc, top_level="body")
        return UnknownEvent(f"records that are not SNS CloudWatch alarm notifications: {problems}")
    # The SNS envelope parses each record's Message; a record without one parses to None.
    records = alarms if isinstance(alarms, list) else [alarms]
    return AlarmNotifications([a for a in records if isinstance(a, AlarmStateChange)])
