"""What validate writes per range, how the ranges add up, and how later steps read it.

Each range writes, under ``runs/<run>/validate/<validate id>/range-<nnnnn>/``: audiences,
the hashed identifiers split into ``SHARDS`` shards by the first hex character of the
SHA-256 (``shard-<x>.txt``, sorted, without repeats, empty shards left out); events,
``events.jsonl``; both, ``rejects.csv``; and last ``done.json`` (its counts), so a re-run
skips a range whose marker exists and nothing half-written is ever read. The merge adds the
counts up into ``validation.json``, writes the rejects of every range as one
``rejects/validate.csv`` and an index of the output files (``validated/members.json`` or
``validated/events.json``) that chunk reads. The audience diff runs per shard
(``audience.diff_planned_shard``): shard ``x`` of the new member set is the union of every
range's ``shard-x.txt``.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import hashlib
import logging
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from tiktok_destination import sorting
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.errors import DestinationError, InputRejected
from tiktok_destination.inputs.csv_lines import LineCounts
from tiktok_destination.inputs.exports import basename
from tiktok_destination.inputs.ranges import open_range_rows, range_part
from tiktok_destination.runs.run import Run
from tiktok_destination.validation.audience_rows import validate_audience_rows
from tiktok_destination.validation.event_rows import validate_events_rows
from tiktok_destination.validation.file_rules import raise_if_unusable
from tiktok_destination.validation.result import ValidationResult
from tiktok_destination.validation.row_loop import REJECTED_ROW, REJECTS_HEADER

logger = logging.getLogger(__name__)


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
    keys = run.paths.validate(str(plan["validate_id"]))
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
    header, rows = open_range_rows(source, run, plan, spec)
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
    files: list[dict[str, Any]] = []
    if run.kind == "custom_audience":
        for shard, path, lines in shard_members(out, workdir):
            key = keys.range_shard(index, shard)
            state.upload(path, key)
            files.append({"key": key, "shard": shard, "lines": lines, "sha256": _digest(path)})
            path.unlink()
    else:
        key = keys.range_events(index)
        state.upload(out, key)
        files.append({"key": key, "lines": result.identifiers_written, "sha256": _digest(out)})
    out.unlink()
    state.upload(rejects, keys.range_rejects(index), content_type="text/csv")
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
    keys = run.paths.validate(str(plan["validate_id"]))
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
    allowed = bool(run.options.allow_mass_removal) if audience else None
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


__all__ = [
    "RowNames",
    "add_up",
    "merge_ranges",
    "shard_members",
    "validate_range",
    "validated_files",
    "validated_index",
]
