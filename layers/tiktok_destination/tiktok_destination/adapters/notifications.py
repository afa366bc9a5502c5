"""Publishing a workflow action: SNS (the operator's e-mail or chat) and EventBridge.

The message is the workflow action's detail as the Notify step built it: counts, the action,
its resolution steps and the report's key, never a row's value.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from tiktok_destination.config.settings import Settings

#: SNS refuses a subject longer than this
_SNS_SUBJECT_MAX = 100


def publish_workflow_action(settings: Settings, detail: dict[str, Any]) -> None:
    """Send ``detail`` to the notify topic (when one is set) and to the event bus."""
    body = json.dumps(detail, indent=1)
    if settings.notify_topic_arn:
        boto3.client("sns").publish(
            TopicArn=settings.notify_topic_arn,
            Subject=f"tiktok-destination: {detail['title']}"[:_SNS_SUBJECT_MAX],
            Message=body,
        )
    boto3.client("events").put_events(
        Entries=[
            {
                "Source": "tiktok-destination",
                "DetailType": "Workflow action",
                "Detail": body,
                "EventBusName": settings.event_bus_name,
            }
        ]
    )
