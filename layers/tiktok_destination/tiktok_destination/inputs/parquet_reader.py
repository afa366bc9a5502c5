"""The Parquet reader: a file's header and rows, record batch by record batch, as text.

Every value becomes the text a CSV of the same data would hold (integers as digits, naive
timestamps as UTC, floats that lost digits in scientific notation), so the identifier and
event rules read one kind of value whatever the format.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tiktok_destination.errors import InputRejected
from tiktok_destination.inputs.rows import Batch, RowStream, empty_to_none, normalize_header

if TYPE_CHECKING:
    # pyarrow is imported where Parquet is read: every handler imports this package, and
    # only validate of a Parquet file needs it (it costs a Lambda cold start ~0.5 s).
    import pyarrow as pa
    import pyarrow.parquet as pq

PARQUET_BATCH_ROWS = 10_000


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return empty_to_none(value)
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
        return empty_to_none(value.decode("utf-8"))  # UnicodeDecodeError: see _column_texts
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
        return [empty_to_none(v) if v is not None else None for v in values]
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


def iter_parquet(
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
        header = normalize_header(names, source)
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
