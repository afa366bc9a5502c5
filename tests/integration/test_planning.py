"""Planning and sending on a moto bucket, without the state machine: how audience members and
offline events are cut into batches, and how a mapping batch TikTok finds too big is split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences.commit import commit_audience
from tiktok_destination.audiences.plan import plan_audience
from tiktok_destination.audiences.send import send_batch
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.errors import DestinationError, MassRemovalBlocked, TikTokRequestRejected
from tiktok_destination.events.plan import plan_events
from tiktok_destination.events.send import send_event_batch, sent_totals
from tiktok_destination.runs.layout import AudienceKeys
from tiktok_destination.runs.run import Run, Source
from tiktok_destination.validation.row_loop import REJECTS_HEADER


def stage_validated(bucket: Bucket, index_key: str, text: str) -> None:
    """Stage validate's output the way MergeRanges publishes it: an index of data files.

    The data key is content-addressed, as a new validation's keys are: another members
    file means another index, hence another plan."""
    data_key = f"{index_key}.{hashlib.sha256(text.encode()).hexdigest()[:12]}.part"
    bucket.put_text(data_key, text)
    bucket.put_json(index_key, {"files": [{"key": data_key}]})


ADV = "7000000000000000401"
SET_A = "7100000000000000401"
SET_B = "7100000000000000402"
BUCKET = "planning-state"
AUDIENCE_ID = "7200000000000000401"


@pytest.fixture(scope="module")
def moto_bucket() -> Iterator[Bucket]:
    # One moto for the module (starting it is most of a test's time); each test empties it.
    with s3_bucket_on_moto(BUCKET) as state:
        yield state


@pytest.fixture
def bucket(moto_bucket: Bucket) -> Iterator[Bucket]:
    yield moto_bucket
    moto_bucket.delete_prefix("")


def run_for(
    kind: str,
    run_id: str = "run-1",
    *,
    max_removal_share: float = 1.0,
    test_event_code: str | None = None,
) -> Run:
    resolved = ResolvedTemplate(
        destination="dest",
        data_template="tmpl",
        credential="acme",
        advertiser_id=ADV,
        kind=kind,
        audience_name="Planning audience" if kind == "custom_audience" else None,
        user_id_types=("EMAIL",),
        event_set_id=SET_A if kind == "offline_events" else None,
        event_set_id_source=None,
        test_event_code=test_event_code,
        default_phone_region=None,
        # The guard has its own tests; here a whole audience may be replaced by default.
        max_removal_share=max_removal_share,
        mass_removal_min_audience=1,
    )
    return Run(
        run_id=run_id,
        execution_id="exec-1",
        kind=kind,  # type: ignore[arg-type]
        state_bucket=BUCKET,
        source=Source(bucket="inbox", key=f"{run_id}.csv", etag="e1", format="csv"),
        destination="dest",
        data_template="tmpl",
        template=resolved.as_dict(),
        started_at="2026-01-01T00:00:00+00:00",
        options=run_options(),
    )


def digest(n: int) -> str:
    return hashlib.sha256(f"person{n}@example.com".encode()).hexdigest()


def member_lines(numbers: Sequence[int]) -> list[str]:
    return [f"EMAIL_SHA256\t{digest(n)}\n" for n in numbers]


# ------------------------------------------------------------------ audience plan
def plan_members(
    bucket: Bucket, run: Run, numbers: Sequence[int], tmp_path: Path, *, batch_size: int
) -> tuple[Any, list[dict[str, Any]]]:
    stage_validated(bucket, run.paths.members, "".join(member_lines(numbers)))
    workdir = tmp_path / run.run_id
    workdir.mkdir()
    plan = plan_audience(bucket, run, AUDIENCE_ID, batch_size=batch_size, workdir=workdir)
    return plan, bucket.get_json(plan.manifest_key)


def batch_members(bucket: Bucket, batch: dict[str, Any]) -> set[str]:
    data = bucket.get_bytes(batch["key"])
    assert data is not None
    return set(data.decode().splitlines(keepends=True))


@pytest.mark.parametrize(("members", "batches"), [(4, 1), (5, 2), (8, 2), (9, 3)])
def test_audience_adds_are_cut_at_the_batch_size(
    bucket: Bucket, tmp_path: Path, members: int, batches: int
) -> None:
    plan, manifest = plan_members(
        bucket, run_for("custom_audience"), range(members), tmp_path, batch_size=4
    )

    assert (plan.batches, plan.pending_batches, plan.added, plan.removed) == (
        batches,
        batches,
        members,
        0,
    )
    assert [b["count"] for b in manifest] == [min(4, members - 4 * i) for i in range(batches)]
    assert [b["index"] for b in manifest] == list(range(1, batches + 1))
    assert {b["action"] for b in manifest} == {"add"}
    sent = [line for b in manifest for line in sorted(batch_members(bucket, b))]
    assert sorted(sent) == sorted(member_lines(range(members)))


def test_audience_plan_deletes_the_departed_and_adds_the_new_only(
    bucket: Bucket, tmp_path: Path
) -> None:
    first = run_for("custom_audience", "run-1")
    plan, manifest = plan_members(bucket, first, range(6), tmp_path, batch_size=4)
    for batch in manifest:
        send_batch(Recorder(), bucket, first, AUDIENCE_ID, batch)
    commit_audience(bucket, first, plan.plan_id)

    second = run_for("custom_audience", "run-2")
    plan, manifest = plan_members(bucket, second, [4, 5, 6, 7, 8], tmp_path, batch_size=4)

    assert (plan.added, plan.removed, plan.unchanged, plan.members) == (3, 4, 2, 5)
    # Deletes first, then adds, each cut at the batch size.
    assert [(b["action"], b["count"]) for b in manifest] == [
        ("delete", 4),
        ("add", 3),
    ]
    assert batch_members(bucket, manifest[0]) == set(member_lines(range(4)))
    assert batch_members(bucket, manifest[1]) == set(member_lines([6, 7, 8]))


# ------------------------------------------------------------------ mapping: 40011 halving
class Recorder:
    """A client whose segment/mapping answers are scripted by the request's size."""

    def __init__(self, *, max_ids: int | None = None, code: int = 40011) -> None:
        self.max_ids = max_ids
        self.code = code
        self.requests: list[tuple[str, list[str], list[str]]] = []
        self.targets: set[tuple[str, tuple[str, ...]]] = set()

    def map_audience(
        self,
        advertiser_id: str,
        action: str,
        id_schema: Sequence[str],
        batch_data: Sequence[Sequence[dict[str, Any]]],
    ) -> dict[str, Any]:
        ids = [entry["id"] for person in batch_data for entry in person if entry]
        self.requests.append((action, list(id_schema), ids))
        self.targets.update(
            (advertiser_id, tuple(entry["audience_ids"]))
            for person in batch_data
            for entry in person
            if entry
        )
        if self.max_ids is not None and len(ids) > self.max_ids:
            raise TikTokRequestRejected("TikTok refused the batch", code=self.code)
        return {}


def mapping_batch(bucket: Bucket, run: Run, numbers: Sequence[int]) -> dict[str, Any]:
    key = f"{run.paths.plan('p1')}batches/00001-add.txt"
    bucket.put_text(key, "".join(member_lines(numbers)))
    return {"index": 1, "action": "add", "key": key, "count": len(numbers), "plan_id": "p1"}


def test_too_many_ids_40011_halves_the_batch_until_tiktok_takes_it(bucket: Bucket) -> None:
    run = run_for("custom_audience")
    client = Recorder(max_ids=2)

    result = send_batch(client, bucket, run, AUDIENCE_ID, mapping_batch(bucket, run, range(5)))  # type: ignore[arg-type]

    assert result == {"index": 1, "skipped": False, "sent": 5}
    accepted = [ids for _, _, ids in client.requests if len(ids) <= 2]
    assert [len(ids) for _, _, ids in client.requests] == [5, 2, 3, 1, 2]
    assert sorted(i for ids in accepted for i in ids) == sorted(digest(n) for n in range(5))
    assert {(action, tuple(schema)) for action, schema, _ in client.requests} == {
        ("add", ("EMAIL_SHA256",))
    }
    assert client.targets == {(ADV, (AUDIENCE_ID,))}
    done = bucket.get_json(f"{run.paths.plan('p1')}done/00001.json")
    assert done == {"index": 1, "count": 5}
    again = send_batch(client, bucket, run, AUDIENCE_ID, mapping_batch(bucket, run, range(5)))  # type: ignore[arg-type]
    assert again == {"index": 1, "skipped": True, "sent": 0}
    assert len(client.requests) == 5


def test_two_ids_too_many_are_sent_one_by_one(bucket: Bucket) -> None:
    run = run_for("custom_audience")
    client = Recorder(max_ids=1)

    send_batch(client, bucket, run, AUDIENCE_ID, mapping_batch(bucket, run, range(2)))  # type: ignore[arg-type]

    assert [len(ids) for _, _, ids in client.requests] == [2, 1, 1]


@pytest.mark.parametrize("code", [40002, 40001, None])
def test_other_rejections_are_not_split_and_stop_the_batch(
    bucket: Bucket, code: int | None
) -> None:
    run = run_for("custom_audience")
    client = Recorder(max_ids=0, code=code)  # type: ignore[arg-type]
    batch = mapping_batch(bucket, run, range(4))

    with pytest.raises(TikTokRequestRejected):
        send_batch(client, bucket, run, AUDIENCE_ID, batch)  # type: ignore[arg-type]

    assert len(client.requests) == 1, "only 40011 (too many ids) may split a batch"
    assert not bucket.exists(f"{run.paths.plan('p1')}done/00001.json")


def test_a_single_id_tiktok_finds_too_many_is_not_split_forever(bucket: Bucket) -> None:
    run = run_for("custom_audience")
    client = Recorder(max_ids=0)

    with pytest.raises(TikTokRequestRejected):
        send_batch(client, bucket, run, AUDIENCE_ID, mapping_batch(bucket, run, [1]))  # type: ignore[arg-type]

    assert len(client.requests) == 1


# ------------------------------------------------------------------ event batches
def event_row(n: int, event_set_id: str = SET_A) -> dict[str, Any]:
    """A validated row as validate writes it to events.jsonl (identifiers already hashed)."""
    return {
        "row": n,
        "event_set_id": event_set_id,
        "event": "Purchase",
        "event_id": f"order-{n:05d}",
        "event_time": 1_700_000_000,
        "user": {"email": digest(n)},
    }


def plan_rows(
    bucket: Bucket, rows: Sequence[dict[str, Any]], tmp_path: Path, *, batch_size: int
) -> tuple[Any, list[dict[str, Any]]]:
    run = run_for("offline_events")
    stage_validated(bucket, run.paths.events, "".join(json.dumps(r) + "\n" for r in rows))
    plan = plan_events(bucket, run, batch_size=batch_size, workdir=tmp_path)
    return plan, bucket.get_json(plan.manifest_key)


@pytest.mark.parametrize(("events", "counts"), [(1000, [1000]), (1001, [1000, 1])])
def test_events_are_cut_at_the_batch_size(
    bucket: Bucket, tmp_path: Path, events: int, counts: list[int]
) -> None:
    plan, manifest = plan_rows(
        bucket, [event_row(n) for n in range(2, events + 2)], tmp_path, batch_size=1000
    )

    assert [b["count"] for b in manifest] == counts
    assert (plan.batches, plan.events_built, plan.rows_in_events) == (
        len(counts),
        events,
        events,
    )
    bodies = [bucket.get_json(b["key"]) for b in manifest]
    assert [len(body["events"]) for body in bodies] == counts
    assert sum(len(body["rows"]) for body in bodies) == events


def test_a_change_of_event_set_starts_a_new_batch(bucket: Bucket, tmp_path: Path) -> None:
    rows = [event_row(n, SET_A) for n in range(2, 5)] + [event_row(n, SET_B) for n in range(5, 7)]

    plan, manifest = plan_rows(bucket, rows[::-1], tmp_path, batch_size=1000)

    assert [(b["event_set_id"], b["count"]) for b in manifest] == [(SET_A, 3), (SET_B, 2)]
    for batch in manifest:
        body = bucket.get_json(batch["key"])
        assert body["event_set_id"] == batch["event_set_id"]
        assert {e["event_id"] for e in body["events"]} <= {r["event_id"] for r in rows}
        assert all(
            r["event_set_id"] == batch["event_set_id"]
            for r in rows
            if r["event_id"] in {e["event_id"] for e in body["events"]}
        )
    assert plan.by_event == {"Purchase": 5}


def test_rows_of_one_event_stay_in_one_event_across_the_batch_size(
    bucket: Bucket, tmp_path: Path
) -> None:
    # Three rows of one order are one event (its items), so two events fit a batch of two.
    rows = [event_row(n) for n in range(2, 5)]
    for row in rows:
        # One order of one person: rows naming someone else would be event_id_conflict.
        # Items differ, so the rows are not duplicates of each other.
        row.update(
            event_id="order-shared", user={"email": digest(2)}, item={"content_id": str(row["row"])}
        )
    rows.append(event_row(5))

    plan, manifest = plan_rows(bucket, rows, tmp_path, batch_size=2)

    assert [b["count"] for b in manifest] == [2]
    assert (plan.events_built, plan.rows_in_events) == (2, 4)


def test_the_event_plan_counts_what_went_into_it(bucket: Bucket, tmp_path: Path) -> None:
    rows = []
    for n in (2, 4):
        row = event_row(n)
        row.update(item={"price": 5.0, "quantity": 2}, currency="USD", event_channel="store")
        rows += [row, dict(row, row=n + 1)]  # each re-exported: identical but for the row
    lead = event_row(6)
    lead.update(event="Lead", value=7.0, currency="EUR")
    rows.append(lead)

    plan, manifest = plan_rows(bucket, rows, tmp_path, batch_size=1000)

    assert (plan.events_built, plan.rows_in_events, plan.duplicate_rows) == (3, 3, 2)
    assert plan.by_event == {"Purchase": 2, "Lead": 1}
    assert plan.by_event_channel == {"store": 2, "(none)": 1}
    assert plan.value_method == {"sum_price_quantity": 2, "row_value": 1}
    key = run_for("offline_events").paths.rejects("chunk")
    rejects = bucket.get_bytes(key)
    assert rejects is not None
    assert rejects.decode().splitlines()[1:] == [
        "3,,duplicate_row,identical to row 2; sent once,rejected_row",
        "5,,duplicate_row,identical to row 4; sent once,rejected_row",
    ]
    head = bucket.head(key)
    assert head is not None and head["ContentType"] == "text/csv"
    body = bucket.get_json(manifest[0]["key"])
    assert sorted(body["rows"]) == [[2, 3], [4, 5], [6]]


def test_an_event_plan_without_duplicates_writes_no_rejects(bucket: Bucket, tmp_path: Path) -> None:
    plan, _ = plan_rows(bucket, [event_row(2), event_row(3)], tmp_path, batch_size=1000)

    assert plan.duplicate_rows == 0
    assert not bucket.exists(run_for("offline_events").paths.rejects("chunk"))


def test_conflict_notes_stop_at_twenty(bucket: Bucket, tmp_path: Path) -> None:
    # Ten events with three notes each: the cap cuts into the seventh event's notes.
    rows = []
    for n in range(10):
        for offset, text in ((0, "a"), (1, "b")):
            row = event_row(2 + 2 * n + offset)
            row.update(
                event_id=f"order-{n:05d}",
                user={"email": digest(2 + 2 * n)},  # one person per order
                event_channel="store" if offset else "crm",
                shop_id=text,
                description=text,
            )
            rows.append(row)

    plan, _ = plan_rows(bucket, rows, tmp_path, batch_size=1000)

    assert plan.events_built == 10
    assert len(plan.conflicts) == 20
    assert plan.conflicts[-2:] == [
        "rows 14,15 disagree on shop_id; used the one from row 14",
        "rows 14,15 disagree on description; used the one from row 14",
    ]


def test_an_event_plan_is_reused_and_counts_the_batches_already_done(
    bucket: Bucket, tmp_path: Path
) -> None:
    run = run_for("offline_events")
    plan, _ = plan_rows(bucket, [event_row(n) for n in range(2, 7)], tmp_path, batch_size=2)
    assert (plan.batches, plan.pending_batches) == (3, 3)
    bucket.put_json(f"{run.paths.plan(plan.plan_id)}done/00001.json", {"index": 1})
    # validate's output changing (rows without a time take "now") must not change the plan
    stage_validated(bucket, run.paths.events, json.dumps(event_row(99)) + "\n")

    again = plan_events(bucket, run, batch_size=2, workdir=tmp_path)

    assert (again.plan_id, again.batches, again.pending_batches) == (plan.plan_id, 3, 2)
    assert again.manifest_key == plan.manifest_key
    assert again.events_built == 5


# ------------------------------------------------------------------ sending event batches
class EventRecorder:
    """Accepts ``event/track/`` requests unless they hold an event whose id is refused."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.requests: list[list[str]] = []
        self.sent_with: set[tuple[str, str | None]] = set()

    def track_events(
        self, event_set_id: str, data: Sequence[dict[str, Any]], *, test_event_code: str | None
    ) -> dict[str, Any]:
        ids = [event["event_id"] for event in data]
        self.requests.append(ids)
        self.sent_with.add((event_set_id, test_event_code))
        if self.refused & set(ids):
            raise TikTokRequestRejected("event 3 is invalid", code=40002)
        return {}


def test_a_refused_event_batch_is_bisected_down_to_the_bad_events(
    bucket: Bucket, tmp_path: Path
) -> None:
    run = run_for("offline_events", test_event_code="TEST123")
    _, manifest = plan_rows(bucket, [event_row(n) for n in range(2, 7)], tmp_path, batch_size=10)
    client = EventRecorder({"order-00003", "order-00006"})

    result = send_event_batch(client, bucket, run, manifest[0])  # type: ignore[arg-type]

    assert result == {"index": 1, "skipped": False, "sent": 3, "rejected_events": 2}
    # Halves until each refused event stands alone; the others go through once.
    assert client.requests == [
        [f"order-{n:05d}" for n in range(2, 7)],
        ["order-00002", "order-00003"],
        ["order-00002"],
        ["order-00003"],
        ["order-00004", "order-00005", "order-00006"],
        ["order-00004"],
        ["order-00005", "order-00006"],
        ["order-00005"],
        ["order-00006"],
    ]
    rejects = bucket.get_bytes(run.paths.rejects("send-00001"))
    assert rejects is not None
    assert rejects.decode().splitlines() == [
        ",".join(REJECTS_HEADER),
        "3,,tiktok_rejected,TikTok rejected the event: event 3 is invalid,rejected_row",
        "6,,tiktok_rejected,TikTok rejected the event: event 3 is invalid,rejected_row",
    ]
    assert sent_totals(bucket, run, manifest[0]["plan_id"]) == {
        "events_sent": 3,
        "events_rejected_by_tiktok": 2,
    }
    head = bucket.head(run.paths.rejects("send-00001"))
    assert head is not None and head["ContentType"] == "text/csv"
    done = bucket.get_json(f"{run.paths.plan(manifest[0]['plan_id'])}done/00001.json")
    assert done == {"index": 1, "sent": 3, "rejected_events": 2}
    # Every half goes to the same event set, with the run's test event code.
    assert client.sent_with == {(SET_A, "TEST123")}
    # Done: a second delivery of the same batch sends nothing.
    again = send_event_batch(client, bucket, run, manifest[0])  # type: ignore[arg-type]
    assert again == {"index": 1, "skipped": True, "sent": 0}
    assert len(client.requests) == 9


def test_an_accepted_event_batch_writes_no_rejects(bucket: Bucket, tmp_path: Path) -> None:
    run = run_for("offline_events")
    _, manifest = plan_rows(bucket, [event_row(2), event_row(3)], tmp_path, batch_size=10)
    client = EventRecorder(set())

    result = send_event_batch(client, bucket, run, manifest[0])  # type: ignore[arg-type]

    assert result == {"index": 1, "skipped": False, "sent": 2, "rejected_events": 0}
    assert client.requests == [["order-00002", "order-00003"]]
    assert not bucket.exists(run.paths.rejects("send-00001"))


def test_a_missing_batch_file_is_refused_with_the_fix(bucket: Bucket) -> None:
    run = run_for("offline_events")
    batch = {"index": 1, "key": "runs/run-1/plan/p/batches/00001.json", "plan_id": "p"}

    uri = f"s3://{BUCKET}/runs/run-1/plan/p/batches/00001.json"
    with pytest.raises(TikTokRequestRejected) as info:
        send_event_batch(EventRecorder(set()), bucket, run, batch)  # type: ignore[arg-type]
    assert info.value.message == (f"batch file {uri} is missing; re-run the input to re-plan")
    with pytest.raises(TikTokRequestRejected) as info:
        send_batch(Recorder(), bucket, run, AUDIENCE_ID, dict(batch, action="add"))  # type: ignore[arg-type]
    assert info.value.message == f"batch file {uri} is missing; re-run the input to re-plan"


# ------------------------------------------------------------ audience: reuse, pending, commit
def send_all(bucket: Bucket, run: Run, manifest: list[dict[str, Any]]) -> None:
    for batch in manifest:
        send_batch(Recorder(), bucket, run, AUDIENCE_ID, batch)  # type: ignore[arg-type]


def test_an_audience_plan_is_reused_until_committed(bucket: Bucket, tmp_path: Path) -> None:
    run = run_for("custom_audience")
    plan, manifest = plan_members(bucket, run, range(6), tmp_path, batch_size=4)
    send_batch(Recorder(), bucket, run, AUDIENCE_ID, manifest[0])  # type: ignore[arg-type]
    (tmp_path / "again").mkdir()

    again = plan_audience(bucket, run, AUDIENCE_ID, batch_size=4, workdir=tmp_path / "again")

    assert (again.plan_id, again.batches, again.pending_batches) == (plan.plan_id, 2, 1)
    assert (again.added, again.members) == (6, 6)


def test_commit_needs_every_batch_then_makes_the_snapshot(bucket: Bucket, tmp_path: Path) -> None:
    run = run_for("custom_audience")
    plan, manifest = plan_members(bucket, run, range(6), tmp_path, batch_size=4)
    send_batch(Recorder(), bucket, run, AUDIENCE_ID, manifest[1])  # type: ignore[arg-type]

    with pytest.raises(DestinationError, match=r"1 of 2 batches did not finish \(first: 1\)"):
        commit_audience(bucket, run, plan.plan_id)
    keys = AudienceKeys(ADV, "Planning audience")
    assert not bucket.exists(keys.snapshot)

    send_all(bucket, run, manifest[:1])
    assert commit_audience(bucket, run, plan.plan_id) == {"committed": True, "members": 6}
    # The snapshot is a manifest of per-shard files; together they hold the plan's members.
    manifest_of_shards = bucket.get_json(keys.snapshot)
    assert manifest_of_shards is not None
    committed = "".join(
        (bucket.get_bytes(key) or b"").decode()
        for _, key in sorted(manifest_of_shards["shards"].items())
    )
    assert committed == "".join(sorted(member_lines(range(6))))
    assert not bucket.exists(keys.pending(run.run_id)), "the journal goes once committed"


def test_commit_of_an_unknown_plan_is_refused(bucket: Bucket) -> None:
    with pytest.raises(DestinationError, match="not found; re-run the input"):
        commit_audience(bucket, run_for("custom_audience"), "no-such-plan")


def test_the_same_file_after_the_audience_moved_on_is_planned_afresh(
    bucket: Bucket, tmp_path: Path
) -> None:
    # A, then B, then A's bytes again: the snapshot is back to what A's plan was made on,
    # but that plan was committed once and its done markers are stale.
    a, b = range(4), range(2, 6)
    runs = [run_for("custom_audience", f"run-{n}") for n in range(3)]
    for run, members in zip(runs, (a, b, a), strict=True):
        plan, manifest = plan_members(bucket, run, members, tmp_path, batch_size=10)
        send_all(bucket, run, manifest)
        commit_audience(bucket, run, plan.plan_id)
    (tmp_path / "b-again").mkdir()
    stage_validated(bucket, runs[1].paths.members, "".join(member_lines(b)))

    again = plan_audience(bucket, runs[1], AUDIENCE_ID, batch_size=10, workdir=tmp_path / "b-again")

    assert (again.pending_batches, again.added, again.removed) == (2, 2, 2)


def test_an_uncommitted_run_counts_as_maybe_applied(bucket: Bucket, tmp_path: Path) -> None:
    base = run_for("custom_audience", "run-base")
    plan, manifest = plan_members(bucket, base, range(4), tmp_path, batch_size=10)
    send_all(bucket, base, manifest)
    commit_audience(bucket, base, plan.plan_id)
    # A run adding 4..7 and dropping 0..1 planned (and maybe sent) but never committed.
    failed = run_for("custom_audience", "run-failed")
    plan_members(bucket, failed, [2, 3, 4, 5, 6, 7], tmp_path, batch_size=10)

    # A journal written without a plan (sorted first) must not end the reading of the others.
    bucket.put_json(AudienceKeys(ADV, "Planning audience").pending("run-empty"), {})
    newer = run_for("custom_audience", "run-newer")
    plan, manifest = plan_members(bucket, newer, [1, 2, 8], tmp_path, batch_size=10)

    # Deletes: whatever TikTok may hold (0..7) minus the new file; adds: the new file minus
    # what TikTok surely holds (2..3: the base without the failed run's deletes).
    assert batch_members(bucket, manifest[0]) == set(member_lines([0, 3, 4, 5, 6, 7]))
    assert batch_members(bucket, manifest[1]) == set(member_lines([1, 8]))
    assert (plan.removed, plan.added, plan.unchanged) == (6, 2, 1)
    commit_audience_after(bucket, newer, plan.plan_id, manifest)
    keys = AudienceKeys(ADV, "Planning audience")
    # Committing the newer run settles the failed one's journal too.
    assert [o["Key"] for o in bucket.list(keys.pending_prefix)] == []


def commit_audience_after(
    bucket: Bucket, run: Run, plan_id: str, manifest: list[dict[str, Any]]
) -> None:
    send_all(bucket, run, manifest)
    commit_audience(bucket, run, plan_id)


def test_a_blocked_plan_names_the_audience_and_the_way_out(bucket: Bucket, tmp_path: Path) -> None:
    base = run_for("custom_audience", "run-base")
    plan, manifest = plan_members(bucket, base, range(4), tmp_path, batch_size=10)
    commit_audience_after(bucket, base, plan.plan_id, manifest)
    shrink = run_for("custom_audience", "run-shrink", max_removal_share=0.5)

    with pytest.raises(MassRemovalBlocked) as info:
        plan_members(bucket, shrink, [0], tmp_path, batch_size=10)

    message = info.value.message
    assert message.startswith(f"audience 'Planning audience' (advertiser {ADV}): ")
    assert "current size 4, would remove 3 (75.0%), would add 0" in message
    assert message.endswith(
        '"allow_mass_removal": true, or raise max_removal_share for this data template'
    )


def test_sent_totals_add_up_every_done_marker(bucket: Bucket) -> None:
    run = run_for("offline_events")
    done = f"{run.paths.plan('p1')}done/"
    bucket.put_json(f"{done}00001.json", {"index": 1, "sent": 5, "rejected_events": 1})
    bucket.put_json(f"{done}00002.json", {"index": 2, "sent": 7, "rejected_events": 2})
    # a marker without counts (a skipped batch) adds nothing
    bucket.put_json(f"{done}00003.json", {"index": 3})

    assert sent_totals(bucket, run, "p1") == {"events_sent": 12, "events_rejected_by_tiktok": 3}


def test_another_batch_size_makes_another_event_plan(bucket: Bucket, tmp_path: Path) -> None:
    run = run_for("offline_events")
    first, _ = plan_rows(bucket, [event_row(n) for n in range(2, 7)], tmp_path, batch_size=2)

    other = plan_events(bucket, run, batch_size=3, workdir=tmp_path)

    assert other.plan_id != first.plan_id
    assert (other.batches, other.pending_batches) == (2, 2)


def test_a_new_members_file_makes_a_new_audience_plan(bucket: Bucket, tmp_path: Path) -> None:
    run = run_for("custom_audience")
    first, _ = plan_members(bucket, run, range(4), tmp_path, batch_size=10)
    stage_validated(bucket, run.paths.members, "".join(member_lines(range(6))))
    (tmp_path / "again").mkdir()

    again = plan_audience(bucket, run, AUDIENCE_ID, batch_size=10, workdir=tmp_path / "again")

    assert again.plan_id != first.plan_id
    assert (again.added, again.members) == (6, 6)
