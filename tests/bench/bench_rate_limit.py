"""Benchmark: does the rate limit hold every time? (issue 15)

TRIALS trials of the e2e scenario of ``tests/e2e/test_rate_limit_e2e.py``: two audience
runs started together at ``tiktok_qps = 10`` on the local default, against the emulator
enforcing 10 calls in any 1-second window (a sliding window, see docs/tiktok-contract.md).
Each trial gets a fresh emulator and deployment, as the e2e fixtures build them. Printed,
per trial and in total:

- answers of 40100 (must be 0);
- the smallest gap between two arrivals at the emulator (two calls may arrive closer than
  1/qps: TikTok's window allows it);
- the shortest time spanned by 11 consecutive arrivals (under 1 s is a 40100).

    python tests/bench/bench_rate_limit.py [--trials 50]

Too slow for CI (about 10 s a trial); ``make bench`` runs it. Run from the repository root
(the local runner reads template.yaml from there). Named ``bench_*.py`` so pytest never
collects it.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from results import Figure, write

from tests.conftest import ADVERTISER, TOKEN
from tests.e2e.test_rate_limit_e2e import QPS, sync_two_audiences
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LOCAL_APP_ID, LOCAL_APP_SECRET, LocalDestination


def trial(workdir: Path) -> tuple[list[str], int, list[float]]:
    """(why each failed run failed, answers of 40100, arrival times)."""
    with TikTokEmulator() as emulator:
        emulator.set_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        emulator.add_advertiser(ADVERTISER, "Acme")
        emulator.add_token(TOKEN, [ADVERTISER])
        with LocalDestination(
            tiktok_base_url=emulator.base_url or "", retry_wait_scale=0.0
        ) as local:
            local.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
            local.put_token("acme", TOKEN, [ADVERTISER])
            results = sync_two_audiences(local, emulator, workdir)
        limited = sum(1 for entry in emulator.calls_log if entry[2] == 40100)
        arrivals = sorted(t for t, _admitted in emulator.arrivals)
    return [str(r.cause)[:300] for r in results if not r.succeeded], limited, arrivals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args(argv)

    total_limited = failed_runs = 0
    min_gap = min_span = float("inf")
    began = time.monotonic()
    for number in range(1, args.trials + 1):
        with tempfile.TemporaryDirectory() as tmp:
            causes, limited, arrivals = trial(Path(tmp))
        succeeded = not causes
        gap = min(b - a for a, b in itertools.pairwise(arrivals))
        span = min(b - a for a, b in zip(arrivals, arrivals[QPS:], strict=False))
        total_limited += limited
        failed_runs += not succeeded
        min_gap, min_span = min(min_gap, gap), min(min_span, span)
        print(
            f"trial {number:2d}: {len(arrivals)} calls, {limited} answers of 40100, "
            f"min gap {gap * 1000:.0f} ms, 11 calls spanned at least {span:.3f} s"
            + "".join(f"\n  a run FAILED: {cause}" for cause in causes),
            flush=True,
        )
    print(
        f"\n{args.trials} trials of two audience runs at tiktok_qps = {QPS} against "
        f"{QPS} calls in any 1-second window ({time.monotonic() - began:.0f} s):\n"
        f"  answers of 40100: {total_limited}\n"
        f"  min gap between arrivals: {min_gap * 1000:.0f} ms\n"
        f"  shortest span of {QPS + 1} arrivals: {min_span:.3f} s (under 1 s is a 40100)\n"
        f"  runs failed: {failed_runs}"
    )
    at = f"{args.trials} trials"
    write(
        "rate_limit",
        f"App-wide rate limit: two audience runs at tiktok_qps = {QPS} against TikTok's "
        f"{QPS} calls in any 1-second window",
        [
            Figure("answers of 40100 (must be 0)", at, total_limited, "answers"),
            Figure("runs failed", at, failed_runs, "runs"),
            Figure("min gap between arrivals", at, min_gap * 1000, "ms"),
            Figure(
                f"shortest span of {QPS + 1} arrivals (under 1 s is a 40100)", at, min_span, "s"
            ),
        ],
    )
    if total_limited or failed_runs:
        sys.exit(1)


if __name__ == "__main__":
    main()
