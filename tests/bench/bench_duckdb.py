"""Benchmark: DuckDB against our code for the audience diff and email validation.

Needs ``duckdb`` (``pip install -e '.[bench]'``); it is not a runtime dependency.

Diff: the same generated files as ``bench_diff.py`` (committed snapshot + unsorted new
members), diffed by our external sort + merges and by DuckDB (``EXCEPT`` both ways,
``INTERSECT`` for the unchanged count, the sorted member set written back) on 1 and 2
threads, each in a fresh process; the output files must be byte-identical.

Validate (emails): the generated CSV of ``bench_validate.py`` validated with
``user_id_types = ["EMAIL"]`` by ``validate_audience_file`` and by a DuckDB prototype:
``read_csv`` with the delimiter and quoting fixed, then SQL for the values it can decide
exactly (after trimming spaces, printable ASCII without whitespace: the 64-hex passthrough,
uppercase hex rejected, ASCII ``lower`` + the email pattern + ``sha256``); every other
value (non-ASCII, control or invisible characters, other whitespace, rejects) goes back
to ``hash_identifier`` in Python. Members and rejects must equal ours. A second, damaged
file (a quote left open, a row with too many fields, a NUL) shows where DuckDB's CSV
reader and ours part ways.

    python tests/bench/bench_duckdb.py [--members 1000000] [--rows 1000000] [--threads 1 2]

Named ``bench_*.py`` so pytest never collects it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_diff import expected_counts, generate_apart, maxrss_bytes, run_child
from bench_validate import generate as generate_csv
from results import Figure, rows_label, write

#: the Chunk/Validate Lambdas' memory (template.yaml); DuckDB spills past this share of it
MEMORY_LIMIT = "1GB"
OUTPUTS = ("members.sorted.txt", "adds.txt", "deletes.txt")


# ------------------------------------------------------------------ diff
def diff_child(work: Path, variant: str) -> None:
    """``variant``: the thread count, with a ``p`` when the inputs are read from Parquet."""
    import resource

    import duckdb

    threads, parquet = int(variant.rstrip("p")), variant.endswith("p")
    baseline = maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out = work / f"duckdb{variant}"
    out.mkdir()
    # Our member lines are "<schema>\t<64 hex>": no quotes, no other tabs; the schema names
    # are never a prefix of one another, so (s, h) order is the line's code point order.
    # Built from this process's own temporary paths, never from input data.
    text = (
        "read_csv('{}', delim = '\t', quote = '', escape = '', header = false, "
        "auto_detect = false, columns = {{'s': 'VARCHAR', 'h': 'VARCHAR'}})"
    )
    sources = {"new": work / "members.txt", "old": work / "committed.txt"}
    if parquet:
        # Untimed: what the diff would read if validate wrote Parquet instead of text.
        setup = duckdb.connect()
        for name, path in sources.items():
            sources[name] = out / f"{name}.parquet"
            convert = "COPY (SELECT * FROM {}) TO '{}'"
            setup.execute(convert.format(text.format(path), sources[name]))
        setup.close()
        text = "read_parquet('{}')"
    started, cpu_started = time.perf_counter(), time.process_time()
    con = duckdb.connect(config={"threads": threads, "memory_limit": MEMORY_LIMIT})
    con.execute(f"SET temp_directory = '{out / 'spill'}'")
    create = "CREATE TABLE {} AS SELECT {} s, h FROM {}"
    con.execute(create.format("new", "DISTINCT", text.format(sources["new"])))
    con.execute(create.format("old", "", text.format(sources["old"])))
    copy = "COPY ({}) TO '{}' (FORMAT csv, DELIMITER '\t', HEADER false, QUOTE '')"
    con.execute(copy.format("SELECT s, h FROM new ORDER BY s, h", out / "members.sorted.txt"))
    removed = con.execute(
        copy.format("SELECT * FROM old EXCEPT SELECT * FROM new ORDER BY s, h", out / "deletes.txt")
    ).fetchone()
    added = con.execute(
        copy.format("SELECT * FROM new EXCEPT SELECT * FROM old ORDER BY s, h", out / "adds.txt")
    ).fetchone()
    unchanged = con.execute(
        "SELECT count(*) FROM (SELECT * FROM new INTERSECT SELECT * FROM old)"
    ).fetchone()
    members = con.execute("SELECT count(*) FROM new").fetchone()
    seconds = time.perf_counter() - started
    assert removed and added and unchanged and members
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu_started,
                "baseline_rss": baseline,
                "members": members[0],
                "added": added[0],
                "removed": removed[0],
                "unchanged": unchanged[0],
            }
        )
    )


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def bench_diff(members: int, thread_counts: list[int], figures: list[Figure]) -> list[str]:
    """The lines to print; what they say is appended to ``figures`` too."""
    work = Path(tempfile.mkdtemp(prefix="bench_duckdb_diff_"))
    lines: list[str] = []
    try:
        generate_apart(work, members)
        python = run_child([str(Path(__file__).with_name("bench_diff.py")), "--child", str(work)])
        reference = {name: _digest(work / "python" / name) for name in OUTPUTS}
        base = python["seconds"] / members * 1e6
        base_cpu = python["cpu_seconds"] / members * 1e6
        lines.append(
            f"diff {members:,} members, ours (external sort): {base:.2f} us/member wall, "
            f"{base_cpu:.2f} CPU, peak RSS {python['peak_rss'] / 2**20:.0f} MiB"
        )
        at = rows_label(members, "members")
        figures += [
            Figure("diff, ours: CPU per member", at, base_cpu, "us"),
            Figure("diff, ours: peak RSS", at, python["peak_rss"] / 2**20, "MiB"),
        ]
        for threads in [*map(str, thread_counts), "1p"]:
            m = run_child([__file__, "--diff-child", str(work), threads])
            counts = {k: m[k] for k in ("members", "added", "removed", "unchanged")}
            same = counts == expected_counts(members) and all(
                _digest(work / f"duckdb{threads}" / name) == reference[name] for name in OUTPUTS
            )
            per = m["seconds"] / members * 1e6
            per_cpu = m["cpu_seconds"] / members * 1e6
            lines.append(
                f"diff {members:,} members, DuckDB {threads.rstrip('p')} thread(s)"
                f"{' from Parquet' if threads.endswith('p') else ''}: {per:.2f} us/member "
                f"wall, {per_cpu:.2f} CPU, peak RSS {m['peak_rss'] / 2**20:.0f} MiB; "
                f"ours/DuckDB wall {base / per:.2f}, CPU {base_cpu / per_cpu:.2f}; "
                f"outputs identical: {same}"
            )
            engine = f"DuckDB {threads.rstrip('p')} thread(s)" + (
                " from Parquet" if threads.endswith("p") else ""
            )
            figures += [
                Figure(f"diff, {engine}: ours/DuckDB CPU", at, base_cpu / per_cpu, "x"),
                Figure(f"diff, {engine}: peak RSS", at, m["peak_rss"] / 2**20, "MiB"),
                Figure(f"diff, {engine}: outputs identical (1 = yes)", at, int(same), ""),
            ]
            shutil.rmtree(work / f"duckdb{threads}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lines


# -------------------------------------------------------------- validate
# After trimming spaces: printable ASCII without whitespace. For such a value Python's
# strip() removes exactly the spaces trim() removed, isprintable() is True, lower() is ASCII
# lowering, and the email pattern's \s can match nothing, so the SQL below decides exactly
# as hashing.hash_identifier does. Anything else is Python's to decide.
_FAST_SQL = r"""
WITH r AS (
    SELECT row_number() OVER () AS rn, email AS raw
    FROM read_csv('{src}', delim = ',', quote = '"', escape = '"', header = true,
                  auto_detect = false, columns = {columns}, strict_mode = true,
                  store_rejects = true)
), t AS (SELECT rn, raw, trim(raw, ' ') AS v FROM r)
SELECT rn,
    CASE
        WHEN raw IS NULL OR NOT regexp_full_match(v, '[\x21-\x7e]+') THEN NULL
        WHEN regexp_full_match(v, '[0-9a-f]{{64}}') THEN v
        WHEN regexp_full_match(v, '[0-9a-fA-F]{{64}}') THEN NULL
        WHEN regexp_full_match(lower(v), '[^@]+@(?:[^@.]+\.)+[^@.]{{2,}}')
            THEN sha256(lower(v))
    END AS digest,
    raw
FROM t ORDER BY rn
"""


def duckdb_validate(src: Path, out_dir: Path, threads: int) -> dict[str, Any]:
    """Prototype: members.tsv and rejects.csv as validate_audience_file writes them."""
    import duckdb

    from tiktok_destination.errors import RowRejected
    from tiktok_destination.identity.hashing import hash_identifier
    from tiktok_destination.validation.row_loop import REJECTS_HEADER

    with src.open(encoding="utf-8", newline="") as fh:
        header = [name.strip().lower() for name in next(csv.reader(fh))]
    columns = "{" + ", ".join(f"'{name}': 'VARCHAR'" for name in header) + "}"
    con = duckdb.connect(config={"threads": threads, "memory_limit": MEMORY_LIMIT})
    cursor = con.execute(_FAST_SQL.format(src=src, columns=columns))
    missing = RowRejected(
        "email", "no_identifier", "no value in email: every row needs at least one"
    )
    fallback = 0
    with (
        (out_dir / "members.tsv").open("w", encoding="utf-8", newline="") as members,
        (out_dir / "rejects.csv").open("w", encoding="utf-8", newline="") as rejects,
    ):
        writer = csv.writer(rejects, lineterminator="\n")
        writer.writerow(REJECTS_HEADER)
        while batch := cursor.fetchmany(100_000):
            for number, digest, raw in batch:
                if digest is None:
                    fallback += 1
                    try:
                        if raw is None or not raw or raw.isspace():
                            raise missing
                        digest = hash_identifier("EMAIL", raw)
                    except RowRejected as problem:
                        writer.writerow((number, "email", problem.reason_code, problem.message))
                        continue
                members.write(f"EMAIL_SHA256\t{digest}\n")
    csv_rejects = con.execute("SELECT count(*) FROM reject_errors").fetchone()
    return {"fallback": fallback, "duckdb_csv_rejects": csv_rejects[0] if csv_rejects else 0}


def validate_child(src: Path, out_dir: Path, engine: str) -> None:
    import resource

    baseline = maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    if engine == "ours":
        from tiktok_destination.validation.audience_rows import validate_audience_file

        validate_audience_file(
            src,
            source=f"file://{src}",
            file_format="csv",
            user_id_types=("EMAIL",),
            default_region="US",
            reject_threshold=1.0,
            out_members=out_dir / "members.tsv",
            out_rejects=out_dir / "rejects.csv",
        )
    elif engine == "sha256":
        # The floor: hashlib over emails already trimmed and lowercased, read from a file.
        with (out_dir / "normalized.txt").open(encoding="utf-8") as fh:
            for line in fh:
                hashlib.sha256(line.rstrip("\n").encode()).hexdigest()
    else:
        extra = duckdb_validate(src, out_dir, int(engine))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "baseline_rss": baseline, **extra}))


def _normalized_emails(src: Path, out: Path) -> int:
    count = 0
    with src.open(encoding="utf-8", newline="") as fh, out.open("w", encoding="utf-8") as dst:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if row and row[0].strip():
                dst.write(row[0].strip().lower() + "\n")
                count += 1
    return count


def _same(left: Path, right: Path) -> bool:
    return all(_digest(left / n) == _digest(right / n) for n in ("members.tsv", "rejects.csv"))


def _write_damaged(path: Path) -> None:
    rows = [
        "email,phone",
        "a@example.com,",
        '"b@example.com,',  # a quote left open: ours rejects this line, reads on
        "c@example.com,",
        "d@example.com,,extra,fields",  # more fields than the header
        "e@exa\x00mple.com,",  # a NUL
        '"multi\nline@example.com",',
        "f@example.com,",
        " \u200bg@example.com,",  # a zero-width space after trimming
        "H@Example.COM ,",
        "ΣΑΣ@example.com,",  # Python lowers the final sigma differently
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def bench_validate(rows: int, thread_counts: list[int], figures: list[Figure]) -> list[str]:
    """The lines to print; what they say is appended to ``figures`` too."""
    work = Path(tempfile.mkdtemp(prefix="bench_duckdb_validate_"))
    lines: list[str] = []
    try:
        src = work / "audience.csv"
        generate_csv(src, rows)
        (work / "sha256").mkdir()
        _normalized_emails(src, work / "sha256" / "normalized.txt")
        runs: dict[str, dict[str, Any]] = {}
        for engine in ["ours", "sha256", *map(str, thread_counts)]:
            runs[engine] = run_child(
                [__file__, "--validate-child", str(src), str(work / engine), engine]
            )
        ours, ours_cpu = runs["ours"]["seconds"], runs["ours"]["cpu_seconds"]
        floor = runs["sha256"]["cpu_seconds"]
        lines.append(
            f"validate {rows:,} rows (emails only), ours: {ours:.2f} s wall, {ours_cpu:.2f} s "
            f"CPU = {ours_cpu / floor:.2f}x bare hashlib SHA-256 of the normalized emails "
            f"({floor:.2f} s CPU), peak RSS {runs['ours']['peak_rss'] / 2**20:.0f} MiB"
        )
        at = rows_label(rows)
        figures += [
            Figure("validate emails, ours: CPU / bare SHA-256", at, ours_cpu / floor, "x"),
            Figure("validate emails, ours: peak RSS", at, runs["ours"]["peak_rss"] / 2**20, "MiB"),
        ]
        for threads in thread_counts:
            m = runs[str(threads)]
            lines.append(
                f"validate {rows:,} rows (emails only), DuckDB {threads} thread(s) + Python "
                f"for {m['fallback']:,} rows: {m['seconds']:.2f} s wall, {m['cpu_seconds']:.2f} "
                f"s CPU = {m['cpu_seconds'] / floor:.2f}x bare SHA-256; ours/DuckDB wall "
                f"{ours / m['seconds']:.2f}, CPU {ours_cpu / m['cpu_seconds']:.2f}; peak RSS "
                f"{m['peak_rss'] / 2**20:.0f} MiB; members and rejects identical: "
                f"{_same(work / 'ours', work / str(threads))}"
            )
            engine = f"DuckDB {threads} thread(s) + Python"
            figures += [
                Figure(
                    f"validate emails, {engine}: ours/DuckDB CPU",
                    at,
                    ours_cpu / m["cpu_seconds"],
                    "x",
                ),
                Figure(f"validate emails, {engine}: peak RSS", at, m["peak_rss"] / 2**20, "MiB"),
                Figure(
                    f"validate emails, {engine}: members and rejects identical (1 = yes)",
                    at,
                    int(_same(work / "ours", work / str(threads))),
                    "",
                ),
            ]
        damaged = work / "damaged.csv"
        _write_damaged(damaged)
        try:
            for engine in ("ours", "1"):
                run_child(
                    [__file__, "--validate-child", str(damaged), str(work / f"d-{engine}"), engine]
                )
            verdict = f"identical: {_same(work / 'd-ours', work / 'd-1')}"
            ours_rejects = (work / "d-ours" / "rejects.csv").read_text().count("\n") - 1
            duck_rejects = (work / "d-1" / "rejects.csv").read_text().count("\n") - 1
            verdict += f" (rows rejected: ours {ours_rejects}, DuckDB prototype {duck_rejects})"
            damaged_at = "a damaged CSV (open quote, extra fields, NUL)"
            figures += [
                Figure("rows rejected, ours", damaged_at, ours_rejects, "rows"),
                Figure("rows rejected, DuckDB prototype", damaged_at, duck_rejects, "rows"),
            ]
        except SystemExit as failed:
            verdict = f"DuckDB prototype failed ({failed})"
        lines.append(f"validate a damaged CSV (open quote, extra fields, NUL): {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--diff-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--validate-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.diff_child:
        diff_child(Path(args.diff_child[0]), args.diff_child[1])
        return
    if args.validate_child:
        src, out_dir, engine = args.validate_child
        validate_child(Path(src), Path(out_dir), engine)
        return
    figures: list[Figure] = []
    for members in args.members:
        for line in bench_diff(members, args.threads, figures):
            print(line, flush=True)
    for rows in args.rows:
        for line in bench_validate(rows, args.threads, figures):
            print(line, flush=True)
    write("duckdb", "DuckDB against our diff and validate (make bench-duckdb)", figures)


if __name__ == "__main__":
    main()
