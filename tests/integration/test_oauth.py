"""Advertiser authorization end to end: link -> emulated TikTok consent page -> callback.

Secrets Manager and S3 are moto; TikTok is the real in-process emulator; the callback is
the deployed Lambda handler (``functions/oauth/app.py``) called with a Function URL event.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest
import requests
from moto import mock_aws

from tiktok_destination.adapters import secrets
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.config.settings import Settings, load_settings
from tiktok_destination.errors import OAuthError
from tiktok_destination.oauth.link import (
    AUTH_URL,
    authorization_link,
    cli_auth_link,
    portal_url_for,
)
from tiktok_destination.oauth.state import _b64decode, _b64encode, _mac, sign_state, verify_state
from tiktok_destination.runs.layout import USED_STATE_PREFIX
from tiktok_destination_local.emulator import TikTokEmulator

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "oauth-test-state"
PREFIX = "tdtest/"
APP_ID = "7300000000000000042"
APP_SECRET = "app-secret-5c1d9e7f2a"
STATE_KEY = "8f" * 32
REDIRECT_URI = "https://abc123.lambda-url.us-east-1.on.aws/"
ADV_1 = "7000000000000000101"
ADV_2 = "7000000000000000102"
ADV_1_NAME = "Acme <Shoes> & Co"


def _load_handler_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "oauth_function_app", ROOT / "functions" / "oauth" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


APP = _load_handler_module()


@dataclass
class FakeContext:
    function_name: str = "OAuthFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:OAuthFunction"
    aws_request_id: str = "req-1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[TikTokEmulator]:
    emu = TikTokEmulator(portal_advertiser_ids=[ADV_1, ADV_2])
    emu.set_app(APP_ID, APP_SECRET, redirect_uri=REDIRECT_URI)
    emu.add_advertiser(ADV_1, ADV_1_NAME)
    emu.add_advertiser(ADV_2, "Acme Outlet")
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, emulator: TikTokEmulator) -> Iterator[Settings]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "STATE_BUCKET": BUCKET,
        "SECRET_PREFIX": PREFIX,
        "TIKTOK_BASE_URL": emulator.base_url or "",
        "POWERTOOLS_SERVICE_NAME": "tiktok-destination-oauth",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        secrets.clear_cache()
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("secretsmanager").create_secret(
            Name=f"{PREFIX}app",
            SecretString=json.dumps(
                {"app_id": APP_ID, "secret": APP_SECRET, "state_key": STATE_KEY}
            ),
        )
        yield load_settings()
        secrets.clear_cache()


def _consent(emu: TikTokEmulator, link: str, *, deny: bool = False) -> dict[str, str]:
    """What the user's browser does: open the link, get redirected; answer the redirect query."""
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == emu.portal_url
    params = dict(parse_qsl(parts.query))
    assert params["redirect_uri"] == REDIRECT_URI
    if deny:
        params["deny"] = "1"
    resp = requests.get(emu.portal_url, params=params, allow_redirects=False, timeout=5)
    assert resp.status_code == 302, resp.text
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return dict(parse_qsl(location.query))


def _callback(query: dict[str, str] | None, raw_path: str = "/") -> dict[str, Any]:
    event = {"rawPath": raw_path, "queryStringParameters": query, "requestContext": {}}
    result: dict[str, Any] = APP.lambda_handler(event, FakeContext())
    return result


def function_url_event(query: dict[str, str], raw_path: str = "/") -> dict[str, Any]:
    """A Function URL request as Lambda delivers it (payload format 2.0), all fields set."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": urlencode(query),
        "cookies": ["tt_lang=en"],
        "headers": {"host": "abc123.lambda-url.us-east-1.on.aws", "user-agent": "Mozilla/5.0"},
        "queryStringParameters": query,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Mozilla/5.0",
            },
            "requestId": "d1c8e0a2-4f5b-4c1e-9a7e-2b3c4d5e6f70",
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:06:00:00 +0000",
            "timeEpoch": 1795500000000,
        },
        "isBase64Encoded": False,
    }


def _link(settings: Settings, emu: TikTokEmulator, credential: str, **kw: Any) -> str:
    return authorization_link(settings, credential, REDIRECT_URI, portal_url=emu.portal_url, **kw)


def _credential_secret(settings: Settings, credential: str) -> dict[str, Any] | None:
    client = boto3.client("secretsmanager")
    try:
        raw = client.get_secret_value(SecretId=settings.credential_secret_name(credential))
    except client.exceptions.ResourceNotFoundException:
        return None
    value: dict[str, Any] = json.loads(raw["SecretString"])
    return value


def _credential_secret_names() -> list[str]:
    listed = boto3.client("secretsmanager").list_secrets()["SecretList"]
    return sorted(s["Name"] for s in listed if s["Name"] != f"{PREFIX}app")


def _used_states() -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=USED_STATE_PREFIX)
    return [o["Key"] for o in listed.get("Contents", [])]


def _assert_page_clean(resp: dict[str, Any], *secret_values: str) -> str:
    assert resp["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert resp["headers"]["Cache-Control"] == "no-store"
    body: str = resp["body"]
    for value in (APP_SECRET, STATE_KEY, *secret_values):
        assert value not in body
    return body


# ---------------------------------------------------------------- round trip
def test_round_trip_stores_a_working_token(aws: Settings, emulator: TikTokEmulator) -> None:
    text = cli_auth_link("acme", REDIRECT_URI, aws)
    link = next(line.strip() for line in text.splitlines() if "/portal/auth?" in line)
    assert f"Redirect URI: {REDIRECT_URI}" in text
    assert "Expires:" in text and "Admin or" in text
    assert f"{PREFIX}credentials/acme" in text
    assert APP_SECRET not in text and STATE_KEY not in text

    query = _consent(emulator, link)
    auth_code = query["auth_code"]
    resp = _callback(query)

    assert resp["statusCode"] == 200, resp["body"]
    stored = _credential_secret(aws, "acme")
    assert stored is not None
    token = stored["access_token"]
    body = _assert_page_clean(resp, token, auth_code)
    assert "TikTok authorization complete" in body
    assert "<code>acme</code>" in body
    assert ADV_1 in body and ADV_2 in body
    assert "Acme &lt;Shoes&gt; &amp; Co" in body and ADV_1_NAME not in body
    assert "2 advertiser accounts" in body

    assert stored["advertiser_ids"] == [ADV_1, ADV_2]
    assert stored["credential"] == "acme"
    assert stored["scope"] == [1, 2, 3, 4, 5, 6]
    assert datetime.fromisoformat(stored["authorized_at"]).tzinfo is not None
    assert set(stored) == {"access_token", "advertiser_ids", "scope", "authorized_at", "credential"}
    assert auth_code not in json.dumps(stored)

    # The token is real: TikTok knows the user and the advertisers behind it.
    with TikTokClient(token, base_url=aws.tiktok_base_url) as client:
        assert client.user_info()["display_name"]
        listed = client.authorized_advertisers(APP_ID, APP_SECRET)
    assert [a["advertiser_id"] for a in listed] == [ADV_1, ADV_2]
    # ... and the workflow steps read it through the (cleared) Parameters cache.
    assert secrets.load_access_token(aws, "acme") == token
    assert len(_used_states()) == 1


def test_a_full_function_url_event_is_parsed(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    resp = APP.lambda_handler(function_url_event(query), FakeContext())
    assert resp["statusCode"] == 200, resp["body"]
    assert _credential_secret(aws, "acme") is not None
    # Any other path (the browser's favicon request) is not an authorization attempt.
    other = APP.lambda_handler(function_url_event({}, "/favicon.ico"), FakeContext())
    assert other["statusCode"] == 404


def test_reauthorizing_replaces_the_token_in_place(aws: Settings, emulator: TikTokEmulator) -> None:
    sm = boto3.client("secretsmanager")
    assert _callback(_consent(emulator, _link(aws, emulator, "acme")))["statusCode"] == 200
    first = _credential_secret(aws, "acme")
    assert first is not None
    assert secrets.load_access_token(aws, "acme") == first["access_token"]  # now cached
    arn = sm.describe_secret(SecretId=f"{PREFIX}credentials/acme")["ARN"]

    resp = _callback(_consent(emulator, _link(aws, emulator, "acme")))

    assert resp["statusCode"] == 200
    second = _credential_secret(aws, "acme")
    assert second is not None
    assert second["access_token"] != first["access_token"]
    assert _credential_secret_names() == [f"{PREFIX}credentials/acme"]
    assert sm.describe_secret(SecretId=f"{PREFIX}credentials/acme")["ARN"] == arn
    assert secrets.load_access_token(aws, "acme") == second["access_token"]
    _assert_page_clean(resp, first["access_token"], second["access_token"])


# ---------------------------------------------------------------- refusals
def test_tampered_state_is_refused_and_nothing_stored(
    aws: Settings, emulator: TikTokEmulator
) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    payload, signature = query["state"].split(".")
    claims = json.loads(_b64decode(payload))
    claims["c"] = "victim"  # point the grant at another credential, keep the signature
    forged = dict(query, state=_b64encode(json.dumps(claims).encode()) + "." + signature)
    tokens_before = emulator.calls["oauth2/access_token/"]

    resp = _callback(forged)

    body = _assert_page_clean(resp, query["auth_code"])
    assert resp["statusCode"] == 400
    assert "altered" in body and "nothing was stored" in body
    assert "<code>tiktok-destination auth-link --credential NAME</code>" in body
    assert _credential_secret_names() == []
    assert _used_states() == []
    assert emulator.calls["oauth2/access_token/"] == tokens_before


@pytest.mark.parametrize("where", ["payload", "signature", "whole"])
def test_non_ascii_state_is_refused_with_the_page(
    aws: Settings, emulator: TikTokEmulator, where: str
) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    payload, signature = query["state"].split(".")
    state = {
        "payload": f"{payload[:-1]}\u00e9.{signature}",
        "signature": f"{payload}.{signature[:-1]}\u00e9",
        "whole": "\u00e9t\u00e9",
    }[where]
    tokens_before = emulator.calls["oauth2/access_token/"]

    resp = _callback(dict(query, state=state))

    body = _assert_page_clean(resp, query["auth_code"])
    assert resp["statusCode"] == 400
    assert "altered" in body and "nothing was stored" in body
    assert _credential_secret_names() == []
    assert _used_states() == []
    assert emulator.calls["oauth2/access_token/"] == tokens_before


def test_state_signed_with_another_key_is_refused(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    other = sign_state("acme", "00" * 32, now=datetime.now(UTC))

    resp = _callback(dict(query, state=other))

    assert resp["statusCode"] == 400
    assert "altered" in resp["body"]
    assert _credential_secret_names() == []


def test_expired_state_is_refused(aws: Settings, emulator: TikTokEmulator) -> None:
    issued = datetime.now(UTC) - timedelta(minutes=31)
    query = _consent(emulator, _link(aws, emulator, "acme", now=issued))

    resp = _callback(query)

    body = _assert_page_clean(resp, query["auth_code"])
    assert resp["statusCode"] == 400
    assert "expired" in body and "30 minutes" in body
    assert "<code>tiktok-destination auth-link --credential acme</code>" in body
    assert _credential_secret_names() == []


def test_replayed_state_is_refused(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    assert _callback(query)["statusCode"] == 200
    stored = _credential_secret(aws, "acme")
    assert stored is not None
    tokens_before = emulator.calls["oauth2/access_token/"]

    # Same state, fresh auth code: as if someone captured the redirect and retried it.
    replay = dict(query, auth_code=emulator.authorize([ADV_1]))
    resp = _callback(replay)

    body = _assert_page_clean(resp, stored["access_token"], replay["auth_code"])
    assert resp["statusCode"] == 400
    assert "already used" in body
    assert emulator.calls["oauth2/access_token/"] == tokens_before
    assert _credential_secret(aws, "acme") == stored


def test_access_denied_is_refused(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"), deny=True)
    assert query["error"] == "access_denied" and "auth_code" not in query

    resp = _callback(query)

    body = _assert_page_clean(resp)
    assert resp["statusCode"] == 400
    assert "not granted" in body and "access_denied" in body
    assert "Admin or Operator" in body
    assert "<code>tiktok-destination auth-link --credential acme</code>" in body
    assert _credential_secret_names() == []


def test_bad_auth_code_gives_a_clear_page(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    bad = dict(query, auth_code="f" * 40, code="f" * 40)

    resp = _callback(bad)

    body = _assert_page_clean(resp, "f" * 40, query["auth_code"])
    assert resp["statusCode"] == 400
    assert "TikTok refused the authorization for credential" in body
    assert "40110" in body
    assert "<code>tiktok-destination auth-link --credential acme</code>" in body
    assert _credential_secret_names() == []


def test_tiktok_failure_is_a_502_page(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    emulator.fail_next("oauth2/access_token/", code=40000)

    resp = _callback(query)

    body = _assert_page_clean(resp, query["auth_code"])
    assert resp["statusCode"] == 502
    assert "could not complete the authorization" in body
    assert _credential_secret_names() == []


def test_callback_without_query_and_other_paths(aws: Settings) -> None:
    resp = _callback(None)
    assert resp["statusCode"] == 400
    assert "opened without the state" in resp["body"]

    assert _callback(None, raw_path="/favicon.ico")["statusCode"] == 404


def test_missing_app_secret_fields_is_a_setup_page(aws: Settings, emulator: TikTokEmulator) -> None:
    query = _consent(emulator, _link(aws, emulator, "acme"))
    boto3.client("secretsmanager").put_secret_value(
        SecretId=f"{PREFIX}app", SecretString=json.dumps({"app_id": APP_ID})
    )
    secrets.clear_cache()

    resp = _callback(query)

    assert resp["statusCode"] == 500
    assert "lacks secret, state_key" in resp["body"]
    assert _credential_secret_names() == []


# ---------------------------------------------------------------- state and link, directly
def test_state_round_trip_and_limits() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    state = sign_state("acme", STATE_KEY, now=now, nonce="n" * 24)

    claims = verify_state(state, STATE_KEY, now=now + timedelta(minutes=29))
    assert (claims.credential, claims.nonce) == ("acme", "n" * 24)
    assert claims.expires_at == now + timedelta(minutes=30)
    assert all(c.isalnum() or c in "-_." for c in state)

    with pytest.raises(OAuthError, match="expired"):
        verify_state(state, STATE_KEY, now=now + timedelta(minutes=30))
    with pytest.raises(OAuthError, match="altered"):
        verify_state(state + "0", STATE_KEY, now=now)
    with pytest.raises(OAuthError, match="altered"):
        verify_state("no-dot-here", STATE_KEY, now=now)
    # A well-signed but malformed payload is refused too.
    junk = _b64encode(b'{"c": 5}')
    with pytest.raises(OAuthError, match="altered"):
        verify_state(f"{junk}.{_mac(junk, STATE_KEY)}", STATE_KEY, now=now)


def test_link_shape_and_portal_choice(aws: Settings) -> None:
    link = authorization_link(aws, "acme", REDIRECT_URI, now=datetime.now(UTC))
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == AUTH_URL
    assert urlencode({"redirect_uri": REDIRECT_URI}) in parts.query
    params = dict(parse_qsl(parts.query))
    assert params["app_id"] == APP_ID
    assert verify_state(params["state"], STATE_KEY, now=datetime.now(UTC)).credential == "acme"

    assert portal_url_for("https://business-api.tiktok.com/open_api/v1.3/") == AUTH_URL
    assert portal_url_for("https://sandbox-ads.tiktok.com/open_api/v1.3/") == AUTH_URL
    assert portal_url_for("http://127.0.0.1:8080/open_api/v1.3/") == (
        "http://127.0.0.1:8080/portal/auth"
    )

    with pytest.raises(Exception, match="credential name"):
        authorization_link(aws, "../other", REDIRECT_URI)
    with pytest.raises(Exception, match="redirect URI"):
        authorization_link(aws, "acme", "http://example.com/callback")
