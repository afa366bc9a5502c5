"""OAuth and accounts: advertisers, event sets, tokens, auth codes and the authorization page.

Endpoints: ``user/info/``, ``oauth2/advertiser/get/``, ``oauth2/access_token/``,
``oauth2/revoke_token/``, and ``/portal/auth`` (the page a user clicks "Authorize" on).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .base import EmulatorBase
from .contract import AUTH_CODE_TTL_SECONDS, OAUTH_SCOPE, ROLES
from .model import _Advertiser, _ApiError, _AuthCode, _html, _new_id, _Request, _Response, _Token


class AccountsApi(EmulatorBase):
    """Registration of the world (advertisers, event sets, tokens) and the OAuth endpoints."""

    def add_advertiser(self, advertiser_id: str, name: str) -> None:
        with self._lock:
            adv = self._advertisers.get(advertiser_id)
            if adv is None:
                self._advertisers[advertiser_id] = _Advertiser(advertiser_id, name)
            else:
                adv.name = name

    def add_event_set(self, advertiser_id: str, event_set_id: str, name: str) -> None:
        """Register an offline event set of an advertiser (registers the advertiser too)."""
        with self._lock:
            self._ensure_advertiser(advertiser_id)
            self._advertisers[advertiser_id].event_sets[event_set_id] = name
            self._event_sets[event_set_id] = advertiser_id

    def add_token(
        self,
        token: str,
        advertiser_ids: list[str],
        *,
        role: str = "ADMIN",
        user: dict[str, Any] | None = None,
    ) -> None:
        """Register an access token for advertisers (unknown ones are registered too)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        with self._lock:
            for adv in advertiser_ids:
                self._ensure_advertiser(adv)
            self._tokens[token] = _Token(token, list(advertiser_ids), role, self._user(user))

    def revoke_token(self, token: str) -> None:
        """The user removed the app's access: the token now answers 40105."""
        with self._lock:
            self._tokens[token].revoked = True

    def authorize(
        self,
        advertiser_ids: list[str],
        *,
        role: str = "ADMIN",
        user: dict[str, Any] | None = None,
    ) -> str:
        """Stand-in for a user clicking "Authorize": a fresh one-hour, single-use auth_code."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        with self._lock:
            for adv in advertiser_ids:
                self._ensure_advertiser(adv)
            code = secrets.token_hex(20)
            self._auth_codes[code] = _AuthCode(list(advertiser_ids), role, user, self.clock())
            return code

    def _ensure_advertiser(self, advertiser_id: str) -> None:
        if not isinstance(advertiser_id, str):
            raise TypeError("advertiser ids are strings (19-digit ids lose precision as numbers)")
        if advertiser_id not in self._advertisers:
            self._advertisers[advertiser_id] = _Advertiser(
                advertiser_id, f"Advertiser {advertiser_id}"
            )

    @staticmethod
    def _user(user: dict[str, Any] | None) -> dict[str, Any]:
        base: dict[str, Any] = {
            "core_user_id": _new_id(),
            "display_name": "Emulator User",
            "email": "e***@example.com",
        }
        base.update(user or {})
        return base

    # ------------------------------------------------------------------ endpoints
    def _ep_user_info(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        return dict(tok.user)

    def _check_app(self, app_id: object, secret: object) -> None:
        app = self._apps.get(app_id) if isinstance(app_id, str) else None
        if app is None or not isinstance(secret, str) or not secrets.compare_digest(app[0], secret):
            raise _ApiError(40101, "App ID or secret is invalid. Check the developer app settings.")

    def _ep_advertiser_get(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        self._check_app(req.query.get("app_id"), req.query.get("secret"))
        return {
            "list": [
                {"advertiser_id": a, "advertiser_name": self._advertisers[a].name}
                for a in tok.advertiser_ids
                if a in self._advertisers
            ]
        }

    def _ep_access_token(self, req: _Request) -> dict[str, Any]:
        body = self._json_body(req)
        self._check_app(body.get("app_id"), body.get("secret"))
        code = self._str_value(body.get("auth_code"), "auth_code")
        grant = self._auth_codes.get(code)
        if grant is None or grant.used or self.clock() - grant.issued > AUTH_CODE_TTL_SECONDS:
            raise _ApiError(
                40110,
                "Auth code is invalid, expired or already used. Run the authorization link again.",
            )
        grant.used = True
        token = secrets.token_hex(20)
        self._tokens[token] = _Token(
            token, list(grant.advertiser_ids), grant.role, self._user(grant.user)
        )
        return {
            "access_token": token,
            "advertiser_ids": list(grant.advertiser_ids),
            "scope": list(OAUTH_SCOPE),
        }

    def _ep_revoke_token(self, req: _Request) -> dict[str, Any]:
        body = self._json_body(req)
        self._check_app(body.get("app_id"), body.get("secret"))
        token = self._str_value(body.get("access_token"), "access_token")
        tok = self._tokens.get(token)
        if tok is None:
            raise _ApiError(40105, "Access token is invalid or has been revoked.")
        tok.revoked = True
        return {}

    def _portal(self, query: dict[str, str]) -> _Response:
        app_id = query.get("app_id", "")
        redirect_uri = query.get("redirect_uri", "")
        state = query.get("state", "")
        with self._lock:
            app = self._apps.get(app_id)
            if app is None:
                return _html(400, "Invalid app_id: this app is not registered.")
            registered = app[1]
            parts = urlsplit(redirect_uri)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return _html(400, "redirect_uri is missing or is not an http(s) URL.")
            if registered is not None and redirect_uri != registered:
                return _html(400, "redirect_uri does not match the app's registered URL.")
            if query.get("deny") == "1":
                params = {"error": "access_denied", "state": state}
            else:
                adv_ids = (
                    list(self.portal_advertiser_ids)
                    if self.portal_advertiser_ids is not None
                    else list(self._advertisers)
                )
                code = self.authorize(adv_ids, role=self.portal_role)
                params = {"auth_code": code, "code": code, "state": state}
        sep = "&" if parts.query else ""
        location = urlunsplit(parts._replace(query=parts.query + sep + urlencode(params)))
        return _Response(302, b"", 302, content_type="text/html", headers=[("Location", location)])
