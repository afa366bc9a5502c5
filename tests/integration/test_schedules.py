"""One EventBridge Scheduler schedule per [orchestrations] table, kept in sync."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tiktok_destination.config.loader import load_config
from tiktok_destination_local.cli import main
from tiktok_destination_local.schedules import sync_schedules

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:tiktok-destination"
ROLE = "arn:aws:iam::123456789012:role/tiktok-destination-ScheduleRole"
BASE = """
[credentials.acme]
[destinations.aud]
credential = "acme"
advertiser_id = "7000000000000000001"
kind = "custom_audience"
[data_templates.vip]
destination = "aud"
audience_name = "VIP"
"""


def orchestration(name: str, schedule: str) -> str:
    return f"""
[orchestrations.{name}]
destination = "aud"
data_template = "vip"
source_prefix = "exports/{name}/"
schedule = "{schedule}"
"""


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("scheduler")


def test_sync_creates_updates_and_deletes(scheduler: Any) -> None:
    first = load_config(
        BASE
        + orchestration("nightly", "cron(0 6 * * ? *)")
        + orchestration("hourly", "rate(1 hour)")
    )
    changes = sync_schedules(first, state_machine_arn=MACHINE, role_arn=ROLE, client=scheduler)
    assert sorted((c.action, c.name) for c in changes) == [
        ("create", "tiktok-destination-hourly"),
        ("create", "tiktok-destination-nightly"),
    ]
    nightly = scheduler.get_schedule(Name="tiktok-destination-nightly")
    assert nightly["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert nightly["Target"]["Arn"] == MACHINE and nightly["Target"]["RoleArn"] == ROLE
    assert json.loads(nightly["Target"]["Input"]) == {"orchestration": "nightly"}

    second = load_config(BASE + orchestration("nightly", "cron(30 5 * * ? *)"))
    changes = sync_schedules(second, state_machine_arn=MACHINE, role_arn=ROLE, client=scheduler)
    assert sorted((c.action, c.name) for c in changes) == [
        ("delete", "tiktok-destination-hourly"),
        ("update", "tiktok-destination-nightly"),
    ]
    names = [s["Name"] for s in scheduler.list_schedules()["Schedules"]]
    assert names == ["tiktok-destination-nightly"]
    again = sync_schedules(second, state_machine_arn=MACHINE, role_arn=ROLE, client=scheduler)
    assert [c.action for c in again] == ["unchanged"]


def test_cli_dry_run_changes_nothing(
    scheduler: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BASE + orchestration("nightly", "cron(0 6 * * ? *)"))
    argv = [
        "schedules",
        "--config",
        str(config),
        "--state-machine-arn",
        MACHINE,
        "--role-arn",
        ROLE,
    ]
    assert main([*argv, "--dry-run"]) == 0
    assert "would create" in capsys.readouterr().out
    assert scheduler.list_schedules()["Schedules"] == []
    assert main(argv) == 0
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == [
        "tiktok-destination-nightly"
    ]
