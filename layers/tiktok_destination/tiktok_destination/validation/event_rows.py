"""Validate an offline events file: each row through the event rules, one JSON line per event.

Identifiers are hashed by the event rules (``events.rules.normalize_event_row``); what
leaves is ``out_events`` and a rejects file that never holds a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.hashing import hash_identifier
from tiktok_destination.identity.schema import SCHEMA
from tiktok_destination.inputs.readers import iter_rows
from tiktok_destination.inputs.rows import Row, RowStream, empty_to_none
from tiktok_destination.validation.file_rules import check_threshold, raise_if_unusable
from tiktok_destination.validation.headers import event_columns
from tiktok_destination.validation.result import ValidationResult
from tiktok_destination.validation.row_loop import RowLoop, open_out, rare_young_collections

_EVENT_USER_SCHEMA = {"email": ("EMAIL", SCHEMA["EMAIL"]), "phone": ("PHONE", SCHEMA["PHONE"])}


def _event_row_normalizer() -> Callable[..., dict[str, Any]]:
    # Looked up at call time (not imported at module load) so a test can stand in for it.
    from tiktok_destination.events import rules as events

    return events.normalize_event_row


def validate_events_file(
    src: Path,
    *,
    source: str,
    file_format: str,
    default_region: str,
    reject_threshold: float,
    fallback_event_set_id: str | None,
    now: datetime,
    out_events: Path,
    out_rejects: Path,
    data_template: str | None = None,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
) -> ValidationResult:
    """Normalize every offline-event row into ``out_events`` (one JSON object per line).

    Each row goes through ``events.normalize_event_row``; rows it rejects go to
    ``out_rejects`` like the audience's. ``data_template`` names the template in messages;
    ``columns``/``ignore_columns`` are its column mapping (see ``columns.resolve_columns``).
    """
    check_threshold(reject_threshold)
    header, rows = iter_rows(src, file_format, source=source)
    result = validate_events_rows(
        header,
        rows,
        source=source,
        default_region=default_region,
        fallback_event_set_id=fallback_event_set_id,
        now=now,
        out_events=out_events,
        out_rejects=out_rejects,
        data_template=data_template,
        columns=columns,
        ignore_columns=ignore_columns,
    )
    raise_if_unusable(result, reject_threshold)
    return result


def validate_events_rows(
    header: list[str],
    rows: RowStream,
    *,
    source: str,
    default_region: str,
    fallback_event_set_id: str | None,
    now: datetime,
    out_events: Path,
    out_rejects: Path,
    data_template: str | None = None,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
) -> ValidationResult:
    """The rows of an events file (or of one range of it) into ``out_events`` and
    ``out_rejects``, without the file-level checks (the caller adds up ranges first)."""
    normalize_event_row = _event_row_normalizer()
    with closing(rows), rare_young_collections():
        resolution = event_columns(
            header,
            source=source,
            fallback_event_set_id=fallback_event_set_id,
            data_template=data_template,
            columns=columns,
            ignore_columns=ignore_columns,
        )
        used = resolution.used
        result = ValidationResult(source=source, columns=header)
        result.record_columns(resolution)
        with open_out(out_events) as events_out, open_out(out_rejects) as rejects:
            loop = RowLoop(result, rejects, used)
            write = events_out.write
            # The event rules read our field names, whatever the file calls them.
            positions = [(name, rows.header.index(column)) for name, column in used.items()]
            for number, read in rows.records():
                loop.tick(number)
                if isinstance(read, RowRejected):
                    loop.reject(number, read)
                    continue
                row: Row = {name: empty_to_none(read[position]) for name, position in positions}
                try:
                    event = normalize_event_row(
                        row,
                        row_number=number,
                        default_region=default_region,
                        fallback_event_set_id=fallback_event_set_id,
                        now=now,
                    )
                except RowRejected as problem:
                    loop.reject(number, problem)
                    continue
                # allow_nan=False: a non-finite number that slipped past the row rules
                # fails here, loudly, instead of travelling on as the invalid token NaN.
                write(
                    json.dumps(event, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"
                )
                result.rows_accepted += 1
                result.identifiers_written += 1
                _count_event_identifiers(loop, number, row, event, default_region)
            loop.close(rows)
    return result


def _count_event_identifiers(
    loop: RowLoop, number: int, row: Row, event: Mapping[str, Any], default_region: str
) -> None:
    user = event.get("user")
    if not isinstance(user, Mapping):
        return
    for column, (kind, schema) in _EVENT_USER_SCHEMA.items():
        if column in user:
            loop.by_type[schema] += 1
            continue
        raw = row.get(column)
        if raw is None:
            continue
        # The row was accepted on its other identifier; find out why this one was dropped.
        try:
            hash_identifier(kind, raw, default_region=default_region)
        except RowRejected as problem:
            loop.drop(number, problem)
