"""Which header columns a data template reads, checked before any row is read.

An audience needs a column for at least one of the template's ``user_id_types``; offline
events need event, event_id and email or phone. A missing column stops the run with the
header shown and a rename hint when a name is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from tiktok_destination.errors import ConfigurationError, InputRejected
from tiktok_destination.identity.columns import (
    ColumnResolution,
    resolve_columns,
    resolve_event_columns,
)
from tiktok_destination.identity.columns import header_text as _header_text
from tiktok_destination.identity.columns import looks_like_data as _looks_like_data
from tiktok_destination.identity.schema import COLUMNS, ID_TYPES, SCHEMA


def rename_hints(header: Sequence[str], expected: Sequence[str]) -> str:
    """A hint to rename header names that are close to a missing expected name."""
    if any(_looks_like_data(name) for name in header):
        return ""
    hints: list[str] = []
    for wanted in expected:
        if wanted in header:
            continue
        for name in header:
            if name not in expected and (
                wanted in name or difflib.SequenceMatcher(None, wanted, name).ratio() >= 0.75
            ):
                hints.append(f"'{name[:40]}' to '{wanted}'")
                break
    return f"; if they hold the same data, rename {', '.join(hints)}" if hints else ""


def audience_types(user_id_types: Sequence[str]) -> list[str]:
    """The data template's ``user_id_types``, checked, upper-case and without repeats."""
    types: list[str] = []
    for id_type in user_id_types:
        kind = id_type.strip().upper()
        if kind not in ID_TYPES:
            raise ConfigurationError(
                f"user_id_types has {id_type!r}; use some of {', '.join(ID_TYPES)}"
            )
        if kind not in types:
            types.append(kind)
    if not types:
        raise ConfigurationError(
            f"user_id_types is empty; name at least one of {', '.join(ID_TYPES)} in the data "
            "template"
        )
    return types


def audience_columns(
    header: Sequence[str],
    types: Sequence[str],
    *,
    source: str,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
    data_template: str | None = None,
) -> tuple[ColumnResolution, list[tuple[str, str, str]]]:
    """The header's columns for an audience: ``(kind, column, schema)`` per identifier found;
    raises InputRejected when none of the template's identifiers has a column."""
    wanted = [COLUMNS[kind] for kind in types]
    resolution = resolve_columns(
        header,
        wanted,
        identifier_fields=wanted,
        columns=columns,
        ignore_columns=ignore_columns,
        source=source,
        data_template=data_template,
    )
    present = [
        (kind, resolution.used[COLUMNS[kind]], SCHEMA[kind])
        for kind in types
        if COLUMNS[kind] in resolution.used
    ]
    if not present:
        where = f"[data_templates.{data_template}]" if data_template else "the data template"
        raise InputRejected(
            f"{source}: none of the columns {', '.join(wanted)} found; "
            f"{_header_text(header)}; expected at least one of: {', '.join(wanted)} (the "
            f"data template's user_id_types) or an alias of one (see the README), or a "
            f'mapping such as columns = {{ {wanted[0]} = "..." }} in {where}'
            f"{rename_hints(header, wanted)}"
        )
    return resolution, present


def event_columns(
    header: Sequence[str],
    *,
    source: str,
    fallback_event_set_id: str | None,
    data_template: str | None = None,
    columns: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
) -> ColumnResolution:
    """The header's columns for offline events; raises when a required one is missing."""
    resolution = resolve_event_columns(
        header,
        columns=columns,
        ignore_columns=ignore_columns,
        source=source,
        data_template=data_template,
    )
    used = resolution.used
    missing = [name for name in ("event", "event_id") if name not in used]
    if "email" not in used and "phone" not in used:
        missing.append("email or phone")
    if missing:
        raise InputRejected(
            f"{source}: missing required column(s): {', '.join(missing)}; "
            f"{_header_text(header)}; an offline events file needs event, event_id, and "
            f"email or phone (or a columns mapping in the data template to them)"
            f"{rename_hints(header, ['event', 'event_id', 'email', 'phone'])}"
        )
    if "event_set_id" not in used and not (fallback_event_set_id or "").strip():
        where = f"[data_templates.{data_template}]" if data_template else "the data template"
        raise ConfigurationError(
            f"{source}: no event_set_id: add an event_set_id column, pass event_set_id in "
            f"the execution input, or set event_set_id in {where}"
        )
    return resolution
