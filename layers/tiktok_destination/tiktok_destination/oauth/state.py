"""The signed ``state`` of an authorization link, and the rules shared by link and callback.

The OAuth Function URL is public, so the callback trusts nothing but a ``state`` it signed
itself: HMAC-SHA256 with the app secret's ``state_key``, an expiry (:data:`STATE_TTL`),
and a nonce the callback records on first use so a captured redirect cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets as std_secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tiktok_destination.errors import ConfigurationError, OAuthError

STATE_TTL = timedelta(minutes=30)

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
