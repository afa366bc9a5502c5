"""ensure_audience against the emulator: whose audience a name lookup may adopt, and creates
whose answer is lost (timeout, 5xx) never leaving two audiences of one name."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from tiktok_destination import storage
from tiktok_destination.audience import AudienceKeys, ensure_audience
from tiktok_destination.config import ResolvedTemplate
from tiktok_destination.errors import RetriableError, TikTokUnavailable
from tiktok_destination.runs import Run, Source
from tiktok_destination.storage import Bucket
from tiktok_destination.tiktok.client import RetryPolicy, TikTokClient
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
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    storage.s3_client.cache_clear()
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield Bucket(BUCKET)
    storage.s3_client.cache_clear()


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
    assert emu.calls["segment/audience/"] == 1
    registry = bucket.get_json(AudienceKeys(ADV, "VIP customers").registry)
    assert registry["audience_id"] == audiences[0]["id"]


def test_a_create_that_failed_before_taking_effect_is_sent_again(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    emu.fail_next("segment/audience/", http_status=503)
    client = client_for(emu)

    found = ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    audiences = emu.audiences(ADV)
    assert [a["id"] for a in audiences] == [found["audience_id"]]
    assert emu.calls["segment/audience/"] == 2


def test_creates_that_stay_uncertain_end_retriable_without_an_audience(
    bucket: Bucket, emu: TikTokEmulator
) -> None:
    emu.fail_next("segment/audience/", http_status=502, times=3)
    client = client_for(emu)

    with pytest.raises(TikTokUnavailable, match="looking the name up before creating") as info:
        ensure_audience(client, bucket, run_for("vip", "VIP customers"))

    assert isinstance(info.value, RetriableError)
    assert emu.audiences(ADV) == []
    assert emu.calls["segment/audience/"] == 3
    assert bucket.get_json(AudienceKeys(ADV, "VIP customers").registry) is None
