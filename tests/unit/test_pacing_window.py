"""Issue 15's property: whatever wake-up delays and stalls its callers meet, TikTok never
sees more than ``qps`` calls in one second, with either pacer (rate_limit.LATE_TOLERANCE holds
the proof).

Callers are TikTokClients in threads sending over HTTP to the emulator, all on one virtual
clock that moves only when every caller sleeps, so a case is exact and fast; the emulator
counts its sliding 1-second window on that clock too. From a seeded generator, each
caller's sleeps overshoot (it wakes late) and each request's preparation stalls (time
passes between the pacer's go and the send, as in a CPU-starved process). One caller is
starved: most of its delays are far past LATE_TOLERANCE. The others are mostly punctual
(no delay, or one within LATE_TOLERANCE), so the starved caller's calls meet a full queue.

Arrivals must keep ``1 + PACING_HEADROOM - LATE_TOLERANCE`` seconds between call k and call
k + qps (more than a second; the rest is the network's budget), and no call is answered
40100.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tiktok_destination.adapters.rate_limit import (
    LATE_TOLERANCE,
    PACING_HEADROOM,
    AppRateLimiter,
    LocalPacer,
    Pacer,
    app_key,
)
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination_local.emulator import TikTokEmulator

QPS = 10
CALLERS = 5
CALLS_EACH = 6
SEEDS = range(20)
TOKEN = "window-token-3c9d"
TABLE = "rate-limit"  # the dynamodb fixture's table (tests/unit/conftest.py)
#: the least time between call k and call k + QPS that the proof promises
MIN_SPAN = 1.0 + PACING_HEADROOM - LATE_TOLERANCE

Sleep = Callable[[float], None]


class VirtualTime:
    """One fake clock for several threads: it jumps to the earliest wake-up once every
    caller is asleep or done."""

    def __init__(self, callers: int) -> None:
        self.now = 1000.0
        self._cond = threading.Condition()
        self._awake = callers
        self._wakes: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleeper(self, overshoots: Iterator[float]) -> Sleep:
        def sleep(seconds: float) -> None:
            with self._cond:
                wake = self.now + max(seconds, 0.0) + next(overshoots)
                if wake <= self.now:
                    return
                self._wakes.append(wake)
                self._awake -= 1
                self._cond.notify_all()
                self._cond.wait_for(lambda: self.now >= wake)

        return sleep

    def done(self) -> None:
        with self._cond:
            self._awake -= 1
            self._cond.notify_all()

    def run(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.start()
        with self._cond:
            while True:
                self._cond.wait_for(lambda: self._awake == 0)
                if not self._wakes:
                    break
                self.now = min(self._wakes)
                woken = [w for w in self._wakes if w <= self.now]
                self._wakes = [w for w in self._wakes if w > self.now]
                self._awake += len(woken)
                self._cond.notify_all()
        for thread in threads:
            thread.join()


def delays(rng: random.Random, starved: bool) -> Iterator[float]:
    late_share = 0.7 if starved else 0.03
    drawn = [
        rng.uniform(0.1, 1.5)
        if rng.random() < late_share
        else rng.choice([0.0, rng.uniform(0, LATE_TOLERANCE)])
        for _ in range(80)
    ]
    return itertools.chain(drawn, itertools.repeat(0.0))


@pytest.fixture
def emulator() -> Iterator[TikTokEmulator]:
    with TikTokEmulator(qps_limit=QPS) as emu:
        emu.add_advertiser("7000000000000000009", "Acme")
        emu.add_token(TOKEN, ["7000000000000000009"])
        yield emu


@pytest.fixture
def stalls(monkeypatch: pytest.MonkeyPatch) -> dict[int, Sleep]:
    """Per caller thread: how its requests stall while being prepared."""
    by_thread: dict[int, Sleep] = {}
    real_prepare = requests.Session.prepare_request

    def stalling_prepare(self: requests.Session, request: requests.Request) -> Any:
        stall = by_thread.get(threading.get_ident())
        if stall is not None:
            stall(0.0)
        return real_prepare(self, request)

    monkeypatch.setattr(requests.Session, "prepare_request", stalling_prepare)
    return by_thread


def run_case(
    seed: int,
    emulator: TikTokEmulator,
    stalls: dict[int, Sleep],
    pacer_for: Callable[[VirtualTime, Sleep], Pacer],
) -> None:
    rng = random.Random(seed)
    vt = VirtualTime(CALLERS)
    emulator.clock = vt.clock
    failures: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            sleep = vt.sleeper(delays(rng_for[index], starved=index == 0))
            stalls[threading.get_ident()] = vt.sleeper(delays(rng_for[index], index == 0))
            client = TikTokClient(
                TOKEN,
                base_url=emulator.base_url or "",
                qps=QPS,
                retry=RetryPolicy(max_retries=0),  # a 40100 fails the case, not retried
                sleep=sleep,
                clock=vt.clock,
                pacer=pacer_for(vt, sleep),
            )
            with client:
                for _ in range(CALLS_EACH):
                    client.user_info()
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)
        finally:
            vt.done()

    rng_for = [random.Random(rng.random()) for _ in range(CALLERS)]
    vt.run([threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)])

    limited = [entry for entry in emulator.calls_log if entry[2] == 40100]
    assert not limited and not failures, f"seed {seed}: {len(limited)} answers of 40100"
    arrivals = sorted(t for t, _admitted in emulator.arrivals)
    assert len(arrivals) == CALLERS * CALLS_EACH
    worst = min(b - a for a, b in zip(arrivals, arrivals[QPS:], strict=False))
    assert worst >= MIN_SPAN - 1e-6, (
        f"seed {seed}: call k and call k+{QPS} reached TikTok {worst:.3f} s apart "
        f"(at least {MIN_SPAN:.2f} promised)"
    )


class _CallerSleep:
    """One LocalPacer serves every thread of a process; each thread sleeps its own way."""

    def __init__(self) -> None:
        self.by_thread: dict[int, Sleep] = {}

    def __call__(self, seconds: float) -> None:
        self.by_thread[threading.get_ident()](seconds)


@pytest.mark.parametrize("seed", SEEDS)
def test_local_pacer_keeps_tiktoks_window_whatever_the_delays(
    seed: int, emulator: TikTokEmulator, stalls: dict[int, Sleep]
) -> None:
    dispatch = _CallerSleep()
    shared: list[LocalPacer] = []
    lock = threading.Lock()

    def one_pacer(vt: VirtualTime, sleep: Sleep) -> Pacer:
        dispatch.by_thread[threading.get_ident()] = sleep
        with lock:
            if not shared:
                shared.append(LocalPacer(QPS, vt.clock, dispatch))
            return shared[0]

    run_case(seed, emulator, stalls, one_pacer)


@pytest.mark.parametrize("seed", SEEDS[:8])
def test_app_rate_limiter_keeps_tiktoks_window_whatever_the_delays(
    seed: int, emulator: TikTokEmulator, stalls: dict[int, Sleep], dynamodb: Any
) -> None:
    # Each caller is its own Lambda: its own limiter on the one item, its own sleeps.
    key = app_key("https://business-api.tiktok.com/open_api/v1.3/")

    def own_limiter(vt: VirtualTime, sleep: Sleep) -> Pacer:
        return AppRateLimiter(TABLE, key, QPS, client=dynamodb, clock=vt.clock, sleep=sleep)

    run_case(seed, emulator, stalls, own_limiter)
