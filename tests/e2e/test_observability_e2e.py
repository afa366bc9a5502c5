"""Runs on the local default emit EMF metrics and JSON logs an on-call engineer can use.

The local runner writes every handler's stdout to its log stream (``handler_logs``), as
Lambda writes it to CloudWatch Logs: the EMF lines and the Powertools JSON lines are read
from there.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_csv
from tiktok_destination.adapters.metrics import METRIC_NAMES
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination

pytestmark = pytest.mark.e2e

NAMESPACE = "tiktok-destination"  # POWERTOOLS_METRICS_NAMESPACE on the local default
PEOPLE = [
    ("Ann.Lee@Example.com", "+14155550171"),
    ("bo.chen@example.org", "+14155550172"),
    ("cy.dunn@example.net", "+14155550173"),
]
# Two of three rows unusable (above the test config's reject threshold): InputRejected.
BROKEN = [
    ("not-an-email", "+1 415 555 01"),
    ("also@bad", "555-01"),
    ("dee@example.com", "+14155550174"),
]


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def emf(text: str) -> list[dict[str, Any]]:
    return [doc for doc in json_lines(text) if "_aws" in doc]


def metric_names(doc: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def dimension_sets(doc: dict[str, Any]) -> list[list[str]]:
    return [sorted(s) for d in doc["_aws"]["CloudWatchMetrics"] for s in d["Dimensions"]]


def run_lines(docs: list[dict[str, Any]], data_template: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("data_template") == data_template]


def test_a_run_emits_emf_metrics_per_destination_and_template(
    local: LocalDestination,
    emulator: TikTokEmulator,
    handler_logs: io.StringIO,
    tmp_path: Path,
) -> None:
    audience = write_csv(tmp_path / "vip.csv", "Email,PHONE", [f"{e},{p}" for e, p in PEOPLE])
    # One rate-limit answer: retried in-process, counted as a retry and as rate-limited.
    emulator.fail_next("segment/mapping/", code=40100)
    result = local.run_file(audience, "acme_audiences", "vip")
    assert result.succeeded, result.cause

    docs = emf(handler_logs.getvalue())
    assert docs, "no EMF line in the handlers' output"
    [line] = run_lines(docs, "vip")
    assert all(d["Namespace"] == NAMESPACE for d in line["_aws"]["CloudWatchMetrics"])
    # Per destination and template, and once more under the service alone for the alarms.
    assert dimension_sets(line) == [["service"], ["data_template", "destination"]]
    assert (line["destination"], line["service"]) == ("acme_audiences", "tiktok-destination")
    assert metric_names(line) == {
        "RowsReceived",
        "RowsRejected",
        "MembersAdded",
        "MembersRemoved",
        "TikTokCalls",
        "TikTokRetries",
        "TikTokRateLimited",
    }
    assert line["RowsReceived"] == [3.0]
    assert line["RowsRejected"] == [0.0]
    assert line["MembersAdded"] == [6.0]  # three emails and three phones
    assert line["MembersRemoved"] == [0.0]
    assert line["TikTokRateLimited"] == [1.0]
    assert line["TikTokRetries"] == [1.0]
    report = result.report
    assert report is not None
    assert line["TikTokCalls"] == [float(report["api"]["calls"])]
    assert report["api"]["rate_limited"] == 1
    assert set(metric_names(line)) <= set(METRIC_NAMES)


def test_a_failed_run_counts_its_workflow_action_and_rows(
    local: LocalDestination, handler_logs: io.StringIO, tmp_path: Path
) -> None:
    broken = write_csv(tmp_path / "broken.csv", "Email,PHONE", [f"{e},{p}" for e, p in BROKEN])
    result = local.run_file(broken, "acme_audiences", "vip")
    assert result.error == "InputRejected", result.cause

    docs = emf(handler_logs.getvalue())
    actions = [d for d in docs if "WorkflowAction" in d]
    assert len(actions) == 1
    [action] = actions
    assert dimension_sets(action) == [["service"], ["Action"]]
    assert action["WorkflowAction"] == [1.0]
    assert result.report is not None
    assert action["Action"] == result.report["workflow_action"]["action"]
    # The failed run's report has rows and calls but no members: none are invented.
    [line] = run_lines(docs, "vip")
    assert line["RowsReceived"] == [3.0]
    assert line["RowsRejected"] == [2.0]
    assert not {"MembersAdded", "MembersRemoved", "EventsSent"} & metric_names(line)


def test_an_events_run_counts_events_sent(
    local: LocalDestination, handler_logs: io.StringIO, tmp_path: Path
) -> None:
    when = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = write_csv(
        tmp_path / "orders.csv",
        "event,event_id,email,timestamp",
        [f"Purchase,ord-{i},{e},{when}" for i, (e, _) in enumerate(PEOPLE)],
    )
    result = local.run_file(path, "acme_offline", "purchases", {"test_event_code": "TEST1"})
    assert result.succeeded, result.cause
    [line] = run_lines(emf(handler_logs.getvalue()), "purchases")
    assert line["destination"] == "acme_offline"
    assert line["EventsSent"] == [3.0]
    assert line["RowsReceived"] == [3.0]
    assert not {"MembersAdded", "MembersRemoved"} & metric_names(line)


def test_metrics_and_logs_carry_no_personal_data(
    local: LocalDestination, handler_logs: io.StringIO, tmp_path: Path
) -> None:
    audience = write_csv(tmp_path / "vip.csv", "Email,PHONE", [f"{e},{p}" for e, p in PEOPLE])
    broken = write_csv(tmp_path / "broken.csv", "Email,PHONE", [f"{e},{p}" for e, p in BROKEN])
    assert local.run_file(audience, "acme_audiences", "vip").succeeded
    assert local.run_file(broken, "acme_audiences", "vip").error == "InputRejected"

    text = handler_logs.getvalue()
    assert len(emf(text)) >= 3  # two runs' counts and one workflow action
    values = [v for row in PEOPLE + BROKEN for v in row]
    values += [e.lower() for e, _ in PEOPLE + BROKEN]
    leaked = [v for v in values if v.lower() in text.lower()]
    assert leaked == []


def test_domain_log_lines_reach_the_powertools_logger(
    local: LocalDestination, handler_logs: io.StringIO, tmp_path: Path
) -> None:
    audience = write_csv(tmp_path / "vip.csv", "Email,PHONE", [f"{e},{p}" for e, p in PEOPLE])
    result = local.run_file(audience, "acme_audiences", "vip")
    assert result.succeeded, result.cause

    # validate's row loop (validation/row_loop.py) logs its summary with stdlib logging at
    # INFO; on Lambda it must come out as the handler's JSON, with the handler's context and
    # run id.
    done = [
        d
        for d in json_lines(handler_logs.getvalue())
        if str(d.get("message")).startswith("validate s3://") and " done: " in d["message"]
    ]
    assert len(done) == 1, handler_logs.getvalue()[-2000:]
    [line] = done
    assert line["level"] == "INFO"
    assert line["service"] == "tiktok-destination"
    assert line["function_name"].endswith("ValidateFunction")
    assert result.report is not None
    assert line["run_id"] == result.report["run_id"]
    assert "3 rows" in line["message"]
