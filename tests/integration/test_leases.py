"""Leases on S3 conditional writes (moto): who gets a target, and when a lease is stale."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.config.document import load_config
from tiktok_destination.runs import leases
from tiktok_destination.runs.run import Run, Source

BUCKET = "state"
ADVERTISER = "7000000000000000001"


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto(BUCKET) as state:
        yield state


CONFIG = load_config(
    f"""
[credentials.c]
[destinations.d]
credential = "c"
advertiser_id = "{ADVERTISER}"
kind = "custom_audience"
[data_templates.t]
destination = "d"
audience_name = "VIP customers"
[data_templates.other]
destination = "d"
audience_name = "Other"
[destinations.e]
credential = "c"
advertiser_id = "{ADVERTISER}"
kind = "offline_events"
[data_templates.orders]
destination = "e"
event_set_id = "7100000000000000001"
"""
)


def run(run_id: str, execution: str, audience: str = "VIP customers") -> Run:
    template = CONFIG.resolve("d", "t" if audience == "VIP customers" else "other")
    return Run(
        run_id=run_id,
        execution_id=f"arn:aws:states:us-east-1:1:execution:sm:{execution}",
        kind="custom_audience",
        state_bucket=BUCKET,
        source=Source(bucket="inbox", key=f"inbox/d/t/{run_id}.csv", etag="e", format="csv"),
        destination="d",
        data_template="t",
        template=template.as_dict(),
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(),
    )


def event_run(run_id: str, execution: str) -> Run:
    template = CONFIG.resolve("e", "orders")
    return Run(
        run_id=run_id,
        execution_id=f"arn:aws:states:us-east-1:1:execution:sm:{execution}",
        kind="offline_events",
        state_bucket=BUCKET,
        source=Source(bucket="inbox", key=f"inbox/e/orders/{run_id}.csv", etag="e", format="csv"),
        destination="e",
        data_template="orders",
        template=template.as_dict(),
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(),
    )


def running(*arns: str) -> leases.LivenessCheck:
    live = set(arns)
    return lambda arn: any(arn.endswith(":" + a) for a in live)


def take(bucket: Bucket, r: Run, check: leases.LivenessCheck, **kw: Any) -> leases.LeaseOutcome:
    return leases.acquire(bucket, r, ttl_seconds=3600, is_running=check, **kw)


def test_one_run_per_audience_and_the_same_input_is_a_duplicate(bucket: Bucket) -> None:
    a, b, a_again = run("runA", "ex1"), run("runB", "ex2"), run("runA", "ex3")
    assert take(bucket, a, running("ex1")).status == "acquired"
    busy = take(bucket, b, running("ex1"))
    assert (busy.status, busy.holder_run_id) == ("busy", "runA")
    assert take(bucket, a_again, running("ex1")).status == "duplicate"
    # Another audience is another lease.
    assert take(bucket, run("runC", "ex4", audience="Other"), running("ex1")).status == "acquired"


def test_the_holder_renews_and_only_the_holder_releases(bucket: Bucket) -> None:
    a, b = run("runA", "ex1"), run("runB", "ex2")
    assert take(bucket, a, running("ex1")).status == "acquired"
    assert take(bucket, a, running("ex1")).status == "acquired", "a redrive keeps its lease"
    assert leases.release(bucket, b) is False
    assert take(bucket, b, running("ex1")).status == "busy"
    assert leases.release(bucket, a) is True
    assert take(bucket, b, running("ex2")).status == "acquired"


def test_a_lease_whose_execution_ended_is_taken_over_at_once(bucket: Bucket) -> None:
    a, b = run("runA", "ex1"), run("runB", "ex2")
    assert take(bucket, a, running("ex1")).status == "acquired"
    # ex1 was stopped or crashed without releasing: Step Functions says it is not running.
    assert take(bucket, b, running()).status == "acquired"
    assert leases.release(bucket, a) is False, "the old holder must not delete the new lease"
    assert take(bucket, run("runC", "ex3"), running("ex2")).status == "busy"


def test_expiry_frees_a_lease_only_when_liveness_is_unknown(bucket: Bucket) -> None:
    a, b = run("runA", "ex1"), run("runB", "ex2")
    long_ago = datetime.now(UTC) - timedelta(days=2)
    assert take(bucket, a, running("ex1"), now=long_ago).status == "acquired"
    # Expired, but Step Functions says the holder still runs: a live run keeps its lease.
    assert take(bucket, b, running("ex1")).status == "busy"
    # Step Functions cannot be asked: the expiry decides.
    assert take(bucket, b, lambda _arn: None).status == "acquired"


def test_a_run_started_before_the_last_completed_one_is_superseded(bucket: Bucket) -> None:
    older, newer = run("runA", "ex1"), run("runB", "ex2")
    t0 = "2026-11-26T10:00:00.000Z"
    t1 = "2026-11-26T10:00:01.000Z"
    # The newer start got the lease first and completed.
    assert take(bucket, newer, running("ex2"), started_at=t1).status == "acquired"
    assert leases.release(bucket, newer, completed=True)
    outcome = take(bucket, older, running("ex1"), started_at=t0)
    assert (outcome.status, outcome.holder_run_id) == ("superseded", "runB")
    # It let the lease go again, and a run started later still proceeds.
    later = run("runC", "ex3")
    assert take(bucket, later, running(), started_at="2026-11-26T10:00:02Z").status == "acquired"


def test_an_event_run_started_before_the_last_completed_one_still_runs(bucket: Bucket) -> None:
    # Events add up: the older file's events are not in the newer file, so it must be sent.
    older, newer = event_run("runA", "ex1"), event_run("runB", "ex2")
    assert leases.lease_key(older) == leases.lease_key(newer), "one event set, one lease"
    t0 = "2026-11-26T10:00:00.000Z"
    t1 = "2026-11-26T10:00:01.000Z"
    assert take(bucket, newer, running("ex2"), started_at=t1).status == "acquired"
    assert leases.release(bucket, newer, completed=True)
    outcome = take(bucket, older, running("ex1"), started_at=t0)
    assert (outcome.status, outcome.holder_run_id) == ("acquired", "runA")
    # It holds the lease like any run: the next event file queues behind it.
    assert take(bucket, event_run("runC", "ex3"), running("ex1")).status == "busy"
    # A redrive of the older run (same execution, same start time) keeps it too.
    assert take(bucket, older, running("ex1"), started_at=t0).status == "acquired"


def test_a_failed_run_does_not_supersede_older_ones(bucket: Bucket) -> None:
    older, newer = run("runA", "ex1"), run("runB", "ex2")
    assert take(bucket, newer, running("ex2"), started_at="2026-11-26T10:00:01Z").status == (
        "acquired"
    )
    assert leases.release(bucket, newer)  # failed: Notify releases without completing
    assert take(bucket, older, running(), started_at="2026-11-26T10:00:00Z").status == "acquired"
