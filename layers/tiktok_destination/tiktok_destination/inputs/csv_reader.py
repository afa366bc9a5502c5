"""The CSV reader: a header, then rows in batches, of a whole file or of one range of it.

Structural damage (a quote opened and never closed, a quote closing many lines later, a
huge value) must never make rows vanish: csv.reader would read every line up to the next
quote as one value, and the people on those lines would be removed from the audience. So
the reader hands csv.reader the physical lines itself (``csv_lines.LineFeed``), knows which
lines each record took, and when a record is damaged it rejects the record's first line
(``csv_damage`` says why) and reads the lines after it again as rows of their own.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tiktok_destination.errors import DestinationError, InputRejected, RowRejected
from tiktok_destination.inputs.csv_damage import (
    broken_record,
    check_decodable,
    fits,
    multiline_problem,
    too_large,
    unreadable,
    wrong_width,
)
from tiktok_destination.inputs.csv_lines import (
    BLOCK_CHARS,
    MAX_FIELD_CHARS,
    LineCounts,
    LineFeed,
    RecordTooLong,
    Unreadable,
)
from tiktok_destination.inputs.rows import Batch, RowStream, normalize_header

#: False: every record goes the careful way (the differential test compares the two).
_FAST_PATH = True


def _sniff_delimiter(header_line: str) -> str:
    # Only the header decides, and only when it is unambiguous: a comma wins.
    if "," in header_line:
        return ","
    for candidate in ("\t", ";", "|"):
        if candidate in header_line:
            return candidate
    return ","


def _header_line(feed: LineFeed, counts: LineCounts, source: str) -> str:
    """The first line that is not blank; blank lines before it are skipped and counted."""
    try:
        for line in feed:
            feed.taken.clear()
            if line.strip():
                counts.header = 1
                return line
            counts.blank += 1
    except Unreadable as error:
        raise unreadable(source, error, 0, 0) from None
    raise InputRejected(
        f"{source} is empty: expected a header line naming the columns "
        "(for example email,phone) followed by one row per person or event"
    )


@dataclass(frozen=True)
class RangeStart:
    """Where a range of a CSV starts: data rows and physical lines of the file before it."""

    rows: int
    lines: int


def iter_csv_lines(
    lines: Iterator[str],
    resource: Any,
    source: str,
    *,
    body: Iterator[str] | None = None,
    start: RangeStart | None = None,
    count_header: bool = True,
    on_record_start: Callable[[int, int, int], None] | None = None,
    block_chars: int = BLOCK_CHARS,
    headerless: Sequence[str] = (),
) -> tuple[list[str], RowStream]:
    """The header and rows of CSV text: of the whole file, or of one range of it.

    ``lines`` starts at the file's start (it gives the header). For a range, ``body`` holds
    the range's lines (it starts at a record start the planner found) and ``start`` the rows
    and lines before it, so row numbers and messages stay the file's own; ``count_header``
    False leaves the header's lines to the first range. ``on_record_start(rows, lines,
    bytes)`` is called at clean record starts where the bytes read so far are known: before
    each block of about ``block_chars`` characters that nothing waits before (and before
    every record when the careful path reads alone), with the bytes of the lines read (a
    byte order mark not counted), and at the end. ``resource`` is closed with the stream.
    ``headerless``: the text has no header line; these are its columns (comma-separated, as
    warehouses write by default), and its first line is a data row.
    """
    if headerless:
        feed = LineFeed(lines, block_chars=block_chars, count_bytes=on_record_start is not None)
        counts = LineCounts()
        header, delimiter = list(headerless), ","
    else:
        header, delimiter, feed, counts = _read_header(
            lines,
            resource,
            source,
            block_chars=block_chars,
            count_bytes=on_record_start is not None,
        )
    counts.physical = feed.read
    number, first_line = 0, counts.header + counts.blank
    if body is not None:
        feed = LineFeed(body, block_chars=block_chars)
        if start is not None:
            number, first_line = start.rows, start.lines
        if not count_header:
            counts = LineCounts()
    rows = _csv_rows(
        feed,
        header,
        delimiter,
        source,
        counts,
        number=number,
        first_line=first_line,
        on_record_start=on_record_start,
    )
    return header, RowStream(rows, resource, header=header, rows_before=number, lines=counts)


def _read_header(
    lines: Iterator[str], resource: Any, source: str, *, block_chars: int, count_bytes: bool
) -> tuple[list[str], str, LineFeed, LineCounts]:
    """The header line's names and delimiter, and the feed standing after it."""
    try:
        feed = LineFeed(lines, block_chars=block_chars, count_bytes=count_bytes)
        counts = LineCounts()
        first = _header_line(feed, counts, source)
        delimiter = _sniff_delimiter(first)
        try:
            # Parsed alone: a quote left open in the header must not swallow rows into it.
            raw_header = next(csv.reader((first,), delimiter=delimiter, strict=True))
        except csv.Error as error:
            raise InputRejected(
                f"{source}: the header line is not valid CSV ({error}); check its quotes"
            ) from None
        check_decodable(raw_header, raw_header, 0, source)
        header = normalize_header(raw_header, source)
    except BaseException:
        resource.close()
        raise
    return header, delimiter, feed, counts


def _csv_rows(
    feed: LineFeed,
    header: list[str],
    delimiter: str,
    source: str,
    counts: LineCounts,
    *,
    number: int,
    first_line: int,
    on_record_start: Callable[[int, int, int], None] | None = None,
) -> Iterator[Batch]:
    """The rows in batches, a block of lines at a time.

    The common path: ``csv.reader`` over a block's list of lines, in C, and a record is
    taken as read only when it is plainly a row: it took exactly one line (``line_num``),
    is not blank, not too long, and holds no undecodable bytes (checked per block). Any
    other record, or a csv error, sends that record alone down the careful path below
    (lines one by one through the feed, every damage rule) from its first line on; the
    common path then goes on after it. A record read from one line depends on that line
    only, so both paths read every record the same way.
    """
    width = len(header)
    max_chars = MAX_FIELD_CHARS
    fast = _FAST_PATH
    taken = feed.taken
    before = first_line  # lines of the file before the record being read
    start_read = feed.read
    body_blank = 0
    # strict: a closing quote must end its value ('"x" y' is an error, not the value 'x y').
    careful = csv.reader(feed, delimiter=delimiter, strict=True)
    while True:
        if fast:
            if not feed.pending:
                if on_record_start is not None:
                    on_record_start(number, before, feed.bytes)
                try:
                    if not feed.fill():
                        break
                except Unreadable as error:
                    raise unreadable(source, error, number, before) from None
            lines, at, plain = feed.buffer, feed.at, feed.plain
            if not at and plain:
                records = _whole_block(lines, delimiter, width)
                if records is not None:
                    taken_lines = len(lines)
                    number += taken_lines
                    before += taken_lines
                    feed.at = taken_lines
                    yield records  # type: ignore[misc]  # list[list[str]] is a Batch
                    continue
            batch, done = _one_line_rows(lines, at, plain, delimiter, header, number, source)
            number += done
            feed.at = at + done
            before += done
            if batch:
                yield batch
            if not feed.pending:
                continue
        # The careful path, for one record: the lines it takes come one by one through the
        # feed, which knows which lines they were.
        taken.clear()
        if on_record_start is not None and not feed.pending:
            on_record_start(number, before, feed.bytes)
        failure: Exception | None = None
        try:
            fields = next(careful)
        except StopIteration:
            break
        except Unreadable as error:
            raise unreadable(source, error, number, before) from None
        except (csv.Error, RecordTooLong) as error:
            fields, failure = [], error
        took = len(taken)
        if (
            took == 1
            and fields
            and len(taken[0]) <= max_chars
            and (len(fields) > 1 or not taken[0].isspace())
        ):
            before += 1  # a whole row on one line of a sane size
        else:
            at_line = f"line {before + 1:,} of the file"
            problem: RowRejected | None
            if failure is not None:
                problem = broken_record(failure, taken, feed.ended, at_line)
                feed.ended = False
            elif took == 1:
                if not fields or taken[0].isspace():
                    # A blank line is not a row; nor is one of only spaces or tabs, as
                    # before the header.
                    counts.blank += 1
                    body_blank += 1
                    before += 1
                    continue
                problem = too_large(fields, header, at_line)
            else:
                problem = multiline_problem(fields, taken, header, delimiter, at_line)
            if problem is not None:
                # Only the first line is this row's; the lines it swallowed are rows again.
                number += 1
                feed.read_again(taken[1:])
                before += 1
                yield [problem]
                continue
            before += took
            if took > 1:
                counts.multiline_rows += 1
        number += 1
        if not "".join(fields).isascii():
            check_decodable(fields, header, number, source)
        if len(fields) != width:
            if fits(fields, width):
                fields = fields[:width]
            else:
                yield [wrong_width(len(fields), width)]
                continue
        yield [fields]
    read = feed.read - start_read
    counts.physical += read
    counts.in_rows = before - first_line - body_blank
    if read != before - first_line:
        # Every line must be the header, blank or in a row; otherwise rows may be missing.
        raise DestinationError(
            f"{source}: validate read {first_line + read:,} lines but accounted for "
            f"{before:,}; stopping rather than risk treating rows as absent (a bug: please "
            "report it)"
        )


def _whole_block(lines: list[str], delimiter: str, width: int) -> list[list[str]] | None:
    """A block's records when the block is the usual one, read whole in C; else None.

    Usual: as many records as lines (so each took one), each with the header's field count
    (so none is blank: a blank line has no field, one of whitespace one; in a one-column
    file, any whitespace-only value goes record by record, where its line is looked at).
    """
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        records = list(reader)
    except csv.Error:
        return None
    if (
        records
        and reader.line_num == len(records) == len(lines)
        and min(map(len, records)) == width == max(map(len, records))
        and (width > 1 or not any(map(str.isspace, itertools.chain.from_iterable(records))))
    ):
        return records
    return None


def _one_line_rows(
    lines: list[str],
    at: int,
    plain: bool,
    delimiter: str,
    header: list[str],
    number: int,
    source: str,
) -> tuple[Batch, int]:
    """The rows of a block from line ``at`` on, up to the first record that is not plainly
    a row (see ``_csv_rows``), and the lines they took; ``number`` rows come before them."""
    width = len(header)
    max_chars = MAX_FIELD_CHARS
    block: Iterator[str] = iter(lines)
    if at:
        block.__setstate__(at)  # type: ignore[attr-defined]  # list iterator: skip
    reader = csv.reader(block, delimiter=delimiter, strict=True)
    batch: Batch = []
    done = 0  # lines of the block taken by rows read here
    append = batch.append
    try:
        for fields in reader:
            if reader.line_num != done + 1 or not fields:
                break
            if len(fields) == 1 or not plain:
                line = lines[at + done]
                if (len(fields) == 1 and line.isspace()) or len(line) > max_chars:
                    break
                if not plain and not "".join(fields).isascii():
                    check_decodable(fields, header, number + done + 1, source)
            done += 1
            if len(fields) != width:
                if fits(fields, width):
                    fields = fields[:width]
                else:
                    append(wrong_width(len(fields), width))
                    continue
            append(fields)
    except csv.Error:
        pass
    return batch, done
