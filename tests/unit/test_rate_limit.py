"""The app-wide rate limiter on moto's DynamoDB: one pace for every caller of one TikTok app."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import boto3
import pytest

from tiktok_destination.adapters import rate_limit
from tiktok_destination.adapters.rate_limit import (
    LATE_TOLERANCE,
    AppRateLimiter,
    LocalPacer,
    app_key,
    make_pacer,
    pacing_interval,
)
from tiktok_destination.config.settings import load_settings
from tiktok_destination.errors import ConfigurationError, TikTokRateLimited
from tiktok_destination.steps import make_client

TABLE = "rate-limit"
KEY = app_key("https://business-api.tiktok.com/open_api/v1.3/")


class FakeTime:
    """Fake epoch time for one caller: sleeping advances it (plus ``oversleep``)."""

    def __init__(self, now: float, oversleep: float = 0.0) -> None:
        self.now = now
        self.oversleep = oversleep
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.oversleep


def limiter(client: Any, qps: float, fake: FakeTime, **kwargs: Any) -> AppRateLimiter:
    return AppRateLimiter(
        TABLE, KEY, qps, client=client, clock=fake.clock, sleep=fake.sleep, **kwargs
    )


def next_at(client: Any) -> float:
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": KEY}})["Item"]
    return float(item["next_at"]["N"])


# ------------------------------------------------------------------ one pace, many callers
def test_threads_with_their_own_limiters_never_exceed_the_qps(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every thread is a Map child with its own limiter (and its own DynamoDB client, as in
    # its own Lambda); together they must keep to the app's pace.
    qps, threads, seconds = 20.0, 6, 2.0
    granted: list[float] = []  # slots the callers went at
    starts: list[float] = []  # wall-clock times the calls started
    lock = threading.Lock()
    real_sleep_until = rate_limit.sleep_until

    def recording_sleep_until(slot: float, clock: Any, sleep: Any) -> bool:
        used = real_sleep_until(slot, clock, sleep)
        if used:
            with lock:
                granted.append(slot)
        return used

    def child(deadline: float) -> None:
        pacer = AppRateLimiter(TABLE, KEY, qps, client=boto3.client("dynamodb"))
        while time.time() < deadline:
            pacer.wait()
            with lock:
                starts.append(time.time())

    monkeypatch.setattr(rate_limit, "sleep_until", recording_sleep_until)
    begin = time.time()
    workers = [threading.Thread(target=child, args=(begin + seconds,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    starts.sort()
    elapsed = starts[-1] - starts[0]
    # qps * elapsed + a burst of one: the bound TikTok's per-second counting needs.
    assert len(starts) <= qps * elapsed + 1, (len(starts), elapsed)
    # Each slot went to one caller only, a whole interval after the previous one.
    interval = pacing_interval(qps)
    granted.sort()
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= interval - 1e-5, min(gaps)
    # ...and the callers were not starved: most slots of the two seconds were used.
    assert len(starts) >= 0.5 * seconds / interval


def test_callers_queue_behind_each_other_and_an_idle_app_does_not_bank_a_burst(
    dynamodb: Any,
) -> None:
    a, b = FakeTime(1000.0), FakeTime(1000.0)  # two Lambdas, same instant
    first, second = limiter(dynamodb, 10, a), limiter(dynamodb, 10, b)
    first.wait()
    second.wait()
    first.wait()
    assert a.sleeps == [pytest.approx(0.24)]  # its second call: the third slot
    assert b.sleeps == [pytest.approx(0.12)]  # the second slot
    assert next_at(dynamodb) == pytest.approx(1000.36)

    # Ten idle seconds later the next call goes at once, and only one does.
    late = FakeTime(1010.0)
    third = limiter(dynamodb, 10, late)
    third.wait()
    third.wait()
    assert late.sleeps == [pytest.approx(0.12)]
    assert next_at(dynamodb) == pytest.approx(1010.24)


def test_two_processes_racing_between_the_two_writes_get_different_slots(
    dynamodb: Any,
) -> None:
    # No process lock helps across Lambdas: only the conditions of the writes do. Caller Y
    # reserves the idle app's slot right between caller X's two writes.
    fake_x, fake_y = FakeTime(1000.0), FakeTime(1000.0)
    y = limiter(dynamodb, 10, fake_y)
    calls = 0

    class Interleaving:
        def update_item(self, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # X's "app is idle" write is next: Y gets in first
                assert y._reserve(fake_y.now) == (1000.0, None)
            return dynamodb.update_item(**kwargs)

    x = limiter(Interleaving(), 10, fake_x)
    x.wait()
    # X's idle write failed (the app was no longer idle), so X queued behind Y.
    assert fake_x.sleeps == [pytest.approx(0.12)]
    assert next_at(dynamodb) == pytest.approx(1000.24)


def test_a_caller_that_wakes_too_late_takes_a_new_slot(dynamodb: Any) -> None:
    busy = FakeTime(1000.0)
    queue = limiter(dynamodb, 10, busy)
    queue.wait()  # the app's pace is now set: the next slot is 1000.12

    frozen = FakeTime(1000.0, oversleep=0.5)  # e.g. a Lambda thawed half a second late
    caller = limiter(dynamodb, 10, frozen)
    caller.wait()
    # Woke at 1000.62 for slot 1000.12; going then would crowd the calls queued after it,
    # so it reserved again (1000.62 was idle: no sleep) and went at once.
    assert frozen.sleeps == [pytest.approx(0.12)]
    assert next_at(dynamodb) == pytest.approx(1000.62 + 0.12)


def test_a_queue_longer_than_the_bound_is_not_joined_and_the_step_is_given_back(
    dynamodb: Any,
) -> None:
    dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": KEY}, "next_at": {"N": "1100.000000"}}
    )  # 100 s of calls already reserved
    fake = FakeTime(1000.0)
    caller = limiter(dynamodb, 10, fake, max_queue=30.0, max_wait=60.0)
    with pytest.raises(TikTokRateLimited, match="tiktok_qps"):
        caller.wait()
    assert 60.0 <= fake.now - 1000.0 <= 61.0
    assert next_at(dynamodb) == 1100.0, "no slot was reserved"


def test_a_missing_table_is_a_configuration_error(dynamodb: Any) -> None:
    caller = AppRateLimiter("no-such-table", KEY, 10, client=dynamodb)
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_TABLE"):
        caller.wait()


# ------------------------------------------------------------------ wiring
def test_the_limiter_is_per_app_base_url() -> None:
    assert app_key("https://business-api.tiktok.com/open_api/v1.3") == KEY
    assert app_key("https://sandbox-ads.tiktok.com/open_api/v1.3/") != KEY
    assert make_pacer("", KEY, 10) is None, "no table: the client paces itself"


def test_make_client_takes_the_app_wide_limiter_when_the_table_is_set(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_BUCKET", "state")
    monkeypatch.setenv("TIKTOK_QPS", "10")
    monkeypatch.delenv("RATE_LIMIT_TABLE", raising=False)
    assert isinstance(make_client(load_settings(), "token")._pacer, LocalPacer)
    monkeypatch.setenv("RATE_LIMIT_TABLE", TABLE)
    assert isinstance(make_client(load_settings(), "token")._pacer, AppRateLimiter)


def test_a_caller_that_keeps_waking_late_never_squeezes_its_call_next_to_another(
    dynamodb: Any,
) -> None:
    # Issue 15: X (a CPU-starved Lambda) wakes 0.25 s late for six slots in a row while Y
    # (punctual Map children) keeps the queue full. Until then X gave up taking new slots
    # after five and went late anyway: its call started 6 ms before one of Y's.
    interval = pacing_interval(10)
    x_time = FakeTime(1000.0)
    x_time.oversleeps = [0.25] * 6  # type: ignore[attr-defined]
    y_time = FakeTime(1000.0)
    y = limiter(dynamodb, 10, y_time)
    starts: list[tuple[str, float]] = []  # (who, when the call started)
    x_slots: list[float] = []

    class OthersQueueBehindX:
        def update_item(self, **kwargs: Any) -> Any:
            out = dynamodb.update_item(**kwargs)
            # X's write went through: three of Y's calls reserve the slots right after it.
            x_slots.append(next_at(dynamodb) - interval)
            for _ in range(3):
                y_time.now = x_time.now
                slot, _queued = y._reserve(y_time.now)
                assert slot is not None
                starts.append(("Y", slot))  # Y is punctual: it starts at its slot
            return out

    def late_sleep(seconds: float) -> None:
        extra = x_time.oversleeps.pop(0) if x_time.oversleeps else 0.0  # type: ignore[attr-defined]
        x_time.sleeps.append(seconds)
        x_time.now += seconds + extra

    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": KEY}, "next_at": {"N": "1000.120000"}})
    x = AppRateLimiter(
        TABLE, KEY, 10, client=OthersQueueBehindX(), clock=x_time.clock, sleep=late_sleep
    )
    x.wait()
    starts.append(("X", x_time.now))

    x_start = x_time.now
    y_starts = [t for who, t in starts if who == "Y"]
    nearest = min(abs(x_start - t) for t in y_starts)
    assert nearest >= interval - LATE_TOLERANCE - 1e-6, f"X started {nearest:.3f} s from Y"
    # ...because X started on time for a slot of its own (LATE_TOLERANCE's invariant).
    assert min(x_start - slot for slot in x_slots if slot <= x_start) <= LATE_TOLERANCE
