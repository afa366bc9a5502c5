"""The one client for TikTok's Business API v1.3 (see ``docs/tiktok-contract.md``).

Everything that talks to TikTok goes through :class:`TikTokClient`, so the rules of the
contract live in one place: the ``Access-Token`` header, trailing-slash paths, JSON-string
list parameters, the ``{code, message, request_id, data}`` envelope (errors come back with
HTTP 200), the code table, in-process retries with capped full-jitter backoff, and pacing
to the configured QPS (by an injected :class:`Pacer`: in AWS the app-wide limiter of
:mod:`tiktok_destination.adapters.rate_limit`, shared by every Lambda).

Errors raised here are the classes of :mod:`tiktok_destination.errors`; their class names
are what the state machine's ``Retry``/``Catch`` match on. Messages and log lines never
carry the access token, app secret, auth code or request bodies (the bodies hold hashed
customer identifiers).
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tiktok_destination.errors import (
    AccessBlocked,
    AdvertiserNotFound,
    ConfigurationError,
    DestinationError,
    InputRejected,
    InvalidCredentials,
    MissingAdvertiserPermissions,
    OAuthError,
    RetriableError,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokUnavailable,
    TikTokWriteConflict,
)
from tiktok_destination.events.rules import track_body

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "LATE_TOLERANCE",
    "MAX_PACING_WAIT",
    "MIN_QPS",
    "PACING_HEADROOM",
    "SANDBOX_BASE_URL",
    "TIKTOK_CODES",
    "CallStats",
    "CodeRule",
    "LocalPacer",
    "Pacer",
    "RetryPolicy",
    "TikTokClient",
    "late_for_every_slot",
    "on_time",
    "pacing_interval",
    "sleep_until",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://business-api.tiktok.com/open_api/v1.3/"
SANDBOX_BASE_URL = "https://sandbox-ads.tiktok.com/open_api/v1.3/"

#: seconds an HTTP attempt waits for TikTok (connect, then each read). A create TikTok
#: received may be applied after this, so ``audiences/ensure.py`` keeps looking the name up for
#: twice as long before it creates again.
DEFAULT_TIMEOUT = 30.0
#: the slowest pacing a setting may ask for: below it a run's calls are hours apart and the
#: step looks hung (0 is allowed only in code, meaning "do not pace")
MIN_QPS = 0.1
#: ``segment/mapping`` identifiers per request (more answer 40011)
MAX_MAPPING_IDS = 10_000

#: where ``offline/get/`` puts the event sets, in the order they are looked for
_EVENT_SET_LIST_KEYS = ("event_set_list", "list")

# TikTok's own messages are quoted in ours; a runaway message must not flood the report.
_MAX_QUOTED_MESSAGE = 300

_REAUTHORIZE = (
    "Re-authorize the credential: run the TikTok authorization link again with a user "
    "who still has access to the advertiser."
)
_ROLE = (
    "The user who authorized the credential must be Admin or Operator on the advertiser, "
    "not Analyst: change the role in TikTok Business Center, or re-authorize the "
    "credential with an Admin or Operator."
)
_SCOPE = (
    "The credential was authorized without a permission this call needs: re-authorize it "
    "(tiktok-destination auth-link --credential NAME) and approve every permission the app "
    "asks for; the app must have the Audience Management and Offline Events permissions in "
    "the TikTok developer portal."
)
_APP_PERMISSION = (
    "The TikTok app (app_id) lacks the permission for this API: in the TikTok developer "
    "portal add the Audience Management and Offline Events permissions to the app, then "
    "re-authorize the credential (tiktok-destination auth-link --credential NAME)."
)
_ADVERTISER = (
    "Check advertiser_id in the destination: the advertiser does not exist, was deleted, "
    "or is not one the credential was authorized for."
)
_OAUTH = (
    "Check the TikTok app's app_id and secret, then start the authorization again "
    "(an auth_code is valid once, for one hour)."
)
_INVALID_PARAMETER = (
    "A parameter is invalid. On segment/ calls this also means the audience is still "
    "processing or matched nothing; check the request against docs/tiktok-contract.md."
)
_REJECTED_DEFAULT = "TikTok refused the request as invalid; check the request parameters."


@dataclass(frozen=True)
class CodeRule:
    """What one TikTok code makes of a call: the error it raises (its class decides retry
    and the workflow action) and, for a fatal one, what to do about it."""

    #: the name TikTok's SDK gives the code (tiktok_code.py, without ``ERROR_CODE_``)
    name: str
    error: type[DestinationError]
    #: the fix a failure's message names (required of a fatal code; a retried one's
    #: message says it will be retried)
    fix: str | None = None


SUCCESS_CODES = frozenset({0, 20001})
PARTIAL_SUCCESS_CODE = 20001

#: The one code table. Every code and name is TikTok's official SDK's
#: (tiktok/tiktok-business-api-sdk,
#: python_sdk/business_api_client/tiktok_business/tiktok_code.py, which has names only): what
#: each means for us, and why, is in docs/tiktok-contract.md ("Codes"). A code not here is
#: a TikTokRequestRejected (fatal: retrying a refused request cannot help), except the
#: 51000-51999 service errors (UNAVAILABLE_RANGE).
TIKTOK_CODES: dict[int, CodeRule] = {
    # Throttling: waited out, then retried. 40016 BIZ_FC_ERROR has no text in the SDK:
    # reading "FC" as frequency control is ours. 40133 appears in no source: not here.
    40016: CodeRule("BIZ_FC_ERROR", TikTokRateLimited),
    40100: CodeRule("REQUEST_TOO_FREQUENT", TikTokRateLimited),
    40132: CodeRule("REQUEST_FREQUENCY_LIMITED", TikTokRateLimited),
    # TikTok's side failed or is not ready: retried (the request may have been applied, so a
    # create is looked up by name instead of being sent again).
    40201: CodeRule("TASK_NOT_READY", TikTokUnavailable),
    50000: CodeRule("SYS_ERROR", TikTokUnavailable),
    50002: CodeRule("SYS_TIMEOUT", TikTokUnavailable),
    52000: CodeRule("DB_ERROR", TikTokUnavailable),
    52001: CodeRule("DB_READ_ERROR", TikTokUnavailable),
    52002: CodeRule("DB_WRITE_ERROR", TikTokUnavailable),
    52003: CodeRule("DB_PARTITION_ERROR", TikTokUnavailable),
    52100: CodeRule("RDS_ERROR", TikTokUnavailable),
    52101: CodeRule("RDS_READ_ERROR", TikTokUnavailable),
    52102: CodeRule("RDS_WRITE_ERROR", TikTokUnavailable),
    52103: CodeRule("RDS_TIMEOUT_ERROR", TikTokUnavailable),
    52201: CodeRule("TOS_ERROR", TikTokUnavailable),
    52202: CodeRule("TOS_UPLOAD_TIMEOUT", TikTokUnavailable),
    52203: CodeRule("TOS_HEAD_OBJECT", TikTokUnavailable),
    52204: CodeRule("TOS_PUT_OBJECT", TikTokUnavailable),
    60001: CodeRule("MAINTENANCE", TikTokUnavailable),
    61000: CodeRule("TOO_MANY_REQUESTS_BL", TikTokUnavailable),
    # Another write to the same object was in progress: not applied, retried.
    40202: CodeRule("WRITE_CONFLICT", TikTokWriteConflict),
    # Permissions: the user's role, the authorization's scopes, the app's permissions.
    40001: CodeRule("PERMISSION_ERROR", MissingAdvertiserPermissions, _ROLE),
    40003: CodeRule("FORBIDDEN", MissingAdvertiserPermissions, f"{_ROLE} {_SCOPE}"),
    40125: CodeRule("DEVELOPER_NO_PERMISSION", MissingAdvertiserPermissions, _APP_PERMISSION),
    40130: CodeRule("SCOPE_NOT_AUTHORIZED", MissingAdvertiserPermissions, _SCOPE),
    40301: CodeRule("ADVERTISER_ROLE_ERROR", MissingAdvertiserPermissions, _ROLE),
    # The access token.
    40102: CodeRule("ACCESS_TOKEN_EXPIRE", InvalidCredentials, _REAUTHORIZE),
    40104: CodeRule("EMPTY_ACCESS_TOKEN", InvalidCredentials, _REAUTHORIZE),
    40105: CodeRule("INVALID_ACCESS_TOKEN", InvalidCredentials, _REAUTHORIZE),
    40106: CodeRule("INVALID_CORE_USER", InvalidCredentials, _REAUTHORIZE),
    # The advertiser.
    40300: CodeRule("ADVERTISER_NOT_EXIST", AdvertiserNotFound, _ADVERTISER),
    40302: CodeRule("CUSTOMER_ADVERTISER_NOT_EXIST", AdvertiserNotFound, _ADVERTISER),
    40013: CodeRule(
        "SANDBOX_ADV_NOT_EXIST",
        AdvertiserNotFound,
        "The advertiser is not a sandbox advertiser: with the sandbox base_url "
        f"({SANDBOX_BASE_URL}) use a sandbox advertiser_id, or set base_url to "
        f"{DEFAULT_BASE_URL} for a real one.",
    ),
    # TikTok blocks the call: the account or the app, TikTok's SDK does not say which.
    41000: CodeRule(
        "BLOCKED",
        AccessBlocked,
        "TikTok blocks this call: check the advertiser account's status in TikTok Business "
        "Center (suspended, in review, restricted) and the app's status in the TikTok "
        "developer portal; if neither shows why, contact TikTok support with the request_id.",
    ),
    # The OAuth exchange.
    40101: CodeRule("INVALID_PARTNER", OAuthError, _OAUTH),
    40110: CodeRule("AUTH_CODE_ERROR", OAuthError, _OAUTH),
    40113: CodeRule("APP_FORBIDDEN", OAuthError, _OAUTH),
    # Our configuration or the input's data, each with its fix.
    40061: CodeRule(
        "INVALID_BATCH_SIZE",
        ConfigurationError,
        "TikTok refused the number of records in one request: lower MAPPING_BATCH_SIZE "
        "(template parameter MappingBatchSize; audiences) or EVENT_BATCH_SIZE (events), or "
        "[settings] mapping_batch_size / event_batch_size, then redrive.",
    ),
    40062: CodeRule(
        "PII_NOT_HASHED",
        InputRejected,
        "TikTok read an identifier as not hashed. Identifiers are sent as 64 lowercase hex "
        "characters: hashed here, or passed on as they are when the file has them pre-hashed. "
        "Check that the file's pre-hashed identifiers are SHA-256 of the normalized value "
        "(see docs/tiktok-contract.md, Hashing examples); if the file has none, report it "
        "with the run report.",
    ),
    # Refused requests: fatal, with what to check.
    40000: CodeRule("INVALID_PARAMS", TikTokRequestRejected, _INVALID_PARAMETER),
    40002: CodeRule("PARAM_ERROR", TikTokRequestRejected, _INVALID_PARAMETER),
    40007: CodeRule(
        "NOT_EXIST",
        TikTokRequestRejected,
        "The object does not exist: check the audience id / event set id, or let the "
        "destination re-resolve the audience by name.",
    ),
    40011: CodeRule(
        "ID_LIMIT_EXCEED",
        TikTokRequestRejected,
        "Too many IDs in one request: lower the batch size.",
    ),
}
#: the SDK's service errors (51000 RPC_ERROR to 51099 STATISTICS_NEW_ERROR), and codes
#: TikTok adds to that block: retried like 50000
UNAVAILABLE_RANGE = range(51000, 52000)


# `make mutation` covers this module's code table (_classify, _advice, request encoding),
# not the transport: pacing and retries are timing code its fast tests cannot pin down.
# pragma: no mutate start
@dataclass
class RetryPolicy:
    """How many times, and how patiently, a retriable failure is retried in-process.

    Waits are exponential with full jitter (``uniform(0, min(backoff_max, base * 2**n))``)
    so that many workers hitting the same limit spread out instead of retrying in step.
    After a rate-limit code the wait is at least ``rate_limit_wait``: TikTok's QPS window
    is one second, so retrying inside it is wasted.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    rate_limit_wait: float = 1.0

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Wait before re-attempt number ``retry_number`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(retry_number - 1, 0)))
        return rng.uniform(0.0, max(ceiling, 0.0))


@dataclass
class CallStats:
    """Counters the run report shows.

    ``calls`` counts every HTTP attempt (``by_endpoint`` splits it by path such as
    ``"segment/mapping/"``); ``retries`` counts every re-attempt; ``rate_limited`` counts
    the answers that were a rate-limit code (retried or not: a steady count means the QPS
    setting is above what TikTok grants). ``partial_messages`` keeps TikTok's message for
    each partial success (code 20001).
    """

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)
    partial_messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "by_endpoint": dict(self.by_endpoint),
            "partial_messages": list(self.partial_messages),
        }


#: Calls are spaced this much wider than ``1/qps``: ``pacing_interval(qps) * qps`` is
#: ``1 + PACING_HEADROOM`` seconds at every QPS, the slack every run of ``qps`` calls has.
PACING_HEADROOM = 0.2
#: A call may start at most this long (seconds) after its slot; a later call never goes,
#: it takes a new slot. Half the headroom: the other half is for the way to TikTok.
#:
#: Why no 1-second window then holds more than ``qps`` calls, as TikTok counts them (on
#: arrival, in a sliding window; docs/tiktok-contract.md): slots are handed out at least
#: ``interval = (1 + H) / qps`` apart, each to one call (H = PACING_HEADROOM). A call
#: arrives at ``slot + d``, where ``d`` (its start's lateness, at most LATE_TOLERANCE, plus
#: its way to TikTok) is between 0 and some D. Calls k and k + qps have slots at least
#: ``qps * interval = 1 + H`` apart, so they arrive at least ``1 + H - D`` apart: more than
#: one second whenever ``D < H``, whatever the QPS. The tolerance is therefore absolute, not
#: a share of the interval: two calls may arrive closer than the interval (at 10 QPS a call
#: 0.1 s late lands 20 ms before the next), which TikTok's window allows; what it does not
#: allow is a run of qps + 1 calls inside one second, and that needs D >= H. So the rule
#: must hold for every call, and "start" must be as late as we can see: the pacer checks
#: on waking and the client again just before the request's first byte (the send gate),
#: because in issue 15's trials calls the pacer let go on time spent up to 0.9 s in our
#: process before leaving (preparation, a new connection, a starved thread), and until
#: then a call went late too after five late wakes; either put 11 calls into a second.
LATE_TOLERANCE = PACING_HEADROOM / 2
#: Seconds a call waits for a slot it can start on time before the step is given back
#: (TikTokRateLimited, retried by the state machine): a process that keeps waking late
#: (CPU-starved, frozen) must not go late instead.
MAX_PACING_WAIT = 60.0


def pacing_interval(qps: float) -> float:
    """Seconds between two call starts at ``qps`` (0: do not pace)."""
    return (1.0 + PACING_HEADROOM) / qps if qps > 0 else 0.0


def on_time(slot: float, clock: Callable[[], float]) -> bool:
    """The one lateness rule (see LATE_TOLERANCE): may a call of ``slot`` still start now?"""
    return clock() - slot <= LATE_TOLERANCE


def sleep_until(slot: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> bool:
    """Sleep until ``slot``; False when the call is already too late to use it.

    On False the caller takes a new slot, or gives up with :func:`late_for_every_slot`; it
    never sends. On True the rule is checked once more as the request is about to leave
    (:class:`TikTokClient`'s send gate), since time passes between the two.
    """
    delay = slot - clock()
    if delay > 0:
        sleep(delay)
    return on_time(slot, clock)


def late_for_every_slot(waited: float, where: str) -> TikTokRateLimited:
    """The error of a call that found no slot it could start on time within ``waited`` s."""
    return TikTokRateLimited(
        f"{where}: for {waited:g} s this process woke too late for every slot it reserved "
        "(it was CPU-starved or frozen), and a late call could pass TikTok's per-second "
        "limit, so none was sent. The step will be retried later; if this repeats, give the "
        "function more memory (more CPU) or run fewer steps at once."
    )


#: what a pacer's ``wait`` returns: whether the call may still start (None: not paced)
StillOnTime = Callable[[], bool] | None


class Pacer(Protocol):
    """Holds a call back until it may go: every HTTP attempt to TikTok waits on one first.

    ``wait`` returns the check of the slot it gave (:func:`on_time` bound to it), which the
    client asks again just before the request leaves.
    """

    def wait(self) -> StillOnTime: ...


class LocalPacer:
    """Spaces this process's call starts :func:`pacing_interval` apart.

    A strict interval (a token bucket of capacity one) rather than a bursty bucket: TikTok
    counts per second, and a burst at a window edge is exactly what trips 40100. Slots are
    reserved under a lock and slept outside it, so threads sharing a client queue fairly.
    It knows only its own process: where Lambdas of one TikTok app run side by side, the
    app-wide limiter of :mod:`tiktok_destination.adapters.rate_limit` takes its place.
    """

    def __init__(
        self,
        qps: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        *,
        max_wait: float = MAX_PACING_WAIT,
    ) -> None:
        self._interval = pacing_interval(qps)
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._next_slot: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> StillOnTime:
        if self._interval <= 0:
            return None
        deadline = self._clock() + self._max_wait
        while True:
            with self._lock:
                now = self._clock()
                slot = now if self._next_slot is None else max(now, self._next_slot)
                self._next_slot = slot + self._interval
            if sleep_until(slot, self._clock, self._sleep):
                return functools.partial(on_time, slot, self._clock)
            # Too late: the slot passes unused (LATE_TOLERANCE says why it must not be used).
            if self._clock() >= deadline:
                raise late_for_every_slot(self._max_wait, "TikTok client pacing")


#: run just before the request of the attempt in this thread leaves (None: not paced)
_SEND_GATE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "tiktok_send_gate", default=None
)


def _check_send_gate(conn: HTTPConnection) -> None:
    # The pacer's lateness rule again, as the request's first byte is about to leave. Between
    # the pacer's wake and here lie the request's preparation and, on a new connection, the
    # TCP and TLS handshakes: a CPU-starved or GIL-bound process (the local default runs
    # every Lambda and the emulator in one) stretched that to 0.9 s in issue 15's trials,
    # enough to land an 11th call inside TikTok's second. The handshakes are done first, so
    # that only the send and the network are left of the way to TikTok, and a call that is
    # late by then waits for a new slot here, its connection kept open.
    gate = _SEND_GATE.get()
    if gate is None:
        return
    if conn.sock is None:  # urllib3 2's is_closed; 1.26 has only the socket
        conn.connect()
    gate()


class _GatedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _check_send_gate(self)
        super().request(*args, **kwargs)


class _GatedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _check_send_gate(self)
        super().request(*args, **kwargs)


class _GatedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GatedHTTPConnection


class _GatedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GatedHTTPSConnection


class _GatedAdapter(HTTPAdapter):
    """requests' adapter, with connections that check the send gate before each request."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GatedHTTPPool, "https": _GatedHTTPSPool}


class _Attempt:
    """Outcome of one HTTP attempt that did not succeed."""

    __slots__ = ("code", "error_cls", "request_id", "retriable", "text", "uncertain")

    def __init__(
        self,
        *,
        error_cls: type[DestinationError],
        text: str,
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.error_cls = error_cls
        self.text = text
        self.code = code
        self.request_id = request_id
        self.retriable = issubclass(error_cls, RetriableError)
        # No answer, a 5xx, an unreadable answer or a TikTok system error: the request may
        # have been applied. Rate limits and write conflicts say it was not.
        self.uncertain = error_cls is TikTokUnavailable


# pragma: no mutate end
def _join_path(path: str) -> str:
    """``"/segment/mapping"`` -> ``"segment/mapping/"``: TikTok answers 404 without the slash."""
    return path.strip("/") + "/"


def _encode_param(value: Any) -> str:
    # TikTok reads list parameters as JSON text (``event_set_ids=["123"]``); ids stay
    # strings inside that JSON, never numbers.
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rule(code: int) -> CodeRule | None:
    rule = TIKTOK_CODES.get(code)
    if rule is None and code in UNAVAILABLE_RANGE:
        return CodeRule("", TikTokUnavailable)
    return rule


def _classify(code: int) -> type[DestinationError]:
    rule = _rule(code)
    return rule.error if rule is not None else TikTokRequestRejected


def _advice(error_cls: type[DestinationError], code: int | None, attempts: int) -> str:
    if error_cls is TikTokRateLimited:
        return (
            f"TikTok kept answering 'too many requests' for {attempts} attempts; the step "
            "will be retried later. If this repeats, lower the destination's QPS."
        )
    if error_cls is TikTokWriteConflict:
        return (
            f"Another write to the same object was in progress for {attempts} attempts; "
            "the step will be retried later."
        )
    if error_cls is TikTokUnavailable:
        return (
            f"TikTok did not answer properly for {attempts} attempts; the step will be "
            "retried later. Check https://status.tiktok.com if this persists."
        )
    if code is None:
        return ""
    rule = _rule(code)
    # Every fatal code of the table names its fix (a contract test holds it to that).
    return rule.fix if rule is not None and rule.fix else _REJECTED_DEFAULT


# pragma: no mutate block
class TikTokClient:
    """A paced, retrying client for one access token.

    ``sleep`` and ``clock`` are injectable so tests run instantly; ``session`` lets callers
    share a connection pool (a session passed in is not closed by :meth:`close`). ``pacer``
    decides when each attempt may go; without one, a :class:`LocalPacer` at ``qps`` paces
    this client alone.
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        qps: float = 10.0,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        pacer: Pacer | None = None,
    ) -> None:
        if qps != 0 and not MIN_QPS <= qps < math.inf:
            raise ConfigurationError(
                f"TikTok client: qps must be a number of at least {MIN_QPS} calls per second; "
                "fix TIKTOK_QPS (template parameter TikTokQps) or [settings] tiktok_qps"
            )
        self._token = access_token
        self._send_token = True
        self._base_url = base_url.rstrip("/") + "/"
        self._retry = retry if retry is not None else RetryPolicy()
        self._timeout = timeout
        self._own_session = session is None
        if session is None:
            # Our own session sends through the gate; a caller's session is not altered.
            session = requests.Session()
            session.mount("https://", _GatedAdapter())
            session.mount("http://", _GatedAdapter())
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._pacer: Pacer = pacer if pacer is not None else LocalPacer(qps, clock, sleep)
        self._rng = random.Random()  # jitter only; not security-sensitive
        self._stats_lock = threading.Lock()
        # Values that must never leak into a message even if TikTok echoes them back.
        self._secrets: set[str] = {access_token} if access_token else set()
        self.stats = CallStats()

    @property
    def timeout(self) -> float:
        """Seconds one HTTP attempt waits for TikTok's answer."""
        return self._timeout

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __enter__(self) -> TikTokClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path``; list/tuple/dict parameters are sent as JSON text. Returns ``data``."""
        encoded = {k: _encode_param(v) for k, v in (params or {}).items() if v is not None}
        return self._call("GET", path, params=encoded, body=None)

    def post(
        self, path: str, body: Mapping[str, Any], *, idempotent: bool = True
    ) -> dict[str, Any]:
        """POST a JSON ``body`` to ``path``. Returns the envelope's ``data``.

        ``idempotent=False`` (a create): an attempt whose outcome is uncertain (timeout,
        5xx, system error) is not repeated but raised as TikTokUnavailable, so the caller
        can check what TikTok did before sending again.
        """
        return self._call("POST", path, params=None, body=body, idempotent=idempotent)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        secrets: Sequence[str] = (),
        idempotent: bool = True,
    ) -> dict[str, Any]:
        rel = _join_path(path)
        url = self._base_url + rel
        headers = {"Accept": "application/json"}
        if self._send_token:
            headers["Access-Token"] = self._token
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            try:
                data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
            except ValueError:
                # Python would write NaN/Infinity, which is not JSON; never send it.
                raise TikTokRequestRejected(
                    f"{rel}: the request holds a number that is NaN or infinite, which JSON "
                    "cannot carry; it was not sent"
                ) from None
        hidden = self._secrets | {s for s in secrets if s}

        attempts = max(self._retry.max_retries, 0) + 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                with self._stats_lock:
                    self.stats.retries += 1
            outcome = self._paced_attempt(
                method,
                rel,
                functools.partial(
                    self._attempt, method, url, rel, params, data, headers, hidden, attempt
                ),
            )
            if isinstance(outcome, dict):
                return outcome
            if outcome.error_cls is TikTokRateLimited:
                with self._stats_lock:
                    self.stats.rate_limited += 1
            if (
                not outcome.retriable
                or attempt == attempts
                or (outcome.uncertain and not idempotent)
            ):
                self._raise(method, rel, outcome, attempt)
            wait = self._retry.backoff(attempt, self._rng)
            if outcome.error_cls is TikTokRateLimited:
                wait = max(self._retry.rate_limit_wait, wait)
            logger.warning(
                "TikTok %s attempt %d failed: code=%s request_id=%s; retrying",
                rel,
                attempt,
                outcome.code,
                outcome.request_id,
            )
            self._sleep(wait)
        raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover

    def _paced_attempt(
        self, method: str, rel: str, send: Callable[[], dict[str, Any] | _Attempt]
    ) -> dict[str, Any] | _Attempt:
        """``send`` one attempt in a slot of the pacer, leaving only while the slot allows."""
        still_on_time = self._pacer.wait()

        def on_time_or_new_slot() -> None:
            # Held up past its slot after the pacer let it go: the slot passes unused and the
            # call takes a new one, giving the step back after MAX_PACING_WAIT of misses.
            nonlocal still_on_time
            deadline: float | None = None
            while still_on_time is not None and not still_on_time():
                now = self._clock()
                deadline = now + MAX_PACING_WAIT if deadline is None else deadline
                if now >= deadline:
                    raise late_for_every_slot(MAX_PACING_WAIT, f"TikTok {method} {rel}")
                still_on_time = self._pacer.wait()

        token = _SEND_GATE.set(on_time_or_new_slot)
        try:
            outcome = send()
        finally:
            _SEND_GATE.reset(token)
        with self._stats_lock:
            self.stats.calls += 1
            self.stats.by_endpoint[rel] = self.stats.by_endpoint.get(rel, 0) + 1
        return outcome

    def _attempt(
        self,
        method: str,
        url: str,
        rel: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        hidden: set[str],
        attempt: int,
    ) -> dict[str, Any] | _Attempt:
        try:
            resp = self._session.request(
                method, url, params=params, data=data, headers=headers, timeout=self._timeout
            )
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            # Fatal and local: retrying an unusable URL cannot help. The URL itself is not
            # quoted: its query string may hold the app secret.
            raise ConfigurationError(
                f"TikTok {method} {rel}: the base_url is not a usable URL "
                f"({type(exc).__name__}); set it to {DEFAULT_BASE_URL} or the sandbox URL "
                f"{SANDBOX_BASE_URL}."
            ) from None
        except requests.exceptions.RequestException as exc:
            # Only the exception type: requests' own text includes the URL and its query.
            return _Attempt(
                error_cls=TikTokUnavailable,
                text=f"no answer from TikTok ({type(exc).__name__})",
            )

        header_request_id = resp.headers.get("X-Tt-Logid")
        if resp.status_code >= 500:
            return _Attempt(
                error_cls=TikTokUnavailable,
                text=f"HTTP {resp.status_code} (server error)",
                request_id=header_request_id,
            )
        if resp.status_code == 429:
            # Not in TikTok's contract (limits come back as HTTP 200 + code), but a gateway
            # in front of it may say so; treat it as the rate limit it is.
            return _Attempt(
                error_cls=TikTokRateLimited,
                text="HTTP 429 (too many requests)",
                request_id=header_request_id,
            )
        if resp.status_code >= 400:
            return _Attempt(
                error_cls=TikTokRequestRejected,
                text=(
                    f"HTTP {resp.status_code}: wrong path or method. The path must end with "
                    f"'/' and base_url must be {DEFAULT_BASE_URL} (or the sandbox URL "
                    f"{SANDBOX_BASE_URL})"
                ),
                request_id=header_request_id,
            )

        try:
            envelope = resp.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "code" not in envelope:
            return _Attempt(
                error_cls=TikTokUnavailable,
                text=f"HTTP {resp.status_code} with a body that is not TikTok's JSON envelope",
                request_id=header_request_id,
            )

        raw_id = envelope.get("request_id") or header_request_id
        request_id = str(raw_id) if raw_id else None
        message = self._redact(str(envelope.get("message") or ""), hidden)
        try:
            code = int(envelope["code"])
        except (TypeError, ValueError):
            return _Attempt(
                error_cls=TikTokUnavailable,
                text="the envelope's code is not a number",
                request_id=request_id,
            )

        if code in SUCCESS_CODES:
            logger.debug(
                "TikTok %s attempt %d: code=%s request_id=%s", rel, attempt, code, request_id
            )
            if code == PARTIAL_SUCCESS_CODE:
                with self._stats_lock:
                    self.stats.partial_messages.append(message)
            payload = envelope.get("data")
            if payload is None:
                return {}
            if not isinstance(payload, dict):
                logger.warning(
                    "TikTok %s attempt %d: code=%s request_id=%s; data is not an object",
                    rel,
                    attempt,
                    code,
                    request_id,
                )
                return {}
            return payload

        rule = _rule(code)
        named = f" {rule.name}" if rule is not None and rule.name else ""
        return _Attempt(
            error_cls=_classify(code),
            text=f"code {code}{named} ({message or 'no message'})",
            code=code,
            request_id=request_id,
        )

    def _raise(self, method: str, rel: str, outcome: _Attempt, attempts: int) -> NoReturn:
        logger.warning(
            "TikTok %s attempt %d failed: code=%s request_id=%s; giving up",
            rel,
            attempts,
            outcome.code,
            outcome.request_id,
        )
        advice = _advice(outcome.error_cls, outcome.code, attempts)
        rid = f" [request_id {outcome.request_id}]" if outcome.request_id else ""
        text = f"TikTok {method} {rel} failed: {outcome.text}{rid}."
        if advice:
            text = f"{text} {advice}"
        raise outcome.error_cls(text, code=outcome.code, request_id=outcome.request_id)

    @staticmethod
    def _redact(text: str, hidden: set[str]) -> str:
        for secret in hidden:
            text = text.replace(secret, "***")
        if len(text) > _MAX_QUOTED_MESSAGE:
            text = text[: _MAX_QUOTED_MESSAGE - 3] + "..."
        return text

    # ------------------------------------------------------------------ audiences
    def list_audiences(
        self, advertiser_id: str, *, page: int = 1, page_size: int = 100
    ) -> dict[str, Any]:
        """One page of ``dmp/custom_audience/list/``: ``{"page_info": {...}, "list": [...]}``."""
        return self.get(
            "dmp/custom_audience/list/",
            {"advertiser_id": advertiser_id, "page": page, "page_size": page_size},
        )

    def iter_audiences(self, advertiser_id: str) -> Iterator[dict[str, Any]]:
        """Every custom audience of the advertiser, across all pages."""
        page = 1
        page_size = 100
        while True:
            data = self.list_audiences(advertiser_id, page=page, page_size=page_size)
            items = data.get("list") or []
            yield from items
            page_info = data.get("page_info") or {}
            total_page = page_info.get("total_page")
            if not items:
                return
            if total_page is not None:
                if page >= int(total_page):
                    return
            elif len(items) < page_size:
                return
            page += 1

    def create_audience(self, advertiser_id: str, name: str) -> str:
        """Create a partner audience (the only kind ``segment/mapping`` may write to).

        A create is not idempotent: after a timeout or 5xx it raises TikTokUnavailable
        without sending again, since TikTok may have created the audience; the caller
        looks the name up before creating again.
        """
        data = self.post(
            "segment/audience/",
            {"advertiser_id": advertiser_id, "action": "create", "custom_audience_name": name},
            idempotent=False,
        )
        audience_id = data.get("audience_id")
        if audience_id is None or isinstance(audience_id, float) or audience_id == "":
            # Not retriable: a retry would create a second audience with the same name.
            raise TikTokRequestRejected(
                "TikTok POST segment/audience/ answered success without data.audience_id; "
                "look the audience up by name in Ads Manager before running again.",
            )
        return str(audience_id)

    def map_audience(
        self,
        advertiser_id: str,
        action: Literal["add", "delete"],
        id_schema: Sequence[str],
        batch_data: Sequence[Sequence[Mapping[str, Any]]],
    ) -> dict[str, Any]:
        """Add or delete members: one inner list per person, aligned with ``id_schema``."""
        if action not in ("add", "delete"):
            raise ValueError(f"map_audience action must be 'add' or 'delete', got {action!r}")
        return self.post(
            "segment/mapping/",
            {
                "advertiser_ids": [advertiser_id],
                "action": action,
                "id_schema": list(id_schema),
                "batch_data": [[dict(entry) for entry in person] for person in batch_data],
            },
        )

    # ------------------------------------------------------------------ events
    def track_events(
        self,
        event_set_id: str,
        data: Sequence[Mapping[str, Any]],
        *,
        test_event_code: str | None = None,
    ) -> dict[str, Any]:
        """Send offline events (Events API 2.0); at most 1,000 per call."""
        # One body builder (events.track_body), so its 1,000-event limit guards this path.
        return self.post(
            "event/track/", track_body(event_set_id, data, test_event_code=test_event_code)
        )

    def event_sets(self, advertiser_id: str, event_set_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The advertiser's offline event sets among ``event_set_ids``."""
        data = self.get(
            "offline/get/",
            {"advertiser_id": advertiser_id, "event_set_ids": list(event_set_ids)},
        )
        # TikTok's SDK gateway spec (yml_files/offline_get.yml) answers data.event_set_list;
        # data.list is accepted too, since a wrong guess here would fail every offline run.
        for key in _EVENT_SET_LIST_KEYS:
            if key in data:
                found = data[key]
                if found is None:
                    return []
                if isinstance(found, list):
                    return [s for s in found if isinstance(s, dict)]
        seen = ", ".join(sorted(map(str, data))) or "none"
        raise TikTokRequestRejected(
            "TikTok GET offline/get/ answered success without a list of event sets: expected "
            f"data.event_set_list or data.list (a list), saw keys: {seen}. TikTok may have "
            "changed the answer's shape; report it with this message.",
        )

    # ------------------------------------------------------------------ identity
    def user_info(self) -> dict[str, Any]:
        """The authorizing user: a cheap check that the token still works."""
        return self.get("user/info/")

    def authorized_advertisers(self, app_id: str, secret: str) -> list[dict[str, Any]]:
        """Advertisers this token may act for: ``[{advertiser_id, advertiser_name}, ...]``."""
        data = self._call(
            "GET",
            "oauth2/advertiser/get/",
            params={"app_id": _encode_param(app_id), "secret": _encode_param(secret)},
            body=None,
            secrets=(secret,),
        )
        return list(data.get("list") or [])

    @classmethod
    def exchange_auth_code(
        cls,
        app_id: str,
        secret: str,
        auth_code: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Trade an OAuth ``auth_code`` for ``{access_token, advertiser_ids, scope}``.

        Sent without an ``Access-Token`` header. The default retry policy is short: this
        runs inside the OAuth callback, which has seconds, not minutes, to answer.
        """
        client = cls(
            "",
            base_url=base_url,
            qps=0,
            retry=retry if retry is not None else RetryPolicy(max_retries=2, backoff_max=2.0),
            timeout=timeout,
            session=session,
            sleep=sleep,
        )
        client._send_token = False
        try:
            return client._call(
                "POST",
                "oauth2/access_token/",
                params=None,
                body={"app_id": app_id, "secret": secret, "auth_code": auth_code},
                secrets=(secret, auth_code),
            )
        finally:
            client.close()
