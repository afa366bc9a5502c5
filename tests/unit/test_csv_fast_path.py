"""The CSV reader's block path reads every file exactly as its careful path does.

validate reads a CSV a block of whole lines at a time and hands csv.reader the block's
list; only records that are plainly rows (one line, not blank, not too long, decodable) are
taken there, anything else goes the careful way, one line at a time. These tests run both
over the damaged-file corpus of the property test and over files made to put every kind of
trouble on a block boundary (blocks as small as one character), and ask for the same row
numbers, the same fields or reject (reason, column, message), the same line counts and the
same file-level error. The range planner's marks from the block path must be clean record
starts: a range read from one reads exactly the whole file's rows after it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from tests.damaged_csv import generate
from tiktok_destination.errors import DestinationError, RowRejected
from tiktok_destination.inputs import csv_lines, csv_reader
from tiktok_destination.inputs.csv_lines import LineCounts
from tiktok_destination.inputs.csv_reader import RangeStart, iter_csv_lines
from tiktok_destination.inputs.formats import text_stream

SOURCE = "s3://inbox/acme/audience/fast.csv"
# One character (one line a block), sizes that cut lines anywhere, and the default.
BLOCKS = (1, 2, 7, 13, 64, 333, 4096, csv_lines.BLOCK_CHARS)

Outcome = tuple[list[tuple[int, Any]], LineCounts | None, str | None]


def _row(item: Any) -> Any:
    if isinstance(item, RowRejected):
        return ("rejected", item.column, item.reason_code, item.message)
    return list(item)


def read(data: bytes, *, fast: bool, block_chars: int, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """Every ``(row number, fields or reject)``, the line counts, and a file-level error."""
    monkeypatch.setattr(csv_reader, "_FAST_PATH", fast)
    text = text_stream(io.BufferedReader(io.BytesIO(data)), SOURCE)
    rows: list[tuple[int, Any]] = []
    try:
        _, stream = iter_csv_lines(text, text, SOURCE, block_chars=block_chars)
        with closing(stream):
            rows.extend((number, _row(item)) for number, item in stream.records())
    except DestinationError as error:  # InputRejected: the file cannot be used at all
        # The file stops whole; which rows came before the stop is not compared (the block
        # path reads a block ahead).
        return [], None, f"{type(error).__name__}: {error}"
    return rows, stream.lines, None


def assert_same(data: bytes, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    want = read(data, fast=False, block_chars=csv_lines.BLOCK_CHARS, monkeypatch=monkeypatch)
    assert want[0] or want[2] or data.count(b"\n") <= 1, where  # something to compare
    for block_chars in BLOCKS:
        got = read(data, fast=True, block_chars=block_chars, monkeypatch=monkeypatch)
        assert got == want, f"{where}, blocks of {block_chars} characters"


@pytest.mark.parametrize("seed", range(240))
def test_block_path_reads_the_damage_corpus_as_the_careful_path(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = generate(seed)
    assert_same(file.data, monkeypatch, file.describe())


def _lines(*lines: str, end: str = "\n") -> bytes:
    return "".join(line + end for line in lines).encode("utf-8", "surrogateescape")


def _adversarial() -> Iterator[tuple[str, bytes]]:
    rows = [f"p{i}@example.com,note {i}" for i in range(1, 9)]
    for end in ("\n", "\r\n", "\r"):
        yield (
            f"quoted line breaks across block edges {end!r}",
            _lines(
                "email,note",
                'a@example.com,"one' + end + "two" + end + 'three"',
                *rows[:3],
                '"b' + end + '@example.com",x',
                *rows[3:],
                end=end,
            ),
        )
        yield (
            f"a quote left open to the end {end!r}",
            _lines("email,note", *rows[:4], 'c@example.com,"open', *rows[4:], end=end),
        )
        yield (
            f"blank and whitespace lines at block edges {end!r}",
            _lines("email,note", "", rows[0], " \t", "", rows[1], "   ", rows[2], "", end=end),
        )
    yield "mixed line ends", b'email,note\r\na@x.com,1\rb@x.com,2\nc@x.com,"3\r\n4"\rd@x.com,5\n'
    yield "byte order mark", b"\xef\xbb\xbf" + _lines("email,note", *rows)
    yield "bom and blank lines before the header", b"\xef\xbb\xbf\n\n" + _lines("email,note", *rows)
    yield (
        "trailing empty fields",
        _lines("email,note", "a@x.com,1,,,", "b@x.com,2,", "c@x.com,3,,x", "d@x.com", *rows),
    )
    wide = "x" * (csv_lines.MAX_FIELD_CHARS + 10)
    many = ",".join(["y" * 1000] * 70)  # a line over the limit, no field over it
    yield (
        "wide rows",
        _lines("email,note", rows[0], f"w@x.com,{wide}", rows[1], f"v@x.com,{many}", rows[2]),
    )
    yield "a quoted value over the limit", _lines("email,note", f'w@x.com,"{wide}', *rows)
    yield (
        "a quote open over 100 lines",
        _lines("email,note", 'o@x.com,"open', *[f"q{i}@x.com,n" for i in range(150)]),
    )
    yield "not UTF-8 in a row", _lines("email,note", *rows[:5]) + b"bad\xff@x.com,1\n"
    yield (
        "not UTF-8 late in a long file",
        _lines("email,note", *[f"p{i}@x.com,{i}" for i in range(3000)]) + b"z@x.com,caf\xe9\n",
    )
    yield "accents, decodable", _lines("email,note", "zoë@x.com,café", *rows, "é@x.com,ü")
    yield (
        "one column with blank and quoted blank values",
        _lines("email", "a@x.com", "  ", '"  "', '""', "", "b@x.com", "\t"),
    )
    emails = [f"e{i}@x.com" for i in range(400)]
    emails[50], emails[51], emails[200], emails[300] = "   ", '" "', "", "\t"
    yield "a long one-column file with blank values here and there", _lines("email", *emails)
    yield "no newline at the end", _lines("email,note", *rows)[:-1]
    yield "open quote on the last line without newline", _lines("email,note", *rows) + b'z,"x'
    yield "quote then text", _lines("email,note", *rows[:2], 'q@x.com,"a" b', *rows[2:])
    yield (
        "stray quote closed later",
        _lines("email,note", rows[0], 'a@x.com,"12 inch', *rows[1:4], 'b@x.com,24"', *rows[4:]),
    )
    yield "header only", _lines("email,note")
    yield "tab delimited", _lines("email\tnote", "a@x.com\t1", 'b@x.com\t"2\n3"', "c@x.com\t4")


@pytest.mark.parametrize(("where", "data"), list(_adversarial()), ids=lambda v: str(v)[:40])
def test_block_path_reads_block_edge_cases_as_the_careful_path(
    where: str, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_same(data, monkeypatch, where)


def test_the_comparison_catches_a_block_path_that_skips_a_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The check must be able to fail: a block path that did not look at line lengths would
    # take a row with an oversize value as read instead of rejecting it.
    data = _lines("email,note", "a@x.com,1", f"w@x.com,{'x' * (csv_lines.MAX_FIELD_CHARS + 1)}")
    careful = read(data, fast=False, block_chars=64, monkeypatch=monkeypatch)
    assert careful[0][1][1][2] == "field_too_large"
    assert read(data, fast=True, block_chars=64, monkeypatch=monkeypatch) == careful
    hold = csv_lines.LineFeed._hold

    def unchecked(self: csv_lines.LineFeed, lines: list[str]) -> str:
        text = hold(self, lines)
        self.plain = True  # as if no line were too long
        return text

    monkeypatch.setattr(csv_lines.LineFeed, "_hold", unchecked)
    broken = read(data, fast=True, block_chars=64, monkeypatch=monkeypatch)
    assert broken != careful


# ---------------------------------------------------------------- range planner marks
def _marks(data: bytes, block_chars: int) -> list[tuple[int, int, int]]:
    text = text_stream(io.BufferedReader(io.BytesIO(data)), SOURCE)
    offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    marks: list[tuple[int, int, int]] = []

    def at_start(rows: int, lines: int, read_bytes: int) -> None:
        marks.append((offset + read_bytes, rows, lines))

    _, stream = iter_csv_lines(
        text, text, SOURCE, on_record_start=at_start, block_chars=block_chars
    )
    with closing(stream):
        for _ in stream.records():
            pass
    return marks


def _range_rows(data: bytes, mark: tuple[int, int, int]) -> list[tuple[int, Any]]:
    offset, rows, lines = mark
    head = text_stream(io.BufferedReader(io.BytesIO(data)), SOURCE)
    body = text_stream(
        io.BufferedReader(io.BytesIO(data[offset:])),
        SOURCE,
        file_start=False,
    )
    _, stream = iter_csv_lines(
        head, head, SOURCE, body=body, start=RangeStart(rows, lines), count_header=False
    )
    with closing(stream):
        return [(number, _row(item)) for number, item in stream.records()]


@pytest.mark.parametrize("seed", range(0, 240, 8))
def test_planner_marks_from_blocks_are_clean_record_starts(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = generate(seed).data
    whole, _, error = read(data, fast=False, block_chars=64, monkeypatch=monkeypatch)
    if error:
        return  # a file that stops whole is one the planner stops on too
    monkeypatch.setattr(csv_reader, "_FAST_PATH", True)
    for block_chars in (1, 57, 500):
        marks = _marks(data, block_chars)
        assert marks[-1][0] == len(data)  # the last mark is the end of the file
        for mark in marks[1:-1:3]:
            got = _range_rows(data, mark)
            assert got == [row for row in whole if row[0] > mark[1]], (seed, block_chars, mark)
