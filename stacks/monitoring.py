"""Monitoring: the dashboard and the alarms of one environment.

Metric names and dimensions are imported from functions.common.telemetry (the worker's side of
the contract), so renaming a metric there moves the alarm with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Unpack

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.common.state import HEARTBEAT_STALE_AFTER_S
from functions.common.telemetry import (
    ENV_DIMENSION,
    METRICS_NAMESPACE,
    SERVICE_DIMENSION,
    WORKER_SERVICE,
    WorkerMetric,
)
from infra.stack_options import StackOptions


@dataclass(frozen=True)
class AlarmSettings:
    failure_ratio: float
    failure_ratio_period_minutes: int
    lambda_errors: int
    running_tasks_periods: int
    desired_count: int
    emails: tuple[str, ...] = ()
    #: An existing SNS topic every alarm also publishes to (alarms.notify.topic_arn).
    notify_topic_arn: str | None = None


def worker_metric(env_name: str, name: str, statistic: str, period: cdk.Duration) -> cw.Metric:
    return cw.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={ENV_DIMENSION: env_name, SERVICE_DIMENSION: WORKER_SERVICE},
        statistic=statistic,
        period=period,
    )


class MonitoringStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        settings: AlarmSettings,
        key: kms.IKey,
        dead_letter_queue: sqs.IQueue,
        schedule_dead_letter_queue: sqs.IQueue,
        trigger_failure_queue: sqs.IQueue,
        trigger_function: lambda_.IFunction,
        cluster: ecs.ICluster,
        service: ecs.BaseService,
        self_heal_topic: sns.ITopic,
        heartbeat_alarm_name: str,
        dashboard: bool = True,
        **options: Unpack[StackOptions],
    ) -> None:
        super().__init__(scope, construct_id, **options)
        minute = cdk.Duration.minutes(1)

        self.alarm_topic = sns.Topic(
            self, "AlarmTopic", display_name=f"c2c-sync {env_name} alarms", master_key=key, enforce_ssl=True
        )
        for email in settings.emails:
            self.alarm_topic.add_subscription(subs.EmailSubscription(email))
        notify = [cw_actions.SnsAction(self.alarm_topic)]
        if settings.notify_topic_arn:
            notify.append(
                cw_actions.SnsAction(sns.Topic.from_topic_arn(self, "NotifyTopic", settings.notify_topic_arn))
            )

        def metric(name: str, statistic: str = "Sum", period: cdk.Duration = minute) -> cw.Metric:
            return worker_metric(env_name, name, statistic, period)

        def not_empty(queue: sqs.IQueue, alarm_id: str, description: str) -> tuple[cw.Metric, cw.Alarm]:
            """A dead-letter queue's depth and the alarm on its first message (alarm name C2C-<env>-<alarm_id>)."""
            depth = queue.metric_approximate_number_of_messages_visible(period=minute, statistic="Maximum")
            return depth, depth.create_alarm(
                self,
                alarm_id,
                alarm_name=f"C2C-{env_name}-{alarm_id}",
                alarm_description=description,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )

        # --- alarms -------------------------------------------------------------------------
        dlq_depth, self.dlq_alarm = not_empty(
            dead_letter_queue,
            "DlqNotEmpty",
            "A start signal was received by the worker 5 times and never deleted (rejected as malformed, "
            "or the worker stopped before finishing it): inspect the start DLQ",
        )
        schedule_dlq_depth, self.schedule_dlq_alarm = not_empty(
            schedule_dead_letter_queue,
            "ScheduleDlqNotEmpty",
            "EventBridge could not invoke the trigger Lambda for a schedule tick after its retries "
            "(throttled, permission missing, function gone); exceptions inside the function go to TriggerAsyncFailures",
        )
        trigger_failure_depth, self.trigger_failure_alarm = not_empty(
            trigger_failure_queue,
            "TriggerAsyncFailures",
            "The trigger Lambda raised on an asynchronous invocation (schedule tick or self-heal alarm) on "
            "every retry, or the event waited longer than its maximum age: no start signal was sent for it",
        )

        heartbeat_age = metric(WorkerMetric.HEARTBEAT_AGE, "Maximum")
        self.heartbeat_alarm = heartbeat_age.create_alarm(
            self,
            "HeartbeatStale",
            alarm_name=heartbeat_alarm_name,
            alarm_description=(
                f"Worker heartbeat older than {HEARTBEAT_STALE_AFTER_S}s or missing: the trigger "
                "sends a start signal and forces a new deployment"
            ),
            threshold=HEARTBEAT_STALE_AFTER_S,
            evaluation_periods=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            # A dead worker emits nothing: silence is the failure this alarm exists for.
            treat_missing_data=cw.TreatMissingData.BREACHING,
        )
        self.heartbeat_alarm.add_alarm_action(cw_actions.SnsAction(self_heal_topic))

        ratio_period = cdk.Duration.minutes(settings.failure_ratio_period_minutes)
        # A cycle that could not read the station list synced none of them: the ratio is 1 then, not 0/0.
        failure_ratio = cw.MathExpression(
            expression="IF(listfailed > 0, 1, IF((synced + failed) > 0, failed / (synced + failed), 0))",
            using_metrics={
                "synced": metric(WorkerMetric.STATIONS_SYNCED, period=ratio_period),
                "failed": metric(WorkerMetric.STATIONS_FAILED, period=ratio_period),
                "listfailed": metric(WorkerMetric.STATION_LIST_FAILED, period=ratio_period),
            },
            label="Station failure ratio",
            period=ratio_period,
        )
        self.failure_ratio_alarm = failure_ratio.create_alarm(
            self,
            "FailureRatio",
            alarm_name=f"C2C-{env_name}-FailureRatio",
            alarm_description=f"More than {settings.failure_ratio:.0%} of stations failed to sync",
            threshold=settings.failure_ratio,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

        # AWS/ECS service metrics are free and reported only while a task of the service is
        # RUNNING: no data at all means no worker task (Container Insights' RunningTaskCount, a
        # paid metric, is not needed for that).
        running_tasks = cw.Metric(
            namespace="AWS/ECS",
            metric_name="CPUUtilization",
            dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": service.service_name},
            statistic="SampleCount",
            period=minute,
        )
        self.running_tasks_alarm: cw.Alarm | None = None
        if settings.desired_count > 0:
            self.running_tasks_alarm = running_tasks.create_alarm(
                self,
                "WorkerNotRunning",
                alarm_name=f"C2C-{env_name}-WorkerNotRunning",
                alarm_description=(
                    f"No worker task has been running for {settings.running_tasks_periods} minute(s) "
                    "(the service reports no AWS/ECS metrics): check the service's events and stopped tasks"
                ),
                threshold=1,
                evaluation_periods=settings.running_tasks_periods,
                comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.BREACHING,
            )

        lambda_errors = trigger_function.metric_errors(period=cdk.Duration.minutes(5), statistic="Sum")
        self.lambda_errors_alarm = lambda_errors.create_alarm(
            self,
            "TriggerErrors",
            alarm_name=f"C2C-{env_name}-TriggerErrors",
            alarm_description="The trigger Lambda failed",
            threshold=settings.lambda_errors,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

        self.alarms = [
            a
            for a in (
                self.dlq_alarm,
                self.schedule_dlq_alarm,
                self.trigger_failure_alarm,
                self.heartbeat_alarm,
                self.failure_ratio_alarm,
                self.running_tasks_alarm,
                self.lambda_errors_alarm,
            )
            if a
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(*notify)
            alarm.add_ok_action(*notify)

        # --- dashboard (optional: $3/month; the alarms above never depend on it) ----------
        self.dashboard: cw.Dashboard | None = None
        if dashboard:
            five = cdk.Duration.minutes(5)
            self.dashboard = cw.Dashboard(
                self,
                "Dashboard",
                dashboard_name=f"C2C-{env_name}",
                default_interval=cdk.Duration.hours(6),
            )
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title="Cycle duration (ms)",
                    width=8,
                    left=[
                        metric(WorkerMetric.CYCLE_DURATION, "Average", five),
                        metric(WorkerMetric.CYCLE_DURATION, "p99", five),
                    ],
                ),
                cw.GraphWidget(
                    title="Stations synced / failed",
                    width=8,
                    left=[
                        metric(WorkerMetric.STATIONS_SYNCED, period=five),
                        metric(WorkerMetric.STATIONS_FAILED, period=five),
                    ],
                ),
                cw.GraphWidget(
                    title="Readings published", width=8, left=[metric(WorkerMetric.READINGS_PUBLISHED, period=five)]
                ),
            )
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title="MQTT reconnects",
                    width=8,
                    left=[
                        metric(WorkerMetric.MQTT_RECONNECTS, period=five),
                        metric(WorkerMetric.MQTT_PLANNED_RECONNECTS, period=five),
                    ],
                ),
                cw.GraphWidget(
                    title="Heartbeat age (s)",
                    width=8,
                    left=[heartbeat_age],
                    left_annotations=[cw.HorizontalAnnotation(value=HEARTBEAT_STALE_AFTER_S, label="stale")],
                ),
                cw.GraphWidget(
                    title="Dead-letter queues", width=8, left=[dlq_depth, schedule_dlq_depth, trigger_failure_depth]
                ),
            )
            self.dashboard.add_widgets(
                cw.GraphWidget(
                    title="Trigger Lambda errors / invocations",
                    width=8,
                    left=[lambda_errors, trigger_function.metric_invocations(period=five)],
                ),
                cw.GraphWidget(title="Worker running tasks", width=8, left=[running_tasks]),
                cw.AlarmStatusWidget(title="Alarms", width=8, alarms=self.alarms),
            )

        cdk.CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.alarm_topic.topic_arn,
            description="SNS topic every alarm publishes to (alarms.notify.emails subscribe here)",
        )
        if self.dashboard is not None:
            cdk.CfnOutput(
                self,
                "DashboardName",
                value=self.dashboard.dashboard_name,
                description="CloudWatch dashboard of this environment",
            )
