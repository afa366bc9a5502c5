"""Micro-benchmark: the per-value cost of identifier hashing against bare SHA-256.

For emails, phones (the spellings of bench_validate.py's files: "(213) 555-1234",
"+1 213-555-1234", "213.555.1234") and IDFAs it times ``identifier_hasher(type, "US")(raw)`` over
raw values and ``hashlib.sha256(value.encode()).hexdigest()`` over the same values
normalized, alternating the two in rounds and keeping each one's fastest round (CPU time),
and prints the ratio; the "column" ratio times ``identifier_column_hasher(type, "US")``
over the values in columns of 4096 (validate's way, a block of rows at a time). A ratio
holds on a busy machine, where absolute times do not.

    python tests/bench/bench_identifiers.py [--values 50000] [--rounds 7]

Named ``bench_*.py`` so pytest never collects it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from collections.abc import Callable

from results import Figure, write

from tiktok_destination.identity.identifiers import (
    ColumnHasher,
    identifier_column_hasher,
    identifier_hasher,
    normalize_device_id,
    normalize_email,
    normalize_phone,
)

SEED = 20251126
COLUMN_ROWS = 4096


def _emails(rng: random.Random, count: int) -> list[str]:
    return [f"Person.{i}.{rng.randrange(10**6)}@Example{i % 97}.com" for i in range(count)]


def _phones(rng: random.Random, count: int) -> list[str]:
    phones = []
    for _ in range(count):
        area = rng.choice((213, 310, 415, 212, 646, 312, 617, 206, 512, 303))
        exchange, line, style = rng.randint(201, 989), rng.randint(0, 9999), rng.randrange(3)
        if style == 0:
            phones.append(f"({area}) {exchange}-{line:04d}")
        elif style == 1:
            phones.append(f"+1 {area}-{exchange}-{line:04d}")
        else:
            phones.append(f"{area}.{exchange}.{line:04d}")
    return phones


def _idfas(rng: random.Random, count: int) -> list[str]:
    return [
        "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}".format(
            rng.getrandbits(32), *(rng.getrandbits(16) for _ in range(3)), rng.getrandbits(48)
        )
        for _ in range(count)
    ]


def _seconds(function: Callable[[str], str], values: list[str]) -> float:
    started = time.process_time()
    for value in values:
        function(value)
    return time.process_time() - started


def _column_seconds(column: ColumnHasher, values: list[str]) -> float:
    started = time.process_time()
    for start in range(0, len(values), COLUMN_ROWS):
        column(values[start : start + COLUMN_ROWS])
    return time.process_time() - started


def _bare(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def measure(
    raw: list[str],
    normalized: list[str],
    hasher: Callable[[str], str],
    column: ColumnHasher,
    rounds: int,
) -> tuple[float, float, float]:
    """(hasher, column hasher, bare SHA-256) us/value: each one's fastest of ``rounds``."""
    # the bare yardstick is called through a function as the hasher is: both pay one call
    best_hasher = best_bare = best_column = float("inf")
    for _ in range(rounds):
        best_bare = min(best_bare, _seconds(_bare, normalized))
        best_hasher = min(best_hasher, _seconds(hasher, raw))
        best_column = min(best_column, _column_seconds(column, raw))
    return (
        best_hasher / len(raw) * 1e6,
        best_column / len(raw) * 1e6,
        best_bare / len(raw) * 1e6,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    cases: list[tuple[str, list[str], Callable[[str], str], Callable[[str], str]]] = [
        ("email", _emails(rng, args.values), normalize_email, identifier_hasher("EMAIL", "US")),
        ("phone", _phones(rng, args.values), normalize_phone, identifier_hasher("PHONE", "US")),
        (
            "idfa",
            _idfas(rng, args.values),
            lambda raw: normalize_device_id(raw, "IDFA"),
            identifier_hasher("IDFA", "US"),
        ),
    ]
    print(
        f"{'type':>6} {'hasher us/value':>16} {'bare SHA-256 us/value':>22} {'ratio':>6} "
        f"{'column us/value':>16} {'column ratio':>13}"
    )
    figures: list[Figure] = []
    for name, raw, normalize, hasher in cases:
        normalized = [normalize(value) for value in raw]
        expected = [_bare(value) for value in normalized]
        if [hasher(value) for value in raw] != expected:
            raise SystemExit(f"{name}: the hasher's digests differ from SHA-256 of normalize")
        column = identifier_column_hasher(name.upper(), "US")
        if column(raw)[0] != expected:
            raise SystemExit(f"{name}: the column hasher's digests differ from the hasher's")
        hasher_us, column_us, bare_us = measure(raw, normalized, hasher, column, args.rounds)
        print(
            f"{name:>6} {hasher_us:>16.3f} {bare_us:>22.3f} {hasher_us / bare_us:>6.2f} "
            f"{column_us:>16.3f} {column_us / bare_us:>13.2f}"
        )
        figures += [
            Figure("identifier_hasher CPU / bare SHA-256", name, hasher_us / bare_us, "x"),
            Figure(
                f"identifier_column_hasher (columns of {COLUMN_ROWS}) CPU / bare SHA-256",
                name,
                column_us / bare_us,
                "x",
            ),
            Figure("bare SHA-256 CPU per value", name, bare_us, "us"),
        ]
    print(
        "ratio = identifier_hasher(type, 'US')(raw) CPU time / bare "
        "hashlib.sha256(normalized.encode()).hexdigest() CPU time, measured in this run; "
        f"column ratio: identifier_column_hasher over columns of {COLUMN_ROWS} values"
    )
    write(
        "identifiers",
        f"Hashing one identifier ({args.values:,} values a type, fastest of {args.rounds} rounds)",
        figures,
    )


if __name__ == "__main__":
    main()
