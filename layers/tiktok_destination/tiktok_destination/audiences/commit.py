"""Commit a sent plan: its member set becomes the audience's committed snapshot.

Only after every batch is done. The shard files are copied first and the manifest
(``snapshot.json``) last, so the switch is one PUT and a commit that stops leaves the old
snapshot fully in force; then the journals of the pending runs the plan covered are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.errors import DestinationError
from tiktok_destination.runs.layout import PLAN_LAYOUT, AudienceKeys, PlanPaths
from tiktok_destination.runs.run import Run


def _switch_snapshot(
    bucket: Bucket,
    keys: AudienceKeys,
    plan_id: str,
    shards: Mapping[str, str],
    members: int,
    last_sync: Mapping[str, Any] | None = None,
) -> None:
    """Make the plan's member set the committed snapshot with one PutObject.

    The shard files are copied out of ``runs/`` (which expires) under a generation prefix of
    their own first; until the manifest names them nothing reads them, so a commit that stops
    before the manifest leaves the old snapshot fully in force, and one that is repeated
    copies the same bytes again.
    """
    committed: dict[str, str] = {}
    for shard, source in sorted(shards.items()):
        target = keys.generation(plan_id, shard)
        bucket.s3.copy_object(
            Bucket=bucket.name, Key=target, CopySource={"Bucket": bucket.name, "Key": source}
        )
        committed[shard] = target
    # The member count lets the next plan tell a small audience (diffed inline) without
    # reading the shards; ``last_sync`` (members by type, the run, when) lets it tell an
    # identifier type whose column vanished from the file.
    bucket.put_json(
        keys.snapshot,
        {"generation": plan_id, "shards": committed, "members": members} | dict(last_sync or {}),
    )
    # The manifest wins over a one-file snapshot of an earlier version: drop that one.
    bucket.delete(keys.legacy_snapshot)


def _drop_old_generations(bucket: Bucket, keys: AudienceKeys, plan_id: str) -> None:
    """Delete the shard files of snapshots no manifest names any more (also those a commit
    that stopped before its manifest left behind). Only after the switch: one run of an
    audience at a time (its lease), so no diff is reading an old generation."""
    current = f"{keys.generations_prefix}{plan_id}/"
    for obj in list(bucket.list(keys.generations_prefix)):
        if not obj["Key"].startswith(current):
            bucket.delete(obj["Key"])


def commit_audience(bucket: Bucket, run: Run, plan_id: str) -> dict[str, Any]:
    """Promote the plan's member set to the committed snapshot; only after every batch."""
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    prefix = run.paths.plan(plan_id)
    plan_keys = PlanPaths(prefix)
    plan = bucket.get_json(plan_keys.plan)
    if plan is None:
        raise DestinationError(f"plan {prefix} not found; re-run the input")
    done = {Path(o["Key"]).stem for o in bucket.list(plan_keys.done_prefix)}
    missing = [i for i in range(1, int(plan["batches"]) + 1) if f"{i:05d}" not in done]
    if missing:
        raise DestinationError(
            f"{len(missing)} of {plan['batches']} batches did not finish (first: {missing[0]}); "
            "the snapshot was not committed. Re-run the same input to send them"
        )
    if plan.get("layout") == PLAN_LAYOUT:
        by_type = plan.get("members_by_type")
        _switch_snapshot(
            bucket,
            keys,
            plan_id,
            dict(plan.get("snapshot_shards") or {}),
            int(plan["members"]),
            # A plan made before members were counted by type: no count rather than a guess.
            None
            if by_type is None
            else {
                "members_by_type": by_type,
                "run_id": run.run_id,
                "source": run.source.uri,
                "started_at": run.started_at,
            },
        )
    else:
        # A plan made before the snapshot was sharded: commit it the way it was planned.
        bucket.s3.copy_object(
            Bucket=bucket.name,
            Key=keys.legacy_snapshot,
            CopySource={"Bucket": bucket.name, "Key": plan_keys.members_sorted},
        )
        bucket.delete(keys.snapshot)
    for other in [run.run_id, *plan.get("pending_base", [])]:
        bucket.delete(keys.pending(other))
    bucket.put_json(plan_keys.committed, {"run_id": run.run_id})
    _drop_old_generations(bucket, keys, plan_id)
    return {"committed": True, "members": plan["members"]}
