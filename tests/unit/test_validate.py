"""The validate step: reading CSV/Parquet, hashing, the rejects file, file-level errors."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tiktok_destination.events.rules as events_module
from tiktok_destination.errors import ConfigurationError, InputRejected, RowRejected
from tiktok_destination.inputs import parquet_reader
from tiktok_destination.inputs.formats import detect_format
from tiktok_destination.inputs.readers import iter_rows
from tiktok_destination.validation import audience_rows
from tiktok_destination.validation.audience_rows import validate_audience_file
from tiktok_destination.validation.event_rows import validate_events_file
from tiktok_destination.validation.result import ValidationResult

SOURCE = "s3://inbox/acme/audience/members.csv"
NOW = datetime(2024, 5, 20, 12, 0, 0, tzinfo=UTC)
SET_ID = "7654321098765432109"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def run_audience(
    tmp_path: Path,
    src: Path,
    *,
    file_format: str = "csv",
    user_id_types: tuple[str, ...] = ("EMAIL", "PHONE"),
    default_region: str = "US",
    reject_threshold: float = 0.5,
    ignore_columns: tuple[str, ...] = (),
) -> tuple[ValidationResult, list[str], list[dict[str, str]]]:
    members = tmp_path / "members.tsv"
    rejects = tmp_path / "rejects.csv"
    result = validate_audience_file(
        src,
        source=SOURCE,
        file_format=file_format,
        user_id_types=user_id_types,
        default_region=default_region,
        reject_threshold=reject_threshold,
        out_members=members,
        out_rejects=rejects,
        ignore_columns=ignore_columns,
    )
    return result, members.read_text().splitlines(), read_rejects(rejects)


def read_rejects(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["row", "column", "reason_code", "reason", "kind"]
        return list(reader)


# ---------------------------------------------------------------- detect_format
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("inbox/a/b/file.csv", "csv"),
        ("inbox/a/b/FILE.CSV", "csv"),
        ("inbox/a/b/file.txt", "csv"),
        ("inbox/a/b/file.csv.gz", "csv"),
        ("inbox/a/b/part-0001.parquet", "parquet"),
        ("inbox/a/b/part-0001.pq", "parquet"),
    ],
)
def test_detect_format(key: str, expected: str) -> None:
    assert detect_format(key) == expected


def test_detect_format_rejects_unknown_extension_naming_key_and_accepted() -> None:
    with pytest.raises(InputRejected) as caught:
        detect_format("inbox/a/b/members.xlsx")
    message = str(caught.value)
    assert "inbox/a/b/members.xlsx" in message
    assert ".csv" in message and ".parquet" in message


# ---------------------------------------------------------------- CSV reading
@pytest.mark.parametrize("bom", [False, True])
def test_csv_with_and_without_bom_case_insensitive_header(tmp_path: Path, bom: bool) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        " Email ,PHONE,Name\r\nJane@Example.com,(213) 373-4253,Jane\r\nbob@example.org,,Bob\r\n",
        bom=bom,
    )
    result, members, rejects = run_audience(tmp_path, src)

    assert result.columns == ["email", "phone", "name"]
    # the members file is a set (validate writes it a column of a block at a time)
    assert sorted(members) == sorted(
        [
            f"EMAIL_SHA256\t{sha('jane@example.com')}",
            f"PHONE_SHA256\t{sha('+12133734253')}",
            f"EMAIL_SHA256\t{sha('bob@example.org')}",
        ]
    )
    assert rejects == []
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (2, 2, 0)
    assert result.identifiers_written == 3
    assert result.identifiers_by_type == {"EMAIL_SHA256": 2, "PHONE_SHA256": 1}


def test_iter_rows_numbers_data_rows_and_maps_empty_to_none(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv", 'email,note\na@example.com,"x, y"\n\n , \nc@example.com,\n'
    )
    header, rows = iter_rows(src, "csv", source=SOURCE)
    assert header == ["email", "note"]
    assert list(rows) == [
        (1, {"email": "a@example.com", "note": "x, y"}),
        (2, {"email": None, "note": None}),  # blank line skipped, blank values are None
        (3, {"email": "c@example.com", "note": None}),
    ]


def test_gzip_csv_and_semicolon_header(tmp_path: Path) -> None:
    src = tmp_path / "in.csv.gz"
    with gzip.open(src, "wt", encoding="utf-8") as handle:
        handle.write("email;phone\njane@example.com;+44 20 7946 0958\n")
    result, members, _ = run_audience(tmp_path, src)
    assert members == [
        f"EMAIL_SHA256\t{sha('jane@example.com')}",
        f"PHONE_SHA256\t{sha('+442079460958')}",
    ]
    assert result.rows_accepted == 1


def test_default_region_applies_to_numbers_without_country_code(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "phone\n07911 123456\n")
    _, members, _ = run_audience(tmp_path, src, default_region="GB")
    assert members == [f"PHONE_SHA256\t{sha('+447911123456')}"]


def test_existing_hashes_pass_through(tmp_path: Path) -> None:
    digest = sha("jane@example.com")
    src = write_csv(tmp_path / "in.csv", f"email\n{digest}\n")
    _, members, _ = run_audience(tmp_path, src)
    assert members == [f"EMAIL_SHA256\t{digest}"]


def test_only_the_templates_id_types_are_used(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email,phone\njane@example.com,(213) 373-4253\n")
    result, members, _ = run_audience(tmp_path, src, user_id_types=("EMAIL",))
    assert members == [f"EMAIL_SHA256\t{sha('jane@example.com')}"]
    assert result.identifiers_by_type == {"EMAIL_SHA256": 1}


def test_device_ids(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv", "IDFA,aaid\n6D92078A-8246-4BA4-AE5B-76104861E7DC,not-an-id\n"
    )
    # at 1.0: an aaid column of one invalid value is a broken column (test_validate_broken_columns)
    result, members, _ = run_audience(
        tmp_path, src, user_id_types=("IDFA", "AAID"), reject_threshold=1.0
    )
    assert members == [f"IDFA_SHA256\t{sha('6d92078a-8246-4ba4-ae5b-76104861e7dc')}"]
    assert result.dropped_identifiers_by_reason == {"invalid_aaid": 1}


# ---------------------------------------------------------------- Parquet
def test_parquet_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet_reader, "PARQUET_BATCH_ROWS", 2)  # rows span several batches
    table = pa.table(
        {
            "Email": ["Jane@Example.com", None, "", "bob@example.org", "not-an-email"],
            # pandas writes an int column with nulls as floats: 12133734253.0
            "PHONE": pa.array([12133734253.0, 447911123456.0, None, None, None], pa.float64()),
            "seen_at": pa.array(
                [datetime(2024, 5, 1, 14, 30, tzinfo=UTC)] + [None] * 4,
                pa.timestamp("ns", tz="UTC"),
            ),
            "score": pa.array([1.5, 2.0, None, None, None], pa.float64()),
            "n": pa.array([1, None, 3, 4, 5], pa.int64()),
            "vip": [True, False, None, None, None],
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)

    header, rows = iter_rows(src, "parquet", source=SOURCE)
    listed = list(rows)
    assert header == ["email", "phone", "seen_at", "score", "n", "vip"]
    assert [number for number, _ in listed] == [1, 2, 3, 4, 5]
    assert listed[0][1] == {
        "email": "Jane@Example.com",
        "phone": "12133734253",
        "seen_at": "2024-05-01T14:30:00+00:00",
        "score": "1.5",
        "n": "1",
        "vip": "true",
    }
    third = listed[2][1]
    assert isinstance(third, dict) and third["email"] is None  # empty string -> None

    result, members, rejects = run_audience(
        tmp_path, src, file_format="parquet", reject_threshold=1.0
    )
    assert members == [
        f"EMAIL_SHA256\t{sha('jane@example.com')}",
        f"PHONE_SHA256\t{sha('+12133734253')}",
        f"EMAIL_SHA256\t{sha('bob@example.org')}",
    ]
    # 447911123456 has lost its "+": read in the default region US it is no number
    assert [(r["row"], r["reason_code"]) for r in rejects] == [
        ("2", "invalid_phone"),
        ("3", "no_identifier"),
        ("5", "invalid_email"),
    ]
    assert result.rows_received == 5


def test_parquet_numeric_phone_columns_are_national_digits(tmp_path: Path) -> None:
    # pandas writes a phone column with gaps as float64, a full one as int64: both must read
    # as the digits of a default-region number, never as 4158444856.0 re-read as Swiss
    # +41 58 444 85 60, nor as an international guess for a number that lost its "+".
    table = pa.table(
        {
            "phone": pa.array([4158444856.0, 14158444856.0, 447911123456.0, None], pa.float64()),
            "Phone_Int": pa.array([4158444856, 14158444856, 447911123456, None], pa.int64()),
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    rows = [row for _, row in iter_rows(src, "parquet", source=SOURCE)[1]]
    assert rows[0] == {"phone": "4158444856", "phone_int": "4158444856"}
    assert rows[1] == {"phone": "14158444856", "phone_int": "14158444856"}
    decimals = pa.array([Decimal("4158444856.00")], pa.decimal128(14, 2))
    pq.write_table(pa.table({"phone": decimals}), tmp_path / "decimal.parquet")
    _, members, _ = run_audience(
        tmp_path, tmp_path / "decimal.parquet", file_format="parquet", user_id_types=("PHONE",)
    )
    assert members == [f"PHONE_SHA256\t{hashlib.sha256(b'+14158444856').hexdigest()}"]

    # Phone_Int is a second phone column: the run must be told it is left out on purpose.
    result, members, rejects = run_audience(
        tmp_path,
        src,
        file_format="parquet",
        user_id_types=("PHONE",),
        ignore_columns=("Phone_Int",),
    )
    expected = hashlib.sha256(b"+14158444856").hexdigest()
    assert members == [f"PHONE_SHA256\t{expected}", f"PHONE_SHA256\t{expected}"]
    assert [(r["row"], r["column"], r["reason_code"]) for r in rejects] == [
        ("3", "phone", "invalid_phone"),
        ("4", "phone", "no_identifier"),
    ]
    assert result.rows_accepted == 2

    pq.write_table(pa.table({"phone": table.column("Phone_Int")}), src)
    _, members, rejects = run_audience(
        tmp_path, src, file_format="parquet", user_id_types=("PHONE",)
    )
    assert members == [f"PHONE_SHA256\t{expected}", f"PHONE_SHA256\t{expected}"]
    assert [r["reason_code"] for r in rejects] == ["invalid_phone", "no_identifier"]


def test_parquet_float32_phone_is_never_read_as_a_neighbours_number(tmp_path: Path) -> None:
    # float32 keeps 7 digits: 4158444856 is stored as 4158444800.0, another person's number
    src = tmp_path / "in.parquet"
    phones = pa.array([4158444856.0, 2.5, 1000.0, None], pa.float32())
    pq.write_table(
        pa.table({"email": [None, None, None, "jane@example.com"], "phone": phones}), src
    )
    rows = [row["phone"] for _, row in iter_rows(src, "parquet", source=SOURCE)[1]]
    assert rows == ["4.158445e+09", "2.5", "1000", None]
    _, members, rejects = run_audience(tmp_path, src, file_format="parquet", reject_threshold=1.0)
    assert members == [f"EMAIL_SHA256\t{sha('jane@example.com')}"]
    assert [r["reason_code"] for r in rejects] == [
        "phone_lost_digits",
        "invalid_phone",
        "invalid_phone",
    ]


def test_invisible_character_in_an_audience_file_is_rejected(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        "email,phone\njane\u200b@example.com,\nbob@example.org\x00,(213) 373-4253\n",
    )
    # at 1.0: an email column of two invalid values is a broken column
    result, members, rejects = run_audience(tmp_path, src, reject_threshold=1.0)
    assert members == [f"PHONE_SHA256\t{sha('+12133734253')}"]
    assert [(r["row"], r["column"], r["reason_code"], r["kind"]) for r in rejects] == [
        ("1", "email", "invisible_character", "rejected_row"),
        ("2", "email", "invisible_character", "dropped_value"),
    ]
    assert "jane" not in rejects[0]["reason"] and "bob" not in rejects[1]["reason"]
    assert result.dropped_identifiers_by_reason == {"invisible_character": 1}


def test_parquet_binary_column(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"email": pa.array([b"jane@example.com", b""], pa.binary())}), src)
    assert list(iter_rows(src, "parquet", source=SOURCE)[1]) == [
        (1, {"email": "jane@example.com"}),
        (2, {"email": None}),
    ]
    pq.write_table(pa.table({"email": pa.array([b"ok@example.com", b"zo\xeb"], pa.binary())}), src)
    with pytest.raises(InputRejected, match="column 'email' holds binary values that are not"):
        list(iter_rows(src, "parquet", source=SOURCE)[1])


def test_unreadable_parquet_is_rejected(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.parquet", "email\njane@example.com\n")
    with pytest.raises(InputRejected, match="not a readable Parquet file"):
        iter_rows(src, "parquet", source=SOURCE)


def test_parquet_named_csv_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pq.write_table(pa.table({"email": ["jane@example.com"]}), src)
    with pytest.raises(InputRejected, match="Parquet file but its name says CSV"):
        iter_rows(src, "csv", source=SOURCE)


# ---------------------------------------------------------------- rejects
RAW_BAD = ["jane.doe.example.com", "bob@@example.org", "carol@localhost"]


def test_rejects_file_names_rows_and_reasons_never_values(tmp_path: Path) -> None:
    lines = [
        "email,phone",
        "good@example.com,",
        f"{RAW_BAD[0]},",
        f"{RAW_BAD[1]},12345",
        ",",
        f"{RAW_BAD[2]},(213) 373-4253",  # bad email, good phone: accepted, email dropped
        "ok@example.com,555-555-5555",  # good email, bad phone: accepted, phone dropped
        "x@example.com,1,extra",
    ]
    src = write_csv(tmp_path / "in.csv", "\n".join(lines) + "\n")
    result, members, rejects = run_audience(tmp_path, src, reject_threshold=0.9)

    # Every value that did not reach TikTok is there, in row order: whole rows, and values
    # dropped from rows kept for their other identifier.
    assert [(r["row"], r["column"], r["reason_code"], r["kind"]) for r in rejects] == [
        ("2", "email", "invalid_email", "rejected_row"),
        ("3", "email", "invalid_email", "rejected_row"),
        ("4", "email,phone", "no_identifier", "rejected_row"),
        ("5", "email", "invalid_email", "dropped_value"),
        ("6", "phone", "invalid_phone", "dropped_value"),
        ("7", "", "malformed_row", "rejected_row"),
    ]
    assert all(r["reason"] for r in rejects)
    assert result.rows_rejected + sum(result.dropped_identifiers_by_reason.values()) == len(rejects)
    text = (tmp_path / "rejects.csv").read_text()
    for raw in [*RAW_BAD, "12345", "555-555-5555", "x@example.com"]:
        assert raw not in text
    assert result.rejected_by_reason == {
        "invalid_email": 2,
        "no_identifier": 1,
        "malformed_row": 1,
    }
    assert result.dropped_identifiers_by_reason == {"invalid_email": 1, "invalid_phone": 1}
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (7, 3, 4)
    assert result.identifiers_written == len(members) == 3
    assert result.as_dict()["rejected_by_reason"] == result.rejected_by_reason


def test_rejects_file_has_header_only_when_nothing_rejected(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email\njane@example.com\n")
    run_audience(tmp_path, src)
    assert (tmp_path / "rejects.csv").read_text() == "row,column,reason_code,reason,kind\n"


def test_trailing_empty_fields_are_not_malformed(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email,name\njane@example.com,Jane,,\n")
    result, _, rejects = run_audience(tmp_path, src)
    assert rejects == [] and result.rows_accepted == 1


def test_threshold_exceeded_raises_after_writing_everything(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        "email\n" + "\n".join([*RAW_BAD, "jane@example.com"]) + "\n",
    )
    with pytest.raises(InputRejected) as caught:
        run_audience(tmp_path, src, reject_threshold=0.2)
    message = str(caught.value)
    assert "3 of 4 rows rejected" in message
    assert "75.0%" in message and "20.0%" in message
    assert "invalid_email (3 rows)" in message
    assert "rejects file" in message
    assert SOURCE in message
    for raw in RAW_BAD:
        assert raw not in message
    assert len(read_rejects(tmp_path / "rejects.csv")) == 3
    assert (tmp_path / "members.tsv").read_text() == f"EMAIL_SHA256\t{sha('jane@example.com')}\n"


def test_share_equal_to_threshold_passes(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", f"email\n{RAW_BAD[0]}\njane@example.com\n")
    result, _, _ = run_audience(tmp_path, src, reject_threshold=0.5)
    assert result.rows_rejected == 1


def test_no_usable_row_fails_even_at_threshold_one(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", f"email\n{RAW_BAD[0]}\n")
    with pytest.raises(InputRejected, match="none of its 1 rows is usable"):
        run_audience(tmp_path, src, reject_threshold=1.0)


def test_reject_threshold_out_of_range_is_configuration_error(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email\njane@example.com\n")
    with pytest.raises(ConfigurationError, match="reject_threshold"):
        run_audience(tmp_path, src, reject_threshold=20)


# ---------------------------------------------------------------- file-level errors
def test_header_without_needed_columns(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "A,b,Contact\n1,2,jane@example.com\n")
    with pytest.raises(InputRejected) as caught:
        run_audience(tmp_path, src)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: none of the columns email, phone found")
    assert "header has: a, b, contact" in message
    assert "expected at least one of: email, phone (the data template's user_id_types)" in message
    assert not (tmp_path / "members.tsv").exists()  # raised before reading rows


def test_a_misspelt_identifier_header_is_a_did_you_mean(tmp_path: Path) -> None:
    # "E-Mail" is read as email (separators are ignored); a misspelling stops the run.
    src = write_csv(tmp_path / "in.csv", "A,b,Emial\n1,2,jane@example.com\n")
    with pytest.raises(InputRejected) as caught:
        run_audience(tmp_path, src)
    message = str(caught.value)
    assert "Column 'emial' is a near miss of email (a typo?) but is not used" in message
    assert 'Did you mean columns = { email = "emial" }?' in message
    assert not (tmp_path / "members.tsv").exists()  # raised before reading rows


def test_headerless_file_does_not_echo_its_first_row(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "jane@example.com,+12133734253\nbob@example.org,\n")
    with pytest.raises(InputRejected) as caught:
        run_audience(tmp_path, src)
    message = str(caught.value)
    assert "must be a header" in message
    assert "jane@example.com" not in message and "2133734253" not in message


def test_duplicate_column_after_lowercasing(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email,Email\na@example.com,b@example.com\n")
    with pytest.raises(InputRejected, match="column 'email' appears twice"):
        run_audience(tmp_path, src)


@pytest.mark.parametrize("content", ["", "\n", "\ufeff"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    src = write_csv(tmp_path / "in.csv", content)
    with pytest.raises(InputRejected, match="is empty"):
        run_audience(tmp_path, src)


def test_header_but_no_rows(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email,phone\n", bom=True)
    with pytest.raises(InputRejected, match="has a header but no data rows"):
        run_audience(tmp_path, src)
    assert (tmp_path / "rejects.csv").read_text() == "row,column,reason_code,reason,kind\n"


def test_non_utf8_names_the_row_and_column(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"email,name\njane@example.com,Jane\nzoe@example.com,Zo\xeb\n")
    with pytest.raises(InputRejected) as caught:
        run_audience(tmp_path, src)
    message = str(caught.value)
    assert "data row 2, column 'name' is not valid UTF-8" in message
    assert "zoe" not in message


def test_unclosed_quote_in_huge_field_is_rejected(tmp_path: Path) -> None:
    # Row 1's open quote swallows the huge line: row 1 is rejected, the huge line is row 2.
    src = write_csv(tmp_path / "in.csv", 'email\n"jane@example.com\n' + "x" * 200_000 + "\n")
    with pytest.raises(InputRejected, match="2 of 2 rows rejected"):
        run_audience(tmp_path, src)
    rejects = read_rejects(tmp_path / "rejects.csv")
    assert [(r["row"], r["reason_code"]) for r in rejects] == [
        ("1", "field_too_large"),
        ("2", "field_too_large"),
    ]


def test_unknown_user_id_type_is_configuration_error(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email\njane@example.com\n")
    with pytest.raises(ConfigurationError, match="user_id_types"):
        run_audience(tmp_path, src, user_id_types=("MAID",))


# ---------------------------------------------------------------- events
def run_events(
    tmp_path: Path,
    src: Path,
    *,
    fallback: str | None = SET_ID,
    reject_threshold: float = 0.5,
    data_template: str | None = None,
) -> tuple[ValidationResult, list[str], list[dict[str, str]]]:
    out_events = tmp_path / "events.jsonl"
    rejects = tmp_path / "rejects.csv"
    result = validate_events_file(
        src,
        source=SOURCE,
        file_format="csv",
        default_region="US",
        reject_threshold=reject_threshold,
        fallback_event_set_id=fallback,
        now=NOW,
        out_events=out_events,
        out_rejects=rejects,
        data_template=data_template,
    )
    return result, out_events.read_text().splitlines(), read_rejects(rejects)


def fake_normalize_event_row(
    row: Mapping[str, str | None],
    *,
    row_number: int,
    default_region: str,
    fallback_event_set_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Stands in for events.normalize_event_row: rejects rows whose event is 'bad'."""
    if row.get("event") == "bad":
        raise RowRejected("event", "invalid_event", "not a TikTok standard event name")
    user: dict[str, str] = {}
    if row.get("email") and "@" in (row.get("email") or ""):
        user["email"] = sha(row["email"] or "")
    return {
        "row": row_number,
        "event": row["event"],
        "event_id": row["event_id"],
        "event_set_id": row.get("event_set_id") or fallback_event_set_id,
        "user": user,
        "z_now": now.isoformat(),
    }


@pytest.fixture
def fake_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "normalize_event_row", fake_normalize_event_row)


@pytest.mark.usefixtures("fake_events")
def test_events_plumbing_writes_sorted_compact_json_and_rejects(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        "Event,EVENT_ID,email,phone\n"
        "Purchase,o-1,jane@example.com,\n"
        "bad,o-2,bob@example.org,\n"
        "Purchase,o-3,not-an-email,(213) 373-4253\n"
        "Purchase,o-4\n",
    )
    result, lines, rejects = run_events(tmp_path, src)

    assert lines[0] == (
        '{"event":"Purchase","event_id":"o-1","event_set_id":"7654321098765432109",'
        f'"row":1,"user":{{"email":"{sha("jane@example.com")}"}},"z_now":"{NOW.isoformat()}"}}'
    )
    assert [json.loads(line)["row"] for line in lines] == [1, 3]
    assert [(r["row"], r["column"], r["reason_code"], r["kind"]) for r in rejects] == [
        ("2", "event", "invalid_event", "rejected_row"),
        ("3", "email", "invalid_email", "dropped_value"),  # sent with its phone alone
        ("4", "", "malformed_row", "rejected_row"),
    ]
    text = (tmp_path / "rejects.csv").read_text()
    assert "bob@example.org" not in text and "not-an-email" not in text
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (4, 2, 2)
    assert result.identifiers_written == 2
    assert result.identifiers_by_type == {"EMAIL_SHA256": 1}
    # row 3's email was dropped by the normalizer; the result says why
    assert result.dropped_identifiers_by_reason == {"invalid_email": 1}


@pytest.mark.usefixtures("fake_events")
def test_events_threshold_exceeded_still_writes_files(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        "event,event_id,email\nbad,1,a@example.com\nbad,2,b@example.com\nPurchase,3,c@x.com\n",
    )
    with pytest.raises(InputRejected, match=r"2 of 3 rows rejected \(66.7%\)"):
        run_events(tmp_path, src, reject_threshold=0.1)
    assert len(read_rejects(tmp_path / "rejects.csv")) == 2
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1


def test_a_non_finite_number_from_the_normalizer_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The row rules reject such numbers; should one slip through, validate fails loudly
    # rather than write the token Infinity (not JSON) on its way to TikTok.
    def infinite_value(row: Mapping[str, str | None], **kwargs: Any) -> dict[str, Any]:
        return {**fake_normalize_event_row(row, **kwargs), "value": float("inf")}

    monkeypatch.setattr(events_module, "normalize_event_row", infinite_value)
    src = write_csv(tmp_path / "in.csv", "event,event_id,email\nPurchase,1,a@example.com\n")
    with pytest.raises(ValueError, match="not JSON compliant"):
        run_events(tmp_path, src)
    assert "Infinity" not in (tmp_path / "events.jsonl").read_text()


def test_events_missing_required_columns(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "event,order,name\nPurchase,1,Jane\n")
    with pytest.raises(InputRejected) as caught:
        run_events(tmp_path, src)
    message = str(caught.value)
    assert "missing required column(s): event_id, email or phone" in message
    assert "header has: event, order, name" in message
    assert "rename" not in message  # 'event' is close to 'event_id' but is needed itself


def test_events_rename_hint(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "event,Old Event_ID,email\nPurchase,1,a@example.com\n")
    with pytest.raises(InputRejected, match="rename 'old event_id' to 'event_id'"):
        run_events(tmp_path, src)


def test_events_near_miss_of_a_required_column_is_a_did_you_mean(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "event,Event IDs,email\nPurchase,1,a@example.com\n")
    with pytest.raises(InputRejected, match=r'Did you mean columns = \{ event_id = "event ids" \}'):
        run_events(tmp_path, src)


def test_events_without_event_set_id_anywhere_is_configuration_error(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "event,event_id,email\nPurchase,1,jane@example.com\n")
    with pytest.raises(ConfigurationError) as caught:
        run_events(tmp_path, src, fallback=None, data_template="purchases")
    assert str(caught.value) == (
        f"{SOURCE}: no event_set_id: add an event_set_id column, pass event_set_id in the "
        "execution input, or set event_set_id in [data_templates.purchases]"
    )
    assert not (tmp_path / "events.jsonl").exists()


def test_events_with_event_set_id_column_need_no_fallback(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        f"event,event_id,email,event_set_id\nPurchase,1,Jane@Example.com,{SET_ID}\n",
    )
    result, lines, rejects = run_events(tmp_path, src, fallback=None)
    assert result.rows_accepted == 1 and rejects == []
    event = json.loads(lines[0])
    assert event["event_set_id"] == SET_ID
    assert "Jane@Example.com" not in lines[0]


def test_events_header_but_no_rows(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "event,event_id,email\n")
    with pytest.raises(InputRejected, match="has a header but no data rows"):
        run_events(tmp_path, src)


def test_row_stream_closes_its_file(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", "email\na@example.com\n")
    _, unread = iter_rows(src, "csv", source=SOURCE)
    unread.close()  # before the first row
    assert unread._resource.closed
    _, rows = iter_rows(src, "csv", source=SOURCE)
    assert len(list(rows)) == 1
    assert rows._resource.closed


def test_a_long_file_is_written_and_counted_across_blocks(tmp_path: Path) -> None:
    # Over several of the reader's blocks (which validate hashes a column at a time), with
    # rows that only have a phone, only an email, neither, or a bad email next to a phone.
    # The members file is a set (range_outputs.shard_members sorts each shard): its lines are
    # compared as a multiset; the rejects keep row order.
    lines = ["email,phone,note"]
    want: list[str] = []
    rejected: list[tuple[str, str]] = []
    for i in range(1, 10_001):
        phone = f"(213) 373-{i % 10_000:04d}"
        e164 = f"+1213373{i % 10_000:04d}"
        if i % 1000 == 0:
            lines.append(f",,note {i}")
            rejected.append((str(i), "no_identifier"))
        elif i % 7 == 0:
            lines.append(f"not-an-email-{i},{phone},note {i}")
            want.append(f"PHONE_SHA256\t{sha(e164)}")
            rejected.append((str(i), "invalid_email"))  # the email dropped, the row kept
        elif i % 3 == 0:
            lines.append(f"Person{i}@Example.com,,note {i}")
            want.append(f"EMAIL_SHA256\t{sha(f'person{i}@example.com')}")
        else:
            lines.append(f"Person{i}@Example.com,{phone},note {i}")
            want.append(f"EMAIL_SHA256\t{sha(f'person{i}@example.com')}")
            want.append(f"PHONE_SHA256\t{sha(e164)}")
    src = write_csv(tmp_path / "in.csv", "\n".join(lines) + "\n")
    result, members, rejects = run_audience(tmp_path, src)

    assert sorted(members) == sorted(want)
    assert [(r["row"], r["reason_code"]) for r in rejects] == rejected
    rows_rejected = sum(r["kind"] == "rejected_row" for r in rejects)
    assert rows_rejected == 10
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (
        10_000,
        10_000 - rows_rejected,
        rows_rejected,
    )
    assert result.identifiers_written == len(want)
    assert result.identifiers_by_type == {
        "EMAIL_SHA256": sum(line.startswith("EMAIL") for line in want),
        "PHONE_SHA256": sum(line.startswith("PHONE") for line in want),
    }
    dropped = sum(1 for i in range(1, 10_001) if i % 7 == 0 and i % 1000)
    assert result.dropped_identifiers_by_reason == {"invalid_email": dropped}


# ---------------------------------------------------------------- the collector
def test_young_collections_are_rare_while_rows_are_read_and_restored_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    seen: list[int] = []
    hashers = audience_rows.identifier_column_hashers

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_threshold()[0])
        return hashers(*args, **kwargs)

    monkeypatch.setattr(audience_rows, "identifier_column_hashers", recording)
    before = gc.get_threshold()
    src = write_csv(tmp_path / "a.csv", "email\nA@Example.com\n")
    result, members, _ = run_audience(tmp_path, src, user_id_types=("EMAIL",))
    assert (result.rows_accepted, members) == (1, [f"EMAIL_SHA256\t{sha('a@example.com')}"])
    assert seen == [100_000]
    assert gc.get_threshold() == before
    # also after a file that stops the run
    bad = write_csv(tmp_path / "b.csv", "email\nnot-an-email\n")
    with pytest.raises(InputRejected):
        run_audience(tmp_path, bad, user_id_types=("EMAIL",), reject_threshold=0.2)
    assert seen == [100_000, 100_000]
    assert gc.get_threshold() == before


@pytest.mark.parametrize(
    ("data", "found"),
    [
        pytest.param("email\njane@example.com\n".encode("utf-16"), "UTF-16 (it starts", id="le"),
        pytest.param(
            b"\xfe\xff" + "email\njane@example.com\n".encode("utf-16-be"), "UTF-16", id="be"
        ),
        pytest.param(
            "email\njane@example.com\n".encode("utf-16-le"), "UTF-16 (every other", id="no-bom"
        ),
        pytest.param("email\njane@example.com\n".encode("utf-32"), "UTF-32", id="utf-32"),
    ],
)
def test_a_utf16_file_is_refused_naming_its_encoding(
    tmp_path: Path, data: bytes, found: str
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    with pytest.raises(InputRejected) as caught:
        run_audience(tmp_path, src)
    message = str(caught.value)
    assert f"is encoded as {found}" in message
    assert "export it as UTF-8" in message and "Windows-1252" not in message
    assert "jane" not in message
