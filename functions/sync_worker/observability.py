"""Logs and metrics of the worker: Powertools Logger (JSON) and Metrics (EMF on stdout).

CloudWatch picks EMF lines out of the container's log stream, so metrics need no agent and no
PutMetricData permission. Names and dimensions come from `functions.common.telemetry`, the
contract the monitoring stack alarms on.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from functions.common.state import CycleRecord
from functions.common.telemetry import (
    ENV_DIMENSION,
    METRICS_NAMESPACE,
    PUBACK_LATENCY_SAMPLES,
    SERVICE_DIMENSION,
    WORKER_SERVICE,
    WorkerMetric,
    failed_metric,
)

#: Level from C2C_LOG_LEVEL at import, for code that builds parts without the CLI (bench scripts);
#: the CLI then applies the validated `WorkerSettings.log_level` (`apply_log_level`).
logger = Logger(service=WORKER_SERVICE, level=os.environ.get("C2C_LOG_LEVEL", "INFO"))


def apply_log_level(level: str) -> None:
    logger.setLevel(level)


class WorkerTelemetry:
    """Emits the per-cycle metric set and the heartbeat age, with dimensions {Environment, service}."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.metrics = Metrics(namespace=METRICS_NAMESPACE, service=WORKER_SERVICE)
        self.metrics.set_default_dimensions(**{ENV_DIMENSION: env})
        #: Malformed signals since start (each also goes to CloudWatch as its own EMF document).
        self.signals_rejected = 0

    def cycle(
        self,
        record: CycleRecord,
        *,
        readings_skipped: int,
        connections_opened: int,
        reconnects: Counter[str],
        planned_reconnects: int,
        puback_latencies_ms: Iterable[float],
    ) -> None:
        """One EMF document per cycle. Counters are the deltas since the previous cycle."""
        m = self.metrics
        m.add_metric(WorkerMetric.CYCLE_DURATION, MetricUnit.Milliseconds, record.duration_ms)
        m.add_metric(WorkerMetric.CYCLES_COMPLETED, MetricUnit.Count, 0 if record.aborted else 1)
        m.add_metric(WorkerMetric.STATIONS_SYNCED, MetricUnit.Count, record.stations_synced)
        m.add_metric(WorkerMetric.STATIONS_FAILED, MetricUnit.Count, record.stations_failed)
        m.add_metric(WorkerMetric.STATION_LIST_FAILED, MetricUnit.Count, 1 if record.station_list_failed else 0)
        m.add_metric(WorkerMetric.STATIONS_DEFERRED, MetricUnit.Count, record.stations_deferred)
        for error_class, count in record.errors_by_class.items():
            m.add_metric(failed_metric(error_class), MetricUnit.Count, count)
        m.add_metric(WorkerMetric.READINGS_PUBLISHED, MetricUnit.Count, record.readings_published)
        m.add_metric(WorkerMetric.READINGS_SKIPPED, MetricUnit.Count, readings_skipped)
        m.add_metric(WorkerMetric.MQTT_CONNECTIONS_OPENED, MetricUnit.Count, connections_opened)
        m.add_metric(WorkerMetric.MQTT_RECONNECTS, MetricUnit.Count, sum(reconnects.values()))
        m.add_metric(WorkerMetric.MQTT_PLANNED_RECONNECTS, MetricUnit.Count, planned_reconnects)
        # Raw values, so CloudWatch's statistics (Average, p99, ...) mean what they say; a uniform
        # sample when the cycle had more than one EMF document can carry.
        latencies = list(puback_latencies_ms)
        if len(latencies) > PUBACK_LATENCY_SAMPLES:
            latencies = random.sample(latencies, PUBACK_LATENCY_SAMPLES)
        for latency in latencies:
            m.add_metric(WorkerMetric.PUBACK_LATENCY, MetricUnit.Milliseconds, latency)
        m.flush_metrics()
        if reconnects:
            logger.info("mqtt reconnects by reason", extra={"reconnects": dict(reconnects)})

    def signal_rejected(self) -> None:
        self.signals_rejected += 1
        self._single(WorkerMetric.SIGNALS_REJECTED, MetricUnit.Count, 1)

    def heartbeat_age(self, seconds: float) -> None:
        self._single(WorkerMetric.HEARTBEAT_AGE, MetricUnit.Seconds, seconds)

    def _single(self, name: str, unit: MetricUnit, value: float) -> None:
        # A separate document, so a thread other than the cycle's never flushes the cycle's metrics.
        with single_metric(
            name=name,
            unit=unit,
            value=value,
            namespace=METRICS_NAMESPACE,
            default_dimensions={ENV_DIMENSION: self.env, SERVICE_DIMENSION: WORKER_SERVICE},
        ):
            pass
