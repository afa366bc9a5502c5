"""What an input file is, from its name and first bytes, and how its bytes become CSV text.

The format comes from the extension; the first bytes then catch a file that is not what its
name says (Parquet named .csv), gzip, a byte order mark, and UTF-16/UTF-32 exports, which
are refused with the fix. Text is decoded with ``surrogateescape`` so a byte that is not
UTF-8 reaches the one row that holds it (``UNDECODABLE`` finds it there).
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from contextlib import suppress
from typing import IO, Literal

from tiktok_destination.errors import ConfigurationError, InputRejected

CSV_EXTENSIONS: tuple[str, ...] = (".csv", ".txt", ".csv.gz", ".txt.gz")
PARQUET_EXTENSIONS: tuple[str, ...] = (".parquet", ".pq")


_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# Bytes that are not UTF-8 decode to these lone surrogates under "surrogateescape".
UNDECODABLE = re.compile("[\udc80-\udcff]")


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
