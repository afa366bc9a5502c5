"""Our client against TikTok's documented samples: the requests it builds, the answers it reads.

The samples in ``fixtures/`` come from TikTok's SDK and help pages and from production
integrations (each file names its source), never from this package, so a wrong guess in the
package fails here instead of being mirrored by a test written from the same guess.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.contract._fixtures import PREFIX, load, replay_session
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.codes import TIKTOK_CODES
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination.errors import RetriableError, TikTokRateLimited, TikTokRequestRejected
from tiktok_destination.events.build import build_event
from tiktok_destination.events.rules import normalize_event_row
from tiktok_destination.identity.hashing import hash_identifier

TOKEN = "contract-token-5e1f"
BASE_URL = "https://business-api.tiktok.com/open_api/v1.3/"


def client_for(*answers: dict[str, Any]) -> tuple[TikTokClient, Any]:
    session, replay = replay_session(*answers)
    client = TikTokClient(
        TOKEN,
        base_url=BASE_URL,
        qps=0,
        session=session,
        sleep=lambda _s: None,
        retry=RetryPolicy(max_retries=2),
    )
    return client, replay


def envelope(code: int, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": "", "request_id": f"rid-{code}", "data": data or {}}


# ---------------------------------------------------------------- hashing
@pytest.mark.parametrize("example", load("hashing")["email"], ids=lambda e: e["normalized"])
def test_email_hash_matches_the_published_example(example: dict[str, str]) -> None:
    # The fixture is read right: its hash is SHA-256 of its normalized text.
    assert hashlib.sha256(example["normalized"].encode()).hexdigest() == example["sha256"]
    assert hash_identifier("EMAIL", example["raw"]) == example["sha256"]
    assert hash_identifier("EMAIL", example["normalized"]) == example["sha256"]


def test_phone_hash_uses_the_recommended_e164_form_of_the_published_example() -> None:
    example = load("hashing")["phone"][0]
    # TikTok's published hash is of the digits without '+' (documented as also accepted)...
    published_of = example["published_sha256_is_of"]
    assert hashlib.sha256(published_of.encode()).hexdigest() == example["published_sha256"]
    assert "+" + published_of == example["normalized"]
    # ...and we hash the recommended E.164 form, '+' included.
    expected = hashlib.sha256(b"+37493828222").hexdigest()
    assert hash_identifier("PHONE", example["raw"], default_region="US") == expected
    assert hash_identifier("PHONE", example["normalized"], default_region="US") == expected


# ---------------------------------------------------------------- audiences
def test_create_audience_sends_the_documented_body_and_reads_the_documented_answer() -> None:
    sample = load("segment_audience_create")
    client, replay = client_for(sample["response"])

    audience_id = client.create_audience(
        sample["request"]["advertiser_id"], sample["request"]["custom_audience_name"]
    )

    assert audience_id == sample["response"]["data"]["audience_id"]
    sent = replay.sent[0]
    assert (sent.method, sent.path) == (sample["method"], PREFIX + sample["path"])
    assert sent.body == sample["request"]
    assert sent.headers["Access-Token"] == TOKEN
    assert sent.headers["Content-Type"] == "application/json"


def test_mapping_sends_the_documented_body() -> None:
    sample = load("segment_mapping_add")
    request = sample["request"]
    client, replay = client_for(sample["response"])

    client.map_audience(
        request["advertiser_ids"][0], request["action"], request["id_schema"], request["batch_data"]
    )

    sent = replay.sent[0]
    assert (sent.method, sent.path) == (sample["method"], PREFIX + sample["path"])
    assert sent.body == request


def test_audience_list_sends_the_documented_query_and_reads_every_item() -> None:
    sample = load("dmp_custom_audience_list")
    client, replay = client_for(sample["response"])

    items = list(client.iter_audiences(sample["query"]["advertiser_id"]))

    assert [(i["audience_id"], i["name"]) for i in items] == [
        ("123", "CUSTOM_AUDIENCE_NAME"),
        ("124", "CUSTOM_AUDIENCE_NAME1"),
    ]
    sent = replay.sent[0]
    assert (sent.method, sent.path) == (sample["method"], PREFIX + sample["path"])
    assert sent.query == sample["query"]


# ---------------------------------------------------------------- event sets
def test_offline_get_sends_the_documented_query_and_reads_event_set_list() -> None:
    sample = load("offline_get")
    client, replay = client_for(sample["response"])

    sets = client.event_sets(sample["query"]["advertiser_id"], ["7100000000000000001"])

    assert [s["event_set_id"] for s in sets] == ["7100000000000000001"]
    sent = replay.sent[0]
    assert (sent.method, sent.path) == (sample["method"], PREFIX + sample["path"])
    assert sent.query == sample["query"]


def test_offline_get_also_reads_data_list() -> None:
    sample = load("offline_get")
    data = sample["response"]["data"]
    sample["response"]["data"] = {"list": data["event_set_list"]}
    client, _ = client_for(sample["response"])

    sets = client.event_sets(sample["query"]["advertiser_id"], ["7100000000000000001"])

    assert [s["event_set_id"] for s in sets] == ["7100000000000000001"]


def test_offline_get_without_either_key_fails_clearly_naming_the_keys_seen() -> None:
    client, replay = client_for(envelope(0, {"event_sets": [], "page_info": {}}))

    with pytest.raises(TikTokRequestRejected) as info:
        client.event_sets("7000000000000000001", ["7100000000000000001"])

    text = str(info.value)
    assert "event_set_list" in text and "data.list" in text
    assert "event_sets, page_info" in text
    assert len(replay.sent) == 1  # a shape problem is not retried


# ---------------------------------------------------------------- events
def test_a_row_becomes_the_documented_event_track_body() -> None:
    sample = load("event_track")
    documented = sample["request"]
    now = datetime(2024, 5, 20, tzinfo=UTC)
    row = {
        "event": "CompletePayment",
        "event_id": "order-1001",
        "email": "JaneDoe@gmail.com",
        "phone": "+1 (657) 777-0000",
        "content_id": "SKU-1",
        "price": "19.99",
        "quantity": "2",
        "currency": "usd",
        "value": "39.98",
        "content_type": "product",
        "order_id": "ORD-9",
        "shop_id": "store-12",
        "timestamp": "2024-05-19T10:30:00Z",
    }
    normalized = normalize_event_row(
        row,
        row_number=2,
        default_region="US",
        fallback_event_set_id=documented["event_source_id"],
        now=now,
    )
    built = build_event([normalized])
    client, replay = client_for(sample["response"])

    client.track_events(documented["event_source_id"], [built.payload])

    sent = replay.sent[0]
    assert (sent.method, sent.path) == (sample["method"], PREFIX + sample["path"])
    body = sent.body
    ours = body["data"][0]
    assert ours["event_time"] == int(datetime(2024, 5, 19, 10, 30, tzinfo=UTC).timestamp())
    # TikTok takes a hash or a list of hashes; the documented sample sends lists.
    ours["user"] = {k: v if isinstance(v, list) else [v] for k, v in ours["user"].items()}
    ours["event_time"] = documented["data"][0]["event_time"]
    assert body == documented


# ---------------------------------------------------------------- throttling
@pytest.mark.parametrize("code", [40100, 40132])
def test_the_sdk_throttle_codes_are_waited_out_and_retried(code: int) -> None:
    sample = load("offline_get")
    client, replay = client_for(envelope(code), sample["response"])

    sets = client.event_sets(sample["query"]["advertiser_id"], ["7100000000000000001"])

    assert len(sets) == 1
    assert len(replay.sent) == 2
    assert client.stats.retries == 1


def test_a_throttle_code_that_never_clears_is_rate_limited() -> None:
    client, _ = client_for(envelope(40132), envelope(40132), envelope(40132))

    with pytest.raises(TikTokRateLimited):
        client.user_info()


# ---------------------------------------------------------------- the code table's sources
def _documented_codes() -> dict[int, str]:
    """Code -> the row of docs/tiktok-contract.md's "Codes" table that cites it."""
    text = (Path(__file__).parents[2] / "docs" / "tiktok-contract.md").read_text("utf-8")
    section = text.split("## Codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not line.startswith("| ") or not cells[0][:1].isdigit():
            continue
        for part in cells[0].split(","):
            low, _, high = part.strip().partition(
                "\u2013"
            )  # an en dash, as the table writes ranges
            for code in range(int(low), int(high or low) + 1):
                rows[code] = line
    return rows


def test_every_code_the_client_maps_is_cited_with_its_sdk_name_and_class() -> None:
    documented = _documented_codes()
    for code, rule in TIKTOK_CODES.items():
        row = documented.get(code)
        assert row is not None, f"code {code} is mapped but not in docs/tiktok-contract.md"
        assert f"`{rule.name}`" in row, (code, rule.name)
        assert f"`{rule.error.__name__}`" in row, (code, rule.error.__name__)
        if not issubclass(rule.error, RetriableError):
            assert rule.fix, f"fatal code {code} names no fix"
