"""Equivalence proof of the phone fast path: compare it with the full parse on a corpus.

Generates ``--count`` seeded numbers of many regions and spellings (tests/phone_corpus.py)
and normalizes each twice: ``normalize_phone`` (fast path on) and the full phonenumbers
parse alone. Every outcome must be the same (the same E.164, or the same reason code and
message); the count compared and the mismatches are printed, and any mismatch fails.

    python -m tests.bench.bench_phones [--count 1000000] [--seed N]

Not run in CI (minutes); pytest runs a smaller corpus in tests/unit/test_identifiers.py.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from tests.phone_corpus import outcome, phone_corpus
from tiktok_destination import identifiers


def _full(raw: str, region: str) -> str:
    return identifiers._normalize_phone(raw, region, fast=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20251126)
    args = parser.parse_args(argv)

    answered: Counter[str] = Counter()
    fast = identifiers._fast_e164

    def counting(text: str, region: str) -> str | None:
        result = fast(text, region)
        answered["full parse" if result is None else "fast: invalid" if not result else "fast"] += 1
        return result

    identifiers._fast_e164 = counting  # type: ignore[assignment]
    compared = mismatches = 0
    by_region: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        for raw, region in phone_corpus(args.count, args.seed):
            with_fast = outcome(identifiers.normalize_phone, raw, region)
            full = outcome(_full, raw, region)
            compared += 1
            by_region[region] += 1
            if with_fast != full:
                mismatches += 1
                if mismatches <= 20:  # generated numbers, not customer data
                    print(f"MISMATCH {raw!r} {region}: fast path {with_fast!r}, full {full!r}")
    finally:
        identifiers._fast_e164 = fast  # type: ignore[assignment]
    seconds = time.perf_counter() - started
    print(f"default regions: {dict(sorted(by_region.items()))}")
    print(f"answered by: {dict(answered.most_common())}")
    print(f"compared {compared:,} numbers in {seconds:.0f} s: {mismatches:,} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
