"""The three starts (S3 drop, schedule, console) and an OAuth-authorized run, end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import requests

from tests.conftest import ADVERTISER, CONFIG, TOKEN, write_csv
from tiktok_destination.config.settings import load_settings
from tiktok_destination.oauth.link import authorization_link
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import INBOX_BUCKET, LocalDestination

pytestmark = pytest.mark.e2e
REDIRECT_URI = "https://callback.example.com/"


def emails(n: int, start: int = 0) -> list[str]:
    return [f"sched{i}@example.com" for i in range(start, start + n)]


def expected(addresses: list[str]) -> set[str]:
    # The addresses are already normalized (lowercase), so plain SHA-256 is the hash.
    return {"EMAIL_SHA256:" + hashlib.sha256(a.encode()).hexdigest() for a in addresses}


def put_export(tmp_path: Path, key: str, addresses: list[str]) -> None:
    path = write_csv(tmp_path / Path(key).name, "email", addresses)
    boto3.client("s3").upload_file(str(path), INBOX_BUCKET, key)


def members(emu: TikTokEmulator) -> set[str]:
    (audience,) = emu.audiences(ADVERTISER)
    return set(audience["members"])


def test_schedule_sends_the_newest_object_under_the_prefix(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    put_export(tmp_path, "exports/vip/2026-11-23.csv", emails(3))
    put_export(tmp_path, "exports/vip/2026-11-24.csv", emails(5, start=10))
    # The shape EventBridge Scheduler sends (template.yaml's Schedule target input).
    result = local.start(
        {
            "orchestration": {
                "destination": "acme_audiences",
                "data_template": "vip",
                "source_prefix": "exports/vip/",
            }
        }
    )
    assert result.succeeded, result.cause
    assert members(emulator) == expected(emails(5, start=10))


def test_schedule_by_orchestration_name_from_the_config(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    local.put_config(
        CONFIG
        + """
[orchestrations.nightly_vip]
destination = "acme_audiences"
data_template = "vip"
source_prefix = "exports/nightly/"
schedule = "cron(0 6 * * ? *)"
"""
    )
    put_export(tmp_path, "exports/nightly/today.csv", emails(4))
    result = local.start({"orchestration": "nightly_vip"})
    assert result.succeeded, result.cause
    assert members(emulator) == expected(emails(4))


def test_console_start_with_bucket_and_key(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    put_export(tmp_path, "manual/list.csv", emails(2))
    result = local.start(
        {
            "bucket": INBOX_BUCKET,
            "key": "manual/list.csv",
            "destination": "acme_audiences",
            "data_template": "vip",
        }
    )
    assert result.succeeded, result.cause
    assert members(emulator) == expected(emails(2))


def test_unknown_start_shape_fails_with_configuration_action(local: LocalDestination) -> None:
    result = local.start({"hello": "world"})
    assert result.status == "FAILED"
    assert result.error == "ConfigurationError"
    assert "execution input" in (result.cause or "")


def test_oauth_round_trip_then_a_run_uses_the_new_token(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    state_key = "k" * 64
    local.put_app("local-app", "local-app-secret", state_key=state_key)
    # The old token stops working: only a token from this authorization can succeed.
    emulator.revoke_token(TOKEN)
    link = authorization_link(load_settings(), "acme", REDIRECT_URI, portal_url=emulator.portal_url)
    portal = requests.get(link, allow_redirects=False, timeout=5)
    assert portal.status_code == 302
    query = dict(parse_qsl(urlsplit(portal.headers["Location"]).query))
    # TikTok redirects the browser to the Function URL; invoke the deployed function.
    answer = boto3.client("lambda").invoke(
        FunctionName="tiktok-destination-OAuthFunction",
        Payload=json.dumps({"rawPath": "/", "queryStringParameters": query}).encode(),
    )
    page = json.loads(answer["Payload"].read())
    assert page["statusCode"] == 200, page["body"]
    assert ADVERTISER in page["body"]

    path = write_csv(tmp_path / "after-oauth.csv", "email", emails(3))
    result = local.run_file(path, "acme_audiences", "vip")
    assert result.succeeded, result.cause
    assert members(emulator) == expected(emails(3))
