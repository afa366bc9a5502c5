"""The local state dir: a durable copy of the buckets, and one command at a time.

On AWS an S3 write that answered 200 survives whatever happens to the caller next. Locally
moto keeps the buckets in memory, so :class:`BucketMirror` writes every object moto is asked
to store to ``<state dir>/<bucket dir>/<key>`` first (temp file, fsync, ``os.replace``, fsync
of the directory) and only then lets moto acknowledge it. A ``kill -9`` at any point leaves
every acknowledged object on disk and no half-written one; the next command loads them back.
A write that cannot reach the disk (disk full) fails the S3 call, so the step fails instead of
going on with state that only lives in memory.

:func:`locked` keeps a second command off a state dir in use: each process loads the state
into its own moto, so two of them would not see each other's journals.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tiktok_destination.errors import DestinationError, FatalError

STATE_BUCKET_DIR = "state-bucket"
INBOX_BUCKET_DIR = "inbox-bucket"
LOCK_FILE = "lock"
_PARTIAL_DIR = ".partial"  # temp files of writes in flight; a kill leaves them, a load drops them
_ETAGS_DIR = ".etags"  # the ETag of an object that moto did not derive from its bytes
#: Test-only, ``N:TEXT``: SIGKILL this process right after the Nth write or removal of an
#: object whose key contains TEXT has reached the state dir (e.g. ``2:/done/``, after the
#: second done marker), so an end-to-end test can crash a run at a chosen point.
KILL_AFTER_ENV = "TIKTOK_DESTINATION_TEST_KILL_AFTER"


class StateDirWriteError(FatalError):
    """An object could not be written to the local state dir (disk full, permissions)."""


class StateDirBusy(DestinationError):
    """Another command holds the state dir's lock."""


def _fsync_dir(path: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return  # Windows cannot open a directory; its renames are as durable as they get
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
        _fsync_dir(directory.parent)  # a new directory's own entry must survive a crash too


def _write_file(path: Path, data: bytes, partial_dir: Path) -> None:
    """Replace ``path`` with ``data`` atomically: a reader (or a crash) sees old or new, whole."""
    _make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=partial_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def disk_full(err: BaseException) -> bool:
    """``err`` is a write refused for want of space (or of quota)."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def cannot_write(state_dir: Path, what: str, reason: str, err: OSError | None) -> str:
    """The one line that says a write to the state dir failed, and what to do."""
    fix = "free some space there" if err is not None and disk_full(err) else "fix the cause"
    return (
        f"cannot write {what} to the local state dir {state_dir}: {reason}. What was written "
        f"before is intact; {fix}, then run the same command again (or `tiktok-destination "
        "rerun RUN_ID`): the run resumes where it stopped"
    )


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class BucketMirror:
    """Write-through of moto buckets to directories of the state dir.

    ``buckets`` maps a bucket name to its directory under ``state_dir``; an object's file is
    its key as a relative path. Multipart uploads have an ETag that is not the MD5 of the
    bytes (and the inbox object's ETag is part of the run id), so those ETags are kept beside,
    under ``.etags/``, with the MD5 of the bytes they belong to.
    """

    def __init__(self, state_dir: Path, buckets: dict[str, str]):
        self.state_dir = state_dir
        self.buckets = buckets
        #: the first write that failed, for the CLI's one-line message
        self.failure: StateDirWriteError | None = None
        self._partial = state_dir / _PARTIAL_DIR
        self._lock = threading.Lock()
        count, _, text = os.environ.get(KILL_AFTER_ENV, "").partition(":")
        self._kill_after = (int(count), text) if count else None

    # ------------------------------------------------------------------ paths
    def path(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise self._error(key, "the key is not a plain relative path", None)
        return self.state_dir / self.buckets[bucket] / Path(*parts)

    def _etag_path(self, bucket: str, key: str) -> Path:
        return self.state_dir / _ETAGS_DIR / self.buckets[bucket] / f"{key}.json"

    def _error(self, key: str, reason: str, err: OSError | None) -> StateDirWriteError:
        error = StateDirWriteError(cannot_write(self.state_dir, key, reason, err))
        if self.failure is None:
            self.failure = error
        return error

    # ------------------------------------------------------------------ writes
    def write(self, bucket: str, key: str, data: bytes, etag: str | None) -> None:
        path = self.path(bucket, key)
        sidecar = self._etag_path(bucket, key)
        try:
            self._partial.mkdir(parents=True, exist_ok=True)
            if etag is not None:
                # The sidecar names the bytes it belongs to: a crash between the two writes
                # leaves a sidecar that the old bytes do not match, and it is ignored.
                record = json.dumps({"etag": etag.strip('"'), "md5": _md5(data)}).encode()
                _write_file(sidecar, record, self._partial)
            _write_file(path, data, self._partial)
            if etag is None:
                _remove_file(sidecar)
        except OSError as err:
            raise self._error(key, err.strerror or str(err), err) from None
        self._written(key)

    def remove(self, bucket: str, key: str) -> None:
        try:
            _remove_file(self.path(bucket, key))
            _remove_file(self._etag_path(bucket, key))
        except OSError as err:
            raise self._error(key, err.strerror or str(err), err) from None
        self._written(key)

    def _written(self, key: str) -> None:
        if self._kill_after is None or self._kill_after[1] not in key:
            return
        remaining = self._kill_after[0] - 1
        self._kill_after = (remaining, self._kill_after[1])
        if remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------ load
    def load(self, backend: Any) -> None:
        """Put every stored object into moto's S3 ``backend`` (before :meth:`install`)."""
        shutil.rmtree(self._partial, ignore_errors=True)
        for bucket, dirname in self.buckets.items():
            base = self.state_dir / dirname
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if not path.is_file():
                    continue
                key = path.relative_to(base).as_posix()
                data = path.read_bytes()
                stored = backend.put_object(
                    bucket, key, data, etag=self._saved_etag(bucket, key, data)
                )
                # Newest-object lookups (orchestration starts) compare LastModified.
                modified = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
                stored.last_modified = modified.replace(tzinfo=None)

    def _saved_etag(self, bucket: str, key: str, data: bytes) -> str | None:
        try:
            record = json.loads(self._etag_path(bucket, key).read_bytes())
        except (OSError, ValueError):
            return None
        if isinstance(record, dict) and record.get("md5") == _md5(data):
            return str(record.get("etag"))
        return None

    # ------------------------------------------------------------------ moto
    def install(self) -> Callable[[], None]:
        """Route moto's object writes through this mirror; answer the undo."""
        from moto.s3.models import S3Backend

        original_put = S3Backend.put_object
        original_delete = S3Backend.delete_object
        mirror = self

        def put_object(
            backend: Any,
            bucket_name: str,
            key_name: str,
            value: bytes,
            storage: str | None = None,
            etag: str | None = None,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            if bucket_name not in mirror.buckets:
                return original_put(
                    backend, bucket_name, key_name, value, storage, etag, *args, **kwargs
                )
            # The disk first: moto drops the previous version as it stores the new one, so a
            # failed disk write must come before anything changes in memory. The one lock
            # keeps the disk's order of writes to a key the same as moto's.
            with mirror._lock:
                backend.get_bucket(bucket_name)
                mirror.write(bucket_name, key_name, bytes(value), etag)
                return original_put(
                    backend, bucket_name, key_name, value, storage, etag, *args, **kwargs
                )

        def delete_object(
            backend: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any
        ) -> Any:
            if bucket_name not in mirror.buckets:
                return original_delete(backend, bucket_name, key_name, *args, **kwargs)
            with mirror._lock:
                backend.get_bucket(bucket_name)
                mirror.remove(bucket_name, key_name)
                return original_delete(backend, bucket_name, key_name, *args, **kwargs)

        S3Backend.put_object = put_object  # type: ignore[method-assign,assignment]
        S3Backend.delete_object = delete_object  # type: ignore[method-assign,assignment]

        def undo() -> None:
            S3Backend.put_object = original_put  # type: ignore[method-assign]
            S3Backend.delete_object = original_delete  # type: ignore[method-assign]

        return undo


@contextlib.contextmanager
def locked(
    state_dir: Path, command: str, *, wait: float, notify: Callable[[str], None]
) -> Iterator[None]:
    """Hold the state dir's lock; wait up to ``wait`` seconds for another holder to finish.

    An ``flock`` dies with its process, so a killed command never leaves a stale lock.
    """
    import fcntl  # POSIX only; imported here so the rest of the local runner loads anywhere

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fh = (state_dir / LOCK_FILE).open("a+", encoding="utf-8")
    except OSError as err:
        raise StateDirWriteError(
            f"cannot use {state_dir} as the state dir ({err.strerror or err}); pass a "
            "directory you can write to as --state-dir"
        ) from None
    with fh:
        deadline = time.monotonic() + max(0.0, wait)
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another tiktok-destination command"
                if time.monotonic() >= deadline:
                    raise StateDirBusy(
                        f"the state dir {state_dir} is in use by {holder}; wait for it to "
                        "finish, pass --wait-lock SECONDS to wait for it, or use another "
                        "--state-dir"
                    ) from None
                if not told:
                    notify(f"waiting up to {wait:g} s for {holder} to finish with {state_dir}")
                    told = True
                time.sleep(0.1)
        fh.seek(0)
        fh.truncate()
        # The subcommand, not the command line: that may carry an access token.
        fh.write(f"`{command}` (pid {os.getpid()})\n")
        fh.flush()
        yield


__all__ = [
    "INBOX_BUCKET_DIR",
    "KILL_AFTER_ENV",
    "STATE_BUCKET_DIR",
    "BucketMirror",
    "StateDirBusy",
    "StateDirWriteError",
    "cannot_write",
    "disk_full",
    "locked",
]
