"""The authorization link an operator prints (``tiktok-destination auth-link``), and the
app secret (``app_id``, ``secret``, ``state_key``) both the link and the callback read.

The flow (docs/tiktok-contract.md, "OAuth"): the operator prints a link with
``tiktok-destination auth-link --credential NAME``; a TikTok user who is Admin or Operator
on the advertiser accounts opens it and clicks "Authorize"; TikTok redirects the browser to
the OAuth Lambda's Function URL with ``auth_code`` and ``state`` (``callback``). Running the
link again ("reauthorize") replaces the credential's secret in place, so destinations that
name the credential pick up the new token without a configuration change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from tiktok_destination.adapters import secrets
from tiktok_destination.adapters.tiktok.limits import DEFAULT_BASE_URL
from tiktok_destination.config.settings import Settings
from tiktok_destination.errors import ConfigurationError
from tiktok_destination.oauth.state import (
    _MAX_ECHO,
    STATE_TTL,
    _check_credential,
    _fmt_time,
    sign_state,
)

AUTH_URL = "https://business-api.tiktok.com/portal/auth"


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
