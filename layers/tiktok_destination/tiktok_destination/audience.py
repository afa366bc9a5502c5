"""Custom audiences: find or create the audience, plan add/delete batches, send, commit.

Membership is tracked per hashed identifier ("EMAIL_SHA256\\t<hash>"), the unit TikTok
matches on, so a person whose phone changed costs one delete and one add, not a re-upload.

The diff base is what TikTok *may* hold, not only the last committed snapshot: batches of
runs that never committed (``pending/`` journals) may have been applied. So

    maybe_present  = committed | adds of pending runs      ->  deletes = maybe_present - new
    surely_present = committed - deletes of pending runs   ->  adds    = new - surely_present

which is why a failed run followed by a newer file still converges on the newer file.

Mirror semantics make a bad export dangerous, so a plan is guarded before anything is
uploaded or sent (:func:`check_removal`): its size is what TikTok may hold (``maybe_present``,
the same base the deletes come from, so the removed share is never above 1).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import sorting
from .audience_names import tiktok_visible_name
from .errors import (
    AudienceLimitReached,
    DestinationError,
    MassRemovalBlocked,
    TikTokRequestRejected,
    TikTokUnavailable,
)
from .identifiers import ID_TYPES, SCHEMA
from .ranges import validated_lines
from .runs import Run
from .storage import Bucket
from .tiktok.client import TikTokClient

logger = logging.getLogger(__name__)

AUDIENCE_LIMIT = 400
SCHEMA_ORDER = tuple(SCHEMA[t] for t in ID_TYPES)
#: written into a plan's prefix when its members became the committed snapshot
COMMITTED_MARKER = "committed.json"


class AudienceKeys:
    """Keys under ``audiences/<advertiser>/<name hash>/``: registry, snapshot, journals."""

    def __init__(self, advertiser_id: str, audience_name: str):
        digest = hashlib.sha256(audience_name.encode()).hexdigest()[:16]
        self.prefix = f"audiences/{advertiser_id}/{digest}/"

    @property
    def registry(self) -> str:
        return f"{self.prefix}audience.json"

    @property
    def snapshot(self) -> str:
        return f"{self.prefix}snapshot.txt"

    @property
    def pending_prefix(self) -> str:
        return f"{self.prefix}pending/"

    def pending(self, run_id: str) -> str:
        return f"{self.pending_prefix}{run_id}.json"


# ------------------------------------------------------------------ ensure
def ensure_audience(client: TikTokClient, bucket: Bucket, run: Run) -> dict[str, Any]:
    """Return the audience id for the run's template, creating the audience at most once."""
    template = run.resolved
    advertiser_id = template.advertiser_id
    name = template.audience_name or ""
    keys = AudienceKeys(advertiser_id, name)
    registry = bucket.get_json(keys.registry)
    if registry and registry.get("audience_id"):
        audience_id = str(registry["audience_id"])
        found = client.get(
            "dmp/custom_audience/list/",
            {
                "advertiser_id": advertiser_id,
                "custom_audience_ids": [audience_id],
                "page": 1,
                "page_size": 1,
            },
        )
        if any(str(a.get("audience_id")) == audience_id for a in found.get("list", [])):
            return {"audience_id": audience_id, "created": False, "found_by": "registry"}
        logger.warning(
            "audience from the registry no longer exists in TikTok; looking it up by name",
            extra={"audience_id": audience_id, "advertiser_id": advertiser_id},
        )
        _forget_membership(bucket, keys)

    visible = tiktok_visible_name(name)
    # Another template's audience may show the same name (configs checked before the rule
    # existed, or edited since): never adopt one another registry holds.
    held = _held_by_other_templates(bucket, advertiser_id, keys)
    matches, total = _find_by_name(client, advertiser_id, name, held)
    if matches:
        audience_id = _oldest(matches, advertiser_id)
        found_by = "name"
        created = False
        # Found by name, not by our registry: we do not know what it holds, so the next
        # plan must treat everything as possibly present (no committed snapshot to trust).
        _forget_membership(bucket, keys)
    else:
        if total >= AUDIENCE_LIMIT:
            raise AudienceLimitReached(
                f"advertiser {advertiser_id} already has {total} custom audiences "
                f"(TikTok's limit is {AUDIENCE_LIMIT}), so '{visible}' cannot be created: "
                "delete unused audiences in TikTok Ads Manager, then re-run"
            )
        audience_id, found_by = _create_once(client, bucket, keys, advertiser_id, name, held)
        created = True
    bucket.put_json(
        keys.registry,
        {"advertiser_id": advertiser_id, "audience_id": audience_id, "name": name},
    )
    return {"audience_id": audience_id, "created": created, "found_by": found_by}


#: creates sent for one ensure when each answer is lost (timeout, 5xx) and the name
#: lookup after it finds nothing; then the state machine retries the step later
CREATE_ATTEMPTS = 3


def _create_once(
    client: TikTokClient,
    bucket: Bucket,
    keys: AudienceKeys,
    advertiser_id: str,
    name: str,
    held: set[str],
) -> tuple[str, str]:
    """Create the audience; after an answer that was lost, look before creating again.

    A create is not idempotent: a timed-out create may still have made the audience, and
    sending it again would make a second one with the same name.
    """
    visible = tiktok_visible_name(name)
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return client.create_audience(advertiser_id, name), "created"
        except TikTokUnavailable as err:
            logger.warning(
                "the answer to creating the audience was lost; looking it up by name",
                extra={"advertiser_id": advertiser_id, "attempt": attempt, "error": err.code},
            )
            lost = err
        except TikTokRequestRejected as err:
            if "limit" in err.message.lower():
                raise AudienceLimitReached(
                    f"TikTok refused to create audience '{visible}' for advertiser "
                    f"{advertiser_id}: the custom audience limit is reached ({err.message}). "
                    "Delete unused audiences in TikTok Ads Manager, then re-run",
                    code=err.code,
                    request_id=err.request_id,
                ) from None
            raise
        matches, _ = _find_by_name(client, advertiser_id, name, held)
        if matches:
            # The lost create did make it; no snapshot of ours can describe it yet.
            _forget_membership(bucket, keys)
            return _oldest(matches, advertiser_id), "created (answer lost, found by name)"
    raise TikTokUnavailable(
        f"creating audience '{visible}' for advertiser {advertiser_id} got no usable answer "
        f"{CREATE_ATTEMPTS} times and the audience is not listed; the step will be retried, "
        "looking the name up before creating again",
        code=lost.code,
        request_id=lost.request_id,
    )


def _find_by_name(
    client: TikTokClient, advertiser_id: str, name: str, held: set[str]
) -> tuple[list[dict[str, Any]], int]:
    """Partner audiences listed under ``name`` (as TikTok shows it) that no other registry
    holds, and how many audiences the advertiser has in all."""
    visible = tiktok_visible_name(name)
    matches: list[dict[str, Any]] = []
    total = 0
    for audience in client.iter_audiences(advertiser_id):
        total += 1
        if (
            audience.get("name") in (name, visible)
            and audience.get("audience_type", "Partner") in ("Partner", "PARTNER")
            and str(audience.get("audience_id")) not in held
        ):
            matches.append(audience)
    return matches, total


def _oldest(matches: list[dict[str, Any]], advertiser_id: str) -> str:
    matches = sorted(
        matches, key=lambda a: (str(a.get("create_time", "")), str(a.get("audience_id")))
    )
    if len(matches) > 1:
        logger.warning(
            "several TikTok audiences share this name; using the oldest",
            extra={
                "advertiser_id": advertiser_id,
                "audience_ids": [str(m["audience_id"]) for m in matches],
            },
        )
    return str(matches[0]["audience_id"])


_REGISTRY_RE = re.compile(r"audiences/[^/]+/[0-9a-f]{16}/audience\.json")


def _held_by_other_templates(bucket: Bucket, advertiser_id: str, keys: AudienceKeys) -> set[str]:
    """Audience ids the registries of the advertiser's other audience names hold.

    One listing of ``audiences/<advertiser>/`` plus one read per registry: run only when
    the audience is looked up by name (first run, or its audience was deleted), so cheap
    at the hundreds of templates an advertiser's 400-audience limit allows.
    """
    held: set[str] = set()
    for obj in bucket.list(f"audiences/{advertiser_id}/"):
        key = obj["Key"]
        if key == keys.registry or not _REGISTRY_RE.fullmatch(key):
            continue
        registry = bucket.get_json(key)
        if registry and registry.get("audience_id"):
            held.add(str(registry["audience_id"]))
    return held


def _forget_membership(bucket: Bucket, keys: AudienceKeys) -> None:
    bucket.delete_prefix(keys.pending_prefix)
    bucket.delete(keys.snapshot)
    bucket.delete(keys.registry)


# ------------------------------------------------------------------- guard
def removal_blocked(current: int, removed: int, *, max_share: float, min_audience: int) -> bool:
    """True when a plan removing ``removed`` of ``current`` members must not be sent.

    Exactly ``max_share`` is allowed; 1 can never be exceeded, so it turns the guard off.
    """
    if current < min_audience or current == 0:
        return False
    # Compared as the decimal the configuration wrote: 0.57 * 100 is 56.99999999999999 in
    # binary floating point, which would block a removal of exactly 57%.
    return Fraction(removed, current) > Fraction(str(max_share))


def check_removal(run: Run, current: int, removed: int, added: int) -> bool:
    """Raise MassRemovalBlocked when the run's plan would remove too much of the audience.

    Returns True when the plan is over the limit but the execution input allowed it.
    """
    template = run.resolved
    max_share = template.max_removal_share
    min_audience = template.mass_removal_min_audience
    if not removal_blocked(current, removed, max_share=max_share, min_audience=min_audience):
        return False
    name = tiktok_visible_name(template.audience_name or "")
    if run.options.get("allow_mass_removal", False):
        logger.warning(
            "removal guard lifted by allow_mass_removal for this execution",
            extra={"current_members": current, "would_remove": removed, "would_add": added},
        )
        return True
    raise MassRemovalBlocked(
        f"audience '{name}' (advertiser {template.advertiser_id}): {run.source.uri} would "
        f"remove more than max_removal_share {max_share:g} of it, so nothing was sent: current "
        f"size {current:,}, would remove {removed:,} ({removed / current:.1%}), would add "
        f"{added:,}. If the file is right, start a new execution with the same input and "
        '"allow_mass_removal": true, or raise max_removal_share for this data template',
        current_members=current,
        would_remove=removed,
        would_add=added,
        max_removal_share=max_share,
        min_audience=min_audience,
    )


# -------------------------------------------------------------------- plan
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


def plan_audience(
    bucket: Bucket, run: Run, audience_id: str, *, batch_size: int, workdir: Path
) -> AudiencePlan:
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    paths = run.paths
    committed_etag = bucket.etag(keys.snapshot)
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
    existing = bucket.get_json(f"{prefix}plan.json")
    if existing and bucket.exists(f"{prefix}{COMMITTED_MARKER}"):
        # The snapshot came back to the same bytes (A, B, A, then B again): this plan was
        # sent and committed once, but TikTok has held other members since. Its done
        # markers are stale, so plan afresh.
        bucket.delete_prefix(prefix)
        existing = None
    if existing:
        # Same input, same base: reuse the plan so finished batches are not sent again.
        fields = AudiencePlan.__dataclass_fields__
        plan = AudiencePlan(**{k: v for k, v in existing.items() if k in fields})
        plan.pending_batches = plan.batches - bucket.count(f"{prefix}done/")
        return plan

    new_sorted = workdir / "members.sorted.txt"
    members = sorting.external_sort(
        validated_lines(bucket, paths.members, workdir), new_sorted, workdir=workdir
    )

    committed = workdir / "committed.txt"
    if committed_etag:
        bucket.download(keys.snapshot, committed)
    pending_adds: list[Path] = []
    pending_deletes: list[Path] = []
    for other in pending:
        journal = bucket.get_json(keys.pending(other)) or {}
        other_prefix = journal.get("plan_prefix")
        if not other_prefix:
            continue
        for name, into in (("adds.txt", pending_adds), ("deletes.txt", pending_deletes)):
            local = workdir / f"pending-{other}-{name}"
            if bucket.exists(f"{other_prefix}{name}"):
                bucket.download(f"{other_prefix}{name}", local)
                into.append(local)

    adds_path, deletes_path = workdir / "adds.txt", workdir / "deletes.txt"
    read = sorting.read_lines
    maybe_present = _Counted(sorting.union(read(committed), *(read(p) for p in pending_adds)))
    removed = _write(deletes_path, sorting.difference(maybe_present, read(new_sorted)))
    # surely_present is read twice (adds and unchanged), so it goes to disk once.
    surely_path = workdir / "surely.txt"
    _write(
        surely_path,
        sorting.difference(read(committed), sorting.union(*(read(p) for p in pending_deletes))),
    )
    added = _write(adds_path, sorting.difference(read(new_sorted), read(surely_path)))
    unchanged = sum(1 for _ in sorting.intersection(read(new_sorted), read(surely_path)))
    surely_path.unlink()
    # Before any upload: a blocked plan leaves no plan.json to be reused, no manifest for the
    # Map, and no pending journal (TikTok cannot hold any of it).
    mass_removal_allowed = check_removal(run, maybe_present.count, removed, added)

    manifest: list[dict[str, Any]] = []
    for action, source in (("delete", deletes_path), ("add", adds_path)):
        for count, batch in _split(source, batch_size, workdir):
            index = len(manifest) + 1
            key = f"{prefix}batches/{index:05d}-{action}.txt"
            bucket.upload(batch, key)
            batch.unlink()
            manifest.append(
                {"index": index, "action": action, "key": key, "count": count, "plan_id": plan_id}
            )
    bucket.upload(new_sorted, f"{prefix}members.sorted.txt")
    bucket.upload(adds_path, f"{prefix}adds.txt")
    bucket.upload(deletes_path, f"{prefix}deletes.txt")
    manifest_key = f"{prefix}manifest.json"
    bucket.put_json(manifest_key, manifest)
    # The journal goes up before any batch is sent: from now on TikTok may hold these changes.
    bucket.put_json(
        keys.pending(run.run_id),
        {"run_id": run.run_id, "plan_prefix": prefix, "pending_base": pending},
    )
    plan = AudiencePlan(
        plan_id=plan_id,
        manifest_key=manifest_key,
        batches=len(manifest),
        pending_batches=len(manifest),
        members=members,
        added=added,
        removed=removed,
        unchanged=unchanged,
    )
    bucket.put_json(
        f"{prefix}plan.json",
        plan.as_dict() | {"pending_base": pending, "mass_removal_allowed": mass_removal_allowed},
    )
    return plan


class _Counted:
    """Counts the lines of a stream as a consumer reads it."""

    def __init__(self, lines: Iterable[str]):
        self.lines = lines
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.count += 1
            yield line


def _write(path: Path, lines: Iterator[str]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            count += 1
    return count


def _split(source: Path, size: int, workdir: Path) -> Iterator[tuple[int, Path]]:
    batch_no = 0
    with source.open(encoding="utf-8") as fh:
        while True:
            lines = [line for _, line in zip(range(size), fh, strict=False)]
            if not lines:
                return
            batch_no += 1
            path = workdir / f"batch-{batch_no:05d}.txt"
            path.write_text("".join(lines), encoding="utf-8")
            yield len(lines), path


# --------------------------------------------------------------------- map
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
    done_key = f"{prefix}done/{int(batch['index']):05d}.json"
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


# ------------------------------------------------------------------ commit
def commit_audience(bucket: Bucket, run: Run, plan_id: str) -> dict[str, Any]:
    """Promote the plan's member set to the committed snapshot; only after every batch."""
    template = run.resolved
    keys = AudienceKeys(template.advertiser_id, template.audience_name or "")
    prefix = run.paths.plan(plan_id)
    plan = bucket.get_json(f"{prefix}plan.json")
    if plan is None:
        raise DestinationError(f"plan {prefix} not found; re-run the input")
    done = {Path(o["Key"]).stem for o in bucket.list(f"{prefix}done/")}
    missing = [i for i in range(1, int(plan["batches"]) + 1) if f"{i:05d}" not in done]
    if missing:
        raise DestinationError(
            f"{len(missing)} of {plan['batches']} batches did not finish (first: {missing[0]}); "
            "the snapshot was not committed. Re-run the same input to send them"
        )
    bucket.s3.copy_object(
        Bucket=bucket.name,
        Key=keys.snapshot,
        CopySource={"Bucket": bucket.name, "Key": f"{prefix}members.sorted.txt"},
    )
    for other in [run.run_id, *plan.get("pending_base", [])]:
        bucket.delete(keys.pending(other))
    bucket.put_json(f"{prefix}{COMMITTED_MARKER}", {"run_id": run.run_id})
    return {"committed": True, "members": plan["members"]}


__all__ = [
    "AudienceKeys",
    "AudiencePlan",
    "batch_rows",
    "check_removal",
    "commit_audience",
    "ensure_audience",
    "plan_audience",
    "removal_blocked",
    "send_batch",
    "tiktok_visible_name",
]
