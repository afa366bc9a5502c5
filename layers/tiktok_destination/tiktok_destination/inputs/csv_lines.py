"""A CSV's physical lines: the feed the reader takes them from, and where they went.

``LineFeed`` hands ``csv.reader`` the file's lines in blocks (the common path) or one by one
(the careful path), and can give back the lines a damaged record swallowed so they are read
again as rows. ``LineCounts`` accounts for every line (header, blank, in rows), so a run
report can say why a file's row count differs from its line count.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiktok_destination.inputs.formats import UNDECODABLE

#: No identifier or event field comes near this many characters; a longer value is almost
#: always a quote left open that swallowed the lines after it. Checked here rather than by
#: lowering csv.field_size_limit, which is process-wide (csv's own 128 KiB stays a backstop).
MAX_FIELD_CHARS = 64 * 1024
#: A quoted value may hold line breaks (an address, a note); one running over more lines
#: than this is a quote left open.
MAX_RECORD_LINES = 100
#: Characters of whole lines the common path reads at once (``readlines``' size hint).
BLOCK_CHARS = 256 * 1024


class Unreadable(Exception):
    """Reading the file failed part way: a corrupt or truncated gzip stream, or I/O."""

    def __init__(self, cause: BaseException):
        super().__init__(type(cause).__name__)
        self.cause = cause


class RecordTooLong(Exception):
    """The record being read already took more than MAX_RECORD_LINES lines."""


class LineFeed:
    """The file's physical lines for ``csv.reader``, with a way to read lines again.

    Lines come in blocks (``fill``: whole lines, read in C by ``readlines``) for the common
    path, which parses a block's lines itself, or one by one (``next``) for the careful path
    and the header. ``taken`` holds the lines handed out one by one since the caller last
    cleared it (one record's), so the lines a damaged record swallowed can be read again. A
    class, not a generator: a generator that raises is finished, and this one raises
    ``RecordTooLong`` to stop ``csv.reader`` mid-record and is then read on.
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

    def __iter__(self) -> LineFeed:
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
                raise Unreadable(error) from None
            self.read += 1
            if self._count_bytes:
                self.bytes += _byte_count(line)
        taken = self.taken
        taken.append(line)
        if len(taken) > MAX_RECORD_LINES:
            raise RecordTooLong
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
            raise Unreadable(error) from None
        self.read += len(lines)
        text = self._hold(lines)
        if self._count_bytes:
            self.bytes += _byte_count(text)
        return bool(lines)

    def _hold(self, lines: list[str]) -> str:
        text = "".join(lines)
        self.buffer, self.at = lines, 0
        self.plain = (text.isascii() or not UNDECODABLE.search(text)) and (
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
