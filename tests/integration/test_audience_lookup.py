"""ensure_audience against the emulator: whose audience a name lookup may adopt, and creates
whose answer is lost (timeout, 5xx) never leaving two audiences of one name."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import s3_bucket_on_moto
from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.names import tiktok_visible_name
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination.audiences.ensure import ensure_audience, lost_create_waits
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.errors import (
    AudienceLimitReached,
    FatalError,
    RetriableError,
    TikTokRequestRejected,
    TikTokUnavailable,
)
from tiktok_destination.runs.layout import AudienceKeys
from tiktok_destination.runs.run import Run, Source
from tiktok_destination_local.emulator import TikTokEmulator

ADV = "7000000000000000301"
TOKEN = "lookup-token-5e1f"
BUCKET = "lookup-state"
# 67 shared characters, then two different endings: TikTok shows both as PREFIX + "..."
PREFIX67 = "Customers who bought twice in the last ninety days, all regions, v2"
assert len(PREFIX67) == 67
NAME_A = PREFIX67 + " - newsletter"
NAME_B = PREFIX67 + " - loyalty card"


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    with s3_bucket_on_moto(BUCKET) as state:
        yield state


@pytest.fixture
def emu() -> Iterator[TikTokEmulator]:
    with TikTokEmulator() as emulator:
        emulator.add_token(TOKEN, [ADV])
        yield emulator


def client_for(emu: TikTokEmulator, *, timeout: float = 5.0) -> TikTokClient:
    return TikTokClient(
        TOKEN,
        base_url=emu.base_url or "",
        qps=0,
        timeout=timeout,
        retry=RetryPolicy(max_retries=3, backoff_base=0.0, backoff_max=0.0, rate_limit_wait=0.0),
    )


def no_wait(seconds: float) -> None:
    """The lookups' sleep in tests whose TikTok answers at once."""


def run_for(template: str, audience_name: str) -> Run:
    resolved = ResolvedTemplate(
        destination="aud",
        data_template=template,
        credential="acme",
        advertiser_id=ADV,
        kind="custom_audience",
        audience_name=audience_name,
        user_id_types=("EMAIL",),
        event_set_id=None,
        event_set_id_source=None,
        test_event_code=None,
        default_phone_region=None,
    )
    return Run(
        run_id=f"run-{template}",
        execution_id="exec-1",
        kind="custom_audience",
        state_bucket=BUCKET,
        source=Source(bucket="inbox", key=f"{template}.csv", etag="e1", format="csv"),
        destination="aud",
        data_template=template,
        template=resolved.as_dict(),
        started_at="2026-01-01T00:00:00+00:00",
        options=run_options(),
    )


# ------------------------------------------------------------------ other templates' audiences
def test_lookup_never_adopts_an_audience_another_templates_registry_holds(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    # A configuration written before the visible-name rule: both templates still exist.
    client = client_for(emu)
    first = ensure_audience(client, bucket, run_for("newsletter", NAME_A))
    assert first["found_by"] == "created"
    assert [a["name"] for a in emu.audiences(ADV)] == [PREFIX67 + "..."]

    second = ensure_audience(client, bucket, run_for("loyalty", NAME_B))

    assert second["found_by"] == "created"
    assert second["audience_id"] != first["audience_id"]
    assert len(emu.audiences(ADV)) == 2
    registry = bucket.get_json(AudienceKeys(ADV, NAME_B).registry)
    assert registry["audience_id"] == second["audience_id"]
    # The first template's registry is untouched and still finds its own audience.
    again = ensure_audience(client, bucket, run_for("newsletter", NAME_A))
    assert (again["audience_id"], again["found_by"]) == (first["audience_id"], "registry")


def test_lookup_still_adopts_an_unregistered_audience_of_the_name(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    existing = client.create_audience(ADV, NAME_B)

    found = ensure_audience(client, bucket, run_for("loyalty", NAME_B))

    assert (found["audience_id"], found["found_by"]) == (existing, "name")
    assert len(emu.audiences(ADV)) == 1


# ------------------------------------------------------------------ creates whose answer is lost
def test_a_create_answered_after_the_client_timeout_makes_exactly_one_audience(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    # TikTok creates the audience but answers after the client stopped waiting.
    emu.delay_next("segment/audience/", 0.6)
    client = client_for(emu, timeout=0.2)

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    audiences = emu.audiences(ADV)
    assert [a["name"] for a in audiences] == ["VIP customers"]
    assert found["audience_id"] == audiences[0]["id"]
    assert found["created"] is True
    assert found["found_by"] == "created (answer lost, found by name)"
    assert emu.calls["segment/audience/"] == 1
    registry = bucket.get_json(AudienceKeys(ADV, "VIP customers").registry)
    assert registry["audience_id"] == audiences[0]["id"]


def test_a_create_that_failed_before_taking_effect_is_sent_again(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    emu.fail_next("segment/audience/", http_status=503)
    client = client_for(emu)

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"), sleep=no_wait)

    audiences = emu.audiences(ADV)
    assert [a["id"] for a in audiences] == [found["audience_id"]]
    assert emu.calls["segment/audience/"] == 2


def test_creates_that_stay_uncertain_end_retriable_without_an_audience(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    emu.fail_next("segment/audience/", http_status=502, times=3)
    client = client_for(emu)

    with pytest.raises(TikTokUnavailable, match="looking the name up before creating") as info:
        ensure_audience(client, bucket, run_for("vip", "VIP customers"), sleep=no_wait)

    assert isinstance(info.value, RetriableError)
    assert emu.audiences(ADV) == []
    assert emu.calls["segment/audience/"] == 3
    assert bucket.get_json(AudienceKeys(ADV, "VIP customers").registry) is None


# ------------------------------------------------------------------ the registry's audience is gone
def delete_in_tiktok(client: TikTokClient, audience_id: str) -> None:
    client.post(
        "segment/audience/",
        {"advertiser_id": ADV, "action": "delete", "delete_audience_id": audience_id},
    )


def leave_membership(bucket: Bucket, name: str) -> AudienceKeys:
    """A committed snapshot and a pending journal, as earlier runs leave them."""
    keys = AudienceKeys(ADV, name)
    bucket.put_text(keys.snapshot, "EMAIL_SHA256\t" + "a" * 64 + "\n")
    bucket.put_json(keys.pending("old-run"), {"run_id": "old-run", "plan_prefix": "x/"})
    return keys


def test_a_registered_audience_deleted_in_tiktok_is_found_again_by_name(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    first = ensure_audience(client, bucket, run_for("vip", "VIP customers"))
    keys = leave_membership(bucket, "VIP customers")
    # Someone deleted it in Ads Manager and made a new one of the same name.
    delete_in_tiktok(client, first["audience_id"])
    remade = client.create_audience(ADV, "VIP customers")

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    assert found == {
        "audience_id": remade,
        "created": False,
        "found_by": "name",
        "duplicate_audience_ids": [],
    }
    assert bucket.get_json(keys.registry)["audience_id"] == remade
    # Nothing we committed describes the adopted audience: the next plan starts from empty.
    assert not bucket.exists(keys.snapshot)
    assert not bucket.exists(keys.pending("old-run"))
    assert emu.calls["segment/audience/"] == 3  # create, delete, create: none by ensure


def test_a_registered_audience_deleted_in_tiktok_is_created_again(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    first = ensure_audience(client, bucket, run_for("vip", "VIP customers"))
    keys = leave_membership(bucket, "VIP customers")
    delete_in_tiktok(client, first["audience_id"])

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    assert found["found_by"] == "created" and found["created"] is True
    assert found["audience_id"] != first["audience_id"]
    assert [a["id"] for a in emu.audiences(ADV)] == [found["audience_id"]]
    assert bucket.get_json(keys.registry)["audience_id"] == found["audience_id"]
    assert not bucket.exists(keys.snapshot)
    assert not bucket.exists(keys.pending("old-run"))


def test_a_registered_audience_still_in_tiktok_keeps_its_membership(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    first = ensure_audience(client, bucket, run_for("vip", "VIP customers"))
    keys = leave_membership(bucket, "VIP customers")

    again = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    assert again == {
        "audience_id": first["audience_id"],
        "created": False,
        "found_by": "registry",
        "duplicate_audience_ids": [],
    }
    assert bucket.exists(keys.snapshot)
    assert bucket.exists(keys.pending("old-run"))


# ------------------------------------------------------------------ names TikTok shows
def test_a_long_name_matches_the_67_characters_and_dots_tiktok_shows(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    listed = client.create_audience(ADV, NAME_A)
    assert [a["name"] for a in emu.audiences(ADV)] == [PREFIX67 + "..."]
    keys = leave_membership(bucket, NAME_A)

    found = ensure_audience(client, bucket, run_for("newsletter", NAME_A))

    assert (found["audience_id"], found["found_by"], found["created"]) == (listed, "name", False)
    assert not bucket.exists(keys.snapshot), "an adopted audience has no snapshot of ours"
    assert bucket.get_json(keys.registry)["audience_id"] == listed


def test_several_audiences_of_one_name_adopt_the_oldest(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    made: dict[int, str] = {}
    # Created out of order, so neither listing order nor id order is creation order.
    for offset in (200, 0, 100):
        emu.clock = lambda offset=offset: 1_767_225_600.0 + offset  # type: ignore[misc]
        made[offset] = client.create_audience(ADV, "VIP customers")

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    assert (found["audience_id"], found["found_by"]) == (made[0], "name")
    assert found["duplicate_audience_ids"] == [made[100], made[200]]
    assert len(emu.audiences(ADV)) == 3, "the others are reported, never deleted"


# ------------------------------------------------------------------ the 400-audience limit
class Listing:
    """A client that lists given audiences and records creates (400 real creates are slow)."""

    timeout = 30.0

    def __init__(self, audiences: list[dict[str, str]]) -> None:
        self.audiences = audiences
        self.created: list[str] = []

    def iter_audiences(self, advertiser_id: str) -> Iterator[dict[str, str]]:
        yield from self.audiences

    def create_audience(self, advertiser_id: str, name: str) -> str:
        self.created.append(name)
        return "7300000000000000001"


def others(count: int) -> list[dict[str, str]]:
    return [
        {"audience_id": f"72000000000000{n:05d}", "name": f"Other {n}", "audience_type": "Partner"}
        for n in range(count)
    ]


def test_the_400th_audience_is_refused_before_creating(bucket: Bucket) -> None:
    client = Listing(others(400))

    with pytest.raises(AudienceLimitReached, match="already has 400 custom audiences") as info:
        ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert "so 'VIP customers' cannot be created" in info.value.message

    assert isinstance(info.value, FatalError)
    assert client.created == []
    assert bucket.get_json(AudienceKeys(ADV, "VIP customers").registry) is None


def test_399_audiences_leave_room_for_one_more(bucket: Bucket) -> None:
    client = Listing(others(399))

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert (found["audience_id"], found["found_by"]) == ("7300000000000000001", "created")
    assert client.created == ["VIP customers"]


def test_at_the_limit_an_audience_of_the_name_is_still_adopted(bucket: Bucket) -> None:
    mine = {"audience_id": "7200000000000099999", "name": "VIP customers"}
    client = Listing([*others(399), mine])

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert (found["audience_id"], found["found_by"]) == (mine["audience_id"], "name")
    assert client.created == []


def vip_listed_as(audience_type: str) -> dict[str, str]:
    return {
        "audience_id": "7200000000000088888",
        "name": "VIP customers",
        "audience_type": audience_type,
    }


@pytest.mark.parametrize("audience_type", ["Lookalike", "Customer File", "Engagement"])
def test_only_partner_audiences_of_the_name_are_adopted(bucket: Bucket, audience_type: str) -> None:
    client = Listing([vip_listed_as(audience_type)])

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert found["found_by"] == "created"
    assert client.created == ["VIP customers"]


@pytest.mark.parametrize("audience_type", ["Partner", "PARTNER"])
def test_partner_audiences_of_the_name_are_adopted(bucket: Bucket, audience_type: str) -> None:
    client = Listing([vip_listed_as(audience_type)])

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert (found["audience_id"], found["found_by"]) == ("7200000000000088888", "name")


# ------------------------------------------------------------------ which of several, and refusals
def listed(audience_id: str, create_time: str) -> dict[str, str]:
    return {"audience_id": audience_id, "name": "VIP customers", "create_time": create_time}


def test_the_oldest_is_chosen_by_create_time_then_by_id(
    bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    # Listing order and id order both disagree with creation order.
    client = Listing(
        [
            listed("7200000000000000001", "2026-01-01 00:00:02"),
            listed("7200000000000000005", "2026-01-01 00:00:00"),
            listed("7200000000000000004", "2026-01-01 00:00:00"),
            listed("7200000000000000002", "2026-01-01 00:00:01"),
        ]
    )

    with caplog.at_level("WARNING", logger="tiktok_destination.audiences.ensure"):
        found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert (found["audience_id"], found["found_by"]) == ("7200000000000000004", "name")
    others = ["7200000000000000005", "7200000000000000002", "7200000000000000001"]
    assert found["duplicate_audience_ids"] == others
    assert (
        "several TikTok audiences share this name; using the oldest, 7200000000000000004, and "
        "leaving the others (not deleted): " + ", ".join(others)
    ) in caplog.messages


def test_one_audience_of_the_name_logs_no_warning(
    bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    client = Listing([listed("7200000000000000001", "2026-01-01 00:00:02")])

    with caplog.at_level("WARNING", logger="tiktok_destination.audiences.ensure"):
        ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert caplog.messages == []


class RefusingCreate(Listing):
    def __init__(self, message: str) -> None:
        super().__init__([])
        self.message = message

    def create_audience(self, advertiser_id: str, name: str) -> str:
        self.created.append(name)
        raise TikTokRequestRejected(self.message, code=40002, request_id="req-7")


@pytest.mark.parametrize(
    "message", ["The number of custom audiences has reached the limit (400)", "Limit reached"]
)
def test_a_create_refused_for_the_limit_is_audience_limit_reached(
    bucket: Bucket, message: str
) -> None:
    client = RefusingCreate(message)

    with pytest.raises(AudienceLimitReached) as info:
        ensure_audience(client, bucket, run_for("newsletter", NAME_A))  # type: ignore[arg-type]

    error = info.value
    assert (error.code, error.request_id) == (40002, "req-7")
    assert error.message.startswith(
        f"TikTok refused to create audience '{PREFIX67}...' for advertiser {ADV}: "
    )
    assert client.created == [NAME_A]


def test_a_create_refused_for_another_reason_is_passed_on(bucket: Bucket) -> None:
    client = RefusingCreate("Invalid parameters.")

    with pytest.raises(TikTokRequestRejected) as info:
        ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert type(info.value) is TikTokRequestRejected
    assert info.value.message == "Invalid parameters."


def test_other_templates_snapshots_and_journals_do_not_hide_their_registries(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    client = client_for(emu)
    first = ensure_audience(client, bucket, run_for("newsletter", NAME_A))
    # "Other 7" sorts before NAME_A under audiences/<advertiser>/, so its snapshot and
    # journal are listed before NAME_A's registry: reading on past them must not stop.
    other = leave_membership(bucket, "Other 7")
    bucket.put_json(other.registry, {"audience_id": "7200000000000000777", "name": "Other 7"})
    assert other.prefix < AudienceKeys(ADV, NAME_A).prefix

    second = ensure_audience(client, bucket, run_for("loyalty", NAME_B))

    assert second["found_by"] == "created"
    assert second["audience_id"] != first["audience_id"]


def test_of_two_an_audience_listed_without_create_time_counts_as_oldest(
    bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    untimed = {"audience_id": "7200000000000000009", "name": "VIP customers"}
    client = Listing([listed("7200000000000000001", "2026-01-01 00:00:00"), untimed])

    with caplog.at_level("WARNING", logger="tiktok_destination.audiences.ensure"):
        found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert found["audience_id"] == "7200000000000000009"
    assert found["duplicate_audience_ids"] == ["7200000000000000001"]
    assert any("several TikTok audiences share this name" in m for m in caplog.messages)


class LosingCreate(Listing):
    """Every create's answer is lost; the name lookup after it never finds the audience."""

    def create_audience(self, advertiser_id: str, name: str) -> str:
        self.created.append(name)
        raise TikTokUnavailable("no answer", code=50002, request_id=f"req-{len(self.created)}")


def test_uncertain_creates_end_with_the_last_answers_code_and_request_id(bucket: Bucket) -> None:
    client = LosingCreate([])

    with pytest.raises(TikTokUnavailable) as info:
        ensure_audience(client, bucket, run_for("vip", "VIP customers"), sleep=no_wait)  # type: ignore[arg-type]

    assert (info.value.code, info.value.request_id) == (50002, "req-3")
    assert client.created == ["VIP customers"] * 3


class RegistryLookup(Listing):
    """Answers the registry's id lookup with ``answer`` and records its parameters."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__([])
        self.answer = answer
        self.params: list[dict[str, Any]] = []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.params.append(params)
        return self.answer


def registered(bucket: Bucket) -> None:
    bucket.put_json(
        AudienceKeys(ADV, "VIP customers").registry,
        {"advertiser_id": ADV, "audience_id": "7200000000000000042", "name": "VIP customers"},
    )


def test_the_registry_lookup_asks_for_its_one_audience(bucket: Bucket) -> None:
    registered(bucket)
    client = RegistryLookup({"list": [{"audience_id": "7200000000000000042"}]})

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert found == {
        "audience_id": "7200000000000000042",
        "created": False,
        "found_by": "registry",
        "duplicate_audience_ids": [],
    }
    assert client.params == [
        {
            "advertiser_id": ADV,
            "custom_audience_ids": ["7200000000000000042"],
            "page": 1,
            "page_size": 1,
        }
    ]


def test_an_answer_without_a_list_means_the_registered_audience_is_gone(bucket: Bucket) -> None:
    registered(bucket)
    client = RegistryLookup({})

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))  # type: ignore[arg-type]

    assert found["found_by"] == "created"
    assert client.created == ["VIP customers"]


def test_a_name_of_exactly_70_characters_is_shown_whole() -> None:
    assert tiktok_visible_name("x" * 70) == "x" * 70
    assert tiktok_visible_name("x" * 71) == "x" * 67 + "..."


# ---------------------------------------------------------- a create applied after the timeout
class LateTikTok(Listing):
    """TikTok on a fake clock: the first create's answer is lost, and the audience it made
    shows up in listings only ``lands_after`` seconds later; ``unlisted_at`` are the lookups
    (1-based) that fail as TikTok being unavailable."""

    def __init__(self, *, lands_after: float | None, unlisted_at: tuple[int, ...] = ()) -> None:
        super().__init__([])
        self.now = 0.0
        self.lands_at: float | None = None
        self.lands_after = lands_after
        self.unlisted_at = unlisted_at
        self.lookups = 0
        self.create_times: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def iter_audiences(self, advertiser_id: str) -> Iterator[dict[str, str]]:
        self.lookups += 1
        if self.lookups in self.unlisted_at:
            raise TikTokUnavailable("no answer", code=50002)
        if self.lands_at is not None and self.now >= self.lands_at:
            yield listed("7200000000000000001", "2026-01-01 00:00:00")
        yield from self.audiences

    def create_audience(self, advertiser_id: str, name: str) -> str:
        self.created.append(name)
        self.create_times.append(self.now)
        if len(self.created) == 1:
            # The client waits its whole timeout, then gives up; TikTok applies it later.
            self.now += self.timeout
            if self.lands_after is not None:
                self.lands_at = self.now + self.lands_after
            raise TikTokUnavailable("no answer (ReadTimeout)")
        self.audiences.append(listed("7200000000000000002", "2026-01-01 00:05:00"))
        return "7200000000000000002"


def test_a_create_applied_well_after_the_timeout_is_found_not_sent_again(bucket: Bucket) -> None:
    # Applied 50 s after the client gave up: a lookup right then finds nothing.
    tiktok = LateTikTok(lands_after=50.0)

    found = ensure_audience(
        tiktok,  # type: ignore[arg-type]
        bucket,
        run_for("vip", "VIP customers"),
        sleep=tiktok.sleep,
    )

    assert tiktok.created == ["VIP customers"], "a second create would make a second audience"
    assert found["audience_id"] == "7200000000000000001"
    assert found["found_by"] == "created (answer lost, found by name)"
    assert found["duplicate_audience_ids"] == []


def test_a_second_create_waits_twice_the_timeout_after_the_lost_one(bucket: Bucket) -> None:
    tiktok = LateTikTok(lands_after=None)  # the lost create never lands

    found = ensure_audience(
        tiktok,  # type: ignore[arg-type]
        bucket,
        run_for("vip", "VIP customers"),
        sleep=tiktok.sleep,
    )

    assert found["audience_id"] == "7200000000000000002"
    gave_up = tiktok.create_times[0] + tiktok.timeout
    assert tiktok.create_times[1] - gave_up >= 2 * tiktok.timeout
    assert tiktok.lookups >= 6, "looked up with backoff, not once"


def test_lookups_that_fail_inside_the_window_do_not_end_the_wait(bucket: Bucket) -> None:
    # The first lookups find TikTok unavailable; the audience lands while they are retried.
    tiktok = LateTikTok(lands_after=40.0, unlisted_at=(2, 3, 4))

    found = ensure_audience(
        tiktok,  # type: ignore[arg-type]
        bucket,
        run_for("vip", "VIP customers"),
        sleep=tiktok.sleep,
    )

    assert tiktok.created == ["VIP customers"]
    assert found["audience_id"] == "7200000000000000001"


def test_a_failed_last_lookup_is_raised_rather_than_creating_again(bucket: Bucket) -> None:
    # Lookup 1 is ensure's own; 2..8 are the window's seven: the last one fails.
    tiktok = LateTikTok(lands_after=None, unlisted_at=(8,))

    with pytest.raises(TikTokUnavailable) as info:
        ensure_audience(
            tiktok,  # type: ignore[arg-type]
            bucket,
            run_for("vip", "VIP customers"),
            sleep=tiktok.sleep,
        )

    assert info.value.code == 50002
    assert tiktok.created == ["VIP customers"]
    assert bucket.get_json(AudienceKeys(ADV, "VIP customers").registry) is None


class LandsWithTheSecondCreate(LateTikTok):
    """The lost create is applied after the window's last lookup, just before the next one."""

    def create_audience(self, advertiser_id: str, name: str) -> str:
        if self.created:
            self.lands_at = self.now
        return super().create_audience(advertiser_id, name)


def test_a_lost_create_landing_after_the_window_is_adopted_as_the_oldest(
    bucket: Bucket,
) -> None:
    tiktok = LandsWithTheSecondCreate(lands_after=None)

    found = ensure_audience(
        tiktok,  # type: ignore[arg-type]
        bucket,
        run_for("vip", "VIP customers"),
        sleep=tiktok.sleep,
    )

    assert len(tiktok.created) == 2
    assert found["audience_id"] == "7200000000000000001"
    assert found["duplicate_audience_ids"] == ["7200000000000000002"]
    registry = bucket.get_json(AudienceKeys(ADV, "VIP customers").registry)
    assert registry["audience_id"] == "7200000000000000001"


def test_a_create_tiktok_applies_after_the_client_timeout_leaves_one_audience(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    # The emulator holds the create 0.45 s before applying it; the client waits 0.3 s.
    emu.hold_next("segment/audience/", 0.45)
    client = client_for(emu, timeout=0.3)

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    time.sleep(0.3)  # past the hold: a second create, had one been sent, is applied by now
    audiences = emu.audiences(ADV)
    assert [a["id"] for a in audiences] == [found["audience_id"]]
    assert emu.calls["segment/audience/"] == 1
    assert found["found_by"] == "created (answer lost, found by name)"


@pytest.mark.parametrize("timeout", [0.3, 1.0, 30.0, 50.0])
def test_lost_create_waits_add_up_to_twice_the_timeout(timeout: float) -> None:
    waits = lost_create_waits(timeout)
    assert math.isclose(sum(waits), 2 * timeout)
    assert waits == sorted(waits[:-1]) + waits[-1:] and max(waits) <= 15.0


def test_lost_create_waits_at_the_default_timeout() -> None:
    assert lost_create_waits(30.0) == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
