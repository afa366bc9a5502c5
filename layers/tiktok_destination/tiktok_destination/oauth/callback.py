"""The OAuth callback: TikTok's redirect (``auth_code``, ``state``) to a stored access token.

The callback verifies the state (``state``), records its nonce in the state bucket so the
link works once, trades the code for a long-lived access token and stores it as the
credential's secret, replacing an earlier one in place. Nothing here ever puts the access
token, the app secret or the auth code into a message, a log line or a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tiktok_destination.adapters import secrets
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination.config.settings import Settings
from tiktok_destination.errors import ConfigurationError, DestinationError, OAuthError
from tiktok_destination.oauth.link import _App, _load_app
from tiktok_destination.oauth.state import (
    _MAX_ECHO,
    StateClaims,
    _auth_link_command,
    _new_link_advice,
    _utc,
    verify_state,
)
from tiktok_destination.runs.layout import used_state_key


# ---------------------------------------------------------------- callback
@dataclass(frozen=True)
class AuthorizedAdvertiser:
    advertiser_id: str
    name: str | None = None


@dataclass(frozen=True)
class CallbackResult:
    """A completed authorization. Holds no token: it is safe to log and render."""

    credential: str
    secret_name: str
    advertisers: tuple[AuthorizedAdvertiser, ...]
    scope: tuple[str | int, ...]
    authorized_at: datetime

    @property
    def advertiser_ids(self) -> list[str]:
        return [a.advertiser_id for a in self.advertisers]


def _first(query: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = query.get(name)
        if value:
            return str(value)
    return ""


def _mark_state_used(settings: Settings, claims: StateClaims, now: datetime) -> None:
    """Record the nonce; a second use of the same state is a replay."""
    key = used_state_key(claims.nonce)
    record = {
        "credential": claims.credential,
        "used_at": _utc(now).isoformat(),
        "expires_at": claims.expires_at.isoformat(),
    }
    # If-None-Match makes the check and the write one atomic step: two callbacks racing
    # with the same state cannot both get through.
    if not Bucket(settings.state_bucket).put_json_if(key, record, if_none_match=True):
        raise OAuthError(
            f"This authorization link for credential '{claims.credential}' was already "
            "used; a link works once, so nothing was stored this time. If the first "
            "attempt succeeded the credential is already authorized; otherwise "
            + _new_link_advice(claims.credential)
        )


def _advertiser_names(
    token: str, app: _App, base_url: str, advertiser_ids: list[str]
) -> dict[str, str]:
    """Names for the page; best effort, since the token is already stored by now."""
    try:
        with TikTokClient(
            token,
            base_url=base_url,
            qps=0,
            retry=RetryPolicy(max_retries=1, backoff_max=1.0),
            timeout=10.0,
        ) as client:
            listed = client.authorized_advertisers(app.app_id, app.secret)
    except DestinationError:
        return {}
    wanted = set(advertiser_ids)
    names: dict[str, str] = {}
    for item in listed:
        adv_id = str(item.get("advertiser_id") or "")
        name = item.get("advertiser_name")
        if adv_id in wanted and isinstance(name, str) and name:
            names[adv_id] = name
    return names


def _store_credential(name: str, value: dict[str, Any], credential: str) -> None:
    """Replace the secret's value in place, creating the secret the first time."""
    try:
        secrets.put_secret_json(
            name,
            value,
            description=f"TikTok access token for credential '{credential}' (tiktok-destination)",
        )
    except secrets.SecretNotWritable:
        raise ConfigurationError(
            f"Secrets Manager secret {name} cannot be updated (it is probably scheduled "
            f"for deletion): restore it with `aws secretsmanager restore-secret "
            f"--secret-id {name}`, then generate a new authorization link with "
            f"{_auth_link_command(credential)} and open it"
        ) from None


def _claims_and_code(query: Mapping[str, str], app: _App, now: datetime) -> tuple[StateClaims, str]:
    """The verified state's claims and the auth code of a redirect that granted access;
    OAuthError for a redirect without a valid state, or with a denial or no code."""
    state = _first(query, "state")
    denied = _first(query, "error")
    auth_code = _first(query, "auth_code", "code")

    if not state:
        if denied:
            raise OAuthError(
                "The authorization was declined on TikTok's page, so nothing was stored. "
                + _new_link_advice(None)
            )
        raise OAuthError(
            "This address is the TikTok authorization callback; it was opened without the "
            "state and auth_code TikTok adds, so there is nothing to complete. "
            + _new_link_advice(None)
        )
    claims = verify_state(state, app.state_key, now=now)

    if denied or not auth_code:
        reason = (
            f"TikTok answered error={denied[:_MAX_ECHO]!r}"
            if denied
            else "TikTok sent no auth_code"
        )
        raise OAuthError(
            f"The authorization for credential '{claims.credential}' was not granted "
            f"({reason}): the user declined, or closed TikTok's page before clicking "
            "Authorize, so nothing was stored. Have a user who is Admin or Operator on the "
            f"advertiser accounts open a new link: {_auth_link_command(claims.credential)}."
        )
    return claims, auth_code


def _exchange_auth_code(
    app: _App, auth_code: str, claims: StateClaims, base_url: str
) -> dict[str, Any]:
    """TikTok's answer to ``oauth2/access_token/``; its errors say nothing was stored."""
    try:
        return TikTokClient.exchange_auth_code(app.app_id, app.secret, auth_code, base_url=base_url)
    except OAuthError as err:
        raise OAuthError(
            f"TikTok refused the authorization for credential '{claims.credential}', so "
            f"nothing was stored. {err.message} " + _new_link_advice(claims.credential),
            code=err.code,
            request_id=err.request_id,
        ) from None
    except DestinationError as err:
        raise type(err)(
            f"TikTok could not complete the authorization for credential "
            f"'{claims.credential}', so nothing was stored. {err.message} "
            f"Try again in a few minutes: {_new_link_advice(claims.credential)}",
            code=err.code,
            request_id=err.request_id,
        ) from None


def _granted(data: dict[str, Any], claims: StateClaims) -> tuple[str, list[str], list[str | int]]:
    """The access token, advertiser ids and scope of TikTok's answer, kept to the shapes
    they may take; OAuthError when it holds no token."""
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise OAuthError(
            f"TikTok answered the authorization for credential '{claims.credential}' without "
            "an access token, so nothing was stored. " + _new_link_advice(claims.credential)
        )
    raw_ids = data.get("advertiser_ids") or []
    # TikTok sends ids as strings. Python's json keeps a bare integer exact, so str() of
    # one is still the right id; floats and other shapes are not ids.
    advertiser_ids = [
        str(a)
        for a in raw_ids
        if (isinstance(a, str) and a) or (isinstance(a, int) and not isinstance(a, bool))
    ]
    raw_scope = data.get("scope")
    # Kept as TikTok sends them (numeric permission ids, as far as seen).
    scope = (
        [s for s in raw_scope if isinstance(s, (str, int))] if isinstance(raw_scope, list) else []
    )
    return token, advertiser_ids, scope


def handle_callback(
    query: Mapping[str, str],
    settings: Settings,
    *,
    now: datetime,
    base_url: str,
) -> CallbackResult:
    """Complete an authorization from TikTok's redirect query (``auth_code``, ``state``).

    Raises OAuthError (nothing stored) for a missing, altered, expired or reused state, a
    denied consent, or an auth code TikTok refuses; other TikTok failures raise their own
    DestinationError class. Secrets Manager / S3 failures propagate unchanged.
    """
    app = _load_app(settings)
    claims, auth_code = _claims_and_code(query, app, now)
    _mark_state_used(settings, claims, now)
    data = _exchange_auth_code(app, auth_code, claims, base_url)
    token, advertiser_ids, scope = _granted(data, claims)
    authorized_at = _utc(now)

    secret_name = settings.credential_secret_name(claims.credential)
    _store_credential(
        secret_name,
        {
            "access_token": token,
            "advertiser_ids": advertiser_ids,
            "scope": scope,
            "authorized_at": authorized_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "credential": claims.credential,
        },
        claims.credential,
    )
    # A warm Lambda in this container must not keep serving the previous token.
    secrets.clear_cache()

    names = _advertiser_names(token, app, base_url, advertiser_ids)
    return CallbackResult(
        credential=claims.credential,
        secret_name=secret_name,
        advertisers=tuple(AuthorizedAdvertiser(a, names.get(a)) for a in advertiser_ids),
        scope=tuple(scope),
        authorized_at=authorized_at,
    )
