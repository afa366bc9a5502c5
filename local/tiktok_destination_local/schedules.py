"""EventBridge Scheduler schedules for the configuration's ``[orchestrations]``.

Each orchestration becomes one schedule named ``<prefix><orchestration>`` whose input is
``{"orchestration": "<name>"}``: Preflight looks the name up in the configuration at run
time, so changing an orchestration's prefix or template needs no re-sync; changing its
``schedule`` does. Schedules with the prefix that no orchestration names are deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from tiktok_destination.config.document import Config

DEFAULT_PREFIX = "tiktok-destination-"
# A missed start is retried for an hour, then dropped: the next run sends the newest file.
RETRY_POLICY = {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10}


@dataclass(frozen=True)
class ScheduleChange:
    action: str  # "create" | "update" | "delete" | "unchanged"
    name: str
    expression: str | None = None


def desired_schedules(
    config: Config, state_machine_arn: str, role_arn: str, prefix: str
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, orchestration in sorted(config.orchestrations.items()):
        out[f"{prefix}{name}"] = {
            "ScheduleExpression": orchestration.schedule,
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Description": (
                f"tiktok-destination orchestration '{name}': newest object under "
                f"{orchestration.source_prefix} to {orchestration.destination}/"
                f"{orchestration.data_template}"
            )[:512],
            "Target": {
                "Arn": state_machine_arn,
                "RoleArn": role_arn,
                "Input": json.dumps({"orchestration": name}),
                "RetryPolicy": RETRY_POLICY,
            },
        }
    return out


def sync_schedules(
    config: Config,
    *,
    state_machine_arn: str,
    role_arn: str,
    group: str = "default",
    prefix: str = DEFAULT_PREFIX,
    dry_run: bool = False,
    client: Any | None = None,
) -> list[ScheduleChange]:
    scheduler = client or boto3.client("scheduler")
    desired = desired_schedules(config, state_machine_arn, role_arn, prefix)
    existing: dict[str, dict[str, Any]] = {}
    for page in scheduler.get_paginator("list_schedules").paginate(
        GroupName=group, NamePrefix=prefix
    ):
        for summary in page.get("Schedules", []):
            existing[summary["Name"]] = scheduler.get_schedule(
                Name=summary["Name"], GroupName=group
            )
    changes: list[ScheduleChange] = []
    for name, spec in desired.items():
        current = existing.get(name)
        if current is None:
            action = "create"
        elif _same(current, spec):
            changes.append(ScheduleChange("unchanged", name, spec["ScheduleExpression"]))
            continue
        else:
            action = "update"
        if not dry_run:
            call = scheduler.create_schedule if action == "create" else scheduler.update_schedule
            call(Name=name, GroupName=group, **spec)
        changes.append(ScheduleChange(action, name, spec["ScheduleExpression"]))
    for name in sorted(set(existing) - set(desired)):
        if not dry_run:
            scheduler.delete_schedule(Name=name, GroupName=group)
        changes.append(ScheduleChange("delete", name))
    return changes


def _same(current: dict[str, Any], spec: dict[str, Any]) -> bool:
    target = current.get("Target") or {}
    return (
        current.get("ScheduleExpression") == spec["ScheduleExpression"]
        and current.get("State") == spec["State"]
        and target.get("Arn") == spec["Target"]["Arn"]
        and target.get("RoleArn") == spec["Target"]["RoleArn"]
        and target.get("Input") == spec["Target"]["Input"]
    )
