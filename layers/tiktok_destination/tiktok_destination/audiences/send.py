"""Send one manifest batch of member changes to ``segment/mapping``.

A done marker per batch makes a retried or re-run batch a no-op once it went through.
"""

from __future__ import annotations

from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.audiences.shards import SCHEMA_ORDER
from tiktok_destination.errors import TikTokRequestRejected
from tiktok_destination.runs.layout import PlanPaths
from tiktok_destination.runs.run import Run


def batch_rows(lines: list[str], audience_id: str) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """``segment/mapping`` id_schema and batch_data: one row per identifier, ``{}`` elsewhere."""
    parsed = [line.rstrip("\n").split("\t", 1) for line in lines if line.strip()]
    present = {schema for schema, _ in parsed}
    id_schema = [s for s in SCHEMA_ORDER if s in present]
    column = {s: i for i, s in enumerate(id_schema)}
    batch_data: list[list[dict[str, Any]]] = []
    for schema, digest in parsed:
        row: list[dict[str, Any]] = [{} for _ in id_schema]
        row[column[schema]] = {"id": digest, "audience_ids": [audience_id]}
        batch_data.append(row)
    return id_schema, batch_data


def send_batch(
    client: TikTokClient, bucket: Bucket, run: Run, audience_id: str, batch: dict[str, Any]
) -> dict[str, Any]:
    """Send one manifest batch unless its done marker says an earlier attempt finished it."""
    prefix = run.paths.plan(batch["plan_id"])
    done_key = PlanPaths(prefix).done(int(batch["index"]))
    if bucket.exists(done_key):
        return {"index": batch["index"], "skipped": True, "sent": 0}
    data = bucket.get_bytes(batch["key"])
    if data is None:
        raise TikTokRequestRejected(
            f"batch file {bucket.uri(batch['key'])} is missing; re-run the input to re-plan"
        )
    lines = data.decode().splitlines(keepends=True)
    advertiser_id = run.resolved.advertiser_id
    _map_lines(client, advertiser_id, batch["action"], lines, audience_id)
    bucket.put_json(done_key, {"index": batch["index"], "count": len(lines)})
    return {"index": batch["index"], "skipped": False, "sent": len(lines)}


def _map_lines(
    client: TikTokClient, advertiser_id: str, action: str, lines: list[str], audience_id: str
) -> None:
    id_schema, batch_data = batch_rows(lines, audience_id)
    if not batch_data:
        return
    try:
        client.map_audience(advertiser_id, action, id_schema, batch_data)  # type: ignore[arg-type]
    except TikTokRequestRejected as err:
        # 40011: more IDs than TikTok accepts in one request; halve until it fits.
        if err.code != 40011 or len(lines) < 2:
            raise
        half = len(lines) // 2
        _map_lines(client, advertiser_id, action, lines[:half], audience_id)
        _map_lines(client, advertiser_id, action, lines[half:], audience_id)
