"""What a call puts on the wire: paths, query parameters and JSON request bodies.

The body builders enforce TikTok's request limits (docs/tiktok-contract.md), so a batch over
one fails here, before anything is sent, on every path that sends it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from tiktok_destination.adapters.tiktok.limits import MAX_EVENTS_PER_REQUEST

__all__ = [
    "EVENT_SET_ID",
    "audience_create_body",
    "encode_param",
    "join_path",
    "mapping_body",
    "track_body",
]

#: TikTok's offline event set ids are 19 digits
EVENT_SET_ID = re.compile(r"^\d{19}$")


def join_path(path: str) -> str:
    """``"/segment/mapping"`` -> ``"segment/mapping/"``: TikTok answers 404 without the slash."""
    return path.strip("/") + "/"


def encode_param(value: Any) -> str:
    """A query parameter as TikTok reads it."""
    # TikTok reads list parameters as JSON text (``event_set_ids=["123"]``); ids stay
    # strings inside that JSON, never numbers.
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def audience_create_body(advertiser_id: str, name: str) -> dict[str, Any]:
    """The JSON body of ``POST segment/audience/`` creating a partner audience."""
    return {"advertiser_id": advertiser_id, "action": "create", "custom_audience_name": name}


def mapping_body(
    advertiser_id: str,
    action: Literal["add", "delete"],
    id_schema: Sequence[str],
    batch_data: Sequence[Sequence[Mapping[str, Any]]],
) -> dict[str, Any]:
    """The JSON body of ``POST segment/mapping/``: one inner list per person, aligned with
    ``id_schema``."""
    if action not in ("add", "delete"):
        raise ValueError(f"map_audience action must be 'add' or 'delete', got {action!r}")
    return {
        "advertiser_ids": [advertiser_id],
        "action": action,
        "id_schema": list(id_schema),
        "batch_data": [[dict(entry) for entry in person] for person in batch_data],
    }


def track_body(
    event_set_id: str,
    events: Sequence[Mapping[str, Any]],
    *,
    test_event_code: str | None,
) -> dict[str, Any]:
    """The JSON body of ``POST event/track/`` for one event set and up to 1,000 events."""
    if not EVENT_SET_ID.match(event_set_id):
        raise ValueError("event_set_id must be a 19-digit string")
    if not events:
        raise ValueError("track_body needs at least one event")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise ValueError(
            f"{len(events)} events in one request; TikTok rejects more than "
            f"{MAX_EVENTS_PER_REQUEST}, so split the batch"
        )
    body: dict[str, Any] = {
        "event_source": "offline",
        "event_source_id": event_set_id,
        "data": [dict(event) for event in events],
    }
    if test_event_code:
        body["test_event_code"] = test_event_code
    return body
