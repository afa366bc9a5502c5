"""Issue 7's property through the whole state machine, for a few random damaged files.

Two files a day apart per case (the second replaces the first's audience): after each
run TikTok's audience on the emulator is exactly the identifiers of the rows the run did not
reject, every other row is in the rejects file with a documented reason, and the report's
counts add up. The generator and its oracle are tests/damaged_csv.py; here it leaves out the
damage whose outcome the README leaves open, so the expected audience is exact.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADVERTISER, CONFIG
from tests.damaged_csv import DamagedFile, check_run, documented_reason_codes, generate
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination

pytestmark = pytest.mark.e2e


def config_for(file: DamagedFile) -> str:
    text = CONFIG.replace("mapping_batch_size = 4", "mapping_batch_size = 50").replace(
        "reject_threshold = 0.5", "reject_threshold = 0.9"
    )
    if file.columns:
        mapping = ", ".join(f'{k} = "{v}"' for k, v in file.columns.items())
        text = text.replace(
            'user_id_types = ["EMAIL", "PHONE"]',
            f'user_id_types = ["EMAIL", "PHONE"]\ncolumns = {{ {mapping} }}',
        )
    return text


def audience(emulator: TikTokEmulator) -> set[str]:
    found = emulator.audiences(ADVERTISER)
    assert len(found) == 1, f"expected exactly one audience, found {len(found)}"
    # The emulator names a member TYPE:hash; the members file TYPE<tab>hash.
    return {member.replace(":", "\t", 1) for member in found[0]["members"]}


def run_and_check(
    local: LocalDestination, emulator: TikTokEmulator, file: DamagedFile, path: Path
) -> dict[str, Any]:
    path.write_bytes(file.data)
    local.put_config(config_for(file))
    result = local.run_file(path, "acme_audiences", "vip")
    assert result.succeeded, f"{result.error}: {result.cause}; {file.describe()}"
    report = result.report
    assert report is not None
    rejects: list[dict[str, str]] = []
    for key in local.state_keys(f"runs/{report['run_id']}/rejects/"):
        rejects.extend(csv.DictReader(io.StringIO(local.state_text(key) or "")))
    rows = report["rows"]
    members = audience(emulator)
    check_run(
        file,
        members=sorted(members),
        rejects=rejects,
        counts={
            "received": rows["received"],
            "accepted": rows["accepted"],
            "rejected": rows["rejected"],
            "by_reason": rows["rejected_by_reason"],
        },
        documented=documented_reason_codes(),
    )
    # Without ambiguous damage the audience is exactly the accepted rows' identifiers.
    rejected = {int(r["row"]) for r in rejects if r["kind"] == "rejected_row"}
    expected = set().union(*(r.ids for r in file.rows if r.row not in rejected))
    assert members == expected, file.describe()
    assert report["members"]["in_file"] == len(expected)
    return report


# Seed pairs chosen to cover, between them: a column mapping, the ; tab and , delimiters,
# CRLF, CR and LF, quotes left open in a note, an email and a phone, oversize values, rows
# with a field missing or one too many.
@pytest.mark.parametrize(("day1_seed", "day2_seed"), [(7002, 7103), (7009, 7105)])
def test_random_damage_end_to_end(
    day1_seed: int,
    day2_seed: int,
    local: LocalDestination,
    emulator: TikTokEmulator,
    tmp_path: Path,
) -> None:
    day1 = generate(day1_seed, rows=(30, 60), ambiguous=False, damage_share=0.5, long_files=False)
    first = run_and_check(local, emulator, day1, tmp_path / "day1.csv")
    before = audience(emulator)
    # Day 2 is another file: whoever it does not hold, or holds only in a rejected row, is
    # removed; nobody it accepts is missing.
    day2 = generate(day2_seed, rows=(30, 60), ambiguous=False, damage_share=0.5, long_files=False)
    second = run_and_check(local, emulator, day2, tmp_path / "day2.csv")
    after = audience(emulator)
    assert before and after and before != after
    assert first["members"]["added"] == len(before)
    assert second["members"]["added"] == len(after - before)
    assert second["members"]["removed"] == len(before - after)
