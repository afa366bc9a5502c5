"""The app-wide rate limit: one pace for every call to TikTok, from every Lambda.

TikTok limits calls per developer app (10 QPS on the Basic tier; docs/tiktok-contract.md,
"Rate limit: how a second is counted"), not per caller. A run's Distributed Map sends
its batches from separate Lambdas, and runs of other
audiences and event sets overlap it, so a pace kept inside one process lets the app burst
past its limit. The pace lives in one DynamoDB item per app instead (table
``RATE_LIMIT_TABLE``, key ``pk`` = ``app#<TikTok base URL>``; one deployment holds one
TikTok app), and every HTTP attempt to TikTok takes a slot from it first.

The item holds ``next_at``, the earliest time (epoch seconds) the next call may start (the
"theoretical arrival time" of the generic cell rate algorithm). A caller reserves a slot
with one conditional UpdateItem and sleeps until it:

- calls are queued (``next_at`` is in the future): ``SET next_at = next_at + interval``,
  atomic in DynamoDB, so two callers never get the same slot; the caller's slot is the
  old ``next_at``;
- the app was idle (``next_at`` is past or missing): the call goes now and ``next_at``
  becomes now + interval.

No reservation reads first, so callers do not collide and retry; a slot reserved by a
caller that then dies, or wakes up too late to use it, just passes unused: a late caller
takes a new slot and never sends late (``LATE_TOLERANCE`` in the client proves why no
second then holds more than ``tiktok_qps`` calls), and one that keeps waking late until
``max_wait`` gives the step back with TikTokRateLimited. The interval and
the burst of one call are :class:`~tiktok_destination.adapters.tiktok.client.LocalPacer`'s
(:func:`~tiktok_destination.adapters.tiktok.client.pacing_interval`: ``1/tiktok_qps`` plus
headroom): TikTok counts calls per second, and a token bucket holding a second's worth of
burst lets up to twice the QPS into one second after an idle spell (the burst, then the
refill), which TikTok answers with 40100. Slots are wall-clock times compared across
Lambdas; their hosts' clocks agree to within milliseconds (Amazon Time Sync), well inside
the headroom.

The wait is bounded: nobody queues behind more than ``max_queue`` seconds of reserved
calls; a caller that finds a longer queue polls until ``max_wait`` runs out, then raises
TikTokRateLimited so that the state machine retries the step later.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tiktok_destination.adapters.s3 import error_code
from tiktok_destination.adapters.tiktok.client import (
    MAX_PACING_WAIT,
    Pacer,
    StillOnTime,
    late_for_every_slot,
    on_time,
    pacing_interval,
    sleep_until,
)
from tiktok_destination.errors import ConfigurationError, RetriableError, TikTokRateLimited

__all__ = ["AppRateLimiter", "app_key", "make_pacer"]

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
    """A :class:`~tiktok_destination.adapters.tiktok.client.Pacer` shared through a DynamoDB item.

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
                # (client.LATE_TOLERANCE says why); take a new one while time is left.
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
