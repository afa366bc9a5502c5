"""The validate step: read the input file, check it, and write hashes and a rejects file.

Everything streams: CSV a block of whole lines at a time, Parquet record batch by record
batch, and outputs go through buffered file handles, so memory stays flat however large the
file is. Raw identifiers exist only in here; what leaves is SHA-256 hashes (``out_members``,
``out_events``) and a rejects file that names row, column and reason but never the value.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import gc
import gzip
import io
import itertools
import json
import logging
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from tiktok_destination.errors import (
    ConfigurationError,
    DestinationError,
    InputRejected,
    RowRejected,
)
from tiktok_destination.identity.column_hashing import ColumnHasher, identifier_column_hasher
from tiktok_destination.identity.columns import (
    ColumnResolution,
    resolve_columns,
    resolve_event_columns,
)
from tiktok_destination.identity.columns import header_text as _header_text
from tiktok_destination.identity.columns import looks_like_data as _looks_like_data
from tiktok_destination.identity.hashing import hash_identifier
from tiktok_destination.identity.schema import COLUMNS, ID_TYPES, SCHEMA

if TYPE_CHECKING:
    # pyarrow is imported where Parquet is read: every handler imports this package, and
    # only validate of a Parquet file needs it (it costs a Lambda cold start ~0.5 s).
    import pyarrow as pa
    import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

Row = dict[str, str | None]
#: ``(row number, row)``; a row that cannot be read as one (wrong field count) comes as
#: the :class:`RowRejected` saying why, so the caller can send it to the rejects file.
NumberedRow = tuple[int, Row | RowRejected]
#: A row's values in header order, as read: an empty value, one of only whitespace, or None
#: is no value (the dict rows hold None there). What ``RowStream.records`` gives, without a
#: dict per row.
Fields = Sequence[str | None]
NumberedFields = tuple[int, Fields | RowRejected]
#: Rows in file order, numbered by their place: each row, read or rejected, is the next
#: number (blank lines are not rows), so a batch needs no numbers of its own.
Batch = list[Fields | RowRejected]

CSV_EXTENSIONS: tuple[str, ...] = (".csv", ".txt", ".csv.gz", ".txt.gz")
PARQUET_EXTENSIONS: tuple[str, ...] = (".parquet", ".pq")
#: ``kind`` last, so readers of the first four columns by position are unaffected.
REJECTS_HEADER: tuple[str, ...] = ("row", "column", "reason_code", "reason", "kind")
#: A rejects file line's ``kind``: the whole row was not used...
REJECTED_ROW = "rejected_row"
#: ...or one value was left out of a row that was used for its other identifier(s).
DROPPED_VALUE = "dropped_value"

#: Rows between progress log lines (the audience loop logs at the end of the batch that
#: reaches a multiple).
PROGRESS_EVERY = 25 * 4096
PARQUET_BATCH_ROWS = 10_000
_WRITE_BUFFER = 1 << 20
_TOP_REASONS = 3

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# Bytes that are not UTF-8 decode to these lone surrogates under "surrogateescape".
_UNDECODABLE = re.compile("[\udc80-\udcff]")


# ---------------------------------------------------------------- result
@dataclass
class LineCounts:
    """Where the physical lines of a CSV went; ``physical == header + blank + in_rows``.

    A line ends at ``\\n``, ``\\r\\n`` or ``\\r``. ``in_rows`` exceeds the row count when
    quoted values hold line breaks (``multiline_rows`` rows take more than one line each).
    """

    physical: int = 0
    header: int = 0
    blank: int = 0
    in_rows: int = 0
    multiline_rows: int = 0


@dataclass
class ValidationResult:
    """Counts for the run report: every row received is either accepted or rejected."""

    source: str
    rows_received: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    #: audience: lines written to ``out_members``; events: rows written to ``out_events``
    identifiers_written: int = 0
    #: keyed by TikTok schema type (``EMAIL_SHA256``...)
    identifiers_by_type: dict[str, int] = field(default_factory=dict)
    #: an invalid value in a row that was still accepted thanks to another identifier; each
    #: is also a ``dropped_value`` line of the rejects file
    dropped_identifiers_by_reason: dict[str, int] = field(default_factory=dict)
    #: audiences, per identifier column (the file's header name): its values that gave an
    #: identifier, and its invalid values by reason (in rejected and accepted rows alike);
    #: a column's non-empty values are the two together (see ``_check_columns``)
    valid_values_by_column: dict[str, int] = field(default_factory=dict)
    invalid_values_by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    #: field -> the header column it was read from
    columns_used: dict[str, str] = field(default_factory=dict)
    #: header column -> why nothing was read from it
    columns_ignored: dict[str, str] = field(default_factory=dict)
    #: identifier fields the data template asks for that no column supplies
    columns_missing: list[str] = field(default_factory=list)

    def record_columns(self, resolution: ColumnResolution) -> None:
        self.columns_used = dict(resolution.used)
        self.columns_ignored = dict(resolution.ignored)
        self.columns_missing = list(resolution.missing)

    #: CSV only: the physical lines read and where they went (None for Parquet)
    lines: LineCounts | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lines_note(lines: LineCounts, rows: int) -> str | None:
    """Why a CSV's row count differs from its line count, or None when each line is a row."""
    if lines.physical == lines.header + rows:
        return None
    parts = [f"{lines.header} header line"]
    if lines.blank:
        parts.append(f"{lines.blank:,} blank line(s), skipped")
    parts.append(f"{rows:,} rows on {lines.in_rows:,} lines")
    note = f"the file has {lines.physical:,} lines but {rows:,} rows: {', '.join(parts)}"
    if lines.multiline_rows:
        note += (
            f"; {lines.multiline_rows:,} row(s) hold quoted values with line breaks and take "
            "more than one line each"
        )
    return note


def lines_report(validation: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run report's ``lines`` section from a stored validation summary (CSV only)."""
    stored = validation.get("lines")
    if not isinstance(stored, Mapping):
        return None
    lines = LineCounts(**stored)
    section: dict[str, Any] = dataclasses.asdict(lines)
    note = lines_note(lines, int(validation.get("rows_received") or 0))
    if note:
        section["note"] = note
    return section


# ---------------------------------------------------------------- format detection
def detect_format(key: str) -> Literal["csv", "parquet"]:
    """The file format from the object key's extension (case-insensitive)."""
    lowered = key.lower()
    if lowered.endswith(CSV_EXTENSIONS):
        return "csv"
    if lowered.endswith(PARQUET_EXTENSIONS):
        return "parquet"
    raise InputRejected(
        f"{key}: cannot tell the file format from its name; accepted extensions are "
        f"{', '.join(CSV_EXTENSIONS)} (CSV, UTF-8) and {', '.join(PARQUET_EXTENSIONS)} "
        "(Parquet); rename the file or export it in one of these formats"
    )


# ---------------------------------------------------------------- header helpers
def _rename_hints(header: Sequence[str], expected: Sequence[str]) -> str:
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


def _normalize_header(raw: Sequence[str], source: str) -> list[str]:
    header = [name.strip().lower() for name in raw]
    if not any(header):
        raise InputRejected(
            f"{source}: the header line is empty; the first line must name the columns, "
            "for example email,phone"
        )
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            continue
        if name in seen:
            shown = "a column" if _looks_like_data(name) else f"column '{name[:40]}'"
            raise InputRejected(
                f"{source}: {shown} appears twice in the header (columns "
                f"{seen[name]} and {position}; names are compared without case); "
                "keep one of them or rename the other"
            )
        seen[name] = position
    return header


def _empty_to_none(value: str | None) -> str | None:
    return None if not value or value.isspace() else value


class RowStream(Iterator[NumberedRow]):
    """The rows of one open file. The file is closed at the end of the rows, on a read
    error, or by ``close()`` (which also works before the first row).

    Iterating gives ``(number, dict row)``; ``records()`` gives the same rows as field lists
    in ``header`` order, the cheap way for a loop over millions of rows.
    """

    def __init__(
        self,
        batches: Iterator[Batch],
        resource: Any,
        *,
        header: Sequence[str],
        rows_before: int = 0,
        lines: LineCounts | None = None,
    ):
        self._resource = resource
        self.header = list(header)
        #: rows of the file before the first one here (a range's start)
        self.rows_before = rows_before
        self._batches = self._closing(batches)
        # enumerate, not a number stored per row: it reuses its tuple when the loop
        # unpacks it at once.
        self._records: Iterator[NumberedFields] = enumerate(
            itertools.chain.from_iterable(self._batches), start=rows_before + 1
        )
        #: CSV: complete once every row was read
        self.lines = lines

    def _closing(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        # A generator per batch, not per row: it closes the file at the end or on an error.
        try:
            yield from batches
        finally:
            self.close()

    def records(self) -> Iterator[NumberedFields]:
        """``(number, fields)`` per row, fields in ``header`` order (see ``Fields``); a row
        that cannot be read comes as the ``RowRejected`` saying why, as with iteration."""
        return self._records

    def batches(self) -> Iterator[Batch]:
        """The same rows as ``records()``, a batch at a time as read (see ``Batch``): the
        first is row ``rows_before + 1``. Read the rows one way only."""
        return self._batches

    def __next__(self) -> NumberedRow:
        number, fields = next(self._records)
        if isinstance(fields, RowRejected):
            return number, fields
        return number, {
            name: _empty_to_none(value) for name, value in zip(self.header, fields, strict=True)
        }

    def close(self) -> None:
        self._resource.close()


# ---------------------------------------------------------------- CSV
# Structural damage (a quote opened and never closed, a quote closing many lines later, a
# huge value) must never make rows vanish: csv.reader would read every line up to the next
# quote as one value, and the people on those lines would be removed from the audience. So
# the reader hands csv.reader the physical lines itself, knows which lines each record
# took, and when a record is damaged it rejects the record's first line and reads the
# lines after it again as rows of their own.

#: No identifier or event field comes near this many characters; a longer value is almost
#: always a quote left open that swallowed the lines after it. Checked here rather than by
#: lowering csv.field_size_limit, which is process-wide (csv's own 128 KiB stays a backstop).
MAX_FIELD_CHARS = 64 * 1024
#: A quoted value may hold line breaks (an address, a note); one running over more lines
#: than this is a quote left open.
MAX_RECORD_LINES = 100
#: Characters of whole lines the common path reads at once (``readlines``' size hint).
BLOCK_CHARS = 256 * 1024
#: False: every record goes the careful way (the differential test compares the two).
_FAST_PATH = True


class _Unreadable(Exception):
    """Reading the file failed part way: a corrupt or truncated gzip stream, or I/O."""

    def __init__(self, cause: BaseException):
        super().__init__(type(cause).__name__)
        self.cause = cause


class _RecordTooLong(Exception):
    """The record being read already took more than MAX_RECORD_LINES lines."""


class _LineFeed:
    """The file's physical lines for ``csv.reader``, with a way to read lines again.

    Lines come in blocks (``fill``: whole lines, read in C by ``readlines``) for the common
    path, which parses a block's lines itself, or one by one (``next``) for the careful path
    and the header. ``taken`` holds the lines handed out one by one since the caller last
    cleared it (one record's), so the lines a damaged record swallowed can be read again. A
    class, not a generator: a generator that raises is finished, and this one raises
    ``_RecordTooLong`` to stop ``csv.reader`` mid-record and is then read on.
    """

    def __init__(self, text: Iterator[str], *, block_chars: int = 0, count_bytes: bool = False):
        self._text = text
        self._readlines: Callable[[int], list[str]] | None = getattr(text, "readlines", None)
        # readlines(0 or less) would read the whole file at once.
        self._block_chars = block_chars if block_chars > 0 else BLOCK_CHARS
        self._count_bytes = count_bytes
        #: lines read from the file and not handed out yet (from ``at`` on): the rest of a
        #: block, or the lines of a damaged record to read again
        self.buffer: list[str] = []
        self.at = 0
        #: no line of ``buffer`` is longer than MAX_FIELD_CHARS or holds undecodable bytes
        self.plain = True
        self.taken: list[str] = []
        #: lines read from the file (lines read again are not counted twice)
        self.read = 0
        #: bytes of those lines (only with ``count_bytes``)
        self.bytes = 0
        #: the end of the file was reached since the caller last cleared this
        self.ended = False

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self.at < len(self.buffer):
            line = self.buffer[self.at]
            self.at += 1
        else:
            try:
                line = next(self._text)
            except StopIteration:
                self.ended = True
                raise
            except (EOFError, OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
                raise _Unreadable(error) from None
            self.read += 1
            if self._count_bytes:
                self.bytes += _byte_count(line)
        taken = self.taken
        taken.append(line)
        if len(taken) > MAX_RECORD_LINES:
            raise _RecordTooLong
        return line

    def fill(self) -> bool:
        """Read the next block of whole lines into ``buffer`` (call when nothing is pending);
        False at the end of the file."""
        try:
            if self._readlines is not None:
                lines = self._readlines(self._block_chars)
            else:
                lines = list(itertools.islice(self._text, 1024))
        except (EOFError, OSError, zlib.error) as error:
            raise _Unreadable(error) from None
        self.read += len(lines)
        text = self._hold(lines)
        if self._count_bytes:
            self.bytes += _byte_count(text)
        return bool(lines)

    def _hold(self, lines: list[str]) -> str:
        text = "".join(lines)
        self.buffer, self.at = lines, 0
        self.plain = (text.isascii() or not _UNDECODABLE.search(text)) and (
            len(text) <= MAX_FIELD_CHARS or max(map(len, lines)) <= MAX_FIELD_CHARS
        )
        return text

    def read_again(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        if self.at < len(self.buffer):
            # Lines come from the buffer before the file: these were the buffer's, just
            # before ``at``.
            self.at -= len(lines)
        else:
            self._hold(list(lines))

    @property
    def pending(self) -> bool:
        """Lines read from the file wait in the buffer: ``bytes`` is not where the next
        record starts (the rest of a block, or a damaged record's lines to read again)."""
        return self.at < len(self.buffer)


def _byte_count(text: str) -> int:
    # An ASCII text is a byte a character; otherwise surrogateescape gives back exactly the
    # bytes it decoded.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def _open_text(src: Path, source: str) -> IO[str]:
    # The text stream owns the file and closes it.
    return text_stream(open(src, "rb"), source)


def text_stream(raw: IO[bytes], source: str, *, file_start: bool = True) -> IO[str]:
    """The CSV text of a binary stream; ``file_start`` False: a range inside the file.

    A range inside the file starts at a record start: no gzip or Parquet check, and no
    byte order mark to strip (one there would be a value's, as in the whole file).
    """
    if not file_start:
        return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
    try:
        magic = _peek(raw, 4)
    except BaseException:
        raw.close()
        raise
    if magic == _PARQUET_MAGIC:
        raw.close()
        raise InputRejected(
            f"{source} is a Parquet file but its name says CSV; name it with a "
            f"{' or '.join(PARQUET_EXTENSIONS)} extension"
        )
    # surrogateescape instead of strict decoding: a bad byte then shows up in the one row
    # that holds it, so the error can name that row rather than a nearby read buffer.
    # newline="": line ends are kept, so csv.reader sees line breaks inside quoted values.
    try:
        if magic.startswith(_GZIP_MAGIC):
            unzipped = gzip.GzipFile(fileobj=raw)
            binary: IO[bytes] = unzipped  # type: ignore[assignment]
            # corrupt or cut short: reading the header line says so, naming the line
            with suppress(OSError, EOFError, zlib.error):
                _refuse_utf16(unzipped.peek(4)[:4], source)
        else:
            binary = raw
            _refuse_utf16(magic, source)
    except BaseException:
        raw.close()
        raise
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _refuse_utf16(start: bytes, source: str) -> None:
    """Refuse a UTF-16 or UTF-32 file (Excel's "Unicode Text") with the fix.

    Refused rather than transcoded: ranges split the file at byte offsets found by looking
    for the bytes of a line end, and checkpoints count UTF-8 bytes; in UTF-16 a line end is
    two bytes and either may sit beside half of another character, so every range read would
    need its own decoding rules. A UTF-8 export is one setting away.
    """
    if start.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        found = "UTF-32 (it starts with a UTF-32 byte order mark)"
    elif start.startswith((b"\xff\xfe", b"\xfe\xff")):
        found = "UTF-16 (it starts with a UTF-16 byte order mark)"
    elif len(start) == 4 and (
        (start[1] == start[3] == 0 and start[0] and start[2])
        or (start[0] == start[2] == 0 and start[1] and start[3])
    ):
        found = "UTF-16 (every other byte of its first characters is zero)"
    else:
        return
    raise InputRejected(
        f"{source} is encoded as {found}, which is not read; export it as UTF-8 (Excel: "
        "Save As 'CSV UTF-8 (Comma delimited)', not 'Unicode Text'), with or without BOM"
    )


def _peek(raw: IO[bytes], size: int) -> bytes:
    peek = getattr(raw, "peek", None)
    if peek is not None:
        return bytes(peek(size)[:size])
    raise ConfigurationError("text_stream needs a buffered binary stream (one with peek)")


def _unreadable(source: str, error: _Unreadable, rows: int, line: int) -> InputRejected:
    where = f"after data row {rows:,} (line {line:,})" if line else "at its header line"
    return InputRejected(
        f"{source}: cannot read the file {where}: it is corrupt or cut short "
        f"({type(error.cause).__name__}; for a .gz file, the compressed data is damaged or "
        "incomplete). Upload the complete file again, and check that the export or upload "
        "finished"
    )


def _check_decodable(fields: Sequence[str], header: Sequence[str], row: int, source: str) -> None:
    for position, value in enumerate(fields):
        if _UNDECODABLE.search(value):
            column = header[position] if position < len(header) else f"field {position + 1}"
            where = "the header line" if row == 0 else f"data row {row}, column '{column}'"
            raise InputRejected(
                f"{source}: {where} is not valid UTF-8 (the file is probably in another "
                "encoding such as Windows-1252); export it as UTF-8 (Excel: 'CSV UTF-8')"
            )


def _sniff_delimiter(header_line: str) -> str:
    # Only the header decides, and only when it is unambiguous: a comma wins.
    if "," in header_line:
        return ","
    for candidate in ("\t", ";", "|"):
        if candidate in header_line:
            return candidate
    return ","


def _header_line(feed: _LineFeed, counts: LineCounts, source: str) -> str:
    """The first line that is not blank; blank lines before it are skipped and counted."""
    try:
        for line in feed:
            feed.taken.clear()
            if line.strip():
                counts.header = 1
                return line
            counts.blank += 1
    except _Unreadable as error:
        raise _unreadable(source, error, 0, 0) from None
    raise InputRejected(
        f"{source} is empty: expected a header line naming the columns "
        "(for example email,phone) followed by one row per person or event"
    )


def _iter_csv(src: Path, source: str) -> tuple[list[str], RowStream]:
    text = _open_text(src, source)
    return iter_csv_lines(text, text, source)


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
        feed = _LineFeed(lines, block_chars=block_chars, count_bytes=on_record_start is not None)
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
        feed = _LineFeed(body, block_chars=block_chars)
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
) -> tuple[list[str], str, _LineFeed, LineCounts]:
    """The header line's names and delimiter, and the feed standing after it."""
    try:
        feed = _LineFeed(lines, block_chars=block_chars, count_bytes=count_bytes)
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
        _check_decodable(raw_header, raw_header, 0, source)
        header = _normalize_header(raw_header, source)
    except BaseException:
        resource.close()
        raise
    return header, delimiter, feed, counts


def _fits(fields: Sequence[str], width: int) -> bool:
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
        if fields and _fits(fields, width):
            found += 1
    return found


def _wrong_width(fields: int, width: int) -> RowRejected:
    return RowRejected(
        "",
        "malformed_row",
        f"the row has {fields} fields but the header has {width}; "
        "quote values that contain the delimiter or a line break",
    )


def _too_large(fields: Sequence[str], header: Sequence[str], at: str) -> RowRejected | None:
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


def _broken_record(
    error: Exception, lines: Sequence[str], reached_end: bool, at: str
) -> RowRejected:
    """Why csv.reader could not read a record (``lines``: the lines it took)."""
    if isinstance(error, _RecordTooLong):
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


def _multiline_problem(
    fields: Sequence[str], lines: Sequence[str], header: Sequence[str], delimiter: str, at: str
) -> RowRejected | None:
    """Why a record whose quoted value holds line breaks is damage, or None when it is not."""
    width = len(header)
    too_large = _too_large(fields, header, at)
    if too_large is not None:
        return too_large
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
    if not _fits(fields, width):
        return RowRejected(
            "",
            "unterminated_quote",
            f"{spans} and then has {len(fields)} fields but the header has {width}, so its "
            f"quote is probably not closed where it should be; {_REREAD}; {_QUOTE_FIX}",
        )
    return None


def _csv_rows(
    feed: _LineFeed,
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
        batch: Batch = []
        if fast:
            if not feed.pending:
                if on_record_start is not None:
                    on_record_start(number, before, feed.bytes)
                try:
                    if not feed.fill():
                        break
                except _Unreadable as error:
                    raise _unreadable(source, error, number, before) from None
            lines, at, plain = feed.buffer, feed.at, feed.plain
            if not at and plain:
                # The usual block, read whole in C: as many records as lines (so each took
                # one), each with the header's field count (so none is blank: a blank line
                # has no field, one of whitespace one; in a one-column file, any
                # whitespace-only value goes record by record, where its line is looked at).
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                try:
                    records = list(reader)
                except csv.Error:
                    records = []
                taken_lines = len(lines)
                if (
                    records
                    and reader.line_num == len(records) == taken_lines
                    and min(map(len, records)) == width == max(map(len, records))
                    and (
                        width > 1
                        or not any(map(str.isspace, itertools.chain.from_iterable(records)))
                    )
                ):
                    number += taken_lines
                    before += taken_lines
                    feed.at = taken_lines
                    yield records  # type: ignore[misc]  # list[list[str]] is a Batch
                    continue
            block: Iterator[str] = iter(lines)
            if at:
                block.__setstate__(at)  # type: ignore[attr-defined]  # list iterator: skip
            reader = csv.reader(block, delimiter=delimiter, strict=True)
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
                            _check_decodable(fields, header, number + 1, source)
                    done += 1
                    number += 1
                    if len(fields) != width:
                        if _fits(fields, width):
                            fields = fields[:width]
                        else:
                            append(_wrong_width(len(fields), width))
                            continue
                    append(fields)
            except csv.Error:
                pass
            feed.at = at + done
            before += done
            if batch:
                yield batch
                batch = []
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
        except _Unreadable as error:
            raise _unreadable(source, error, number, before) from None
        except (csv.Error, _RecordTooLong) as error:
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
                problem = _broken_record(failure, taken, feed.ended, at_line)
                feed.ended = False
            elif took == 1:
                if not fields or taken[0].isspace():
                    # A blank line is not a row; nor is one of only spaces or tabs, as
                    # before the header.
                    counts.blank += 1
                    body_blank += 1
                    before += 1
                    continue
                problem = _too_large(fields, header, at_line)
            else:
                problem = _multiline_problem(fields, taken, header, delimiter, at_line)
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
            _check_decodable(fields, header, number, source)
        if len(fields) != width:
            if _fits(fields, width):
                fields = fields[:width]
            else:
                yield [_wrong_width(len(fields), width)]
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


# ---------------------------------------------------------------- Parquet
def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _empty_to_none(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:  # NaN is how pandas writes a missing number
            return None
        # Pandas turns an int column with nulls into floats: 5.0 was 5.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        # Naive timestamps are taken as UTC, the convention of warehouse exports.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return _empty_to_none(value.decode("utf-8"))  # UnicodeDecodeError: see _column_texts
    if hasattr(value, "isoformat"):
        return str(value.isoformat())  # date, time
    return str(value)


def _column_texts(array: pa.Array, name: str, first_row: int, source: str) -> list[str | None]:
    try:
        return _converted(array)
    except UnicodeDecodeError:
        raise InputRejected(
            f"{source}: column '{name}' holds binary values that are not UTF-8 text (in rows "
            f"{first_row} to {first_row + len(array) - 1}); write it as a string column"
        ) from None


def _converted(array: pa.Array) -> list[str | None]:
    import pyarrow as pa

    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        # Python datetimes hold microseconds; nanoseconds never matter for these columns.
        array = array.cast(pa.timestamp("us", tz=kind.tz), safe=False)
    values = array.to_pylist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [_empty_to_none(v) if v is not None else None for v in values]
    if pa.types.is_integer(kind):
        return [str(v) if v is not None else None for v in values]
    if pa.types.is_float32(kind) or pa.types.is_float16(kind):
        return [_as_short_float_text(v, kind.bit_width) for v in values]
    return [_as_text(v) for v in values]


def _as_short_float_text(value: float | None, bit_width: int) -> str | None:
    # A float32 holds whole numbers exactly only up to 2**24 (float16: 2**11): above that, a
    # phone of 10 digits comes back as a neighbour's number (4158444856 -> 4158444736.0).
    # Written in scientific notation with only the digits the type keeps, such a value is
    # never read as digits that were not in the file (a phone column rejects it as
    # phone_lost_digits).
    exact, digits = (2**24, 7) if bit_width == 32 else (2**11, 3)
    if value is not None and value == value and abs(value) > exact and value.is_integer():
        return format(value, f".{digits - 1}e")
    return _as_text(value)


def _iter_parquet(
    src: Path | IO[bytes],
    source: str,
    *,
    row_groups: Sequence[int] | None = None,
    first_row: int = 0,
) -> tuple[list[str], RowStream]:
    """A Parquet file's header and rows; ``row_groups`` (numbered from 0) limits them to
    those groups, whose first row follows ``first_row`` rows of the earlier groups."""
    parquet, header = open_parquet(src, source)
    rows = _parquet_rows(parquet, header, source, row_groups=row_groups, number=first_row)
    return header, RowStream(rows, parquet, header=header, rows_before=first_row)


def open_parquet(src: Path | IO[bytes], source: str) -> tuple[pq.ParquetFile, list[str]]:
    """The open Parquet file and its normalized header (raises InputRejected when unusable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(src)
    except (pa.ArrowException, OSError) as error:
        raise InputRejected(
            f"{source} is not a readable Parquet file ({type(error).__name__}: {error}); "
            "export it again, or name a CSV file .csv"
        ) from None
    names = parquet.schema_arrow.names
    if not names:
        parquet.close()
        raise InputRejected(f"{source}: the Parquet file has no columns")
    try:
        header = _normalize_header(names, source)
    except BaseException:
        parquet.close()
        raise
    return parquet, header


def _parquet_rows(
    parquet: pq.ParquetFile,
    header: list[str],
    source: str,
    *,
    row_groups: Sequence[int] | None,
    number: int,
) -> Iterator[Batch]:
    import pyarrow as pa

    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=row_groups)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as error:
            raise InputRejected(
                f"{source}: cannot read the Parquet data after row {number} "
                f"({type(error).__name__}: {error}); the file may be truncated, export "
                "it again"
            ) from None
        columns = [
            _column_texts(batch.column(i), header[i], number + 1, source)
            for i in range(batch.num_columns)
        ]
        rows: Batch = list(zip(*columns, strict=True))
        yield rows
        number += batch.num_rows


def iter_rows(src: Path, file_format: str, *, source: str) -> tuple[list[str], RowStream]:
    """The normalized header (stripped, lowercase) and a stream of ``(row number, row)``.

    Row numbers count data rows from 1 (the header is not counted, nor are blank lines).
    A row is a dict from header name to value, with empty and blank values as ``None``;
    a CSV row that cannot be read as one comes as a ``RowRejected`` instead: its field
    count differs from the header's (``malformed_row``), or its quoting is broken
    (``unterminated_quote``, ``field_too_large``, ``malformed_row``; the lines it swallowed
    follow as rows of their own). A file that cannot be read at all raises
    ``InputRejected``, naming the row where that is known. The stream owns the open file: it
    closes at the end of the rows; close it yourself when stopping early. For a CSV,
    ``stream.lines`` counts the physical lines.
    """
    if file_format == "csv":
        return _iter_csv(src, source)
    if file_format == "parquet":
        return _iter_parquet(src, source)
    raise ConfigurationError(f"unknown file format {file_format!r}; use 'csv' or 'parquet'")


# ---------------------------------------------------------------- shared row loop
def _check_threshold(reject_threshold: float) -> None:
    if not 0.0 <= reject_threshold <= 1.0:
        raise ConfigurationError(
            f"reject_threshold {reject_threshold} must be a share between 0 and 1 "
            "(0.2 stops a run when more than 20% of its rows are rejected)"
        )


def _top_reasons(by_reason: Mapping[str, int]) -> str:
    ranked = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))[:_TOP_REASONS]
    return ", ".join(f"{code} ({count:,} rows)" for code, count in ranked)


def _finish(
    result: ValidationResult, reject_threshold: float, *, empty_audience: bool | None = None
) -> None:
    """Raise when the file as a whole is unusable; call after every output is closed.

    ``empty_audience``: for an audience, whether this execution may empty it (its
    allow_mass_removal); None for offline events.
    """
    try:
        _check_usable(result, reject_threshold, empty_audience=empty_audience)
    except InputRejected as err:
        err.result = result
        raise


#: What to do when many values or rows are rejected for this reason (the reject-threshold
#: messages give the main reason's).
_REASON_FIXES: dict[str, str] = {
    "phone_lost_digits": (
        "the phones were exported as numbers in scientific notation that rounded digits "
        "away (like 4.15844E+09): export the column as text (in a spreadsheet, format it as "
        "Text before saving)"
    ),
    "invalid_phone": (
        "check that the column holds phone numbers, written with their country code or as "
        "numbers of the default region (default_phone_region), and that it is the column "
        "meant for phone"
    ),
    "phone_extension": "give the direct numbers, without extensions",
    # no example address: these messages go to notifications, where "@" looks like PII
    "invalid_email": (
        "check that the column holds email addresses and that it is the column meant for email"
    ),
    "invalid_idfa": "check that the column holds IDFAs (UUIDs), not MD5s or all zeros",
    "invalid_aaid": "check that the column holds AAIDs (UUIDs), not MD5s or all zeros",
    "invisible_character": (
        "the values hold control or invisible characters: clean the column at the source"
    ),
    "event_id_conflict": (
        "rows of one event set, event and event_id name different people: give each "
        "person's event its own event_id"
    ),
}


def _main_reason(by_reason: Mapping[str, int]) -> tuple[str, int]:
    reason, count = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))[0]
    return reason, count


def _fix(by_reason: Mapping[str, int]) -> str:
    """``; <main reason>: <its fix>`` when the main reason has one, else ""."""
    if not by_reason:
        return ""
    reason, _ = _main_reason(by_reason)
    fix = _REASON_FIXES.get(reason)
    return f"; {reason}: {fix}" if fix else ""


def _check_columns(result: ValidationResult, reject_threshold: float) -> None:
    """An identifier column with more than ``reject_threshold`` of its non-empty values
    invalid stops the run, whatever became of its rows: where another identifier kept them,
    the column's values would only be dropped, and their members removed at TikTok."""
    fields = {column: name for name, column in result.columns_used.items()}
    broken: list[str] = []
    for column, reasons in result.invalid_values_by_column.items():
        invalid = sum(reasons.values())
        values = invalid + result.valid_values_by_column.get(column, 0)
        share = invalid / values if values else 0.0
        if share <= reject_threshold:
            continue
        reason, count = _main_reason(reasons)
        field_name = fields.get(column, column)
        named = f"'{column}'" if field_name == column else f"'{column}' (read as {field_name})"
        fix = _REASON_FIXES.get(reason, "fix the column at the source")
        broken.append(
            f"column {named} has too many invalid values: {invalid:,} of its {values:,} "
            f"({share:.1%}), above the reject threshold of {reject_threshold:.1%}; main "
            f"reason {reason} ({count:,} values): {fix}"
        )
    if broken:
        raise InputRejected(
            f"{result.source}: {'; '.join(broken)}. Nothing is sent: syncing the column as it "
            "is would remove those members at TikTok. Fix the column and run again; if it is "
            "not meant to be read, list it in ignore_columns (or raise reject_threshold if "
            "this share is expected)"
        )


def _check_usable(
    result: ValidationResult, reject_threshold: float, *, empty_audience: bool | None = None
) -> None:
    """The file-level rules over a whole file's counts (a ranged file's added up): rows,
    then identifier columns. The one place reject_threshold is applied."""
    source = result.source
    if result.rows_received == 0:
        if empty_audience:
            return  # a header alone empties the audience: this execution allows it
        on_purpose = (
            "; to empty the audience on purpose, start a new execution with the same input "
            'and "allow_mass_removal": true'
            if empty_audience is False
            else ""
        )
        raise InputRejected(
            f"{source} has a header but no data rows; check that the query returned rows "
            f"before it was exported{on_purpose}"
        )
    share = result.rows_rejected / result.rows_received
    if share > reject_threshold:
        raise InputRejected(
            f"{source}: {result.rows_rejected:,} of {result.rows_received:,} rows rejected "
            f"({share:.1%}), above the reject threshold of {reject_threshold:.1%}; top "
            f"reasons: {_top_reasons(result.rejected_by_reason)}"
            f"{_fix(result.rejected_by_reason)}. The rejects file lists each "
            "rejected row with its column and reason: fix those rows and run again, or raise "
            "reject_threshold if this share is expected"
        )
    # A column broken in rows that another identifier kept: the rows' share missed it.
    _check_columns(result, reject_threshold)
    if result.rows_accepted == 0:
        # Even at threshold 1.0: an audience of nobody would remove every member.
        raise InputRejected(
            f"{source}: none of its {result.rows_received:,} rows is usable; top reasons: "
            f"{_top_reasons(result.rejected_by_reason)}. The rejects file lists each row "
            "with its column and reason"
        )


class _RowLoop:
    """Counting, the rejects file and progress logging shared by both file kinds."""

    def __init__(
        self, result: ValidationResult, rejects: IO[str], columns: Mapping[str, str] | None = None
    ):
        self.result = result
        # Reasons name our field (email); the rejects file names the file's column.
        self._columns = dict(columns or {})
        self.rejected: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._writer = csv.writer(rejects, lineterminator="\n")
        self._writer.writerow(REJECTS_HEADER)

    def reject(self, number: int, problem: RowRejected) -> None:
        self.result.rows_rejected += 1
        self.rejected[problem.reason_code] += 1
        self._write(number, problem, REJECTED_ROW)

    def drop(self, number: int, problem: RowRejected) -> None:
        """A value left out of a row that is kept: counted, and in the rejects file too, so
        that whoever fixes the source finds every value that did not reach TikTok."""
        self.dropped[problem.reason_code] += 1
        self._write(number, problem, DROPPED_VALUE)

    def _write(self, number: int, problem: RowRejected, kind: str) -> None:
        column = self._columns.get(problem.column, problem.column)
        self._writer.writerow((number, column, problem.reason_code, problem.message, kind))

    def tick(self, number: int) -> None:
        # Counted, not taken from the row number: a range's rows start after earlier ones.
        self.result.rows_received += 1
        if number % PROGRESS_EVERY == 0:
            self.progress(number)

    def progress(self, number: int) -> None:
        logger.info(
            "validate %s: %d rows read, %d accepted, %d rejected",
            self.result.source,
            number,
            self.result.rows_accepted,
            self.result.rows_rejected,
        )

    def close(self, rows: RowStream) -> None:
        result = self.result
        result.rejected_by_reason = dict(self.rejected.most_common())
        result.identifiers_by_type = dict(self.by_type.most_common())
        result.dropped_identifiers_by_reason = dict(self.dropped.most_common())
        result.lines = rows.lines
        note = lines_note(rows.lines, result.rows_received) if rows.lines else None
        if note:
            logger.info("validate %s: %s", result.source, note)
        logger.info(
            "validate %s done: %d rows, %d accepted, %d rejected, %d written",
            result.source,
            result.rows_received,
            result.rows_accepted,
            result.rows_rejected,
            result.identifiers_written,
        )


def _open_out(path: Path) -> IO[str]:
    return open(path, "w", encoding="utf-8", newline="", buffering=_WRITE_BUFFER)


# ---------------------------------------------------------------- audience
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
    _check_threshold(reject_threshold)
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
    _finish(result, reject_threshold, empty_audience=False)
    return result


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
            f"{_rename_hints(header, wanted)}"
        )
    return resolution, present


#: Allocations between two young-generation collections while rows are read (Python's
#: default is 700).
_GC_YOUNG = 100_000


@contextmanager
def _rare_young_collections() -> Iterator[None]:
    """The row loops allocate a few lists per row, almost all freed by reference counting
    within the block they belong to; at Python's default the cyclic collector walks them
    every 700 allocations, about 12% of validate's CPU (``make bench``). Collected every
    100,000 instead, they are gone before it looks, and the cycles that exceptions leave
    are still collected. Restored afterwards, also after an error."""
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, _GC_YOUNG), *older)
    try:
        yield
    finally:
        gc.set_threshold(young, *older)


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
    with closing(rows), _rare_young_collections():
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
        with _open_out(out_members) as members, _open_out(out_rejects) as rejects:
            loop = _RowLoop(result, rejects, resolution.used)
            write = members.write
            # A batch at a time, a column at a time: every column of the batch is hashed at
            # once (identifier_column_hasher), its lines written together (the members file
            # is a set: ranges.shard_members sorts each shard), and only the rows with a
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
    ``column_hashing.identifier_column_hasher``)."""
    return [identifier_column_hasher(kind, default_region) for kind, _, _ in present]


# ---------------------------------------------------------------- events
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
    _check_threshold(reject_threshold)
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
    _finish(result, reject_threshold)
    return result


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
            f"{_rename_hints(header, ['event', 'event_id', 'email', 'phone'])}"
        )
    if "event_set_id" not in used and not (fallback_event_set_id or "").strip():
        where = f"[data_templates.{data_template}]" if data_template else "the data template"
        raise ConfigurationError(
            f"{source}: no event_set_id: add an event_set_id column, pass event_set_id in "
            f"the execution input, or set event_set_id in {where}"
        )
    return resolution


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
    with closing(rows), _rare_young_collections():
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
        with _open_out(out_events) as events_out, _open_out(out_rejects) as rejects:
            loop = _RowLoop(result, rejects, used)
            write = events_out.write
            # The event rules read our field names, whatever the file calls them.
            positions = [(name, rows.header.index(column)) for name, column in used.items()]
            for number, read in rows.records():
                loop.tick(number)
                if isinstance(read, RowRejected):
                    loop.reject(number, read)
                    continue
                row: Row = {name: _empty_to_none(read[position]) for name, position in positions}
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
    loop: _RowLoop, number: int, row: Row, event: Mapping[str, Any], default_region: str
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
