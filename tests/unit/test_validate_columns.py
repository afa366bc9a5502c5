"""validate_audience_rows hashes a block of rows a column at a time: its results must be
exactly those of the row-by-row loop it replaced (the reference below, with identifier_hasher
per value): the same rejects file (rows, columns, reasons, in row order), the same counts
and dropped identifiers, and the same members as a multiset of lines (the members file is
a set: range_outputs.shard_members sorts each shard)."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.unit.test_identifiers_column import bench_phones
from tests.unit.test_identifiers_fast import device_corpus, email_corpus
from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.hashing import identifier_hasher
from tiktok_destination.identity.schema import SCHEMA
from tiktok_destination.inputs.readers import iter_rows
from tiktok_destination.validation.audience_rows import validate_audience_file
from tiktok_destination.validation.headers import audience_columns

SOURCE = "s3://inbox/acme/audience/members.csv"
TYPES = ("EMAIL", "PHONE", "IDFA")


def reference(src: Path, file_format: str) -> tuple[list[str], list[list[str]], Counter[str]]:
    """The row-by-row loop: (member lines, rejects file lines, dropped by reason). A rejects
    line is a rejected row, or a value dropped from a row kept for another identifier."""
    header, rows = iter_rows(src, file_format, source=SOURCE)
    resolution, present = audience_columns(header, TYPES, source=SOURCE)
    names = [column for _, column, _ in present]
    hashers = [
        (rows.header.index(column), identifier_hasher(kind, "US"), SCHEMA[kind])
        for kind, column, _ in present
    ]
    members: list[str] = []
    rejects: list[list[str]] = []
    dropped: Counter[str] = Counter()

    def reject(number: int, problem: RowRejected, kind: str = "rejected_row") -> None:
        column = resolution.used.get(problem.column, problem.column)
        rejects.append([str(number), column, problem.reason_code, problem.message, kind])

    for number, row in rows.records():
        if isinstance(row, RowRejected):
            reject(number, row)
            continue
        hit = False
        problems: list[RowRejected] = []
        for position, hasher, schema in hashers:
            raw = row[position]
            if raw and not raw.isspace():
                try:
                    members.append(f"{schema}\t{hasher(raw)}")
                    hit = True
                except RowRejected as problem:
                    problems.append(problem)
        if problems and not hit:
            reject(number, problems[0])
        elif problems:
            dropped.update(problem.reason_code for problem in problems)
            for problem in problems:
                reject(number, problem, "dropped_value")
        elif not hit:
            reject(
                number,
                RowRejected(
                    ",".join(names),
                    "no_identifier",
                    f"no value in {' or '.join(names)}: every row needs at least one",
                ),
            )
    return members, rejects, dropped


def reference_columns(src: Path, file_format: str) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Value by value: per identifier column, its values that hash, and its invalid values
    by reason (in every readable row, rejected or not)."""
    header, rows = iter_rows(src, file_format, source=SOURCE)
    _, present = audience_columns(header, TYPES, source=SOURCE)
    hashers = [
        (column, rows.header.index(column), identifier_hasher(kind, "US"))
        for kind, column, _ in present
    ]
    valid: Counter[str] = Counter()
    invalid: dict[str, Counter[str]] = {}
    for _, row in rows.records():
        if isinstance(row, RowRejected):
            continue
        for column, position, hasher in hashers:
            raw = row[position]
            if not raw or raw.isspace():
                continue
            try:
                hasher(raw)
                valid[column] += 1
            except RowRejected as problem:
                invalid.setdefault(column, Counter())[problem.reason_code] += 1
    return valid, invalid


def generated_rows(count: int, seed: int) -> list[list[str | None]]:
    rng = random.Random(seed)
    emails = list(email_corpus(count, seed=seed))
    phones = bench_phones(rng, count)
    devices = list(device_corpus(count, seed=seed))
    rows: list[list[str | None]] = []
    for i in range(count):
        row: list[str | None] = [emails[i], phones[i], devices[i], f"note {i}"]
        for at in range(3):
            roll = rng.random()
            if roll < 0.3:
                row[at] = rng.choice(("", " ", "\t", None))
            elif roll < 0.5:  # the usual well-formed spellings
                row[at] = (
                    f"Person.{i}@Example.com",
                    f"({rng.randint(201, 989)}) {rng.randint(201, 989)}-{i % 10_000:04d}",
                    f"{rng.getrandbits(32):08X}-1234-4ABC-8DEF-{rng.getrandbits(48):012X}",
                )[at]
        # a lone surrogate cannot be written to a UTF-8 file (undecodable bytes have their
        # own reject, tested elsewhere)
        rows.append([None if v is None else v.replace("\ud800", "\ufffd") for v in row])
    return rows


def write_csv(path: Path, rows: list[list[str | None]], rng: random.Random) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("email,phone,idfa,note\n")
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            if rng.random() < 0.01:
                handle.write("only,two\n")  # a row that cannot be read: wrong field count
            if rng.random() < 0.01:
                handle.write("\n")  # a blank line is no row
            writer.writerow(["" if value is None else value for value in row])
    return path


def run(tmp_path: Path, src: Path, file_format: str) -> None:
    members_path, rejects_path = tmp_path / "members.tsv", tmp_path / "rejects.csv"
    result = validate_audience_file(
        src,
        source=SOURCE,
        file_format=file_format,
        user_id_types=TYPES,
        default_region="US",
        reject_threshold=1.0,
        out_members=members_path,
        out_rejects=rejects_path,
    )
    want_members, want_rejects, want_dropped = reference(src, file_format)
    members = members_path.read_text(encoding="utf-8").splitlines()
    with open(rejects_path, newline="", encoding="utf-8") as handle:
        rejects = list(csv.reader(handle))[1:]
    assert rejects == want_rejects
    assert Counter(members) == Counter(want_members)
    assert result.dropped_identifiers_by_reason == dict(want_dropped)
    rejected_rows = [line for line in want_rejects if line[4] == "rejected_row"]
    assert result.rows_rejected == len(rejected_rows)
    assert result.rows_accepted == result.rows_received - len(rejected_rows)
    # the counts add up to the rejects file: every line is a rejected row or a dropped value
    assert result.rows_rejected + sum(result.dropped_identifiers_by_reason.values()) == len(rejects)
    assert result.identifiers_written == len(want_members)
    assert result.identifiers_by_type == dict(Counter(line.split("\t")[0] for line in want_members))
    # what the broken-column rule reads: counted where the column hasher's answers are
    want_valid, want_invalid = reference_columns(src, file_format)
    assert result.valid_values_by_column == dict(want_valid)
    assert result.invalid_values_by_column == {c: dict(r) for c, r in want_invalid.items()}
    assert set(want_invalid) == {"email", "phone", "idfa"}
    # all kinds of outcome happened
    assert len(rejected_rows) > 100
    assert sum(want_dropped.values()) > 100
    assert {line.split("\t")[0] for line in members} == set(SCHEMA[kind] for kind in TYPES)


def test_csv_blocks_give_the_row_by_row_results(tmp_path: Path) -> None:
    rows = generated_rows(12_000, seed=5)
    src = write_csv(tmp_path / "in.csv", rows, random.Random(6))
    run(tmp_path, src, "csv")
    _, want_rejects, _ = reference(src, "csv")
    # rows that could not be read came in the reader's blocks among the others
    assert sum(reason == "malformed_row" for _, _, reason, _, _ in want_rejects) > 50


@pytest.mark.parametrize("count", [1, 3])
def test_tiny_files_give_the_row_by_row_results(tmp_path: Path, count: int) -> None:
    rows = generated_rows(400, seed=count)[:count]
    src = write_csv(tmp_path / "in.csv", rows, random.Random(count))
    members_path, rejects_path = tmp_path / "m.tsv", tmp_path / "r.csv"
    validate_audience_file(
        src,
        source=SOURCE,
        file_format="csv",
        user_id_types=TYPES,
        default_region="US",
        reject_threshold=1.0,
        out_members=members_path,
        out_rejects=rejects_path,
    )
    want_members, want_rejects, _ = reference(src, "csv")
    with open(rejects_path, newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1:] == want_rejects
    assert sorted(members_path.read_text().splitlines()) == sorted(want_members)


def test_parquet_batches_give_the_row_by_row_results(tmp_path: Path) -> None:
    rows = generated_rows(12_000, seed=7)
    src = tmp_path / "in.parquet"
    table = pa.table(
        {
            name: [row[at] for row in rows]
            for at, name in enumerate(("email", "phone", "idfa", "note"))
        }
    )
    pq.write_table(table, src, row_group_size=5_000)
    run(tmp_path, src, "parquet")
