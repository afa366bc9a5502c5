"""Exports in parts, through the whole state machine on the local default.

A warehouse writes one query result as many files (Spark's parts and ``_SUCCESS``,
Redshift's headerless parts and ``manifest``, Snowflake's parts with no marker): the audience
must equal the union of every part, synced by exactly one run, and no part, marker or
bookkeeping file may start a mirror run of its own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from tests.conftest import ADVERTISER, CONFIG, EVENT_SET
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import (
    INBOX_BUCKET,
    REGION,
    LocalDestination,
    RunResult,
    s3_object_created_event,
)

pytestmark = pytest.mark.e2e
BATCH = 4  # mapping_batch_size in the test config

EXPORT_TEMPLATES = """
[data_templates.spark]
destination = "acme_audiences"
audience_name = "Spark export"
user_id_types = ["EMAIL"]
export_quiet_seconds = 1

[data_templates.redshift]
destination = "acme_audiences"
audience_name = "Redshift export"
user_id_types = ["EMAIL", "PHONE"]
export_completion = "manifest"
headerless_columns = ["email", "phone"]

[data_templates.snowflake]
destination = "acme_audiences"
audience_name = "Snowflake export"
user_id_types = ["EMAIL"]
export_completion = "quiet_period"
# Longer than moto takes to start five executions side by side (on AWS the default is 60)
export_quiet_seconds = 3
"""


@pytest.fixture
def exports_local(local: LocalDestination) -> LocalDestination:
    local.put_config(CONFIG + EXPORT_TEMPLATES)
    return local


def email_hash(email: str) -> str:
    # Hand-normalized (trim + lowercase), hashed with hashlib: independent of the product.
    return "EMAIL_SHA256:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def audience(emu: TikTokEmulator, name: str) -> set[str]:
    found = [a for a in emu.audiences(ADVERTISER) if a["name"] == name]
    assert len(found) == 1, f"expected one audience {name!r}, found {len(found)}"
    return set(found[0]["members"])


def put(key: str, body: bytes) -> dict[str, object]:
    """Write one object of the inbox and return the Object Created event S3 would send."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=INBOX_BUCKET, Key=key, Body=body)
    head = s3.head_object(Bucket=INBOX_BUCKET, Key=key)
    return s3_object_created_event(
        INBOX_BUCKET, key, str(head["ETag"]).strip('"'), int(head["ContentLength"])
    )


def start_all(local: LocalDestination, events: list[dict[str, object]]) -> list[RunResult]:
    """Start every event's execution at once (as EventBridge would), then wait for all."""
    arns = [local.begin(event) for event in events]
    return [local.wait(arn) for arn in arns]


def runs(results: list[RunResult]) -> list[RunResult]:
    """The executions that ran the export (took the lease and wrote a report)."""
    return [r for r in results if "Validate" in r.states]


def test_spark_export_of_8_parts_and_a_marker_is_one_run_equal_to_the_union(
    exports_local: LocalDestination, emulator: TikTokEmulator
) -> None:
    local = exports_local
    folder = "inbox/acme_audiences/spark/run-2026-12-07/"
    people = [f"Person{i}@Example.com" for i in range(61)]
    parts = [people[i::8] for i in range(8)]  # uneven: 8 parts of 7 or 8 rows
    events = [
        put(f"{folder}part-{i:05d}-3f2a.c000.csv", ("email\n" + "\n".join(p) + "\n").encode())
        for i, p in enumerate(parts)
    ]
    bookkeeping = [
        put(f"{folder}.part-00000-3f2a.c000.csv.crc", b"crc"),
        put(f"{folder}_committed_8312", b"{}"),
        put(f"{folder}_started_8312", b""),
    ]
    random.Random(7).shuffle(events)
    marker = put(f"{folder}_SUCCESS", b"")
    results = start_all(local, events + bookkeeping + [marker])

    assert all(r.succeeded for r in results), [r.cause for r in results]
    synced = runs(results)
    assert len(synced) == 1, [r.states for r in results]
    assert synced[0] is results[-1], "the marker's execution runs the export"
    assert audience(emulator, "Spark export") == {email_hash(p) for p in people}
    assert emulator.calls["segment/mapping/"] == math.ceil(len(people) / BATCH)
    assert all("PartOfExport" in r.states for r in results[:8])
    assert all("NotData" in r.states for r in results[8:11])
    assert not any("Notify" in r.states for r in results)

    report = synced[0].report
    assert report is not None
    assert report["source"] == f"s3://{INBOX_BUCKET}/{folder}"
    assert report["members"]["added"] == len(people)
    assert report["rows"]["received"] == len(people)
    assert report["export"]["completion"] == "marker"
    assert [p["rows_received"] for p in report["export"]["parts"]] == [len(p) for p in parts]


def test_redshift_manifest_export_of_headerless_gzip_parts(
    exports_local: LocalDestination, emulator: TikTokEmulator
) -> None:
    local = exports_local
    folder = "inbox/acme_audiences/redshift/unload-2026-12-07/"
    people = [(f"r{i}@example.com", f"+1 415 555 {1000 + i:04d}") for i in range(10)]
    bodies = {
        "vip_0000_part_00.gz": gzip.compress("".join(f"{e},{p}\n" for e, p in people[:6]).encode()),
        "vip_0001_part_00.gz": gzip.compress("".join(f"{e},{p}\n" for e, p in people[6:]).encode()),
    }
    for name, body in bodies.items():
        put(folder + name, body)
    manifest = {
        # The warehouse's own unload bucket: parts are matched by name in the manifest's folder.
        "entries": [
            {"url": f"s3://acme-unload/vip/{name}", "meta": {"content_length": len(body)}}
            for name, body in bodies.items()
        ]
    }
    result = local.start(put(folder + "vip_manifest", json.dumps(manifest).encode()))
    assert result.succeeded, result.cause
    phones = {
        "PHONE_SHA256:" + hashlib.sha256(f"+1415555{1000 + i:04d}".encode()).hexdigest()
        for i in range(10)
    }
    assert audience(emulator, "Redshift export") == {email_hash(e) for e, _ in people} | phones

    # The same unload with one listed part missing: stopped before any call to TikTok.
    emulator.reset_counters()
    broken = "inbox/acme_audiences/redshift/unload-2026-12-08/"
    put(broken + "vip_0000_part_00.gz", bodies["vip_0000_part_00.gz"])
    failed = local.start(put(broken + "vip_manifest", json.dumps(manifest).encode()))
    assert not failed.succeeded
    assert failed.error == "InputRejected"
    assert f"{broken}vip_0001_part_00.gz is missing" in (failed.cause or "")
    assert sum(emulator.calls.values()) == 0


def test_quiet_period_export_of_5_parts_runs_once(
    exports_local: LocalDestination, emulator: TikTokEmulator
) -> None:
    local = exports_local
    folder = "inbox/acme_audiences/snowflake/vip-2026-12-07/"
    people = [f"snow{i}@example.com" for i in range(23)]
    events = [
        put(f"{folder}data_0_{i}_0.csv", ("email\n" + "\n".join(people[i::5]) + "\n").encode())
        for i in range(5)
    ]
    results = start_all(local, events)
    assert all(r.succeeded for r in results), [r.cause for r in results]
    assert len(runs(results)) == 1, [r.states for r in results]
    assert sum("PartOfExport" in r.states for r in results) == 4
    assert any("WaitForQuietPeriod" in r.states for r in results)
    assert audience(emulator, "Snowflake export") == {email_hash(p) for p in people}
    assert emulator.calls["segment/mapping/"] == math.ceil(len(people) / BATCH)


def test_folder_placeholder_crc_and_committed_objects_start_no_run(
    exports_local: LocalDestination, emulator: TikTokEmulator
) -> None:
    local = exports_local
    folder = "inbox/acme_audiences/spark/run-2026-12-09/"
    results = start_all(
        local,
        [
            put(folder, b""),
            put(f"{folder}.part-00001.csv.crc", b"crc"),
            put(f"{folder}_committed_991", b"{}"),
        ],
    )
    assert all(r.succeeded for r in results), [r.cause for r in results]
    assert all(r.states[-1] == "NotData" for r in results), [r.states for r in results]
    assert sum(emulator.calls.values()) == 0
    assert local.state_keys("runs/") == [] and local.state_keys("executions/") == []


def test_parts_with_different_headers_stop_before_anything_is_sent(
    exports_local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    export = tmp_path / "mixed"
    export.mkdir()
    (export / "part-0.csv").write_text("email\na@example.com\n")
    (export / "part-1.csv").write_text("phone\n+14155550100\n")
    result = exports_local.run_export(export, "acme_audiences", "vip")
    assert result.error == "InputRejected"
    assert "part part-1.csv has other columns than part part-0.csv" in (result.cause or "")
    assert emulator.calls["segment/mapping/"] == 0


def test_an_order_split_across_two_parts_is_one_event_with_all_items(
    exports_local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    at = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = "event,event_id,email,content_id,price,quantity,currency,timestamp\n"
    export = tmp_path / "orders-2026-12-07"
    export.mkdir()
    (export / "part-00000.csv").write_text(
        header
        + f"Purchase,A,ann@example.com,sku1,10,1,USD,{at}\n"
        + f"Purchase,B,bob@example.com,sku9,4,1,USD,{at}\n"
    )
    (export / "part-00001.csv").write_text(
        header
        + f"Purchase,A,ann@example.com,sku2,5,2,USD,{at}\n"
        # the first part's first row again: merged, and named by its part and row
        + f"Purchase,A,ann@example.com,sku1,10,1,USD,{at}\n"
    )
    result = exports_local.run_export(export, "acme_offline", "purchases")
    assert result.succeeded, result.cause
    received = {e["event_id"]: e for e in emulator.received_events}
    assert sorted(received) == ["A", "B"]
    assert [c["content_id"] for c in received["A"]["properties"]["contents"]] == ["sku1", "sku2"]
    assert received["A"]["properties"]["value"] == pytest.approx(20.0)
    assert sorted(emulator.events_by_key) == [
        (EVENT_SET, "Purchase", "A"),
        (EVENT_SET, "Purchase", "B"),
    ]
    report = result.report
    assert report is not None and report["events"]["sent"] == 2
    assert report["rows"]["rejected_by_reason"] == {"duplicate_row": 1}
    chunk = exports_local.state_text(f"runs/{report['run_id']}/rejects/chunk.csv") or ""
    assert chunk.splitlines() == [
        "part,row,column,reason_code,reason,kind",
        "part-00001.csv,2,,duplicate_row,identical to row 1 of part-00000.csv; sent once,"
        "rejected_row",
    ]


def test_a_parquet_export_in_parts_is_the_union_of_its_parts(
    exports_local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    export = tmp_path / "vip-parquet"
    (export / "dt=2026-12-07").mkdir(parents=True)
    people = [f"pq{i}@example.com" for i in range(9)]
    for number, chunk in enumerate((people[:4], people[4:])):
        table = pa.table({"email": chunk})
        # Hive-style folder and Spark's name: every data file under the folder is a part.
        pq.write_table(table, export / "dt=2026-12-07" / f"part-{number:05d}.snappy.parquet")
    (export / "_SUCCESS").write_bytes(b"")
    result = exports_local.run_export(export, "acme_audiences", "spark")
    assert result.succeeded, result.cause
    assert audience(emulator, "Spark export") == {email_hash(p) for p in people}
    report = result.report
    assert report is not None and report["export"]["completion"] == "marker"
    assert [p["part"] for p in report["export"]["parts"]] == [
        "dt=2026-12-07/part-00000.snappy.parquet",
        "dt=2026-12-07/part-00001.snappy.parquet",
    ]


def test_a_part_added_while_the_export_is_read_stops_the_run_before_sending(
    exports_local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    import threading

    local = exports_local
    export = tmp_path / "vip-2026-12-10"
    export.mkdir()
    (export / "part-00000.csv").write_text("email\na@example.com\n")
    (export / "_SUCCESS").write_bytes(b"")
    local.drop_export(export, "acme_audiences", "spark")
    folder = "inbox/acme_audiences/spark/vip-2026-12-10/"

    # Validate is held until a late part lands in the pinned export.
    name = next(n for n in local.lambdas.specs if "ValidateFunction" in n)
    local.lambdas.load(name, local.lambdas.specs[name])
    handler = local.lambdas.handlers[name]
    go = threading.Event()

    def held(event: dict[str, object], context: object) -> object:
        go.wait(timeout=120)
        return handler(event, context)

    local.lambdas.handlers[name] = held
    try:
        arn = local.begin(
            {
                "bucket": INBOX_BUCKET,
                "key": folder,
                "destination": "acme_audiences",
                "data_template": "spark",
            }
        )
        while not local.state_keys("runs/") or not any(
            k.endswith("/export.json") for k in local.state_keys("runs/")
        ):
            time.sleep(0.05)  # Preflight has pinned the parts
        put(folder + "part-00001.csv", b"email\nlate@example.com\n")
        go.set()
        result = local.wait(arn)
    finally:
        go.set()
        local.lambdas.handlers[name] = handler
    assert result.error == "InputChanged", (result.error, result.cause)
    assert "part-00001.csv was added" in (result.cause or "")
    assert emulator.calls["segment/audience/"] == 0 and emulator.calls["segment/mapping/"] == 0
