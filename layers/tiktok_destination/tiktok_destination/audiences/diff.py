"""The inputs of an audience diff, fixed when it is planned, and the diff of one shard.

A :class:`DiffPlan` (``diff.json``) names where each shard of each set is read from: the
validated members, the committed snapshot (and the ETag it had: shards diffed against
different snapshots would mix two bases), and the adds and deletes of pending runs. The
committed snapshot is a manifest (``snapshot.json``) naming one immutable file per non-empty
shard; a one-file ``snapshot.txt`` (and pending ``adds.txt``/``deletes.txt``) of an earlier
version is split by shard when read.

:func:`diff_planned_shard` diffs one shard, its done marker last: a small audience runs every
shard in the Chunk Lambda, a larger one (:func:`estimated_members`) a DiffShards Map child
per shard.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiktok_destination import sorting
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences.shards import (
    SCHEMA_ORDER,
    SHARD_COUNTS,
    SHARD_NAMES,
    BatchWriter,
    ShardedSet,
    diff_shard,
)
from tiktok_destination.errors import DestinationError
from tiktok_destination.runs.layout import PLAN_LAYOUT, AudienceKeys, PlanPaths
from tiktok_destination.runs.run import Run


@dataclass
class DiffPlan:
    """One plan's diff inputs, fixed when it is planned (``diff.json`` in the plan prefix).

    Every shard's diff, inline or in its own Map child, reads exactly these: the new member
    set, the committed snapshot (and the ETag it had when planned), the pending runs' sets.
    """

    run_id: str
    plan_id: str
    prefix: str
    audience_id: str
    batch_size: int
    committed_etag: str | None
    pending: list[str]
    new: ShardedSet
    committed: ShardedSet
    pending_adds: list[ShardedSet]
    pending_deletes: list[ShardedSet]

    @property
    def key(self) -> str:
        return PlanPaths(self.prefix).diff

    @property
    def items_key(self) -> str:
        """The DiffShards Map's items: one per shard."""
        return PlanPaths(self.prefix).diff_items

    def marker(self, shard: str) -> str:
        """Written last by a shard's diff: its counts, batch files and tails."""
        return PlanPaths(self.prefix).diff_marker(shard)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan_id": self.plan_id,
            "prefix": self.prefix,
            "audience_id": self.audience_id,
            "batch_size": self.batch_size,
            "committed_etag": self.committed_etag,
            "pending": self.pending,
            "new": self.new.as_dict(),
            "committed": self.committed.as_dict(),
            "pending_adds": [s.as_dict() for s in self.pending_adds],
            "pending_deletes": [s.as_dict() for s in self.pending_deletes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffPlan:
        return cls(
            run_id=str(data["run_id"]),
            plan_id=str(data["plan_id"]),
            prefix=str(data["prefix"]),
            audience_id=str(data["audience_id"]),
            batch_size=int(data["batch_size"]),
            committed_etag=data.get("committed_etag"),
            pending=[str(p) for p in data.get("pending") or []],
            new=ShardedSet.from_dict(data["new"]),
            committed=ShardedSet.from_dict(data["committed"]),
            pending_adds=[ShardedSet.from_dict(s) for s in data.get("pending_adds") or []],
            pending_deletes=[ShardedSet.from_dict(s) for s in data.get("pending_deletes") or []],
        )


def committed_set(bucket: Bucket, keys: AudienceKeys) -> tuple[str | None, ShardedSet]:
    """The committed snapshot (its manifest's ETag, its shards), or the legacy one-file one."""
    etag = bucket.etag(keys.snapshot)
    if etag:
        manifest = bucket.get_json(keys.snapshot) or {}
        shards = {str(s): [str(k)] for s, k in dict(manifest.get("shards") or {}).items()}
        return etag, ShardedSet("committed", shards)
    legacy = bucket.etag(keys.legacy_snapshot)
    if legacy:
        return f"legacy:{legacy}", ShardedSet("committed", whole=[keys.legacy_snapshot])
    return None, ShardedSet("committed")


def _committed_etag(bucket: Bucket, keys: AudienceKeys) -> str | None:
    """What names the committed snapshot in a plan id (``committed_set``'s first value)."""
    etag = bucket.etag(keys.snapshot)
    if etag:
        return etag
    legacy = bucket.etag(keys.legacy_snapshot)
    return f"legacy:{legacy}" if legacy else None


def new_members(bucket: Bucket, index_key: str) -> ShardedSet:
    """Validate's output as a sharded set: shard ``x`` is every range's ``shard-x.txt``."""
    index = bucket.get_json(index_key)
    if index is None:
        raise DestinationError(
            f"{bucket.uri(index_key)} is missing: validate did not finish; re-run the input"
        )
    keys: dict[str, list[str]] = {}
    whole: list[str] = []
    for file in index["files"]:
        if file.get("shard") is None:
            whole.append(str(file["key"]))  # an index written before validate sharded
        else:
            keys.setdefault(str(file["shard"]), []).append(str(file["key"]))
    return ShardedSet("new", keys, whole)


def pending_sets(
    bucket: Bucket, keys: AudienceKeys, pending: Sequence[str]
) -> tuple[list[ShardedSet], list[ShardedSet]]:
    """The adds and the deletes of every pending run, one sharded set per run and action."""
    adds: list[ShardedSet] = []
    deletes: list[ShardedSet] = []
    for other in pending:
        journal = bucket.get_json(keys.pending(other)) or {}
        other_prefix = journal.get("plan_prefix")
        if not other_prefix:
            continue
        other_plan = PlanPaths(str(other_prefix))
        for action, into in (("adds", adds), ("deletes", deletes)):
            name = f"pending-{other}-{action}"
            if journal.get("layout") == PLAN_LAYOUT:
                # Empty shards were never written: a missing shard file is an empty shard.
                found = {obj["Key"] for obj in bucket.list(other_plan.shard_prefix(action))}
                shards = {s: other_plan.shard_file(action, s) for s in SHARD_NAMES}
                into.append(ShardedSet(name, {s: [k] for s, k in shards.items() if k in found}))
            elif bucket.exists(other_plan.whole_file(action)):
                into.append(ShardedSet(name, whole=[other_plan.whole_file(action)]))
    return adds, deletes


def load_diff(bucket: Bucket, run: Run, plan_id: str) -> DiffPlan:
    key = f"{run.paths.plan(plan_id)}diff.json"
    data = bucket.get_json(key)
    if data is None:
        raise DestinationError(
            f"{bucket.uri(key)} is missing: the audience diff was not planned; re-run the input"
        )
    return DiffPlan.from_dict(data)


def check_committed(bucket: Bucket, run: Run, diff: DiffPlan) -> None:
    """Stop when the committed snapshot is no longer the one the diff was planned against:
    shards diffed against different snapshots would mix two bases."""
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    if _committed_etag(bucket, keys) != diff.committed_etag:
        raise DestinationError(
            f"the committed snapshot {bucket.uri(keys.snapshot)} changed after plan "
            f"{diff.plan_id} was made (another run committed in between), so nothing of this "
            "plan was sent; re-run the same input to plan against the new snapshot"
        )


def diff_planned_shard(
    bucket: Bucket, run: Run, diff: DiffPlan, shard: str, *, workdir: Path
) -> dict[str, Any]:
    """Diff one shard of the plan: its snapshot, adds and deletes files, its full batches and
    a tail of fewer than a batch per action, then its marker, last. A shard whose marker
    exists is returned at once, so a re-run diffs only the shards that did not finish.

    ``workdir`` is where a one-file set of an earlier version is split (once per set, kept
    for the shards after this one); the shard itself works in ``workdir/shard-<x>``.
    """
    if shard not in SHARD_NAMES:
        raise DestinationError(
            f"shard {shard!r} of plan {diff.plan_id} is not one of {SHARD_NAMES[0]}-"
            f"{SHARD_NAMES[-1]} (a DiffShards item not written by ChunkAudience); re-run the input"
        )
    marker = diff.marker(shard)
    done = bucket.get_json(marker)
    if done is not None:
        return dict(done)
    check_committed(bucket, run, diff)
    scratch = workdir / f"shard-{shard}"
    scratch.mkdir()
    new_path, committed_path = scratch / "new.txt", scratch / "committed.txt"
    diff.new.fetch(bucket, shard, new_path, scratch=scratch, workdir=workdir)
    diff.committed.fetch(bucket, shard, committed_path, scratch=scratch, workdir=workdir)
    adds_in = [scratch / f"pending-adds-{n}.txt" for n in range(len(diff.pending_adds))]
    deletes_in = [scratch / f"pending-deletes-{n}.txt" for n in range(len(diff.pending_deletes))]
    for source, path in zip(
        [*diff.pending_adds, *diff.pending_deletes], [*adds_in, *deletes_in], strict=True
    ):
        source.fetch(bucket, shard, path, scratch=scratch, workdir=workdir)
    adds_path, deletes_path = scratch / "adds.txt", scratch / "deletes.txt"
    part = diff_shard(
        new_path,
        committed_path,
        adds_in,
        deletes_in,
        adds_out=adds_path,
        deletes_out=deletes_path,
        workdir=scratch,
    )
    paths = PlanPaths(diff.prefix)
    # Empty shards are not written; a reader takes a missing shard file as empty (the marker
    # says the shard was diffed).
    for path, key, count in (
        (new_path, paths.shard_file("snapshot", shard), part.members),
        (adds_path, paths.shard_file("adds", shard), part.added),
        (deletes_path, paths.shard_file("deletes", shard), part.removed),
    ):
        if count:
            bucket.upload(path, key)
    record: dict[str, Any] = {"shard": shard} | {n: getattr(part, n) for n in SHARD_COUNTS}
    record["by_type"] = part.by_type
    record["snapshot_key"] = paths.shard_file("snapshot", shard) if part.members else None
    record["batches"], record["tails"] = {}, {}
    for action, path in (("delete", deletes_path), ("add", adds_path)):
        writer = BatchWriter(bucket, diff.prefix, f"{action}-{shard}", diff.batch_size, scratch)
        writer.extend(sorting.read_lines(path))
        tail = None
        if writer.lines:
            key = paths.tail(action, shard)
            bucket.put_text(key, "".join(writer.lines))
            tail = [key, len(writer.lines)]
        record["batches"][action] = [list(b) for b in writer.batches]
        record["tails"][action] = tail
    shutil.rmtree(scratch)
    bucket.put_json(marker, record)  # last: the shard is diffed
    return record


#: The shortest member line, ``IDFA_SHA256<tab><64 hex><newline>``: a file of N bytes holds
#: at most N // this many members.
_MIN_LINE_BYTES = min(len(s) for s in SCHEMA_ORDER) + 1 + 64 + 1


def estimated_members(bucket: Bucket, run: Run, diff: DiffPlan) -> int:
    """At least the members the diff reads: the validated ones plus the committed ones.

    From counts (each validated file's lines; ``members`` in the snapshot manifest), else
    from object sizes: only ever too high, so a large audience is never diffed in one Lambda
    by mistake.
    """
    index = bucket.get_json(run.paths.members) or {}
    total = 0
    for file in index.get("files") or []:
        lines = file.get("lines")
        total += int(lines) if lines is not None else _max_lines(bucket, str(file["key"]))
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    manifest = bucket.get_json(keys.snapshot) if diff.committed.keys else None
    if manifest and manifest.get("members") is not None:
        return total + int(manifest["members"])
    committed = [k for found in diff.committed.keys.values() for k in found]
    return total + sum(_max_lines(bucket, k) for k in [*committed, *diff.committed.whole])


def _max_lines(bucket: Bucket, key: str) -> int:
    head = bucket.head(key)
    return int(head["ContentLength"]) // _MIN_LINE_BYTES if head else 0
