"""Bytes of an S3 object by range GETs: a range of a large input, read without a copy.

Ranges of one input are read at different times by different Map children, so every read
asks for the run's ETag: a file replaced in between stops the run instead of mixing bytes
of two files. A read that breaks off is asked again, then raised as ``RetriableError``,
which the Validate and ValidateRange states retry (``statemachine/destination.asl.json``).
"""

from __future__ import annotations

import io
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from tiktok_destination.adapters.s3 import MISSING_CODES, PRECONDITION_CODES, Bucket, error_code
from tiktok_destination.errors import InputRejected, RetriableError

#: One S3 range GET per read of this size.
READ_BLOCK = 8 * 1024 * 1024
_READ_ATTEMPTS = 3


class S3Range(io.RawIOBase):
    """Bytes ``[start, end)`` of an S3 object, read by range GETs (no copy to ``/tmp``).

    Seekable, so pyarrow can read a Parquet footer and row groups from it. Every GET asks
    for the run's ETag: ranges are read at different times by different children, and bytes
    of a file replaced in between must never be mixed with the old one's.
    """

    def __init__(
        self, bucket: Bucket, key: str, *, etag: str, start: int = 0, end: int | None = None
    ):
        super().__init__()
        self._bucket = bucket
        self._key = key
        self._etag = etag
        self._start = start
        self._end = end if end is not None else object_size(bucket, key, etag=etag)
        self._pos = start
        # One GET's bytes, from ``_ahead_at`` on: see readinto.
        self._ahead = bytearray()
        self._ahead_at = start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = max(self._start, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        # At least READ_BLOCK per GET, whatever the caller asks for: a TextIOWrapper reads
        # 8 KiB at a time with BufferedReader.read1, which hands a read straight to this
        # raw stream once its buffer is empty, so without this every 8 KiB of a CSV would be
        # a GET of its own (32,768 for a 256 MiB range, minutes of round trips on AWS).
        view = memoryview(buffer).cast("B")
        offset = self._pos - self._ahead_at
        if 0 <= offset < len(self._ahead):
            count = min(len(view), len(self._ahead) - offset)
            view[:count] = self._ahead[offset : offset + count]
        else:
            remaining = self._end - self._pos
            if remaining <= 0 or not view:
                return 0
            count = min(len(view), remaining)
            if count >= READ_BLOCK or count == remaining:
                # a large read (Parquet's column chunks) goes straight into the caller's
                # buffer, never held twice
                self._get_into(self._pos, view[:count])
            else:
                ahead = bytearray(min(READ_BLOCK, remaining))
                self._get_into(self._pos, memoryview(ahead))
                self._ahead, self._ahead_at = ahead, self._pos
                view[:count] = ahead[:count]
        self._pos += count
        return count

    def _get_into(self, at: int, view: memoryview) -> None:
        """Fill ``view`` with the object's bytes from ``at``, asked again when a read breaks
        off."""
        wanted = len(view)
        got = 0
        for _ in range(_READ_ATTEMPTS):
            try:
                body = self._bucket.s3.get_object(
                    Bucket=self._bucket.name,
                    Key=self._key,
                    Range=f"bytes={at + got}-{at + wanted - 1}",
                    **_if_match(self._etag),
                )["Body"]
                while got < wanted:
                    chunk = body.read(wanted - got)
                    if not chunk:
                        break
                    view[got : got + len(chunk)] = chunk
                    got += len(chunk)
            except ClientError as err:
                _raise_gone(self._bucket, self._key, self._etag, err)
                raise
            except BotoCoreError:  # a dropped connection or a read timeout: ask again
                pass
            if got == wanted:
                return
        # Never a short read: a range read short would leave its last rows out.
        raise RetriableError(
            f"reading {self._bucket.uri(self._key)} at byte {at + got:,} failed "
            f"{_READ_ATTEMPTS} times; the step is retried"
        )


def _if_match(etag: str) -> dict[str, str]:
    # An entity tag in a header is a quoted string; the run keeps it unquoted.
    return {"IfMatch": f'"{etag.strip(chr(34))}"'} if etag else {}


def _raise_gone(bucket: Bucket, key: str, etag: str, err: ClientError) -> None:
    code = error_code(err)
    if code in MISSING_CODES:
        raise InputRejected(
            f"{bucket.uri(key)} does not exist (it may have been deleted or moved after the "
            "run started)"
        ) from None
    if code in PRECONDITION_CODES:
        raise InputRejected(
            f"{bucket.uri(key)} was replaced while this run was reading it (its ETag is no "
            f"longer {etag}), so this run stops before sending anything; start a run of the "
            "new file (an upload to the inbox starts one)"
        ) from None


def object_size(bucket: Bucket, key: str, *, etag: str) -> int:
    try:
        head = bucket.s3.head_object(Bucket=bucket.name, Key=key, **_if_match(etag))
    except ClientError as err:
        _raise_gone(bucket, key, etag, err)
        raise
    return int(head["ContentLength"])


def open_range(
    bucket: Bucket, key: str, *, etag: str, start: int = 0, end: int | None = None
) -> IO[bytes]:
    raw = S3Range(bucket, key, etag=etag, start=start, end=end)
    return io.BufferedReader(raw, buffer_size=READ_BLOCK)
