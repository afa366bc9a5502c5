"""Validate in ranges: plan the input, validate each range on its own, add the ranges up.

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
  itself, so small runs cost what they cost today.

Each child writes, under ``runs/<run>/validate/<validate id>/range-<nnnnn>/``: audiences, the
hashed identifiers split into ``SHARDS`` shards by the first hex character of the SHA-256
(``shard-<x>.txt``, sorted, without repeats, empty shards left out); events, ``events.jsonl``;
both, ``rejects.csv``; and last ``done.json`` (its counts), so a re-run skips a range whose
marker exists and nothing half-written is ever read. The merge adds the counts up into
``validation.json``, writes the rejects of every range as one ``rejects/validate.csv`` and an
index of the output files (``validated/members.json`` or ``validated/events.json``) that
chunk reads. The audience diff runs per shard (``audience.diff_planned_shard``): shard ``x`` of
the new member set is the union of every range's ``shard-x.txt``.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import hashlib
import io
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from tiktok_destination import sorting
from tiktok_destination.adapters.s3 import MISSING_CODES, PRECONDITION_CODES, Bucket, error_code
from tiktok_destination.errors import DestinationError, InputRejected, RetriableError
from tiktok_destination.inputs.csv_lines import BLOCK_CHARS, LineCounts
from tiktok_destination.inputs.csv_reader import RangeStart, iter_csv_lines
from tiktok_destination.inputs.exports import basename, part_format
from tiktok_destination.inputs.formats import text_stream
from tiktok_destination.inputs.parquet_reader import iter_parquet, open_parquet
from tiktok_destination.inputs.rows import RowStream
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.audience_rows import validate_audience_rows
from tiktok_destination.validation.event_rows import validate_events_rows
from tiktok_destination.validation.file_rules import raise_if_unusable
from tiktok_destination.validation.headers import audience_columns, audience_types, event_columns
from tiktok_destination.validation.result import ValidationResult
from tiktok_destination.validation.row_loop import REJECTED_ROW, REJECTS_HEADER

logger = logging.getLogger(__name__)

#: Shards per audience, named by the first hex character of an identifier's SHA-256
#: (``shard-0`` to ``shard-f``). Fixed: a snapshot kept per shard must be split the same way.
SHARDS = 16
#: One S3 range GET per read of this size.
READ_BLOCK = 8 * 1024 * 1024
#: Bumped when the range outputs change shape, so old range outputs are never reused.
LAYOUT = 3
_READ_ATTEMPTS = 3
_BOM = b"\xef\xbb\xbf"


# ---------------------------------------------------------------- S3 reads
class S3Range(io.RawIOBase):
    """Bytes ``[start, end)`` of an S3 object, read by range GETs (no copy to ``/tmp``).

    Seekable, so pyarrow can read a Parquet footer and row groups from it. Every GET asks
    for the run's ETag: ranges are read at different times by different children, and bytes
    of a file replaced in between must never be mixed with the old one's.
    """

    def __init__(
        self, bucket: Bucket, key: str, *, etag: str, start: int = 0, end: int | None = None
    ):
        super().__init__()
        self._bucket = bucket
        self._key = key
        self._etag = etag
        self._start = start
        self._end = end if end is not None else object_size(bucket, key, etag=etag)
        self._pos = start
        # One GET's bytes, from ``_ahead_at`` on: see readinto.
        self._ahead = bytearray()
        self._ahead_at = start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = max(self._start, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        # At least READ_BLOCK per GET, whatever the caller asks for: a TextIOWrapper reads
        # 8 KiB at a time with BufferedReader.read1, which hands a read straight to this
        # raw stream once its buffer is empty, so without this every 8 KiB of a CSV would be
        # a GET of its own (32,768 for a 256 MiB range, minutes of round trips on AWS).
        view = memoryview(buffer).cast("B")
        offset = self._pos - self._ahead_at
        if 0 <= offset < len(self._ahead):
            count = min(len(view), len(self._ahead) - offset)
            view[:count] = self._ahead[offset : offset + count]
        else:
            remaining = self._end - self._pos
            if remaining <= 0 or not view:
                return 0
            count = min(len(view), remaining)
            if count >= READ_BLOCK or count == remaining:
                # a large read (Parquet's column chunks) goes straight into the caller's
                # buffer, never held twice
                self._get_into(self._pos, view[:count])
            else:
                ahead = bytearray(min(READ_BLOCK, remaining))
                self._get_into(self._pos, memoryview(ahead))
                self._ahead, self._ahead_at = ahead, self._pos
                view[:count] = ahead[:count]
        self._pos += count
        return count

    def _get_into(self, at: int, view: memoryview) -> None:
        """Fill ``view`` with the object's bytes from ``at``, asked again when a read breaks
        off."""
        wanted = len(view)
        got = 0
        for _ in range(_READ_ATTEMPTS):
            try:
                body = self._bucket.s3.get_object(
                    Bucket=self._bucket.name,
                    Key=self._key,
                    Range=f"bytes={at + got}-{at + wanted - 1}",
                    **_if_match(self._etag),
                )["Body"]
                while got < wanted:
                    chunk = body.read(wanted - got)
                    if not chunk:
                        break
                    view[got : got + len(chunk)] = chunk
                    got += len(chunk)
            except ClientError as err:
                _raise_gone(self._bucket, self._key, self._etag, err)
                raise
            except BotoCoreError:  # a dropped connection or a read timeout: ask again
                pass
            if got == wanted:
                return
        # Never a short read: a range read short would leave its last rows out.
        raise RetriableError(
            f"reading {self._bucket.uri(self._key)} at byte {at + got:,} failed "
            f"{_READ_ATTEMPTS} times; the step is retried"
        )


def _if_match(etag: str) -> dict[str, str]:
    # An entity tag in a header is a quoted string; the run keeps it unquoted.
    return {"IfMatch": f'"{etag.strip(chr(34))}"'} if etag else {}


def _raise_gone(bucket: Bucket, key: str, etag: str, err: ClientError) -> None:
    code = error_code(err)
    if code in MISSING_CODES:
        raise InputRejected(
            f"{bucket.uri(key)} does not exist (it may have been deleted or moved after the "
            "run started)"
        ) from None
    if code in PRECONDITION_CODES:
        raise InputRejected(
            f"{bucket.uri(key)} was replaced while this run was reading it (its ETag is no "
            f"longer {etag}), so this run stops before sending anything; start a run of the "
            "new file (an upload to the inbox starts one)"
        ) from None


def object_size(bucket: Bucket, key: str, *, etag: str) -> int:
    try:
        head = bucket.s3.head_object(Bucket=bucket.name, Key=key, **_if_match(etag))
    except ClientError as err:
        _raise_gone(bucket, key, etag, err)
        raise
    return int(head["ContentLength"])


def open_range(
    bucket: Bucket, key: str, *, etag: str, start: int = 0, end: int | None = None
) -> IO[bytes]:
    raw = S3Range(bucket, key, etag=etag, start=start, end=end)
    return io.BufferedReader(raw, buffer_size=READ_BLOCK)


# ---------------------------------------------------------------- keys
class ValidateKeys:
    """Keys under ``runs/<run>/validate/<validate id>/``."""

    def __init__(self, run: Run, validate_id: str):
        self.prefix = f"{run.paths.prefix}validate/{validate_id}/"

    @property
    def plan(self) -> str:
        return f"{self.prefix}plan.json"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}manifest.json"

    def range_prefix(self, index: int) -> str:
        return f"{self.prefix}range-{index:05d}/"

    def done(self, index: int) -> str:
        return f"{self.range_prefix(index)}done.json"


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


# ---------------------------------------------------------------- plan
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
    keys = ValidateKeys(run, vid)
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


# ---------------------------------------------------------------- one range
def _open_rows(
    source: Bucket, run: Run, plan: Mapping[str, Any], spec: Mapping[str, Any]
) -> tuple[list[str], RowStream]:
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


def validate_range(
    state: Bucket,
    source: Bucket,
    run: Run,
    plan: Mapping[str, Any],
    index: int,
    *,
    workdir: Path,
) -> dict[str, Any]:
    """Validate one range into its final keys, ``done.json`` last; skip a finished one."""
    keys = ValidateKeys(run, str(plan["validate_id"]))
    done = state.get_json(keys.done(index))
    if done is not None:
        logger.info("range already validated", extra={"range": index})
        return dict(done)
    spec = plan["ranges"][index - 1]
    template = run.resolved
    out, rejects = workdir / "out", workdir / "rejects.csv"
    common: dict[str, Any] = {
        "source": range_part(plan, spec)["uri"],
        "default_region": plan["default_region"],
        "out_rejects": rejects,
        "columns": template.columns,
        "ignore_columns": template.ignore_columns,
        "data_template": run.data_template,
    }
    header, rows = _open_rows(source, run, plan, spec)
    if run.kind == "custom_audience":
        result = validate_audience_rows(
            header, rows, user_id_types=template.user_id_types, out_members=out, **common
        )
    else:
        result = validate_events_rows(
            header,
            rows,
            fallback_event_set_id=template.event_set_id,
            now=datetime.fromisoformat(str(plan["now"])),
            out_events=out,
            **common,
        )
    prefix = keys.range_prefix(index)
    files: list[dict[str, Any]] = []
    if run.kind == "custom_audience":
        for shard, path, lines in shard_members(out, workdir):
            key = f"{prefix}shard-{shard}.txt"
            state.upload(path, key)
            files.append({"key": key, "shard": shard, "lines": lines, "sha256": _digest(path)})
            path.unlink()
    else:
        key = f"{prefix}events.jsonl"
        state.upload(out, key)
        files.append({"key": key, "lines": result.identifiers_written, "sha256": _digest(out)})
    out.unlink()
    state.upload(rejects, f"{prefix}rejects.csv", content_type="text/csv")
    record = {"index": index, "result": result.as_dict(), "files": files}
    state.put_json(keys.done(index), record)  # last: the range is complete
    return record


def shard_members(members: Path, workdir: Path) -> Iterator[tuple[str, Path, int]]:
    """``(shard, sorted file, lines)`` per non-empty shard of ``TYPE\\thash`` lines."""
    parts: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        handles: dict[str, IO[str]] = {}
        with members.open(encoding="utf-8") as lines:
            for line in lines:
                shard = line[line.index("\t") + 1]
                handle = handles.get(shard)
                if handle is None:
                    parts[shard] = workdir / f"shard-{shard}.unsorted"
                    handle = stack.enter_context(parts[shard].open("w", encoding="utf-8"))
                    handles[shard] = handle
                handle.write(line)
    for shard in sorted(parts):
        unsorted = parts[shard]
        result = workdir / f"shard-{shard}.txt"
        lines_written = sorting.external_sort(sorting.read_lines(unsorted), result, workdir=workdir)
        unsorted.unlink()
        yield shard, result, lines_written


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


# ---------------------------------------------------------------- merge
def add_up(source: str, results: Sequence[Mapping[str, Any]]) -> ValidationResult:
    """One file's result from its ranges' results, in range order."""
    total = ValidationResult(source=source)
    counters: dict[str, Counter[str]] = {
        "rejected_by_reason": Counter(),
        "identifiers_by_type": Counter(),
        "dropped_identifiers_by_reason": Counter(),
        "valid_values_by_column": Counter(),
    }
    invalid: dict[str, Counter[str]] = collections.defaultdict(Counter)
    lines: LineCounts | None = LineCounts() if results and results[0].get("lines") else None
    for part in results:
        for name in ("rows_received", "rows_accepted", "rows_rejected", "identifiers_written"):
            setattr(total, name, getattr(total, name) + int(part.get(name) or 0))
        for name, counter in counters.items():
            counter.update({k: int(v) for k, v in (part.get(name) or {}).items()})
        for column, reasons in (part.get("invalid_values_by_column") or {}).items():
            invalid[column].update({k: int(v) for k, v in reasons.items()})
        if lines is not None:
            for name, value in (part.get("lines") or {}).items():
                setattr(lines, name, getattr(lines, name) + int(value))
    first = results[0] if results else {}
    total.columns = list(first.get("columns") or [])
    total.columns_used = dict(first.get("columns_used") or {})
    total.columns_ignored = dict(first.get("columns_ignored") or {})
    total.columns_missing = list(first.get("columns_missing") or [])
    for name, counter in counters.items():
        setattr(total, name, dict(counter.most_common()))
    total.invalid_values_by_column = {
        column: dict(reasons.most_common()) for column, reasons in invalid.items()
    }
    total.lines = lines
    return total


def merge_ranges(
    state: Bucket,
    run: Run,
    plan: Mapping[str, Any],
    *,
    reject_threshold: float,
    workdir: Path,
) -> ValidationResult:
    """Add the ranges up: ``validation.json``, ``rejects/validate.csv`` and the output index.

    Raises InputRejected (after writing all three) when the file as a whole is unusable.
    """
    keys = ValidateKeys(run, str(plan["validate_id"]))
    paths = run.paths
    records: list[dict[str, Any]] = []
    for spec in plan["ranges"]:
        record = state.get_json(keys.done(int(spec["index"])))
        if record is None:
            raise DestinationError(
                f"range {spec['index']} of {len(plan['ranges'])} of {run.source.uri} was not "
                "validated; re-run the same input to validate it"
            )
        records.append(record)
    parts = plan.get("parts") or [{"key": run.source.key}]
    in_parts = len(parts) > 1 or bool(run.source.parts)
    if in_parts:
        _check_parts_agree(run, plan, records)
    result = add_up(run.source.uri, [r["result"] for r in records])
    rejects = workdir / "rejects.csv"
    with rejects.open("w", encoding="utf-8", newline="") as out:
        # An export in parts: each reject names its part (rows are numbered within it).
        out.write(",".join((("part",) if in_parts else ()) + REJECTS_HEADER) + "\n")
        for spec in plan["ranges"]:
            part = workdir / "range-rejects.csv"
            state.download(f"{keys.range_prefix(int(spec['index']))}rejects.csv", part)
            name = _csv_field(_part_name(run, range_part(plan, spec))) + ","
            with part.open(encoding="utf-8", newline="") as lines:
                next(lines, None)  # each range's own header line
                if in_parts:
                    for line in lines:
                        out.write(name + line)
                else:
                    shutil.copyfileobj(lines, out)
            part.unlink()
    state.upload(rejects, paths.rejects("validate"), content_type="text/csv")
    index: dict[str, Any] = {
        "validate_id": plan["validate_id"],
        "kind": run.kind,
        "shards": plan["shards"],
        "ranges": len(records),
        "files": [
            file | ({"part": int(spec.get("part", 0))} if in_parts else {})
            for spec, record in zip(plan["ranges"], records, strict=True)
            for file in record["files"]
        ],
    }
    if in_parts:
        # Rows are numbered within each part; what reads the rows across parts (events)
        # numbers them across the export with these (see RowNames).
        before = 0
        index["parts"] = []
        for counts in _rows_per_part(run, plan, records):
            index["parts"].append({"part": counts["part"], "rows_before": before})
            before += int(counts["rows_received"])
    state.put_json(paths.members if run.kind == "custom_audience" else paths.events, index)
    validation = result.as_dict()
    if in_parts:
        validation["parts"] = _rows_per_part(run, plan, records)
    state.put_json(paths.validation, validation)
    audience = run.kind == "custom_audience"
    allowed = bool(run.options.get("allow_mass_removal", False)) if audience else None
    raise_if_unusable(result, reject_threshold, empty_audience=allowed)
    return result


def _part_name(run: Run, part: Mapping[str, Any]) -> str:
    """A part as the rejects file and report name it: its key within the export folder."""
    key = str(part["key"])
    return key[len(run.source.key) :] if key.startswith(run.source.key) else basename(key)


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def _rows_per_part(
    run: Run, plan: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"part": _part_name(run, part), "rows_received": 0, "rows_rejected": 0}
        for part in plan["parts"]
    ]
    for spec, record in zip(plan["ranges"], records, strict=True):
        counts = rows[int(spec.get("part", 0))]
        counts["rows_received"] += int(record["result"].get("rows_received") or 0)
        counts["rows_rejected"] += int(record["result"].get("rows_rejected") or 0)
    return rows


def _check_parts_agree(
    run: Run, plan: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> None:
    """Every part of an export must have the same columns: rows of parts that disagree
    would be read under different names (a phone read as an email, a column lost)."""
    first: tuple[str, list[str]] | None = None
    for spec, record in zip(plan["ranges"], records, strict=True):
        if int(spec.get("part_range", 1)) != 1:
            continue
        name = _part_name(run, range_part(plan, spec))
        columns = list(record["result"].get("columns") or [])
        if first is None:
            first = (name, columns)
            continue
        if columns != first[1]:
            missing = [c for c in first[1] if c not in columns]
            extra = [c for c in columns if c not in first[1]]
            what = (
                "; ".join(
                    ([f"it lacks {', '.join(_shown(missing))}"] if missing else [])
                    + ([f"it adds {', '.join(_shown(extra))}"] if extra else [])
                )
                or "the same columns in another order"
            )
            raise InputRejected(
                f"{run.source.uri}: part {name} has other columns than part {first[0]} ({what}); "
                "every part of an export must have the same header, so nothing is sent. "
                "Export the parts from one query (or set headerless_columns for parts "
                "without a header)"
            )


def _shown(names: Sequence[str]) -> list[str]:
    from tiktok_destination.identity.columns import looks_like_data

    return ["a value that looks like data" if looks_like_data(n) else f"'{n[:40]}'" for n in names]


def validated_index(state: Bucket, index_key: str) -> dict[str, Any]:
    index = state.get_json(index_key)
    if index is None:
        raise DestinationError(
            f"{state.uri(index_key)} is missing: validate did not finish; re-run the input"
        )
    return dict(index)


def validated_lines(state: Bucket, index_key: str, workdir: Path) -> Iterator[str]:
    """Every line of the validated output files the index lists, one file at a time."""
    for _, lines in validated_files(state, validated_index(state, index_key), workdir):
        yield from lines


def validated_files(
    state: Bucket, index: Mapping[str, Any], workdir: Path
) -> Iterator[tuple[Mapping[str, Any], Iterator[str]]]:
    """Each validated output file the index lists (its entry and its lines), one at a time."""
    for number, file in enumerate(index["files"]):
        local = state.download(str(file["key"]), workdir / f"validated-{number:05d}.part")
        yield file, sorting.read_lines(local)
        local.unlink()


class RowNames:
    """Row numbers across an export in parts, and the part and row within it they name.

    Validate numbers rows within each part (so its messages name the part's own rows);
    events are grouped across the whole export, where row numbers must be unique and in
    export order. A one-file export's rows are its own numbers.
    """

    def __init__(self, parts: Sequence[Mapping[str, Any]] | None):
        self.parts = [str(p["part"]) for p in parts or ()]
        self.before = [int(p["rows_before"]) for p in parts or ()]

    @property
    def in_parts(self) -> bool:
        return bool(self.parts)

    def export_row(self, part: int, row: int) -> int:
        return self.before[part] + row if self.in_parts else row

    def locate(self, row: int) -> tuple[str, int]:
        """(part, row within it) of an export-wide row number."""
        at = max(bisect.bisect_left(self.before, row) - 1, 0)
        return self.parts[at], row - self.before[at]

    def label(self, row: int) -> str:
        if not self.in_parts:
            return str(row)
        part, within = self.locate(row)
        return f"{within} of {part}"

    def header(self) -> tuple[str, ...]:
        return (("part",) if self.in_parts else ()) + REJECTS_HEADER

    def reject(self, row: int, *fields: str) -> tuple[Any, ...]:
        """A rejects file line for a rejected row, ``fields`` being its column, reason code
        and reason: ``part, row, …`` for an export in parts, else ``row, …``."""
        line = (*fields, REJECTED_ROW)
        return (*self.locate(row), *line) if self.in_parts else (row, *line)


def plan_key(run: Run, vid: str) -> str:
    return ValidateKeys(run, vid).plan


__all__ = [
    "SHARDS",
    "RowNames",
    "S3Range",
    "ValidateKeys",
    "add_up",
    "merge_ranges",
    "plan_validation",
    "shard_members",
    "validate_range",
    "validated_files",
    "validated_index",
    "validated_lines",
]
