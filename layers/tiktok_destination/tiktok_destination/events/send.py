"""Offline events: send one planned batch to ``event/track/``, and add up what was sent.

A batch is sent at most once per done marker. One bad event fails a whole request, so a batch
TikTok rejects is bisected until the bad events stand alone; their rows go to the rejects
file as ``tiktok_rejected`` and the rest are sent.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.errors import TikTokRequestRejected
from tiktok_destination.runs.layout import PlanPaths
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.range_outputs import RowNames, validated_index


def send_event_batch(
    client: TikTokClient, bucket: Bucket, run: Run, batch: dict[str, Any]
) -> dict[str, Any]:
    """Send one batch; a batch TikTok rejects as a whole is bisected to find the bad events."""
    prefix = run.paths.plan(batch["plan_id"])
    index = int(batch["index"])
    done_key = PlanPaths(prefix).done(index)
    if bucket.exists(done_key):
        return {"index": index, "skipped": True, "sent": 0}
    body = bucket.get_json(batch["key"])
    if body is None:
        raise TikTokRequestRejected(
            f"batch file {bucket.uri(batch['key'])} is missing; re-run the input to re-plan"
        )
    test_event_code = run.resolved.test_event_code
    rejected: list[tuple[list[int], str]] = []
    sent = _send(
        client,
        str(body["event_set_id"]),
        list(zip(body["events"], body["rows"], strict=True)),
        test_event_code,
        rejected,
    )
    if rejected:
        names = RowNames(validated_index(bucket, run.paths.events).get("parts"))
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(names.header())
        for rows, message in rejected:
            writer.writerows(names.reject(row, "", "tiktok_rejected", message) for row in rows)
        bucket.put_text(
            run.paths.rejects(f"send-{index:05d}"), text.getvalue(), content_type="text/csv"
        )
    bucket.put_json(
        done_key,
        {"index": index, "sent": sent, "rejected_events": len(rejected)},
    )
    return {"index": index, "skipped": False, "sent": sent, "rejected_events": len(rejected)}


def _send(
    client: TikTokClient,
    event_set_id: str,
    items: list[tuple[dict[str, Any], list[int]]],
    test_event_code: str | None,
    rejected: list[tuple[list[int], str]],
) -> int:
    if not items:
        return 0
    try:
        client.track_events(event_set_id, [e for e, _ in items], test_event_code=test_event_code)
        return len(items)
    except TikTokRequestRejected as err:
        # One bad event fails the whole request: bisect until the bad ones stand alone.
        if len(items) == 1:
            rejected.append((items[0][1], f"TikTok rejected the event: {err.message}"))
            return 0
        half = len(items) // 2
        return _send(client, event_set_id, items[:half], test_event_code, rejected) + _send(
            client, event_set_id, items[half:], test_event_code, rejected
        )


def sent_totals(bucket: Bucket, run: Run, plan_id: str) -> dict[str, int]:
    sent = rejected = 0
    for obj in bucket.list(f"{run.paths.plan(plan_id)}done/"):
        marker = bucket.get_json(obj["Key"]) or {}
        sent += int(marker.get("sent", 0))
        rejected += int(marker.get("rejected_events", 0))
    return {"events_sent": sent, "events_rejected_by_tiktok": rejected}
