"""Run reports: every row accounted for, every API call counted, no personal data.

Steps that call TikTok record their client's counters under ``runs/<id>/calls/<execution>/``
(also when they fail), so the report's call and retry totals include failed attempts.
"""

from __future__ import annotations

import codecs
import csv
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.row_loop import DROPPED_VALUE

AUDIENCE_REMINDERS = (
    "TikTok needs at least 1,000 matched members before the audience can be used in an ad group.",
    "Changes take from a few hours up to 48 hours to show in TikTok Ads Manager.",
)
EVENTS_REMINDERS = ("Offline events can take up to 24 hours to show in TikTok Events Manager.",)


def record_calls(bucket: Bucket, run: Run, step: str, stats: dict[str, Any]) -> None:
    if not stats.get("calls"):
        return
    key = f"{run.paths.calls(run.execution_id)}{step}-{uuid.uuid4().hex[:12]}.json"
    bucket.put_json(key, stats)


def sum_calls(bucket: Bucket, run: Run) -> dict[str, Any]:
    calls = retries = rate_limited = 0
    by_endpoint: Counter[str] = Counter()
    for obj in bucket.list(run.paths.calls(run.execution_id)):
        stats = bucket.get_json(obj["Key"]) or {}
        calls += int(stats.get("calls", 0))
        retries += int(stats.get("retries", 0))
        rate_limited += int(stats.get("rate_limited", 0))
        by_endpoint.update({k: int(v) for k, v in (stats.get("by_endpoint") or {}).items()})
    return {
        "calls": calls,
        "retries": retries,
        "rate_limited": rate_limited,
        "by_endpoint": dict(sorted(by_endpoint.items())),
    }


def rejects_summary(bucket: Bucket, run: Run) -> dict[str, Any]:
    """Rejected rows and dropped values by reason across every rejects file of the run
    (validate, chunk, send): ``rejected`` + ``dropped_values`` is the files' lines."""
    by_reason: Counter[str] = Counter()
    dropped_by_reason: Counter[str] = Counter()
    files: list[str] = []
    rows: set[tuple[str, int]] = set()
    values: set[tuple[str, int, str]] = set()
    for obj in bucket.list(run.paths.rejects_prefix):
        files.append(bucket.uri(obj["Key"]))
        body = bucket.s3.get_object(Bucket=bucket.name, Key=obj["Key"])["Body"]
        # Streamed: a large file's rejects may not fit comfortably in a Lambda's memory.
        lines = codecs.iterdecode(body.iter_lines(keepends=True), "utf-8")
        for record in csv.DictReader(lines):
            # An export in parts numbers rows within each part, and its rejects name the part.
            part, number = record.get("part") or "", int(record.get("row") or 0)
            reason = record.get("reason_code") or "unknown"
            # A file written before the kind column holds rejected rows only.
            if record.get("kind") == DROPPED_VALUE:
                value = (part, number, record.get("column") or "")
                if value not in values:
                    values.add(value)
                    dropped_by_reason[reason] += 1
                continue
            if (part, number) in rows:
                continue
            rows.add((part, number))
            by_reason[reason] += 1
    return {
        "rejected": len(rows),
        "by_reason": dict(by_reason.most_common()),
        "dropped_values": len(values),
        "dropped_by_reason": dict(dropped_by_reason.most_common()),
        "files": files,
    }


def dropped_values_report(rejects: dict[str, Any]) -> dict[str, Any]:
    """The report's ``dropped_values`` section from :func:`rejects_summary`."""
    return {
        "note": (
            "an invalid value left out of a row that was kept for its other identifier; "
            "each is a dropped_value line of the rejects files"
        ),
        "total": rejects["dropped_values"],
        "by_reason": rejects["dropped_by_reason"],
    }


def columns_report(validation: dict[str, Any]) -> dict[str, Any]:
    """Which header column fed each field, and which columns the run left unused."""
    return {
        "used": validation.get("columns_used", {}),
        "ignored": validation.get("columns_ignored", {}),
        # Identifier types the data template asks for that the file has no column for.
        "identifiers_without_column": validation.get("columns_missing", []),
    }


def export_report(run: Run, validation: dict[str, Any]) -> dict[str, Any] | None:
    """An export in parts: how it was known complete and the rows of each part."""
    if not run.source.parts:
        return None
    return {
        "folder": run.source.uri,
        "completion": run.source.completion,
        "parts": validation.get("parts") or [],
    }


def base_report(run: Run, status: str) -> dict[str, Any]:
    template = run.resolved
    return {
        "run_id": run.run_id,
        "execution_id": run.execution_id,
        "status": status,
        "kind": run.kind,
        "destination": run.destination,
        "data_template": run.data_template,
        "advertiser_id": template.advertiser_id,
        "source": run.source.uri,
        "started_at": run.started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
