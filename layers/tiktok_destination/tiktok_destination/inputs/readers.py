"""A local input file's header and rows, by the reader of its format."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from tiktok_destination.errors import ConfigurationError
from tiktok_destination.inputs.csv_reader import iter_csv_lines
from tiktok_destination.inputs.formats import text_stream
from tiktok_destination.inputs.parquet_reader import iter_parquet
from tiktok_destination.inputs.rows import RowStream


def _open_text(src: Path, source: str) -> IO[str]:
    # The text stream owns the file and closes it.
    return text_stream(open(src, "rb"), source)


def _iter_csv(src: Path, source: str) -> tuple[list[str], RowStream]:
    text = _open_text(src, source)
    return iter_csv_lines(text, text, source)


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
        return iter_parquet(src, source)
    raise ConfigurationError(f"unknown file format {file_format!r}; use 'csv' or 'parquet'")
