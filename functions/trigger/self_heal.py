"""Self-heal: when the heartbeat-stale alarm fires, ask ECS for a fresh deployment of the worker.

A worker that stopped heartbeating may be wedged without failing its health check; a forced
deployment replaces the task. The task role's IAM allows ecs:UpdateService on that one service only.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from functions.common.signal import Command, Source
from functions.common.telemetry import TriggerMetric
from functions.trigger import aws
from functions.trigger.events import AlarmStateChange
from functions.trigger.observability import logger, metrics, tracer
from functions.trigger.publish import issue_signal
from functions.trigger.settings import TriggerSettings


def on_alarm(alarm: AlarmStateChange, config: TriggerSettings) -> None:
    """Heartbeat alarm in ALARM: send start_sync and redeploy the worker; any other alarm/state: log only."""
    context = {"alarm": alarm.AlarmName, "state": alarm.NewStateValue, "previous_state": alarm.OldStateValue}
    if alarm.AlarmName != config.heartbeat_alarm_name or alarm.NewStateValue != "ALARM":
        logger.info("alarm notification needs no action", extra=context)
        return
    logger.warning("heartbeat alarm: the worker is silent, self-healing", extra=context)
    target = config.self_heal_target
    try:
        issue_signal(Command.START_SYNC, Source.ALARM, None, config)
    finally:
        # Redeploy even if the signal could not be sent: a wedged worker would not act on it anyway.
        if target is None:
            logger.error("self-heal not configured: ECS_CLUSTER_NAME/ECS_SERVICE_NAME unset", extra=context)
        else:
            force_new_deployment(*target)


@tracer.capture_method
def force_new_deployment(cluster: str, service: str) -> str:
    """Start a new deployment of `service`; returns the id of the deployment ECS now rolls out."""
    response = aws.ecs().update_service(cluster=cluster, service=service, forceNewDeployment=True)
    deployments = response["service"].get("deployments") or [{}]
    deployment_id = deployments[0].get("id", "")
    metrics.add_metric(name=TriggerMetric.SELF_HEAL_DEPLOYMENTS, unit=MetricUnit.Count, value=1)
    logger.warning(
        "self-heal: forced a new deployment of the worker service",
        extra={"cluster": cluster, "service": service, "deployment_id": deployment_id},
    )
    return deployment_id
