"""Lambda entry point: classify the event, act on it, answer the caller.

Deliberately thin: parsing lives in events.py, delivery in publish.py, self-heal in self_heal.py,
so each can be read and tested on its own; this module only wires them to Powertools' decorators.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.signal import Source
from functions.common.telemetry import ENV_DIMENSION, TriggerMetric
from functions.trigger.events import AlarmNotifications, BadHttpRequest, HttpRequest, Scheduled, UnknownEvent, classify
from functions.trigger.observability import logger, metrics, tracer
from functions.trigger.publish import issue_signal
from functions.trigger.self_heal import on_alarm
from functions.trigger.settings import settings


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
@tracer.capture_lambda_handler
def handler(event: Any, context: Any) -> dict[str, Any] | None:
    config = settings()
    # Default dimensions persist across warm invocations; setting them again warns and changes nothing.
    if metrics.default_dimensions.get(ENV_DIMENSION) != config.environment:
        metrics.set_default_dimensions(**{ENV_DIMENSION: config.environment})
    match classify(event):
        case Scheduled(event_id=event_id):
            signal = issue_signal(config.schedule_command, Source.SCHEDULE, None, config)
            logger.info("scheduled event turned into a start signal", extra={"eventbridge_id": event_id})
            return {"id": str(signal.id), "command": signal.command.value}
        case HttpRequest(command=body, request_id=request_id, caller=caller):
            signal = issue_signal(body.command, Source.HTTP, body.stations, config)
            logger.info("HTTP request accepted", extra={"request_id": request_id, "caller": caller})
            return _http_response(202, {"id": str(signal.id), "command": signal.command.value})
        case BadHttpRequest(reason=reason, request_id=request_id):
            metrics.add_metric(name=TriggerMetric.BAD_REQUESTS, unit=MetricUnit.Count, value=1)
            logger.warning("HTTP request rejected", extra={"request_id": request_id, "reason": reason})
            return _http_response(400, {"error": "bad request", "reason": reason})
        case AlarmNotifications(alarms=alarms):
            for alarm in alarms:
                on_alarm(alarm, config)
            return None
        case UnknownEvent(reason=reason):
            metrics.add_metric(name=TriggerMetric.UNKNOWN_EVENTS, unit=MetricUnit.Count, value=1)
            logger.warning("unknown event ignored", extra={"reason": reason})
            return None


def _http_response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
