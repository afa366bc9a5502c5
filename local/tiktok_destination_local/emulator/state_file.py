"""The state on disk: atomic ``save``, ``load``, and ``persist`` (save before answering)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from .state import StateStore


class StateFile(StateStore):
    """Writes and reads the ``dump_state`` document as a file that survives a kill."""

    def save(self, path: Path | str) -> None:
        """Write ``dump_state()`` to ``path`` as JSON, atomically (temp file + rename).

        A reader sees the old file or the new one, never half of one. The file is created
        with mode 0600 because it holds the app secret and access tokens. Missing parent
        directories are created.
        """
        path = Path(path)
        text = json.dumps(self.dump_state(), indent=1, sort_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if hasattr(os, "O_DIRECTORY"):  # POSIX: the rename itself must survive a power cut too
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def persist(self, path: Path | str) -> None:
        """Save the state to ``path`` now, and after every request that changes it.

        The change is saved before the answer goes out, as a real service acknowledges only
        what it has stored: a client never loses an acknowledged write, even when this process
        is killed right after. A change that cannot be saved (disk full) is undone and the
        request answers HTTP 503, so the client retries it.
        """
        path = Path(path)
        with self._lock:
            if path.parent.is_dir():
                # temp files of saves that a kill interrupted
                for stale in path.parent.glob(f".{path.name}.*.tmp"):
                    with contextlib.suppress(OSError):
                        stale.unlink()
            self.save(path)
            self._persist_path = path

    def _commit(self) -> bool:
        """Save a change when persisting (call with the lock held); False: it was undone."""
        path = self._persist_path
        if path is None:
            return True
        try:
            self.save(path)
        except OSError as err:
            if self.save_failure is None:
                self.save_failure = err
            with contextlib.suppress(OSError, ValueError):
                self.load(path)  # back to the last state a client was told about
            return False
        return True

    def load(self, path: Path | str) -> bool:
        """Replace the state with the one ``save`` wrote to ``path``.

        Answers False, changing nothing, when ``path`` does not exist (a first run), so a
        caller can seed a fresh world instead.

        Raises:
            ValueError: the file is not valid JSON, not an emulator state, or of another
                version (the message names the file).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        try:
            state = json.loads(text)
        except ValueError as err:
            pos = (
                f" (line {err.lineno}, column {err.colno})"
                if isinstance(err, json.JSONDecodeError)
                else ""
            )
            raise ValueError(
                f"{path}: not valid JSON{pos}; it is not a file written by "
                "TikTokEmulator.save. Delete it to start with a fresh emulator state."
            ) from None
        try:
            self.load_state(state)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return True
