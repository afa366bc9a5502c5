"""Structural damage in a CSV never makes rows vanish (issue 7).

A quote opened and never closed, a quote closing many lines later, a huge value, blank
lines, CRLF, a cut-short gzip: each damaged row is rejected with its row number and reason
and every other row is still read, or the whole file stops as InputRejected. Row numbers
count data rows from 1 (the header and blank lines are not counted).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from pathlib import Path

import pytest

from tiktok_destination.errors import DestinationError, InputRejected, RowRejected
from tiktok_destination.inputs import csv_lines
from tiktok_destination.inputs.csv_lines import LineCounts, lines_report
from tiktok_destination.inputs.readers import iter_rows
from tiktok_destination.validation.audience_rows import validate_audience_file
from tiktok_destination.validation.result import ValidationResult

SOURCE = "s3://inbox/acme/audience/day2.csv"
HEADER = "email,note"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def email(i: int) -> str:
    return f"Person{i}@Example.com"


def hashed(i: int) -> str:
    # Normalized by hand: trimmed and lowercased.
    return f"EMAIL_SHA256\t{sha(f'person{i}@example.com')}"


def write(path: Path, lines: list[str], *, end: str = "\n") -> Path:
    path.write_bytes("".join(line + end for line in lines).encode())
    return path


def rows_file(tmp_path: Path, notes: dict[int, str], count: int, *, end: str = "\n") -> Path:
    """``count`` rows ``email,note``; row i (from 1) is person i, note ``notes.get(i)``."""
    lines = [HEADER] + [f"{email(i)},{notes.get(i, f'order {i}')}" for i in range(1, count + 1)]
    return write(tmp_path / "in.csv", lines, end=end)


def run(
    tmp_path: Path, src: Path, *, threshold: float = 0.5
) -> tuple[ValidationResult, list[str], list[tuple[str, str]], str]:
    members = tmp_path / "members.tsv"
    rejects = tmp_path / "rejects.csv"
    result = validate_audience_file(
        src,
        source=SOURCE,
        file_format="csv",
        user_id_types=("EMAIL",),
        default_region="US",
        reject_threshold=threshold,
        out_members=members,
        out_rejects=rejects,
    )
    text = rejects.read_text()
    with open(rejects, newline="") as handle:
        found = [(r["row"], r["reason_code"]) for r in csv.DictReader(handle)]
    return result, members.read_text().splitlines(), found, text


def numbered(src: Path) -> list[tuple[int, str | None]]:
    """(row number, email or reason code) for every row iter_rows yields."""
    _, rows = iter_rows(src, "csv", source=SOURCE)
    return [
        (n, row.reason_code if isinstance(row, RowRejected) else row["email"]) for n, row in rows
    ]


# ---------------------------------------------------------------- quotes
def test_unterminated_quote_mid_file_rejects_only_its_row(tmp_path: Path) -> None:
    # The issue: `"12 inch` opened a quote that nothing closes; every row after it vanished.
    src = rows_file(tmp_path, {3: '"12 inch'}, 8)
    result, members, rejects, text = run(tmp_path, src)

    assert rejects == [("3", "unterminated_quote")]
    assert members == [hashed(i) for i in (1, 2, 4, 5, 6, 7, 8)]
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (8, 7, 1)
    assert "line 4 of the file" in text  # the header is line 1
    assert "12 inch" not in text and "person" not in text.lower()
    assert result.lines == LineCounts(physical=9, header=1, blank=0, in_rows=8)


def test_stray_quote_closing_many_lines_later_is_caught(tmp_path: Path) -> None:
    # Row 2 opens a quote, row 6's inch mark closes it cleanly: csv alone reads rows 2..6 as
    # one row of two fields. Rows 3..6 are whole rows on their own lines: swallowed.
    src = rows_file(tmp_path, {2: '"12 inch', 6: '24"'}, 8)
    result, members, rejects, _ = run(tmp_path, src)

    assert rejects == [("2", "unterminated_quote")]
    assert members == [hashed(i) for i in (1, 3, 4, 5, 6, 7, 8)]
    assert result.rows_received == 8


def test_stray_quote_closed_by_a_later_quoted_value_is_caught(tmp_path: Path) -> None:
    # The next quote in the file opens row 5's value: it cannot end row 2's.
    src = rows_file(tmp_path, {2: '"12 inch', 5: '"gift wrap"'}, 6)
    assert numbered(src) == [
        (1, email(1)),
        (2, "unterminated_quote"),
        (3, email(3)),
        (4, email(4)),
        (5, email(5)),
        (6, email(6)),
    ]


def test_quote_open_over_more_lines_than_the_limit(tmp_path: Path) -> None:
    count = csv_lines.MAX_RECORD_LINES + 50
    src = rows_file(tmp_path, {1: '"12 inch'}, count)
    _, members, rejects, _ = run(tmp_path, src)
    assert rejects == [("1", "unterminated_quote")]
    assert members == [hashed(i) for i in range(2, count + 1)]


def test_end_of_file_inside_a_quote(tmp_path: Path) -> None:
    src = rows_file(tmp_path, {4: '"12 inch'}, 4)
    _, members, rejects, text = run(tmp_path, src)
    assert rejects == [("4", "unterminated_quote")]
    assert "never closed" in text
    assert members == [hashed(i) for i in (1, 2, 3)]


def test_quoted_value_followed_by_text_is_malformed_not_merged(tmp_path: Path) -> None:
    # Lenient csv would read '"gift" wrap' as 'gift wrap'; strict says the quote is wrong.
    src = rows_file(tmp_path, {2: '"gift" wrap'}, 3)
    assert numbered(src) == [(1, email(1)), (2, "malformed_row"), (3, email(3))]


def test_quoted_line_breaks_are_still_one_value(tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv",
        [
            "email,note,name",
            'a@example.com,"Called twice\nleft a message",Ann',
            'b@example.com,"three\n\nlines",Bob',
            "c@example.com,,Cy",
        ],
    )
    _, rows = iter_rows(src, "csv", source=SOURCE)
    assert list(rows) == [
        (1, {"email": "a@example.com", "note": "Called twice\nleft a message", "name": "Ann"}),
        (2, {"email": "b@example.com", "note": "three\n\nlines", "name": "Bob"}),
        (3, {"email": "c@example.com", "note": None, "name": "Cy"}),
    ]
    assert rows.lines == LineCounts(physical=7, header=1, blank=0, in_rows=6, multiline_rows=2)


def test_line_breaks_in_the_first_column_are_still_one_value(tmp_path: Path) -> None:
    # The record's last line ends the value and then holds the rest of the row, as many
    # fields as the header: that is not a row swallowed by a quote (found by the property
    # test, tests/unit/test_csv_damage_property.py).
    src = write(
        tmp_path / "in.csv",
        [
            "note,email,phone",
            '"Called twice\nleft a message",a@example.com,4158444856',
            '"said ""hi""\nthen\nleft",b@example.com,4158444857',
            "ok,c@example.com,4158444858",
        ],
    )
    assert numbered(src) == [(1, "a@example.com"), (2, "b@example.com"), (3, "c@example.com")]


def test_a_quote_closed_at_the_end_of_the_next_row_is_still_caught(tmp_path: Path) -> None:
    # The next line up to the closing quote is a whole row: it was swallowed.
    src = write(
        tmp_path / "in.csv",
        ["email,note", 'a@example.com,"12 inch', 'b@example.com,ok"', "c@example.com,fine"],
    )
    assert numbered(src) == [
        (1, "unterminated_quote"),
        (2, "b@example.com"),
        (3, "c@example.com"),
    ]


def test_one_column_file_never_reads_a_line_break_as_part_of_a_value(tmp_path: Path) -> None:
    # With one column every line is a whole row: a value over two lines is two rows.
    src = write(tmp_path / "in.csv", ["email", '"a@example.com', 'b@example.com"', "c@example.com"])
    assert numbered(src) == [
        (1, "unterminated_quote"),
        (2, 'b@example.com"'),
        (3, "c@example.com"),
    ]


# ---------------------------------------------------------------- sizes
def test_quoted_value_over_the_size_limit(tmp_path: Path) -> None:
    big = '"' + "x" * (csv_lines.MAX_FIELD_CHARS + 1) + '"'
    src = rows_file(tmp_path, {2: big}, 3)
    _, members, rejects, text = run(tmp_path, src)
    assert rejects == [("2", "field_too_large")]
    assert members == [hashed(1), hashed(3)]
    assert "xxxx" not in text
    with open(tmp_path / "rejects.csv", newline="") as handle:
        assert [r["column"] for r in csv.DictReader(handle)] == ["note"]


def test_quoted_value_at_the_size_limit_is_read(tmp_path: Path) -> None:
    src = rows_file(tmp_path, {1: "y" * csv_lines.MAX_FIELD_CHARS}, 1)
    _, members, rejects, _ = run(tmp_path, src)
    assert rejects == [] and members == [hashed(1)]


def test_open_quote_swallowing_a_huge_line(tmp_path: Path) -> None:
    # Past csv's own field limit: the row is rejected, the huge line is a row of its own.
    lines = [HEADER, f'{email(1)},"12 inch', "x" * 200_000, f"{email(2)},b"]
    src = write(tmp_path / "in.csv", lines)
    assert numbered(src) == [(1, "field_too_large"), (2, "field_too_large"), (3, email(2))]


# ---------------------------------------------------------------- blank lines, CRLF
def test_blank_lines_before_the_header_are_skipped_and_counted(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", ["", "  ", HEADER, f"{email(1)},a", f"{email(2)},b"])
    result, members, rejects, _ = run(tmp_path, src)
    assert members == [hashed(1), hashed(2)] and rejects == []
    assert result.lines == LineCounts(physical=5, header=1, blank=2, in_rows=2)


def test_blank_lines_between_rows_are_not_rows(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", [HEADER, f"{email(1)},a", "", "", f"{email(2)},b", ""])
    assert numbered(src) == [(1, email(1)), (2, email(2))]
    result, _, _, _ = run(tmp_path, src)
    assert result.lines == LineCounts(physical=6, header=1, blank=3, in_rows=2)


def test_lines_of_only_spaces_are_blank_between_rows_as_before_the_header(
    tmp_path: Path,
) -> None:
    # They were rows (malformed_row), numbering every row after them one too high. A line of
    # only delimiters is still a row (with no values), and so is a quoted blank value.
    src = write(
        tmp_path / "in.csv",
        ["  ", HEADER, f"{email(1)},a", "   ", f"{email(2)},b", "\t", ",", '"  "', f"{email(3)},c"],
        end="\r\n",
    )
    assert numbered(src) == [
        (1, email(1)),
        (2, email(2)),
        (3, None),
        (4, "malformed_row"),
        (5, email(3)),
    ]
    result, _, found, _ = run(tmp_path, src)
    assert found == [("3", "no_identifier"), ("4", "malformed_row")]
    assert result.lines == LineCounts(physical=9, header=1, blank=3, in_rows=5)


def test_crlf_file_with_a_stray_quote(tmp_path: Path) -> None:
    src = rows_file(tmp_path, {2: '"12 inch', 4: '"two\r\nlines"'}, 5, end="\r\n")
    assert numbered(src) == [
        (1, email(1)),
        (2, "unterminated_quote"),
        (3, email(3)),
        (4, email(4)),
        (5, email(5)),
    ]
    _, rows = iter_rows(src, "csv", source=SOURCE)
    listed = list(rows)
    assert listed[3] == (4, {"email": email(4), "note": "two\r\nlines"})
    assert rows.lines == LineCounts(physical=7, header=1, blank=0, in_rows=6, multiline_rows=1)


# ---------------------------------------------------------------- gzip
def _gzipped(tmp_path: Path, count: int) -> bytes:
    # Random-looking notes so the compressed stream is long enough to cut in the middle.
    lines = [HEADER] + [f"{email(i)},{sha(str(i))}" for i in range(1, count + 1)]
    return gzip.compress("".join(line + "\n" for line in lines).encode())


def test_truncated_gzip_is_input_rejected(tmp_path: Path) -> None:
    data = _gzipped(tmp_path, 5000)
    src = tmp_path / "in.csv.gz"
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputRejected) as caught:
        run(tmp_path, src)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: cannot read the file after data row ")
    assert "cut short" in message and "EOFError" in message
    assert "person" not in message.lower()


def test_corrupt_gzip_is_input_rejected(tmp_path: Path) -> None:
    data = bytearray(_gzipped(tmp_path, 5000))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    src = tmp_path / "in.csv.gz"
    src.write_bytes(bytes(data))
    with pytest.raises(InputRejected, match="cannot read the file after data row"):
        run(tmp_path, src)


def test_gzip_cut_inside_its_header(tmp_path: Path) -> None:
    src = tmp_path / "in.csv.gz"
    src.write_bytes(_gzipped(tmp_path, 10)[:12])
    with pytest.raises(InputRejected, match="cannot read the file at its header line"):
        run(tmp_path, src)


def test_gzip_with_a_stray_quote_is_read_like_plain_text(tmp_path: Path) -> None:
    notes = {2: '"12 inch'}
    lines = [HEADER] + [f"{email(i)},{notes.get(i, 'x')}" for i in range(1, 5)]
    src = tmp_path / "in.csv.gz"
    src.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    _, members, rejects, _ = run(tmp_path, src)
    assert rejects == [("2", "unterminated_quote")]
    assert members == [hashed(1), hashed(3), hashed(4)]


# ---------------------------------------------------------------- line accounting
def test_report_lines_note_when_rows_and_lines_differ(tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv",
        ["", HEADER, f'{email(1)},"two\nlines"', "", f"{email(2)},b"],
    )
    result, _, _, _ = run(tmp_path, src)
    section = lines_report(result.as_dict())
    assert section == {
        "physical": 6,
        "header": 1,
        "blank": 2,
        "in_rows": 3,
        "multiline_rows": 1,
        "note": (
            "the file has 6 lines but 2 rows: 1 header line, 2 blank line(s), skipped, 2 rows "
            "on 3 lines; 1 row(s) hold quoted values with line breaks and take more than one "
            "line each"
        ),
    }


def test_report_lines_without_note_when_each_line_is_a_row(tmp_path: Path) -> None:
    result, _, _, _ = run(tmp_path, rows_file(tmp_path, {}, 3))
    assert lines_report(result.as_dict()) == {
        "physical": 4,
        "header": 1,
        "blank": 0,
        "in_rows": 3,
        "multiline_rows": 0,
    }
    assert lines_report({"rows_received": 3, "lines": None}) is None  # Parquet


def test_lines_the_reader_loses_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cross-check: were swallowed lines ever dropped instead of read again, the physical
    # line count would not add up and the run stops instead of removing those people.
    monkeypatch.setattr(csv_lines.LineFeed, "read_again", lambda self, lines: None)
    src = rows_file(tmp_path, {2: '"12 inch'}, 5)
    with pytest.raises(DestinationError, match="read 6 lines but accounted for 3"):
        run(tmp_path, src)
