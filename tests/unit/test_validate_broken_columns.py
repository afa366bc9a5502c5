"""A broken identifier column stops the run (issue 15, item 3).

When more than ``reject_threshold`` of one identifier column's non-empty values are invalid,
validate raises InputRejected naming the column, the main reason and its fix, whether the
rows were rejected or kept on another identifier (then the column's values would only be
dropped, and their members removed at TikTok without a failed run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tiktok_destination.errors import InputRejected
from tiktok_destination.validation.audience_rows import validate_audience_file
from tiktok_destination.validation.result import ValidationResult

SOURCE = "s3://inbox/acme/audience/day2.csv"


def excel_float(digits: int) -> str:
    """How Excel writes a 10-digit phone in a narrow numeric column: 6 significant digits."""
    return f"{float(digits):.5E}"


def run(
    tmp_path: Path,
    header: str,
    rows: list[str],
    *,
    reject_threshold: float,
    columns: dict[str, str] | None = None,
    user_id_types: tuple[str, ...] = ("EMAIL", "PHONE"),
) -> ValidationResult:
    src = tmp_path / "in.csv"
    src.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return validate_audience_file(
        src,
        source=SOURCE,
        file_format="csv",
        user_id_types=user_id_types,
        default_region="US",
        reject_threshold=reject_threshold,
        out_members=tmp_path / "members.tsv",
        out_rejects=tmp_path / "rejects.csv",
        columns=columns,
    )


def test_excel_float_is_the_rendering_the_issue_saw() -> None:
    assert excel_float(4158444856) == "4.15844E+09"


def test_phones_exported_as_floats_stop_the_run_naming_column_reason_and_fix(
    tmp_path: Path,
) -> None:
    rows = [f"p{i}@example.com,{excel_float(4155550100 + i)}" for i in range(1000)]
    with pytest.raises(InputRejected) as caught:
        run(tmp_path, "email,phone", rows, reject_threshold=0.2)
    message = str(caught.value)
    assert "column 'phone'" in message
    assert "1,000 of its 1,000" in message and "100.0%" in message and "20.0%" in message
    assert "phone_lost_digits" in message
    assert "export the column as text" in message
    assert SOURCE in message
    # never a value
    assert "4.1555" not in message and "@example.com" not in message
    # the rows themselves were all accepted on their email: the row rule alone let it pass
    result = caught.value.result  # type: ignore[attr-defined]
    assert (result.rows_received, result.rows_rejected) == (1000, 0)
    assert result.valid_values_by_column == {"email": 1000}
    assert result.invalid_values_by_column == {"phone": {"phone_lost_digits": 1000}}


def test_a_mapped_column_is_named_as_the_file_names_it(tmp_path: Path) -> None:
    rows = [f"p{i}@example.com,{excel_float(4155550100 + i)}" for i in range(10)]
    with pytest.raises(InputRejected) as caught:
        run(
            tmp_path,
            "Customer E-mail,Contact Number",
            rows,
            reject_threshold=0.5,
            columns={"email": "Customer E-mail", "phone": "Contact Number"},
        )
    assert "column 'contact number' (read as phone)" in str(caught.value)


def test_the_share_is_over_the_columns_non_empty_values(tmp_path: Path) -> None:
    # 2 of 4 phones invalid (6 rows without a phone do not count): 50%, not over 0.5.
    good = [f"g{i}@example.com,(213) 373-42{i:02d}" for i in range(2)]
    bad = [f"b{i}@example.com,555-555-555{i}" for i in range(2)]
    empty = [f"e{i}@example.com," for i in range(6)]
    result = run(tmp_path, "email,phone", good + bad + empty, reject_threshold=0.5)
    assert result.valid_values_by_column == {"email": 10, "phone": 2}
    assert result.invalid_values_by_column == {"phone": {"invalid_phone": 2}}
    # a third invalid phone: 3 of 5, over 0.5
    with pytest.raises(InputRejected, match=r"column 'phone' has too many invalid values: 3 of"):
        run(
            tmp_path,
            "email,phone",
            [*good, *bad, "c@example.com,555-555-5559", *empty],
            reject_threshold=0.5,
        )


def test_invalid_values_of_rejected_rows_count_too(tmp_path: Path) -> None:
    # Both identifiers invalid: the row is rejected under its first problem, yet each
    # column counts its own invalid value.
    rows = ["nobody.example.com,555-555-5555", "ann@example.com,(213) 373-4253"]
    result = run(tmp_path, "email,phone", rows, reject_threshold=0.5)
    assert result.rejected_by_reason == {"invalid_email": 1}
    assert result.valid_values_by_column == {"email": 1, "phone": 1}
    assert result.invalid_values_by_column == {
        "email": {"invalid_email": 1},
        "phone": {"invalid_phone": 1},
    }


def test_every_broken_column_is_named_with_its_main_reason(tmp_path: Path) -> None:
    # Every row is kept on its IDFA; email and phone are broken in different ways.
    idfa = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
    rows = [f"p{i}.example.com,{excel_float(4155550100 + i)},{idfa}" for i in range(9)]
    rows += [f"p9@example.com,555-555-5555,{idfa}"]
    with pytest.raises(InputRejected) as caught:
        run(
            tmp_path,
            "email,phone,idfa",
            rows,
            reject_threshold=0.2,
            user_id_types=("EMAIL", "PHONE", "IDFA"),
        )
    message = str(caught.value)
    assert "column 'email' has too many invalid values: 9 of its 10 (90.0%)" in message
    assert "main reason invalid_email (9 values)" in message
    assert "column 'phone' has too many invalid values: 10 of its 10 (100.0%)" in message
    assert "main reason phone_lost_digits (9 values)" in message
    assert "'idfa'" not in message
    # it goes to notifications: no address, not even an example one
    assert "@" not in message


def test_a_column_whose_rows_are_rejected_stops_by_the_row_rule_with_the_fix(
    tmp_path: Path,
) -> None:
    rows = [f"{excel_float(4155550100 + i)}" for i in range(10)]
    with pytest.raises(InputRejected) as caught:
        run(tmp_path, "phone", rows, reject_threshold=0.2, user_id_types=("PHONE",))
    message = str(caught.value)
    assert "10 of 10 rows rejected" in message
    assert "phone_lost_digits (10 rows)" in message
    assert "export the column as text" in message


def test_at_threshold_one_a_broken_column_is_only_dropped(tmp_path: Path) -> None:
    rows = [f"p{i}@example.com,{excel_float(4155550100 + i)}" for i in range(5)]
    result = run(tmp_path, "email,phone", rows, reject_threshold=1.0)
    assert result.dropped_identifiers_by_reason == {"phone_lost_digits": 5}
    assert result.rows_accepted == 5


def test_a_healthy_file_with_a_few_bad_values_passes(tmp_path: Path) -> None:
    rows = [f"p{i}@example.com,(213) 373-{4200 + i}" for i in range(20)]
    rows[3] = "p3@example.com,4.15844E+09"
    result = run(tmp_path, "email,phone", rows, reject_threshold=0.2)
    assert result.invalid_values_by_column == {"phone": {"phone_lost_digits": 1}}
    assert result.valid_values_by_column == {"email": 20, "phone": 19}
