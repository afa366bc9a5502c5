"""Why a CSV record is rejected: wrong field counts, quotes left open, huge values, bad bytes.

Each rule gives the ``RowRejected`` the rejects file shows (reason code and fix) for a
record the reader could not take as a row; the reader then reads the lines that record
swallowed again as rows of their own (see ``csv_reader``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

from tiktok_destination.errors import InputRejected, RowRejected
from tiktok_destination.inputs.csv_lines import (
    MAX_FIELD_CHARS,
    MAX_RECORD_LINES,
    RecordTooLong,
    Unreadable,
)
from tiktok_destination.inputs.formats import UNDECODABLE


def unreadable(source: str, error: Unreadable, rows: int, line: int) -> InputRejected:
    where = f"after data row {rows:,} (line {line:,})" if line else "at its header line"
    return InputRejected(
        f"{source}: cannot read the file {where}: it is corrupt or cut short "
        f"({type(error.cause).__name__}; for a .gz file, the compressed data is damaged or "
        "incomplete). Upload the complete file again, and check that the export or upload "
        "finished"
    )


def check_decodable(fields: Sequence[str], header: Sequence[str], row: int, source: str) -> None:
    for position, value in enumerate(fields):
        if UNDECODABLE.search(value):
            column = header[position] if position < len(header) else f"field {position + 1}"
            where = "the header line" if row == 0 else f"data row {row}, column '{column}'"
            raise InputRejected(
                f"{source}: {where} is not valid UTF-8 (the file is probably in another "
                "encoding such as Windows-1252); export it as UTF-8 (Excel: 'CSV UTF-8')"
            )


def fits(fields: Sequence[str], width: int) -> bool:
    # Trailing empty fields, as spreadsheets write, do not count.
    return len(fields) == width or (len(fields) > width and not any(fields[width:]))


def _until_closing_quote(line: str) -> str:
    """The start of a line that begins inside a quoted value, up to the quote closing it."""
    at = 0
    while (at := line.find('"', at)) != -1:
        if line.startswith('""', at):
            at += 2  # an escaped quote inside the value
            continue
        return line[:at]
    return line


def _rows_within(lines: Sequence[str], delimiter: str, width: int) -> int:
    """How many of a multi-line record's continuation lines would each be a whole row.

    The last line holds the end of the quoted value and then the row's remaining fields:
    only its part inside the value counts, else a line break in the first column of a row
    (``"Called twice\\nleft a message",a@example.com,...``) would look like a row itself.
    """
    found = 0
    for index, line in enumerate(lines):
        if index == len(lines) - 1:
            line = _until_closing_quote(line)
        try:
            fields = next(csv.reader((line,), delimiter=delimiter, strict=True), [])
        except csv.Error:
            continue
        if fields and fits(fields, width):
            found += 1
    return found


def wrong_width(fields: int, width: int) -> RowRejected:
    return RowRejected(
        "",
        "malformed_row",
        f"the row has {fields} fields but the header has {width}; "
        "quote values that contain the delimiter or a line break",
    )


def too_large(fields: Sequence[str], header: Sequence[str], at: str) -> RowRejected | None:
    for position, value in enumerate(fields):
        if len(value) > MAX_FIELD_CHARS:
            column = header[position] if position < len(header) else ""
            return RowRejected(
                column,
                "field_too_large",
                f"a value of {len(value):,} characters ({at}), over the {MAX_FIELD_CHARS:,} "
                "that any identifier or event field needs; a double quote left open in this "
                "row can cause this: check its quotes",
            )
    return None


_REREAD = "the row is rejected and the lines after it are read as rows of their own"
_QUOTE_FIX = 'close the quote, or write a double quote inside a value as two ("")'


def broken_record(
    error: Exception, lines: Sequence[str], reached_end: bool, at: str
) -> RowRejected:
    """Why csv.reader could not read a record (``lines``: the lines it took)."""
    if isinstance(error, RecordTooLong):
        return RowRejected(
            "",
            "unterminated_quote",
            f"a quoted value opened in this row ({at}) runs over more than "
            f"{MAX_RECORD_LINES} lines: its quote is not closed; {_REREAD}; {_QUOTE_FIX}",
        )
    if reached_end:
        return RowRejected(
            "",
            "unterminated_quote",
            f"a double quote opened in this row ({at}) is never closed (the file ends "
            f"inside it); {_REREAD}; {_QUOTE_FIX}",
        )
    if sum(map(len, lines)) > csv.field_size_limit():  # csv stopped at its own limit
        return RowRejected(
            "",
            "field_too_large",
            f"a value over {MAX_FIELD_CHARS:,} characters ({at}), more than any identifier or "
            f"event field needs; a double quote left open in this row can cause this; "
            f"{_REREAD}",
        )
    if len(lines) > 1:
        return RowRejected(
            "",
            "unterminated_quote",
            f"a double quote opened in this row ({at}) is not closed on its line, and the next "
            f"quote, {len(lines) - 1} line(s) later, does not end a value; {_REREAD}; "
            f"{_QUOTE_FIX}",
        )
    return RowRejected(
        "",
        "malformed_row",
        f"a quoted value is followed by other characters before the next delimiter ({at}); "
        f"{_QUOTE_FIX}",
    )


def multiline_problem(
    fields: Sequence[str], lines: Sequence[str], header: Sequence[str], delimiter: str, at: str
) -> RowRejected | None:
    """Why a record whose quoted value holds line breaks is damage, or None when it is not."""
    width = len(header)
    oversized = too_large(fields, header, at)
    if oversized is not None:
        return oversized
    spans = f"a quoted value in this row ({at}) spans {len(lines)} lines"
    # Lines that are whole rows on their own are rows swallowed by a quote left open (in
    # a one-column file, every line is); a real line break inside a note or an address
    # rarely holds exactly as many delimiters as the header.
    rows = _rows_within(lines[1:], delimiter, width)
    if rows:
        return RowRejected(
            "",
            "unterminated_quote",
            f"{spans}, and {rows} of them look like rows of their own, so its quote is "
            f"probably not closed where it should be; {_REREAD}; {_QUOTE_FIX}, or remove the "
            "line breaks from the value",
        )
    if not fits(fields, width):
        return RowRejected(
            "",
            "unterminated_quote",
            f"{spans} and then has {len(fields)} fields but the header has {width}, so its "
            f"quote is probably not closed where it should be; {_REREAD}; {_QUOTE_FIX}",
        )
    return None
