"""Benchmark: validate_audience_file memory and speed as the file grows.

Generates CSV files of N rows (email + phone, about 5% invalid values) in a temporary
directory, validates each in a fresh Python process, and reads that child's peak RSS from
the kernel (``os.wait4`` rusage ``ru_maxrss``). Streaming means peak memory stays flat:
the 5M/1M memory ratio should be close to 1, and throughput about the same.

The yardstick for speed is the bare SHA-256 of the same identifiers: a second child
normalizes every usable identifier of the file (not timed) and times only
``hashlib.sha256(value.encode()).hexdigest()`` over them. Validate's per-row cost divided
by that per-row cost is a ratio that holds on a busy machine, where absolute times do not.

    python tests/bench/bench_validate.py [--rows 1000000 5000000] [--keep]

Named ``bench_*.py`` so pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results import Figure, rows_label, write

INVALID_SHARE = 0.05
SEED = 20240520
SHA_BATCH = 10_000
#: Ranges of this size give the planner marks to place in a 1M-row file (~56 MiB).
PLANNER_RANGE_BYTES = 4 * 1024 * 1024


def _maxrss_bytes(value: int) -> int:
    # Linux reports kilobytes, macOS bytes.
    return value if sys.platform == "darwin" else value * 1024


def _phone(rng: random.Random) -> str:
    area = rng.choice((213, 310, 415, 212, 646, 312, 617, 206, 512, 303))
    exchange = rng.randint(201, 989)
    line = rng.randint(0, 9999)
    style = rng.randrange(3)
    if style == 0:
        return f"({area}) {exchange}-{line:04d}"
    if style == 1:
        return f"+1 {area}-{exchange}-{line:04d}"
    return f"{area}.{exchange}.{line:04d}"


def generate(path: Path, rows: int, seed: int = SEED) -> None:
    """email,phone,first_name rows; about INVALID_SHARE of them carry an invalid value."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Email,Phone,first_name\n")
        for i in range(rows):
            email = f"Person.{i}.{rng.randrange(10**6)}@Example{i % 97}.com"
            phone = _phone(rng) if rng.random() < 0.7 else ""
            if rng.random() < INVALID_SHARE:
                kind = rng.randrange(4)
                if kind == 0:  # bad email, no phone: rejected
                    email, phone = f"person.{i}.example.com", ""
                elif kind == 1:  # bad phone next to a good email: identifier dropped
                    phone = "12345"
                elif kind == 2:  # both bad: rejected
                    email, phone = f"person{i}@example", "555-0100"
                else:  # nothing at all: rejected
                    email, phone = "", ""
            out.write(f'{email},"{phone}",Name{i}\n')


def child(src: Path, out_dir: Path, *, frame: bool = False) -> None:
    """Runs in the fresh process: validate one file, print a JSON line of measurements.

    ``frame``: every column "hashes" to constants, so what is timed is everything around
    the identifier functions (reading, taking the columns, the batch loop, writing, counting).
    """
    import resource

    from tiktok_destination.validation import audience_rows
    from tiktok_destination.validation.audience_rows import validate_audience_file

    if frame:
        constant = "0" * 64

        def stub(values: Any) -> tuple[list[str | None], list[int], dict[int, Any]]:
            return [constant] * len(values), [], {}

        audience_rows.identifier_column_hashers = lambda present, region: [  # type: ignore[assignment]
            stub for _ in present
        ]

    baseline = _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    started = time.perf_counter()
    cpu_started = time.process_time()
    result = validate_audience_file(
        src,
        source=f"file://{src}",
        file_format="csv",
        user_id_types=("EMAIL", "PHONE"),
        default_region="US",
        reject_threshold=0.2,
        out_members=out_dir / "members.tsv",
        out_rejects=out_dir / "rejects.csv",
    )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "baseline_rss": baseline,
                "rows_received": result.rows_received,
                "rows_accepted": result.rows_accepted,
                "rows_rejected": result.rows_rejected,
                "identifiers_written": result.identifiers_written,
                "rejected_by_reason": result.rejected_by_reason,
                "dropped": result.dropped_identifiers_by_reason,
            }
        )
    )


def planner_child(src: Path) -> None:
    """Runs in a fresh process: time the range planner's pass over the file (CPU)."""
    from types import SimpleNamespace
    from unittest import mock

    from tiktok_destination.inputs import ranges

    template = SimpleNamespace(
        user_id_types=["EMAIL", "PHONE"], columns={}, ignore_columns=[], headerless_columns=()
    )
    run = SimpleNamespace(kind="custom_audience", resolved=template, data_template=None)
    # One part: the planner plans every part of an export the same way.
    part = {"key": src.name, "etag": "", "uri": f"file://{src}", "size": src.stat().st_size}
    # The planner reads S3 by range GETs; here the same bytes come from the local file.
    with mock.patch.object(ranges, "open_range", lambda *_a, **_k: open(src, "rb")):
        started = time.process_time()
        planned, _ = ranges._csv_ranges(None, run, part, PLANNER_RANGE_BYTES)  # type: ignore[arg-type]
        seconds = time.process_time() - started
    print(json.dumps({"planner_seconds": seconds, "planner_ranges": len(planned)}))


def sha_child(src: Path) -> None:
    """Runs in a fresh process: time bare SHA-256 over the file's normalized identifiers."""
    import csv
    import hashlib

    from tiktok_destination.errors import RowRejected
    from tiktok_destination.identity.emails import normalize_email
    from tiktok_destination.identity.phones import normalize_phone

    def flush(batch: list[str]) -> float:
        sha256 = hashlib.sha256
        started = time.process_time()
        for value in batch:
            sha256(value.encode("utf-8")).hexdigest()
        seconds = time.process_time() - started
        batch.clear()
        return seconds

    seconds = 0.0
    count = 0
    batch: list[str] = []
    with open(src, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        next(reader)
        for email, phone, _ in reader:
            for raw, normalize in ((email, normalize_email), (phone, normalize_phone)):
                if not raw:
                    continue
                try:
                    batch.append(normalize(raw))
                except RowRejected:
                    continue
                count += 1
            if len(batch) >= SHA_BATCH:
                seconds += flush(batch)
    seconds += flush(batch)
    print(json.dumps({"sha_seconds": seconds, "sha_identifiers": count}))


def _run_child(args: list[str]) -> tuple[dict[str, Any], Any]:
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child failed with exit code {process.returncode}")
    measured: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return measured, usage


def measure(src: Path, out_dir: Path) -> dict[str, Any]:
    """Validate ``src`` in a fresh interpreter; the kernel's rusage gives its peak RSS."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    measured, usage = _run_child(["--child", str(src), str(out_dir)])
    measured["peak_rss"] = _maxrss_bytes(usage.ru_maxrss)
    measured["process_seconds"] = time.perf_counter() - started
    measured["file_bytes"] = src.stat().st_size
    sha, _ = _run_child(["--sha-child", str(src)])
    if sha["sha_identifiers"] != measured["identifiers_written"]:
        raise SystemExit(
            f"the SHA-256 yardstick hashed {sha['sha_identifiers']:,} identifiers but validate "
            f"wrote {measured['identifiers_written']:,}: they must be the same identifiers"
        )
    measured.update(sha)
    planner, _ = _run_child(["--planner-child", str(src)])
    measured.update(planner)
    frame, _ = _run_child(["--frame-child", str(src), str(out_dir)])
    measured["frame_seconds"] = frame["cpu_seconds"]
    return measured


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child", nargs=2, metavar=("SRC", "OUT_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--sha-child", metavar="SRC", help=argparse.SUPPRESS)
    parser.add_argument("--planner-child", metavar="SRC", help=argparse.SUPPRESS)
    parser.add_argument(
        "--frame-child", nargs=2, metavar=("SRC", "OUT_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return
    if args.sha_child:
        sha_child(Path(args.sha_child))
        return
    if args.frame_child:
        child(Path(args.frame_child[0]), Path(args.frame_child[1]), frame=True)
        return
    if args.planner_child:
        planner_child(Path(args.planner_child))
        return

    work = Path(tempfile.mkdtemp(prefix="bench_validate_"))
    results: list[tuple[int, dict[str, Any]]] = []
    try:
        for rows in args.rows:
            src = work / f"audience_{rows}.csv"
            generate(src, rows)
            results.append((rows, measure(src, work / f"out_{rows}")))
            if not args.keep:  # the next size needs the disk more than these files
                src.unlink()
                shutil.rmtree(work / f"out_{rows}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    mib = 1024 * 1024
    print(
        f"{'rows':>10} {'file MiB':>9} {'seconds':>8} {'rows/s':>9} {'peak RSS MiB':>13} "
        f"{'after import':>13} {'accepted':>9} {'rejected':>9}"
    )
    for rows, m in results:
        print(
            f"{rows:>10,} {m['file_bytes'] / mib:>9.1f} {m['seconds']:>8.2f} "
            f"{rows / m['seconds']:>9,.0f} {m['peak_rss'] / mib:>13.1f} "
            f"{m['baseline_rss'] / mib:>13.1f} {m['rows_accepted']:>9,} {m['rows_rejected']:>9,}"
        )
    for rows, m in results:
        print(f"{rows:,} rows: rejected {m['rejected_by_reason']}, dropped {m['dropped']}")
    print(
        f"{'rows':>10} {'validate CPU us/row':>20} {'bare SHA-256 CPU us/row':>24} "
        f"{'ratio':>6} {'identifiers':>12}"
    )
    for rows, m in results:
        print(
            f"{rows:>10,} {m['cpu_seconds'] / rows * 1e6:>20.2f} "
            f"{m['sha_seconds'] / rows * 1e6:>24.2f} "
            f"{m['cpu_seconds'] / m['sha_seconds']:>6.1f} {m['sha_identifiers']:>12,}"
        )
    print(
        f"{'rows':>10} {'frame CPU us/row':>17} {'frame ratio':>12} "
        f"{'planner CPU us/row':>19} {'planner ratio':>14} {'ranges':>7}"
    )
    for rows, m in results:
        print(
            f"{rows:>10,} {m['frame_seconds'] / rows * 1e6:>17.2f} "
            f"{m['frame_seconds'] / m['sha_seconds']:>12.1f} "
            f"{m['planner_seconds'] / rows * 1e6:>19.2f} "
            f"{m['planner_seconds'] / m['sha_seconds']:>14.1f} {m['planner_ranges']:>7}"
        )
    print(
        "frame = validate with every identifier function replaced by a constant (reading, the "
        "row loop, writing); planner = the range planner's pass over the file"
    )
    print(
        "ratio = validate's per-row CPU time / the bare SHA-256 CPU time of the same normalized "
        "identifiers, measured in this run (CPU time: a busy machine stretches wall time); "
        "target: at most 3"
    )
    if len(results) >= 2:
        (small_rows, small), (large_rows, large) = results[0], results[-1]
        memory_ratio = large["peak_rss"] / small["peak_rss"]
        throughput_ratio = (large_rows / large["seconds"]) / (small_rows / small["seconds"])
        print(
            f"memory ratio {large_rows:,}/{small_rows:,} rows: {memory_ratio:.2f} "
            f"(1.0 = flat; rows grew {large_rows / small_rows:.0f}x)"
        )
        print(f"throughput ratio {large_rows:,}/{small_rows:,} rows: {throughput_ratio:.2f}")
    write("validate", "Validate (email + phone CSV, ~5% invalid values)", _figures(results))
    if args.keep:
        print(f"files kept in {work}")


def _figures(results: list[tuple[int, dict[str, Any]]]) -> list[Figure]:
    """The figures printed above, for docs/performance.md."""
    mib = 1024 * 1024
    figures: list[Figure] = []
    for rows, m in results:
        at = rows_label(rows)
        figures += [
            Figure("validate CPU per row", at, m["cpu_seconds"] / rows * 1e6, "us"),
            Figure(
                "validate CPU / bare SHA-256 of the same identifiers",
                at,
                m["cpu_seconds"] / m["sha_seconds"],
                "x",
            ),
            Figure(
                "frame (reading, row loop, writing) CPU / bare SHA-256",
                at,
                m["frame_seconds"] / m["sha_seconds"],
                "x",
            ),
            Figure("range planner CPU per row", at, m["planner_seconds"] / rows * 1e6, "us"),
            Figure("throughput (wall)", at, rows / m["seconds"], "rows/s"),
            Figure("peak RSS", at, m["peak_rss"] / mib, "MiB"),
            Figure("file size per row", at, m["file_bytes"] / rows, "bytes"),
            Figure("identifiers per row", at, m["sha_identifiers"] / rows, "identifiers"),
        ]
    if len(results) >= 2:
        (small_rows, small), (large_rows, large) = results[0], results[-1]
        at = f"{large_rows:,} / {small_rows:,} rows"
        figures += [
            Figure("peak RSS ratio (1.0 = flat)", at, large["peak_rss"] / small["peak_rss"], "x"),
            Figure(
                "throughput ratio",
                at,
                (large_rows / large["seconds"]) / (small_rows / small["seconds"]),
                "x",
            ),
        ]
    return figures


if __name__ == "__main__":
    main()
