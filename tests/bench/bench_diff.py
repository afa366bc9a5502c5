"""Benchmark: the audience diff (sorting.py's external sort + sorted merges) at 1M and 5M.

Generates a committed snapshot of N members (sorted, as ``commit_audience`` leaves it) and
a new, unsorted members file of N members (validate's output order) in which 5% of the
snapshot left and 5% are new, plus 1% repeated lines (a person listed twice). A fresh
Python process then runs exactly the calls ``plan_audience`` makes (no S3: the files are
local) and the kernel's rusage gives that process's peak RSS.

    python tests/bench/bench_diff.py [--members 1000000 5000000] [--keep]

Named ``bench_*.py`` so pytest never collects it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results import Figure, rows_label, write

CHURN = 0.05
REPEATED = 0.01


def maxrss_bytes(value: int) -> int:
    # Linux reports kilobytes, macOS bytes.
    return value if sys.platform == "darwin" else value * 1024


def _member(i: int) -> str:
    schema = "PHONE_SHA256" if i % 3 == 0 else "EMAIL_SHA256"
    return f"{schema}\t{hashlib.sha256(b'person-%d' % i).hexdigest()}\n"


def generate(work: Path, members: int) -> tuple[Path, Path]:
    """``committed.txt`` (sorted snapshot) and ``members.txt`` (unsorted new members)."""
    churn = int(members * CHURN)
    committed = work / "committed.txt"
    lines = [_member(i) for i in range(members)]
    lines.sort()
    committed.write_text("".join(lines), encoding="utf-8")
    del lines
    raw = work / "members.txt"
    every = int(1 / REPEATED)
    with raw.open("w", encoding="utf-8") as out:
        # Hash order is random, so writing in id order gives an unsorted file.
        for i in range(churn, members + churn):
            line = _member(i)
            out.write(line)
            if i % every == 0:
                out.write(line)
    return committed, raw


def generate_apart(work: Path, members: int) -> None:
    """``generate`` in a process of its own: a forked child's peak RSS starts from its
    parent's, so the parent must never have held the sorted snapshot in memory."""
    done = subprocess.run([sys.executable, __file__, "--generate", str(work), str(members)])
    if done.returncode != 0:
        raise SystemExit(f"generating {members:,} members failed")


def expected_counts(members: int) -> dict[str, int]:
    churn = int(members * CHURN)
    return {"members": members, "added": churn, "removed": churn, "unchanged": members - churn}


def child(work: Path) -> None:
    """The fresh process: the diff as ``plan_audience`` runs it, with no pending runs."""
    import resource

    from tiktok_destination import sorting
    from tiktok_destination.audiences.audience import _Counted, _write

    baseline = maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    scratch = work / "python"
    scratch.mkdir()
    committed, raw = work / "committed.txt", work / "members.txt"
    read = sorting.read_lines
    started, cpu_started = time.perf_counter(), time.process_time()
    new_sorted = scratch / "members.sorted.txt"
    members = sorting.external_sort(read(raw), new_sorted, workdir=scratch)
    maybe_present = _Counted(sorting.union(read(committed)))
    deletes_path, adds_path = scratch / "deletes.txt", scratch / "adds.txt"
    removed = _write(deletes_path, sorting.difference(maybe_present, read(new_sorted)))
    surely_path = scratch / "surely.txt"
    _write(surely_path, sorting.difference(read(committed), sorting.union()))
    added = _write(adds_path, sorting.difference(read(new_sorted), read(surely_path)))
    unchanged = sum(1 for _ in sorting.intersection(read(new_sorted), read(surely_path)))
    surely_path.unlink()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                # every thread's CPU time: on a shared machine wall time also counts
                # waiting for a core, CPU time does not
                "cpu_seconds": time.process_time() - cpu_started,
                "baseline_rss": baseline,
                "members": members,
                "added": added,
                "removed": removed,
                "unchanged": unchanged,
            }
        )
    )


def run_child(args: list[str]) -> dict[str, Any]:
    """Run ``args`` in a fresh interpreter; its last stdout line is JSON; add its peak RSS."""
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"child {args[0]} failed with exit code {code}")
    measured: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    measured["peak_rss"] = maxrss_bytes(usage.ru_maxrss)
    return measured


def measure(work: Path, members: int) -> dict[str, Any]:
    measured = run_child([__file__, "--child", str(work)])
    counts = {k: measured[k] for k in ("members", "added", "removed", "unchanged")}
    if counts != expected_counts(members):
        raise SystemExit(f"diff counts {counts} != expected {expected_counts(members)}")
    return measured


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child", metavar="WORK", help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]))
        return
    if args.child:
        child(Path(args.child))
        return
    mib = 1024 * 1024
    print(
        f"{'members':>10} {'seconds':>8} {'us/member':>10} {'CPU us/member':>14} "
        f"{'peak RSS MiB':>13}"
    )
    results: list[tuple[int, dict[str, Any]]] = []
    for members in args.members:
        work = Path(tempfile.mkdtemp(prefix="bench_diff_"))
        try:
            generate_apart(work, members)
            m = measure(work, members)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        results.append((members, m))
        print(
            f"{members:>10,} {m['seconds']:>8.2f} {m['seconds'] / members * 1e6:>10.2f} "
            f"{m['cpu_seconds'] / members * 1e6:>14.2f} {m['peak_rss'] / mib:>13.1f}",
            flush=True,
        )
    if len(results) >= 2:
        (small_n, small), (large_n, large) = results[0], results[-1]
        per_small = small["seconds"] / small_n
        per_large = large["seconds"] / large_n
        cpu_ratio = (large["cpu_seconds"] / large_n) / (small["cpu_seconds"] / small_n)
        print(
            f"diff us/member {large_n:,}/{small_n:,}: {per_large / per_small:.2f} wall, "
            f"{cpu_ratio:.2f} CPU (1.0 = linear); peak RSS ratio "
            f"{large['peak_rss'] / small['peak_rss']:.2f}"
        )
    figures: list[Figure] = []
    for members, m in results:
        at = rows_label(members, "members")
        figures += [
            Figure("diff CPU per member", at, m["cpu_seconds"] / members * 1e6, "us"),
            Figure("diff wall per member", at, m["seconds"] / members * 1e6, "us"),
            Figure("peak RSS", at, m["peak_rss"] / mib, "MiB"),
        ]
    write("diff", f"Audience diff ({CHURN:.0%} churn, {REPEATED:.0%} repeated lines)", figures)


if __name__ == "__main__":
    main()
