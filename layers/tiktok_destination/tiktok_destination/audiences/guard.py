"""The removal guard: a plan that would remove too much of an audience is not sent.

Mirror semantics make a bad export dangerous, so a plan is guarded before anything is
uploaded or sent (:func:`check_removal`): its size is what TikTok may hold (``maybe_present``,
the same base the deletes come from, so the removed share is never above 1), in total and per
identifier type (each shard counts its members by type); and a file without a column for a
type the last commit held members of (``members_by_type`` in the snapshot manifest) stops too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.names import tiktok_visible_name
from tiktok_destination.errors import MassRemovalBlocked
from tiktok_destination.identity.columns import near_miss
from tiktok_destination.identity.schema import ID_TYPES
from tiktok_destination.runs.layout import AudienceKeys
from tiktok_destination.runs.run import Run

logger = logging.getLogger(__name__)


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


def read_last_sync(bucket: Bucket, keys: AudienceKeys) -> LastSync | None:
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
