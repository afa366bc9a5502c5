"""The emulator's options and world, and the checks every API area shares.

Each API area (``accounts``, ``audiences``, ``events``) and the fault switches and state
files are mixins over :class:`EmulatorBase`; ``server.TikTokEmulator`` puts them together
and documents the options.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import (
    _Advertiser,
    _ApiError,
    _Audience,
    _AuthCode,
    _bad,
    _Delay,
    _Fault,
    _refuse_constant,
    _Request,
    _Token,
    _type_name,
)

if TYPE_CHECKING:
    from .transport import _Server


class EmulatorBase:
    """The state every area reads and writes, and the access checks of the API."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        qps_limit: int | None = None,
        audience_limit: int = 400,
        max_ids_per_request: int = 10_000,
        latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        app_id: str | None = None,
        secret: str | None = None,
        portal_advertiser_ids: list[str] | None = None,
        portal_role: str = "ADMIN",
        max_event_age_days: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.qps_limit = qps_limit
        self.audience_limit = audience_limit
        self.max_ids_per_request = max_ids_per_request
        self.latency = latency
        self.clock = clock
        self.portal_advertiser_ids = portal_advertiser_ids
        self.portal_role = portal_role
        self.max_event_age_days = max_event_age_days

        self._lock = threading.RLock()
        self._apps: dict[str, tuple[str, str | None]] = {}
        self._advertisers: dict[str, _Advertiser] = {}
        self._audiences: dict[str, _Audience] = {}
        self._event_sets: dict[str, str] = {}  # event_set_id -> advertiser_id
        self._tokens: dict[str, _Token] = {}
        self._auth_codes: dict[str, _AuthCode] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._delays: dict[str, deque[_Delay]] = {}
        self._holds: dict[str, deque[_Delay]] = {}
        self._window: deque[float] = deque()

        #: requests received per path ("segment/mapping/"), rejected ones included
        self.calls: Counter[str] = Counter()
        #: (method, path, code): code is the TikTok code, or the HTTP status when the
        #: answer is not an envelope (404, 405, injected 5xx, portal redirects)
        self.calls_log: list[tuple[str, str, int]] = []
        #: (time, admitted) of every API request as it reached the rate-limit check, in
        #: ``clock`` seconds: when TikTok counts it
        self.arrivals: list[tuple[float, bool]] = []
        #: every accepted event, duplicates included (``duplicate`` says which)
        self.received_events: list[dict[str, Any]] = []
        #: the deduplicated view: (event_set_id, event, event_id) -> first event in 48 h
        self.events_by_key: dict[tuple[str, str, str], dict[str, Any]] = {}

        self._persist_path: Path | None = None
        #: the first save of a change that failed (disk full): the CLI says so in one line
        self.save_failure: OSError | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        if app_id is not None:
            self.set_app(app_id, secret or "")

    def set_app(self, app_id: str, secret: str, *, redirect_uri: str | None = None) -> None:
        """Register a developer app. With ``redirect_uri``, the portal accepts only that one."""
        with self._lock:
            self._apps[str(app_id)] = (secret, redirect_uri)

    # ------------------------------------------------------------------ request helpers
    def _token(self, req: _Request) -> _Token:
        if not req.access_token:
            raise _ApiError(
                40104, "Access token is empty. Send it in the Access-Token request header."
            )
        tok = self._tokens.get(req.access_token)
        if tok is None or tok.revoked:
            raise _ApiError(
                40105,
                "Access token is invalid or has been revoked. Re-authorize the app to get a "
                "new token.",
            )
        return tok

    def _advertiser_access(self, tok: _Token, advertiser_id: str, *, write: bool) -> _Advertiser:
        adv = self._advertisers.get(advertiser_id)
        if adv is None or advertiser_id not in tok.advertiser_ids:
            raise _ApiError(
                40300,
                f"Advertiser {advertiser_id} does not exist or has been deleted, or this "
                "access token is not authorized for it.",
            )
        if write and tok.role == "ANALYST":
            raise _ApiError(
                40001,
                f"No permission to operate advertiser {advertiser_id}: the authorized user's "
                "role is Analyst. An Admin or Operator role is required.",
            )
        return adv

    @staticmethod
    def _json_body(req: _Request) -> dict[str, Any]:
        if "application/json" not in req.content_type.lower():
            raise _bad("Content-Type must be application/json.")
        try:
            body = (
                json.loads(req.body.decode("utf-8"), parse_constant=_refuse_constant)
                if req.body
                else None
            )
        except (UnicodeDecodeError, ValueError) as err:
            raise _bad(f"Request body is not valid JSON: {err.__class__.__name__}.") from None
        if not isinstance(body, dict):
            raise _bad("Request body must be a JSON object.")
        return body

    @staticmethod
    def _id_value(value: object, name: str) -> str:
        if value is None or value == "":
            raise _bad(f"{name}: this field is required.")
        if not isinstance(value, str):
            raise _bad(
                f"{name}: must be a string, got {_type_name(value)} "
                "(19-digit IDs lose precision as numbers)."
            )
        return value

    @staticmethod
    def _str_value(value: object, name: str) -> str:
        if not isinstance(value, str) or not value:
            raise _bad(f"{name}: a non-empty string is required, got {_type_name(value)}.")
        return value

    @staticmethod
    def _int_param(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _bad(f"{name}: must be an integer between {lo} and {hi}.") from None
        if not lo <= value <= hi:
            raise _bad(f"{name}: must be between {lo} and {hi}, got {value}.")
        return value

    @staticmethod
    def _id_list_param(query: dict[str, str], name: str, *, required: bool) -> list[str] | None:
        raw = query.get(name)
        if raw is None or raw == "":
            if required:
                raise _bad(f"{name}: this field is required (a JSON list of ID strings).")
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _bad(
                f'{name}: must be a JSON list of ID strings, such as ["7012345678901234567"].'
            )
        if not 1 <= len(value) <= 100:
            raise _bad(f"{name}: must hold 1 to 100 IDs, got {len(value)}.")
        return value
