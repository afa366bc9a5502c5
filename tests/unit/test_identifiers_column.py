"""identifier_column_hasher: a whole column hashed at once must give, value by value, exactly
what identifier_hasher gives (the same digest, or a rejection with the same column, reason
code and message); None, empty and whitespace-only values are no value. A changed digest is
a deletion at TikTok, so the columns below mix well-formed values with every kind of damage
the per-value tests use (unicode, invisible characters, padding, line breaks, renderings),
and a loosened line pattern must make the comparison fail."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import pytest

from tests.phone_corpus import phone_corpus
from tests.unit.test_identifiers_fast import EXISTING_HASH, device_corpus, email_corpus
from tiktok_destination.errors import ConfigurationError, RowRejected
from tiktok_destination.identity import column_hashing, emails
from tiktok_destination.identity.column_hashing import identifier_column_hasher
from tiktok_destination.identity.hashing import identifier_hasher


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def per_value(hasher: Callable[[str], str], raw: str | None) -> str | None:
    """What validate makes of one value with the per-value hasher: None for no value."""
    if not raw or raw.isspace():
        return None
    try:
        return hasher(raw)
    except RowRejected as rejected:
        return f"reject:{rejected.column}:{rejected.reason_code}:{rejected.message}"


def column_outcomes(
    column_hasher: column_hashing.ColumnHasher, values: Sequence[str | None]
) -> list[str | None]:
    digests, misses, rejected = column_hasher(values)
    assert len(digests) == len(values)
    assert misses == [i for i, digest in enumerate(digests) if digest is None]
    assert set(rejected) <= set(misses)
    out: list[str | None] = list(digests)
    for at, problem in rejected.items():
        out[at] = f"reject:{problem.column}:{problem.reason_code}:{problem.message}"
    return out


def mixed(rng: random.Random, values: list[str]) -> list[str | None]:
    """``values`` with no-values, line breaks and a few non-ASCII values mixed in."""
    column: list[str | None] = []
    for value in values:
        roll = rng.random()
        if roll < 0.05:
            column.append(rng.choice((None, "", " ", "\t", "\n", " \r\n ", "\u3000")))
        elif roll < 0.07:
            at = rng.randrange(len(value) + 1)
            column.append(value[:at] + rng.choice(("\n", "\r\n", "\r")) + value[at:])
        column.append(value)
    return column


def bench_phones(rng: random.Random, count: int) -> list[str]:
    """The spellings of the benchmarks' files, with renderings and separator tricks."""
    phones = []
    for _ in range(count):
        area = rng.choice((213, 310, 415, 212, 646, 312, 617, 206, 512, 303, 800, 555, 123))
        number = f"{area}{rng.randint(100, 999)}{rng.randint(0, 9999):04d}"
        phones.append(
            rng.choice(
                (
                    f"({number[:3]}) {number[3:6]}-{number[6:]}",
                    f"+1 {number[:3]}-{number[3:6]}-{number[6:]}",
                    f"{number[:3]}.{number[3:6]}.{number[6:]}",
                    f"1 {number}",
                    f"1{number}",
                    f"+1{number}",
                    f"+1{number[:-1]}.{number[-1]}",  # a rendering: the dot counts
                    f"{number}.0",
                    f"  {number}.00 ",
                    f"+1 {number[:-1]}.{number[-1]}",
                    f"{number[:3]}.{number[3:]}",
                    f" {number} ",
                    f"{number[:3]}" + " " * 300 + number[3:],  # too long for parse
                    f"({number[:3]})-({number[3:]})",
                    f"+({number[:1]}){number[1:]}",
                    f"00 1 {number}",
                    f"011 1 {number}",
                    f"+1 (0) {number}",
                    f"++1{number}",
                    f"1-+{number}",
                    f"{number} x12",
                    f"\u202a{number}\u202c",
                    f"{number}\x1f",
                    number[:7],
                    number + "1",
                    "+" + number,
                    "+11" + number,
                )
            )
        )
    return phones


def assert_same(kind: str, region: str, values: list[str | None]) -> list[str | None]:
    hasher = identifier_hasher(kind, region)
    got = column_outcomes(identifier_column_hasher(kind, region), values)
    want = [per_value(hasher, raw) for raw in values]
    assert [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b] == []
    return want


def test_email_column_gives_the_per_value_answers() -> None:
    rng = random.Random(1)
    want = assert_same("EMAIL", "US", mixed(rng, list(email_corpus(40_000))))
    assert sum(w is not None and not w.startswith("reject:") for w in want) > 15_000
    assert sum(w is not None and w.startswith("reject:") for w in want) > 8_000


@pytest.mark.parametrize("kind", ["IDFA", "AAID"])
def test_device_column_gives_the_per_value_answers(kind: str) -> None:
    rng = random.Random(2)
    assert_same(kind, "US", mixed(rng, list(device_corpus(20_000))))


@pytest.mark.parametrize("region", ["US", "CA", "PR", "AG", "GB", "DE"])
def test_phone_column_gives_the_per_value_answers(region: str) -> None:
    rng = random.Random(3)
    corpus = [raw for raw, _ in phone_corpus(8_000, seed=11)] + bench_phones(rng, 8_000)
    rng.shuffle(corpus)
    assert_same("PHONE", region, mixed(rng, corpus))


def test_small_and_odd_columns() -> None:
    for kind in ("EMAIL", "PHONE", "IDFA"):
        column = identifier_column_hasher(kind, "US")
        assert column([]) == ([], [], {})
        for values in (
            ["jane@example.com"],
            ["(213) 555-1234"],
            ["6D92078A-8246-4BA4-AE5B-76104861E7DC"],
            [""],
            [None],
            ["\n"],
            ["", ""],
            [EXISTING_HASH],
            [EXISTING_HASH.upper()],
            ["00000000-0000-0000-0000-000000000000"],
            ["a\nb", "jane@example.com"],
        ):
            assert_same(kind, "US", list(values))


def test_the_column_hasher_hashes_the_normalized_values() -> None:
    digests, misses, rejected = identifier_column_hasher("EMAIL", "US")(
        [" Jane@Example.COM", "jane", None, "JANE@EXAMPLE.COM"]
    )
    assert digests == [sha("jane@example.com"), None, None, sha("jane@example.com")]
    assert misses == [1, 2]
    assert (rejected[1].column, rejected[1].reason_code) == ("email", "invalid_email")
    digests, _, _ = identifier_column_hasher("PHONE", "US")(
        ["(213) 555-1234", "+1 213-555-1234", "213.555.1234", "1 213 555 1234"]
    )
    assert digests == [sha("+12135551234")] * 4
    digests, _, rejected = identifier_column_hasher("IDFA", "US")(
        ["6D92078A-8246-4BA4-AE5B-76104861E7DC", "00000000-0000-0000-0000-000000000000"]
    )
    assert digests == [sha("6d92078a-8246-4ba4-ae5b-76104861e7dc"), None]
    assert rejected[1].reason_code == "invalid_idfa"


def test_the_column_fast_path_answers_the_usual_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # a column hasher that sent everything per value would pass the comparisons too
    calls = 0

    def counting(kind: str, region: str) -> Callable[[str], str]:
        hasher = identifier_hasher(kind, region)

        def count(raw: str) -> str:
            nonlocal calls
            calls += 1
            return hasher(raw)

        return count

    monkeypatch.setattr(column_hashing, "identifier_hasher", counting)
    monkeypatch.setattr(column_hashing, "_COLUMN_HASHERS", {})
    rng = random.Random(4)
    # (the email corpus's addresses are all well formed, ASCII and unpadded)
    emails = [f"Person.{i}@Example{i % 97}.com" for i in range(1000)]
    phones = [
        f"({rng.choice((213, 415, 646))}) {rng.randint(201, 989)}-{rng.randint(0, 9999):04d}"
        for _ in range(1000)
    ]
    devices = [f"{rng.getrandbits(128):032X}" for _ in range(1000)]
    devices = [f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}" for d in devices]
    for kind, values in (("EMAIL", emails), ("PHONE", phones), ("IDFA", devices)):
        calls = 0
        identifier_column_hasher(kind, "US")(values)
        assert calls == 0, kind


def test_a_loosened_line_pattern_is_caught() -> None:
    # The mutation check: an email line pattern that lets spaces through (as if strip were
    # done on the joined text) or that takes any line with an "@" changes answers.
    loose = emails._ASCII_EMAIL.pattern.replace(r"[\x21", r"[\x20\x21")
    assert loose != emails._ASCII_EMAIL.pattern
    for pattern in (rf"^(?:({loose})$|.*)", r"^(?:(\S+@\S+)$|.*)"):
        column = column_hashing._column_hasher(
            column_hashing._email_answers(pattern), identifier_hasher("EMAIL", "US")
        )
        values = mixed(random.Random(1), list(email_corpus(20_000)))
        got = column_outcomes(column, values)
        want = [per_value(identifier_hasher("EMAIL", "US"), raw) for raw in values]
        assert got != want


def test_the_column_hasher_reports_configuration_before_any_value() -> None:
    with pytest.raises(ConfigurationError):
        identifier_column_hasher("MAID", "US")
    with pytest.raises(ConfigurationError):
        identifier_column_hasher("PHONE", "XX")


def test_a_phone_column_without_the_rendering_guard_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # +1213555123.4 loses its dot with the separators: without the guard it would hash as
    # +12135551234, where the per-value rules read the rendering's digits before the dot.
    never = column_hashing.re.compile(r"(?!)")
    monkeypatch.setattr(column_hashing, "_ONE_DOT_RENDERING", never)
    phone = column_hashing._phone_answers("US")
    assert phone is not None
    column = column_hashing._column_hasher(phone[0], identifier_hasher("PHONE", "US"), phone[1])
    values: list[str | None] = list(bench_phones(random.Random(5), 5_000))
    got = column_outcomes(column, values)
    want = [per_value(identifier_hasher("PHONE", "US"), raw) for raw in values]
    assert got != want


def test_repeated_values_are_answered_once_and_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    hasher = identifier_hasher("PHONE", "US")

    def counting(kind: str, region: str) -> Callable[[str], str]:
        def count(raw: str) -> str:
            calls.append(raw)
            return hasher(raw)

        return count

    monkeypatch.setattr(column_hashing, "identifier_hasher", counting)
    monkeypatch.setattr(column_hashing, "_COLUMN_HASHERS", {})
    values: list[str | None] = ["555-0100", "12345", "+44 7911 123456", "(213) 555-1234"] * 50
    got = column_outcomes(identifier_column_hasher("PHONE", "US"), values)
    assert got == [per_value(hasher, raw) for raw in values]
    assert sorted(calls) == sorted(["555-0100", "12345", "+44 7911 123456"])
    assert got[2] == sha("+447911123456")
