"""The rate-limit rule: when each call to TikTok may start, in one process or app-wide.

TikTok limits calls per developer app (10 QPS on the Basic tier; docs/tiktok-contract.md,
"Rate limit: how a second is counted"), not per caller, and counts them per second. Every
HTTP attempt to TikTok first waits on a :class:`Pacer` for a slot. Slots are
:func:`pacing_interval` apart (``1/tiktok_qps`` plus headroom) with a burst of one call: a
token bucket holding a second's worth of burst lets up to twice the QPS into one second
after an idle spell (the burst, then the refill), which TikTok answers with 40100. A call
that cannot start within ``LATE_TOLERANCE`` of its slot never goes (the proof is at
``LATE_TOLERANCE``): it takes a new slot, and one that keeps waking late until
``MAX_PACING_WAIT`` gives the step back with TikTokRateLimited.

:class:`LocalPacer` paces one process. A run's Distributed Map sends its batches from
separate Lambdas, and runs of other audiences and event sets overlap it, so in AWS the pace
lives in one DynamoDB item per app instead (:class:`AppRateLimiter`; table
``RATE_LIMIT_TABLE``, key ``pk`` = ``app#<TikTok base URL>``; one deployment holds one
TikTok app).

The item holds ``next_at``, the earliest time (epoch seconds) the next call may start (the
"theoretical arrival time" of the generic cell rate algorithm). A caller reserves a slot
with one conditional UpdateItem and sleeps until it:

- calls are queued (``next_at`` is in the future): ``SET next_at = next_at + interval``,
  atomic in DynamoDB, so two callers never get the same slot; the caller's slot is the
  old ``next_at``;
- the app was idle (``next_at`` is past or missing): the call goes now and ``next_at``
  becomes now + interval.

No reservation reads first, so callers do not collide and retry; a slot reserved by a
caller that then dies, or wakes up too late to use it, just passes unused. Slots are
wall-clock times compared across Lambdas; their hosts' clocks agree to within
milliseconds (Amazon Time Sync), well inside the headroom.

The wait is bounded: nobody queues behind more than ``max_queue`` seconds of reserved
calls; a caller that finds a longer queue polls until ``max_wait`` runs out, then raises
TikTokRateLimited so that the state machine retries the step later.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tiktok_destination.adapters.s3 import error_code
from tiktok_destination.errors import ConfigurationError, RetriableError, TikTokRateLimited

__all__ = [
    "LATE_TOLERANCE",
    "MAX_PACING_WAIT",
    "PACING_HEADROOM",
    "AppRateLimiter",
    "LocalPacer",
    "Pacer",
    "StillOnTime",
    "app_key",
    "late_for_every_slot",
    "make_pacer",
    "on_time",
    "pacing_interval",
    "sleep_until",
]

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
    (the TikTok client's send gate), since time passes between the two.
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
    app-wide :class:`AppRateLimiter` takes its place.
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


#: seconds of calls already queued ahead beyond which a caller waits without reserving
DEFAULT_MAX_QUEUE = 30.0
#: seconds a caller polls for a place in the queue, or keeps waking too late for its
#: slots, before giving the step back
DEFAULT_MAX_WAIT = MAX_PACING_WAIT

_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _process_lock(table: str, key: str) -> threading.Lock:
    # DynamoDB orders the conditional writes of different processes. The threads of one
    # process take turns before writing; on the local default every Lambda is a thread of
    # one process and moto's conditional writes are not atomic across threads.
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((table, key), threading.Lock())


def app_key(base_url: str) -> str:
    """The limiter item of the TikTok app behind ``base_url`` (production or sandbox)."""
    return "app#" + base_url.rstrip("/") + "/"


def _number(value: float) -> dict[str, str]:
    return {"N": f"{value:.6f}"}


class AppRateLimiter:
    """A :class:`Pacer` shared through a DynamoDB item.

    ``client`` (a boto3 DynamoDB client), ``clock`` (epoch seconds: callers on different
    hosts compare their slots on it) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        table: str,
        key: str,
        qps: float,
        *,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_queue: float = DEFAULT_MAX_QUEUE,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        if not qps > 0:
            raise ConfigurationError(
                "the app-wide rate limiter needs tiktok_qps above 0; set [settings] tiktok_qps "
                "or the template parameter TikTokQps to the app's QPS, e.g. 10"
            )
        self._table = table
        self._key = key
        self._interval = pacing_interval(qps)
        self._client = client if client is not None else boto3.client("dynamodb")
        self._clock = clock
        self._sleep = sleep
        self._max_queue = max_queue
        self._max_wait = max_wait

    def wait(self) -> StillOnTime:
        deadline = self._clock() + self._max_wait
        while True:
            with _process_lock(self._table, self._key):
                # Read under the lock: a "now" taken before waiting for it is stale, and an
                # idle app's slot would then lie in the past.
                now = self._clock()
                slot, queued_until = self._reserve(now)
            if slot is not None:
                if sleep_until(slot, self._clock, self._sleep):
                    return functools.partial(on_time, slot, self._clock)
                # Woke too late: the missed slot passes unused and the call never goes late
                # (LATE_TOLERANCE says why); take a new one while time is left.
                if self._clock() >= deadline:
                    raise late_for_every_slot(
                        self._max_wait, f"the app-wide rate limiter (DynamoDB table {self._table})"
                    )
                continue
            if queued_until is None:
                continue  # the app went idle between the two writes: reserve again
            if now >= deadline:
                raise TikTokRateLimited(
                    f"the app-wide rate limiter (DynamoDB table {self._table}) had more than "
                    f"{self._max_queue:g} s of calls queued for {self._max_wait:g} s: more "
                    "steps call TikTok at once than tiktok_qps serves quickly. The step will "
                    "be retried later; if this repeats, run fewer overlapping runs or check "
                    "that tiktok_qps is the app's QPS."
                )
            # Poll again when the queue should have shrunk to the bound (or at the deadline).
            self._sleep(max(0.01, min(queued_until - self._max_queue - now, deadline - now, 1.0)))

    def _reserve(self, now: float) -> tuple[float | None, float | None]:
        """(slot, None) when reserved; (None, next_at) when the queue is too long to join;
        (None, None) when the app went idle between the two writes."""
        names = {"#n": "next_at"}
        try:
            out = self._update(
                UpdateExpression="SET #n = #n + :interval",
                ConditionExpression="#n > :now AND #n <= :horizon",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":interval": _number(self._interval),
                    ":now": _number(now),
                    ":horizon": _number(now + self._max_queue),
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return float(out["Attributes"]["next_at"]["N"]) - self._interval, None
        except _ConditionFailed as failed:
            if failed.next_at is not None and failed.next_at > now:
                return None, failed.next_at
        try:
            self._update(
                UpdateExpression="SET #n = :next",
                ConditionExpression="attribute_not_exists(#n) OR #n <= :now",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":next": _number(now + self._interval),
                    ":now": _number(now),
                },
            )
            return now, None
        except _ConditionFailed:
            return None, None

    def _update(self, **kwargs: Any) -> dict[str, Any]:
        try:
            out: dict[str, Any] = self._client.update_item(
                TableName=self._table, Key={"pk": {"S": self._key}}, **kwargs
            )
            return out
        except ClientError as err:
            code = error_code(err)
            if code == "ConditionalCheckFailedException":
                response: dict[str, Any] = dict(err.response)
                old = (response.get("Item") or {}).get("next_at")
                raise _ConditionFailed(float(old["N"]) if old else None) from None
            if code in {"ResourceNotFoundException", "AccessDeniedException"}:
                raise ConfigurationError(
                    f"the app-wide rate limiter cannot use DynamoDB table {self._table} "
                    f"({code}): RATE_LIMIT_TABLE must name the stack's RateLimitTable, and "
                    "the function needs dynamodb:UpdateItem on it"
                ) from None
            raise RetriableError(
                f"the app-wide rate limiter's DynamoDB table {self._table} answered {code}; "
                "the step will be retried"
            ) from None
        except BotoCoreError as err:
            raise RetriableError(
                f"the app-wide rate limiter could not reach DynamoDB ({type(err).__name__}); "
                "the step will be retried"
            ) from None


class _ConditionFailed(Exception):
    def __init__(self, next_at: float | None) -> None:
        super().__init__("condition failed")
        self.next_at = next_at


def make_pacer(table: str, base_url: str, qps: float) -> Pacer | None:
    """The app-wide limiter when the deployment has a table; None lets the client pace
    itself (one process, e.g. the CLI without AWS, or tests)."""
    if not table or qps <= 0:
        return None
    return AppRateLimiter(table, app_key(base_url), qps)
