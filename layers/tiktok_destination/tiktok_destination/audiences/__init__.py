"""Custom audiences: find or create, diff against the last sync, guard removals, send, commit.

- ``keys``: where an audience's state lives in S3 (registry, snapshot, pending journals).
- ``ensure``: find or create the audience in TikTok; the lookups after a lost create.
- ``shards``: member sets kept in shards; the diff of one shard by sorted merges.
- ``diff``: a diff's inputs, fixed when planned; the diff of one planned shard.
- ``guard``: the removal guard (mass removal, per identifier type, vanished columns).
- ``plan``: the shards' diffs added up, guarded, cut into batches, journaled.
- ``send``: one ``segment/mapping`` batch.
- ``commit``: a sent plan's members become the committed snapshot.
"""

from tiktok_destination.audiences.commit import commit_audience
from tiktok_destination.audiences.diff import (
    DiffPlan,
    diff_planned_shard,
    estimated_members,
    load_diff,
)
from tiktok_destination.audiences.ensure import ensure_audience
from tiktok_destination.audiences.plan import (
    AudiencePlan,
    collect_diff,
    diff_inline,
    plan_audience,
    prepare_diff,
)
from tiktok_destination.audiences.send import send_batch

__all__ = [
    "AudiencePlan",
    "DiffPlan",
    "collect_diff",
    "commit_audience",
    "diff_inline",
    "diff_planned_shard",
    "ensure_audience",
    "estimated_members",
    "load_diff",
    "plan_audience",
    "prepare_diff",
    "send_batch",
]
