"""exports.py: what one object of the inbox means, on moto's S3 (no state machine)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import s3_bucket_on_moto
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.config.loader import load_config
from tiktok_destination.errors import InputChanged, InputRejected
from tiktok_destination.inputs import exports

TEMPLATE = load_config(
    """
[credentials.acme]
[destinations.d]
credential = "acme"
advertiser_id = "7000000000000000001"
kind = "custom_audience"
[data_templates.t]
destination = "d"
audience_name = "A"
"""
).resolve("d", "t")
BASE = "inbox/d/t/"
FOLDER = BASE + "exp/"


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto("inbox") as made:
        yield made


def put(bucket: Bucket, key: str, body: bytes = b"email\na@example.com\n") -> None:
    bucket.s3.put_object(Bucket=bucket.name, Key=key, Body=body)


def resolve(bucket: Bucket, key: str, *, from_event: bool = True, **template: object):  # type: ignore[no-untyped-def]
    head = bucket.head(key) if not key.endswith("/") else None
    return exports.resolve(
        bucket,
        bucket,
        key,
        dataclasses.replace(TEMPLATE, **template),  # type: ignore[arg-type]
        size=int(head["ContentLength"]) if head else None,
        from_event=from_event,
        base=BASE,
        execution_id="arn:aws:states:us-east-1:1:execution:m:one",
        started_at=(datetime.now(UTC) - timedelta(seconds=120)).isoformat(),
    )


@pytest.mark.parametrize(
    "name",
    ["_SUCCESS", "_committed_123", "_started_123", ".part-0.csv.crc", "x.csv.metadata", "a/"],
)
def test_bookkeeping_objects_are_not_data(name: str) -> None:
    assert exports.not_data_reason(FOLDER + name, 10, TEMPLATE) is not None


def test_a_part_is_data_and_an_empty_part_is_not() -> None:
    assert exports.not_data_reason(FOLDER + "part-00000.csv", 10, TEMPLATE) is None
    assert exports.not_data_reason(FOLDER + "part-00000.csv", 0, TEMPLATE) == "an empty object"


def test_a_file_directly_in_the_template_folder_is_a_one_file_export(bucket: Bucket) -> None:
    put(bucket, BASE + "day.csv")
    assert resolve(bucket, BASE + "day.csv").status == "run"
    assert resolve(bucket, BASE + "day.csv").parts == ()
    put(bucket, BASE + "_SUCCESS", b"")
    assert resolve(bucket, BASE + "_SUCCESS").status == "not_data"
    # Hadoop's hidden-file convention is for an export's folder: a file with a data
    # extension directly in the template folder runs, as it always did.
    put(bucket, BASE + "_vip.csv")
    assert resolve(bucket, BASE + "_vip.csv").status == "run"


def test_the_marker_starts_every_data_part_and_nothing_else(bucket: Bucket) -> None:
    for key in ("part-1.csv", "dt=2026-12-07/part-2.csv", "_committed_1", ".part-1.csv.crc"):
        put(bucket, FOLDER + key)
    put(bucket, FOLDER + "empty.csv", b"")
    put(bucket, FOLDER + "_SUCCESS", b"")
    export = resolve(bucket, FOLDER + "_SUCCESS")
    assert (export.status, export.completion) == ("run", "marker")
    assert [p.key for p in export.parts] == [
        FOLDER + "dt=2026-12-07/part-2.csv",
        FOLDER + "part-1.csv",
    ]


def test_with_the_marker_rule_a_part_waits_for_the_marker(bucket: Bucket) -> None:
    put(bucket, FOLDER + "part-1.csv")
    export = resolve(bucket, FOLDER + "part-1.csv", export_completion="marker")
    assert export.status == "part_of_export"
    with pytest.raises(InputRejected, match="no _SUCCESS in the folder yet"):
        resolve(bucket, FOLDER, from_event=False, export_completion="marker")


def test_the_export_tag_changes_with_any_part(bucket: Bucket) -> None:
    put(bucket, FOLDER + "part-1.csv")
    put(bucket, FOLDER + "part-2.csv")
    before = resolve(bucket, FOLDER, from_event=False)
    put(bucket, FOLDER + "part-2.csv", b"email\nb@example.com\n")
    after = resolve(bucket, FOLDER, from_event=False)
    assert before.etag != after.etag and before.completion == "folder"


def manifest(entries: list[tuple[str, int]]) -> bytes:
    return json.dumps(
        {
            "entries": [
                {"url": f"s3://unload/x/{n}", "meta": {"content_length": c}} for n, c in entries
            ]
        }
    ).encode()


def test_a_manifest_is_read_exactly_and_its_sizes_checked(bucket: Bucket) -> None:
    put(bucket, FOLDER + "0000_part_00", b"a@example.com\n")
    put(bucket, FOLDER + "0001_part_00", b"b@example.com\n")
    put(bucket, FOLDER + "stray.csv")  # not listed: not read
    put(bucket, FOLDER + "manifest", manifest([("0000_part_00", 14), ("0001_part_00", 14)]))
    export = resolve(bucket, FOLDER + "manifest")
    assert [p.key for p in export.parts] == [FOLDER + "0000_part_00", FOLDER + "0001_part_00"]
    put(bucket, FOLDER + "manifest", manifest([("0000_part_00", 14), ("0001_part_00", 99)]))
    with pytest.raises(InputRejected, match="0001_part_00 has 14 bytes, the manifest lists 99"):
        resolve(bucket, FOLDER + "manifest")


def test_part_formats_by_name() -> None:
    assert exports.part_format("x/0000_part_00") == "csv"
    assert exports.part_format("x/0000_part_00.gz") == "csv"
    assert exports.part_format("x/part-0.snappy.parquet") == "parquet"
    with pytest.raises(InputRejected):
        exports.part_format("x/part-0.orc")


def test_a_part_added_or_replaced_after_pinning_stops_the_run(bucket: Bucket) -> None:
    put(bucket, FOLDER + "part-1.csv")
    export = resolve(bucket, FOLDER, from_event=False)
    pinned = {
        "folder": FOLDER,
        "completion": export.completion,
        "parts": [p.as_dict() for p in export.parts],
    }
    exports.check_unchanged(bucket, pinned, TEMPLATE)  # unchanged: no error
    put(bucket, FOLDER + "part-2.csv")
    with pytest.raises(InputChanged, match=r"part-2\.csv was added"):
        exports.check_unchanged(bucket, pinned, TEMPLATE)
    bucket.delete(FOLDER + "part-2.csv")
    put(bucket, FOLDER + "part-1.csv", b"email\nz@example.com\n")
    with pytest.raises(InputChanged, match=r"part-1\.csv was replaced"):
        exports.check_unchanged(bucket, pinned, TEMPLATE)


def test_quiet_period_only_the_latest_arrival_goes_on(bucket: Bucket) -> None:
    put(bucket, FOLDER + "part-1.csv")
    put(bucket, FOLDER + "part-2.csv")
    template = dataclasses.replace(TEMPLATE, export_quiet_seconds=60)
    now = datetime.now(UTC)

    def arrive(key: str, name: str, at: datetime, *, looking_again: bool = False) -> exports.Export:
        """One part's execution (started ``at``): its first look, or its look after the wait."""
        return exports.resolve(
            bucket,
            bucket,
            key,
            template,
            size=10,
            from_event=True,
            base=BASE,
            execution_id=f"arn:aws:states:us-east-1:1:execution:m:{name}",
            started_at=at.isoformat(),
            previous={"start": "wait"} if looking_again else None,
            now=now + timedelta(seconds=60) if looking_again else now,
        )

    first = arrive(FOLDER + "part-1.csv", "a", now - timedelta(seconds=10))
    assert (first.status, first.wait_seconds) == ("wait", 50)
    second = arrive(FOLDER + "part-2.csv", "b", now - timedelta(seconds=5))
    assert second.status == "wait"
    # After the wait, the first looks again and finds a later arrival.
    again = arrive(FOLDER + "part-1.csv", "a", now - timedelta(seconds=10), looking_again=True)
    assert again.status == "part_of_export"
    done = arrive(FOLDER + "part-2.csv", "b", now - timedelta(seconds=5), looking_again=True)
    assert (done.status, done.completion, len(done.parts)) == ("run", "quiet_period", 2)


def test_row_names_across_parts_skip_empty_parts() -> None:
    from tiktok_destination.validation.range_outputs import RowNames

    names = RowNames(
        [
            {"part": "a.csv", "rows_before": 0},
            {"part": "b.csv", "rows_before": 3},  # b.csv has no rows
            {"part": "c.csv", "rows_before": 3},
        ]
    )
    assert names.export_row(2, 1) == 4
    assert [names.locate(r) for r in (1, 3, 4, 6)] == [
        ("a.csv", 1),
        ("a.csv", 3),
        ("c.csv", 1),
        ("c.csv", 3),
    ]
    assert names.label(4) == "1 of c.csv"
    assert names.reject(4, "", "duplicate_row", "x") == (
        "c.csv",
        1,
        "",
        "duplicate_row",
        "x",
        "rejected_row",
    )
    one_file = RowNames(None)
    assert (one_file.export_row(0, 7), one_file.label(7), one_file.reject(7, "r")) == (
        7,
        "7",
        (7, "r", "rejected_row"),
    )
