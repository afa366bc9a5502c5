"""Overlapping runs of one audience, through the whole state machine on the local default.

Two runs that diff against the same base would end as the union of both files; the lease
makes them take turns, and the newest start wins whatever order they get the lease in.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import pytest

from tests.conftest import ADVERTISER, write_csv
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination

pytestmark = pytest.mark.e2e
BATCH = 4  # mapping_batch_size in the test config


def emails(start: int, stop: int) -> list[str]:
    return [f"Person{i}@Example.com" for i in range(start, stop)]


def expected(rows: list[str]) -> set[str]:
    # Hand-normalized (trim + lowercase), hashed with hashlib: independent of the product.
    return {"EMAIL_SHA256:" + hashlib.sha256(e.lower().encode()).hexdigest() for e in rows}


def members(emu: TikTokEmulator) -> set[str]:
    found = emu.audiences(ADVERTISER)
    assert len(found) == 1, f"expected exactly one audience, found {len(found)}"
    return set(found[0]["members"])


def test_two_files_started_together_end_equal_to_the_newer(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    a, b = emails(0, 12), emails(8, 20)
    file_a = write_csv(tmp_path / "a.csv", "email", a)
    file_b = write_csv(tmp_path / "b.csv", "email", b)
    first = local.begin(local.drop(file_a, "acme_audiences", "vip"))
    time.sleep(0.05)  # B is started after A, as two S3 drops a moment apart
    second = local.begin(local.drop(file_b, "acme_audiences", "vip"))
    results = [local.wait(first), local.wait(second)]
    assert all(r.succeeded for r in results), [r.cause for r in results]
    assert members(emulator) == expected(b)
    # They took turns: one of them waited for the lease, or found it superseded.
    paths = [r.states for r in results]
    assert any("WaitForLease" in p or "Superseded" in p for p in paths), paths
    assert emulator.calls["segment/audience/"] == 1, "one audience, created once"

    # A later run of B agrees with TikTok: nothing to send (the snapshot is B's).
    emulator.reset_counters()
    again = local.run_file(file_b, "acme_audiences", "vip")
    assert again.succeeded, again.cause
    assert emulator.calls["segment/mapping/"] == 0
    assert members(emulator) == expected(b)


def test_the_same_input_started_twice_sends_each_batch_once(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = emails(0, 10)
    event = local.drop(write_csv(tmp_path / "a.csv", "email", rows), "acme_audiences", "vip")
    # One S3 event delivered twice (EventBridge is at-least-once).
    first, second = local.begin(event), local.begin(event)
    results = [local.wait(first), local.wait(second)]
    assert all(r.succeeded for r in results), [r.cause for r in results]
    assert members(emulator) == expected(rows)
    assert emulator.calls["segment/mapping/"] == math.ceil(len(rows) / BATCH)
    assert emulator.calls["segment/audience/"] == 1
    noop = [r for r in results if "AlreadyRunning" in r.states]
    # Either the second start found the first live (a no-op), or it came after the first
    # finished and found every batch done: both send nothing twice.
    assert len(noop) <= 1
    # Each execution reports what it sent, the no-op included ("nothing", and why).
    assert all(r.report is not None for r in results)
    assert all(r.report["status"] == "already_running" for r in noop)  # type: ignore[index]


def test_a_run_waiting_too_long_fails_with_run_in_progress(
    emulator: TikTokEmulator, tmp_path: Path
) -> None:
    from tests.conftest import CONFIG, TOKEN
    from tiktok_destination_local.runner import LOCAL_APP_ID, LOCAL_APP_SECRET

    with LocalDestination(
        tiktok_base_url=emulator.base_url or "",
        retry_wait_scale=0.0,
        environment={"LEASE_MAX_WAITS": "0"},
    ) as local:
        local.put_config(CONFIG)
        local.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        local.put_token("acme", TOKEN, [ADVERTISER])
        emulator.latency = 0.3  # keep the first run busy while the second looks
        file_a = write_csv(tmp_path / "a.csv", "email", emails(0, 12))
        file_b = write_csv(tmp_path / "b.csv", "email", emails(5, 9))
        first = local.begin(local.drop(file_a, "acme_audiences", "vip"))
        # The second starts once the first holds the lease (it takes it before it creates
        # the audience): a fixed sleep let the second win on a loaded machine.
        deadline = time.monotonic() + 60
        while not emulator.calls["segment/audience/"] and time.monotonic() < deadline:
            time.sleep(0.01)
        second = local.begin(local.drop(file_b, "acme_audiences", "vip"))
        blocked, done = local.wait(second), local.wait(first)
        emulator.latency = 0.0
    assert done.succeeded, done.cause
    assert blocked.error == "RunInProgress", (blocked.error, blocked.cause)
    assert members(emulator) == expected(emails(0, 12))


def test_a_superseded_audience_run_says_so_in_a_report(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    """The older export's run reaches the lease only after a newer one finished: it sends
    nothing (the audience mirrors the newest export) and its report says why."""
    from tests.e2e.test_event_queue_e2e import STAGGER, preflight_held

    older = local.drop(
        write_csv(tmp_path / "a.csv", "email", emails(0, 6)), "acme_audiences", "vip"
    )
    newer = local.drop(
        write_csv(tmp_path / "b.csv", "email", emails(3, 9)), "acme_audiences", "vip"
    )
    with preflight_held(local, older["detail"]["object"]["key"]) as go:
        first = local.begin(
            {
                "bucket": older["detail"]["bucket"]["name"],
                "key": older["detail"]["object"]["key"],
                "destination": "acme_audiences",
                "data_template": "vip",
            }
        )
        time.sleep(STAGGER)
        done = local.wait(local.begin(newer))
        go.set()
        superseded = local.wait(first)
    assert done.succeeded and superseded.succeeded, (done.cause, superseded.cause)
    assert superseded.states[-1] == "Superseded"
    assert members(emulator) == expected(emails(3, 9))
    report = superseded.report
    assert report is not None and report["status"] == "superseded"
    assert report["superseded_by_run_id"] == done.report["run_id"]  # type: ignore[index]
    assert report["sent"].startswith("nothing")
