"""The audience plan: the shards' diffs added up, guarded, cut into batches, journaled.

:func:`prepare_diff` reuses a finished plan of the same inputs (so finished batches are not
sent again) or fixes the diff to run; :func:`collect_diff` adds the shards up, runs the
removal guard before anything is written, then writes the manifest of ``segment/mapping``
batches (every delete before any add), the ``pending/`` journal (from then on TikTok may
hold these changes) and ``plan.json``, last.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences.diff import (
    DiffPlan,
    check_committed,
    committed_set,
    diff_planned_shard,
    new_members,
    pending_sets,
)
from tiktok_destination.audiences.guard import TypeCounts, check_removal, read_last_sync
from tiktok_destination.audiences.shards import (
    SHARD_COUNTS,
    SHARD_NAMES,
    TYPE_COUNTS,
    BatchWriter,
    ShardDiff,
)
from tiktok_destination.errors import (
    DestinationError,
    MassRemovalBlocked,
)
from tiktok_destination.identity.schema import ID_TYPES
from tiktok_destination.runs.layout import PLAN_LAYOUT, AudienceKeys, PlanPaths
from tiktok_destination.runs.run import Run


@dataclass
class AudiencePlan:
    plan_id: str
    manifest_key: str
    batches: int
    pending_batches: int
    members: int
    added: int
    removed: int
    unchanged: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


#: Manifest order: every delete batch before any add batch, as a whole-set plan sends them.
ACTIONS = ("delete", "add")


def prepare_diff(
    bucket: Bucket, run: Run, audience_id: str, *, batch_size: int
) -> AudiencePlan | DiffPlan:
    """The run's finished plan when one can be reused, else the diff to run (``diff.json``).

    The plan id names the diff's inputs (committed snapshot, pending runs, validated
    members, batch size, audience), so shard markers under its prefix are never stale.
    """
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    paths = run.paths
    committed_etag, committed = committed_set(bucket, keys)
    pending = sorted(
        Path(obj["Key"]).stem
        for obj in bucket.list(keys.pending_prefix)
        if Path(obj["Key"]).stem != run.run_id
    )
    # The index names every validated file with its digest: same etag, same members.
    members_etag = bucket.etag(paths.members)
    plan_id = hashlib.sha256(
        repr((committed_etag, pending, members_etag, batch_size, audience_id)).encode()
    ).hexdigest()[:16]
    prefix = paths.plan(plan_id)
    plan_keys = PlanPaths(prefix)
    existing = bucket.get_json(plan_keys.plan)
    if existing and bucket.exists(plan_keys.committed):
        # The snapshot came back to the same bytes (A, B, A, then B again): this plan was
        # sent and committed once, but TikTok has held other members since. Its done
        # markers (and shard markers) are stale, so plan afresh.
        bucket.delete_prefix(prefix)
        existing = None
    if existing:
        # Same input, same base: reuse the plan so finished batches are not sent again.
        fields = AudiencePlan.__dataclass_fields__
        plan = AudiencePlan(**{k: v for k, v in existing.items() if k in fields})
        plan.pending_batches = plan.batches - bucket.count(plan_keys.done_prefix)
        return plan
    pending_adds, pending_deletes = pending_sets(bucket, keys, pending)
    diff = DiffPlan(
        run_id=run.run_id,
        plan_id=plan_id,
        prefix=prefix,
        audience_id=audience_id,
        batch_size=batch_size,
        committed_etag=committed_etag,
        pending=pending,
        new=new_members(bucket, paths.members),
        committed=committed,
        pending_adds=pending_adds,
        pending_deletes=pending_deletes,
    )
    bucket.put_json(diff.key, diff.as_dict())
    bucket.put_json(diff.items_key, [{"shard": s, "plan_id": plan_id} for s in SHARD_NAMES])
    return diff


def collect_diff(bucket: Bucket, run: Run, diff: DiffPlan, *, workdir: Path) -> AudiencePlan:
    """Add the shards' diffs up into the plan a whole-set diff makes.

    Every marker must exist (a shard without one was not diffed: never read as empty).
    The removal guard runs before anything is written; then the shards' tails are cut into
    batches together, so each action sends ceil(lines / batch_size) batches; then the
    manifest, the journal and ``plan.json``, last.
    """
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    prefix = diff.prefix
    plan_keys = PlanPaths(prefix)
    records: list[dict[str, Any]] = []
    for shard in SHARD_NAMES:
        record = bucket.get_json(diff.marker(shard))
        if record is None:
            raise DestinationError(
                f"shard {shard} of the audience diff of plan {diff.plan_id} did not finish "
                f"({bucket.uri(diff.marker(shard))} is missing), so nothing was planned or "
                "sent; re-run the same input to diff the shards that did not finish"
            )
        records.append(record)
    check_committed(bucket, run, diff)
    total = ShardDiff()
    for counted in SHARD_COUNTS:
        setattr(total, counted, sum(int(r[counted]) for r in records))
    by_type = _sum_by_type(records)
    # Before the manifest, the journal and plan.json: a blocked plan leaves nothing to be
    # reused or sent, and no journal (TikTok cannot hold any of it). Its shard files are
    # removed too, so a blocked run leaves no plan behind.
    try:
        mass_removal_allowed = check_removal(
            run,
            total.maybe_present,
            total.removed,
            total.added,
            by_type=(
                None
                if by_type is None
                else {
                    t: TypeCounts(c["maybe_present"], c["removed"], c["added"])
                    for t, c in by_type.items()
                }
            ),
            last_sync=read_last_sync(bucket, keys),
            columns=bucket.get_json(run.paths.validation) or {},
        )
    except MassRemovalBlocked:
        bucket.delete_prefix(prefix)
        raise

    manifest: list[dict[str, Any]] = []
    for action in ACTIONS:
        batches = [(str(k), int(c)) for r in records for k, c in r["batches"][action]]
        tails = BatchWriter(bucket, prefix, f"{action}-tail", diff.batch_size, workdir)
        for record in records:
            tail = record["tails"][action]
            if not tail:
                continue
            data = bucket.get_bytes(str(tail[0]))
            if data is None:
                raise DestinationError(
                    f"{bucket.uri(str(tail[0]))} (shard {record['shard']}'s last "
                    f"{action}s) is missing; re-run the same input to plan again"
                )
            tails.extend(data.decode().splitlines(keepends=True))
        tails.flush()
        for key, count in [*batches, *tails.batches]:
            manifest.append(
                {
                    "index": len(manifest) + 1,
                    "action": action,
                    "key": key,
                    "count": count,
                    "plan_id": diff.plan_id,
                }
            )
    manifest_key = plan_keys.manifest
    bucket.put_json(manifest_key, manifest)
    # The journal goes up before any batch is sent: from now on TikTok may hold these changes.
    bucket.put_json(
        keys.pending(run.run_id),
        {
            "run_id": run.run_id,
            "plan_prefix": prefix,
            "pending_base": diff.pending,
            "layout": PLAN_LAYOUT,
        },
    )
    plan = AudiencePlan(
        plan_id=diff.plan_id,
        manifest_key=manifest_key,
        batches=len(manifest),
        pending_batches=len(manifest),
        members=total.members,
        added=total.added,
        removed=total.removed,
        unchanged=total.unchanged,
    )
    snapshot_shards = {
        str(r["shard"]): str(r["snapshot_key"]) for r in records if r["snapshot_key"]
    }
    bucket.put_json(
        plan_keys.plan,
        plan.as_dict()
        | {
            "pending_base": diff.pending,
            "mass_removal_allowed": mass_removal_allowed,
            "layout": PLAN_LAYOUT,
            "snapshot_shards": snapshot_shards,
        }
        | (
            {}
            if by_type is None
            else {"members_by_type": {t: c["members"] for t, c in by_type.items() if c["members"]}}
        ),
    )
    return plan


def _sum_by_type(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]] | None:
    """The shards' per-type counts added up, in ``ID_TYPES`` order; None when a shard was
    diffed by a version that did not count them (the per-type checks are then skipped)."""
    if any(not isinstance(r.get("by_type"), dict) for r in records):
        return None
    summed: dict[str, Counter[str]] = {}
    for record in records:
        for id_type, counts in record["by_type"].items():
            summed.setdefault(str(id_type), Counter()).update(
                {n: int(counts.get(n, 0)) for n in TYPE_COUNTS}
            )
    order = {t: i for i, t in enumerate(ID_TYPES)}
    return {
        t: {n: summed[t][n] for n in TYPE_COUNTS}
        for t in sorted(summed, key=lambda t: (order.get(t, len(order)), t))
    }


def diff_inline(bucket: Bucket, run: Run, diff: DiffPlan, *, workdir: Path) -> AudiencePlan:
    """Every shard one after another in this Lambda, then the collect: a small audience's
    plan, at the cost of one Lambda (the Map's children do the same work side by side)."""
    for shard in SHARD_NAMES:
        diff_planned_shard(bucket, run, diff, shard, workdir=workdir)
    return collect_diff(bucket, run, diff, workdir=workdir)


def plan_audience(
    bucket: Bucket, run: Run, audience_id: str, *, batch_size: int, workdir: Path
) -> AudiencePlan:
    """Diff the validated members against what TikTok may hold, one shard at a time.

    /tmp holds one shard's worth (its new members, committed snapshot, pending changes and
    results) at a time; each shard's outputs go to the plan's prefix as soon as it is done.
    """
    planned = prepare_diff(bucket, run, audience_id, batch_size=batch_size)
    if isinstance(planned, AudiencePlan):
        return planned
    return diff_inline(bucket, run, planned, workdir=workdir)
