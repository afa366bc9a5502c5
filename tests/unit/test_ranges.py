"""Validate in ranges (issue 9): a file split into ranges validates exactly like one range.

The reference is today's one-Lambda validator (``validate_audience_file`` on the whole file):
the ranged run must give the same hashed identifiers, the same rejects (rows and reasons,
the file's own row numbers), the same counts and the same line accounting, wherever the
range boundaries fall: quoted values with line breaks, CRLF, blank lines and damaged rows
near the boundaries included.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.run_options import run_options
from tiktok_destination.adapters import s3_ranges
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.config.loader import load_config
from tiktok_destination.errors import DestinationError, InputRejected, RetriableError
from tiktok_destination.inputs import ranges
from tiktok_destination.inputs.formats import text_stream
from tiktok_destination.runs.run import Run, Source
from tiktok_destination.validation import range_outputs
from tiktok_destination.validation.audience_rows import validate_audience_file
from tiktok_destination.validation.event_rows import validate_events_file

ADV = "7000000000000000001"
ESET = "7100000000000000001"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CONFIG = f"""
[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[destinations.evt]
credential = "acme"
advertiser_id = "{ADV}"
kind = "offline_events"

[data_templates.vip]
destination = "aud"
audience_name = "VIP customers"
user_id_types = ["EMAIL", "PHONE"]

[data_templates.sales]
destination = "evt"
event_set_id = "{ESET}"
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Bucket, Bucket]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from tiktok_destination.adapters import s3 as storage

    storage.s3_client.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("state", "inbox"):
            client.create_bucket(Bucket=bucket)
        yield Bucket("state"), Bucket("inbox")
    storage.s3_client.cache_clear()


def make_run(inbox: Bucket, data: bytes, name: str, *, kind: str = "custom_audience") -> Run:
    key = f"inbox/{'aud/vip' if kind == 'custom_audience' else 'evt/sales'}/{name}"
    etag = str(inbox.s3.put_object(Bucket=inbox.name, Key=key, Body=data)["ETag"]).strip('"')
    template = "vip" if kind == "custom_audience" else "sales"
    destination = "aud" if kind == "custom_audience" else "evt"
    fmt = "parquet" if name.endswith(".parquet") else "csv"
    return Run(
        run_id=sha(name)[:16],
        execution_id="arn:aws:states:us-east-1:123456789012:execution:sm:x",
        kind=kind,  # type: ignore[arg-type]
        state_bucket="state",
        source=Source(bucket="inbox", key=key, etag=etag, format=fmt),
        destination=destination,
        data_template=template,
        template=load_config(CONFIG).resolve(destination, template).as_dict(),
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(),
    )


@dataclass
class Outcome:
    plan: dict[str, Any]
    members: Counter[str]
    rejects: str
    validation: dict[str, Any]
    events: Counter[str]


def ranged(state: Bucket, inbox: Bucket, run: Run, range_bytes: int, tmp_path: Path) -> Outcome:
    """Plan, validate every range, merge: the state machine's path, without the engine."""
    plan = ranges.plan_validation(
        state, inbox, run, range_bytes=range_bytes, default_region="US", now=NOW
    )
    for spec in plan["ranges"]:
        workdir = tmp_path / f"range-{range_bytes}-{spec['index']}"
        workdir.mkdir()
        range_outputs.validate_range(state, inbox, run, plan, int(spec["index"]), workdir=workdir)
    merge_dir = tmp_path / f"merge-{range_bytes}"
    merge_dir.mkdir(exist_ok=True)
    range_outputs.merge_ranges(state, run, plan, reject_threshold=1.0, workdir=merge_dir)
    lines: Counter[str] = Counter()
    events: Counter[str] = Counter()
    paths = run.paths
    index = state.get_json(paths.members if run.kind == "custom_audience" else paths.events)
    for file in index["files"]:
        body = (state.get_bytes(file["key"]) or b"").decode()
        (lines if run.kind == "custom_audience" else events).update(body.splitlines())
    return Outcome(
        plan=plan,
        members=lines,
        rejects=(state.get_bytes(paths.rejects("validate")) or b"").decode(),
        validation=state.get_json(paths.validation),
        events=events,
    )


def reference(data: bytes, name: str, tmp_path: Path, *, kind: str = "custom_audience") -> Outcome:
    """Today's one-Lambda validate on the whole file."""
    src = tmp_path / f"reference-{name}"
    src.write_bytes(data)
    out, rejects = tmp_path / "reference-out", tmp_path / "reference-rejects.csv"
    fmt = "parquet" if name.endswith(".parquet") else "csv"
    folder = "aud/vip" if kind == "custom_audience" else "evt/sales"
    common: dict[str, Any] = {
        "source": f"s3://inbox/inbox/{folder}/{name}",
        "file_format": fmt,
        "default_region": "US",
        "reject_threshold": 1.0,
        "out_rejects": rejects,
    }
    if kind == "custom_audience":
        result = validate_audience_file(
            src, user_id_types=("EMAIL", "PHONE"), out_members=out, **common
        )
    else:
        result = validate_events_file(
            src, fallback_event_set_id=ESET, now=NOW, out_events=out, **common
        )
    lines = Counter(out.read_text().splitlines())
    return Outcome(
        plan={},
        members=lines if kind == "custom_audience" else Counter(),
        rejects=rejects.read_text(),
        validation=result.as_dict(),
        events=lines if kind != "custom_audience" else Counter(),
    )


def assert_same(got: Outcome, want: Outcome) -> None:
    assert got.members == want.members
    assert got.events == want.events
    assert got.rejects == want.rejects
    assert got.validation == want.validation


# ------------------------------------------------------------------ CSV files
def person(i: int) -> str:
    return f"Person{i}@Example.com"


def tricky_csv(end: str = "\n") -> bytes:
    """Quoted notes with line breaks, blank lines and damaged rows all through the file."""
    lines = ["email,phone,note"]
    for i in range(1, 41):
        if i % 7 == 0:
            lines.append(f'{person(i)},,"line one{end}line two{end}line three"')
        elif i % 11 == 0:
            lines.append("")  # a blank line, not a row
            lines.append(f"{person(i)},(415) 555-01{i:02d},plain")
        elif i == 13:
            lines.append(f'{person(i)},,"a quote left open')  # swallows the lines after it
        elif i == 23:
            lines.append(f'{person(i)},,"closes "late" here')  # a quote not ending a value
        elif i == 31:
            lines.append(f"{person(i)},not-a-phone,x,y,z")  # too many fields
        elif i == 32:
            lines.append(",,no identifier")
        else:
            lines.append(f"{person(i)},,note {i}")
    return (end.join(lines) + end).encode()


@pytest.mark.parametrize("end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_every_range_size_gives_the_one_range_result(
    s3: tuple[Bucket, Bucket], tmp_path: Path, end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, inbox = s3
    downloaded: list[str] = []
    download = Bucket.download

    def recorded(self: Bucket, key: str, path: Path) -> Path:
        downloaded.append(self.name)
        return download(self, key, path)

    monkeypatch.setattr(Bucket, "download", recorded)
    data = tricky_csv(end)
    name = f"tricky-{len(end)}.csv"
    run = make_run(inbox, data, name)
    want = reference(data, name, tmp_path)
    assert want.validation["rows_rejected"] >= 4  # the damage above is really in the file
    assert want.validation["lines"]["multiline_rows"] >= 5
    seen_ranges = set()
    # 1 byte: a range at every clean record start; then boundaries sliding over the file.
    for range_bytes in (1, 37, 64, 101, 233, len(data) // 2):
        got = ranged(state, inbox, run, range_bytes, tmp_path)
        seen_ranges.add(len(got.plan["ranges"]))
        assert_same(got, want)
    assert max(seen_ranges) >= 30 and min(seen_ranges) == 2
    assert "inbox" not in downloaded, "the input is read by range GETs, never copied to /tmp"


def test_ranges_start_at_record_starts_never_inside_a_quoted_line_break(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    lines = ["email,note"]
    starts: list[int] = []
    offset = len(lines[0]) + 1
    for i in range(1, 60):
        row = f'{person(i)},"first\nsecond\r\nthird"' if i % 2 else f"{person(i)},plain"
        starts.append(offset)
        offset += len(row.encode()) + 1
        lines.append(row)
    data = ("\n".join(lines) + "\n").encode()
    run = make_run(inbox, data, "multiline.csv")
    plan = ranges.plan_validation(state, inbox, run, range_bytes=50, default_region="US", now=NOW)
    assert len(plan["ranges"]) >= 20
    assert plan["header_end"] == starts[0]
    for spec in plan["ranges"]:
        assert spec["start"] in starts
        rows_before = starts.index(spec["start"])
        assert spec["rows_before"] == rows_before
        # Each odd row takes three lines: lines before = header + rows' lines.
        assert spec["lines_before"] == 1 + sum(3 if i % 2 else 1 for i in range(1, rows_before + 1))
    assert [s["end"] for s in plan["ranges"][:-1]] == [s["start"] for s in plan["ranges"][1:]]
    assert plan["ranges"][-1]["end"] == len(data)


def test_no_boundary_while_lines_of_a_damaged_row_wait_to_be_read_again(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    # Row 2's quote swallows rows 3 to 5 until row 5's quote; they are read again as rows.
    body = [
        "email,note",
        f"{person(1)},a",
        f'{person(2)},"open',
        f"{person(3)},b",
        f"{person(4)},c",
        f'{person(5)},"x" y',
        f"{person(6)},d",
    ]
    data = ("\n".join(body) + "\n").encode()
    run = make_run(inbox, data, "reread.csv")
    plan = ranges.plan_validation(state, inbox, run, range_bytes=1, default_region="US", now=NOW)
    offsets = [sum(len(line) + 1 for line in body[:n]) for n in range(1, len(body))]
    starts = [s["start"] for s in plan["ranges"]]
    # Rows 1 and 2 start clean; rows 3 to 5 come back from the damaged row 2, never a start.
    assert offsets[0] in starts and offsets[1] in starts
    assert not {offsets[2], offsets[3], offsets[4]} & set(starts)
    assert_same(ranged(state, inbox, run, 1, tmp_path), reference(data, "reread.csv", tmp_path))


def test_byte_order_mark_and_blank_lines_before_the_header(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    rows = [f"{person(i)},+1 415 555 {1000 + i}" for i in range(1, 30)]
    data = b"\xef\xbb\xbf\n\nemail,phone\n" + ("\n".join(rows) + "\n").encode()
    run = make_run(inbox, data, "bom.csv")
    got = ranged(state, inbox, run, 64, tmp_path)
    assert len(got.plan["ranges"]) > 5
    want = reference(data, "bom.csv", tmp_path)
    assert want.validation["lines"]["blank"] == 2
    assert_same(got, want)


def test_a_small_file_is_one_range_read_whole(s3: tuple[Bucket, Bucket], tmp_path: Path) -> None:
    state, inbox = s3
    data = tricky_csv()
    run = make_run(inbox, data, "small.csv")
    got = ranged(state, inbox, run, len(data), tmp_path)
    assert got.plan["ranges"] == [
        {
            "index": 1,
            "start": None,
            "end": len(data),
            "rows_before": 0,
            "lines_before": 0,
            "row_groups": None,
            # the one part of a one-file export
            "part": 0,
            "part_range": 1,
        }
    ]
    assert_same(got, reference(data, "small.csv", tmp_path))


def test_gzip_is_one_range(s3: tuple[Bucket, Bucket], tmp_path: Path) -> None:
    state, inbox = s3
    data = gzip.compress(tricky_csv())
    run = make_run(inbox, data, "day.csv.gz")
    got = ranged(state, inbox, run, 16, tmp_path)
    assert len(got.plan["ranges"]) == 1 and got.plan["ranges"][0]["start"] is None
    assert_same(got, reference(data, "day.csv.gz", tmp_path))


def test_members_are_sharded_by_the_first_hex_character_sorted(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    data = ("email\n" + "".join(f"{person(i)}\n" for i in range(200))).encode()
    run = make_run(inbox, data, "shards.csv")
    got = ranged(state, inbox, run, 1000, tmp_path)
    index = state.get_json(run.paths.members)
    assert index["shards"] == ranges.SHARDS == 16 and index["ranges"] == len(got.plan["ranges"])
    for file in index["files"]:
        lines = (state.get_bytes(file["key"]) or b"").decode().splitlines()
        assert file["key"].endswith(f"/shard-{file['shard']}.txt")
        assert lines == sorted(set(lines)) and len(lines) == file["lines"]
        assert {line.split("\t")[1][0] for line in lines} == {file["shard"]}
    expected = {f"EMAIL_SHA256\t{sha(f'person{i}@example.com')}" for i in range(200)}
    assert set(got.members) == expected


def test_a_header_problem_stops_the_plan_before_any_range(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    data = ("name,city\n" + "".join(f"n{i},c{i}\n" for i in range(100))).encode()
    run = make_run(inbox, data, "nocolumns.csv")
    with pytest.raises(InputRejected, match="none of the columns email, phone found"):
        ranges.plan_validation(state, inbox, run, range_bytes=64, default_region="US", now=NOW)
    assert state.count(f"{run.paths.prefix}validate/") == 0


def test_the_reject_threshold_applies_to_the_whole_file_not_to_a_range(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    # The first range is all bad rows; the file as a whole is 25 % bad.
    bad = "".join(f"bad{i}\n" for i in range(25))
    good = "".join(f"{person(i)}\n" for i in range(75))
    data = f"email\n{bad}{good}".encode()
    run = make_run(inbox, data, "share.csv")
    plan = ranges.plan_validation(state, inbox, run, range_bytes=100, default_region="US", now=NOW)
    for spec in plan["ranges"]:
        range_outputs.validate_range(state, inbox, run, plan, spec["index"], workdir=tmp_path)
    result = range_outputs.merge_ranges(state, run, plan, reject_threshold=0.3, workdir=tmp_path)
    assert (result.rows_received, result.rows_rejected) == (100, 25)
    with pytest.raises(InputRejected, match="25 of 100 rows rejected"):
        range_outputs.merge_ranges(state, run, plan, reject_threshold=0.2, workdir=tmp_path)
    # The failed run's report still finds the counts and every rejected row.
    assert state.get_json(run.paths.validation)["rows_rejected"] == 25
    rejects = list(
        csv.DictReader(io.StringIO(state.get_bytes(run.paths.rejects("validate")).decode()))
    )  # type: ignore[union-attr]
    assert [int(r["row"]) for r in rejects] == list(range(1, 26))


def test_a_broken_column_is_judged_on_the_whole_file_not_on_a_range(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    # The first ranges' phones are all Excel floats that lost digits; over the whole file
    # 25 % of the phones are, and every row is kept on its email.
    bad = "".join(f"{person(i)},{float(4155550100 + i):.5E}\n" for i in range(25))
    good = "".join(f"{person(i)},(213) 373-{4200 + i}\n" for i in range(25, 100))
    data = f"email,phone\n{bad}{good}".encode()
    run = make_run(inbox, data, "floats.csv")
    plan = ranges.plan_validation(state, inbox, run, range_bytes=200, default_region="US", now=NOW)
    assert len(plan["ranges"]) > 4
    for spec in plan["ranges"]:
        range_outputs.validate_range(state, inbox, run, plan, spec["index"], workdir=tmp_path)
    result = range_outputs.merge_ranges(state, run, plan, reject_threshold=0.3, workdir=tmp_path)
    assert (result.rows_received, result.rows_rejected) == (100, 0)
    assert result.valid_values_by_column == {"email": 100, "phone": 75}
    assert result.invalid_values_by_column == {"phone": {"phone_lost_digits": 25}}
    with pytest.raises(InputRejected, match=r"column 'phone' has too many invalid values: 25 of"):
        range_outputs.merge_ranges(state, run, plan, reject_threshold=0.2, workdir=tmp_path)
    assert state.get_json(run.paths.validation)["invalid_values_by_column"] == {
        "phone": {"phone_lost_digits": 25}
    }


# ------------------------------------------------------------------ crash and re-run
def test_a_crashed_range_is_redone_and_the_finished_ones_are_not(
    s3: tuple[Bucket, Bucket], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, inbox = s3
    data = tricky_csv()
    run = make_run(inbox, data, "crash.csv")
    plan = ranges.plan_validation(state, inbox, run, range_bytes=200, default_region="US", now=NOW)
    assert len(plan["ranges"]) >= 4
    put_json = Bucket.put_json
    crashed = run.paths.validate(plan["validate_id"]).done(3)

    def crash_at_the_marker(self: Bucket, key: str, value: Any) -> None:
        if key == crashed:
            raise OSError("the Lambda died before its done marker")
        put_json(self, key, value)

    monkeypatch.setattr(Bucket, "put_json", crash_at_the_marker)
    for spec in plan["ranges"]:
        with contextlib.suppress(OSError):
            range_outputs.validate_range(state, inbox, run, plan, spec["index"], workdir=tmp_path)
    monkeypatch.setattr(Bucket, "put_json", put_json)
    # Range 3's shards and rejects are up, its marker is not: nothing of it is read.
    with pytest.raises(DestinationError, match="range 3 of"):
        range_outputs.merge_ranges(state, run, plan, reject_threshold=1.0, workdir=tmp_path)

    validated: list[str] = []
    real = range_outputs.validate_audience_rows

    def counting(*args: Any, **kwargs: Any) -> Any:
        validated.append("range")
        return real(*args, **kwargs)

    monkeypatch.setattr(range_outputs, "validate_audience_rows", counting)
    # The re-run plans nothing new and validates range 3 only.
    again = ranges.plan_validation(state, inbox, run, range_bytes=200, default_region="US", now=NOW)
    assert again == plan
    for spec in again["ranges"]:
        range_outputs.validate_range(state, inbox, run, again, spec["index"], workdir=tmp_path)
    assert validated == ["range"]
    monkeypatch.setattr(range_outputs, "validate_audience_rows", real)
    merged = tmp_path / "merged"
    merged.mkdir()
    range_outputs.merge_ranges(state, run, again, reject_threshold=1.0, workdir=merged)
    index = state.get_json(run.paths.members)
    members: Counter[str] = Counter()
    for file in index["files"]:
        members.update((state.get_bytes(file["key"]) or b"").decode().splitlines())
    want = reference(data, "crash.csv", tmp_path)
    assert members == want.members
    assert state.get_json(run.paths.validation) == want.validation


def test_a_file_replaced_while_ranges_are_read_stops_the_run(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    state, inbox = s3
    data = tricky_csv()
    run = make_run(inbox, data, "replaced.csv")
    plan = ranges.plan_validation(state, inbox, run, range_bytes=200, default_region="US", now=NOW)
    range_outputs.validate_range(state, inbox, run, plan, 1, workdir=tmp_path)
    # The export overwrites the key: the next range must not read the new file's bytes.
    inbox.s3.put_object(Bucket=inbox.name, Key=run.source.key, Body=data.replace(b"note", b"NOTE"))
    with pytest.raises(InputRejected, match="was replaced while this run was reading it"):
        range_outputs.validate_range(state, inbox, run, plan, 2, workdir=tmp_path)
    assert not state.exists(run.paths.validate(plan["validate_id"]).done(2))


class FlakyS3:
    """Answers range GETs of ``data``; the first ``fail`` reads break off part way."""

    def __init__(self, data: bytes, fail: int):
        self.data, self.fail, self.gets = data, fail, 0

    def head_object(self, **_: Any) -> dict[str, Any]:
        return {"ContentLength": len(self.data)}

    def get_object(self, *, Range: str, **_: Any) -> dict[str, Any]:
        self.gets += 1
        first, last = (int(x) for x in Range.removeprefix("bytes=").split("-"))
        part = self.data[first : last + 1]
        broken = self.fail > 0
        self.fail -= 1
        return {"Body": _Body(part, broken)}


class _Body:
    def __init__(self, part: bytes, broken: bool):
        self.part, self.broken = part, broken

    def read(self, size: int) -> bytes:
        if self.broken and len(self.part) > 3:
            self.part, chunk = b"", self.part[:3]
            self.broken = False
            return chunk
        if self.broken:
            from botocore.exceptions import ReadTimeoutError

            raise ReadTimeoutError(endpoint_url="s3")
        chunk, self.part = self.part[:size], self.part[size:]
        return chunk


def test_a_range_read_that_breaks_off_is_asked_again_never_read_short() -> None:
    data = bytes(range(256)) * 40
    flaky = FlakyS3(data, fail=2)
    raw = s3_ranges.open_range(Bucket("inbox", client=flaky), "k", etag="e", start=100, end=9000)
    assert raw.read() == data[100:9000]
    assert flaky.gets >= 3
    always = FlakyS3(b"xy", fail=1_000)
    with pytest.raises(RetriableError, match="failed 3 times"):
        s3_ranges.open_range(Bucket("inbox", client=always), "k", etag="e").read()


def test_a_csv_range_is_read_in_gets_of_a_read_block_not_of_8_kib(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TextIOWrapper reads 8 KiB at a time through BufferedReader.read1, which passes small
    # reads to the raw stream: each was a GET (a 256 MiB range, 32,768 round trips).
    monkeypatch.setattr(s3_ranges, "READ_BLOCK", 64 * 1024)
    data = b"".join(b"person%07d@example.com,%07d\n" % (i, i) for i in range(40_000))
    s3 = FlakyS3(data, fail=0)
    start, end = 1_000, len(data) - 1_000
    text = text_stream(
        s3_ranges.open_range(Bucket("inbox", client=s3), "k", etag="e", start=start, end=end),
        "s3://inbox/k",
        file_start=False,
    )
    with text:
        read = "".join(iter(lambda: "".join(text.readlines(256 * 1024)), ""))
    assert read.encode() == data[start:end]
    assert s3.gets <= -(-(end - start) // s3_ranges.READ_BLOCK) + 1, s3.gets


def test_a_large_read_is_one_get_straight_into_the_callers_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3_ranges, "READ_BLOCK", 64 * 1024)
    data = bytes(range(256)) * 2_000
    s3 = FlakyS3(data, fail=0)
    raw = s3_ranges.S3Range(Bucket("inbox", client=s3), "k", etag="e", start=10, end=len(data))
    buffer = bytearray(300_000)  # over READ_BLOCK: a Parquet column chunk, say
    tracemalloc.start()
    try:
        assert raw.readinto(buffer) == 300_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (bytes(buffer), s3.gets) == (data[10:300_010], 1)
    # the fake's own copy of the bytes, and nothing held twice (a copy was 900,000)
    assert peak < 450_000, peak
    small = bytearray(100)  # a small read after it starts a read-ahead of READ_BLOCK
    assert raw.readinto(small) == 100 and raw.readinto(small) == 100
    assert (bytes(small), s3.gets) == (data[300_110:300_210], 2)


# ------------------------------------------------------------------ events and Parquet
def test_event_ranges_give_the_one_range_rows(s3: tuple[Bucket, Bucket], tmp_path: Path) -> None:
    state, inbox = s3
    lines = ["event,event_id,email,value,currency,timestamp"]
    for i in range(1, 40):
        when = "" if i % 5 == 0 else "2026-11-25T10:00:00Z"  # no time: the plan's "now"
        note = "bad-event" if i == 17 else "Purchase"
        lines.append(f"{note},order-{i // 2},{person(i)},{i}.50,USD,{when}")
    data = ("\n".join(lines) + "\n").encode()
    run = make_run(inbox, data, "events.csv", kind="offline_events")
    got = ranged(state, inbox, run, 120, tmp_path)
    assert len(got.plan["ranges"]) >= 5
    want = reference(data, "events.csv", tmp_path, kind="offline_events")
    assert want.validation["rows_rejected"] >= 1
    assert_same(got, want)


def test_parquet_ranges_are_row_groups_with_the_files_row_numbers(
    s3: tuple[Bucket, Bucket], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    state, inbox = s3
    emails = [person(i) if i % 5 else f"broken{i}" for i in range(1, 41)]
    phones = [None if i % 4 else f"+1 415 555 {2000 + i}" for i in range(1, 41)]
    sink = io.BytesIO()
    pq.write_table(pa.table({"email": emails, "phone": phones}), sink, row_group_size=7)
    data = sink.getvalue()
    run = make_run(inbox, data, "day.parquet")
    got = ranged(state, inbox, run, 1, tmp_path)
    groups = [r["row_groups"] for r in got.plan["ranges"]]
    assert groups == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]
    assert [r["rows_before"] for r in got.plan["ranges"]] == [0, 7, 14, 21, 28, 35]
    want = reference(data, "day.parquet", tmp_path)
    rejected = [(int(r["row"]), r["kind"]) for r in csv.DictReader(io.StringIO(want.rejects))]
    # row numbers run on across the groups; rows 20 and 40 keep their phone, their email
    # is dropped
    assert rejected == [
        (5, "rejected_row"),
        (10, "rejected_row"),
        (15, "rejected_row"),
        (20, "dropped_value"),
        (25, "rejected_row"),
        (30, "rejected_row"),
        (35, "rejected_row"),
        (40, "dropped_value"),
    ]
    assert_same(got, want)
    # Past the range size: several groups to one range.
    many = ranged(
        state,
        inbox,
        run,
        2 * pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).total_byte_size,
        tmp_path,
    )
    assert 1 < len(many.plan["ranges"]) < 6
    assert_same(many, want)
