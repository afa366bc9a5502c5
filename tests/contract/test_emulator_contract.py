"""Our emulator against TikTok's documented samples: the answers it gives.

Also the checks that keep the emulator independent of the package it tests: it imports
nothing from it, and its own tables (written from TikTok's sources) must accept everything
validate lets through, so a name or currency added to validate's lists by mistake fails here.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

import tiktok_destination_local.emulator as emulator_package
from tests.contract._fixtures import load
from tiktok_destination.adapters.tiktok.client import RetryPolicy, TikTokClient
from tiktok_destination.errors import (
    AccessBlocked,
    AdvertiserNotFound,
    ConfigurationError,
    FatalError,
    InputRejected,
    InvalidCredentials,
    MissingAdvertiserPermissions,
    OAuthError,
    RowRejected,
    TikTokRequestRejected,
)
from tiktok_destination.events.rules import (
    ISO_4217,
    TIKTOK_CURRENCIES,
    normalize_event_row,
)
from tiktok_destination.events.rules import STANDARD_EVENTS as VALIDATE_EVENTS
from tiktok_destination.runs.workflow_actions import action_for_error
from tiktok_destination_local.emulator import (
    CURRENCIES,
    SERVER_SIDE_CODES,
    STANDARD_EVENTS,
    THROTTLE_CODES,
    TikTokEmulator,
)

ADV = "7000000000000000001"
EVENT_SET = "7100000000000000001"
TOKEN = "contract-emulator-token"


@pytest.fixture
def emu() -> Iterator[TikTokEmulator]:
    with TikTokEmulator() as emulator:
        emulator.add_advertiser(ADV, "Acme")
        emulator.add_event_set(ADV, EVENT_SET, "Store purchases")
        emulator.add_token(TOKEN, [ADV])
        yield emulator


def call(emu: TikTokEmulator, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    assert emu.base_url is not None
    resp = requests.request(
        method, emu.base_url + path, headers={"Access-Token": TOKEN}, timeout=5, **kwargs
    )
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def create_audience(emu: TikTokEmulator) -> str:
    sample = load("segment_audience_create")
    sample["request"]["advertiser_id"] = ADV
    out = call(emu, "POST", sample["path"], json=sample["request"])
    assert out["code"] == 0, out
    audience_id: str = out["data"]["audience_id"]
    return audience_id


def track_sample(**event_overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = load("event_track")["request"]
    request["data"][0]["event_time"] = int(time.time()) - 3600
    request["data"][0].update(event_overrides)
    return request


# ---------------------------------------------------------------- answers per endpoint
def test_audience_create_answers_like_the_documented_sample(emu: TikTokEmulator) -> None:
    sample = load("segment_audience_create")
    sample["request"]["advertiser_id"] = ADV

    out = call(emu, "POST", sample["path"], json=sample["request"])

    assert set(out) == set(sample["response"])
    assert out["code"] == 0
    assert set(out["data"]) == set(sample["response"]["data"])
    assert isinstance(out["data"]["audience_id"], str) and out["data"]["audience_id"].isdigit()


def test_mapping_accepts_the_documented_body(emu: TikTokEmulator) -> None:
    sample = load("segment_mapping_add")
    audience_id = create_audience(emu)
    request = sample["request"]
    request["advertiser_ids"] = [ADV]
    for person in request["batch_data"]:
        for entry in person:
            entry["audience_ids"] = [audience_id]

    out = call(emu, "POST", sample["path"], json=request)

    assert out["code"] == 0, out
    assert set(out) == set(sample["response"])
    assert len(emu.audience_members(audience_id)) == 3


def test_audience_list_answers_the_documented_fields(emu: TikTokEmulator) -> None:
    sample = load("dmp_custom_audience_list")
    create_audience(emu)
    documented = sample["response"]["data"]

    out = call(emu, "GET", sample["path"], params={**sample["query"], "advertiser_id": ADV})

    assert out["code"] == 0, out
    assert set(out["data"]) == set(documented)
    assert set(out["data"]["page_info"]) == set(documented["page_info"])
    documented_item = documented["list"][0]
    for item in out["data"]["list"]:
        assert set(item) <= set(documented_item)
        for key, value in item.items():
            assert type(value) is type(documented_item[key]), key


def test_offline_get_answers_event_set_list_with_documented_fields(emu: TikTokEmulator) -> None:
    sample = load("offline_get")

    out = call(emu, "GET", sample["path"], params=sample["query"])

    assert out["code"] == 0, out
    assert set(out["data"]) == set(sample["response"]["data"])
    (event_set,) = out["data"]["event_set_list"]
    assert {"event_set_id", "name"} <= set(event_set) <= set(sample["event_set_fields"])
    assert event_set["event_set_id"] == EVENT_SET


def test_event_track_accepts_the_documented_body(emu: TikTokEmulator) -> None:
    sample = load("event_track")

    out = call(emu, "POST", sample["path"], json=track_sample())

    assert out["code"] == 0, out
    assert set(out) == set(sample["response"])
    assert [e["event_id"] for e in emu.received_events] == ["order-1001"]


# ---------------------------------------------------------------- validate vs. TikTok's tables
def test_every_event_name_validate_accepts_is_one_tiktok_accepts(emu: TikTokEmulator) -> None:
    assert VALIDATE_EVENTS <= STANDARD_EVENTS, sorted(VALIDATE_EVENTS - STANDARD_EVENTS)
    refused = {
        name: out["message"]
        for name in sorted(VALIDATE_EVENTS)
        if (out := call(emu, "POST", "event/track/", json=track_sample(event=name)))["code"]
    }
    assert refused == {}


def test_every_currency_validate_accepts_is_one_tiktok_accepts(emu: TikTokEmulator) -> None:
    assert TIKTOK_CURRENCIES == CURRENCIES
    sample = track_sample()
    refused = []
    for code in sorted(TIKTOK_CURRENCIES):
        sample["data"][0]["properties"]["currency"] = code
        if call(emu, "POST", "event/track/", json=sample)["code"]:
            refused.append(code)
    assert refused == []


def test_an_iso_currency_tiktok_does_not_list_is_a_rejected_row_not_a_failed_batch(
    emu: TikTokEmulator,
) -> None:
    unsupported = "AFN"  # ISO 4217, absent from TikTok's TTCurrency list
    assert unsupported in ISO_4217 and unsupported not in CURRENCIES
    sample = track_sample()
    sample["data"][0]["properties"]["currency"] = unsupported
    out = call(emu, "POST", "event/track/", json=sample)
    assert out["code"] == 40002
    assert "currency" in out["message"]

    row = {"event": "CompletePayment", "event_id": "o-1", "email": "a@example.com"}
    with pytest.raises(RowRejected) as info:
        normalize_event_row(
            {**row, "currency": "afn", "value": "10"},
            row_number=2,
            default_region="US",
            fallback_event_set_id=EVENT_SET,
            now=datetime.now(UTC),
        )
    assert (info.value.column, info.value.reason_code) == ("currency", "unsupported_currency")


@pytest.mark.parametrize("code", sorted(THROTTLE_CODES))
def test_the_client_retries_every_code_the_emulator_calls_throttling(
    emu: TikTokEmulator, code: int
) -> None:
    assert emu.base_url is not None
    emu.fail_next("user/info/", code=code)
    client = TikTokClient(
        TOKEN, base_url=emu.base_url, qps=0, sleep=lambda _s: None, retry=RetryPolicy()
    )

    client.user_info()

    assert client.stats.retries == 1


# ---------------------------------------------------------------- independence
# The package under test, and the local tooling around the emulator (the runner and the CLI
# import the package under test, so reaching them reaches it too).
_OUTSIDE = ("tiktok_destination", "tiktok_destination_local")


def _outside(module: str) -> bool:
    return module.split(".")[0] in _OUTSIDE and not (
        module == "tiktok_destination_local.emulator"
        or module.startswith("tiktok_destination_local.emulator.")
    )


def _imports_outside_the_emulator(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level >= 2 or (node.level == 0 and _outside(module)):
                found.append(f"{path.name}:{node.lineno} from {'.' * node.level}{module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _outside(alias.name):
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
    return found


def test_the_emulator_imports_nothing_from_the_package_it_tests() -> None:
    package_dir = Path(emulator_package.__file__).parent
    files = sorted(package_dir.rglob("*.py"))
    # the API areas are separate files; a check that saw only some of them would pass blind
    assert {p.name for p in files} >= {
        "__init__.py",
        "server.py",
        "accounts.py",
        "audiences.py",
        "events.py",
        "faults.py",
        "state.py",
        "contract.py",
    }
    offending = [hit for path in files for hit in _imports_outside_the_emulator(path)]
    assert offending == []


def test_the_import_check_would_catch_a_shared_table(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ..events import STANDARD_EVENTS\n"
        "from tiktok_destination.adapters.tiktok.client import RATE_LIMIT_CODES\n"
        "import tiktok_destination.identity.identifiers\n"
        "from tiktok_destination_local.runner import LOCAL_APP_ID\n"
        "import tiktok_destination_local.cli\n"
        "from .server import TikTokEmulator\n"
        "from .contract import ID_TYPES\n"
        "from tiktok_destination_local.emulator import ID_TYPES\n"
        "import tiktok_destination_local.emulator.server\n",
        encoding="utf-8",
    )
    assert len(_imports_outside_the_emulator(probe)) == 5


# ---------------------------------------------------------------- TikTok's codes
# Written from TikTok's SDK (tiktok/tiktok-business-api-sdk,
# python_sdk/business_api_client/tiktok_business/tiktok_code.py) and the contract's reading
# of it (docs/tiktok-contract.md, "Codes"), not from the client's table.
RETRIED_CODES = sorted(SERVER_SIDE_CODES | {40202, 51000, 51099, 61000})

FATAL_CODES = [
    # code, SDK name, error class, workflow action, a words of the fix the message names
    (
        40001,
        "PERMISSION_ERROR",
        MissingAdvertiserPermissions,
        "MissingAdvertiserPermissions",
        "Admin or Operator",
    ),
    (
        40003,
        "FORBIDDEN",
        MissingAdvertiserPermissions,
        "MissingAdvertiserPermissions",
        "approve every permission",
    ),
    (
        40125,
        "DEVELOPER_NO_PERMISSION",
        MissingAdvertiserPermissions,
        "MissingAdvertiserPermissions",
        "developer portal",
    ),
    (
        40130,
        "SCOPE_NOT_AUTHORIZED",
        MissingAdvertiserPermissions,
        "MissingAdvertiserPermissions",
        "approve every permission",
    ),
    (
        40301,
        "ADVERTISER_ROLE_ERROR",
        MissingAdvertiserPermissions,
        "MissingAdvertiserPermissions",
        "Admin or Operator",
    ),
    (40102, "ACCESS_TOKEN_EXPIRE", InvalidCredentials, "InvalidCredentials", "Re-authorize"),
    (40104, "EMPTY_ACCESS_TOKEN", InvalidCredentials, "InvalidCredentials", "Re-authorize"),
    (40105, "INVALID_ACCESS_TOKEN", InvalidCredentials, "InvalidCredentials", "Re-authorize"),
    (40106, "INVALID_CORE_USER", InvalidCredentials, "InvalidCredentials", "Re-authorize"),
    (40101, "INVALID_PARTNER", OAuthError, "InvalidCredentials", "app_id and secret"),
    (40110, "AUTH_CODE_ERROR", OAuthError, "InvalidCredentials", "app_id and secret"),
    (40113, "APP_FORBIDDEN", OAuthError, "InvalidCredentials", "app_id and secret"),
    (40300, "ADVERTISER_NOT_EXIST", AdvertiserNotFound, "AdvertiserNotFound", "advertiser_id"),
    (
        40302,
        "CUSTOMER_ADVERTISER_NOT_EXIST",
        AdvertiserNotFound,
        "AdvertiserNotFound",
        "advertiser_id",
    ),
    (
        40013,
        "SANDBOX_ADV_NOT_EXIST",
        AdvertiserNotFound,
        "AdvertiserNotFound",
        "sandbox advertiser_id",
    ),
    (41000, "BLOCKED", AccessBlocked, "AccessBlocked", "contact TikTok support"),
    (
        40061,
        "INVALID_BATCH_SIZE",
        ConfigurationError,
        "ConfigurationError",
        "lower MAPPING_BATCH_SIZE",
    ),
    (40062, "PII_NOT_HASHED", InputRejected, "InputRejected", "pre-hashed identifiers are SHA-256"),
    (
        40000,
        "INVALID_PARAMS",
        TikTokRequestRejected,
        "TikTokRequestRejected",
        "parameter is invalid",
    ),
    (40002, "PARAM_ERROR", TikTokRequestRejected, "TikTokRequestRejected", "parameter is invalid"),
    (40007, "NOT_EXIST", TikTokRequestRejected, "TikTokRequestRejected", "does not exist"),
    (
        40011,
        "ID_LIMIT_EXCEED",
        TikTokRequestRejected,
        "TikTokRequestRejected",
        "lower the batch size",
    ),
]


def contract_client(emu: TikTokEmulator) -> TikTokClient:
    assert emu.base_url is not None
    return TikTokClient(
        TOKEN, base_url=emu.base_url, qps=0, sleep=lambda _s: None, retry=RetryPolicy()
    )


@pytest.mark.parametrize("code", RETRIED_CODES)
def test_tiktoks_server_side_codes_are_retried_then_succeed(emu: TikTokEmulator, code: int) -> None:
    audience_id = create_audience(emu)
    emu.fail_next("segment/mapping/", code=code)
    client = contract_client(emu)

    client.map_audience(
        ADV, "add", ["EMAIL_SHA256"], [[{"id": "a" * 64, "audience_ids": [audience_id]}]]
    )

    assert client.stats.retries == 1
    assert emu.audience_members(audience_id) == {"EMAIL_SHA256:" + "a" * 64}


@pytest.mark.parametrize(("code", "name", "error", "action", "fix"), FATAL_CODES)
def test_tiktoks_fatal_codes_end_with_their_action_naming_the_code_and_the_fix(
    emu: TikTokEmulator,
    code: int,
    name: str,
    error: type[FatalError],
    action: str,
    fix: str,
) -> None:
    emu.fail_next("segment/mapping/", code=code)
    client = contract_client(emu)

    with pytest.raises(FatalError) as info:
        client.map_audience(
            ADV, "add", ["EMAIL_SHA256"], [[{"id": "a" * 64, "audience_ids": ["1"]}]]
        )

    assert type(info.value) is error
    assert action_for_error(error.__name__).name == action
    message = info.value.message
    assert f"code {code} {name} (" in message, message
    assert fix in message, message
    assert client.stats.calls == 1, "a fatal code is not retried"
