"""Member sets kept in shards, and the diff of one shard by sorted merges over files.

Membership is tracked per hashed identifier ("EMAIL_SHA256\\t<hash>"), the unit TikTok
matches on, so a person whose phone changed costs one delete and one add, not a re-upload.

The diff base is what TikTok *may* hold, not only the last committed snapshot: batches of
runs that never committed (``pending/`` journals) may have been applied. So

    maybe_present  = committed | adds of pending runs      ->  deletes = maybe_present - new
    surely_present = committed - deletes of pending runs   ->  adds    = new - surely_present

which is why a failed run followed by a newer file still converges on the newer file.

Every set is kept in ``ranges.SHARDS`` shards by the first hex character of the SHA-256, the
way validate writes them, and the diff runs one shard at a time (sorted merges, so /tmp holds
one shard's worth): an identifier is in exactly one shard, so the union of the shards' diffs
is the diff of the whole sets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiktok_destination import sorting
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.errors import DestinationError
from tiktok_destination.identity.schema import ID_TYPES, SCHEMA
from tiktok_destination.inputs.ranges import SHARDS
from tiktok_destination.runs.layout import PlanPaths
from tiktok_destination.validation.range_outputs import shard_members

#: Member line schemas in ``ID_TYPES`` order, the order of ``segment/mapping``'s id_schema.
SCHEMA_ORDER = tuple(SCHEMA[t] for t in ID_TYPES)
#: Shard names, in the order a plan diffs them (``ranges.SHARDS`` of them).
SHARD_NAMES = "0123456789abcdef"[:SHARDS]


class ShardedSet:
    """Where each shard of one sorted member set is read from.

    ``keys`` are objects that hold one shard each; ``whole`` are objects in the one-file
    layout of earlier versions (a legacy snapshot, a pending run's ``adds.txt``), split by
    shard on first use: a migration costs that file on /tmp once, then never again.
    """

    def __init__(
        self,
        name: str,
        keys: Mapping[str, Sequence[str]] | None = None,
        whole: Sequence[str] = (),
    ):
        self.name = name
        self.keys: dict[str, list[str]] = {k: list(v) for k, v in (keys or {}).items()}
        for shard, found in self.keys.items():
            _check_shard(shard, found[0] if found else name)
        self.whole = list(whole)
        self._split: dict[str, list[Path]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "keys": self.keys, "whole": self.whole}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardedSet:
        keys = {str(s): [str(k) for k in found] for s, found in dict(data["keys"]).items()}
        return cls(str(data["name"]), keys, [str(k) for k in data["whole"]])

    def fetch(self, bucket: Bucket, shard: str, out: Path, *, scratch: Path, workdir: Path) -> int:
        """Write shard ``shard`` of the set, sorted and without repeats, to ``out``.

        Downloads go to the shard's ``scratch``; a one-file object is split once into
        ``workdir``, where its other shards wait for their turn.
        """
        parts = [
            bucket.download(key, scratch / f"{self.name}-{shard}-{n:05d}.part")
            for n, key in enumerate(self.keys.get(shard, ()))
        ]
        parts += self._whole_parts(bucket, workdir).get(shard, [])
        count = _write(out, sorting.union(*(sorting.read_lines(p) for p in parts)))
        for part in parts:
            part.unlink()
        return count

    def _whole_parts(self, bucket: Bucket, workdir: Path) -> dict[str, list[Path]]:
        if self._split is None:
            self._split = {}
            for n, key in enumerate(self.whole):
                into = workdir / f"{self.name}-whole-{n:05d}"
                into.mkdir()
                local = bucket.download(key, into / "whole.txt")
                for shard, path, _ in shard_members(local, into):
                    self._split.setdefault(_check_shard(shard, key), []).append(path)
                local.unlink()
        return self._split


def _check_shard(shard: str, where: str) -> str:
    """A shard the loop over ``SHARD_NAMES`` would never visit would lose its members."""
    if shard not in SHARD_NAMES:
        raise DestinationError(
            f"{where} holds members of shard {shard!r}, which is not one of "
            f"{SHARD_NAMES[0]}-{SHARD_NAMES[-1]} (a line that is not TYPE<tab>lowercase "
            "SHA-256); nothing was planned. Re-run the input; if it persists, report it"
        )
    return shard


class BatchWriter:
    """Cuts lines into batch files of ``size`` lines, ``batches/<stem>-<nnnnn>.txt``.

    A shard cuts its own lines and keeps what does not fill a batch (``lines``) for collect,
    which cuts every shard's rest together: so a sharded diff sends as few requests as a
    whole-set one.
    """

    def __init__(self, bucket: Bucket, prefix: str, stem: str, size: int, workdir: Path):
        self.bucket, self.prefix, self.stem, self.size = bucket, prefix, stem, size
        self.path = workdir / f"batch-{stem}.txt"
        self.lines: list[str] = []
        self.batches: list[tuple[str, int]] = []

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.lines.append(line)
            if len(self.lines) >= self.size:
                self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        key = PlanPaths(self.prefix).member_batch(self.stem, len(self.batches) + 1)
        self.path.write_text("".join(self.lines), encoding="utf-8")
        self.bucket.upload(self.path, key)
        self.path.unlink()
        self.batches.append((key, len(self.lines)))
        self.lines = []


@dataclass
class ShardDiff:
    members: int = 0
    maybe_present: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    #: id type (``EMAIL``...) -> the counts above that the removal guard reads per type
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)


SHARD_COUNTS = ("members", "maybe_present", "added", "removed", "unchanged")
#: the counts kept per identifier type (``ShardDiff.by_type``)
TYPE_COUNTS = ("members", "maybe_present", "added", "removed")
_ID_TYPE_OF_SCHEMA = {schema: id_type for id_type, schema in SCHEMA.items()}


def _by_type(**counted: Counter[str]) -> dict[str, dict[str, int]]:
    """``{"EMAIL": {"members": n, ...}}`` from Counters of member lines' schema column."""
    schemas = sorted({schema for counts in counted.values() for schema in counts})
    return {
        _ID_TYPE_OF_SCHEMA.get(schema, schema): {n: c[schema] for n, c in counted.items()}
        for schema in schemas
    }


def _typed(lines: Iterable[str], counts: Counter[str]) -> Iterator[str]:
    """The lines, counted in ``counts`` by their schema (``EMAIL_SHA256``...) as they pass."""
    for line in lines:
        counts[line[: line.find("\t")]] += 1
        yield line


def diff_shard(
    new: Path,
    committed: Path | None,
    pending_adds: Sequence[Path],
    pending_deletes: Sequence[Path],
    *,
    adds_out: Path,
    deletes_out: Path,
    workdir: Path,
) -> ShardDiff:
    """The diff of one shard (or of a whole set): sorted merges over files, bounded memory.

    ``new`` and every input are sorted without repeats; see the module docstring for why
    the base is what TikTok may hold.
    """
    read = sorting.read_lines
    members, held, added, removed = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    result = ShardDiff(members=sum(1 for _ in _typed(read(new), members)))
    maybe_present = _Counted(
        _typed(sorting.union(read(committed), *(read(p) for p in pending_adds)), held)
    )
    result.removed = _write(
        deletes_out, _typed(sorting.difference(maybe_present, read(new)), removed)
    )
    result.maybe_present = maybe_present.count
    # surely_present is read twice (adds and unchanged), so it goes to disk once.
    surely_path = workdir / "surely.txt"
    _write(
        surely_path,
        sorting.difference(read(committed), sorting.union(*(read(p) for p in pending_deletes))),
    )
    result.added = _write(adds_out, _typed(sorting.difference(read(new), read(surely_path)), added))
    result.unchanged = sum(1 for _ in sorting.intersection(read(new), read(surely_path)))
    surely_path.unlink()
    result.by_type = _by_type(members=members, maybe_present=held, added=added, removed=removed)
    return result


class _Counted:
    """Counts the lines of a stream as a consumer reads it."""

    def __init__(self, lines: Iterable[str]):
        self.lines = lines
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.count += 1
            yield line


def _write(path: Path, lines: Iterator[str]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            count += 1
    return count
