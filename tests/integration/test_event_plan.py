"""Planning offline events: one event key never carries two people."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.errors import InputRejected
from tiktok_destination.events.offline import check_rejected_share, plan_events
from tiktok_destination.events.rules import normalize_event_row
from tiktok_destination.runs.report import rejects_summary
from tiktok_destination.runs.run import Run, Source

NOW = datetime(2024, 5, 20, 12, 0, 0, tzinfo=UTC)
SET_ID = "7654321098765432109"
STATE = "plan-state"


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto(STATE) as state:
        yield state


def _run() -> Run:
    return Run(
        run_id="0123456789abcdef",
        execution_id="arn:aws:states:us-east-1:123456789012:execution:sm:e1",
        kind="offline_events",
        state_bucket=STATE,
        source=Source(bucket="in", key="events.csv", etag="x", format="csv"),
        destination="acme_offline",
        data_template="purchases",
        template={},
        started_at=NOW.isoformat(),
        options=run_options(),
    )


def _row(number: int, email: str, content_id: str, event_id: str = "order-1") -> dict[str, Any]:
    return normalize_event_row(
        {
            "event": "Purchase",
            "event_id": event_id,
            "email": email,
            "content_id": content_id,
            "price": "10",
            "currency": "USD",
        },
        row_number=number,
        default_region="US",
        fallback_event_set_id=SET_ID,
        now=NOW,
    )


def test_state_objects_never_hold_nan_or_infinity(bucket: Bucket) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        bucket.put_json("runs/x/batch.json", {"events": [{"value": float("inf")}]})
    assert bucket.get_json("runs/x/batch.json") is None


def test_three_rows_of_one_event_id_and_two_people_make_one_event_of_the_first(
    bucket: Bucket, tmp_path: Path
) -> None:
    run = _run()
    # Out of row order on purpose: the person of the lowest row number owns the event.
    rows = [
        _row(4, "ann@example.com", "B"),
        _row(3, "bob@example.com", "X"),
        _row(2, "ann@example.com", "A"),
    ]
    # Validate publishes an index of its output files where chunk reads them (ranges.py).
    data_key = f"runs/{run.run_id}/validated/events.jsonl"
    bucket.put_text(data_key, "".join(json.dumps(r) + "\n" for r in rows))
    bucket.put_json(run.paths.events, {"files": [{"key": data_key}]})

    plan = plan_events(bucket, run, batch_size=10, workdir=tmp_path)

    assert (plan.events_built, plan.rows_in_events, plan.event_id_conflict_rows) == (1, 2, 1)
    batch = bucket.get_json(bucket.get_json(plan.manifest_key)[0]["key"])
    (event,) = batch["events"]
    ann = hashlib.sha256(b"ann@example.com").hexdigest()
    assert event["user"] == {"email": ann}
    assert [c["content_id"] for c in event["properties"]["contents"]] == ["A", "B"]
    assert batch["rows"] == [[2, 4]]

    text = bucket.s3.get_object(Bucket=STATE, Key=run.paths.rejects("chunk"))["Body"].read()
    (reject,) = list(csv.DictReader(io.StringIO(text.decode())))
    assert (reject["row"], reject["column"], reject["reason_code"]) == (
        "3",
        "event_id",
        "event_id_conflict",
    )
    assert "row 2" in reject["reason"] and "@" not in reject["reason"]
    summary = rejects_summary(bucket, run)
    assert (summary["rejected"], summary["by_reason"]) == (1, {"event_id_conflict": 1})


def _validated(bucket: Bucket, run: Run, rows: list[dict[str, Any]], *, rejected: int) -> None:
    """What validate leaves for chunk: its output, its index, and its counts."""
    data_key = f"runs/{run.run_id}/validated/events.jsonl"
    bucket.put_text(data_key, "".join(json.dumps(r) + "\n" for r in rows))
    bucket.put_json(run.paths.events, {"files": [{"key": data_key}]})
    bucket.put_json(
        run.paths.validation,
        {
            "source": run.source.uri,
            "rows_received": len(rows) + rejected,
            "rows_accepted": len(rows),
            "rows_rejected": rejected,
            "rejected_by_reason": {"stale_event": rejected} if rejected else {},
        },
    )


def test_rows_rejected_by_validate_and_by_grouping_count_toward_the_threshold_together(
    bucket: Bucket, tmp_path: Path
) -> None:
    run = _run()
    # 10 rows: validate rejected 3 (30 %); of its 7, order-1 has four people (3 conflicts,
    # 30 %). Each share alone is under 0.5; together 60 % are rejected.
    people = [_row(n, f"p{n}@example.com", f"sku{n}") for n in range(4, 8)]
    others = [_row(n, f"o{n}@example.com", "sku", event_id=f"other-{n}") for n in (1, 2, 3)]
    _validated(bucket, run, others + people, rejected=3)
    plan = plan_events(bucket, run, batch_size=10, workdir=tmp_path)
    assert plan.event_id_conflict_rows == 3

    check_rejected_share(bucket, run, plan, reject_threshold=0.6)
    with pytest.raises(InputRejected) as caught:
        check_rejected_share(bucket, run, plan, reject_threshold=0.5)
    message = str(caught.value)
    assert "6 of 10 rows rejected (60.0%)" in message and "50.0%" in message
    assert "event_id_conflict (3 rows)" in message and "stale_event (3 rows)" in message
    assert "own event_id" in message
    assert "@example.com" not in message
    # the report counts what the threshold counted
    summary = rejects_summary(bucket, run)
    assert summary["by_reason"] == {"event_id_conflict": 3}


def test_exact_duplicate_rows_are_rejected_rows_of_the_share(
    bucket: Bucket, tmp_path: Path
) -> None:
    run = _run()
    row = _row(1, "ann@example.com", "sku")
    copies = [dict(row, row=n) for n in range(1, 5)]  # rows 2-4 repeat row 1
    _validated(bucket, run, copies, rejected=0)
    plan = plan_events(bucket, run, batch_size=10, workdir=tmp_path)
    assert plan.duplicate_rows == 3
    with pytest.raises(InputRejected, match=r"3 of 4 rows rejected .*duplicate_row \(3 rows\)"):
        check_rejected_share(bucket, run, plan, reject_threshold=0.5)
    check_rejected_share(bucket, run, plan, reject_threshold=0.75)
