"""Benchmark: an end-to-end first sync and an unchanged re-sync on the local default.

The real state machine on moto with the in-process TikTok emulator (as ``tests/conftest.py``
sets them up), the default mapping batch of 10,000 ids and ``tiktok_qps`` set high, so the
client's pacing is not what is measured. A generated CSV of N rows (email + phone, about
5% invalid, ``bench_validate.generate``) is synced into a new audience, then the same rows
under another file name are synced again. Printed, each measured in this one run:

- mapping calls against the lower bound ``ceil(members / 10,000)`` per action (1.00 = no
  call wasted);
- wall time against the rate bound ``calls / tiktok_qps`` (how far the pipeline's own work
  sits above what TikTok's rate alone would cost), and wall seconds per row;
- the re-sync's mapping calls (must be 0) and its wall time.

    python tests/bench/bench_sync_e2e.py [--rows 1000000] [--qps 1000]
        [--range-bytes 16777216] [--diff-inline-members 0]

``--range-bytes`` and ``--diff-inline-members`` set ``VALIDATE_RANGE_BYTES`` and
``DIFF_INLINE_MEMBERS`` for the run, so a file of a few rows' millions goes through both
fan-outs (the ValidateRanges Map and the DiffShards Map) as a 100M-row file would; without
them it is validated and diffed in one Lambda each, as a small file is.

Run from the repository root (the local runner reads template.yaml from there). Named
``bench_*.py`` so pytest never collects it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_validate import generate
from results import TIERS, Figure, rows_label, write

from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import (
    LOCAL_APP_ID,
    LOCAL_APP_SECRET,
    LocalDestination,
)

ADVERTISER = "7000000000000000001"
TOKEN = "bench-token-5a1e"
MAPPING_BATCH = 10_000  # TikTok's per-call maximum and the product's default
MAPPING = "segment/mapping/"


def config(qps: float) -> str:
    return f"""
[settings]
tiktok_qps = {qps}
reject_threshold = 0.2

[credentials.acme]

[destinations.acme_audiences]
credential = "acme"
advertiser_id = "{ADVERTISER}"
kind = "custom_audience"

[data_templates.bench]
destination = "acme_audiences"
audience_name = "Bench audience"
user_id_types = ["EMAIL", "PHONE"]
"""


def lower_bound(added: int, removed: int) -> int:
    return math.ceil(added / MAPPING_BATCH) + math.ceil(removed / MAPPING_BATCH)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--qps", type=float, default=1000.0, help="tiktok_qps for the client")
    parser.add_argument("--range-bytes", type=int, help="VALIDATE_RANGE_BYTES for the run")
    parser.add_argument("--diff-inline-members", type=int, help="DIFF_INLINE_MEMBERS for the run")
    args = parser.parse_args(argv)
    # The in-process Lambdas read their settings from this process's environment.
    if args.range_bytes is not None:
        os.environ["VALIDATE_RANGE_BYTES"] = str(args.range_bytes)
    if args.diff_inline_members is not None:
        os.environ["DIFF_INLINE_MEMBERS"] = str(args.diff_inline_members)
    # The in-process Lambdas redirect sys.stdout to their log stream from several threads
    # at once (the Map), so sys.stdout may not be restored afterwards: print to this one.
    out = sys.stdout

    work = Path(tempfile.mkdtemp(prefix="bench_sync_"))
    try:
        first_file = work / "day1.csv"
        generate(first_file, args.rows)
        again_file = work / "day1-renamed.csv"
        shutil.copyfile(first_file, again_file)
        with TikTokEmulator() as emulator:
            emulator.set_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
            emulator.add_advertiser(ADVERTISER, "Acme")
            emulator.add_token(TOKEN, [ADVERTISER])
            with LocalDestination(
                tiktok_base_url=emulator.base_url or "", retry_wait_scale=0.0
            ) as local:
                local.put_config(config(args.qps))
                local.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
                local.put_token("acme", TOKEN, [ADVERTISER])

                started, cpu_started = time.perf_counter(), time.process_time()
                first = local.run_file(first_file, "acme_audiences", "bench")
                first_seconds = time.perf_counter() - started
                first_cpu = time.process_time() - cpu_started
                if not first.succeeded or first.report is None:
                    raise SystemExit(f"first sync failed: {first.error}: {first.cause}")
                first_calls = emulator.calls[MAPPING]
                members = first.report["members"]
                held = sum(len(a["members"]) for a in emulator.audiences(ADVERTISER))

                emulator.reset_counters()
                started, cpu_started = time.perf_counter(), time.process_time()
                again = local.run_file(again_file, "acme_audiences", "bench")
                again_seconds = time.perf_counter() - started
                again_cpu = time.process_time() - cpu_started
                if not again.succeeded or again.report is None:
                    raise SystemExit(f"re-sync failed: {again.error}: {again.cause}")
                again_calls = emulator.calls[MAPPING]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bound = lower_bound(members["added"], members["removed"])
    rate_bound = first_calls / args.qps
    rows = args.rows
    print(
        f"path: VALIDATE_RANGE_BYTES={os.environ.get('VALIDATE_RANGE_BYTES', 'default')}, "
        f"DIFF_INLINE_MEMBERS={os.environ.get('DIFF_INLINE_MEMBERS', 'default')}",
        file=out,
    )
    print(
        f"first sync of {rows:,} rows: {members['added']:,} members added "
        f"({held:,} held by the emulator), {first_calls} mapping calls vs lower bound {bound}: "
        f"ratio {first_calls / bound:.2f}",
        file=out,
    )
    print(
        f"first sync wall {first_seconds:.1f} s vs rate bound {rate_bound:.2f} s "
        f"({first_calls} calls / {args.qps:g} qps): ratio {first_seconds / rate_bound:.1f}; "
        f"{first_seconds / rows * 1e6:.1f} us per row end to end ({first_cpu / rows * 1e6:.1f} "
        "us CPU: every thread of this process, moto and the emulator included)",
        file=out,
    )
    tiers = ", ".join(f"{name} {qps} QPS {first_calls / qps:.1f} s" for name, qps in TIERS.items())
    print(f"the same calls' rate bound at TikTok's tiers: {tiers}", file=out)
    print(
        f"unchanged re-sync: {again_calls} mapping calls (0 expected), wall {again_seconds:.1f} "
        f"s, {again_seconds / rows * 1e6:.1f} us per row ({again_cpu / rows * 1e6:.1f} us CPU); "
        "re-sync/first wall ratio "
        f"{again_seconds / first_seconds:.2f}",
        file=out,
    )
    at = rows_label(rows)
    write(
        "sync_e2e",
        f"End-to-end sync on the local default (moto + emulator, tiktok_qps = {args.qps:g}; "
        f"VALIDATE_RANGE_BYTES={os.environ.get('VALIDATE_RANGE_BYTES', 'default')}, "
        f"DIFF_INLINE_MEMBERS={os.environ.get('DIFF_INLINE_MEMBERS', 'default')})",
        [
            Figure("first sync: members added", at, members["added"], "members"),
            Figure("first sync: mapping calls", at, first_calls, "calls"),
            Figure("first sync: mapping calls / lower bound", at, first_calls / bound, "x"),
            Figure("first sync: wall", at, first_seconds, "s"),
            Figure("first sync: rate bound (calls / tiktok_qps)", at, rate_bound, "s"),
            Figure("first sync: CPU per row", at, first_cpu / rows * 1e6, "us"),
            *(
                Figure(f"first sync's calls at {name} ({qps} QPS)", at, first_calls / qps, "s")
                for name, qps in TIERS.items()
            ),
            Figure("unchanged re-sync: mapping calls", at, again_calls, "calls"),
            Figure("unchanged re-sync: wall", at, again_seconds, "s"),
        ],
    )
    if held != members["added"] or again_calls != 0 or first_calls != bound:
        raise SystemExit("the sync did not reach the expected end state (see above)")


if __name__ == "__main__":
    main()
