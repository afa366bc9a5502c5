"""A local emulator of the TikTok Business API v1.3: the endpoints this project calls.

It follows ``tiktok-api.md`` (paths, envelope, codes, limits, rate limiting) so that code
tested against it works against the real service, and it keeps the state a test needs to
check: audiences with their member hashes, events received, calls per endpoint. Switches
inject the faults a client must survive (5xx, rate-limit bursts, latency, answers that come
after the client gave up, revoked tokens, Analyst users).

Stdlib only: it runs inside unit tests, in the local demo and as ``tiktok-destination
emulator``. It never prints request lines or bodies: query strings carry app secrets and
bodies carry hashed personal data.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import math
import os
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

API_PREFIX = "/open_api/v1.3/"
PORTAL_PATH = "/portal/auth"
#: read-only JSON summary (no hashes) for the demo, which runs the emulator in another process
STATE_PATH = "/_emulator/state"

# The emulator's picture of TikTok is written here from TikTok's sources, never imported
# from the package it tests: a guess shared by the client and the emulator would pass every
# test and still be wrong. Each table names its source; docs/tiktok-contract.md has more.

#: id_schema types and the hex length of their hashes. EMAIL_SHA256, PHONE_SHA256 and
#: IDFA_SHA256 appear in the segment/mapping body of Segment's TikTok Audiences destination
#: (segmentio/action-destinations, packages/destination-actions/src/destinations/
#: tiktok-audiences/addUser/__tests__/index.test.ts); the AAID and MD5 types are from
#: tiktok-api.md only (no repository source found).
ID_TYPES: dict[str, int] = {
    "EMAIL_SHA256": 64,
    "PHONE_SHA256": 64,
    "IDFA_SHA256": 64,
    "AAID_SHA256": 64,
    "IDFA_MD5": 32,
    "AAID_MD5": 32,
}

#: event names TikTok accepts in event/track. Sources, by name:
#: - CompletePayment, Contact, Subscribe, SubmitForm: the offline presets of Segment's
#:   tiktok-offline-conversions/index.ts and RudderStack's EVENT_NAME_MAPPING
#:   (rudderlabs/rudder-transformer, src/v0/destinations/tiktok_ads_offline_events/config.js);
#: - ViewContent, ClickButton, Search, AddToWishlist, AddToCart, InitiateCheckout,
#:   AddPaymentInfo, PlaceAnOrder, Download, CompleteRegistration (and the four above): the
#:   web event constants of stephane-monnot/tiktok-php-sdk, src/Constants/EventName.php (a
#:   third-party SDK); ViewContent, Search and AddPaymentInfo also in Segment's
#:   tiktok-conversions/index.ts presets;
#: - Lead, Purchase: from tiktok-api.md (TikTok's Events API 2.0 page); no repository source
#:   was found for them.
STANDARD_EVENTS: frozenset[str] = frozenset(
    {
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "ClickButton",
        "CompletePayment",
        "CompleteRegistration",
        "Contact",
        "Download",
        "InitiateCheckout",
        "Lead",
        "PlaceAnOrder",
        "Purchase",
        "Search",
        "SubmitForm",
        "Subscribe",
        "ViewContent",
    }
)

#: currencies TikTok accepts for properties.currency: TikTok's own Business SDK,
#: tiktok/tiktok-business-ios-sdk, TikTokBusinessSDK/TikTokConstants.m (TTCurrency, 67 codes)
CURRENCIES: frozenset[str] = frozenset(
    """
    AED ARS AUD BDT BGN BHD BIF BOB BRL CAD CHF CLP CNY COP CRC CZK DKK DZD EGP EUR GBP GTQ
    HKD HNL HUF IDR ILS INR IQD ISK JOD JPY KES KHR KRW KWD KZT LBP MAD MOP MXN MYR NGN NIO
    NOK NZD OMR PEN PHP PKR PLN PYG QAR RON RUB SAR SEK SGD THB TRY TWD TZS UAH USD VES VND
    ZAR
    """.split()  # noqa: SIM905 - 67 codes read better as a block than as a list
)

ROLES = ("ADMIN", "OPERATOR", "ANALYST")
# Limits: from tiktok-api.md (TikTok's Events API 2.0, segment/audience and OAuth pages);
# no repository source was found for these numbers.
MAX_EVENTS_PER_REQUEST = 1000
MAX_AUDIENCE_NAME = 70
DEDUP_WINDOW_SECONDS = 48 * 3600
AUTH_CODE_TTL_SECONDS = 3600
#: TikTok answers permission scopes as numeric ids
OAUTH_SCOPE: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
#: a body larger than this is refused before parsing (10,000 mapping rows are ~2 MB)
MAX_BODY_BYTES = 64 * 1024 * 1024

#: ``dump_state`` layout; bump it when the layout changes so an old file is refused, not misread
STATE_FORMAT = "tiktok-emulator-state"
STATE_VERSION = 1

USER_KEYS = frozenset(
    {"email", "phone", "external_id", "ttclid", "ttp", "ip", "user_agent", "locale"}
)
CONTENT_TYPES = frozenset({"product", "product_group"})

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX = {64: _SHA256, 32: re.compile(r"[0-9a-f]{32}")}

#: the codes TikTok's official SDK names as throttling (tiktok_code.py below): 40100
#: REQUEST_TOO_FREQUENT, 40132 REQUEST_FREQUENCY_LIMITED, and 40016 BIZ_FC_ERROR ("FC" read
#: as frequency control; the SDK has no text for it). A client must wait and retry them.
THROTTLE_CODES: frozenset[int] = frozenset({40016, 40100, 40132})

#: texts used when a fault is injected by code. The codes and their meanings are those of
#: TikTok's official SDK (tiktok/tiktok-business-api-sdk,
#: python_sdk/business_api_client/tiktok_business/tiktok_code.py), which has names only: the
#: texts are ours, except 40100's, which tiktok-api.md quotes.
FAULT_MESSAGES: dict[int, str] = {
    40000: "Invalid parameters.",
    40001: "No permission to operate. Please check your role on the advertiser.",
    40002: "Invalid parameters.",
    40007: "The object does not exist.",
    40011: "Too many IDs in one request.",
    40016: "Requests made too frequently. Please try again later.",
    40100: "Requests made too frequently",
    40102: "Access token has expired.",
    40104: "Access token is empty.",
    40105: "Access token is invalid or has been revoked.",
    40106: "Access token does not belong to this user.",
    40132: "Request frequency limited. Please try again later.",
    40202: "Write conflict: the object is being modified by another request. Retry later.",
    40300: "Advertiser does not exist or has been deleted.",
    40301: "Advertiser role error.",
    50000: "System error. Please try again later.",
    50002: "Service is busy. Please try again later.",
}

_HTTP_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}

Handler = Callable[["TikTokEmulator", "_Request"], dict[str, Any]]


class _ApiError(Exception):
    """A TikTok error answer: HTTP 200 with a non-zero code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> _ApiError:
    return _ApiError(40002, message)


def _refuse_constant(name: str) -> float:
    # Python's json reads NaN/Infinity; strict JSON parsers (TikTok's) refuse them.
    raise ValueError(f"{name} is not JSON")


def _new_id() -> str:
    """A 19-digit numeric string, like TikTok's advertiser / audience / event set ids."""
    return str(secrets.randbelow(9 * 10**18) + 10**18)


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class _Advertiser:
    advertiser_id: str
    name: str
    event_sets: dict[str, str] = field(default_factory=dict)


@dataclass
class _Audience:
    audience_id: str
    advertiser_id: str
    name: str
    created: float
    members: set[str] = field(default_factory=set)
    is_valid: bool = True
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Token:
    token: str
    advertiser_ids: list[str]
    role: str
    user: dict[str, Any]
    revoked: bool = False


@dataclass
class _AuthCode:
    advertiser_ids: list[str]
    role: str
    user: dict[str, Any] | None
    issued: float
    used: bool = False


@dataclass
class _Fault:
    code: int | None
    http_status: int | None
    remaining: int


@dataclass
class _Delay:
    seconds: float
    remaining: int


@dataclass
class _Request:
    method: str
    endpoint: str
    query: dict[str, str]
    access_token: str | None
    content_type: str
    body: bytes


@dataclass
class _Response:
    status: int
    body: bytes
    log_code: int
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class TikTokEmulator:
    """An in-process TikTok Business API server.

    ``emu = TikTokEmulator(); base_url = emu.start()`` (or ``with TikTokEmulator() as emu``)
    serves ``http://127.0.0.1:<port>/open_api/v1.3/``. Register the world first:
    ``set_app``, ``add_advertiser``, ``add_event_set``, ``add_token`` / ``authorize``.

    Options:
        qps_limit: more than this many admitted API requests in any rolling second answer
            40100; None (default) switches rate limiting off.
        audience_limit: custom audiences per advertiser (TikTok: 400).
        max_ids_per_request: ``segment/mapping`` rows per request; more answer 40011.
        latency: seconds added to every request (also settable as ``emu.latency``).
        clock: wall-clock function (seconds); tests swap it to move time (auth_code expiry,
            48 h event deduplication, the rate-limit window).
        app_id, secret: shortcut for ``set_app``.
        portal_advertiser_ids: advertisers ``/portal/auth`` grants (None: all known).
        portal_role: the role ``/portal/auth`` grants.
        max_event_age_days: when set, events older than this are rejected (off by default).
    """

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
        self._window: deque[float] = deque()

        #: requests received per path ("segment/mapping/"), rejected ones included
        self.calls: Counter[str] = Counter()
        #: (method, path, code): code is the TikTok code, or the HTTP status when the
        #: answer is not an envelope (404, 405, injected 5xx, portal redirects)
        self.calls_log: list[tuple[str, str, int]] = []
        #: every accepted event, duplicates included (``duplicate`` says which)
        self.received_events: list[dict[str, Any]] = []
        #: the deduplicated view: (event_set_id, event, event_id) -> first event in 48 h
        self.events_by_key: dict[tuple[str, str, str], dict[str, Any]] = {}

        self._persist_path: Path | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None
        if app_id is not None:
            self.set_app(app_id, secret or "")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving in a background thread; answer the base URL (ends with a slash)."""
        if self._server is not None:
            raise RuntimeError("TikTokEmulator is already running")
        server = _Server((self.host, self.port), _RequestHandler, self)
        self._server = server
        self.port = server.server_address[1]
        host = self.host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "127.0.0.1"
        self.base_url = f"http://{host}:{self.port}{API_PREFIX}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tiktok-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TikTokEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def portal_url(self) -> str:
        """The emulated authorization page (``/portal/auth``) of this server."""
        if self.base_url is None:
            raise RuntimeError("start() the emulator first")
        return self.base_url[: -len(API_PREFIX)] + PORTAL_PATH

    # ------------------------------------------------------------------ registration
    def set_app(self, app_id: str, secret: str, *, redirect_uri: str | None = None) -> None:
        """Register a developer app. With ``redirect_uri``, the portal accepts only that one."""
        with self._lock:
            self._apps[str(app_id)] = (secret, redirect_uri)

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

    def set_audience_valid(self, audience_id: str, valid: bool) -> None:
        """Simulate TikTok still calculating an audience (``is_valid`` false)."""
        with self._lock:
            self._audiences[audience_id].is_valid = valid

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

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        path: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` requests to ``path`` (e.g. "segment/mapping/") fail.

        With ``code``: HTTP 200 and that TikTok code. With ``http_status``: that HTTP status
        (e.g. 503) and no envelope, like a gateway error.
        """
        if (code is None) == (http_status is None):
            raise ValueError("fail_next needs exactly one of code= or http_status=")
        if times < 1:
            raise ValueError("times must be at least 1")
        key = _normalize_path(path)
        with self._lock:
            self._faults.setdefault(key, deque()).append(_Fault(code, http_status, times))

    def delay_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold back the answer to the next ``times`` requests to ``path`` by ``seconds``.

        The request takes effect first and only its answer is late, as when TikTok creates
        an audience but answers after the client's timeout (unlike ``latency``, which
        waits before handling every request).
        """
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        if times < 1:
            raise ValueError("times must be at least 1")
        key = _normalize_path(path)
        with self._lock:
            self._delays.setdefault(key, deque()).append(_Delay(seconds, times))

    def clear_faults(self) -> None:
        """Drop pending fail_next faults and delays, latency and the rate limit window."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._window.clear()
            self.latency = 0.0

    def _take_fault(self, key: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(key)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            return fault

    def _take_delay(self, key: str) -> float:
        with self._lock:
            queue = self._delays.get(key)
            if not queue:
                return 0.0
            delay = queue[0]
            delay.remaining -= 1
            if delay.remaining <= 0:
                queue.popleft()
            return delay.seconds

    def _admit(self) -> bool:
        """Rolling one-second window; only admitted requests count, so N per second get in."""
        limit = self.qps_limit
        if limit is None:
            return True
        with self._lock:
            now = self.clock()
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= limit:
                return False
            self._window.append(now)
            return True

    # ------------------------------------------------------------------ inspection
    def audiences(self, advertiser_id: str) -> list[dict[str, Any]]:
        """The advertiser's audiences in creation order: id, name, members (copies)."""
        with self._lock:
            return [
                {
                    "id": a.audience_id,
                    "name": a.name,
                    "members": set(a.members),
                    "create_time": _fmt_time(a.created),
                }
                for a in self._audiences.values()
                if a.advertiser_id == advertiser_id
            ]

    def audience_members(self, audience_id: str) -> set[str]:
        """Members of one audience as "EMAIL_SHA256:<hash>" strings (a copy)."""
        with self._lock:
            return set(self._audiences[audience_id].members)

    def reset_counters(self) -> None:
        """Forget calls, calls_log and the rate-limit window (not state or events)."""
        with self._lock:
            self.calls.clear()
            self.calls_log.clear()
            self._window.clear()

    def state_summary(self) -> dict[str, Any]:
        """A JSON-ready summary without hashes (served at ``/_emulator/state``)."""
        with self._lock:
            return {
                "advertisers": [
                    {
                        "advertiser_id": adv.advertiser_id,
                        "name": adv.name,
                        "audiences": [
                            {
                                "audience_id": a.audience_id,
                                "name": a.name,
                                "cover_num": len(a.members),
                            }
                            for a in self._audiences.values()
                            if a.advertiser_id == adv.advertiser_id
                        ],
                        "event_sets": [
                            {"event_set_id": k, "name": v} for k, v in adv.event_sets.items()
                        ],
                    }
                    for adv in self._advertisers.values()
                ],
                "events_received": len(self.received_events),
                "events_unique": len(self.events_by_key),
                "calls": dict(self.calls),
            }

    # ------------------------------------------------------------------ persistence
    def dump_state(self) -> dict[str, Any]:
        """The emulated world as JSON-ready data (deep copies), for ``load_state`` / ``save``.

        Holds apps, advertisers, event sets, tokens, pending auth codes, audiences (members
        sorted), received events and the deduplication index. Options, injected faults, call
        counters and the rate-limit window are per process and are not part of it. The dump
        holds app secrets and access tokens: keep it out of logs.
        """
        with self._lock:
            positions = {id(rec): i for i, rec in enumerate(self.received_events)}
            dedup: list[dict[str, Any]] = []
            for (set_id, name, event_id), rec in self.events_by_key.items():
                entry: dict[str, Any] = {
                    "event_set_id": set_id,
                    "event": name,
                    "event_id": event_id,
                }
                # the index shares its records with received_events; a position keeps that
                # sharing across a reload (a record no longer in the list is stored whole)
                pos = positions.get(id(rec))
                if pos is not None:
                    entry["received_index"] = pos
                else:
                    entry["record"] = copy.deepcopy(rec)
                dedup.append(entry)
            return {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "apps": [
                    {"app_id": app_id, "secret": secret, "redirect_uri": redirect}
                    for app_id, (secret, redirect) in self._apps.items()
                ],
                "advertisers": [
                    {
                        "advertiser_id": adv.advertiser_id,
                        "name": adv.name,
                        "event_sets": [
                            {"event_set_id": k, "name": v} for k, v in adv.event_sets.items()
                        ],
                    }
                    for adv in self._advertisers.values()
                ],
                "event_sets": [
                    {"event_set_id": k, "advertiser_id": v} for k, v in self._event_sets.items()
                ],
                "tokens": [
                    {
                        "token": tok.token,
                        "advertiser_ids": list(tok.advertiser_ids),
                        "role": tok.role,
                        "user": copy.deepcopy(tok.user),
                        "revoked": tok.revoked,
                    }
                    for tok in self._tokens.values()
                ],
                "auth_codes": [
                    {
                        "auth_code": code,
                        "advertiser_ids": list(grant.advertiser_ids),
                        "role": grant.role,
                        "user": copy.deepcopy(grant.user),
                        "issued": grant.issued,
                        "used": grant.used,
                    }
                    for code, grant in self._auth_codes.items()
                ],
                "audiences": [
                    {
                        "audience_id": aud.audience_id,
                        "advertiser_id": aud.advertiser_id,
                        "name": aud.name,
                        "created": aud.created,
                        "members": sorted(aud.members),
                        "is_valid": aud.is_valid,
                        "history": copy.deepcopy(aud.history),
                    }
                    for aud in self._audiences.values()
                ],
                "received_events": copy.deepcopy(self.received_events),
                "events_by_key": dedup,
            }

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the emulated world with a ``dump_state`` one; the old world is dropped.

        Everything is checked before anything changes, so a bad dump leaves the current state
        as it was. Faults, counters and options stay as they are.

        Raises:
            ValueError: ``state`` is not a dump, is of another version, or is malformed.
        """
        r = _StateReader()
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"emulator state: not a TikTokEmulator state (expected format {STATE_FORMAT!r}); "
                "pass what dump_state() returned or a file written by save()."
            )
        version = state.get("version")
        if version != STATE_VERSION:
            raise ValueError(
                f"emulator state: version {version!r} is not supported; this emulator reads "
                f"version {STATE_VERSION}. Delete the state file (or directory) to start fresh."
            )

        apps: dict[str, tuple[str, str | None]] = {}
        for where, item in r.items(state, "apps"):
            apps[r.string(item, "app_id", where)] = (
                r.typed(item, "secret", str, where),
                r.optional(item, "redirect_uri", str, where),
            )

        advertisers: dict[str, _Advertiser] = {}
        for where, item in r.items(state, "advertisers"):
            adv = _Advertiser(
                r.string(item, "advertiser_id", where), r.typed(item, "name", str, where)
            )
            for spot, es in r.items(item, "event_sets", where):
                adv.event_sets[r.string(es, "event_set_id", spot)] = r.typed(es, "name", str, spot)
            advertisers[adv.advertiser_id] = adv

        event_sets: dict[str, str] = {}
        for where, item in r.items(state, "event_sets"):
            event_sets[r.string(item, "event_set_id", where)] = r.known(
                item, "advertiser_id", advertisers, where
            )

        tokens: dict[str, _Token] = {}
        for where, item in r.items(state, "tokens"):
            tok = _Token(
                r.string(item, "token", where),
                r.id_list(item, "advertiser_ids", advertisers, where),
                r.role(item, where),
                r.typed(item, "user", dict, where),
                r.typed(item, "revoked", bool, where),
            )
            tokens[tok.token] = tok

        auth_codes: dict[str, _AuthCode] = {}
        for where, item in r.items(state, "auth_codes"):
            auth_codes[r.string(item, "auth_code", where)] = _AuthCode(
                r.id_list(item, "advertiser_ids", advertisers, where),
                r.role(item, where),
                r.optional(item, "user", dict, where),
                r.number(item, "issued", where),
                r.typed(item, "used", bool, where),
            )

        audiences: dict[str, _Audience] = {}
        for where, item in r.items(state, "audiences"):
            members = r.typed(item, "members", list, where)
            if not all(isinstance(m, str) for m in members):
                raise r.error(f"{where}.members", 'a list of "TYPE:hash" strings')
            history = r.typed(item, "history", list, where)
            if not all(isinstance(h, dict) for h in history):
                raise r.error(f"{where}.history", "a list of objects")
            aud = _Audience(
                r.string(item, "audience_id", where),
                r.known(item, "advertiser_id", advertisers, where),
                r.typed(item, "name", str, where),
                r.number(item, "created", where),
                set(members),
                r.typed(item, "is_valid", bool, where),
                copy.deepcopy(history),
            )
            audiences[aud.audience_id] = aud

        received: list[dict[str, Any]] = []
        for where, item in r.items(state, "received_events"):
            for key in ("event_set_id", "event", "event_id"):
                r.string(item, key, where)
            r.number(item, "received_at", where)
            received.append(copy.deepcopy(item))

        by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
        for where, item in r.items(state, "events_by_key"):
            key3 = (
                r.string(item, "event_set_id", where),
                r.string(item, "event", where),
                r.string(item, "event_id", where),
            )
            pos = item.get("received_index")
            if pos is not None:
                if type(pos) is not int or not 0 <= pos < len(received):
                    raise r.error(
                        f"{where}.received_index",
                        f"a position in received_events (0-{len(received) - 1})",
                    )
                rec = received[pos]
            else:
                rec = copy.deepcopy(r.typed(item, "record", dict, where))
                r.number(rec, "received_at", f"{where}.record")
            by_key[key3] = rec

        with self._lock:
            self._apps = apps
            self._advertisers = advertisers
            self._event_sets = event_sets
            self._tokens = tokens
            self._auth_codes = auth_codes
            self._audiences = audiences
            # in place: tests and callers may hold references to these public containers
            self.received_events[:] = received
            self.events_by_key.clear()
            self.events_by_key.update(by_key)

    def save(self, path: Path | str) -> None:
        """Write ``dump_state()`` to ``path`` as JSON, atomically (temp file + rename).

        A reader sees the old file or the new one, never half of one. The file is created
        with mode 0600 because it holds the app secret and access tokens. Missing parent
        directories are created.
        """
        path = Path(path)
        text = json.dumps(self.dump_state(), indent=1, sort_keys=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if hasattr(os, "O_DIRECTORY"):  # POSIX: the rename itself must survive a power cut too
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def persist(self, path: Path | str) -> None:
        """Save the state to ``path`` now, and after every request that changes it.

        The change is saved before the answer goes out, as a real service acknowledges only
        what it has stored: a client never loses an acknowledged write, even when this process
        is killed right after. A change that cannot be saved (disk full) is undone and the
        request answers HTTP 503, so the client retries it.
        """
        path = Path(path)
        with self._lock:
            if path.parent.is_dir():
                # temp files of saves that a kill interrupted
                for stale in path.parent.glob(f".{path.name}.*.tmp"):
                    with contextlib.suppress(OSError):
                        stale.unlink()
            self.save(path)
            self._persist_path = path

    def _commit(self) -> bool:
        """Save a change when persisting (call with the lock held); False: it was undone."""
        path = self._persist_path
        if path is None:
            return True
        try:
            self.save(path)
        except OSError:
            with contextlib.suppress(OSError, ValueError):
                self.load(path)  # back to the last state a client was told about
            return False
        return True

    def load(self, path: Path | str) -> bool:
        """Replace the state with the one ``save`` wrote to ``path``.

        Answers False, changing nothing, when ``path`` does not exist (a first run), so a
        caller can seed a fresh world instead.

        Raises:
            ValueError: the file is not valid JSON, not an emulator state, or of another
                version (the message names the file).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return False
        try:
            state = json.loads(text)
        except ValueError as err:
            pos = (
                f" (line {err.lineno}, column {err.colno})"
                if isinstance(err, json.JSONDecodeError)
                else ""
            )
            raise ValueError(
                f"{path}: not valid JSON{pos}; it is not a file written by "
                "TikTokEmulator.save. Delete it to start with a fresh emulator state."
            ) from None
        try:
            self.load_state(state)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return True

    # ------------------------------------------------------------------ dispatch
    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        access_token: str | None,
        content_type: str,
        body: bytes,
    ) -> _Response:
        if path == STATE_PATH and method == "GET":
            payload = json.dumps(self.state_summary()).encode()
            return _Response(200, payload, 200)
        if path == PORTAL_PATH:
            key = "portal/auth"
            with self._lock:
                self.calls[key] += 1
            if method == "GET":
                with self._lock:
                    resp = self._portal(query)
                    if resp.status == 302 and not self._commit():
                        resp = _html(503, "The authorization could not be stored; try again.")
            else:
                resp = self._http_error(405, "Method Not Allowed", allow="GET")
            self._log(method, key, resp.log_code)
            return resp

        endpoint = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else None
        key = endpoint if endpoint is not None else path
        with self._lock:
            self.calls[key] += 1
        routes = _ROUTES.get(endpoint) if endpoint is not None else None
        if routes is None:
            hint = ""
            if endpoint is not None and (endpoint + "/") in _ROUTES:
                hint = " Paths end with a slash: did you mean " + API_PREFIX + endpoint + "/ ?"
            resp = self._http_error(404, f"Not Found: {path}.{hint}")
            self._log(method, key, 404)
            return resp
        handler = routes.get(method)
        if handler is None:
            resp = self._http_error(
                405, f"Method {method} not allowed on {path}", allow=", ".join(routes)
            )
            self._log(method, key, 405)
            return resp

        latency = self.latency
        if latency > 0:
            time.sleep(latency)

        held = self._take_delay(key)
        resp = self._answer(method, key, query, access_token, content_type, body, handler)
        if held > 0:
            time.sleep(held)
        return resp

    def _answer(
        self,
        method: str,
        key: str,
        query: dict[str, str],
        access_token: str | None,
        content_type: str,
        body: bytes,
        handler: Handler,
    ) -> _Response:
        fault = self._take_fault(key)
        if fault is not None and fault.http_status is not None:
            status = fault.http_status
            reason = _HTTP_REASONS.get(status, "Error")
            html = f"<html><body><h1>{status} {reason}</h1></body></html>"
            self._log(method, key, status)
            return _Response(status, html.encode(), status, content_type="text/html")
        if fault is not None and fault.code is not None:
            msg = FAULT_MESSAGES.get(fault.code, f"Injected error {fault.code}.")
            self._log(method, key, fault.code)
            return _envelope(fault.code, msg, {})

        if not self._admit():
            self._log(method, key, 40100)
            return _envelope(40100, "Requests made too frequently", {})

        req = _Request(method, key, query, access_token, content_type, body)
        try:
            with self._lock:
                data = handler(self, req)
                stored = method != "POST" or self._commit()
        except _ApiError as err:
            self._log(method, key, err.code)
            return _envelope(err.code, err.message, {})
        if not stored:
            self._log(method, key, 503)
            return self._http_error(503, "The change could not be stored; try again.")
        self._log(method, key, 0)
        return _envelope(0, "OK", data)

    def _log(self, method: str, key: str, code: int) -> None:
        with self._lock:
            self.calls_log.append((method, key, code))

    @staticmethod
    def _http_error(status: int, message: str, *, allow: str | None = None) -> _Response:
        body = {"code": status, "message": message, "request_id": secrets.token_hex(16), "data": {}}
        headers = [("Allow", allow)] if allow else []
        return _Response(status, json.dumps(body).encode(), status, headers=headers)

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

    # ------------------------------------------------------------------ audiences
    def _audience_item(self, aud: _Audience) -> dict[str, Any]:
        return {
            "audience_id": aud.audience_id,
            "name": aud.name,
            "audience_type": "Partner",
            "cover_num": len(aud.members),
            "is_valid": aud.is_valid,
            "is_expiring": False,
            "create_time": _fmt_time(aud.created),
            "expired_time": _fmt_time(aud.created + 365 * 86400),
        }

    def _ep_audience_list(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        adv_id = self._id_value(req.query.get("advertiser_id"), "advertiser_id")
        self._advertiser_access(tok, adv_id, write=False)
        ids = self._id_list_param(req.query, "custom_audience_ids", required=False)
        page = self._int_param(req.query, "page", 1, 1, 10**9)
        page_size = self._int_param(req.query, "page_size", 10, 1, 100)
        # TikTok lists the newest first
        items = [a for a in reversed(self._audiences.values()) if a.advertiser_id == adv_id]
        if ids is not None:
            wanted = set(ids)
            items = [a for a in items if a.audience_id in wanted]
        total = len(items)
        chunk = items[(page - 1) * page_size : page * page_size]
        return {
            "page_info": {
                "page": page,
                "page_size": page_size,
                "total_number": total,
                "total_page": math.ceil(total / page_size),
            },
            "list": [self._audience_item(a) for a in chunk],
        }

    def _ep_audience_get(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        adv_id = self._id_value(req.query.get("advertiser_id"), "advertiser_id")
        self._advertiser_access(tok, adv_id, write=False)
        ids = self._id_list_param(req.query, "custom_audience_ids", required=True) or []
        out = []
        for aid in ids:
            aud = self._audiences.get(aid)
            if aud is None or aud.advertiser_id != adv_id:
                raise _ApiError(
                    40007, f"Custom audience {aid} does not exist for advertiser {adv_id}."
                )
            details = self._audience_item(aud)
            details["advertiser_id"] = adv_id
            out.append({"audience_details": details, "audience_history": list(aud.history)})
        return {"list": out}

    def _ep_segment_audience(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        body = self._json_body(req)
        adv_id = self._id_value(body.get("advertiser_id"), "advertiser_id")
        self._advertiser_access(tok, adv_id, write=True)
        action = body.get("action")
        if action == "create":
            name = self._str_value(body.get("custom_audience_name"), "custom_audience_name")
            count = sum(1 for a in self._audiences.values() if a.advertiser_id == adv_id)
            if count >= self.audience_limit:
                raise _bad(
                    f"The number of custom audiences has reached the limit ({self.audience_limit})"
                )
            if len(name) > MAX_AUDIENCE_NAME:
                name = name[: MAX_AUDIENCE_NAME - 3] + "..."
            aud_id = _new_id()
            while aud_id in self._audiences:
                aud_id = _new_id()
            now = self.clock()
            aud = _Audience(aud_id, adv_id, name, now)
            aud.history.append(
                {
                    "action": "Create",
                    "action_detail": "Created via segment API",
                    "opt_time": _fmt_time(now),
                }
            )
            self._audiences[aud_id] = aud
            return {"audience_id": aud_id}
        if action == "delete":
            aud_id = self._id_value(body.get("delete_audience_id"), "delete_audience_id")
            doomed = self._audiences.get(aud_id)
            if doomed is None or doomed.advertiser_id != adv_id:
                raise _ApiError(
                    40007, f"Custom audience {aud_id} does not exist for advertiser {adv_id}."
                )
            del self._audiences[aud_id]
            return {}
        raise _bad('action: must be "create" or "delete".')

    def _ep_segment_mapping(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        body = self._json_body(req)
        adv_ids = body.get("advertiser_ids")
        if (
            not isinstance(adv_ids, list)
            or len(adv_ids) != 1
            or not isinstance(adv_ids[0], str)
            or not adv_ids[0]
        ):
            raise _bad("advertiser_ids: must be a list with exactly one advertiser ID string.")
        adv_id = adv_ids[0]
        self._advertiser_access(tok, adv_id, write=True)

        action = body.get("action")
        if action not in ("add", "delete"):
            raise _bad('action: must be "add" or "delete".')

        schema = body.get("id_schema")
        if not isinstance(schema, list) or not schema:
            raise _bad(
                "id_schema: must be a non-empty list of ID types from " + ", ".join(ID_TYPES) + "."
            )
        for k, typ in enumerate(schema):
            if typ not in ID_TYPES:
                raise _bad(
                    f"id_schema[{k}]: unsupported ID type {typ!r}; use one of "
                    + ", ".join(ID_TYPES)
                    + "."
                )
        if len(set(schema)) != len(schema):
            raise _bad("id_schema: ID types must be distinct; a type is listed twice.")

        rows = body.get("batch_data")
        if not isinstance(rows, list) or not rows:
            raise _bad("batch_data: must be a non-empty list of rows aligned with id_schema.")
        if len(rows) > self.max_ids_per_request:
            raise _ApiError(
                40011,
                f"Too many IDs in one request: batch_data has {len(rows)} rows, the maximum is "
                f"{self.max_ids_per_request}. Split the batch.",
            )

        # validate everything before touching state: TikTok applies a request whole or not at all
        changes: list[tuple[str, str]] = []  # (audience_id, "TYPE:hash")
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise _bad(f"batch_data[{i}]: must be a list aligned with id_schema.")
            if len(row) != len(schema):
                raise _bad(
                    f"batch_data[{i}]: has {len(row)} entries but id_schema has {len(schema)}; "
                    "each row must be aligned with id_schema (use {} for a missing value)."
                )
            for j, entry in enumerate(row):
                where = f"batch_data[{i}][{j}]"
                if not isinstance(entry, dict):
                    raise _bad(f'{where}: must be an object {{"id", "audience_ids"}} or {{}}.')
                if not entry:
                    continue
                extra = set(entry) - {"id", "audience_ids"}
                if extra or "id" not in entry or "audience_ids" not in entry:
                    raise _bad(
                        f'{where}: must have exactly the keys "id" and "audience_ids" (or be {{}}).'
                    )
                typ = schema[j]
                length = ID_TYPES[typ]
                hashed = entry["id"]
                if not isinstance(hashed, str) or not _HEX[length].fullmatch(hashed):
                    kind = "SHA-256" if length == 64 else "MD5"
                    raise _bad(
                        f"{where}.id: {typ} must be {length} lowercase hex characters (a {kind} "
                        "digest); normalize and hash the value before sending."
                    )
                aud_ids = entry["audience_ids"]
                if not isinstance(aud_ids, list) or not aud_ids:
                    raise _bad(f"{where}.audience_ids: must be a non-empty list of audience IDs.")
                for aid in aud_ids:
                    if not isinstance(aid, str):
                        raise _bad(
                            f"{where}.audience_ids: IDs must be strings, got {_type_name(aid)}."
                        )
                    aud = self._audiences.get(aid)
                    if aud is None or aud.advertiser_id != adv_id:
                        raise _ApiError(
                            40007,
                            f"{where}.audience_ids: custom audience {aid} does not exist for "
                            f"advertiser {adv_id}.",
                        )
                    changes.append((aid, f"{typ}:{hashed}"))

        touched: Counter[str] = Counter()
        for aid, member in changes:
            members = self._audiences[aid].members
            if action == "add":
                members.add(member)
            else:
                members.discard(member)
            touched[aid] += 1
        now = _fmt_time(self.clock())
        verb = "Added" if action == "add" else "Removed"
        for aid, n in touched.items():
            self._audiences[aid].history.append(
                {"action": "Update", "action_detail": f"{verb} {n} identifiers", "opt_time": now}
            )
        return {}

    # ------------------------------------------------------------------ events
    def _ep_offline_get(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        adv_id = self._id_value(req.query.get("advertiser_id"), "advertiser_id")
        adv = self._advertiser_access(tok, adv_id, write=False)
        ids = self._id_list_param(req.query, "event_set_ids", required=False)
        sets = adv.event_sets
        chosen = list(sets) if ids is None else [i for i in ids if i in sets]
        return {"event_set_list": [{"event_set_id": i, "name": sets[i]} for i in chosen]}

    def _ep_event_track(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        body = self._json_body(req)
        if body.get("event_source") != "offline":
            raise _bad(
                'event_source: must be "offline" (this project sends offline events to an '
                "offline event set)."
            )
        set_id = self._id_value(body.get("event_source_id"), "event_source_id")
        adv_id = self._event_sets.get(set_id)
        if adv_id is None:
            raise _bad(
                f"event_source_id: {set_id} is not an offline event set. Check the ID under "
                "Assets > Events > Offline > Manage in TikTok Ads Manager."
            )
        if adv_id not in tok.advertiser_ids:
            raise _ApiError(
                40300,
                f"No permission to event set {set_id}: its advertiser is not authorized for "
                "this access token.",
            )
        self._advertiser_access(tok, adv_id, write=True)
        test_code = body.get("test_event_code")
        if test_code is not None and not isinstance(test_code, str):
            raise _bad("test_event_code: must be a string.")
        events = body.get("data")
        if not isinstance(events, list):
            raise _bad("data: must be a list of 1 to 1000 events.")
        if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
            raise _bad(
                f"data: must hold 1 to {MAX_EVENTS_PER_REQUEST} events, got {len(events)}. "
                "Split the batch."
            )
        now = self.clock()
        for i, ev in enumerate(events):
            self._validate_event(i, ev, now)

        for ev in events:
            record = {
                "event_set_id": set_id,
                "event": ev["event"],
                "event_id": ev["event_id"],
                "event_time": ev["event_time"],
                "user": ev.get("user"),
                "properties": ev.get("properties"),
                "test_event_code": test_code,
                "received_at": now,
            }
            key = (set_id, ev["event"], ev["event_id"])
            first = self.events_by_key.get(key)
            duplicate = first is not None and now - first["received_at"] < DEDUP_WINDOW_SECONDS
            record["duplicate"] = duplicate
            self.received_events.append(record)
            if not duplicate:
                self.events_by_key[key] = record
        return {}

    def _validate_event(self, i: int, ev: object, now: float) -> None:
        where = f"data[{i}]"
        if not isinstance(ev, dict):
            raise _bad(f"{where}: must be an event object.")
        name = ev.get("event")
        if not isinstance(name, str) or name not in STANDARD_EVENTS:
            shown = repr(name) if isinstance(name, str) else _type_name(name)
            raise _bad(
                f"{where}.event: {shown} is not a supported standard event; use one of "
                + ", ".join(sorted(STANDARD_EVENTS))
                + "."
            )
        ts = ev.get("event_time")
        if type(ts) is not int:
            raise _bad(
                f"{where}.event_time: must be an integer of Unix seconds (UTC), "
                f"got {_type_name(ts)}."
            )
        if ts <= 0 or ts > 10**11:
            raise _bad(
                f"{where}.event_time: {ts} is not a Unix time in seconds (milliseconds are not "
                "accepted)."
            )
        if self.max_event_age_days is not None and now - ts > self.max_event_age_days * 86400:
            raise _bad(
                f"{where}.event_time: the event is older than {self.max_event_age_days} days."
            )
        event_id = ev.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise _bad(f"{where}.event_id: a non-empty string is required.")

        user = ev.get("user")
        if not isinstance(user, dict):
            raise _bad(f"{where}.user: an object with email and/or phone hashes is required.")
        unknown = set(user) - USER_KEYS
        if unknown:
            raise _bad(
                f"{where}.user: unsupported key(s) {', '.join(sorted(unknown))}; use "
                + ", ".join(sorted(USER_KEYS))
                + "."
            )
        if not any(user.get(k) for k in ("email", "phone", "external_id")):
            raise _bad(f"{where}.user: at least one of email, phone, external_id is required.")
        for key in ("email", "phone", "external_id"):
            if key in user:
                _check_hashes(f"{where}.user.{key}", user[key])

        props = ev.get("properties")
        if props is None:
            return
        if not isinstance(props, dict):
            raise _bad(f"{where}.properties: must be an object.")
        self._validate_properties(f"{where}.properties", props)

    @staticmethod
    def _validate_properties(where: str, props: dict[str, Any]) -> None:
        if "contents" in props:
            contents = props["contents"]
            if not isinstance(contents, list):
                raise _bad(f"{where}.contents: must be a list of objects.")
            for k, item in enumerate(contents):
                spot = f"{where}.contents[{k}]"
                if not isinstance(item, dict):
                    raise _bad(f"{spot}: must be an object.")
                if "price" in item and not _is_number(item["price"]):
                    raise _bad(f"{spot}.price: must be a number, got {_type_name(item['price'])}.")
                if "quantity" in item and (
                    type(item["quantity"]) is not int or item["quantity"] < 0
                ):
                    raise _bad(f"{spot}.quantity: must be a non-negative integer.")
                for name in ("content_id", "content_category", "content_name", "brand"):
                    if name in item and not isinstance(item[name], str):
                        raise _bad(
                            f"{spot}.{name}: must be a string, got {_type_name(item[name])}."
                        )
        if "content_type" in props and props["content_type"] not in CONTENT_TYPES:
            raise _bad(f'{where}.content_type: must be "product" or "product_group".')
        if "currency" in props:
            cur = props["currency"]
            if not isinstance(cur, str) or cur not in CURRENCIES:
                raise _bad(
                    f"{where}.currency: must be a currency TikTok supports, as an uppercase "
                    'ISO 4217 code like "USD".'
                )
        if "value" in props and not _is_number(props["value"]):
            raise _bad(f"{where}.value: must be a number, got {_type_name(props['value'])}.")
        for name in ("order_id", "shop_id", "description"):
            if name in props and not isinstance(props[name], str):
                raise _bad(f"{where}.{name}: must be a string, got {_type_name(props[name])}.")

    # ------------------------------------------------------------------ user / oauth
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


class _StateReader:
    """Checks of a ``dump_state`` dict; errors name the field (``audiences[2].members``)."""

    @staticmethod
    def error(where: str, expected: str) -> ValueError:
        return ValueError(
            f"emulator state {where}: expected {expected}. The state was not written by "
            "TikTokEmulator.save or was edited; delete it to start fresh."
        )

    def items(
        self, obj: dict[str, Any], key: str, where: str = ""
    ) -> list[tuple[str, dict[str, Any]]]:
        spot = f"{where}.{key}" if where else key
        value = obj.get(key)
        if not isinstance(value, list):
            raise self.error(spot, "a list")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error(f"{spot}[{i}]", "an object")
            out.append((f"{spot}[{i}]", item))
        return out

    def typed(self, obj: dict[str, Any], key: str, kind: type[Any], where: str) -> Any:
        value = obj.get(key)
        if not isinstance(value, kind):
            raise self.error(f"{where}.{key}", f"a {kind.__name__}, got {_type_name(value)}")
        return value

    def optional(self, obj: dict[str, Any], key: str, kind: type[Any], where: str) -> Any:
        return None if obj.get(key) is None else self.typed(obj, key, kind, where)

    def string(self, obj: dict[str, Any], key: str, where: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}.{key}", f"a non-empty string, got {_type_name(value)}")
        return value

    def number(self, obj: dict[str, Any], key: str, where: str) -> float:
        value = obj.get(key)
        if not isinstance(value, int | float) or not _is_number(value):
            raise self.error(f"{where}.{key}", f"a number, got {_type_name(value)}")
        return float(value)

    def known(self, obj: dict[str, Any], key: str, advertisers: dict[str, Any], where: str) -> str:
        value = self.string(obj, key, where)
        if value not in advertisers:
            raise self.error(f"{where}.{key}", f"an advertiser listed under advertisers ({value})")
        return value

    def id_list(
        self, obj: dict[str, Any], key: str, advertisers: dict[str, Any], where: str
    ) -> list[str]:
        value = obj.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{where}.{key}", "a list of advertiser ID strings")
        unknown = [v for v in value if v not in advertisers]
        if unknown:
            raise self.error(
                f"{where}.{key}", f"advertisers listed under advertisers ({unknown[0]})"
            )
        return list(value)

    def role(self, obj: dict[str, Any], where: str) -> str:
        value = obj.get("role")
        if value not in ROLES:
            raise self.error(f"{where}.role", "one of " + ", ".join(ROLES))
        return str(value)


def _check_hashes(where: str, value: object) -> None:
    if isinstance(value, str):
        values: list[object] = [value]
    elif isinstance(value, list) and value:
        values = value
    else:
        raise _bad(f"{where}: must be a SHA-256 hash string or a non-empty list of them.")
    for k, item in enumerate(values):
        if not isinstance(item, str) or not _SHA256.fullmatch(item):
            spot = where if isinstance(value, str) else f"{where}[{k}]"
            raise _bad(
                f"{spot}: must be 64 lowercase hex characters (SHA-256); normalize and hash the "
                "value before sending."
            )


def _envelope(code: int, message: str, data: dict[str, Any]) -> _Response:
    body = {"code": code, "message": message, "request_id": secrets.token_hex(16), "data": data}
    return _Response(200, json.dumps(body).encode(), code)


def _html(status: int, message: str) -> _Response:
    page = f"<html><body><h1>Authorization failed</h1><p>{message}</p></body></html>"
    return _Response(status, page.encode(), status, content_type="text/html")


def _normalize_path(path: str) -> str:
    """ "segment/mapping/", "/segment/mapping/" and the full API path all name one endpoint."""
    path = urlsplit(path).path if "://" in path else path
    if path.startswith(API_PREFIX):
        return path[len(API_PREFIX) :]
    return path.lstrip("/")


_ROUTES: dict[str, dict[str, Handler]] = {
    "dmp/custom_audience/list/": {"GET": TikTokEmulator._ep_audience_list},
    "dmp/custom_audience/get/": {"GET": TikTokEmulator._ep_audience_get},
    "segment/audience/": {"POST": TikTokEmulator._ep_segment_audience},
    "segment/mapping/": {"POST": TikTokEmulator._ep_segment_mapping},
    "event/track/": {"POST": TikTokEmulator._ep_event_track},
    "offline/get/": {"GET": TikTokEmulator._ep_offline_get},
    "user/info/": {"GET": TikTokEmulator._ep_user_info},
    "oauth2/advertiser/get/": {"GET": TikTokEmulator._ep_advertiser_get},
    "oauth2/access_token/": {"POST": TikTokEmulator._ep_access_token},
    "oauth2/revoke_token/": {"POST": TikTokEmulator._ep_revoke_token},
}


# ---------------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # keep-alive client connections would make server_close() wait for them
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        emulator: TikTokEmulator,
    ) -> None:
        super().__init__(address, handler)
        self.emulator = emulator
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that dies mid-request (a killed CLI) is not the server's error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TikTokEmulator/1.0"
    # idle keep-alive connections give their thread back after this many seconds
    timeout = 60
    # headers and body leave in one segment: separate small writes meet the client's
    # delayed ACK and cost 40 ms a request
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry app secrets in query strings: never print them.
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "Malformed request body")
            return
        if body is None:
            self.close_connection = True
            self.send_error(413, "Request body too large")
            return
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        resp = self.server.emulator._dispatch(
            method,
            parts.path,
            query,
            self.headers.get("Access-Token"),
            self.headers.get("Content-Type", ""),
            body,
        )
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type + "; charset=utf-8")
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()
        # A client that gave up waiting (an answer held back past its timeout) is gone.
        with contextlib.suppress(ConnectionError):
            self.wfile.write(resp.body)


# ---------------------------------------------------------------------- demo / CLI
DEMO_APP_ID = "7300000000000000001"
DEMO_SECRET = "emulator-secret"  # noqa: S105 - a fixed fake secret for the local emulator
DEMO_ADVERTISER_ID = "7000000000000000001"
DEMO_EVENT_SET_ID = "7100000000000000001"
DEMO_TOKEN = "emulator-access-token"  # noqa: S105 - a fixed fake token for the local emulator


def seed_demo(emu: TikTokEmulator) -> dict[str, str]:
    """Register a demo app, advertiser, offline event set and Admin token; answer them."""
    emu.set_app(DEMO_APP_ID, DEMO_SECRET)
    emu.add_advertiser(DEMO_ADVERTISER_ID, "Demo Advertiser")
    emu.add_event_set(DEMO_ADVERTISER_ID, DEMO_EVENT_SET_ID, "Demo Offline Events")
    emu.add_token(DEMO_TOKEN, [DEMO_ADVERTISER_ID])
    if emu.portal_advertiser_ids is None:
        emu.portal_advertiser_ids = [DEMO_ADVERTISER_ID]
    return {
        "app_id": DEMO_APP_ID,
        "secret": DEMO_SECRET,
        "advertiser_id": DEMO_ADVERTISER_ID,
        "event_set_id": DEMO_EVENT_SET_ID,
        "access_token": DEMO_TOKEN,
    }


def serve_forever(host: str, port: int, *, seed: bool = True, **options: Any) -> None:
    """Run the emulator in the foreground: print the base URL, block until Ctrl-C.

    ``options`` go to ``TikTokEmulator``; ``seed`` registers the demo app, advertiser,
    event set and token (fake values, printed so a local client can use them).
    """
    emu = TikTokEmulator(host, port, **options)
    demo = seed_demo(emu) if seed else None
    base_url = emu.start()
    print(f"TikTok emulator listening on {base_url}", flush=True)
    print(f"  authorization page: {emu.portal_url}", flush=True)
    if demo:
        for key, value in demo.items():
            print(f"  {key}: {value}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()


__all__ = [
    "API_PREFIX",
    "CURRENCIES",
    "ID_TYPES",
    "STANDARD_EVENTS",
    "STATE_VERSION",
    "THROTTLE_CODES",
    "TikTokEmulator",
    "seed_demo",
    "serve_forever",
]
