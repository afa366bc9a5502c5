"""The rows an input reader gives, whatever the format: ``RowStream`` and its row types.

Both readers (``csv_reader``, ``parquet_reader``) normalize the header the same way and
hand the validate loops the same stream, so the loops never ask which format they read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tiktok_destination.errors import InputRejected, RowRejected
from tiktok_destination.identity.columns import looks_like_data as _looks_like_data

if TYPE_CHECKING:
    from tiktok_destination.inputs.csv_lines import LineCounts

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


def normalize_header(raw: Sequence[str], source: str) -> list[str]:
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


def empty_to_none(value: str | None) -> str | None:
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
            name: empty_to_none(value) for name, value in zip(self.header, fields, strict=True)
        }

    def close(self) -> None:
        self._resource.close()
