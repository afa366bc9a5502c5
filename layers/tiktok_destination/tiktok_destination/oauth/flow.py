"""TikTok advertiser authorization: the link, its signed ``state``, and the callback.

The flow (``tiktok-api.md``, "OAuth"): the operator prints a link with
``tiktok-destination auth-link --credential NAME``; a TikTok user who is Admin or Operator
on the advertiser accounts opens it and clicks "Authorize"; TikTok redirects the browser to
the OAuth Lambda's Function URL with ``auth_code`` and ``state``; the callback trades the
code for a long-lived access token and stores it as the credential's secret. Running the
link again ("reauthorize") replaces that secret's value in place, so destinations that
name the credential pick up the new token without a configuration change.

The Function URL is public, so the callback trusts nothing but a ``state`` it signed
itself: HMAC-SHA256 with the app secret's ``state_key``, an expiry, and a nonce that is
recorded in the state bucket on first use so a captured redirect cannot be replayed.

Nothing here ever puts the access token, the app secret or the auth code into a message,
a log line or a page.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import html
import json
import re
import secrets as std_secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
from botocore.exceptions import ClientError

from tiktok_destination.adapters import secrets
from tiktok_destination.adapters.s3 import PRECONDITION_CODES, error_code
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.limits import DEFAULT_BASE_URL
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination.config.settings import Settings
from tiktok_destination.errors import ConfigurationError, DestinationError, OAuthError

__all__ = [
    "AUTH_URL",
    "STATE_TTL",
    "USED_STATE_PREFIX",
    "AuthorizedAdvertiser",
    "CallbackResult",
    "StateClaims",
    "authorization_link",
    "cli_auth_link",
    "handle_callback",
    "portal_url_for",
    "render_page",
    "sign_state",
    "verify_state",
]

AUTH_URL = "https://business-api.tiktok.com/portal/auth"
STATE_TTL = timedelta(minutes=30)
USED_STATE_PREFIX = "oauth/used-states/"

# The same rule as configuration names ([credentials.NAME]); it also keeps the name safe
# inside a Secrets Manager name.
_CREDENTIAL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# Values TikTok (or whoever calls the public URL) sends us that we quote back are cut short.
_MAX_ECHO = 100


def _auth_link_command(credential: str | None) -> str:
    return f"`tiktok-destination auth-link --credential {credential or 'NAME'}`"


def _new_link_advice(credential: str | None) -> str:
    return f"Generate a new authorization link with {_auth_link_command(credential)} and open it."


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (use datetime.now(UTC))")
    return now.astimezone(UTC)


def _fmt_time(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _check_credential(credential: str) -> None:
    if not isinstance(credential, str) or not _CREDENTIAL_RE.fullmatch(credential):
        raise ConfigurationError(
            f"credential name {str(credential)[:_MAX_ECHO]!r} is not valid: use 1-64 letters, "
            "digits, '_' or '-', the same name as the [credentials.NAME] table in the "
            "configuration document"
        )


# ---------------------------------------------------------------- state
@dataclass(frozen=True)
class StateClaims:
    """What a verified ``state`` says: for which credential, which nonce, valid until when."""

    credential: str
    nonce: str
    expires_at: datetime


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(payload: str, key: str) -> str:
    return hmac.new(key.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).hexdigest()


def sign_state(
    credential: str,
    key: str,
    *,
    now: datetime,
    ttl: timedelta = STATE_TTL,
    nonce: str | None = None,
) -> str:
    """``base64url(json{c, n, exp}) + "." + hex(HMAC-SHA256)``: URL-safe as it stands."""
    _check_credential(credential)
    if not key:
        raise ConfigurationError("the OAuth state signing key (state_key) is empty")
    nonce = nonce if nonce is not None else std_secrets.token_urlsafe(24)
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 16-64 URL-safe characters")
    exp = int((_utc(now) + ttl).timestamp())
    body = json.dumps({"c": credential, "n": nonce, "exp": exp}, separators=(",", ":"))
    payload = _b64encode(body.encode("utf-8"))
    return f"{payload}.{_mac(payload, key)}"


_TAMPERED = (
    "The authorization answer's state was altered, or was not issued by this destination, "
    "so it cannot be trusted and nothing was stored. Open the link exactly as printed. "
)


def verify_state(state: str, key: str, *, now: datetime) -> StateClaims:
    """The claims of a state this destination signed and that has not expired.

    Raises OAuthError for a state that was altered or signed with another key ("tampered")
    and for one past its expiry ("expired"). The signature is checked first, with a
    constant-time comparison, so nothing in an unverified state is believed.
    """
    state = state or ""
    # What we sign is ASCII; anything else was altered, and must not reach the ASCII
    # encodings below (a UnicodeEncodeError would be a 500, not the refusal page).
    if not state.isascii():
        raise OAuthError(_TAMPERED + _new_link_advice(None))
    payload, dot, signature = state.partition(".")
    if (
        not dot
        or not payload
        or not hmac.compare_digest(
            _mac(payload, key).encode("ascii"), signature.encode("ascii", "replace")
        )
    ):
        raise OAuthError(_TAMPERED + _new_link_advice(None))
    try:
        claims = json.loads(_b64decode(payload))
        credential, nonce, exp = claims["c"], claims["n"], claims["exp"]
    except (ValueError, binascii.Error, TypeError, KeyError):
        # Signed by us but unreadable: only a change of format could do this.
        raise OAuthError(_TAMPERED + _new_link_advice(None)) from None
    if (
        not isinstance(credential, str)
        or not _CREDENTIAL_RE.fullmatch(credential)
        or not isinstance(nonce, str)
        or not _NONCE_RE.fullmatch(nonce)
        or not isinstance(exp, int)
        or isinstance(exp, bool)
    ):
        raise OAuthError(_TAMPERED + _new_link_advice(None))
    expires_at = datetime.fromtimestamp(exp, UTC)
    if _utc(now) >= expires_at:
        raise OAuthError(
            f"The authorization link for credential '{credential}' expired at "
            f"{_fmt_time(expires_at)} (links are valid for "
            f"{int(STATE_TTL.total_seconds() // 60)} minutes), so nothing was stored. "
            + _new_link_advice(credential)
        )
    return StateClaims(credential=credential, nonce=nonce, expires_at=expires_at)


# ---------------------------------------------------------------- AWS clients
@functools.cache
def _s3_client() -> Any:
    # Created on first use, not at import: tests and the local runner start moto first.
    return boto3.client("s3")


@functools.cache
def _secretsmanager_client() -> Any:
    return boto3.client("secretsmanager")


# ---------------------------------------------------------------- app secret
@dataclass(frozen=True)
class _App:
    app_id: str
    secret: str
    state_key: str


def _load_app(settings: Settings) -> _App:
    name = settings.app_secret_name
    value = secrets.load_app(settings) or {}
    fields = {k: value.get(k) for k in ("app_id", "secret", "state_key")}
    missing = [k for k, v in fields.items() if not isinstance(v, (str, int)) or v == ""]
    if missing:
        raise ConfigurationError(
            f"Secrets Manager secret {name} is missing or lacks {', '.join(missing)}: store "
            'the TikTok app there as JSON {"app_id": "...", "secret": "...", "state_key": '
            '"<64 random hex characters>"} (app_id and secret from the TikTok developer '
            "portal's app page; state_key signs authorization links)"
        )
    return _App(str(fields["app_id"]), str(fields["secret"]), str(fields["state_key"]))


# ---------------------------------------------------------------- link
def portal_url_for(base_url: str) -> str:
    """The authorization page that goes with an API base URL.

    TikTok's own hosts use :data:`AUTH_URL` (the sandbox has no portal of its own); any
    other base URL is a stand-in such as the local emulator, which serves ``/portal/auth``
    on the same origin.
    """
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    host = (parts.hostname or "").lower()
    if not host or host == "tiktok.com" or host.endswith(".tiktok.com"):
        return AUTH_URL
    return f"{parts.scheme}://{parts.netloc}/portal/auth"


def _check_redirect_uri(redirect_uri: str) -> None:
    parts = urlsplit(redirect_uri or "")
    local = (parts.hostname or "") in ("localhost", "127.0.0.1", "::1")
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or (parts.scheme == "http" and not local)
    ):
        raise ConfigurationError(
            f"redirect URI {redirect_uri[:_MAX_ECHO]!r} is not usable: it must be the https "
            "Function URL of the OAuth function (stack output OAuthCallbackUrl), the same "
            "URL registered as the TikTok app's redirect URL"
        )


def authorization_link(
    settings: Settings,
    credential: str,
    redirect_uri: str,
    *,
    portal_url: str = AUTH_URL,
    now: datetime | None = None,
) -> str:
    """The TikTok consent link for ``credential``; its state is valid for :data:`STATE_TTL`."""
    _check_credential(credential)
    _check_redirect_uri(redirect_uri)
    app = _load_app(settings)
    state = sign_state(credential, app.state_key, now=now or datetime.now(UTC))
    query = urlencode({"app_id": app.app_id, "state": state, "redirect_uri": redirect_uri})
    return f"{portal_url}?{query}"


def cli_auth_link(credential: str, redirect_uri: str, settings: Settings) -> str:
    """What ``tiktok-destination auth-link`` prints: the link and how to use it."""
    now = datetime.now(UTC)
    link = authorization_link(
        settings,
        credential,
        redirect_uri,
        portal_url=portal_url_for(settings.tiktok_base_url),
        now=now,
    )
    expires = _fmt_time(now + STATE_TTL)
    minutes = int(STATE_TTL.total_seconds() // 60)
    return "\n".join(
        [
            f"Authorization link for credential '{credential}':",
            "",
            f"  {link}",
            "",
            f"Credential:   {credential} (stored as secret "
            f"{settings.credential_secret_name(credential)})",
            f"Redirect URI: {redirect_uri}",
            "              (must be the redirect URL registered for the TikTok app)",
            f"Expires:      {expires} ({minutes} minutes from now); the link works once.",
            "",
            "Open the link in a browser signed in to TikTok as a user who is Admin or",
            "Operator (not Analyst) on the advertiser accounts, select the accounts and click",
            "Authorize. TikTok then returns to the redirect URI, which stores the access token",
            "and shows which advertiser accounts the credential can now reach.",
            "",
            "To re-authorize later (access revoked, user removed, accounts added), run this",
            "command again: the new token replaces the stored one in place.",
        ]
    )


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
    key = USED_STATE_PREFIX + claims.nonce
    body = json.dumps(
        {
            "credential": claims.credential,
            "used_at": _utc(now).isoformat(),
            "expires_at": claims.expires_at.isoformat(),
        }
    ).encode()
    try:
        # If-None-Match makes the check and the write one atomic step: two callbacks racing
        # with the same state cannot both get through.
        _s3_client().put_object(
            Bucket=settings.state_bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as err:
        if error_code(err) in PRECONDITION_CODES:
            raise OAuthError(
                f"This authorization link for credential '{claims.credential}' was already "
                "used; a link works once, so nothing was stored this time. If the first "
                "attempt succeeded the credential is already authorized; otherwise "
                + _new_link_advice(claims.credential)
            ) from None
        raise


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
    client = _secretsmanager_client()
    text = json.dumps(value)
    try:
        client.put_secret_value(SecretId=name, SecretString=text)
        return
    except ClientError as err:
        code = error_code(err)
        if code == "InvalidRequestException":
            raise ConfigurationError(
                f"Secrets Manager secret {name} cannot be updated (it is probably scheduled "
                f"for deletion): restore it with `aws secretsmanager restore-secret "
                f"--secret-id {name}`, then generate a new authorization link with "
                f"{_auth_link_command(credential)} and open it"
            ) from None
        if code != "ResourceNotFoundException":
            raise
    try:
        client.create_secret(
            Name=name,
            SecretString=text,
            Description=f"TikTok access token for credential '{credential}' (tiktok-destination)",
        )
    except ClientError as err:
        # Another callback created it in between: ours is the newer authorization.
        if error_code(err) != "ResourceExistsException":
            raise
        client.put_secret_value(SecretId=name, SecretString=text)


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

    _mark_state_used(settings, claims, now)

    try:
        data = TikTokClient.exchange_auth_code(app.app_id, app.secret, auth_code, base_url=base_url)
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
    # Kept as TikTok sends them (numeric permission ids today).
    scope = (
        [s for s in raw_scope if isinstance(s, (str, int))] if isinstance(raw_scope, list) else []
    )
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


# ---------------------------------------------------------------- page
_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:40rem;"
    "margin:3rem auto;padding:0 1rem;color:#161823;line-height:1.5}"
    "h1{font-size:1.4rem}.ok{color:#0a7d36}.fail{color:#b3261e}"
    "code{background:#f1f1f2;padding:.1rem .3rem;border-radius:3px}"
    "li{margin:.2rem 0}"
)


def _page(title: str, css_class: str, body: str) -> str:
    e = html.escape
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{e(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1 class="{css_class}">{e(title)}</h1>{body}</body></html>\n'
    )


def _with_code(text: str) -> str:
    """Escape ``text`` and show `backticked` commands as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_page(result_or_error: CallbackResult | BaseException) -> str:
    """A small self-contained HTML page for the browser TikTok redirected back here."""
    e = html.escape
    if isinstance(result_or_error, CallbackResult):
        r = result_or_error
        if r.advertisers:
            items = "".join(
                f"<li>{e(a.name)} (<code>{e(a.advertiser_id)}</code>)</li>"
                if a.name
                else f"<li><code>{e(a.advertiser_id)}</code></li>"
                for a in r.advertisers
            )
            accounts = (
                f"<p>It can now act for {len(r.advertisers)} advertiser "
                f"account{'s' if len(r.advertisers) != 1 else ''}:</p><ul>{items}</ul>"
            )
        else:
            accounts = (
                "<p><strong>No advertiser accounts were granted.</strong> Authorize again "
                f"and select the accounts: {_with_code(_auth_link_command(r.credential))}.</p>"
            )
        return _page(
            "TikTok authorization complete",
            "ok",
            f"<p>Credential <code>{e(r.credential)}</code> is authorized "
            f"({e(_fmt_time(r.authorized_at))}); its access token is stored in "
            f"Secrets Manager as <code>{e(r.secret_name)}</code>, replacing any earlier "
            "one.</p>"
            f"{accounts}"
            "<p>Runs of destinations that name this credential use the new token; steps "
            f"already running pick it up within {secrets.SECRET_MAX_AGE // 60} minutes. "
            "You can close this page.</p>",
        )

    err = result_or_error
    message = err.message if isinstance(err, DestinationError) else "unexpected error"
    if isinstance(err, OAuthError):
        title = "TikTok authorization not completed"
        after = (
            "<p>The credential's previously stored token, if any, is unchanged. The "
            "person who runs this destination can print a fresh link with "
            f"{_with_code(_auth_link_command(None))}.</p>"
        )
    elif isinstance(err, ConfigurationError):
        title = "Authorization callback is not set up"
        after = "<p>Ask the person who deployed this destination to fix the setup above.</p>"
    else:
        title = "TikTok did not complete the authorization"
        after = "<p>Nothing was stored. Wait a few minutes and use a new link.</p>"
    return _page(title, "fail", f"<p>{_with_code(message)}</p>{after}")
