"""Custom audiences through the whole state machine: moto's executor, real handlers, emulator."""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADVERTISER, CONFIG, TOKEN, write_csv
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination_local.cli import print_report
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LOCAL_APP_ID, LOCAL_APP_SECRET, LocalDestination

pytestmark = pytest.mark.e2e
BATCH = 4  # mapping_batch_size in the test config


def people(start: int, stop: int) -> list[tuple[str, str]]:
    """Raw rows as a warehouse exports them: mixed-case emails, formatted phone numbers."""
    return [(f"Person{i}@Example.COM", f"+1 (415) 555-{i:04d}") for i in range(start, stop)]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def members_of(rows: list[tuple[str, str]]) -> set[str]:
    """What TikTok must hold for ``people`` rows, normalized here by hand (email lowercased,
    phone as E.164 digits after its "+"), independently of the product's hash_identifier."""
    out = set()
    for email, phone in rows:
        out.add("EMAIL_SHA256:" + sha256(email.lower()))
        out.add("PHONE_SHA256:" + sha256("+" + "".join(c for c in phone if c.isdigit())))
    return out


def test_members_of_is_hand_normalized() -> None:
    # Literal digests of "person7@example.com" and "+14155550007": a slip in the helper
    # cannot hide the same slip in the product.
    assert members_of(people(7, 8)) == {
        "EMAIL_SHA256:032e7bfddac15bfcb9e82d552c8c24a8c77182f76c53ba8450cf5bafdf824e93",
        "PHONE_SHA256:7e475685f2d50543d33c8b32a7d626342dbf392a2afd422b497b63b2c5c4eed7",
    }


def audience(emu: TikTokEmulator) -> dict:
    found = emu.audiences(ADVERTISER)
    assert len(found) == 1, f"expected exactly one audience, found {len(found)}"
    return found[0]


def csv_of(tmp_path: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    return write_csv(tmp_path / name, "Email,PHONE", [f"{e},{p}" for e, p in rows])


def test_first_file_creates_audience_then_diffs_then_noop(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    first = people(0, 10)
    result = local.run_file(csv_of(tmp_path, "day1.csv", first), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    created = audience(emulator)
    assert created["name"] == "VIP customers"
    assert created["members"] == members_of(first)
    assert result.report is not None
    assert result.report["members"]["added"] == 20
    assert result.report["audience"]["audience_id"] == created["id"]

    # Day 2: 4 people left (8 identifiers), 6 joined (12 identifiers).
    second = people(4, 16)
    emulator.reset_counters()
    result = local.run_file(csv_of(tmp_path, "day2.csv", second), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert audience(emulator)["members"] == members_of(second)
    report = result.report
    assert report is not None
    assert (report["members"]["added"], report["members"]["removed"]) == (12, 8)
    assert report["members"]["unchanged"] == 12
    expected_calls = math.ceil(12 / BATCH) + math.ceil(8 / BATCH)
    assert emulator.calls["segment/mapping/"] == expected_calls
    assert emulator.calls["segment/audience/"] == 0, "the audience must not be created twice"

    # The same file again: nothing to map.
    emulator.reset_counters()
    result = local.run_file(csv_of(tmp_path, "day2.csv", second), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert emulator.calls["segment/mapping/"] == 0
    assert audience(emulator)["members"] == members_of(second)


def test_renamed_file_with_same_people_makes_no_mapping_call(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = people(0, 6)
    assert local.run_file(csv_of(tmp_path, "a.csv", rows), "acme_audiences", "vip").succeeded
    emulator.reset_counters()
    result = local.run_file(csv_of(tmp_path, "b.csv", rows[::-1]), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert emulator.calls["segment/mapping/"] == 0
    assert result.report is not None and result.report["members"]["unchanged"] == 12


def test_lambda_failure_mid_map_then_rerun_converges_without_resending(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = people(0, 12)  # 24 identifiers -> 6 add batches of 4
    path = csv_of(tmp_path, "big.csv", rows)
    local.lambdas.inject_fault(
        "AudienceFunction",
        RuntimeError("the Lambda sandbox crashed"),
        after=2,
        when=lambda event: event.get("action") == "map",
    )
    failed = local.run_file(path, "acme_audiences", "vip")
    assert failed.status == "FAILED"
    sent_before = emulator.calls["segment/mapping/"]
    assert 0 < sent_before < 6
    partial = audience(emulator)["members"]
    assert partial < members_of(rows)

    result = local.rerun(failed.report["run_id"])  # type: ignore[index]
    assert result.succeeded, result.cause
    assert audience(emulator)["members"] == members_of(rows)
    # Every batch went to TikTok exactly once across both executions.
    assert emulator.calls["segment/mapping/"] == 6
    assert result.report is not None
    assert result.report["batches"]["already_done_before"] == sent_before


def test_tiktok_failure_mid_map_then_rerun_sends_only_the_rest(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = people(0, 8)  # 16 identifiers -> 4 add batches
    path = csv_of(tmp_path, "f.csv", rows)
    # A fatal answer (not retried): the batch fails, the run stops.
    emulator.fail_next("segment/mapping/", code=40002, times=1)
    failed = local.run_file(path, "acme_audiences", "vip")
    assert failed.status == "FAILED"
    assert failed.error == "TikTokRequestRejected"
    accepted_first = sum(
        1 for _, p, code in emulator.calls_log if p.startswith("segment/mapping") and code == 0
    )
    result = local.rerun(failed.report["run_id"])  # type: ignore[index]
    assert result.succeeded, result.cause
    accepted = sum(
        1 for _, p, code in emulator.calls_log if p.startswith("segment/mapping") and code == 0
    )
    assert accepted == 4, "each batch accepted exactly once"
    assert accepted - accepted_first == 4 - accepted_first
    assert audience(emulator)["members"] == members_of(rows)


def test_newer_file_after_failed_run_still_converges(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    base = people(0, 4)
    assert local.run_file(csv_of(tmp_path, "base.csv", base), "acme_audiences", "vip").succeeded
    # A run that adds people 4..12 fails half way: some of them reached TikTok.
    local.lambdas.inject_fault(
        "AudienceFunction",
        RuntimeError("crash"),
        after=1,
        when=lambda event: event.get("action") == "map",
    )
    failed = local.run_file(csv_of(tmp_path, "grow.csv", people(0, 12)), "acme_audiences", "vip")
    assert failed.status == "FAILED"
    # The next file drops everyone the failed run was adding, and some of the base.
    newer = people(2, 4) + people(20, 22)
    result = local.run_file(csv_of(tmp_path, "newer.csv", newer), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert audience(emulator)["members"] == members_of(newer)


def test_transient_tiktok_errors_are_retried(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = people(0, 2)
    emulator.fail_next("segment/mapping/", http_status=503, times=2)
    emulator.fail_next("segment/audience/", code=40100, times=1)
    result = local.run_file(csv_of(tmp_path, "t.csv", rows), "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert audience(emulator)["members"] == members_of(rows)
    assert result.report is not None and result.report["api"]["retries"] >= 3


def test_same_file_after_the_audience_came_back_to_an_earlier_state_is_sent_again(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # A, B, A, B with the same bytes under the same names: the second B has the same run id
    # and the same committed snapshot (same bytes, same ETag) as the first, but TikTok holds
    # A now, so B's batches must be sent again, not skipped as done.
    a = [f"person{i}@example.com" for i in range(0, 6)]
    b = [f"person{i}@example.com" for i in range(3, 9)]
    for rows, name in ((a, "a.csv"), (b, "b.csv"), (a, "a.csv"), (b, "b.csv")):
        result = local.run_file(write_csv(tmp_path / name, "email", rows), "acme_audiences", "vip")
        assert result.succeeded, result.cause
        expected = {"EMAIL_SHA256:" + hashlib.sha256(e.encode()).hexdigest() for e in rows}
        assert audience(emulator)["members"] == expected, name


# ------------------------------------------------------------------ creates TikTok applies late
CLIENT_TIMEOUT = 0.5  # TIKTOK_TIMEOUT_SECONDS: the lookup window after a lost create is 1 s


@pytest.fixture
def patient_local(
    emulator: TikTokEmulator, handler_logs: io.StringIO
) -> Iterator[LocalDestination]:
    """The local deployment with a short client timeout, so a late TikTok costs a second."""
    with LocalDestination(
        tiktok_base_url=emulator.base_url or "",
        retry_wait_scale=0.0,
        log_stream=handler_logs,
        environment={"TIKTOK_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT)},
    ) as deployment:
        deployment.put_config(CONFIG)
        deployment.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        deployment.put_token("acme", TOKEN, [ADVERTISER])
        yield deployment


def test_a_create_applied_after_the_client_timeout_leaves_one_audience_with_the_members(
    patient_local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # TikTok applies the create 0.8 s after it arrives: the client gave up at 0.5 s, and a
    # lookup right then finds nothing.
    emulator.hold_next("segment/audience/", 0.8)
    rows = people(0, 5)

    result = patient_local.run_file(csv_of(tmp_path, "day1.csv", rows), "acme_audiences", "vip")

    assert result.succeeded, result.cause
    time.sleep(1.0)  # a second create, had one been sent, is applied by now
    only = audience(emulator)
    assert only["members"] == members_of(rows)
    assert emulator.calls["segment/audience/"] == 1
    assert result.report is not None
    assert result.report["audience"]["audience_id"] == only["id"]
    assert result.report["audience"]["duplicate_audience_ids"] == []


def test_other_audiences_of_the_name_are_reported_by_id_and_left_alone(
    local: LocalDestination,
    emulator: TikTokEmulator,
    tmp_path: Path,
    handler_logs: io.StringIO,
) -> None:
    # Two audiences of the name exist already (e.g. a create applied after the one that
    # replaced it): the oldest is used, the other is named in the report and the log.
    made = []
    with TikTokClient(TOKEN, base_url=emulator.base_url or "", qps=0) as tiktok:
        for offset in (0.0, 60.0):
            emulator.clock = lambda offset=offset: 1_767_225_600.0 + offset  # type: ignore[misc]
            made.append(tiktok.create_audience(ADVERTISER, "VIP customers"))
    emulator.clock = time.time  # type: ignore[method-assign]
    rows = people(0, 3)

    result = local.run_file(csv_of(tmp_path, "day1.csv", rows), "acme_audiences", "vip")

    assert result.succeeded, result.cause
    oldest, other = made
    by_id = {a["id"]: a for a in emulator.audiences(ADVERTISER)}
    assert set(by_id) == {oldest, other}, "the other audience is never deleted"
    assert by_id[oldest]["members"] == members_of(rows)
    assert by_id[other]["members"] == set()
    assert result.report is not None
    assert result.report["audience"]["audience_id"] == oldest
    assert result.report["audience"]["duplicate_audience_ids"] == [other]
    printed = io.StringIO()
    print_report(result.report, printed)
    assert f"not used and not deleted (delete them in Ads Manager if unwanted): {other}" in (
        printed.getvalue()
    )
    assert f"leaving the others (not deleted): {other}" in handler_logs.getvalue()
