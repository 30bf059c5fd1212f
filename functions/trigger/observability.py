"""The trigger's Powertools Logger, Metrics and Tracer, created once and shared by its modules.

One instance each, so every module logs with the same correlation id (the signal id) and adds its
metrics to the same EMF blob that the handler's `log_metrics` flushes. Namespace and the `service`
dimension come from functions.common.telemetry so the monitoring stack graphs exactly these names.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

from functions.common.telemetry import METRICS_NAMESPACE, TRIGGER_SERVICE

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or TRIGGER_SERVICE

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
