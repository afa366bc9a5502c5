"""Validate in ranges: cut the input into ranges, and open the rows of one range.

Validate costs ~3 µs of CPU a row (``make bench``), minutes per 100M rows before the file
is even read, so a large file is split into ranges that Map children validate side by side:

- CSV: byte ranges that start at a record start. A byte offset in the middle of a CSV cannot
  be told to be a record start without the quote state from the file's start (a quoted value
  may hold line breaks), so the planner streams the object once with the very reader validate
  uses (``csv_reader.iter_csv_lines``: the damage rules included, no hashing) and marks a range
  start every ``range_bytes`` where that reader stands at a clean record start: between its
  blocks of whole lines, with no lines of a damaged record waiting to be read again. A child
  reading ``[start, end)`` with the rows and lines before ``start`` therefore reads exactly
  the records, rejects and row numbers the whole-file reader would (it never read past
  ``start`` before standing there).
- gzip CSV: one range (a compressed stream cannot be entered in the middle).
- Parquet: runs of whole row groups, by their uncompressed size.
- A file of at most ``range_bytes`` is one range and is validated by the planning Lambda
  itself, so a small run costs what a single Lambda costs.

What each range writes, and how the ranges add up, is ``validation.range_outputs``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.s3_ranges import object_size, open_range
from tiktok_destination.errors import DestinationError
from tiktok_destination.inputs.csv_lines import BLOCK_CHARS
from tiktok_destination.inputs.csv_reader import RangeStart, iter_csv_lines
from tiktok_destination.inputs.exports import part_format
from tiktok_destination.inputs.formats import text_stream
from tiktok_destination.inputs.parquet_reader import iter_parquet, open_parquet
from tiktok_destination.inputs.rows import RowStream
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.headers import audience_columns, audience_types, event_columns

logger = logging.getLogger(__name__)

#: Shards per audience, named by the first hex character of an identifier's SHA-256
#: (``shard-0`` to ``shard-f``). Fixed: a snapshot kept per shard must be split the same way.
SHARDS = 16
#: Bumped when the range outputs change shape, so old range outputs are never reused.
LAYOUT = 3
_BOM = b"\xef\xbb\xbf"


def validate_id(run: Run, *, default_region: str, range_bytes: int) -> str:
    """Names one way of validating one input: the same id means the same range outputs."""
    material = json.dumps(
        [
            LAYOUT,
            SHARDS,
            range_bytes,
            default_region,
            run.kind,
            run.source.model_dump(),
            run.template,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def plan_validation(
    state: Bucket,
    source: Bucket,
    run: Run,
    *,
    range_bytes: int,
    default_region: str,
    now: datetime,
) -> dict[str, Any]:
    """The run's ranges (reused when an earlier execution planned the same validation).

    Every part of the export (one for a one-file export) is planned into ranges of its own;
    range indices run across the parts, and each range names its part. Writes ``plan.json``
    and the Map's ``manifest.json``; raises InputRejected when a header already shows the
    input cannot be used.
    """
    vid = validate_id(run, default_region=default_region, range_bytes=range_bytes)
    keys = run.paths.validate(vid)
    existing = state.get_json(keys.plan)
    if existing:
        return dict(existing)
    parts = export_parts(state, run)
    ranges: list[dict[str, Any]] = []
    for number, part in enumerate(parts):
        part["size"] = object_size(source, part["key"], etag=part["etag"])
        if part["format"] == "parquet":
            planned = _parquet_ranges(source, run, part, range_bytes)
        elif part["size"] <= range_bytes:
            planned = [_whole(part["size"])]
        else:
            planned, part["header_end"] = _csv_ranges(source, run, part, range_bytes)
        for within, spec in enumerate(planned, start=1):
            ranges.append(spec | {"index": len(ranges) + 1, "part": number, "part_range": within})
    plan = {
        "validate_id": vid,
        "format": run.source.format,
        "size": sum(int(p["size"]) for p in parts),
        "header_end": parts[0].get("header_end"),
        "shards": SHARDS,
        "range_bytes": range_bytes,
        "default_region": default_region,
        # Rows without an event time take this one, the same in every range and re-run.
        "now": now.astimezone(UTC).isoformat(),
        "parts": parts,
        "ranges": ranges,
    }
    state.put_json(keys.manifest, [{"index": r["index"], "validate_id": vid} for r in ranges])
    state.put_json(keys.plan, plan)  # last: a plan that exists is complete
    logger.info(
        "validate plan",
        extra={
            "ranges": len(ranges),
            "parts": len(parts),
            "size": plan["size"],
            "validate_id": vid,
        },
    )
    return plan


def export_parts(state: Bucket, run: Run) -> list[dict[str, Any]]:
    """The files to read: the pinned parts of an export, or the one object."""
    if not run.source.parts:
        return [
            {
                "key": run.source.key,
                "uri": run.source.uri,
                "etag": run.source.etag,
                "format": run.source.format,
                "header_end": None,
            }
        ]
    pinned = state.get_json(run.paths.export)
    if not isinstance(pinned, dict) or len(pinned.get("parts") or ()) != run.source.parts:
        raise DestinationError(
            f"run {run.run_id} has no complete export record at {state.uri(run.paths.export)}; "
            "start the export's run again"
        )
    return [
        {
            "key": str(p["key"]),
            "uri": f"s3://{run.source.bucket}/{p['key']}",
            "etag": str(p["etag"]),
            "format": part_format(str(p["key"])),
            "header_end": None,
        }
        for p in pinned["parts"]
    ]


def _whole(size: int) -> dict[str, Any]:
    return {
        "index": 1,
        "start": None,
        "end": size,
        "rows_before": 0,
        "lines_before": 0,
        "row_groups": None,
    }


def check_header(run: Run, header: list[str], uri: str) -> None:
    """The header errors every range would raise, raised once: in Preflight (before any
    call to TikTok) when a CSV's header could be peeked, and again here, before the Map."""
    template = run.resolved
    common: dict[str, Any] = {
        "source": uri,
        "columns": template.columns,
        "ignore_columns": template.ignore_columns,
        "data_template": run.data_template,
    }
    if run.kind == "custom_audience":
        audience_columns(header, audience_types(template.user_id_types), **common)
    else:
        event_columns(header, fallback_event_set_id=template.event_set_id, **common)


def _csv_ranges(
    source: Bucket, run: Run, part: Mapping[str, Any], range_bytes: int
) -> tuple[list[dict[str, Any]], int | None]:
    key, uri, etag, size = part["key"], part["uri"], part["etag"], int(part["size"])
    raw = open_range(source, key, etag=etag, end=size)
    try:
        first = raw.peek(4)[:4]  # type: ignore[attr-defined]
    except BaseException:
        raw.close()
        raise
    text = text_stream(raw, uri)
    if first[:2] == b"\x1f\x8b":
        text.close()
        return [_whole(size)], None
    offset = len(_BOM) if first[:3] == _BOM else 0
    marks: list[tuple[int, int, int]] = []  # (byte offset, rows before, lines before)
    read = [offset]

    def at_record_start(rows: int, lines: int, read_bytes: int) -> None:
        read[0] = offset + read_bytes
        if not marks or read[0] - marks[-1][0] >= range_bytes:
            marks.append((read[0], rows, lines))

    # Blocks no larger than a range: the reader stands at a known byte offset only between
    # blocks (and in careful stretches), so small ranges still get their starts.
    header, rows = iter_csv_lines(
        text,
        text,
        uri,
        on_record_start=at_record_start,
        block_chars=min(range_bytes, BLOCK_CHARS),
        headerless=run.resolved.headerless_columns,
    )
    with contextlib.closing(rows):
        check_header(run, header, uri)
        collections.deque(rows.records(), maxlen=0)  # read through, in C: no row is kept
    if read[0] != size:
        raise DestinationError(
            f"{uri}: planning read {read[0]:,} of {size:,} bytes; stopping rather "
            "than risk leaving rows out (a bug: please report it)"
        )
    starts = [m for m in marks if m[0] < size] or marks[:1]
    if len(starts) <= 1:
        return [_whole(size)], None
    ranges = [
        {
            "index": i,
            "start": start,
            "end": starts[i][0] if i < len(starts) else size,
            "rows_before": rows_before,
            "lines_before": lines_before,
            "row_groups": None,
        }
        for i, (start, rows_before, lines_before) in enumerate(starts, start=1)
    ]
    return ranges, starts[0][0]


def _parquet_ranges(
    source: Bucket, run: Run, part: Mapping[str, Any], range_bytes: int
) -> list[dict[str, Any]]:
    size = int(part["size"])
    parquet, header = open_parquet(
        open_range(source, part["key"], etag=part["etag"], end=size), part["uri"]
    )
    with contextlib.closing(parquet):
        check_header(run, header, part["uri"])
        metadata = parquet.metadata
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    if size <= range_bytes or len(groups) <= 1:
        return [_whole(size)]
    ranges: list[dict[str, Any]] = []
    first = rows_before = taken = 0
    for i, group in enumerate(groups):
        # Uncompressed size: closer than the compressed bytes to the work a row costs.
        taken += group.total_byte_size
        if taken >= range_bytes or i == len(groups) - 1:
            ranges.append(
                {
                    "index": len(ranges) + 1,
                    "start": None,
                    "end": size,
                    "rows_before": rows_before,
                    "lines_before": 0,
                    "row_groups": [first, i + 1],
                }
            )
            rows_before += sum(g.num_rows for g in groups[first : i + 1])
            first, taken = i + 1, 0
    return ranges


def open_range_rows(
    source: Bucket, run: Run, plan: Mapping[str, Any], spec: Mapping[str, Any]
) -> tuple[list[str], RowStream]:
    """The header and rows of one range of the plan, read from S3 by range GETs."""
    part = range_part(plan, spec)
    key, uri, etag, size = part["key"], part["uri"], part["etag"], int(part["size"])
    headerless = run.resolved.headerless_columns
    if part["format"] == "parquet":
        groups = spec["row_groups"]
        return iter_parquet(
            open_range(source, key, etag=etag, end=size),
            uri,
            row_groups=None if groups is None else list(range(groups[0], groups[1])),
            first_row=int(spec["rows_before"]),
        )
    if spec["start"] is None:
        text = text_stream(open_range(source, key, etag=etag, end=size), uri)
        return iter_csv_lines(text, text, uri, headerless=headerless)
    stack = contextlib.ExitStack()
    try:
        head = stack.enter_context(
            text_stream(open_range(source, key, etag=etag, end=int(part["header_end"])), uri)
        )
        body = stack.enter_context(
            text_stream(
                open_range(source, key, etag=etag, start=int(spec["start"]), end=int(spec["end"])),
                uri,
                file_start=False,
            )
        )
    except BaseException:
        stack.close()
        raise
    return iter_csv_lines(
        head,
        stack,
        uri,
        body=body,
        start=RangeStart(int(spec["rows_before"]), int(spec["lines_before"])),
        count_header=int(spec.get("part_range", spec["index"])) == 1,
        headerless=headerless,
    )


def range_part(plan: Mapping[str, Any], spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The part (file) a range of the plan reads."""
    part: Mapping[str, Any] = plan["parts"][int(spec.get("part", 0))]
    return part


__all__ = [
    "SHARDS",
    "check_header",
    "open_range_rows",
    "plan_validation",
    "range_part",
]
