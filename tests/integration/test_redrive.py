"""Redrive: the last failed state raises the workflow action once, and resumes when redriven."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tiktok_destination.errors import DestinationError
from tiktok_destination.steps import step_raise_action

ROOT = Path(__file__).resolve().parents[2]
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:tiktok-destination:abc"


@pytest.fixture
def state_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("STATE_BUCKET", "redrive-state")
    from tiktok_destination.adapters import s3 as storage

    storage.s3_client.cache_clear()
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="redrive-state")
        yield "redrive-state"
    storage.s3_client.cache_clear()


def test_first_call_fails_with_the_action_then_a_redrive_resumes(state_bucket: str) -> None:
    with pytest.raises(DestinationError) as raised:
        step_raise_action("InvalidCredentials", "Invalid credentials: steps", "n1", EXECUTION)
    # Lambda reports the class name as the error type: the execution fails with the action.
    assert type(raised.value).__name__ == "InvalidCredentials"
    assert str(raised.value) == "Invalid credentials: steps"
    assert step_raise_action("InvalidCredentials", "x", "n1", EXECUTION) == {"resumed": True}


def test_a_new_failure_after_resuming_fails_again(state_bucket: str) -> None:
    with pytest.raises(DestinationError):
        step_raise_action("RateLimited", "c", "n1", EXECUTION)
    assert step_raise_action("RateLimited", "c", "n1", EXECUTION) == {"resumed": True}
    with pytest.raises(DestinationError) as again:
        step_raise_action("RateLimited", "c", "n2", EXECUTION)
    assert type(again.value).__name__ == "RateLimited"


def test_the_failing_state_is_a_task_that_resumes_at_preflight() -> None:
    states = json.loads((ROOT / "statemachine/destination.asl.json").read_text())["States"]
    failed = states["Failed"]
    # A Fail state would make redrive useless: it would only fail again.
    assert failed["Type"] == "Task"
    assert failed["Next"] == "Preflight"
    assert not failed.get("Retry") and not failed.get("Catch")
    assert states["Notify"]["Next"] == "Failed"
