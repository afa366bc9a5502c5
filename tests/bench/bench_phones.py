"""Equivalence proof of the phone fast path: compare it with the full parse on a corpus.

Generates ``--count`` seeded numbers of many regions and spellings (tests/phone_corpus.py)
and normalizes each twice: ``normalize_phone`` (fast path on) and the full phonenumbers
parse alone. Every outcome must be the same (the same E.164, or the same reason code and
message); the count compared and the mismatches are printed, and any mismatch fails.
``identifier_hasher("PHONE", region)`` (the fast path before the shared trimming steps)
and ``identifier_column_hasher("PHONE", region)`` (validate's path: a column of values at
once, in columns of COLUMN values per region) must each give the SHA-256 of the full
parse's E.164, or the same rejection.

    python -m tests.bench.bench_phones [--count 1000000] [--seed N]

Not run in CI (minutes); pytest runs a smaller corpus in tests/unit/test_identifiers.py.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator

from tests.phone_corpus import DEFAULT_REGIONS, outcome, phone_corpus
from tiktok_destination.errors import RowRejected
from tiktok_destination.identity import column_hashing, hashing, phone_fast_path, phones


def _full(raw: str, region: str) -> str:
    return phones._normalize_phone(raw, region, fast=False)


def _hashed(hasher: Callable[[str], str], raw: str) -> str:
    try:
        return hasher(raw)
    except RowRejected as rejected:
        return f"reject:{rejected.column}:{rejected.reason_code}:{rejected.message}"


def _expected_hash(full: str) -> str:
    """The hasher's expected outcome given the full parse's outcome."""
    if full.startswith("reject:"):
        return "reject:phone:" + full.removeprefix("reject:")
    return hashlib.sha256(full.encode()).hexdigest()


#: Values per column for the column hasher, as validate's batches hold about.
COLUMN = 4096


def _column_outcomes(region: str, values: list[str]) -> Iterator[str]:
    """The column hasher's outcome per value, in the form ``_hashed`` gives."""
    digests, _, rejected = column_hashing.identifier_column_hasher("PHONE", region)(values)
    for at, digest in enumerate(digests):
        problem = rejected.get(at)
        if problem is not None:
            yield f"reject:{problem.column}:{problem.reason_code}:{problem.message}"
        else:
            yield digest if digest is not None else "no value"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20251126)
    args = parser.parse_args(argv)

    answered: Counter[str] = Counter()
    fast = phone_fast_path._fast_e164

    counting_on = [False]  # normalize_phone's answers, not the hasher's fallback's

    def counting(text: str, region: str) -> str | None:
        result = fast(text, region)
        if counting_on[0]:
            answer = "full parse" if result is None else "fast: invalid" if not result else "fast"
            answered[answer] += 1
        return result

    phones._fast_e164 = counting  # type: ignore[assignment]
    compared = mismatches = 0
    hashers = {region: hashing.identifier_hasher("PHONE", region) for region in DEFAULT_REGIONS}
    by_region: Counter[str] = Counter()
    columns: dict[str, list[tuple[str, str]]] = {}  # region: (raw, expected outcome)

    def compare_column(region: str) -> int:
        pending = columns.pop(region, [])
        found = 0
        outcomes = _column_outcomes(region, [raw for raw, _ in pending])
        for (raw, expected), got in zip(pending, outcomes, strict=True):
            if got != expected:
                found += 1
                print(f"MISMATCH {raw!r} {region}: column hasher {got!r}, full {expected!r}")
        return found

    started = time.perf_counter()
    try:
        for raw, region in phone_corpus(args.count, args.seed):
            counting_on[0] = True
            with_fast = outcome(phones.normalize_phone, raw, region)
            counting_on[0] = False
            full = outcome(_full, raw, region)
            compared += 1
            by_region[region] += 1
            if with_fast != full:
                mismatches += 1
                if mismatches <= 20:  # generated numbers, not customer data
                    print(f"MISMATCH {raw!r} {region}: fast path {with_fast!r}, full {full!r}")
            hashed = _hashed(hashers[region], raw)
            if hashed != _expected_hash(full):
                mismatches += 1
                if mismatches <= 20:
                    print(f"MISMATCH {raw!r} {region}: hasher {hashed!r}, full {full!r}")
            expected = "no value" if not raw or raw.isspace() else _expected_hash(full)
            column = columns.setdefault(region, [])
            column.append((raw, expected))
            if len(column) >= COLUMN:
                mismatches += compare_column(region)
        for region in list(columns):
            mismatches += compare_column(region)
    finally:
        phones._fast_e164 = fast  # type: ignore[assignment]
    seconds = time.perf_counter() - started
    print(f"default regions: {dict(sorted(by_region.items()))}")
    print(f"answered by: {dict(answered.most_common())}")
    print(f"compared {compared:,} numbers in {seconds:.0f} s: {mismatches:,} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
