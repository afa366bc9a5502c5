"""What both validate loops share: counting, the rejects file, progress logs, outputs.

The rejects file names row, column and reason of each rejected row (``rejected_row``) and
of each value left out of a kept row (``dropped_value``), never the value itself.
"""

from __future__ import annotations

import csv
import gc
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tiktok_destination.errors import RowRejected
from tiktok_destination.inputs.csv_lines import lines_note
from tiktok_destination.inputs.rows import RowStream
from tiktok_destination.validation.result import ValidationResult

logger = logging.getLogger(__name__)

#: ``kind`` last, so readers of the first four columns by position are unaffected.
REJECTS_HEADER: tuple[str, ...] = ("row", "column", "reason_code", "reason", "kind")
#: A rejects file line's ``kind``: the whole row was not used...
REJECTED_ROW = "rejected_row"
#: ...or one value was left out of a row that was used for its other identifier(s).
DROPPED_VALUE = "dropped_value"

#: Rows between progress log lines (the audience loop logs at the end of the batch that
#: reaches a multiple).
PROGRESS_EVERY = 25 * 4096


_WRITE_BUFFER = 1 << 20


class RowLoop:
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


def open_out(path: Path) -> IO[str]:
    return open(path, "w", encoding="utf-8", newline="", buffering=_WRITE_BUFFER)


#: Allocations between two young-generation collections while rows are read (Python's
#: default is 700).
_GC_YOUNG = 100_000


@contextmanager
def rare_young_collections() -> Iterator[None]:
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
