"""Run metrics in CloudWatch's embedded metric format (EMF): counts only, never values.

A run's counts are taken from its report (the one place that adds them up), so a metric
never disagrees with the report an operator opens next to it. Each call writes one EMF
line to stdout (``emf_sink``); on Lambda, CloudWatch Logs turns it into metrics without an API call.

Dimensions stay bounded: ``destination`` and ``data_template`` are table names of the
configuration document, ``Action`` is a name from the workflow-action catalogue. Each
metric is also published under ``service`` alone, the series the alarms watch.

The metric set is built per call (not Powertools' process-wide ``Metrics`` store): the
local runner runs several handlers at once in one process, and one run's report must
not flush another run's counts under its own dimensions.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

DEFAULT_NAMESPACE = "tiktok-destination"
DEFAULT_SERVICE = "tiktok-destination"

#: Per run, dimensions ``destination`` + ``data_template`` (and ``service`` alone).
RUN_METRICS = (
    "RowsReceived",
    "RowsRejected",
    "MembersAdded",
    "MembersRemoved",
    "EventsSent",
    "TikTokCalls",
    "TikTokRetries",
    "TikTokRateLimited",
)
#: One per failed run, dimension ``Action`` (and ``service`` alone).
WORKFLOW_ACTION_METRIC = "WorkflowAction"
#: Every metric the code emits: the dashboard and alarms in template.yaml name these.
METRIC_NAMES = (*RUN_METRICS, WORKFLOW_ACTION_METRIC)
RUN_DIMENSIONS = ("destination", "data_template")
ACTION_DIMENSION = "Action"


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


#: Where EMF lines go: stdout on Lambda (CloudWatch Logs reads them there). The local
#: runner points it at its handler log, so that metrics never mix into a CLI's
#: ``--json`` output and no thread ever has to swap ``sys.stdout``.
emf_sink: Callable[[str], None] = _stdout


def _flush(metrics: Metrics) -> None:
    if is_metrics_disabled():
        return
    emf_sink(json.dumps(metrics.serialize_metric_set(), separators=(",", ":")))
    metrics.clear_metrics()


def _new_metrics() -> Metrics:
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
    return Metrics(provider=AmazonCloudWatchEMFProvider(namespace=namespace, service=service))


def run_counts(report: Mapping[str, Any]) -> dict[str, int]:
    """The run metrics a report supports: a failed run's report has no member or event
    counts, and a metric it cannot back is left out rather than sent as zero."""
    rows = report.get("rows") or {}
    members = report.get("members") or {}
    events = report.get("events") or {}
    api = report.get("api") or {}
    candidates = {
        "RowsReceived": rows.get("received"),
        "RowsRejected": rows.get("rejected"),
        "MembersAdded": members.get("added"),
        "MembersRemoved": members.get("removed"),
        "EventsSent": events.get("sent"),
        "TikTokCalls": api.get("calls"),
        "TikTokRetries": api.get("retries"),
        "TikTokRateLimited": api.get("rate_limited"),
    }
    return {name: int(value) for name, value in candidates.items() if value is not None}


def emit_run_metrics(report: Mapping[str, Any]) -> None:
    """One EMF line with the run's counts, per destination and data template."""
    counts = run_counts(report)
    if not counts:
        return
    metrics = _new_metrics()
    metrics.add_dimensions(**{name: str(report[name]) for name in RUN_DIMENSIONS})
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    _flush(metrics)


def emit_workflow_action(action: str) -> None:
    """One EMF line counting a raised workflow action by its name."""
    metrics = _new_metrics()
    metrics.add_dimensions(**{ACTION_DIMENSION: action})
    metrics.add_metric(name=WORKFLOW_ACTION_METRIC, unit=MetricUnit.Count, value=1)
    _flush(metrics)


__all__ = [
    "ACTION_DIMENSION",
    "METRIC_NAMES",
    "RUN_DIMENSIONS",
    "RUN_METRICS",
    "WORKFLOW_ACTION_METRIC",
    "emit_run_metrics",
    "emit_workflow_action",
    "run_counts",
]
