"""The paced, retrying HTTP under every TikTok call (see ``docs/tiktok-contract.md``).

:class:`TikTokTransport` holds the rules every call shares: the ``Access-Token`` header,
trailing-slash paths, JSON-string list parameters, the ``{code, message, request_id,
data}`` envelope (errors come back with HTTP 200) read through the code table of
:mod:`~tiktok_destination.adapters.tiktok.codes`, in-process retries with capped
full-jitter backoff, and pacing to the configured QPS (by an injected
:class:`~tiktok_destination.adapters.rate_limit.Pacer`: in AWS the app-wide limiter,
shared by every Lambda). The calls themselves are :class:`~.client.TikTokClient`'s.

Errors raised here are the classes of :mod:`tiktok_destination.errors`; their class names
are what the state machine's ``Retry``/``Catch`` match on. Messages and log lines never
carry the access token, app secret, auth code or request bodies (the bodies hold hashed
customer identifiers).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Self

import requests

from tiktok_destination.adapters.rate_limit import (
    MAX_PACING_WAIT,
    LocalPacer,
    Pacer,
    late_for_every_slot,
)
from tiktok_destination.adapters.tiktok.bodies import encode_param, join_path
from tiktok_destination.adapters.tiktok.codes import (
    PARTIAL_SUCCESS_CODE,
    SUCCESS_CODES,
    advice,
    classify,
    rule_for,
)
from tiktok_destination.adapters.tiktok.limits import (
    DEFAULT_BASE_URL,
    DEFAULT_QPS,
    DEFAULT_TIMEOUT,
    MIN_QPS,
    SANDBOX_BASE_URL,
)
from tiktok_destination.adapters.tiktok.send_gate import SEND_GATE, gated_session
from tiktok_destination.errors import (
    ConfigurationError,
    DestinationError,
    RetriableError,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokUnavailable,
)

__all__ = ["CallStats", "RetryPolicy", "TikTokTransport"]

logger = logging.getLogger(__name__)

# TikTok's own messages are quoted in ours; a runaway message must not flood the report.
_MAX_QUOTED_MESSAGE = 300


# `make mutation` covers the code table (codes.py) and the request encoding (bodies.py), not
# the transport: pacing and retries are timing code its fast tests cannot pin down.
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


# pragma: no mutate block
class TikTokTransport:
    """A paced, retrying transport for one access token; :class:`~.client.TikTokClient`
    adds the calls.

    ``sleep`` and ``clock`` are injectable so tests run instantly; ``session`` lets callers
    share a connection pool (a session passed in is not closed by :meth:`close`). ``pacer``
    decides when each attempt may go; without one, a
    :class:`~tiktok_destination.adapters.rate_limit.LocalPacer` at ``qps`` paces this client
    alone.
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        qps: float = DEFAULT_QPS,
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
            session = gated_session()
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET ``path``; list/tuple/dict parameters are sent as JSON text. Returns ``data``."""
        encoded = {k: encode_param(v) for k, v in (params or {}).items() if v is not None}
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
        rel = join_path(path)
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

        token = SEND_GATE.set(on_time_or_new_slot)
        try:
            outcome = send()
        finally:
            SEND_GATE.reset(token)
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

        rule = rule_for(code)
        named = f" {rule.name}" if rule is not None and rule.name else ""
        return _Attempt(
            error_cls=classify(code),
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
        hint = advice(outcome.error_cls, outcome.code, attempts)
        rid = f" [request_id {outcome.request_id}]" if outcome.request_id else ""
        text = f"TikTok {method} {rel} failed: {outcome.text}{rid}."
        if hint:
            text = f"{text} {hint}"
        raise outcome.error_cls(text, code=outcome.code, request_id=outcome.request_id)

    @staticmethod
    def _redact(text: str, hidden: set[str]) -> str:
        for secret in hidden:
            text = text.replace(secret, "***")
        if len(text) > _MAX_QUOTED_MESSAGE:
            text = text[: _MAX_QUOTED_MESSAGE - 3] + "..."
        return text
