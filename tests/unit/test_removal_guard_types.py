"""The removal guard per identifier type (issue 15.1) and a vanished column (issue 15.2).

A header typo (``emial,phone``) used to remove every email of an audience that also held
phones: exactly half of the members, so the guard on the total let it through. Now a plan
that removes more than ``max_removal_share`` of one type's members stops, and so does a file
without a column for a type the last committed sync had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.run_options import run_options
from tests.unit.test_removal_guard import make_run as guard_run
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences.commit import commit_audience
from tiktok_destination.audiences.guard import (
    LastSync,
    TypeCounts,
    check_removal,
    types_over_share,
    vanished_types,
)
from tiktok_destination.audiences.plan import plan_audience
from tiktok_destination.config.loader import load_config
from tiktok_destination.errors import MassRemovalBlocked
from tiktok_destination.identity.columns import near_miss
from tiktok_destination.runs.layout import AudienceKeys
from tiktok_destination.runs.run import Run, Source
from tiktok_destination.runs.workflow_actions import ACTIONS

# 1,000 people with an email and a phone: 2,000 members.
BOTH = {"EMAIL": TypeCounts(1000, 0, 0), "PHONE": TypeCounts(1000, 0, 0)}
# Day 2 without the email column: every email goes, the phones stay.
NO_EMAIL = {"EMAIL": TypeCounts(1000, 1000, 0), "PHONE": TypeCounts(1000, 0, 0)}
LAST_SYNC = LastSync(
    {"EMAIL": 1000, "PHONE": 1000},
    run_id="aaaabbbbccccdddd",
    source="s3://inbox/inbox/aud/vip/day1.csv",
    started_at="2026-11-25T06:00:00+00:00",
)
TYPO = {"columns_missing": ["email"], "columns_ignored": {"emial": "not a field"}}


# ------------------------------------------------------------------ per type
def test_removing_every_email_of_half_the_audience_is_blocked_naming_email() -> None:
    # 1,000 of 2,000 is exactly max_removal_share: the total guard alone lets it through.
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(guard_run(), 2000, 1000, 0, by_type=NO_EMAIL)
    err = info.value
    (line,) = err.message.splitlines()
    for part in (
        "more than max_removal_share 0.5 of its EMAIL members",
        "EMAIL members 1,000, would remove 1,000 (100.0%), would add 0",
        "the whole audience: current size 2,000, would remove 1,000 (50.0%), would add 0",
        '"allow_mass_removal": true',
        "raise max_removal_share",
    ):
        assert part in line, line
    assert "PHONE members" not in line
    assert err.details == {
        "current_members": 2000,
        "would_remove": 1000,
        "would_add": 0,
        "max_removal_share": 0.5,
        "mass_removal_min_audience": 1000,
        "by_type": {
            "EMAIL": {"current_members": 1000, "would_remove": 1000, "would_add": 0},
            "PHONE": {"current_members": 1000, "would_remove": 0, "would_add": 0},
        },
        "types_over_share": ["EMAIL"],
    }


def test_over_the_share_in_total_and_of_a_type_names_both() -> None:
    by_type = {"EMAIL": TypeCounts(1000, 900, 0), "PHONE": TypeCounts(200, 100, 0)}
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(guard_run(), 1200, 1000, 0, by_type=by_type)
    line = info.value.message
    assert "of it and of its EMAIL members, so nothing was sent: current size 1,200" in line
    assert "EMAIL members 1,000, would remove 900 (90.0%)" in line
    assert "PHONE members" not in line  # exactly half of the phones: allowed
    assert info.value.details["types_over_share"] == ["EMAIL"]


@pytest.mark.parametrize(
    ("current", "by_type", "share", "min_audience", "over"),
    [
        pytest.param(2000, NO_EMAIL, 0.5, 1000, ["EMAIL"], id="every-email"),
        pytest.param(2000, BOTH, 0.5, 1000, [], id="nothing-removed"),
        pytest.param(
            2000, {"EMAIL": TypeCounts(1000, 500, 0)}, 0.5, 1000, [], id="exactly-the-share"
        ),
        pytest.param(
            2000, {"EMAIL": TypeCounts(1000, 501, 0)}, 0.5, 1000, ["EMAIL"], id="one-over"
        ),
        pytest.param(999, NO_EMAIL, 0.5, 1000, [], id="audience-under-the-minimum"),
        # The minimum is the audience's size: a small type of a large audience is guarded.
        pytest.param(
            5000, {"IDFA": TypeCounts(40, 40, 0)}, 0.5, 1000, ["IDFA"], id="small-type-of-big"
        ),
        pytest.param(2000, NO_EMAIL, 1.0, 1000, [], id="share-1-turns-it-off"),
        pytest.param(
            4000,
            {
                "AAID": TypeCounts(1000, 600, 0),
                "EMAIL": TypeCounts(1000, 1000, 0),
                "PHONE": TypeCounts(1000, 0, 0),
                "IDFA": TypeCounts(1000, 501, 0),
            },
            0.5,
            1000,
            ["EMAIL", "IDFA", "AAID"],
            id="in-type-order",
        ),
    ],
)
def test_types_over_share(
    current: int,
    by_type: dict[str, TypeCounts],
    share: float,
    min_audience: int,
    over: list[str],
) -> None:
    found = types_over_share(current, by_type, max_share=share, min_audience=min_audience)
    assert found == over


def test_a_type_over_the_share_is_let_through_by_allow_mass_removal() -> None:
    run = guard_run({"allow_mass_removal": True})
    assert check_removal(run, 2000, 1000, 0, by_type=NO_EMAIL) is True
    assert check_removal(guard_run(), 2000, 0, 0, by_type=BOTH) is False


# ------------------------------------------------------------------ vanished column
def test_a_column_the_last_sync_had_stops_the_run_naming_type_sync_and_the_near_miss() -> None:
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(
            guard_run(), 2000, 1000, 0, by_type=NO_EMAIL, last_sync=LAST_SYNC, columns=TYPO
        )
    err = info.value
    (line,) = err.message.splitlines()
    for part in (
        "s3://inbox/inbox/aud/vip/day2.csv has no email column",
        "last sync of this audience (run aaaabbbbccccdddd of s3://inbox/inbox/aud/vip/day1.csv "
        "started 2026-11-25T06:00:00+00:00) left 1,000 EMAIL members at TikTok",
        "Column 'emial' of the file is not used and is close to email",
        'add columns = { email = "emial" } to [data_templates.vip]',
        '"allow_mass_removal": true',
    ):
        assert part in line, line
    assert err.details["types_without_column"] == {"EMAIL": 1000}
    assert err.details["types_over_share"] == ["EMAIL"]


def test_a_vanished_column_stops_even_a_small_audience_and_without_a_near_miss() -> None:
    # 20 members: under mass_removal_min_audience, so no share is guarded; the column still is.
    columns = {"columns_missing": ["email"], "columns_ignored": {"courriel": "not a field"}}
    by_type = {"EMAIL": TypeCounts(10, 10, 0), "PHONE": TypeCounts(10, 0, 0)}
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(
            guard_run(),
            20,
            10,
            0,
            by_type=by_type,
            last_sync=LastSync({"EMAIL": 10, "PHONE": 10}),
            columns=columns,
        )
    line = info.value.message
    assert "last sync of this audience (the committed snapshot) left 10 EMAIL members" in line
    assert 'add columns = { email = "<the header name>" } to [data_templates.vip]' in line
    assert "So nothing was sent (current size 20, would remove 10 (50.0%), would add 0)" in line
    assert "raise max_removal_share" not in line  # no share was exceeded
    assert info.value.details["types_over_share"] == []
    assert info.value.details["types_without_column"] == {"EMAIL": 10}


def test_a_near_miss_listed_in_ignore_columns_is_not_suggested() -> None:
    run = guard_run(ignore_columns='["emial"]')
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(run, 2000, 1000, 0, by_type=NO_EMAIL, last_sync=LAST_SYNC, columns=TYPO)
    assert 'columns = { email = "<the header name>" }' in info.value.message


def test_a_vanished_column_is_let_through_by_allow_mass_removal() -> None:
    run = guard_run({"allow_mass_removal": True})
    assert check_removal(run, 20, 10, 0, last_sync=LastSync({"EMAIL": 10}), columns=TYPO) is True


@pytest.mark.parametrize(
    ("last_sync", "missing", "vanished"),
    [
        pytest.param(LAST_SYNC, ["email"], ["EMAIL"], id="email-gone"),
        pytest.param(LAST_SYNC, ["email", "phone"], ["EMAIL", "PHONE"], id="both-gone"),
        pytest.param(LastSync({"EMAIL": 0, "PHONE": 5}), ["email"], [], id="none-held"),
        pytest.param(LastSync({"PHONE": 5}), ["email"], [], id="type-never-synced"),
        pytest.param(LAST_SYNC, [], [], id="every-column-there"),
        # A snapshot committed before manifests counted members by type: skipped, not guessed.
        pytest.param(None, ["email"], [], id="older-manifest"),
    ],
)
def test_vanished_types(
    last_sync: LastSync | None, missing: list[str], vanished: list[str]
) -> None:
    assert vanished_types(last_sync, missing) == vanished


def test_the_action_says_how_to_map_a_vanished_column() -> None:
    action = ACTIONS["MassRemovalBlocked"]
    text = " ".join((action.summary, *action.steps))
    for needle in ("identifier type", "columns = { email =", "allow_mass_removal"):
        assert needle in text, needle


@pytest.mark.parametrize(
    ("name", "field_name"),
    [
        ("emial", "email"),
        ("Emial", "email"),
        ("emal", "email"),
        ("e-mial", "email"),
        ("phnoe", "phone"),
        ("mobil", "phone"),
        ("phone_numbr", "phone"),
    ],
)
def test_near_misses(name: str, field_name: str) -> None:
    assert near_miss(name, field_name)


@pytest.mark.parametrize(
    ("name", "field_name"),
    [
        ("paid", "aaid"),  # one letter replaced in a 4-letter name: a word, not a typo
        ("said", "aaid"),
        ("name", "email"),
        ("state", "email"),
        ("tea", "phone"),
        ("courriel", "email"),  # a translation, not a typo
        ("email", "email"),  # the name itself is not a miss
        ("e_mail", "email"),  # nor is an alias
    ],
)
def test_not_near_misses(name: str, field_name: str) -> None:
    assert not near_miss(name, field_name)


# ------------------------------------------------------------------ through the plan
ADV = "7000000000000000001"
NAME = "VIP customers"
CONFIG = f"""
[settings]
mass_removal_min_audience = 10

[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[data_templates.vip]
destination = "aud"
audience_name = "{NAME}"
"""
KEYS = AudienceKeys(ADV, NAME)


@pytest.fixture()
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto("state") as state:
        yield state


def plan_run(run_id: str, options: dict[str, Any] | None = None, template: str = "") -> Run:
    config = CONFIG.replace(
        f'audience_name = "{NAME}"\n', f'audience_name = "{NAME}"\n{template}\n'
    )
    return Run(
        run_id=run_id,
        execution_id="arn:aws:states:us-east-1:123456789012:execution:sm:types",
        kind="custom_audience",
        state_bucket="state",
        source=Source(bucket="inbox", key=f"inbox/aud/vip/{run_id}.csv", etag="e", format="csv"),
        destination="aud",
        data_template="vip",
        template=load_config(config).resolve("aud", "vip").as_dict(),
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(**(options or {})),
    )


def lines(schema: str, people: range) -> set[str]:
    return {f"{schema}\t{hashlib.sha256(f'{schema}{i}'.encode()).hexdigest()}" for i in people}


def put_members(bucket: Bucket, run: Run, members: set[str], missing: list[str]) -> None:
    """Validate's outputs: members by shard, and the column report of validation.json."""
    files = []
    for shard in sorted({m.split("\t")[1][0] for m in members}):
        part = sorted(m for m in members if m.split("\t")[1][0] == shard)
        key = f"runs/{run.run_id}/validate/v/range-00001/shard-{shard}.txt"
        bucket.s3.put_object(Bucket="state", Key=key, Body="".join(f"{m}\n" for m in part))
        files.append({"key": key, "shard": shard, "lines": len(part)})
    bucket.put_json(run.paths.members, {"shards": 16, "files": files})
    bucket.put_json(
        run.paths.validation, {"columns_missing": missing, "columns_ignored": {"emial": "x"}}
    )


def commit(bucket: Bucket, run: Run, tmp_path: Path) -> None:
    (tmp_path / run.run_id).mkdir()
    plan = plan_audience(bucket, run, "aud-1", batch_size=100, workdir=tmp_path / run.run_id)
    for index in range(1, plan.batches + 1):
        bucket.put_json(f"{run.paths.plan(plan.plan_id)}done/{index:05d}.json", {"index": index})
    commit_audience(bucket, run, plan.plan_id)


EMAILS, PHONES = lines("EMAIL_SHA256", range(20)), lines("PHONE_SHA256", range(20))


def test_the_commit_records_members_by_type_and_the_run_for_the_next_plan(
    bucket: Bucket, tmp_path: Path
) -> None:
    day1 = plan_run("1" * 16)
    put_members(bucket, day1, EMAILS | PHONES, [])
    commit(bucket, day1, tmp_path)
    manifest = bucket.get_json(KEYS.snapshot)
    assert manifest["members"] == 40
    assert manifest["members_by_type"] == {"EMAIL": 20, "PHONE": 20}
    assert manifest["run_id"] == day1.run_id
    assert manifest["source"] == day1.source.uri
    assert manifest["started_at"] == day1.started_at


def test_a_plan_without_the_email_column_stops_before_anything_is_planned(
    bucket: Bucket, tmp_path: Path
) -> None:
    day1 = plan_run("1" * 16)
    put_members(bucket, day1, EMAILS | PHONES, [])
    commit(bucket, day1, tmp_path)

    day2 = plan_run("2" * 16)
    put_members(bucket, day2, PHONES, ["email"])
    (tmp_path / "day2").mkdir()
    with pytest.raises(MassRemovalBlocked) as info:
        plan_audience(bucket, day2, "aud-1", batch_size=100, workdir=tmp_path / "day2")
    err = info.value
    assert f"has no email column, but the last sync of this audience (run {day1.run_id}" in (
        err.message
    )
    assert 'columns = { email = "emial" }' in err.message
    assert err.details["by_type"] == {
        "EMAIL": {"current_members": 20, "would_remove": 20, "would_add": 0},
        "PHONE": {"current_members": 20, "would_remove": 0, "would_add": 0},
    }
    assert err.details["types_over_share"] == ["EMAIL"]
    assert err.details["types_without_column"] == {"EMAIL": 20}
    # As for the total guard: no plan, no journal.
    assert list(bucket.list(f"runs/{day2.run_id}/plan/")) == []
    assert not bucket.exists(KEYS.pending(day2.run_id))

    allowed = plan_run("2" * 16, {"allow_mass_removal": True})
    (tmp_path / "allowed").mkdir()
    plan = plan_audience(bucket, allowed, "aud-1", batch_size=100, workdir=tmp_path / "allowed")
    assert (plan.removed, plan.added, plan.members) == (20, 0, 20)


def test_the_column_check_holds_at_any_share_and_skips_a_snapshot_without_counts(
    bucket: Bucket, tmp_path: Path
) -> None:
    day1 = plan_run("1" * 16)
    put_members(bucket, day1, EMAILS | PHONES, [])
    commit(bucket, day1, tmp_path)

    # max_removal_share = 1 turns the share guards off, not the column check.
    day2 = plan_run("2" * 16, template="max_removal_share = 1")
    put_members(bucket, day2, PHONES, ["email"])
    (tmp_path / "day2").mkdir()
    with pytest.raises(MassRemovalBlocked, match="has no email column"):
        plan_audience(bucket, day2, "aud-1", batch_size=100, workdir=tmp_path / "day2")

    # A manifest committed before members were counted by type: skipped, not guessed.
    manifest = bucket.get_json(KEYS.snapshot)
    for key in ("members_by_type", "run_id", "source", "started_at"):
        del manifest[key]
    bucket.put_json(KEYS.snapshot, manifest)
    (tmp_path / "again").mkdir()
    plan = plan_audience(bucket, day2, "aud-1", batch_size=100, workdir=tmp_path / "again")
    assert (plan.removed, plan.members) == (20, 20)
