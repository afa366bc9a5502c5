"""The audience diff per shard (issue 9.3): the same adds, deletes and counts as the diff of
the whole set, a one-file snapshot of an earlier version read and replaced, and a commit
that switches the snapshot with its manifest only, so a commit that stops leaves the old
snapshot fully in force.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences import diff as audience_diff
from tiktok_destination.audiences.commit import commit_audience
from tiktok_destination.audiences.diff import (
    DiffPlan,
    diff_planned_shard,
    estimated_members,
    load_diff,
)
from tiktok_destination.audiences.plan import (
    AudiencePlan,
    collect_diff,
    plan_audience,
    prepare_diff,
)
from tiktok_destination.config.loader import load_config
from tiktok_destination.errors import DestinationError
from tiktok_destination.runs.layout import AudienceKeys
from tiktok_destination.runs.run import Run, Source

ADV = "7000000000000000001"
NAME = "VIP customers"
CONFIG = f"""
[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[data_templates.vip]
destination = "aud"
audience_name = "{NAME}"
max_removal_share = 1.0
"""
TEMPLATE = load_config(CONFIG).resolve("aud", "vip").as_dict()
KEYS = AudienceKeys(ADV, NAME)


@pytest.fixture()
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto("state") as state:
        yield state


def make_run(run_id: str) -> Run:
    return Run(
        run_id=run_id,
        execution_id="arn:aws:states:us-east-1:123456789012:execution:sm:shards",
        kind="custom_audience",
        state_bucket="state",
        source=Source(bucket="inbox", key=f"inbox/aud/vip/{run_id}.csv", etag="e", format="csv"),
        destination="aud",
        data_template="vip",
        template=TEMPLATE,
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(),
    )


def member(rng: random.Random) -> str:
    schema = rng.choice(["EMAIL_SHA256", "PHONE_SHA256", "IDFA_SHA256"])
    return f"{schema}\t{rng.getrandbits(256):064x}"


def text(lines: set[str]) -> bytes:
    return "".join(f"{line}\n" for line in sorted(lines)).encode()


def by_shard(lines: set[str]) -> dict[str, set[str]]:
    shards: dict[str, set[str]] = {}
    for line in lines:
        shards.setdefault(line.split("\t")[1][0], set()).add(line)
    return shards


def put_validated(bucket: Bucket, run: Run, ranges: list[set[str]]) -> None:
    """Validate's output as ``ranges.merge_ranges`` indexes it: one file per range and shard."""
    files = []
    for index, part in enumerate(ranges, start=1):
        for shard, lines in sorted(by_shard(part).items()):
            key = f"runs/{run.run_id}/validate/v/range-{index:05d}/shard-{shard}.txt"
            bucket.s3.put_object(Bucket="state", Key=key, Body=text(lines))
            files.append({"key": key, "shard": shard, "lines": len(lines)})
    bucket.put_json(run.paths.members, {"shards": 16, "files": files})


def put_pending(
    bucket: Bucket, run_id: str, adds: set[str], deletes: set[str], *, sharded: bool
) -> None:
    """The journal of a run whose batches may have reached TikTok, in either layout."""
    prefix = f"runs/{run_id}/plan/0000000000000000/"
    for action, lines in (("adds", adds), ("deletes", deletes)):
        if sharded:
            for shard, part in by_shard(lines).items():
                key = f"{prefix}{action}/shard-{shard}.txt"
                bucket.s3.put_object(Bucket="state", Key=key, Body=text(part))
        else:
            bucket.s3.put_object(Bucket="state", Key=f"{prefix}{action}.txt", Body=text(lines))
    journal = {"run_id": run_id, "plan_prefix": prefix, "pending_base": []}
    bucket.put_json(KEYS.pending(run_id), journal | ({"layout": "shards"} if sharded else {}))


def read_set(bucket: Bucket, prefix: str) -> list[str]:
    return [
        line
        for obj in bucket.list(prefix)
        for line in (bucket.get_bytes(obj["Key"]) or b"").decode().splitlines()
    ]


def committed_members(bucket: Bucket) -> set[str]:
    manifest = bucket.get_json(KEYS.snapshot)
    assert manifest is not None
    found = [
        line
        for key in manifest["shards"].values()
        for line in (bucket.get_bytes(key) or b"").decode().splitlines()
    ]
    assert len(found) == len(set(found))
    return set(found)


def manifest_batches(bucket: Bucket, manifest_key: str) -> list[dict[str, Any]]:
    batches = bucket.get_json(manifest_key)
    assert isinstance(batches, list)
    return batches


@dataclass
class Scenario:
    run: Run
    new: set[str]
    committed: set[str]
    pending_adds: set[str]
    pending_deletes: set[str]
    batch_size: int

    @property
    def want_deletes(self) -> set[str]:
        # The whole-set diff, as sets: the base is what TikTok may hold (audiences/shards.py).
        return (self.committed | self.pending_adds) - self.new

    @property
    def want_adds(self) -> set[str]:
        return self.new - (self.committed - self.pending_deletes)

    @property
    def want_unchanged(self) -> int:
        return len(self.new & (self.committed - self.pending_deletes))


def scenario(seed: int, bucket: Bucket) -> Scenario:
    """A random committed snapshot (manifest, or a one-file one of an earlier version), pending
    runs in either layout and a new member set in overlapping ranges."""
    rng = random.Random(seed)
    pool = [member(rng) for _ in range(rng.randint(0, 400))]
    committed = {m for m in pool if rng.random() < 0.5}
    new = {m for m in pool if rng.random() < 0.5}
    if committed and seed % 3 == 0:
        # A one-file snapshot of an earlier version (split by shard on the fly).
        bucket.s3.put_object(Bucket="state", Key=KEYS.legacy_snapshot, Body=text(committed))
    elif committed:
        shards = {}
        for shard, lines in by_shard(committed).items():
            key = KEYS.generation("1111111111111111", shard)
            bucket.s3.put_object(Bucket="state", Key=key, Body=text(lines))
            shards[shard] = key
        bucket.put_json(KEYS.snapshot, {"generation": "1111111111111111", "shards": shards})
    pending_adds: set[str] = set()
    pending_deletes: set[str] = set()
    for n in range(rng.randint(0, 3)):
        adds = {m for m in pool if m not in committed and rng.random() < 0.2}
        deletes = {m for m in committed if rng.random() < 0.2}
        put_pending(bucket, f"{n:016x}", adds, deletes, sharded=bool(rng.random() < 0.5))
        pending_adds |= adds
        pending_deletes |= deletes
    run = make_run(f"{seed + 100:016x}")
    # Ranges overlap: a person may be in several ranges (the union removes the repeat).
    ranges = [{m for m in new if rng.random() < 0.6} for _ in range(3)]
    ranges.append(new - set().union(*ranges))
    put_validated(bucket, run, ranges)
    batch_size = rng.choice([1, 7, 50, 10_000])
    return Scenario(run, new, committed, pending_adds, pending_deletes, batch_size)


def assert_plan_is_the_whole_set_diff(bucket: Bucket, case: Scenario, plan: AudiencePlan) -> None:
    assert (plan.members, plan.added, plan.removed, plan.unchanged) == (
        len(case.new),
        len(case.want_adds),
        len(case.want_deletes),
        case.want_unchanged,
    )
    prefix = case.run.paths.plan(plan.plan_id)
    assert sorted(read_set(bucket, f"{prefix}adds/")) == sorted(case.want_adds)
    assert sorted(read_set(bucket, f"{prefix}deletes/")) == sorted(case.want_deletes)
    assert sorted(read_set(bucket, f"{prefix}snapshot/")) == sorted(case.new)
    # Batches run across shards: every one full but each action's last, so each action
    # sends exactly ceil(lines / batch size) batches; deletes first.
    batches = manifest_batches(bucket, plan.manifest_key)
    for action, want in (("delete", case.want_deletes), ("add", case.want_adds)):
        mine = [b for b in batches if b["action"] == action]
        sent = [
            line for b in mine for line in (bucket.get_bytes(b["key"]) or b"").decode().splitlines()
        ]
        assert sorted(sent) == sorted(want)
        assert [b["count"] for b in mine[:-1]] == [case.batch_size] * (len(mine) - 1)
        assert len(mine) == -(-len(want) // case.batch_size)
    assert [b["index"] for b in batches] == list(range(1, len(batches) + 1))
    assert [b["action"] for b in batches] == sorted((b["action"] for b in batches), reverse=True)
    assert {b["plan_id"] for b in batches} <= {plan.plan_id}
    stored = bucket.get_json(f"{prefix}plan.json")
    assert stored["layout"] == "shards" and stored["batches"] == len(batches)
    assert sorted(stored["snapshot_shards"]) == sorted(by_shard(case.new))
    journal = bucket.get_json(KEYS.pending(case.run.run_id))
    assert journal["plan_prefix"] == prefix and journal["layout"] == "shards"


@pytest.mark.parametrize("seed", range(8))
def test_the_per_shard_diff_equals_the_whole_set_diff(
    seed: int, bucket: Bucket, tmp_path: Path
) -> None:
    case = scenario(seed, bucket)
    workdir = tmp_path / "plan"
    workdir.mkdir()

    plan = plan_audience(bucket, case.run, "aud-1", batch_size=case.batch_size, workdir=workdir)

    assert_plan_is_the_whole_set_diff(bucket, case, plan)


@pytest.mark.parametrize("seed", range(8))
def test_shards_diffed_apart_then_collected_make_the_whole_set_plan(
    seed: int, bucket: Bucket, tmp_path: Path
) -> None:
    """The DiffShards Map: each shard in its own child (own /tmp, own copy of diff.json, any
    order), then collect: the counts summed, the shards' tails cut to the fewest batches."""
    case = scenario(seed, bucket)
    planned = prepare_diff(bucket, case.run, "aud-1", batch_size=case.batch_size)
    assert isinstance(planned, DiffPlan)
    items = bucket.get_json(planned.items_key)
    assert items == [{"shard": s, "plan_id": planned.plan_id} for s in "0123456789abcdef"]
    order = [item["shard"] for item in items]
    random.Random(seed).shuffle(order)
    for shard in order:
        child = tmp_path / f"child-{shard}"
        child.mkdir()
        diff = load_diff(bucket, case.run, planned.plan_id)
        record = diff_planned_shard(bucket, case.run, diff, shard, workdir=child)
        full = [count for action in ("delete", "add") for _, count in record["batches"][action]]
        assert full == [case.batch_size] * len(full)
        for action in ("delete", "add"):
            tail = record["tails"][action]
            assert tail is None or 0 < tail[1] < case.batch_size
    assert not bucket.exists(f"{planned.prefix}plan.json")

    plan = collect_diff(
        bucket, case.run, load_diff(bucket, case.run, planned.plan_id), workdir=tmp_path
    )

    assert_plan_is_the_whole_set_diff(bucket, case, plan)


def finish(bucket: Bucket, run: Run, plan_id: str, batches: int) -> None:
    for index in range(1, batches + 1):
        bucket.put_json(f"{run.paths.plan(plan_id)}done/{index:05d}.json", {"index": index})


def test_a_legacy_snapshot_is_diffed_then_replaced_by_the_manifest(
    bucket: Bucket, tmp_path: Path
) -> None:
    rng = random.Random(7)
    old = {member(rng) for _ in range(300)}
    new = set(sorted(old)[:200]) | {member(rng) for _ in range(50)}
    bucket.s3.put_object(Bucket="state", Key=KEYS.legacy_snapshot, Body=text(old))
    run = make_run("a" * 16)
    put_validated(bucket, run, [new])
    (tmp_path / "one").mkdir()
    plan = plan_audience(bucket, run, "aud-1", batch_size=1000, workdir=tmp_path / "one")
    assert (plan.added, plan.removed, plan.unchanged) == (50, 100, 200)
    finish(bucket, run, plan.plan_id, plan.batches)
    commit_audience(bucket, run, plan.plan_id)

    assert not bucket.exists(KEYS.legacy_snapshot)
    assert committed_members(bucket) == new
    assert bucket.get_json(KEYS.snapshot)["generation"] == plan.plan_id
    assert list(bucket.list(KEYS.pending_prefix)) == []
    # The next run of the same members diffs against the manifest: nothing to send.
    again = make_run("b" * 16)
    put_validated(bucket, again, [new])
    (tmp_path / "two").mkdir()
    plan = plan_audience(bucket, again, "aud-1", batch_size=1000, workdir=tmp_path / "two")
    assert (plan.added, plan.removed, plan.unchanged, plan.batches) == (0, 0, 250, 0)


def test_a_commit_that_stops_before_the_manifest_leaves_the_old_snapshot_in_force(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    first = {member(rng) for _ in range(400)}
    second = set(sorted(first)[::2]) | {member(rng) for _ in range(100)}
    runs = [make_run("1" * 16), make_run("2" * 16)]
    plans = []
    for n, (run, members) in enumerate(zip(runs, (first, second), strict=True)):
        put_validated(bucket, run, [members])
        (tmp_path / str(n)).mkdir()
        plan = plan_audience(bucket, run, "aud-1", batch_size=100, workdir=tmp_path / str(n))
        finish(bucket, run, plan.plan_id, plan.batches)
        plans.append(plan)
        if n == 0:
            commit_audience(bucket, run, plan.plan_id)
    before = bucket.get_bytes(KEYS.snapshot)
    assert committed_members(bucket) == first

    client = bucket.s3
    real_copy = client.copy_object
    copies = 0

    def dies_on_the_fourth_copy(**kwargs: Any) -> Any:
        nonlocal copies
        copies += 1
        if copies == 4:
            raise OSError("the Lambda was stopped")
        return real_copy(**kwargs)

    stopped = Bucket("state", client)
    monkeypatch.setattr(client, "copy_object", dies_on_the_fourth_copy)
    with pytest.raises(OSError):
        commit_audience(stopped, runs[1], plans[1].plan_id)
    # Three of the new shard files were copied, but no reader can see them: the manifest is
    # the old one, every shard it names is intact, and the run's journal still says TikTok
    # may hold its changes.
    assert copies == 4
    assert bucket.get_bytes(KEYS.snapshot) == before
    assert committed_members(bucket) == first
    assert bucket.exists(KEYS.pending(runs[1].run_id))
    # A third run planned now still sees the second run's changes as possibly applied.
    third = make_run("3" * 16)
    put_validated(bucket, third, [first])
    (tmp_path / "third").mkdir()
    plan = plan_audience(bucket, third, "aud-1", batch_size=100, workdir=tmp_path / "third")
    assert plan.added == len(first - second)  # what run 2 may have deleted comes back
    assert plan.removed == len(second - first)  # what run 2 may have added goes
    bucket.delete(KEYS.pending(third.run_id))

    monkeypatch.undo()
    commit_audience(bucket, runs[1], plans[1].plan_id)  # the commit done again completes
    assert committed_members(bucket) == second
    manifest = json.loads(bucket.get_bytes(KEYS.snapshot) or b"{}")
    assert manifest["generation"] == plans[1].plan_id
    # Only the generation in force is kept.
    kept = {obj["Key"].split("/")[-2] for obj in bucket.list(KEYS.generations_prefix)}
    assert kept == {plans[1].plan_id}


def test_tmp_holds_one_shard_at_a_time(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    committed = {member(rng) for _ in range(800)}
    shards = {}
    for shard, lines in by_shard(committed).items():
        key = KEYS.generation("1111111111111111", shard)
        bucket.s3.put_object(Bucket="state", Key=key, Body=text(lines))
        shards[shard] = key
    bucket.put_json(KEYS.snapshot, {"generation": "1111111111111111", "shards": shards})
    new = set(sorted(committed)[:600]) | {member(rng) for _ in range(200)}
    run = make_run("4" * 16)
    put_validated(bucket, run, [new, set(sorted(new)[::3])])
    workdir = tmp_path / "plan"
    workdir.mkdir()
    real_diff = audience_diff.diff_shard
    seen: list[tuple[list[str], int]] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        held = [p for p in workdir.rglob("*") if p.is_file()]
        seen.append(
            (
                sorted({p.relative_to(workdir).parts[0] for p in held}),
                sum(len(p.read_bytes()) for p in held),
            )
        )
        return real_diff(*args, **kwargs)

    monkeypatch.setattr(audience_diff, "diff_shard", watched)
    plan = plan_audience(bucket, run, "aud-1", batch_size=10_000, workdir=workdir)

    assert (plan.members, plan.unchanged) == (len(new), 600)
    # Each shard's diff sees only its own scratch dir: the shards before it are gone.
    assert [dirs for dirs, _ in seen] == [[f"shard-{s}"] for s in "0123456789abcdef"]
    whole = len(text(new)) + len(text(committed))
    assert max(size for _, size in seen) < whole / 4


def test_a_member_outside_the_16_shards_stops_the_plan(bucket: Bucket, tmp_path: Path) -> None:
    # The shard loop visits 0-f only: a line of another shard must stop the run, not vanish.
    hashed = "A" + "0" * 63
    bucket.s3.put_object(
        Bucket="state", Key=KEYS.legacy_snapshot, Body=f"EMAIL_SHA256\t{hashed}\n".encode()
    )
    run = make_run("5" * 16)
    put_validated(bucket, run, [{f"EMAIL_SHA256\t{'0' * 64}"}])
    with pytest.raises(DestinationError, match="shard 'A'") as raised:
        plan_audience(bucket, run, "aud-1", batch_size=10, workdir=tmp_path)
    assert hashed not in str(raised.value)
    assert list(bucket.list(KEYS.pending_prefix)) == []


def two_runs(bucket: Bucket, tmp_path: Path) -> tuple[Run, DiffPlan, set[str]]:
    """A committed snapshot of 300 members, and a run of 250 (200 kept) planned to diff."""
    rng = random.Random(21)
    old = {member(rng) for _ in range(300)}
    first = make_run("6" * 16)
    put_validated(bucket, first, [old])
    (tmp_path / "first").mkdir()
    plan = plan_audience(bucket, first, "aud-1", batch_size=16, workdir=tmp_path / "first")
    finish(bucket, first, plan.plan_id, plan.batches)
    commit_audience(bucket, first, plan.plan_id)
    new = set(sorted(old)[:200]) | {member(rng) for _ in range(50)}
    run = make_run("7" * 16)
    put_validated(bucket, run, [new])
    diff = prepare_diff(bucket, run, "aud-1", batch_size=16)
    assert isinstance(diff, DiffPlan)
    return run, diff, new


def test_a_missing_shard_marker_stops_the_collect_and_is_never_read_as_empty(
    bucket: Bucket, tmp_path: Path
) -> None:
    run, diff, _ = two_runs(bucket, tmp_path)
    for shard in "0123456789abcdef":
        if shard != "c":  # the child of shard c died before its marker
            (tmp_path / shard).mkdir()
            diff_planned_shard(bucket, run, diff, shard, workdir=tmp_path / shard)

    with pytest.raises(DestinationError, match="shard c of the audience diff") as raised:
        collect_diff(bucket, run, diff, workdir=tmp_path)

    assert "shard-c.json" in str(raised.value) and "re-run" in str(raised.value)
    # Nothing a send or a later plan could take for a finished plan.
    assert not bucket.exists(f"{diff.prefix}manifest.json")
    assert not bucket.exists(f"{diff.prefix}plan.json")
    assert not bucket.exists(KEYS.pending(run.run_id))


def test_a_shard_child_run_again_returns_its_marker_without_diffing_or_writing(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, diff, _ = two_runs(bucket, tmp_path)
    (tmp_path / "one").mkdir()
    record = diff_planned_shard(bucket, run, diff, "a", workdir=tmp_path / "one")
    assert record["members"] > 0 and (record["batches"]["add"] or record["tails"]["add"])
    written = {o["Key"]: o["ETag"] for o in bucket.list(diff.prefix)}

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a shard with a marker was diffed again")

    monkeypatch.setattr(audience_diff, "diff_shard", never)
    (tmp_path / "two").mkdir()
    again = diff_planned_shard(bucket, run, diff, "a", workdir=tmp_path / "two")

    assert again == record
    assert {o["Key"]: o["ETag"] for o in bucket.list(diff.prefix)} == written
    assert list((tmp_path / "two").iterdir()) == []


def test_a_shard_diffed_after_the_snapshot_changed_stops_with_a_clear_error(
    bucket: Bucket, tmp_path: Path
) -> None:
    run, diff, _ = two_runs(bucket, tmp_path)
    manifest = bucket.get_json(KEYS.snapshot)
    bucket.put_json(KEYS.snapshot, manifest | {"generation": "2222222222222222"})

    with pytest.raises(DestinationError, match="changed after plan") as raised:
        diff_planned_shard(bucket, run, diff, "0", workdir=tmp_path)

    assert diff.plan_id in str(raised.value) and "re-run" in str(raised.value)
    assert not bucket.exists(diff.marker("0"))


def test_the_member_estimate_reads_counts_and_falls_back_to_sizes(
    bucket: Bucket, tmp_path: Path
) -> None:
    run, diff, new = two_runs(bucket, tmp_path)
    # validate's line counts plus the count the commit wrote into the snapshot manifest
    assert bucket.get_json(KEYS.snapshot)["members"] == 300
    assert estimated_members(bucket, run, diff) == len(new) + 300

    # A manifest of an earlier commit has no count: the shard files' sizes bound it (every
    # line is at least 77 bytes), never below the real count.
    manifest = bucket.get_json(KEYS.snapshot)
    del manifest["members"]
    bucket.put_json(KEYS.snapshot, manifest)
    run2 = make_run("8" * 16)
    put_validated(bucket, run2, [new])
    diff2 = prepare_diff(bucket, run2, "aud-1", batch_size=16)
    assert isinstance(diff2, DiffPlan)
    shortest = len(f"IDFA_SHA256\t{'0' * 64}\n")
    bound = sum(len(bucket.get_bytes(k) or b"") // shortest for k in manifest["shards"].values())
    estimate = estimated_members(bucket, run2, diff2)
    assert estimate == len(new) + bound
    assert estimate >= len(new) + 300
