"""Issue 7's property: whatever damage a CSV holds, no row vanishes and none is misread.

For 240 seeded random audience files with random damage (quotes left open in any column,
also for over 100 lines, stray quotes, quoted line breaks, rows with a field missing or one
too many, controls and invisible characters, pre-hashed emails, float, short-float and
lost-digit phones, extensions, blank lines of spaces and tabs, oversize values, CRLF, CR and
mixed line ends, BOM, four delimiters, header aliases and a column mapping), validate must
agree with an oracle that knows what it wrote (tests/damaged_csv.py): the members written
are exactly the identifiers of the rows the rejects file does not list, each accepted row
carries its own identifiers and nobody else's, and every other row is in the rejects file
with a reason code README documents. For every sixth file the audience plan must then add
exactly those members.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.damaged_csv import (
    DamagedFile,
    check_run,
    documented_reason_codes,
    generate,
    read_rejects,
)
from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences.plan import plan_audience
from tiktok_destination.config.loader import load_config
from tiktok_destination.runs.run import Run, Source
from tiktok_destination.validation.audience_rows import validate_audience_file

FILES = 240
# The members file is checked against the oracle for every file; the plan (S3 on moto, ~0.1 s
# a file) for every sixth, to keep the whole property under ~10 s.
PLAN_EVERY = 6
ADV = "7000000000000000001"
CONFIG = f"""
[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[data_templates.vip]
destination = "aud"
audience_name = "VIP customers"
user_id_types = ["EMAIL", "PHONE"]
"""
TEMPLATE = load_config(CONFIG).resolve("aud", "vip").as_dict()
DOCUMENTED = documented_reason_codes()


@pytest.fixture(scope="module")
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto("state") as state:
        yield state


def run_for(file: DamagedFile) -> Run:
    # One audience per file: no file's plan sees another's pending changes.
    return Run(
        run_id=f"{file.seed:016x}",
        execution_id="arn:aws:states:us-east-1:123456789012:execution:sm:property",
        kind="custom_audience",
        state_bucket="state",
        source=Source(bucket="inbox", key=f"inbox/aud/vip/{file.seed}.csv", etag="e", format="csv"),
        destination="aud",
        data_template="vip",
        template=TEMPLATE | {"audience_name": f"property {file.seed}"},
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(),
    )


def validate(file: DamagedFile, tmp_path: Path) -> tuple[Path, set[str]]:
    src = tmp_path / "in.csv"
    src.write_bytes(file.data)
    members, rejects = tmp_path / "members.txt", tmp_path / "rejects.csv"
    result = validate_audience_file(
        src,
        source=f"s3://inbox/{file.seed}.csv",
        file_format="csv",
        user_id_types=("EMAIL", "PHONE"),
        default_region="US",
        reject_threshold=1.0,
        out_members=members,
        out_rejects=rejects,
        columns=file.columns,
    )
    found = check_run(
        file,
        members=members.read_text(encoding="utf-8").splitlines(),
        rejects=read_rejects(rejects.read_text(encoding="utf-8")),
        counts={
            "received": result.rows_received,
            "accepted": result.rows_accepted,
            "rejected": result.rows_rejected,
            "by_reason": result.rejected_by_reason,
        },
        documented=DOCUMENTED,
    )
    assert result.identifiers_written == len(found)
    lines = result.lines
    assert lines is not None
    where = file.describe()
    assert (lines.header, lines.blank) == (1, file.blank_lines), where
    assert lines.physical == file.physical_lines, where
    assert lines.physical == lines.header + lines.blank + lines.in_rows, where
    assert lines.multiline_rows == file.multiline_rows, where
    return members, found


@pytest.mark.parametrize("seed", range(FILES))
def test_random_damage_never_loses_or_misreads_a_row(
    seed: int, tmp_path: Path, bucket: Bucket
) -> None:
    file = generate(seed)
    members, found = validate(file, tmp_path)
    if seed % PLAN_EVERY:
        return

    run = run_for(file)
    # Validate publishes an index of its output files where chunk reads them (ranges.py).
    bucket.upload(members, f"runs/{run.run_id}/validated/members.txt")
    bucket.put_json(
        run.paths.members, {"files": [{"key": f"runs/{run.run_id}/validated/members.txt"}]}
    )
    workdir = tmp_path / "plan"
    workdir.mkdir()
    plan = plan_audience(bucket, run, f"aud-{seed}", batch_size=10_000, workdir=workdir)
    # A new audience: the plan adds exactly the accepted rows' identifiers, removes nothing.
    assert (plan.added, plan.removed, plan.unchanged) == (len(found), 0, 0), file.describe()
    prefix = run.paths.plan(plan.plan_id)
    # The plan keeps its adds per shard (audiences/diff.py); together they are the accepted rows.
    adds = [
        line
        for obj in bucket.list(f"{prefix}adds/")
        for line in (bucket.get_bytes(obj["Key"]) or b"").decode().splitlines()
    ]
    assert len(adds) == len(set(adds)) and set(adds) == found, file.describe()


def test_the_generator_covers_every_kind_of_damage() -> None:
    # The property is only as good as the damage it sees: every kind occurs in the suite.
    seen: set[str] = set()
    fates: set[str] = set()
    for seed in range(FILES):
        file = generate(seed)
        for row in file.rows:
            seen.update(part.split("_U+")[0] for part in row.damage)
            fates.add(row.fate)
        seen.update((f"delimiter {file.delimiter!r}", f"eol {file.eol!r}"))
        seen.add("blank lines" if file.blank_lines else "no blank lines")
        if len(file.rows) > 100:
            seen.add("long file")
        if "mixed" in file.description:
            seen.add("mixed line ends")
    assert fates == {"accepted", "rejected", "either"}
    assert {
        "email",
        "email_empty",
        "phone",
        "phone_empty",
        "phone_float",
        "phone_format_char",
        "phone_lost_digits",
        "phone_extension",
        "phone_trunk_1",
        "phone_float_short",
        "unterminated_quote",
        "quote_then_text",
        "stray_quote",
        "multiline_note",
        "escaped_quotes",
        "field_too_large",
        "unterminated_quote_in_email",
        "unterminated_quote_in_phone",
        "missing_field",
        "extra_field",
        "trailing_delimiter",
        "email_prehashed",
        "phone_odd_spelling",
        "long file",
        "mixed line ends",
        "blank lines",
        "delimiter ','",
        "delimiter '\\t'",
        "delimiter ';'",
        "delimiter '|'",
        "eol '\\n'",
        "eol '\\r\\n'",
        "eol '\\r'",
    } <= seen, sorted(seen)
