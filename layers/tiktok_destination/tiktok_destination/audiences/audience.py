"""Custom audiences: find or create the audience, plan add/delete batches, send, commit.

Membership is tracked per hashed identifier ("EMAIL_SHA256\\t<hash>"), the unit TikTok
matches on, so a person whose phone changed costs one delete and one add, not a re-upload.

The diff base is what TikTok *may* hold, not only the last committed snapshot: batches of
runs that never committed (``pending/`` journals) may have been applied. So

    maybe_present  = committed | adds of pending runs      ->  deletes = maybe_present - new
    surely_present = committed - deletes of pending runs   ->  adds    = new - surely_present

which is why a failed run followed by a newer file still converges on the newer file.

Every set is kept in ``ranges.SHARDS`` shards by the first hex character of the SHA-256, the
way validate writes them, and the diff runs one shard at a time (sorted merges, so /tmp holds
one shard's worth): an identifier is in exactly one shard, so the union of the shards' diffs
is the diff of the whole sets. The committed snapshot is a manifest (``snapshot.json``)
naming one immutable file per non-empty shard under ``snapshots/<generation>/``; the commit
writes those files first and the manifest last, so it switches the snapshot in one PUT and a
commit that stops leaves the old one fully in force. A one-file ``snapshot.txt`` (and pending
``adds.txt``/``deletes.txt``) of an earlier version is split by shard when read.

One function diffs one shard (:func:`diff_planned_shard`, done marker last) and one adds the
shards up (:func:`collect_diff`): a small audience runs them in the Chunk Lambda, shard after
shard (:func:`diff_inline`); a larger one in the DiffShards Distributed Map, a child a shard,
then the CollectShards step.

Mirror semantics make a bad export dangerous, so a plan is guarded before anything is
uploaded or sent (:func:`check_removal`): its size is what TikTok may hold (``maybe_present``,
the same base the deletes come from, so the removed share is never above 1), in total and per
identifier type (each shard counts its members by type); and a file without a column for a
type the last commit held members of (``members_by_type`` in the snapshot manifest) stops too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from tiktok_destination import sorting
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.names import tiktok_visible_name
from tiktok_destination.errors import (
    AudienceLimitReached,
    DestinationError,
    MassRemovalBlocked,
    RetriableError,
    TikTokRequestRejected,
    TikTokUnavailable,
)
from tiktok_destination.identity.columns import near_miss
from tiktok_destination.identity.identifiers import ID_TYPES, SCHEMA
from tiktok_destination.inputs.ranges import SHARDS
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.range_outputs import shard_members

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
        """The committed snapshot: a manifest naming one immutable file per shard."""
        return f"{self.prefix}snapshot.json"

    @property
    def legacy_snapshot(self) -> str:
        """The one-file snapshot of earlier versions, read while no manifest exists."""
        return f"{self.prefix}snapshot.txt"

    @property
    def generations_prefix(self) -> str:
        return f"{self.prefix}snapshots/"

    def generation(self, plan_id: str, shard: str) -> str:
        return f"{self.generations_prefix}{plan_id}/shard-{shard}.txt"

    @property
    def pending_prefix(self) -> str:
        return f"{self.prefix}pending/"

    def pending(self, run_id: str) -> str:
        return f"{self.pending_prefix}{run_id}.json"


# ------------------------------------------------------------------ ensure
def ensure_audience(
    client: TikTokClient,
    bucket: Bucket,
    run: Run,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Return the audience id for the run's template, creating the audience at most once.

    ``duplicate_audience_ids``: other partner audiences of the name in TikTok, seen when the
    audience was looked up by name; they are left alone (never deleted) and reported.
    ``sleep`` is what the lookups after a lost create wait with (tests pass a fake one).
    """
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
            return _ensured(audience_id, created=False, found_by="registry")
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
        audience_id, duplicates = _oldest(matches, advertiser_id)
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
        audience_id, found_by, duplicates = _create_once(
            client, bucket, keys, advertiser_id, name, held, sleep
        )
        created = True
    bucket.put_json(
        keys.registry,
        {"advertiser_id": advertiser_id, "audience_id": audience_id, "name": name},
    )
    return _ensured(audience_id, created=created, found_by=found_by, duplicates=duplicates)


def _ensured(
    audience_id: str, *, created: bool, found_by: str, duplicates: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "audience_id": audience_id,
        "created": created,
        "found_by": found_by,
        "duplicate_audience_ids": list(duplicates),
    }


#: creates sent for one ensure when each answer is lost (timeout, 5xx) and the name
#: lookups after it find nothing; then the state machine retries the step later
CREATE_ATTEMPTS = 3
#: after a lost create, the name is looked up after waits doubling from this (seconds)...
LOOKUP_FIRST_WAIT = 1.0
#: ...up to this, until they add up to LOOKUP_WINDOW_TIMEOUTS times the client's timeout
LOOKUP_MAX_WAIT = 15.0
LOOKUP_WINDOW_TIMEOUTS = 2
# Time budget, at the default client timeout of 30 s (tiktok.client.DEFAULT_TIMEOUT): a lost
# create costs at most the timeout (30 s), then 60 s of waits (1+2+4+8+15+15+15) and 7 name
# lookups (one listing each: at most 4 pages of 100 for TikTok's 400 audiences, about 1 s at
# 10 QPS). CREATE_ATTEMPTS rounds: 3 x (30 + 60 + ~4) = ~282 s of the AudienceFunction's
# Timeout: 600 s in template.yaml (Lambda allows 900 s); at the largest
# TIKTOK_TIMEOUT_SECONDS (settings.MAX_TIKTOK_TIMEOUT, 50 s; 10 lookups): 3 x (50 + 100 +
# ~6) = ~468 s (tests/unit/test_settings.py checks this against template.yaml).
# The EnsureAudience state's Retry (statemachine/destination.asl.json: TikTokUnavailable,
# 4 more attempts after 5/10/20/40 s) starts a new invocation only after one ended, which
# (when its last create was lost) is after a full window of lookups: so no create is ever
# sent within the window of an earlier lost one, even across invocations.


def lost_create_waits(timeout: float) -> list[float]:
    """The waits before each name lookup after a create whose answer was lost.

    A create TikTok received may be applied after the client stopped waiting, so "not listed"
    right after a timeout proves nothing: the lookups go on for twice the client's timeout
    (longer than a create the client waited for can take), from quick to patient.
    """
    window = LOOKUP_WINDOW_TIMEOUTS * timeout
    wait = min(LOOKUP_FIRST_WAIT, window / 8)
    waits: list[float] = []
    left = window
    while left > 1e-9:
        waits.append(min(wait, left))
        left -= waits[-1]
        wait = min(wait * 2, LOOKUP_MAX_WAIT)
    return waits


def _create_once(
    client: TikTokClient,
    bucket: Bucket,
    keys: AudienceKeys,
    advertiser_id: str,
    name: str,
    held: set[str],
    sleep: Callable[[float], None],
) -> tuple[str, str, list[str]]:
    """Create the audience; after an answer that was lost, look before creating again.

    A create is not idempotent: a timed-out create may still make the audience, even after
    the client gave up, and sending it again would make a second one with the same name.
    """
    visible = tiktok_visible_name(name)
    lost: TikTokUnavailable | None = None
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            audience_id = client.create_audience(advertiser_id, name)
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
        else:
            if lost is None:
                return audience_id, "created", []
            # An earlier create was lost: it may have landed since the last lookup.
            matches, _ = _find_by_name(client, advertiser_id, name, held)
            if len(matches) > 1:
                oldest, duplicates = _oldest(matches, advertiser_id)
                return oldest, "created (earlier create landed too)", duplicates
            return audience_id, "created", []
        matches = _look_after_lost_create(client, advertiser_id, name, held, sleep)
        if matches:
            # The lost create did make it; no snapshot of ours can describe it yet.
            _forget_membership(bucket, keys)
            oldest, duplicates = _oldest(matches, advertiser_id)
            return oldest, "created (answer lost, found by name)", duplicates
    assert lost is not None
    raise TikTokUnavailable(
        f"creating audience '{visible}' for advertiser {advertiser_id} got no usable answer "
        f"{CREATE_ATTEMPTS} times and the audience is not listed; the step will be retried, "
        "looking the name up before creating again",
        code=lost.code,
        request_id=lost.request_id,
    )


def _look_after_lost_create(
    client: TikTokClient,
    advertiser_id: str,
    name: str,
    held: set[str],
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    """The audiences of the name, looked for with backoff for the whole window; a lookup
    that fails inside the window is not a reason to stop waiting (nor to create again)."""
    waits = lost_create_waits(client.timeout)
    failed: RetriableError | None = None
    for wait in waits:
        sleep(wait)
        try:
            matches, _ = _find_by_name(client, advertiser_id, name, held)
        except RetriableError as err:
            failed = err
            continue
        if matches:
            return matches
        failed = None
    if failed is not None:
        # The last look failed: "not listed" is not known, so do not create; the step's
        # retry looks again first.
        raise failed
    logger.warning(
        "the audience is still not listed after a lost create; creating it again",
        extra={"advertiser_id": advertiser_id, "waited_seconds": round(sum(waits), 3)},
    )
    return []


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


def _oldest(matches: list[dict[str, Any]], advertiser_id: str) -> tuple[str, list[str]]:
    """The oldest audience of the name, and the ids of the others (left alone in TikTok:
    one may hold what someone else put there, so they are reported, never deleted)."""
    matches = sorted(
        matches, key=lambda a: (str(a.get("create_time", "")), str(a.get("audience_id")))
    )
    oldest = str(matches[0]["audience_id"])
    others = [str(m["audience_id"]) for m in matches[1:]]
    if others:
        logger.warning(
            "several TikTok audiences share this name; using the oldest, %s, and leaving "
            "the others (not deleted): %s",
            oldest,
            ", ".join(others),
            extra={"advertiser_id": advertiser_id, "duplicate_audience_ids": others},
        )
    return oldest, others


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
    bucket.delete(keys.legacy_snapshot)
    bucket.delete_prefix(keys.generations_prefix)
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


@dataclass(frozen=True)
class TypeCounts:
    """One identifier type's share of a plan: members TikTok may hold, removes, adds."""

    current: int
    removed: int
    added: int


@dataclass(frozen=True)
class LastSync:
    """What the committed snapshot's manifest says of the sync that wrote it."""

    members_by_type: Mapping[str, int]
    run_id: str | None = None
    source: str | None = None
    started_at: str | None = None

    def describe(self) -> str:
        said = [
            f"run {self.run_id}" if self.run_id else "",
            f"of {self.source}" if self.source else "",
            f"started {self.started_at}" if self.started_at else "",
        ]
        return " ".join(p for p in said if p) or "the committed snapshot"


def types_over_share(
    current: int, by_type: Mapping[str, TypeCounts], *, max_share: float, min_audience: int
) -> list[str]:
    """Identifier types of which the plan removes more than ``max_share``.

    Guarded when the audience as a whole is (``min_audience`` is the audience's size, not
    the type's): a header typo that removes every email is as wrong in a 2,000-member
    audience whether it held 300 emails or 1,700.
    """
    if current < min_audience:
        return []
    return [
        id_type
        for id_type in ID_TYPES
        if id_type in by_type
        and removal_blocked(
            by_type[id_type].current, by_type[id_type].removed, max_share=max_share, min_audience=0
        )
    ]


def vanished_types(last_sync: LastSync | None, columns_missing: Sequence[str]) -> list[str]:
    """Identifier types the last committed sync held that this file has no column for.

    Unknown (no ``LastSync``: no snapshot, or one committed before manifests counted members
    by type) means none: the check is skipped rather than guessed.
    """
    if last_sync is None:
        return []
    missing = {name.lower() for name in columns_missing}
    return [
        id_type
        for id_type in ID_TYPES
        if id_type.lower() in missing and int(last_sync.members_by_type.get(id_type, 0)) > 0
    ]


def check_removal(
    run: Run,
    current: int,
    removed: int,
    added: int,
    *,
    by_type: Mapping[str, TypeCounts] | None = None,
    last_sync: LastSync | None = None,
    columns: Mapping[str, Any] | None = None,
) -> bool:
    """Raise MassRemovalBlocked when the run's plan would remove too much of the audience:
    more than ``max_removal_share`` of it, or of one identifier type's members
    (``by_type``), or every member of a type whose column the file lacks although the last
    sync had members of it (``last_sync``, and validate's ``columns``: ``columns_missing``,
    ``columns_ignored``). Every check is lifted by the execution input's allow_mass_removal.

    Returns True when the plan is over a limit but the execution input allowed it.
    """
    template = run.resolved
    max_share = template.max_removal_share
    min_audience = template.mass_removal_min_audience
    types = by_type or {}
    columns = columns or {}
    total_over = removal_blocked(current, removed, max_share=max_share, min_audience=min_audience)
    over = types_over_share(current, types, max_share=max_share, min_audience=min_audience)
    vanished = vanished_types(last_sync, columns.get("columns_missing") or [])
    if not (total_over or over or vanished):
        return False
    name = tiktok_visible_name(template.audience_name or "")
    if run.options.allow_mass_removal:
        logger.warning(
            "removal guard lifted by allow_mass_removal for this execution",
            extra={
                "current_members": current,
                "would_remove": removed,
                "would_add": added,
                "types_over_share": over,
                "types_without_column": vanished,
            },
        )
        return True

    source = run.source.uri
    where = f"[data_templates.{run.data_template}]"
    whole = f"current size {current:,}, {_numbers(current, removed, added)}"
    sentences: list[str] = []
    fixes: list[str] = []
    for id_type in vanished:
        field_name = id_type.lower()
        had = int(last_sync.members_by_type.get(id_type, 0)) if last_sync else 0
        when = last_sync.describe() if last_sync else "the committed snapshot"
        sentences.append(
            f"{source} has no {field_name} column, but the last sync of this audience ({when}) "
            f"left {had:,} {id_type} members at TikTok, and this file would remove every one "
            "of them."
        )
        near = [
            column
            for column in columns.get("columns_ignored") or {}
            if column not in template.ignore_columns and near_miss(column, field_name)
        ]
        if near:
            fixes.append(
                f"Column '{near[0]}' of the file is not used and is close to {field_name}: if "
                f"it holds the {field_name}, add columns = {{ {field_name} = "
                f"{json.dumps(near[0], ensure_ascii=False)} }} to {where}."
            )
        else:
            fixes.append(
                f"If the file has the {field_name} under another header name, add columns = "
                f'{{ {field_name} = "<the header name>" }} to {where}.'
            )
    if total_over or over:
        of = (["it"] if total_over else []) + [f"its {t} members" for t in over]
        per_type = [
            f"{t} members {types[t].current:,}, "
            + _numbers(types[t].current, types[t].removed, types[t].added)
            for t in over
        ]
        if not total_over:
            whole = f"the whole audience: {whole}"
        sentences.append(
            f"{source} would remove more than max_removal_share {max_share:g} of "
            f"{' and of '.join(of)}, so nothing was sent: "
            + "; ".join([whole, *per_type] if total_over else [*per_type, whole])
            + "."
        )
    else:
        sentences.append(f"So nothing was sent ({whole}).")
    over_share = ", or raise max_removal_share for this data template"
    fixes.append(
        "If the file is right, start a new execution with the same input and "
        '"allow_mass_removal": true' + (over_share if total_over or over else "")
    )
    message = f"audience '{name}' (advertiser {template.advertiser_id}): " + " ".join(
        sentences + fixes
    )
    raise MassRemovalBlocked(
        message,
        current_members=current,
        would_remove=removed,
        would_add=added,
        max_removal_share=max_share,
        min_audience=min_audience,
        by_type=(
            {
                t: {"current_members": c.current, "would_remove": c.removed, "would_add": c.added}
                for t, c in types.items()
            }
            if by_type is not None
            else None
        ),
        types_over_share=over,
        types_without_column={
            t: int(last_sync.members_by_type.get(t, 0)) for t in vanished if last_sync
        },
    )


def _numbers(held: int, removed: int, added: int) -> str:
    share = f" ({removed / held:.1%})" if held else ""
    return f"would remove {removed:,}{share}, would add {added:,}"


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


#: Shard names, in the order a plan diffs them (``ranges.SHARDS`` of them).
SHARD_NAMES = "0123456789abcdef"[:SHARDS]
#: A plan's layout: ``shards`` keeps adds, deletes and the new snapshot per shard.
LAYOUT = "shards"


class _ShardedSet:
    """Where each shard of one sorted member set is read from.

    ``keys`` are objects that hold one shard each; ``whole`` are objects in the one-file
    layout of earlier versions (a legacy snapshot, a pending run's ``adds.txt``), split by
    shard on first use: a migration costs that file on /tmp once, then never again.
    """

    def __init__(
        self,
        name: str,
        keys: Mapping[str, Sequence[str]] | None = None,
        whole: Sequence[str] = (),
    ):
        self.name = name
        self.keys: dict[str, list[str]] = {k: list(v) for k, v in (keys or {}).items()}
        for shard, found in self.keys.items():
            _check_shard(shard, found[0] if found else name)
        self.whole = list(whole)
        self._split: dict[str, list[Path]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "keys": self.keys, "whole": self.whole}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _ShardedSet:
        keys = {str(s): [str(k) for k in found] for s, found in dict(data["keys"]).items()}
        return cls(str(data["name"]), keys, [str(k) for k in data["whole"]])

    def fetch(self, bucket: Bucket, shard: str, out: Path, *, scratch: Path, workdir: Path) -> int:
        """Write shard ``shard`` of the set, sorted and without repeats, to ``out``.

        Downloads go to the shard's ``scratch``; a one-file object is split once into
        ``workdir``, where its other shards wait for their turn.
        """
        parts = [
            bucket.download(key, scratch / f"{self.name}-{shard}-{n:05d}.part")
            for n, key in enumerate(self.keys.get(shard, ()))
        ]
        parts += self._whole_parts(bucket, workdir).get(shard, [])
        count = _write(out, sorting.union(*(sorting.read_lines(p) for p in parts)))
        for part in parts:
            part.unlink()
        return count

    def _whole_parts(self, bucket: Bucket, workdir: Path) -> dict[str, list[Path]]:
        if self._split is None:
            self._split = {}
            for n, key in enumerate(self.whole):
                into = workdir / f"{self.name}-whole-{n:05d}"
                into.mkdir()
                local = bucket.download(key, into / "whole.txt")
                for shard, path, _ in shard_members(local, into):
                    self._split.setdefault(_check_shard(shard, key), []).append(path)
                local.unlink()
        return self._split


def _check_shard(shard: str, where: str) -> str:
    """A shard the loop over ``SHARD_NAMES`` would never visit would lose its members."""
    if shard not in SHARD_NAMES:
        raise DestinationError(
            f"{where} holds members of shard {shard!r}, which is not one of "
            f"{SHARD_NAMES[0]}-{SHARD_NAMES[-1]} (a line that is not TYPE<tab>lowercase "
            "SHA-256); nothing was planned. Re-run the input; if it persists, report it"
        )
    return shard


def _committed_set(bucket: Bucket, keys: AudienceKeys) -> tuple[str | None, _ShardedSet]:
    """The committed snapshot (its manifest's ETag, its shards), or the legacy one-file one."""
    etag = bucket.etag(keys.snapshot)
    if etag:
        manifest = bucket.get_json(keys.snapshot) or {}
        shards = {str(s): [str(k)] for s, k in dict(manifest.get("shards") or {}).items()}
        return etag, _ShardedSet("committed", shards)
    legacy = bucket.etag(keys.legacy_snapshot)
    if legacy:
        return f"legacy:{legacy}", _ShardedSet("committed", whole=[keys.legacy_snapshot])
    return None, _ShardedSet("committed")


def _committed_etag(bucket: Bucket, keys: AudienceKeys) -> str | None:
    """What names the committed snapshot in a plan id (``_committed_set``'s first value)."""
    etag = bucket.etag(keys.snapshot)
    if etag:
        return etag
    legacy = bucket.etag(keys.legacy_snapshot)
    return f"legacy:{legacy}" if legacy else None


def _new_members(bucket: Bucket, index_key: str) -> _ShardedSet:
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
    return _ShardedSet("new", keys, whole)


def _pending_sets(
    bucket: Bucket, keys: AudienceKeys, pending: Sequence[str]
) -> tuple[list[_ShardedSet], list[_ShardedSet]]:
    """The adds and the deletes of every pending run, one sharded set per run and action."""
    adds: list[_ShardedSet] = []
    deletes: list[_ShardedSet] = []
    for other in pending:
        journal = bucket.get_json(keys.pending(other)) or {}
        other_prefix = journal.get("plan_prefix")
        if not other_prefix:
            continue
        for action, into in (("adds", adds), ("deletes", deletes)):
            name = f"pending-{other}-{action}"
            if journal.get("layout") == LAYOUT:
                # Empty shards were never written: a missing shard file is an empty shard.
                found = {obj["Key"] for obj in bucket.list(f"{other_prefix}{action}/")}
                shards = {s: f"{other_prefix}{action}/shard-{s}.txt" for s in SHARD_NAMES}
                into.append(_ShardedSet(name, {s: [k] for s, k in shards.items() if k in found}))
            elif bucket.exists(f"{other_prefix}{action}.txt"):
                into.append(_ShardedSet(name, whole=[f"{other_prefix}{action}.txt"]))
    return adds, deletes


class _BatchWriter:
    """Cuts lines into batch files of ``size`` lines, ``batches/<stem>-<nnnnn>.txt``.

    A shard cuts its own lines and keeps what does not fill a batch (``lines``) for collect,
    which cuts every shard's rest together: so a sharded diff sends as few requests as a
    whole-set one.
    """

    def __init__(self, bucket: Bucket, prefix: str, stem: str, size: int, workdir: Path):
        self.bucket, self.prefix, self.stem, self.size = bucket, prefix, stem, size
        self.path = workdir / f"batch-{stem}.txt"
        self.lines: list[str] = []
        self.batches: list[tuple[str, int]] = []

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.lines.append(line)
            if len(self.lines) >= self.size:
                self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        key = f"{self.prefix}batches/{self.stem}-{len(self.batches) + 1:05d}.txt"
        self.path.write_text("".join(self.lines), encoding="utf-8")
        self.bucket.upload(self.path, key)
        self.path.unlink()
        self.batches.append((key, len(self.lines)))
        self.lines = []


@dataclass
class _ShardDiff:
    members: int = 0
    maybe_present: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    #: id type (``EMAIL``...) -> the counts above that the removal guard reads per type
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)


_COUNTS = ("members", "maybe_present", "added", "removed", "unchanged")
#: the counts kept per identifier type (``_ShardDiff.by_type``)
_TYPE_COUNTS = ("members", "maybe_present", "added", "removed")
_ID_TYPE_OF_SCHEMA = {schema: id_type for id_type, schema in SCHEMA.items()}


def _by_type(**counted: Counter[str]) -> dict[str, dict[str, int]]:
    """``{"EMAIL": {"members": n, ...}}`` from Counters of member lines' schema column."""
    schemas = sorted({schema for counts in counted.values() for schema in counts})
    return {
        _ID_TYPE_OF_SCHEMA.get(schema, schema): {n: c[schema] for n, c in counted.items()}
        for schema in schemas
    }


def _typed(lines: Iterable[str], counts: Counter[str]) -> Iterator[str]:
    """The lines, counted in ``counts`` by their schema (``EMAIL_SHA256``...) as they pass."""
    for line in lines:
        counts[line[: line.find("\t")]] += 1
        yield line


def diff_shard(
    new: Path,
    committed: Path | None,
    pending_adds: Sequence[Path],
    pending_deletes: Sequence[Path],
    *,
    adds_out: Path,
    deletes_out: Path,
    workdir: Path,
) -> _ShardDiff:
    """The diff of one shard (or of a whole set): sorted merges over files, bounded memory.

    ``new`` and every input are sorted without repeats; see the module docstring for why
    the base is what TikTok may hold.
    """
    read = sorting.read_lines
    members, held, added, removed = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    result = _ShardDiff(members=sum(1 for _ in _typed(read(new), members)))
    maybe_present = _Counted(
        _typed(sorting.union(read(committed), *(read(p) for p in pending_adds)), held)
    )
    result.removed = _write(
        deletes_out, _typed(sorting.difference(maybe_present, read(new)), removed)
    )
    result.maybe_present = maybe_present.count
    # surely_present is read twice (adds and unchanged), so it goes to disk once.
    surely_path = workdir / "surely.txt"
    _write(
        surely_path,
        sorting.difference(read(committed), sorting.union(*(read(p) for p in pending_deletes))),
    )
    result.added = _write(adds_out, _typed(sorting.difference(read(new), read(surely_path)), added))
    result.unchanged = sum(1 for _ in sorting.intersection(read(new), read(surely_path)))
    surely_path.unlink()
    result.by_type = _by_type(members=members, maybe_present=held, added=added, removed=removed)
    return result


#: Manifest order: every delete batch before any add batch, as a whole-set plan sends them.
ACTIONS = ("delete", "add")


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
    new: _ShardedSet
    committed: _ShardedSet
    pending_adds: list[_ShardedSet]
    pending_deletes: list[_ShardedSet]

    @property
    def key(self) -> str:
        return f"{self.prefix}diff.json"

    @property
    def items_key(self) -> str:
        """The DiffShards Map's items: one per shard."""
        return f"{self.prefix}diff-items.json"

    def marker(self, shard: str) -> str:
        """Written last by a shard's diff: its counts, batch files and tails."""
        return f"{self.prefix}diff/shard-{shard}.json"

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
            new=_ShardedSet.from_dict(data["new"]),
            committed=_ShardedSet.from_dict(data["committed"]),
            pending_adds=[_ShardedSet.from_dict(s) for s in data.get("pending_adds") or []],
            pending_deletes=[_ShardedSet.from_dict(s) for s in data.get("pending_deletes") or []],
        )


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
    committed_etag, committed = _committed_set(bucket, keys)
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
        # markers (and shard markers) are stale, so plan afresh.
        bucket.delete_prefix(prefix)
        existing = None
    if existing:
        # Same input, same base: reuse the plan so finished batches are not sent again.
        fields = AudiencePlan.__dataclass_fields__
        plan = AudiencePlan(**{k: v for k, v in existing.items() if k in fields})
        plan.pending_batches = plan.batches - bucket.count(f"{prefix}done/")
        return plan
    pending_adds, pending_deletes = _pending_sets(bucket, keys, pending)
    diff = DiffPlan(
        run_id=run.run_id,
        plan_id=plan_id,
        prefix=prefix,
        audience_id=audience_id,
        batch_size=batch_size,
        committed_etag=committed_etag,
        pending=pending,
        new=_new_members(bucket, paths.members),
        committed=committed,
        pending_adds=pending_adds,
        pending_deletes=pending_deletes,
    )
    bucket.put_json(diff.key, diff.as_dict())
    bucket.put_json(diff.items_key, [{"shard": s, "plan_id": plan_id} for s in SHARD_NAMES])
    return diff


def load_diff(bucket: Bucket, run: Run, plan_id: str) -> DiffPlan:
    key = f"{run.paths.plan(plan_id)}diff.json"
    data = bucket.get_json(key)
    if data is None:
        raise DestinationError(
            f"{bucket.uri(key)} is missing: the audience diff was not planned; re-run the input"
        )
    return DiffPlan.from_dict(data)


def _check_committed(bucket: Bucket, run: Run, diff: DiffPlan) -> None:
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
    _check_committed(bucket, run, diff)
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
    prefix = diff.prefix
    # Empty shards are not written; a reader takes a missing shard file as empty (the marker
    # says the shard was diffed).
    for path, key, count in (
        (new_path, f"{prefix}snapshot/shard-{shard}.txt", part.members),
        (adds_path, f"{prefix}adds/shard-{shard}.txt", part.added),
        (deletes_path, f"{prefix}deletes/shard-{shard}.txt", part.removed),
    ):
        if count:
            bucket.upload(path, key)
    record: dict[str, Any] = {"shard": shard} | {n: getattr(part, n) for n in _COUNTS}
    record["by_type"] = part.by_type
    record["snapshot_key"] = f"{prefix}snapshot/shard-{shard}.txt" if part.members else None
    record["batches"], record["tails"] = {}, {}
    for action, path in (("delete", deletes_path), ("add", adds_path)):
        writer = _BatchWriter(bucket, prefix, f"{action}-{shard}", diff.batch_size, scratch)
        writer.extend(sorting.read_lines(path))
        tail = None
        if writer.lines:
            key = f"{prefix}tails/{action}-{shard}.txt"
            bucket.put_text(key, "".join(writer.lines))
            tail = [key, len(writer.lines)]
        record["batches"][action] = [list(b) for b in writer.batches]
        record["tails"][action] = tail
    shutil.rmtree(scratch)
    bucket.put_json(marker, record)  # last: the shard is diffed
    return record


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
    _check_committed(bucket, run, diff)
    total = _ShardDiff()
    for counted in _COUNTS:
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
            last_sync=_last_sync(bucket, keys),
            columns=bucket.get_json(run.paths.validation) or {},
        )
    except MassRemovalBlocked:
        bucket.delete_prefix(prefix)
        raise

    manifest: list[dict[str, Any]] = []
    for action in ACTIONS:
        batches = [(str(k), int(c)) for r in records for k, c in r["batches"][action]]
        tails = _BatchWriter(bucket, prefix, f"{action}-tail", diff.batch_size, workdir)
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
    manifest_key = f"{prefix}manifest.json"
    bucket.put_json(manifest_key, manifest)
    # The journal goes up before any batch is sent: from now on TikTok may hold these changes.
    bucket.put_json(
        keys.pending(run.run_id),
        {
            "run_id": run.run_id,
            "plan_prefix": prefix,
            "pending_base": diff.pending,
            "layout": LAYOUT,
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
        f"{prefix}plan.json",
        plan.as_dict()
        | {
            "pending_base": diff.pending,
            "mass_removal_allowed": mass_removal_allowed,
            "layout": LAYOUT,
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
                {n: int(counts.get(n, 0)) for n in _TYPE_COUNTS}
            )
    order = {t: i for i, t in enumerate(ID_TYPES)}
    return {
        t: {n: summed[t][n] for n in _TYPE_COUNTS}
        for t in sorted(summed, key=lambda t: (order.get(t, len(order)), t))
    }


def _last_sync(bucket: Bucket, keys: AudienceKeys) -> LastSync | None:
    """The committed snapshot's members by type and the run that committed it; None when
    there is no snapshot or its manifest predates the per-type count (nothing to compare)."""
    manifest = bucket.get_json(keys.snapshot)
    if not manifest or not isinstance(manifest.get("members_by_type"), dict):
        return None
    return LastSync(
        members_by_type={str(t): int(n) for t, n in manifest["members_by_type"].items()},
        run_id=manifest.get("run_id"),
        source=manifest.get("source"),
        started_at=manifest.get("started_at"),
    )


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
    # The manifest now wins over a one-file snapshot of an earlier version: drop it.
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
    if plan.get("layout") == LAYOUT:
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
            CopySource={"Bucket": bucket.name, "Key": f"{prefix}members.sorted.txt"},
        )
        bucket.delete(keys.snapshot)
    for other in [run.run_id, *plan.get("pending_base", [])]:
        bucket.delete(keys.pending(other))
    bucket.put_json(f"{prefix}{COMMITTED_MARKER}", {"run_id": run.run_id})
    _drop_old_generations(bucket, keys, plan_id)
    return {"committed": True, "members": plan["members"]}


__all__ = [
    "AudienceKeys",
    "AudiencePlan",
    "DiffPlan",
    "LastSync",
    "TypeCounts",
    "batch_rows",
    "check_removal",
    "collect_diff",
    "commit_audience",
    "diff_inline",
    "diff_planned_shard",
    "ensure_audience",
    "estimated_members",
    "load_diff",
    "lost_create_waits",
    "plan_audience",
    "prepare_diff",
    "removal_blocked",
    "send_batch",
    "tiktok_visible_name",
    "types_over_share",
    "vanished_types",
]
