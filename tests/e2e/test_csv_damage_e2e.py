"""Issue 7 through the whole state machine: one stray quote must not wipe an audience."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from pathlib import Path

import pytest

from tests.conftest import ADVERTISER, CONFIG
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination

pytestmark = pytest.mark.e2e
PEOPLE = 1200
DAMAGED_ROW = 400  # data row number (the header is not counted)


def day_file(path: Path, damaged: bool) -> Path:
    """email,note for 1,200 people; row i (from 1) is person i. Row 100's note holds a real
    line break; on day 2 row 400's note opens a quote it never closes."""
    lines = ["Email,Note"]
    for i in range(1, PEOPLE + 1):
        note = f"order {i}"
        if i == 100:
            note = '"Called twice\nleft a message"'
        elif i == DAMAGED_ROW and damaged:
            note = '"12 inch'
        lines.append(f"Person{i}@Example.com,{note}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def members(numbers: range | list[int]) -> set[str]:
    # Normalized by hand: the emails lowercased.
    return {
        "EMAIL_SHA256:" + hashlib.sha256(f"person{i}@example.com".encode()).hexdigest()
        for i in numbers
    }


def audience_members(emulator: TikTokEmulator) -> set[str]:
    found = emulator.audiences(ADVERTISER)
    assert len(found) == 1, f"expected exactly one audience, found {len(found)}"
    return set(found[0]["members"])


def rejects_of(local: LocalDestination, run_id: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for key in local.state_keys(f"runs/{run_id}/rejects/"):
        out.extend(csv.DictReader(io.StringIO(local.state_text(key) or "")))
    return out


def test_a_stray_quote_rejects_its_row_and_keeps_every_other_member(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    local.put_config(CONFIG.replace("mapping_batch_size = 4", "mapping_batch_size = 1000"))
    first = local.run_file(day_file(tmp_path / "day1.csv", False), "acme_audiences", "vip")
    assert first.succeeded, first.cause
    assert audience_members(emulator) == members(range(1, PEOPLE + 1))

    second = local.run_file(day_file(tmp_path / "day2.csv", True), "acme_audiences", "vip")
    assert second.succeeded, second.cause
    everyone_else = [i for i in range(1, PEOPLE + 1) if i != DAMAGED_ROW]
    assert audience_members(emulator) == members(everyone_else)

    report = second.report
    assert report is not None
    assert report["rows"]["received"] == PEOPLE
    assert report["rows"]["rejected_by_reason"] == {"unterminated_quote": 1}
    assert report["members"]["removed"] == 1
    rejects = rejects_of(local, report["run_id"])
    assert [(r["row"], r["column"], r["reason_code"]) for r in rejects] == [
        (str(DAMAGED_ROW), "", "unterminated_quote")
    ]
    assert f"line {DAMAGED_ROW + 2} of the file" in rejects[0]["reason"]  # header, row 100
    assert "12 inch" not in rejects[0]["reason"]
    assert report["lines"] == {
        "physical": PEOPLE + 2,
        "header": 1,
        "blank": 0,
        "in_rows": PEOPLE + 1,
        "multiline_rows": 1,
        "note": (
            "the file has 1,202 lines but 1,200 rows: 1 header line, 1,200 rows on 1,201 "
            "lines; 1 row(s) hold quoted values with line breaks and take more than one line "
            "each"
        ),
    }


def test_a_truncated_gzip_is_input_rejected_and_nothing_is_sent(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # Random-looking notes, so the compressed stream is long enough to cut in the middle.
    lines = ["email,note"] + [
        f"person{i}@example.com,{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(3000)
    ]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    failed = local.run_file(path, "acme_audiences", "vip")
    assert failed.status == "FAILED"
    assert failed.error == "InputRejected", failed.cause
    assert "cannot read the file after data row" in (failed.cause or "")
    assert emulator.calls["segment/mapping/"] == 0
    assert emulator.audiences(ADVERTISER) == []


@pytest.mark.parametrize("compress", [False, True], ids=["csv", "gzip"])
def test_a_utf16_export_is_refused_naming_utf16_and_nothing_is_sent(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path, compress: bool
) -> None:
    # Excel's "Unicode Text": was refused as "probably Windows-1252".
    data = ("email,phone\n" + "".join(f"p{i}@example.com,\n" for i in range(5))).encode("utf-16")
    path = tmp_path / ("unicode.csv.gz" if compress else "unicode.csv")
    path.write_bytes(gzip.compress(data) if compress else data)
    failed = local.run_file(path, "acme_audiences", "vip")
    assert failed.status == "FAILED"
    assert failed.error == "InputRejected", failed.cause
    cause = failed.cause or ""
    assert "is encoded as UTF-16 (it starts with a UTF-16 byte order mark)" in cause, cause
    assert "export it as UTF-8" in cause and "Windows-1252" not in cause
    assert "example.com" not in cause
    assert emulator.calls["segment/mapping/"] == 0
    assert emulator.audiences(ADVERTISER) == []
