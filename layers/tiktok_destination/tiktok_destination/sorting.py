"""Sorted-stream set algebra over text lines, so diffs never hold a member set in memory.

Inputs are iterables of newline-terminated lines. ``external_sort`` spills sorted runs of
at most ``run_lines`` lines to disk and merges them; the other helpers consume sorted,
de-duplicated streams and yield the same.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

DEFAULT_RUN_LINES = 250_000


def unique(lines: Iterable[str]) -> Iterator[str]:
    previous: str | None = None
    for line in lines:
        if line != previous:
            yield line
            previous = line


def external_sort(
    lines: Iterable[str], out: Path, *, workdir: Path, run_lines: int = DEFAULT_RUN_LINES
) -> int:
    """Write ``lines`` sorted and de-duplicated to ``out``; return how many were written."""
    runs: list[Path] = []
    buffer: list[str] = []

    def spill() -> None:
        buffer.sort()
        path = workdir / f"sort-run-{len(runs):05d}.txt"
        with path.open("w", encoding="utf-8") as fh:
            fh.writelines(unique(buffer))
        runs.append(path)
        buffer.clear()

    for line in lines:
        buffer.append(line if line.endswith("\n") else line + "\n")
        if len(buffer) >= run_lines:
            spill()
    written = 0
    with ExitStack() as stack, out.open("w", encoding="utf-8") as fh:
        if runs:
            if buffer:
                spill()
            streams = [stack.enter_context(p.open(encoding="utf-8")) for p in runs]
            merged: Iterable[str] = heapq.merge(*streams)
        else:
            buffer.sort()
            merged = buffer
        for line in unique(merged):
            fh.write(line)
            written += 1
    for path in runs:
        path.unlink()
    return written


def union(*streams: Iterable[str]) -> Iterator[str]:
    return unique(heapq.merge(*streams))


def difference(left: Iterable[str], right: Iterable[str]) -> Iterator[str]:
    """Lines of sorted ``left`` that are not in sorted ``right``."""
    right_iter = iter(right)
    current = next(right_iter, None)
    for line in left:
        while current is not None and current < line:
            current = next(right_iter, None)
        if current != line:
            yield line


def intersection(left: Iterable[str], right: Iterable[str]) -> Iterator[str]:
    right_iter = iter(right)
    current = next(right_iter, None)
    for line in left:
        while current is not None and current < line:
            current = next(right_iter, None)
        if current == line:
            yield line


def read_lines(path: Path | None) -> Iterator[str]:
    if path is None or not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        yield from fh
