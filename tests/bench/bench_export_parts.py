"""Benchmark: an export in 100 parts, end to end on the local default.

A Spark-style export (``--parts`` CSV parts of generated email + phone rows, and a
``_SUCCESS`` marker) is synced into a new audience by one console start of its folder, once
at ``--rows-per-part`` and once at ten times that, in this one run. Printed for each:

- Step Functions transitions of the execution (history events of the parent, and Map
  children): they must not grow with rows, only with parts and batches;
- planning time per part (the Validate state's plan: a HEAD and a plan per part);
- mapping calls against the lower bound ``ceil(members / 10,000)`` (1.00 = none wasted).

    python tests/bench/bench_export_parts.py [--parts 100] [--rows-per-part 1000]

Run from the repository root. Named ``bench_*.py`` so pytest never collects it.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync_e2e import ADVERTISER, MAPPING, MAPPING_BATCH, TOKEN, config
from bench_validate import generate
from results import Figure, rows_label, write

from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import (
    LOCAL_APP_ID,
    LOCAL_APP_SECRET,
    REGION,
    LocalDestination,
)


def write_export(folder: Path, parts: int, rows_per_part: int) -> None:
    whole = folder.parent / f"{folder.name}.csv"
    generate(whole, parts * rows_per_part)
    header, *rows = whole.read_text(encoding="utf-8").splitlines()
    whole.unlink()
    folder.mkdir()
    for number in range(parts):
        chunk = rows[number * rows_per_part : (number + 1) * rows_per_part]
        text = "\n".join([header, *chunk]) + "\n"
        (folder / f"part-{number:05d}-bench.c000.csv").write_text(text, encoding="utf-8")
    (folder / "_SUCCESS").write_bytes(b"")


def seconds_in(history: list[dict[str, object]], state: str) -> float:
    entered = next(
        e["timestamp"]
        for e in history
        if (e.get("stateEnteredEventDetails") or {}).get("name") == state  # type: ignore[attr-defined]
    )
    exited = next(
        e["timestamp"]
        for e in history
        if (e.get("stateExitedEventDetails") or {}).get("name") == state  # type: ignore[attr-defined]
    )
    assert isinstance(entered, datetime) and isinstance(exited, datetime)
    return (exited - entered).total_seconds()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=100)
    parser.add_argument("--rows-per-part", type=int, default=1000)
    args = parser.parse_args(argv)
    out = sys.stdout  # the in-process Lambdas redirect sys.stdout from their threads
    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    failed = False
    figures: list[Figure] = []
    try:
        with TikTokEmulator() as emulator:
            emulator.set_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
            emulator.add_advertiser(ADVERTISER, "Acme")
            emulator.add_token(TOKEN, [ADVERTISER])
            with LocalDestination(
                tiktok_base_url=emulator.base_url or "", retry_wait_scale=0.0
            ) as local:
                local.put_config(config(1000.0))
                local.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
                local.put_token("acme", TOKEN, [ADVERTISER])
                sfn = boto3.client("stepfunctions", region_name=REGION)
                for scale in (1, 10):
                    rows_per_part = args.rows_per_part * scale
                    folder = work / f"export-x{scale}"
                    write_export(folder, args.parts, rows_per_part)
                    emulator.reset_counters()
                    started = time.perf_counter()
                    result = local.run_export(folder, "acme_audiences", "bench")
                    wall = time.perf_counter() - started
                    if not result.succeeded or result.report is None:
                        raise SystemExit(f"export sync failed: {result.error}: {result.cause}")
                    history = sfn.get_execution_history(
                        executionArn=result.execution_arn, maxResults=1000
                    )["events"]
                    members = result.report["members"]
                    bound = math.ceil(members["added"] / MAPPING_BATCH) + math.ceil(
                        members["removed"] / MAPPING_BATCH
                    )
                    calls = emulator.calls[MAPPING]
                    plan_seconds = seconds_in(history, "Validate")
                    print(
                        f"{args.parts} parts x {rows_per_part:,} rows: "
                        f"{len(history)} history events in the execution, "
                        f"{len(result.states)} states entered, "
                        f"{result.report['batches']['total']} mapping batches; "
                        f"Validate (plan + inline validate) {plan_seconds:.2f} s = "
                        f"{plan_seconds / args.parts * 1000:.1f} ms per part; "
                        f"{calls} mapping calls vs lower bound {bound} "
                        f"(ratio {calls / max(bound, 1):.2f}); wall {wall:.1f} s",
                        file=out,
                    )
                    failed |= calls != bound
                    at = f"{args.parts} parts x {rows_label(rows_per_part)}"
                    figures += [
                        Figure("history events in the execution", at, len(history), "events"),
                        Figure(
                            "Validate (plan + inline validate) per part",
                            at,
                            plan_seconds / args.parts * 1000,
                            "ms",
                        ),
                        Figure("mapping calls / lower bound", at, calls / max(bound, 1), "x"),
                        Figure("wall", at, wall, "s"),
                    ]
                    # The audience now holds this export: the next one is another audience's
                    # worth of changes, which is what the second line measures.
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write("export_parts", "An export in parts, one console start of its folder", figures)
    if failed:
        raise SystemExit("mapping calls above the lower bound (see above)")


if __name__ == "__main__":
    main()
