"""Validate an audience file: hash every usable identifier, reject the rows without one.

Raw identifiers exist only in here and in ``event_rows``: what leaves is ``<schema
type>\t<sha256>`` lines (``out_members``) and a rejects file that never holds a value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import closing
from operator import itemgetter
from pathlib import Path

from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.column_hashing import ColumnHasher, identifier_column_hasher
from tiktok_destination.inputs.readers import iter_rows
from tiktok_destination.inputs.rows import RowStream
from tiktok_destination.validation.file_rules import check_threshold, raise_if_unusable
from tiktok_destination.validation.headers import audience_columns, audience_types
from tiktok_destination.validation.result import ValidationResult
from tiktok_destination.validation.row_loop import (
    PROGRESS_EVERY,
    RowLoop,
    open_out,
    rare_young_collections,
)


def validate_audience_file(
    src: Path,
    *,
    source: str,
    file_format: str,
    user_id_types: Sequence[str],
    default_region: str,
    reject_threshold: float,
    out_members: Path,
    out_rejects: Path,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
    data_template: str | None = None,
) -> ValidationResult:
    """Hash every usable identifier of an audience file into ``out_members``.

    ``out_members`` gets one line per identifier, ``<schema type>\\t<sha256>``; a row is
    accepted when at least one identifier of the template's ``user_id_types`` is usable.
    ``out_rejects`` gets ``row,column,reason_code,reason,kind`` per rejected row
    (``rejected_row``) and per value dropped from a kept row (``dropped_value``); header
    only when none. Both are fully written before a file-level ``InputRejected`` is raised.
    ``columns``/``ignore_columns`` are the data template's (see ``columns.resolve_columns``);
    ``data_template`` names the template in messages.
    """
    check_threshold(reject_threshold)
    types = audience_types(user_id_types)
    header, rows = iter_rows(src, file_format, source=source)
    result = validate_audience_rows(
        header,
        rows,
        source=source,
        user_id_types=types,
        default_region=default_region,
        out_members=out_members,
        out_rejects=out_rejects,
        columns=columns,
        ignore_columns=ignore_columns,
        data_template=data_template,
    )
    raise_if_unusable(result, reject_threshold, empty_audience=False)
    return result


def validate_audience_rows(
    header: list[str],
    rows: RowStream,
    *,
    source: str,
    user_id_types: Sequence[str],
    default_region: str,
    out_members: Path,
    out_rejects: Path,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
    data_template: str | None = None,
) -> ValidationResult:
    """The rows of an audience file (or of one range of it) into ``out_members`` and
    ``out_rejects``, without the file-level checks (the caller adds up ranges first)."""
    types = audience_types(user_id_types)
    with closing(rows), rare_young_collections():
        resolution, present = audience_columns(
            header,
            types,
            source=source,
            columns=columns,
            ignore_columns=ignore_columns,
            data_template=data_template,
        )
        present_names = [column for _, column, _ in present]
        missing_problem = RowRejected(
            ",".join(present_names),
            "no_identifier",
            f"no value in {' or '.join(present_names)}: every row needs at least one",
        )

        result = ValidationResult(source=source, columns=header)
        result.record_columns(resolution)
        # Per identifier column: how to take it from a row, how to hash it, its output prefix.
        getters = [itemgetter(rows.header.index(column)) for _, column, _ in present]
        column_hashers = identifier_column_hashers(present, default_region)
        prefixes = [f"{schema}\t" for _, _, schema in present]
        joiners = [f"\n{prefix}" for prefix in prefixes]
        counts = [0] * len(present)
        invalid: list[Counter[str]] = [Counter() for _ in present]
        # What a row that could not be read gives each column: no value.
        unreadable = [None] * len(rows.header)
        with open_out(out_members) as members, open_out(out_rejects) as rejects:
            loop = RowLoop(result, rejects, resolution.used)
            write = members.write
            # A batch at a time, a column at a time: every column of the batch is hashed at
            # once (identifier_column_hasher), its lines written together (the members file
            # is a set: range_outputs.shard_members sorts each shard), and only the rows with a
            # problem or without any identifier, few in a usual file, are looked at one by
            # one, in row order. Rows are numbered one after the other: what was received
            # follows from the last number, what was accepted from the rejects.
            first = number = rows.rows_before
            next_progress = (number // PROGRESS_EVERY + 1) * PROGRESS_EVERY
            for batch in rows.batches():
                size = len(batch)
                if not size:
                    continue
                before = number
                number += size
                values: list[list[str | None]]
                try:
                    # a RowRejected (a row that could not be read) is no sequence: TypeError
                    values = [list(map(getter, batch)) for getter in getters]  # type: ignore[arg-type]
                except TypeError:
                    readable = [
                        unreadable if isinstance(row, RowRejected) else row for row in batch
                    ]
                    values = [list(map(getter, readable)) for getter in getters]
                hashed = [
                    hasher(column) for hasher, column in zip(column_hashers, values, strict=True)
                ]
                for at, (digests, misses, rejected) in enumerate(hashed):
                    if rejected:  # per invalid value only: the usual batch has none
                        invalid[at].update([problem.reason_code for problem in rejected.values()])
                    if len(misses) == size:
                        continue
                    lines = list(filter(None, digests)) if misses else digests
                    counts[at] += len(lines)
                    write(prefixes[at])
                    write(joiners[at].join(lines))  # type: ignore[arg-type]  # no None left
                    write("\n")
                # rows where no column gave a digest, and rows where a column rejected one
                no_hit = set(hashed[0][1]).intersection(*(misses for _, misses, _ in hashed[1:]))
                attention = no_hit.union(*(rejected for _, _, rejected in hashed))
                for at in sorted(attention):
                    row = batch[at]
                    if isinstance(row, RowRejected):
                        loop.reject(before + at + 1, row)
                        continue
                    problems = [rejected[at] for _, _, rejected in hashed if at in rejected]
                    if at in no_hit:
                        loop.reject(before + at + 1, problems[0] if problems else missing_problem)
                    else:
                        for dropped in problems:
                            loop.drop(before + at + 1, dropped)
                if number >= next_progress:
                    next_progress = (number // PROGRESS_EVERY + 1) * PROGRESS_EVERY
                    result.rows_received = number - first
                    result.rows_accepted = result.rows_received - result.rows_rejected
                    loop.progress(number)
            result.rows_received = number - first
            result.rows_accepted = result.rows_received - result.rows_rejected
            for prefix, count in zip(prefixes, counts, strict=True):
                result.identifiers_written += count
                if count:
                    loop.by_type[prefix[:-1]] = count
            for column, count, reasons in zip(present_names, counts, invalid, strict=True):
                if count:
                    result.valid_values_by_column[column] = count
                if reasons:
                    result.invalid_values_by_column[column] = dict(reasons.most_common())
            loop.close(rows)
    return result


def identifier_column_hashers(
    present: Sequence[tuple[str, str, str]], default_region: str
) -> list[ColumnHasher]:
    """One column hasher per ``(kind, column, schema)``, made once per file: a block of
    values -> their SHA-256s, each exactly ``hash_identifier``'s answer (see
    ``identifiers.identifier_column_hasher``)."""
    return [identifier_column_hasher(kind, default_region) for kind, _, _ in present]
