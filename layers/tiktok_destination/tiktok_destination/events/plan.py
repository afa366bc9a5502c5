"""Offline events: group validated rows into events and plan their ``event/track`` batches.

Rows of one (event set, event, event_id) become ONE event whose ``contents`` lists every
row's item: TikTok keeps only the first of repeated event_ids within 48 hours, so sending
one event per row would silently drop items. An event is one person, though: rows of the
key that name someone else are rejected as ``event_id_conflict`` (see ``build_event``).
Grouping is an external sort, so memory stays flat however large the file. The rows grouping
rejects count toward the run's rejected share (:func:`check_rejected_share`), checked before
any event is sent.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from tiktok_destination import sorting
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.errors import DestinationError
from tiktok_destination.events.build import BuiltEvent, build_event, event_group_key
from tiktok_destination.runs.layout import PlanPaths
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.file_rules import raise_if_unusable
from tiktok_destination.validation.range_outputs import (
    RowNames,
    add_up,
    validated_files,
    validated_index,
)

_SEP = "\x1e"


@dataclass
class EventPlan:
    plan_id: str
    manifest_key: str
    batches: int
    pending_batches: int
    events_built: int
    rows_in_events: int
    duplicate_rows: int
    #: rows rejected because their event key already belongs to another person
    event_id_conflict_rows: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    by_event_channel: dict[str, int] = field(default_factory=dict)
    value_method: dict[str, int] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sort_lines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        row = json.loads(line)
        yield f"{event_group_key(row)}{_SEP}{int(row['row']):010d}{_SEP}{line.rstrip()}\n"


def _groups(sorted_path: Path) -> Iterator[list[dict[str, Any]]]:
    parsed = (line.rstrip("\n").split(_SEP, 2) for line in sorting.read_lines(sorted_path))
    for _, members in groupby(parsed, key=lambda parts: parts[0]):
        yield [json.loads(parts[2]) for parts in members]


def _export_lines(
    bucket: Bucket, index: Mapping[str, Any], names: RowNames, workdir: Path
) -> Iterator[str]:
    """The validated event rows; an export in parts renumbers them across the export, so
    rows of two parts grouped into one event keep distinct numbers in export order."""
    for file, lines in validated_files(bucket, index, workdir):
        if not names.in_parts:
            yield from lines
            continue
        part = int(file["part"])
        for line in lines:
            row = json.loads(line)
            row["row"] = names.export_row(part, int(row["row"]))
            yield json.dumps(row) + "\n"


def _conflict_reason(first_row: str) -> str:
    return (
        f"same event set, event and event_id as row {first_row} but another person (email "
        f"or phone); one event is one person, so only row {first_row}'s person is sent: give "
        "each person's event its own event_id"
    )


def plan_events(bucket: Bucket, run: Run, *, batch_size: int, workdir: Path) -> EventPlan:
    paths = run.paths
    # The run id already names the input object; the plan must not depend on validate's
    # output, which differs between executions when rows without a timestamp take "now".
    plan_id = hashlib.sha256(repr(("events", batch_size)).encode()).hexdigest()[:16]
    prefix = paths.plan(plan_id)
    plan_keys = PlanPaths(prefix)
    existing = bucket.get_json(plan_keys.plan)
    if existing:
        plan = EventPlan(**existing)
        plan.pending_batches = plan.batches - bucket.count(plan_keys.done_prefix)
        return plan

    sorted_path = workdir / "events.sorted"
    index = validated_index(bucket, paths.events)
    names = RowNames(index.get("parts"))
    sorting.external_sort(
        _sort_lines(_export_lines(bucket, index, names, workdir)), sorted_path, workdir=workdir
    )

    by_event: Counter[str] = Counter()
    by_channel: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    conflicts: list[str] = []
    manifest: list[dict[str, Any]] = []
    events_built = rows_in_events = duplicates = other_person = 0
    rejects_path = workdir / "chunk-rejects.csv"
    current_set: str | None = None
    batch: list[BuiltEvent] = []

    def flush() -> None:
        if not batch:
            return
        index = len(manifest) + 1
        key = plan_keys.event_batch(index)
        bucket.put_json(
            key,
            {
                "event_set_id": batch[0].event_set_id,
                "events": [e.payload for e in batch],
                "rows": [e.rows for e in batch],
            },
        )
        manifest.append(
            {
                "index": index,
                "key": key,
                "event_set_id": batch[0].event_set_id,
                "count": len(batch),
                "plan_id": plan_id,
            }
        )
        batch.clear()

    with rejects_path.open("w", newline="", encoding="utf-8") as fh:
        rejects = csv.writer(fh)
        rejects.writerow(names.header())
        for rows in _groups(sorted_path):
            event = build_event(rows, label=names.label)
            for row, original in event.duplicates:
                duplicates += 1
                rejects.writerow(
                    names.reject(
                        row,
                        "",
                        "duplicate_row",
                        f"identical to row {names.label(original)}; sent once",
                    )
                )
            for row, first in event.other_person:
                other_person += 1
                rejects.writerow(
                    names.reject(
                        row, "event_id", "event_id_conflict", _conflict_reason(names.label(first))
                    )
                )
            if event.event_set_id != current_set or len(batch) >= batch_size:
                flush()
                current_set = event.event_set_id
            batch.append(event)
            events_built += 1
            rows_in_events += len(event.rows) - len(event.duplicates)
            by_event[str(event.payload.get("event"))] += 1
            by_channel[event.event_channel or "(none)"] += 1
            methods[event.value_method] += 1
            if len(conflicts) < 20:
                conflicts.extend(event.conflicts[: 20 - len(conflicts)])
        flush()
    sorted_path.unlink()
    if duplicates or other_person:
        bucket.upload(rejects_path, paths.rejects("chunk"), content_type="text/csv")
    manifest_key = plan_keys.manifest
    bucket.put_json(manifest_key, manifest)
    plan = EventPlan(
        plan_id=plan_id,
        manifest_key=manifest_key,
        batches=len(manifest),
        pending_batches=len(manifest),
        events_built=events_built,
        rows_in_events=rows_in_events,
        duplicate_rows=duplicates,
        event_id_conflict_rows=other_person,
        by_event=dict(by_event.most_common()),
        by_event_channel=dict(by_channel.most_common()),
        value_method=dict(methods.most_common()),
        conflicts=conflicts,
    )
    bucket.put_json(plan_keys.plan, plan.as_dict())
    return plan


def check_rejected_share(
    bucket: Bucket, run: Run, plan: EventPlan, *, reject_threshold: float
) -> None:
    """Raise InputRejected when validate's and grouping's rejected rows together are more
    than ``reject_threshold`` of the rows: called by chunk, before any event is sent.

    Grouping rejects rows validate let through (``duplicate_row``, ``event_id_conflict``);
    they are rejected rows like validate's, in the report and in the share. The rule is
    validate's own (``file_rules.raise_if_unusable``), applied to the counts added up.
    """
    validation = bucket.get_json(run.paths.validation)
    if validation is None:
        raise DestinationError(
            f"{bucket.uri(run.paths.validation)} is missing: validate did not finish; re-run "
            "the input"
        )
    result = add_up(run.source.uri, [validation])
    grouped = {
        "duplicate_row": plan.duplicate_rows,
        "event_id_conflict": plan.event_id_conflict_rows,
    }
    by_reason = Counter(result.rejected_by_reason)
    for reason, rows in grouped.items():
        if rows:
            by_reason[reason] += rows
            result.rows_rejected += rows
            result.rows_accepted -= rows
    result.rejected_by_reason = dict(by_reason.most_common())
    raise_if_unusable(result, reject_threshold)
