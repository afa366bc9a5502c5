"""Validate in ranges through the whole state machine (issue 9): Plan, a Distributed Map of
range children, the merge, then chunk as before. A file split into several ranges (a small
VALIDATE_RANGE_BYTES) must leave TikTok and the report exactly as one range does; a crashed
range child fails the run, and a re-run finishes it without sending anything twice.
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from tests.conftest import ADVERTISER, CONFIG, EVENT_SET, TOKEN
from tiktok_destination.adapters import s3_ranges
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences import diff as audience_diff
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import (
    LOCAL_APP_ID,
    LOCAL_APP_SECRET,
    LocalDestination,
    RunResult,
)

pytestmark = pytest.mark.e2e
RANGE_BYTES = "400"


#: Every audience here is diffed by the DiffShards Map (one child per shard), not inline.
DIFF_MAP = {"DIFF_INLINE_MEMBERS": "0"}
#: Batches of 20, not conftest's 4: these tests are about ranges and diff shards, not about
#: batching, and every batch is a Map child of its own (about 30 a run with batches of 4).
#: Each run still sends several batches, so a batch sent twice still shows.
RANGES_CONFIG = CONFIG.replace("mapping_batch_size = 4", "mapping_batch_size = 20")
BATCH = int(tomllib.loads(RANGES_CONFIG)["settings"]["mapping_batch_size"])


@contextmanager
def deployment(
    range_bytes: str | None, extra: dict[str, str] | None = None
) -> Iterator[tuple[LocalDestination, TikTokEmulator]]:
    """A fresh emulator and deployment, so two runs of one file can be compared."""
    environment = {"VALIDATE_RANGE_BYTES": range_bytes} if range_bytes else {}
    environment |= extra or {}
    with TikTokEmulator() as emulator:
        emulator.set_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        emulator.add_advertiser(ADVERTISER, "Acme")
        emulator.add_token(TOKEN, [ADVERTISER])
        emulator.add_event_set(ADVERTISER, EVENT_SET, "Stores")
        with LocalDestination(
            tiktok_base_url=emulator.base_url or "",
            retry_wait_scale=0.0,
            log_stream=io.StringIO(),
            environment=environment,
        ) as local:
            local.put_config(RANGES_CONFIG)
            local.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
            local.put_token("acme", TOKEN, [ADVERTISER])
            yield local, emulator


def audience_file(tmp_path: Path) -> Path:
    """People with notes holding line breaks, blank lines and damaged rows throughout."""
    lines = ["Email,PHONE,note"]
    for i in range(60):
        email, phone = f"person{i}@example.com", f"+1415555{i:04d}"
        if i % 9 == 4:
            lines.append(f'{email},{phone},"ring twice\r\nback door"')
        elif i % 13 == 6:
            lines.append("")
            lines.append(f"{email},,")
        elif i == 21:
            lines.append(f'{email},{phone},"left open')  # rejected; the lines after are rows
        elif i == 41:
            lines.append(f"bad-email-{i},12,x")  # both identifiers invalid: rejected
        else:
            lines.append(f"{email},{phone},n{i}")
    path = tmp_path / "ranged.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def comparable(result: RunResult) -> dict[str, Any]:
    assert result.report is not None
    report = result.report
    return {
        "rows": report["rows"],
        "lines": report.get("lines"),
        "columns": report["columns"],
        "members": report.get("members"),
        "events": {k: v for k, v in (report.get("events") or {}).items()},
        "batches": report["batches"],
        "by_endpoint": report["api"]["by_endpoint"],
    }


def validate_states(result: RunResult) -> list[str]:
    return [s for s in result.states if s in ("Validate", "ValidateRanges", "MergeRanges")]


def diff_states(result: RunResult) -> list[str]:
    return [s for s in result.states if s in ("ChunkAudience", "DiffShards", "CollectShards")]


def fewest_calls(result: RunResult) -> int:
    """The lower bound of segment/mapping calls: every batch full but each action's last."""
    assert result.report is not None
    members = result.report["members"]
    return -(-members["added"] // BATCH) + -(-members["removed"] // BATCH)


def test_a_file_in_ranges_leaves_the_audience_and_report_of_one_range(tmp_path: Path) -> None:
    path = audience_file(tmp_path)
    with deployment(None) as (local, emulator):
        one = local.run_file(path, "acme_audiences", "vip")
        assert one.succeeded, one.cause
        assert validate_states(one) == ["Validate"]  # no Map for a small file
        (want,) = emulator.audiences(ADVERTISER)
    with deployment(RANGE_BYTES) as (local, emulator):
        many = local.run_file(path, "acme_audiences", "vip")
        assert many.succeeded, many.cause
        assert validate_states(many) == ["Validate", "ValidateRanges", "MergeRanges"]
        plan = many.output["validate"] if many.output else {}
        assert plan["ranges"] >= 4
        (got,) = emulator.audiences(ADVERTISER)
        rejects = local.state_text(f"runs/{many.report['run_id']}/rejects/validate.csv")  # type: ignore[index]
    assert got["members"] == want["members"]
    assert comparable(many) == comparable(one)
    report = many.report
    assert report is not None
    assert report["rows"]["received"] == report["rows"]["accepted"] + report["rows"]["rejected"]
    assert report["rows"]["rejected_by_reason"] == {"unterminated_quote": 1, "invalid_email": 1}
    assert report["lines"]["multiline_rows"] > 0 and report["lines"]["blank"] > 0
    assert rejects is not None and "unterminated_quote" in rejects


def test_a_crashed_range_child_fails_the_run_and_a_rerun_is_exact(tmp_path: Path) -> None:
    path = audience_file(tmp_path)
    with deployment(None) as (local, emulator):
        one = local.run_file(path, "acme_audiences", "vip")
        assert one.succeeded, one.cause
        (want,) = emulator.audiences(ADVERTISER)
        want_calls = emulator.calls["segment/mapping/"]
    with deployment(RANGE_BYTES) as (local, emulator):
        local.lambdas.inject_fault(
            "ValidateFunction",
            RuntimeError("the range child died"),
            when=lambda event: event.get("action") == "range" and event["range"]["index"] == 2,
        )
        failed = local.run_file(path, "acme_audiences", "vip")
        assert not failed.succeeded
        # On AWS the Map fails with its child; moto does not enforce Map failure tolerance,
        # and the merge refuses a range without its done marker: either way the run stops
        # before chunk.
        assert "ValidateRanges" in failed.states and failed.states[-2:] == ["Notify", "Failed"]
        assert not {"ChunkAudience", "EnsureAudience"} & set(failed.states)
        assert emulator.calls["segment/mapping/"] == 0 and emulator.audiences(ADVERTISER) == []
        assert failed.report is not None
        again = local.rerun(failed.report["run_id"])
        assert again.succeeded, again.cause
        (got,) = emulator.audiences(ADVERTISER)
        assert got["members"] == want["members"]
        assert emulator.calls["segment/mapping/"] == want_calls, "no batch sent twice"
        assert comparable(again)["rows"] == comparable(one)["rows"]
        assert comparable(again)["members"] == comparable(one)["members"]
        # The same file once more: the audience is already right, nothing is sent.
        emulator.reset_counters()
        unchanged = local.run_file(path, "acme_audiences", "vip")
        assert unchanged.succeeded, unchanged.cause
        assert emulator.calls["segment/mapping/"] == 0


class _BrokenReads:
    """An S3 client whose range GETs break off (a dropped connection), all else as is."""

    def __init__(self, s3: Any):
        self._s3 = s3
        self.gets = 0

    def get_object(self, **kwargs: Any) -> Any:
        self.gets += 1
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def test_a_read_of_the_input_that_keeps_breaking_off_is_retried_by_the_state_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3Range asks a broken read again a few times, then raises RetriableError saying "the
    # step is retried": the Validate state must retry it, not send the run to Notify.
    path = audience_file(tmp_path)
    real_get_into = s3_ranges.S3Range._get_into
    broken: list[_BrokenReads] = []

    def breaks_in_the_first_attempt(self: s3_ranges.S3Range, at: int, view: memoryview) -> None:
        if broken:
            return real_get_into(self, at, view)
        broken.append(_BrokenReads(self._bucket.s3))
        healthy, self._bucket = self._bucket, Bucket(self._bucket.name, client=broken[0])
        try:
            return real_get_into(self, at, view)
        finally:
            self._bucket = healthy

    monkeypatch.setattr(s3_ranges.S3Range, "_get_into", breaks_in_the_first_attempt)
    with deployment(None) as (local, emulator):
        result = local.run_file(path, "acme_audiences", "vip")
        assert result.succeeded, result.cause
        assert validate_states(result) == ["Validate"]
        assert len(broken) == 1 and broken[0].gets == s3_ranges._READ_ATTEMPTS
        (got,) = emulator.audiences(ADVERTISER)
    with deployment(None) as (local, emulator):
        clean = local.run_file(path, "acme_audiences", "vip")
        (want,) = emulator.audiences(ADVERTISER)
    assert got["members"] == want["members"]
    assert comparable(result) == comparable(clean)


def test_offline_events_in_ranges_send_what_one_range_sends(tmp_path: Path) -> None:
    recent = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = ["event,event_id,email,content_id,price,quantity,currency,timestamp"]
    for i in range(40):
        # Orders of three rows each, so one event's rows fall into different ranges.
        lines.append(f"Purchase,order-{i // 3},buyer{i // 3}@example.com,sku{i},2,1,USD,{recent}")
    lines.append(f"Purchse,bad,x@example.com,sku,1,1,USD,{recent}")
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with deployment(None) as (local, emulator):
        one = local.run_file(path, "acme_offline", "purchases")
        assert one.succeeded, one.cause
        want = sorted(
            (e["event_id"], [c["content_id"] for c in e["properties"]["contents"]])
            for e in emulator.received_events
        )
    with deployment("300") as (local, emulator):
        many = local.run_file(path, "acme_offline", "purchases")
        assert many.succeeded, many.cause
        assert many.output is not None and many.output["validate"]["ranges"] >= 4
        got = sorted(
            (e["event_id"], [c["content_id"] for c in e["properties"]["contents"]])
            for e in emulator.received_events
        )
    assert got == want and len(want) == 14
    assert comparable(many) == comparable(one)


def changed_file(tmp_path: Path) -> Path:
    """The next export: some people left (0-14), some joined (60-74), the rest stayed."""
    lines = ["Email,PHONE,note"]
    lines += [f"person{i}@example.com,+1415555{i:04d},n{i}" for i in range(15, 75)]
    path = tmp_path / "changed.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def test_the_diff_by_shard_map_syncs_exactly_what_the_inline_diff_does(tmp_path: Path) -> None:
    """A first sync, a changed file, the same file again: with the DiffShards Map the audience,
    the report and the calls are those of the inline diff, and the calls the lower bound."""
    first, second = audience_file(tmp_path), changed_file(tmp_path)
    seen: dict[str, list[tuple[Any, ...]]] = {}
    for mode, extra in (("inline", {}), ("map", DIFF_MAP)):
        with deployment(None, extra) as (local, emulator):
            seen[mode] = []
            for path in (first, second, second):
                emulator.reset_counters()
                result = local.run_file(path, "acme_audiences", "vip")
                assert result.succeeded, result.cause
                calls = emulator.calls["segment/mapping/"]
                assert calls == fewest_calls(result)
                (audience,) = emulator.audiences(ADVERTISER)
                seen[mode].append((comparable(result), audience["members"], calls))
                want = (
                    ["ChunkAudience", "DiffShards", "CollectShards"] if extra else ["ChunkAudience"]
                )
                assert diff_states(result) == want
            assert local.state_keys("map-results/") != [], "the children's results went to S3"
    assert seen["map"] == seen["inline"]
    (_, _, first_calls), (report, _, changed_calls), (_, _, unchanged_calls) = seen["map"]
    assert first_calls > 0 and changed_calls > 0 and unchanged_calls == 0
    assert report["members"]["added"] > 0 and report["members"]["removed"] > 0


@pytest.mark.parametrize("diff_mode", ["inline", "map"])
def test_a_crashed_range_child_and_a_crashed_diff_then_a_rerun_are_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, diff_mode: str
) -> None:
    """Issue 9.3's acceptance: the diff runs shard by shard (one after another, or one Map
    child each), and one that dies at shard a (other shards' files and markers written, no
    manifest, no journal) is finished by the re-run, which diffs only the unfinished shards."""
    first, second = audience_file(tmp_path), changed_file(tmp_path)
    extra = DIFF_MAP if diff_mode == "map" else {}
    with deployment(RANGE_BYTES, extra) as (local, emulator):
        assert local.run_file(first, "acme_audiences", "vip").succeeded
        emulator.reset_counters()
        clean = local.run_file(second, "acme_audiences", "vip")
        assert clean.succeeded, clean.cause
        (want,) = emulator.audiences(ADVERTISER)
        want_calls = emulator.calls["segment/mapping/"]
        assert clean.report is not None
        assert clean.report["members"]["added"] > 0 and clean.report["members"]["removed"] > 0

    real_diff = audience_diff.diff_shard
    diffed: list[Path] = []
    crash = False

    def dies_at_shard_a(new: Path, *args: Any, **kwargs: Any) -> Any:
        diffed.append(new)
        if crash and new.parent.name == "shard-a":
            raise RuntimeError("the chunk Lambda died in the middle of the diff")
        return real_diff(new, *args, **kwargs)

    monkeypatch.setattr(audience_diff, "diff_shard", dies_at_shard_a)
    with deployment(RANGE_BYTES, extra) as (local, emulator):
        assert local.run_file(first, "acme_audiences", "vip").succeeded
        emulator.reset_counters()
        crash = True
        local.lambdas.inject_fault(
            "ValidateFunction",
            RuntimeError("the range child died"),
            when=lambda event: event.get("action") == "range" and event["range"]["index"] == 2,
        )
        diffed.clear()
        failed = local.run_file(second, "acme_audiences", "vip")
        assert not failed.succeeded and "ChunkAudience" not in failed.states
        assert failed.report is not None
        run_id = failed.report["run_id"]

        diff_died = local.rerun(run_id)
        assert not diff_died.succeeded
        assert "ChunkAudience" in diff_died.states and "MapAudienceBatches" not in str(
            diff_died.states
        )
        assert ("DiffShards" in diff_died.states) == (diff_mode == "map")
        names = [p.parent.name for p in diffed]
        if diff_mode == "inline":
            assert names[-1] == "shard-a"  # shards 0-9 were diffed first
        else:
            assert "shard-a" in names
        assert emulator.calls["segment/mapping/"] == 0
        # Nothing of the half-done plan is visible: no journal, the first file's snapshot.
        assert [k for k in local.state_keys("audiences/") if "/pending/" in k] == []
        markers = {
            k.rsplit("/", 1)[1].removesuffix(".json")
            for k in local.state_keys(f"runs/{run_id}/plan/")
            if "/diff/shard-" in k
        }
        assert "shard-a" not in markers and len(markers) >= (10 if diff_mode == "inline" else 0)

        crash = False
        diffed.clear()
        again = local.rerun(run_id)
        assert again.succeeded, again.cause
        # Shards whose marker exists are not diffed again, each other one exactly once.
        redone = [p.parent.name for p in diffed]
        assert sorted(redone) == sorted({f"shard-{s}" for s in "0123456789abcdef"} - markers)
        assert ("DiffShards" in again.states) == (diff_mode == "map")
        (got,) = emulator.audiences(ADVERTISER)
        assert got["members"] == want["members"]
        assert emulator.calls["segment/mapping/"] == want_calls, "no batch sent twice"
        assert again.report is not None
        assert again.report["members"] == clean.report["members"]
        emulator.reset_counters()
        unchanged = local.run_file(second, "acme_audiences", "vip")
        assert unchanged.succeeded, unchanged.cause
        assert emulator.calls["segment/mapping/"] == 0
