"""Metric names and dimensions the worker emits and the monitoring stack graphs and alarms on.

Defined once so a renamed metric cannot silently leave an alarm watching nothing.
"""

from __future__ import annotations

METRICS_NAMESPACE = "C2CSync"
#: Dimension every worker metric carries; its value is the environment name (dev, prod, ...).
ENV_DIMENSION = "Environment"
#: Dimension Powertools Metrics adds to every metric: the component's `service` name below.
SERVICE_DIMENSION = "service"
#: Powertools `service` name of each component.
WORKER_SERVICE = "sync-worker"
TRIGGER_SERVICE = "sync-trigger"


class WorkerMetric:
    """Per-cycle metrics of the sync worker (EMF)."""

    CYCLE_DURATION = "CycleDuration"  # Milliseconds
    CYCLES_COMPLETED = "CyclesCompleted"  # Count
    STATIONS_SYNCED = "StationsSynced"  # Count
    STATIONS_FAILED = "StationsFailed"  # Count (also per error class, see `failed_metric`)
    STATION_LIST_FAILED = "StationListFailed"  # Count: cycles that could not read the station list
    STATIONS_DEFERRED = "StationsDeferred"  # Count: not called, the vendor's budget or throttling left no room
    READINGS_PUBLISHED = "ReadingsPublished"  # Count
    READINGS_SKIPPED = "ReadingsSkipped"  # Count: permanent errors on single readings
    MQTT_CONNECTIONS_OPENED = "MqttConnectionsOpened"  # Count
    MQTT_RECONNECTS = "MqttReconnects"  # Count (fault reconnects)
    MQTT_PLANNED_RECONNECTS = "MqttPlannedReconnects"  # Count (token renewal)
    PUBACK_LATENCY = "PubackLatency"  # Milliseconds: raw samples (at most PUBACK_LATENCY_SAMPLES per cycle)
    HEARTBEAT_AGE = "HeartbeatAge"  # Seconds, emitted by the worker each heartbeat
    SIGNALS_REJECTED = "SignalsRejected"  # Count


#: PUBACK latencies sent per cycle, drawn uniformly from all of the cycle's: EMF takes at most 100
#: values per metric in one document (and Powertools flushes at the 100th, splitting the cycle's).
PUBACK_LATENCY_SAMPLES = 99


def failed_metric(error_class: str) -> str:
    """Metric name for stations failed with one error class (transient, throttled, permanent, auth)."""
    return f"StationsFailed_{error_class}"


class TriggerMetric:
    """Metrics of the trigger Lambda."""

    SIGNALS_SENT = "SignalsSent"
    UNKNOWN_EVENTS = "UnknownEvents"
    BAD_REQUESTS = "BadRequests"
    SELF_HEAL_DEPLOYMENTS = "SelfHealDeployments"
