"""The TikTok emulator, driven over real HTTP the way the client drives TikTok."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tiktok_destination_local.emulator import STATE_VERSION, TikTokEmulator

APP_ID = "7300000000000000009"
SECRET = "app-secret"
ADV = "7000000000000000001"
ADV2 = "7000000000000000002"
EVENT_SET = "7100000000000000001"
OTHER_SET = "7100000000000000002"
TOKEN = "token-admin"
START = 1_700_000_000.0


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Api:
    def __init__(self, base_url: str, token: str | None = TOKEN) -> None:
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        return {"Access-Token": self.token} if self.token is not None else {}

    def get_raw(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(
            self.base_url + path, params=params, headers=self._headers(), timeout=5
        )

    def post_raw(self, path: str, body: Any) -> requests.Response:
        return self.session.post(
            self.base_url + path, json=body, headers=self._headers(), timeout=5
        )

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        resp = self.get_raw(path, **params)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        assert set(out) == {"code", "message", "request_id", "data"}
        return out

    def post(self, path: str, body: Any) -> dict[str, Any]:
        resp = self.post_raw(path, body)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        assert set(out) == {"code", "message", "request_id", "data"}
        return out

    def create_audience(self, name: str, advertiser_id: str = ADV) -> str:
        out = self.post(
            "segment/audience/",
            {"advertiser_id": advertiser_id, "action": "create", "custom_audience_name": name},
        )
        assert out["code"] == 0, out
        audience_id: str = out["data"]["audience_id"]
        return audience_id


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[TikTokEmulator]:
    emulator = TikTokEmulator(clock=clock, app_id=APP_ID, secret=SECRET)
    emulator.add_advertiser(ADV, "Acme Stores")
    emulator.add_advertiser(ADV2, "Someone Else")
    emulator.add_event_set(ADV, EVENT_SET, "Store purchases")
    emulator.add_event_set(ADV2, OTHER_SET, "Not ours")
    emulator.add_token(TOKEN, [ADV])
    with emulator:
        yield emulator


@pytest.fixture
def api(emu: TikTokEmulator) -> Api:
    assert emu.base_url is not None
    return Api(emu.base_url)


def mapping(
    audience_id: str,
    hashes: list[str],
    *,
    action: str = "add",
    advertiser_id: str = ADV,
) -> dict[str, Any]:
    return {
        "advertiser_ids": [advertiser_id],
        "action": action,
        "id_schema": ["EMAIL_SHA256"],
        "batch_data": [[{"id": h, "audience_ids": [audience_id]}] for h in hashes],
    }


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "CompletePayment",
        "event_time": int(START) - 3600,
        "event_id": f"order-{i}",
        "user": {"email": sha(f"person{i}@example.com")},
        "properties": {
            "contents": [{"price": 9.5, "quantity": 2, "content_id": "sku-1"}],
            "currency": "USD",
            "value": 19.0,
        },
    }
    ev.update(overrides)
    return ev


def track(events: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_source": "offline", "event_source_id": EVENT_SET, "data": events}
    body.update(overrides)
    return body


# ---------------------------------------------------------------- transport
def test_start_gives_base_url_and_stop_closes(clock: FakeClock) -> None:
    emulator = TikTokEmulator(clock=clock)
    base = emulator.start()
    assert base.startswith("http://127.0.0.1:") and base.endswith("/open_api/v1.3/")
    assert emulator.base_url == base and emulator.port > 0
    emulator.stop()
    emulator.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "user/info/", timeout=2)


def test_paths_need_trailing_slash_unknown_404_wrong_method_405(
    api: Api, emu: TikTokEmulator
) -> None:
    no_slash = api.get_raw("user/info")
    assert no_slash.status_code == 404
    assert "/open_api/v1.3/user/info/" in no_slash.json()["message"]
    assert api.get_raw("nothing/here/").status_code == 404
    wrong = api.get_raw("segment/mapping/")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"
    assert emu.calls["user/info"] == 1
    assert ("GET", "segment/mapping/", 405) in emu.calls_log


def test_errors_are_http_200_envelopes_with_request_id(api: Api) -> None:
    first = api.get("dmp/custom_audience/list/", advertiser_id=ADV2)
    second = api.get("dmp/custom_audience/list/", advertiser_id=ADV2)
    assert first["code"] == 40300
    assert first["data"] == {}
    assert first["request_id"] != second["request_id"]
    int(first["request_id"], 16)


def test_post_requires_json_body(api: Api) -> None:
    resp = api.session.post(
        api.base_url + "segment/audience/",
        data="advertiser_id=1",
        headers={"Access-Token": TOKEN, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert resp.json()["code"] == 40002
    assert "application/json" in resp.json()["message"]


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_nan_and_infinity_are_not_json(api: Api, emu: TikTokEmulator, constant: str) -> None:
    # Python's json writes and reads these; a strict parser (TikTok's) refuses the body.
    body = json.dumps(track([event(0)])).replace("19.0", constant)
    resp = api.session.post(
        api.base_url + "event/track/",
        data=body,
        headers={"Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.json()["code"] == 40002
    assert "not valid JSON" in resp.json()["message"]
    assert emu.received_events == []


# ---------------------------------------------------------------- auth
def test_missing_unknown_and_revoked_token(api: Api, emu: TikTokEmulator) -> None:
    assert Api(api.base_url, token=None).get("user/info/")["code"] == 40104
    assert Api(api.base_url, token="nope").get("user/info/")["code"] == 40105
    assert api.get("user/info/")["code"] == 0
    emu.revoke_token(TOKEN)
    out = api.get("user/info/")
    assert out["code"] == 40105
    assert TOKEN not in out["message"]


def test_advertiser_not_authorized_or_unknown_is_40300(api: Api) -> None:
    assert api.get("dmp/custom_audience/list/", advertiser_id=ADV2)["code"] == 40300
    assert (
        api.get("dmp/custom_audience/list/", advertiser_id="7999999999999999999")["code"] == 40300
    )
    out = api.post(
        "segment/audience/",
        {"advertiser_id": ADV2, "action": "create", "custom_audience_name": "x"},
    )
    assert out["code"] == 40300


def test_analyst_can_read_but_every_write_is_40001(api: Api, emu: TikTokEmulator) -> None:
    audience_id = api.create_audience("Owned by admin")
    emu.add_token("token-analyst", [ADV], role="ANALYST")
    analyst = Api(api.base_url, token="token-analyst")
    assert analyst.get("dmp/custom_audience/list/", advertiser_id=ADV)["code"] == 0
    create = analyst.post(
        "segment/audience/",
        {"advertiser_id": ADV, "action": "create", "custom_audience_name": "x"},
    )
    assert create["code"] == 40001
    assert "Analyst" in create["message"]
    assert analyst.post("segment/mapping/", mapping(audience_id, [sha("a")]))["code"] == 40001
    assert analyst.post("event/track/", track([event()]))["code"] == 40001
    assert emu.audience_members(audience_id) == set()
    assert emu.received_events == []


def test_ids_must_be_strings(api: Api) -> None:
    out = api.post(
        "segment/audience/",
        {"advertiser_id": int(ADV), "action": "create", "custom_audience_name": "x"},
    )
    assert out["code"] == 40002
    assert "advertiser_id" in out["message"] and "string" in out["message"]


# ---------------------------------------------------------------- audiences
def test_create_list_get_and_delete_audience(api: Api, emu: TikTokEmulator) -> None:
    first = api.create_audience("VIP customers")
    second = api.create_audience("Lapsed")
    assert len(first) == 19 and first.isdigit()
    listed = api.get("dmp/custom_audience/list/", advertiser_id=ADV, page=1, page_size=1)
    assert listed["code"] == 0
    assert listed["data"]["page_info"] == {
        "page": 1,
        "page_size": 1,
        "total_number": 2,
        "total_page": 2,
    }
    item = listed["data"]["list"][0]
    assert set(item) == {
        "audience_id",
        "name",
        "audience_type",
        "cover_num",
        "is_valid",
        "is_expiring",
        "create_time",
        "expired_time",
    }
    assert item["audience_type"] == "Partner"
    assert item["is_expiring"] is False

    filtered = api.get(
        "dmp/custom_audience/list/",
        advertiser_id=ADV,
        custom_audience_ids=json.dumps([first]),
    )
    assert [a["name"] for a in filtered["data"]["list"]] == ["VIP customers"]
    assert api.get("dmp/custom_audience/list/", advertiser_id=ADV, page_size=101)["code"] == 40002

    got = api.get(
        "dmp/custom_audience/get/", advertiser_id=ADV, custom_audience_ids=f'["{second}"]'
    )
    assert got["data"]["list"][0]["audience_details"]["audience_id"] == second
    missing = api.get(
        "dmp/custom_audience/get/", advertiser_id=ADV, custom_audience_ids='["7000000000000000999"]'
    )
    assert missing["code"] == 40007

    deleted = api.post(
        "segment/audience/", {"advertiser_id": ADV, "action": "delete", "delete_audience_id": first}
    )
    assert deleted["code"] == 0
    assert [a["id"] for a in emu.audiences(ADV)] == [second]


def test_long_names_are_truncated_and_duplicates_allowed(api: Api, emu: TikTokEmulator) -> None:
    seventy = "n" * 70
    api.create_audience(seventy)
    api.create_audience("x" * 71)
    api.create_audience("Same")
    api.create_audience("Same")
    names = [a["name"] for a in emu.audiences(ADV)]
    assert names == [seventy, "x" * 67 + "...", "Same", "Same"]
    assert len(names[1]) == 70


def test_audience_limit(clock: FakeClock) -> None:
    with TikTokEmulator(clock=clock, audience_limit=2) as emulator:
        emulator.add_token(TOKEN, [ADV])
        assert emulator.base_url is not None
        api = Api(emulator.base_url)
        api.create_audience("one")
        api.create_audience("two")
        out = api.post(
            "segment/audience/",
            {"advertiser_id": ADV, "action": "create", "custom_audience_name": "three"},
        )
        assert out["code"] == 40002
        assert out["message"] == "The number of custom audiences has reached the limit (2)"
        assert len(emulator.audiences(ADV)) == 2


# ---------------------------------------------------------------- segment mapping
def test_mapping_add_and_delete_members(api: Api, emu: TikTokEmulator) -> None:
    audience_id = api.create_audience("Buyers")
    a, b = sha("a@example.com"), sha("b@example.com")
    phone = sha("+12133734253")
    body = {
        "advertiser_ids": [ADV],
        "action": "add",
        "id_schema": ["EMAIL_SHA256", "PHONE_SHA256"],
        "batch_data": [
            [
                {"id": a, "audience_ids": [audience_id]},
                {"id": phone, "audience_ids": [audience_id]},
            ],
            [{"id": b, "audience_ids": [audience_id]}, {}],
        ],
    }
    assert api.post("segment/mapping/", body)["code"] == 0
    assert emu.audience_members(audience_id) == {
        f"EMAIL_SHA256:{a}",
        f"PHONE_SHA256:{phone}",
        f"EMAIL_SHA256:{b}",
    }
    listed = api.get("dmp/custom_audience/list/", advertiser_id=ADV)
    assert listed["data"]["list"][0]["cover_num"] == 3

    assert api.post("segment/mapping/", mapping(audience_id, [a], action="delete"))["code"] == 0
    assert emu.audience_members(audience_id) == {f"PHONE_SHA256:{phone}", f"EMAIL_SHA256:{b}"}
    md5 = hashlib.md5(b"idfa", usedforsecurity=False).hexdigest()
    md5_body = {
        "advertiser_ids": [ADV],
        "action": "add",
        "id_schema": ["IDFA_MD5"],
        "batch_data": [[{"id": md5, "audience_ids": [audience_id]}]],
    }
    assert api.post("segment/mapping/", md5_body)["code"] == 0
    assert f"IDFA_MD5:{md5}" in emu.audience_members(audience_id)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"id_schema": ["EMAIL"]}, "id_schema[0]: unsupported ID type"),
        ({"id_schema": ["EMAIL_SHA256", "EMAIL_SHA256"]}, "must be distinct"),
        ({"id_schema": []}, "id_schema"),
        ({"advertiser_ids": [ADV, ADV2]}, "exactly one advertiser"),
        ({"action": "replace"}, "action"),
        ({"batch_data": []}, "batch_data"),
    ],
)
def test_mapping_rejects_malformed_request(
    api: Api, emu: TikTokEmulator, change: dict[str, Any], fragment: str
) -> None:
    audience_id = api.create_audience("Buyers")
    body = mapping(audience_id, [sha("a")])
    body.update(change)
    out = api.post("segment/mapping/", body)
    assert out["code"] == 40002
    assert fragment in out["message"]
    assert emu.audience_members(audience_id) == set()


def test_mapping_rejects_misaligned_row_and_bad_hashes(api: Api, emu: TikTokEmulator) -> None:
    audience_id = api.create_audience("Buyers")
    good = {"id": sha("a"), "audience_ids": [audience_id]}
    misaligned = {
        "advertiser_ids": [ADV],
        "action": "add",
        "id_schema": ["EMAIL_SHA256", "PHONE_SHA256"],
        "batch_data": [[good, {}], [good]],
    }
    out = api.post("segment/mapping/", misaligned)
    assert out["code"] == 40002
    assert "batch_data[1]: has 1 entries but id_schema has 2" in out["message"]

    upper = api.post("segment/mapping/", mapping(audience_id, [sha("a"), sha("b").upper()]))
    assert upper["code"] == 40002
    assert upper["message"].startswith("batch_data[1][0].id: EMAIL_SHA256 must be 64 lowercase hex")

    raw = api.post("segment/mapping/", mapping(audience_id, ["someone@example.com"]))
    assert raw["code"] == 40002
    assert "someone@example.com" not in raw["message"]

    short_md5 = {
        "advertiser_ids": [ADV],
        "action": "add",
        "id_schema": ["AAID_MD5"],
        "batch_data": [[{"id": sha("x"), "audience_ids": [audience_id]}]],
    }
    assert "32 lowercase hex" in api.post("segment/mapping/", short_md5)["message"]

    wrong_keys = mapping(audience_id, [sha("a")])
    wrong_keys["batch_data"][0][0] = {"id": sha("a")}
    assert api.post("segment/mapping/", wrong_keys)["code"] == 40002
    # nothing applied: a request is all or nothing
    assert emu.audience_members(audience_id) == set()


def test_mapping_unknown_audience_is_40007(api: Api, emu: TikTokEmulator) -> None:
    out = api.post("segment/mapping/", mapping("7000000000000000999", [sha("a")]))
    assert out["code"] == 40007
    assert "7000000000000000999" in out["message"]
    # an audience of another advertiser does not exist for this one
    emu.add_token("token-both", [ADV, ADV2])
    other = Api(api.base_url, token="token-both").create_audience("Theirs", advertiser_id=ADV2)
    assert api.post("segment/mapping/", mapping(other, [sha("a")]))["code"] == 40007


def test_mapping_too_many_ids_is_40011(api: Api, emu: TikTokEmulator) -> None:
    audience_id = api.create_audience("Buyers")
    hashes = [sha(str(i)) for i in range(10_001)]
    out = api.post("segment/mapping/", mapping(audience_id, hashes))
    assert out["code"] == 40011
    assert "10001" in out["message"] and "10000" in out["message"]
    assert api.post("segment/mapping/", mapping(audience_id, hashes[:10_000]))["code"] == 0
    assert len(emu.audience_members(audience_id)) == 10_000


# ---------------------------------------------------------------- events
def test_event_track_records_and_deduplicates(
    api: Api, emu: TikTokEmulator, clock: FakeClock
) -> None:
    out = api.post("event/track/", track([event(1), event(2)], test_event_code="TEST123"))
    assert out["code"] == 0, out
    first = emu.received_events[0]
    assert first["event_set_id"] == EVENT_SET
    assert first["event"] == "CompletePayment"
    assert first["event_id"] == "order-1"
    assert first["test_event_code"] == "TEST123"
    assert first["received_at"] == START
    assert first["properties"]["contents"][0]["content_id"] == "sku-1"

    clock.now += 47 * 3600
    assert api.post("event/track/", track([event(1)]))["code"] == 0
    assert len(emu.received_events) == 3
    assert len(emu.events_by_key) == 2
    assert emu.received_events[2]["duplicate"] is True
    # the same event_id under another event name is a different event
    assert api.post("event/track/", track([event(1, event="Purchase")]))["code"] == 0
    assert len(emu.events_by_key) == 3

    clock.now = START + 48 * 3600 + 1
    assert api.post("event/track/", track([event(1)]))["code"] == 0
    assert emu.received_events[-1]["duplicate"] is False
    assert emu.events_by_key[(EVENT_SET, "CompletePayment", "order-1")]["received_at"] == clock.now


def test_event_track_batch_size(api: Api, emu: TikTokEmulator) -> None:
    too_many = api.post("event/track/", track([event(i) for i in range(1001)]))
    assert too_many["code"] == 40002
    assert "1001" in too_many["message"]
    assert api.post("event/track/", track([]))["code"] == 40002
    assert emu.received_events == []
    assert api.post("event/track/", track([event(i) for i in range(1000)]))["code"] == 0
    assert len(emu.received_events) == 1000


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"event": "Checkout"}, "data[1].event: 'Checkout' is not a supported standard event"),
        ({"event_time": float(START)}, "data[1].event_time: must be an integer"),
        ({"event_time": str(int(START))}, "data[1].event_time: must be an integer"),
        ({"event_time": int(START) * 1000}, "data[1].event_time"),
        ({"event_id": ""}, "data[1].event_id"),
        ({"event_id": 42}, "data[1].event_id"),
        ({"user": {"email": "Person@Example.com"}}, "data[1].user.email"),
        ({"user": {"phone": [sha("x"), "+1213"]}}, "data[1].user.phone[1]"),
        ({"user": {}}, "data[1].user"),
        ({"user": {"emails": [sha("x")]}}, "unsupported key(s) emails"),
        ({"properties": {"currency": "usd"}}, "data[1].properties.currency"),
        ({"properties": {"value": "19.00"}}, "data[1].properties.value"),
        ({"properties": {"contents": {"price": 1}}}, "data[1].properties.contents"),
        ({"properties": {"contents": [{"price": "1"}]}}, "data[1].properties.contents[0].price"),
        ({"properties": {"content_type": "sku"}}, "data[1].properties.content_type"),
    ],
)
def test_one_bad_event_fails_the_whole_request(
    api: Api, emu: TikTokEmulator, overrides: dict[str, Any], fragment: str
) -> None:
    out = api.post("event/track/", track([event(0), event(1, **overrides), event(2)]))
    assert out["code"] == 40002
    assert fragment in out["message"], out["message"]
    assert "@" not in out["message"]
    assert emu.received_events == []


def test_event_track_needs_known_offline_event_set(api: Api) -> None:
    unknown = api.post("event/track/", track([event()], event_source_id="7100000000000000999"))
    assert unknown["code"] == 40002
    assert "event_source_id" in unknown["message"]
    assert api.post("event/track/", track([event()], event_source_id=OTHER_SET))["code"] == 40300
    assert api.post("event/track/", track([event()], event_source="web"))["code"] == 40002


def test_offline_get_lists_event_sets(api: Api) -> None:
    out = api.get("offline/get/", advertiser_id=ADV, event_set_ids=json.dumps([EVENT_SET]))
    assert out["data"]["event_set_list"] == [{"event_set_id": EVENT_SET, "name": "Store purchases"}]
    other = api.get("offline/get/", advertiser_id=ADV, event_set_ids=json.dumps([OTHER_SET]))
    assert other["data"]["event_set_list"] == []
    assert api.get("offline/get/", advertiser_id=ADV, event_set_ids="[7100]")["code"] == 40002


# ---------------------------------------------------------------- user and OAuth
def test_user_info_and_advertiser_get(api: Api, emu: TikTokEmulator) -> None:
    emu.add_token("token-u", [ADV, ADV2], user={"display_name": "Dana"})
    user_api = Api(api.base_url, token="token-u")
    info = user_api.get("user/info/")["data"]
    assert info["display_name"] == "Dana"
    assert info["core_user_id"].isdigit()
    assert "***" in info["email"]
    advertisers = user_api.get("oauth2/advertiser/get/", app_id=APP_ID, secret=SECRET)
    assert advertisers["data"]["list"] == [
        {"advertiser_id": ADV, "advertiser_name": "Acme Stores"},
        {"advertiser_id": ADV2, "advertiser_name": "Someone Else"},
    ]
    bad = user_api.get("oauth2/advertiser/get/", app_id=APP_ID, secret="wrong")
    assert bad["code"] == 40101


def test_oauth_exchange_is_single_use_and_expires(
    api: Api, emu: TikTokEmulator, clock: FakeClock
) -> None:
    anon = Api(api.base_url, token=None)
    code = emu.authorize([ADV2])
    bad_app = anon.post(
        "oauth2/access_token/", {"app_id": APP_ID, "secret": "nope", "auth_code": code}
    )
    assert bad_app["code"] == 40101
    out = anon.post("oauth2/access_token/", {"app_id": APP_ID, "secret": SECRET, "auth_code": code})
    assert out["code"] == 0, out
    token = out["data"]["access_token"]
    assert out["data"]["advertiser_ids"] == [ADV2]
    assert out["data"]["scope"]
    assert token != TOKEN
    granted = Api(api.base_url, token=token)
    assert granted.get("dmp/custom_audience/list/", advertiser_id=ADV2)["code"] == 0
    again = anon.post(
        "oauth2/access_token/", {"app_id": APP_ID, "secret": SECRET, "auth_code": code}
    )
    assert again["code"] == 40110

    stale = emu.authorize([ADV])
    clock.now += 3601
    expired = anon.post(
        "oauth2/access_token/", {"app_id": APP_ID, "secret": SECRET, "auth_code": stale}
    )
    assert expired["code"] == 40110
    unknown = anon.post(
        "oauth2/access_token/", {"app_id": APP_ID, "secret": SECRET, "auth_code": "made-up"}
    )
    assert unknown["code"] == 40110

    revoked = anon.post(
        "oauth2/revoke_token/", {"app_id": APP_ID, "secret": SECRET, "access_token": token}
    )
    assert revoked["code"] == 0
    assert granted.get("user/info/")["code"] == 40105


def test_portal_auth_redirects_with_code_and_state(api: Api, emu: TikTokEmulator) -> None:
    emu.portal_advertiser_ids = [ADV, ADV2]
    redirect = "https://example.org/callback?x=1"
    resp = requests.get(
        emu.portal_url,
        params={"app_id": APP_ID, "state": "s-123", "redirect_uri": redirect},
        allow_redirects=False,
        timeout=5,
    )
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.netloc == "example.org" and location.path == "/callback"
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["x"] == "1" and params["state"] == "s-123"
    assert params["auth_code"] == params["code"]
    out = Api(api.base_url, token=None).post(
        "oauth2/access_token/",
        {"app_id": APP_ID, "secret": SECRET, "auth_code": params["auth_code"]},
    )
    assert out["data"]["advertiser_ids"] == [ADV, ADV2]

    denied = requests.get(
        emu.portal_url,
        params={"app_id": APP_ID, "state": "s-9", "redirect_uri": redirect, "deny": "1"},
        allow_redirects=False,
        timeout=5,
    )
    assert denied.status_code == 302
    denied_params = parse_qs(urlsplit(denied.headers["Location"]).query)
    assert denied_params["error"] == ["access_denied"] and denied_params["state"] == ["s-9"]
    assert "auth_code" not in denied_params

    unknown_app = requests.get(
        emu.portal_url,
        params={"app_id": "999", "state": "s", "redirect_uri": redirect},
        allow_redirects=False,
        timeout=5,
    )
    assert unknown_app.status_code == 400


# ---------------------------------------------------------------- rate limit and faults
def test_qps_limit_answers_40100(api: Api, emu: TikTokEmulator, clock: FakeClock) -> None:
    emu.qps_limit = 3
    codes = [api.get("user/info/")["code"] for _ in range(4)]
    assert codes == [0, 0, 0, 40100]
    assert api.get("user/info/")["message"] == "Requests made too frequently"
    clock.now += 0.5
    assert api.get("user/info/")["code"] == 40100
    clock.now += 0.51
    assert api.get("user/info/")["code"] == 0
    assert emu.calls["user/info/"] == 7


def test_qps_limit_is_a_sliding_window_not_calendar_seconds(
    api: Api, emu: TikTokEmulator, clock: FakeClock
) -> None:
    # "10 calls in any 1-second window": ten calls late in one second and one early in the
    # next are eleven within 0.1 s; calendar-second buckets would let the eleventh in.
    emu.qps_limit = 10
    clock.now = 2000.9
    assert {api.get("user/info/")["code"] for _ in range(10)} == {0}
    clock.now = 2001.0
    assert api.get("user/info/")["code"] == 40100
    clock.now = 2001.9  # the ten are a whole second old: they no longer count
    assert api.get("user/info/")["code"] == 0
    assert [admitted for _t, admitted in emu.arrivals] == [True] * 10 + [False, True]
    assert [t for t, _admitted in emu.arrivals][-2:] == [2001.0, 2001.9]


def test_fail_next_code_status_and_clear(api: Api, emu: TikTokEmulator) -> None:
    audience_id = api.create_audience("Buyers")
    body = mapping(audience_id, [sha("a")])
    emu.fail_next("segment/mapping/", code=40202, times=2)
    assert api.post("segment/mapping/", body)["code"] == 40202
    assert api.post("segment/mapping/", body)["code"] == 40202
    assert emu.audience_members(audience_id) == set()
    assert api.post("segment/mapping/", body)["code"] == 0

    emu.fail_next("/open_api/v1.3/segment/mapping/", http_status=503)
    resp = api.post_raw("segment/mapping/", body)
    assert resp.status_code == 503
    assert api.post("segment/mapping/", body)["code"] == 0
    # a fault on one path leaves the others alone
    emu.fail_next("event/track/", code=50000)
    assert api.get("user/info/")["code"] == 0

    emu.fail_next("user/info/", code=50000, times=5)
    emu.clear_faults()
    assert api.get("user/info/")["code"] == 0
    with pytest.raises(ValueError, match="exactly one"):
        emu.fail_next("user/info/")
    assert ("POST", "segment/mapping/", 503) in emu.calls_log


def test_latency_is_added(api: Api, emu: TikTokEmulator) -> None:
    emu.latency = 0.2
    started = time.monotonic()
    assert api.get("user/info/")["code"] == 0
    assert time.monotonic() - started >= 0.2
    emu.clear_faults()
    assert emu.latency == 0.0


def test_delay_next_answers_late_after_taking_effect(api: Api, emu: TikTokEmulator) -> None:
    emu.delay_next("segment/audience/", 0.3)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{emu.base_url}segment/audience/",
            json={"advertiser_id": ADV, "action": "create", "custom_audience_name": "slow"},
            headers={"Access-Token": TOKEN},
            timeout=0.1,
        )
    # The create happened although its answer never reached the client.
    assert [a["name"] for a in emu.audiences(ADV)] == ["slow"]
    started = time.monotonic()
    assert api.get("user/info/")["code"] == 0  # only the named path, only once
    assert time.monotonic() - started < 0.3
    emu.delay_next("user/info/", 5.0)
    emu.clear_faults()
    assert api.get("user/info/")["code"] == 0
    with pytest.raises(ValueError, match="positive"):
        emu.delay_next("user/info/", 0)


def test_hold_next_applies_the_request_after_the_client_gave_up(
    api: Api, emu: TikTokEmulator
) -> None:
    emu.hold_next("segment/audience/", 0.4)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{emu.base_url}segment/audience/",
            json={"advertiser_id": ADV, "action": "create", "custom_audience_name": "late"},
            headers={"Access-Token": TOKEN},
            timeout=0.1,
        )
    # Not there when the client gave up, as TikTok applying the create later...
    assert emu.audiences(ADV) == []
    deadline = time.monotonic() + 5.0
    while not emu.audiences(ADV) and time.monotonic() < deadline:
        time.sleep(0.05)
    # ...and there afterwards, though no answer reached the client.
    assert [a["name"] for a in emu.audiences(ADV)] == ["late"]
    emu.hold_next("user/info/", 5.0)
    emu.clear_faults()
    started = time.monotonic()
    assert api.get("user/info/")["code"] == 0
    assert time.monotonic() - started < 1.0
    with pytest.raises(ValueError, match="positive"):
        emu.hold_next("user/info/", 0)


def test_calls_counter_log_and_reset(api: Api, emu: TikTokEmulator) -> None:
    api.get("user/info/")
    Api(api.base_url, token=None).get("user/info/")
    api.post("segment/audience/", {"advertiser_id": ADV, "action": "create"})
    assert emu.calls["user/info/"] == 2
    assert emu.calls["segment/audience/"] == 1
    assert emu.calls_log == [
        ("GET", "user/info/", 0),
        ("GET", "user/info/", 40104),
        ("POST", "segment/audience/", 40002),
    ]
    emu.reset_counters()
    assert not emu.calls and emu.calls_log == []


def test_state_summary_has_no_hashes(api: Api, emu: TikTokEmulator) -> None:
    audience_id = api.create_audience("Buyers")
    api.post("segment/mapping/", mapping(audience_id, [sha("a")]))
    resp = requests.get(api.base_url.replace("/open_api/v1.3/", "/_emulator/state"), timeout=5)
    state = resp.json()
    acme = next(a for a in state["advertisers"] if a["advertiser_id"] == ADV)
    assert acme["audiences"] == [{"audience_id": audience_id, "name": "Buyers", "cover_num": 1}]
    assert sha("a") not in resp.text


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_forever_prints_url_and_stops_on_ctrl_c() -> None:
    """Ctrl-C after the ready line stops the emulator cleanly: exit 0, nothing on stderr.

    The ready line is the signal, not a sleep: serve_forever prints it once the emulator
    answers and a KeyboardInterrupt is handled. Every read has a deadline, so a child that
    never gets ready fails the test instead of hanging it."""
    script = (
        "from tiktok_destination_local.emulator import serve_forever; serve_forever('127.0.0.1', 0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a CI runner may start the suite with SIGINT ignored (a
        # background job of a shell without job control), and Python then installs no
        # KeyboardInterrupt handler in the child, so Ctrl-C would be ignored, not tested.
        preexec_fn=_default_sigint,
    )
    with ThreadPoolExecutor(max_workers=1) as reader:
        try:
            assert proc.stdout is not None

            def line() -> str:
                assert proc.stdout is not None
                return reader.submit(proc.stdout.readline).result(timeout=30)

            first = line()
            assert first.startswith("TikTok emulator listening on "), first
            base = first.rsplit(" ", 1)[1].strip()
            assert base.endswith("/open_api/v1.3/")
            lines = {}
            while (text := line()) != "Press Ctrl-C to stop.\n":
                assert text, "the emulator exited before its ready line"
                key, _sep, value = text.strip().partition(": ")
                lines[key] = value
            assert len(lines) == 6, lines  # the portal and the five demo values
            resp = requests.get(
                base + "dmp/custom_audience/list/",
                params={"advertiser_id": lines["advertiser_id"]},
                headers={"Access-Token": lines["access_token"]},
                timeout=5,
            )
            assert resp.json()["code"] == 0
            proc.send_signal(signal.SIGINT)  # as Ctrl-C
            assert proc.wait(timeout=10) == 0
            assert proc.stderr is not None
            assert proc.stderr.read() == ""  # no KeyboardInterrupt traceback
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_creates_make_distinct_audiences(api: Api, emu: TikTokEmulator) -> None:
    def create(_: int) -> str:
        return Api(api.base_url).create_audience("Same name")

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(create, range(16)))
    assert len(set(ids)) == 16
    assert len(emu.audiences(ADV)) == 16
    assert emu.calls["segment/audience/"] == 16


# ---------------------------------------------------------------- persistence
def test_state_survives_save_and_load_into_a_new_emulator(
    tmp_path: Path, api: Api, emu: TikTokEmulator, clock: FakeClock
) -> None:
    audience_id = api.create_audience("Loyal customers")
    other_id = api.create_audience("Lapsed")
    hashes = [sha(f"p{i}@example.com") for i in range(3)]
    assert api.post("segment/mapping/", mapping(audience_id, hashes))["code"] == 0
    emu.set_audience_valid(other_id, False)
    emu.add_token("token-analyst", [ADV], role="ANALYST")
    emu.add_token("token-gone", [ADV])
    emu.revoke_token("token-gone")
    assert api.post("event/track/", track([event(1), event(2)]))["code"] == 0
    # per-process switches are not state: they must not follow the file
    emu.fail_next("user/info/", code=50000)

    path = tmp_path / "state" / "emulator.json"
    emu.save(path)
    assert json.loads(path.read_text())["version"] == STATE_VERSION
    assert path.stat().st_mode & 0o777 == 0o600  # the file holds the app secret and tokens
    assert [p.name for p in path.parent.iterdir()] == ["emulator.json"]  # no temp file left

    clock2 = FakeClock()
    clock2.now = START + 3600
    fresh = TikTokEmulator(clock=clock2)
    assert fresh.load(path) is True
    with fresh:
        assert fresh.base_url is not None
        api2 = Api(fresh.base_url)
        assert fresh.dump_state() == emu.dump_state()
        assert fresh.calls == Counter()

        # token validity: admin works, revoked stays revoked, analyst still read-only
        assert api2.get("user/info/")["code"] == 0
        assert Api(fresh.base_url, token="token-gone").get("user/info/")["code"] == 40105
        analyst = Api(fresh.base_url, token="token-analyst")
        assert analyst.get("dmp/custom_audience/list/", advertiser_id=ADV)["code"] == 0
        assert analyst.post("segment/mapping/", mapping(audience_id, [sha("x")]))["code"] == 40001
        # the app survived: its id and secret still authenticate
        adv = api2.get("oauth2/advertiser/get/", app_id=APP_ID, secret=SECRET)
        assert adv["code"] == 0
        assert adv["data"]["list"] == [{"advertiser_id": ADV, "advertiser_name": "Acme Stores"}]

        listed = api2.get("dmp/custom_audience/list/", advertiser_id=ADV)
        assert listed["code"] == 0
        items = {a["audience_id"]: a for a in listed["data"]["list"]}
        assert [a["audience_id"] for a in listed["data"]["list"]] == [other_id, audience_id]
        assert items[audience_id]["name"] == "Loyal customers"
        assert items[audience_id]["cover_num"] == 3
        assert items[audience_id]["is_valid"] is True
        assert items[other_id]["is_valid"] is False
        assert items[audience_id]["create_time"] == "2023-11-14 22:13:20"
        got = api2.get(
            "dmp/custom_audience/get/",
            advertiser_id=ADV,
            custom_audience_ids=json.dumps([audience_id]),
        )
        history = got["data"]["list"][0]["audience_history"]
        assert [h["action"] for h in history] == ["Create", "Update"]
        assert fresh.audience_members(audience_id) == {f"EMAIL_SHA256:{h}" for h in hashes}

        # members keep working: removing one of the loaded hashes shrinks the audience
        remove = mapping(audience_id, hashes[:1], action="delete")
        assert api2.post("segment/mapping/", remove)["code"] == 0
        assert len(fresh.audience_members(audience_id)) == 2

        # the dedup index survived: a re-sent event is a duplicate, a new one is not
        key = (EVENT_SET, "CompletePayment", "order-1")
        assert fresh.events_by_key[key] is fresh.received_events[0]
        assert api2.post("event/track/", track([event(1), event(3)]))["code"] == 0
        assert [e["duplicate"] for e in fresh.received_events] == [False, False, True, False]
        assert len(fresh.events_by_key) == 3
        assert api2.get("offline/get/", advertiser_id=ADV)["data"]["event_set_list"] == [
            {"event_set_id": EVENT_SET, "name": "Store purchases"}
        ]


def test_load_replaces_state_and_missing_file_changes_nothing(
    tmp_path: Path, api: Api, emu: TikTokEmulator
) -> None:
    kept = api.create_audience("Saved")
    path = tmp_path / "emulator.json"
    emu.save(path)
    dropped = api.create_audience("Made after the save")
    emu.add_token("token-later", [ADV])
    held = emu.received_events
    assert api.post("event/track/", track([event(1)]))["code"] == 0

    assert emu.load(tmp_path / "missing.json") is False
    assert len(emu.audiences(ADV)) == 2

    assert emu.load(path) is True
    assert [a["id"] for a in emu.audiences(ADV)] == [kept]
    assert (
        api.get(
            "dmp/custom_audience/get/", advertiser_id=ADV, custom_audience_ids=json.dumps([dropped])
        )["code"]
        == 40007
    )
    assert Api(api.base_url, token="token-later").get("user/info/")["code"] == 40105
    assert emu.received_events == [] and held is emu.received_events
    assert emu.events_by_key == {}
    # saving over an existing file replaces it
    emu.add_advertiser(ADV2, "Renamed")
    emu.save(path)
    names = {a["advertiser_id"]: a["name"] for a in json.loads(path.read_text())["advertisers"]}
    assert names[ADV2] == "Renamed"


def test_load_rejects_unknown_version_bad_json_and_malformed_state(
    tmp_path: Path, api: Api, emu: TikTokEmulator
) -> None:
    audience_id = api.create_audience("Keep me")
    before = emu.dump_state()

    future = dict(before, version=STATE_VERSION + 1)
    path = tmp_path / "emulator.json"
    path.write_text(json.dumps(future))
    with pytest.raises(ValueError, match=r"version 2 is not supported.*reads version 1") as err:
        emu.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="not a TikTokEmulator state"):
        emu.load_state({"audiences": []})

    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"not valid JSON \(line 1, column 2\)"):
        emu.load(path)

    broken = emu.dump_state()
    broken["audiences"][0]["members"] = [7]
    with pytest.raises(ValueError, match=r"audiences\[0\]\.members"):
        emu.load_state(broken)
    broken = emu.dump_state()
    broken["tokens"][0]["advertiser_ids"] = ["7999999999999999999"]
    with pytest.raises(ValueError, match=r"tokens\[0\]\.advertiser_ids"):
        emu.load_state(broken)

    # a refused load changes nothing
    assert emu.dump_state() == before
    assert emu.audience_members(audience_id) == set()
    assert api.get("user/info/")["code"] == 0


def test_persist_saves_each_change_before_answering(
    api: Api, emu: TikTokEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "emulator.json"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / ".emulator.json.x1.tmp").write_text("{")  # left by a killed save
    emu.persist(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["emulator.json"]

    audience_id = api.create_audience("Durable")
    hashes = [sha(f"p{i}@example.com") for i in range(3)]
    assert api.post("segment/mapping/", mapping(audience_id, hashes))["code"] == 0
    # No save() or stop(): what was acknowledged is already in the file, as after a kill -9.
    reloaded = TikTokEmulator()
    assert reloaded.load(path) is True
    assert reloaded.audience_members(audience_id) == {f"EMAIL_SHA256:{h}" for h in hashes}


def test_persist_undoes_a_change_it_cannot_store_and_answers_503(
    api: Api, emu: TikTokEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "emulator.json"
    emu.persist(path)
    audience_id = api.create_audience("Kept")
    on_disk = path.read_bytes()

    def disk_full(_path: Path | str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emu, "save", disk_full)
    resp = api.post_raw("segment/mapping/", mapping(audience_id, [sha("p1@example.com")]))
    assert resp.status_code == 503  # not acknowledged: the client retries it
    assert emu.audience_members(audience_id) == set()  # and not applied either
    assert path.read_bytes() == on_disk

    monkeypatch.undo()
    assert api.post("segment/mapping/", mapping(audience_id, [sha("p1@example.com")]))["code"] == 0
    assert emu.audience_members(audience_id) == {f"EMAIL_SHA256:{sha('p1@example.com')}"}
