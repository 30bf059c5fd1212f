"""The trigger's Powertools Logger, Metrics and Tracer, created once and shared by its modules.

One instance each, so every module logs with the same correlation id (the signal id) and adds its
metrics to the same EMF blob that the handler's `log_metrics` flushes. Namespace and the `service`
dimension come from functions.common.telemetry so the monitoring stack graphs exactly these names.
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

from functions.common.telemetry import METRICS_NAMESPACE, TRIGGER_SERVICE

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or TRIGGER_SERVICE

# Invocations that send nothing (an OK alarm, a failed publish) have no metrics by design; Powertools
# would print a UserWarning for each of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
