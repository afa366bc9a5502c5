"""identifier_hasher: the per-type, per-region hashers validate calls once per value.

Their fast paths must give exactly the full rules' answer (the same digest, or the same
column, reason code and message) for every input: a changed digest is a deletion at TikTok.
The differential tests compare each hasher with the full rules (``_hash_trimmed`` over the
trimmed value: hash_identifier's body before the fast paths) on generated corpora that mix
well-formed values with every kind of damage, and check that the fast path did answer most
well-formed values (a fast path that always fell back would pass the comparison too).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from tests.phone_corpus import DEFAULT_REGIONS, phone_corpus
from tiktok_destination.errors import ConfigurationError, RowRejected
from tiktok_destination.identity import hashing, phone_fast_path, phones
from tiktok_destination.identity.device_ids import normalize_device_id
from tiktok_destination.identity.emails import normalize_email
from tiktok_destination.identity.hashing import hash_identifier, identifier_hasher


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


EXISTING_HASH = sha("jane@example.com")


def result(function: Callable[[str], str], raw: str) -> str:
    """The digest, or ``reject:<column>:<reason code>:<message>``."""
    try:
        return function(raw)
    except RowRejected as rejected:
        return f"reject:{rejected.column}:{rejected.reason_code}:{rejected.message}"


def full_rules(kind: str, normalize: Callable[[str], str]) -> Callable[[str], str]:
    hash_trimmed = hashing._hash_trimmed  # bound now: FallbackCounter does not count it
    return lambda raw: hash_trimmed(kind, raw.strip(), normalize)


class FallbackCounter:
    """Counts the values a hasher hands to the full rules (its fast path did not answer)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.count = 0
        full = hashing._hash_trimmed

        def counting(kind: str, value: str, normalize: Callable[[str], str]) -> str:
            self.count += 1
            return full(kind, value, normalize)

        monkeypatch.setattr(hashing, "_hash_trimmed", counting)


# ---------------------------------------------------------------- the API
def test_identifier_hasher_hashes_the_normalized_value() -> None:
    assert identifier_hasher("EMAIL", "US")(" Jane.Doe@Example.COM ") == sha("jane.doe@example.com")
    assert identifier_hasher("PHONE", "US")("(213) 373-4253") == sha("+12133734253")
    assert identifier_hasher("PHONE", "GB")("07911 123456") == sha("+447911123456")
    assert identifier_hasher("idfa", "US")("6D92078A-8246-4BA4-AE5B-76104861E7DC") == sha(
        "6d92078a-8246-4ba4-ae5b-76104861e7dc"
    )
    assert identifier_hasher("AAID", "US")(f" {EXISTING_HASH}\n") == EXISTING_HASH


def test_identifier_hasher_rejects_as_hash_identifier_does() -> None:
    with pytest.raises(RowRejected) as caught:
        identifier_hasher("EMAIL", "US")("jane.example.com")
    error = caught.value
    assert (error.column, error.reason_code) == ("email", "invalid_email")
    assert (
        error.message == "not an email address: it has no '@'; expected the form name@example.com"
    )
    with pytest.raises(RowRejected) as caught:
        identifier_hasher("PHONE", "US")("555-555-5555")
    assert (caught.value.column, caught.value.reason_code) == ("phone", "invalid_phone")
    assert "default region US" in caught.value.message


def test_identifier_hasher_reports_configuration_before_any_value() -> None:
    with pytest.raises(ConfigurationError, match="EMAIL, PHONE, IDFA, AAID"):
        identifier_hasher("MAID", "US")
    with pytest.raises(ConfigurationError, match="default_phone_region"):
        identifier_hasher("PHONE", "XX")
    # the region only counts for phones
    assert identifier_hasher("EMAIL", "XX")("jane@example.com") == EXISTING_HASH


def test_hash_identifier_still_lets_an_existing_hash_pass_with_an_unknown_region() -> None:
    # unchanged: hash_identifier asks for the region only once a value needs it
    assert hash_identifier("PHONE", EXISTING_HASH, default_region="XX") == EXISTING_HASH
    with pytest.raises(ConfigurationError):
        hash_identifier("PHONE", "(213) 373-4253", default_region="XX")


def test_hash_identifier_uses_the_hasher_built_once() -> None:
    hasher = identifier_hasher("PHONE", "GB")
    assert identifier_hasher("PHONE", "GB") is hasher
    assert identifier_hasher("EMAIL", "US") is identifier_hasher("email", "GB")
    assert hash_identifier("PHONE", "07911 123456", default_region="GB") == hasher("07911 123456")


@pytest.mark.parametrize(
    ("id_type", "raw", "column"),
    [
        ("EMAIL", EXISTING_HASH.upper(), "email"),
        ("PHONE", EXISTING_HASH.upper(), "phone"),
        ("IDFA", f" {EXISTING_HASH.upper()} ", "idfa"),
    ],
)
def test_an_uppercase_hash_is_rejected_by_the_hasher(id_type: str, raw: str, column: str) -> None:
    with pytest.raises(RowRejected) as caught:
        identifier_hasher(id_type, "US")(raw)
    assert (caught.value.column, caught.value.reason_code) == (column, f"invalid_{column}")


def test_sixty_four_digits_are_an_existing_hash_not_a_phone() -> None:
    digits = "2135551234" * 6 + "2135"
    assert identifier_hasher("PHONE", "US")(digits) == digits


# ---------------------------------------------------------------- email
_LOCALS = ("jane", "Jane.Doe", "j", "JANE+news", "a.b.c", "o'brien", "x_y-z", "1234", "a!#$%&*")
_DOMAINS = ("example.com", "Example.CO.UK", "mail.example.org", "x.io", "EXAMPLE.COM", "a-b.de")
_DAMAGE = (
    "",
    " ",
    "\t",
    "@",
    ".",
    "..",
    '"',
    "+",
    "\x00",
    "\x07",
    "\x1c",
    "\x1f",
    "\x7f",
    "\x85",
    "\xa0",
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u202e",
    "\u2028",
    "\u3000",
    "\ue000",
    "\ud800",
    "é",
    "Ö",
    "ß",
    "İ",
    "\u212a",  # Kelvin sign: lowercases to ASCII "k"
    "\ufb01",  # "fi" ligature
    "\uff4a",  # fullwidth j
    "\u0661",  # Arabic-Indic digit one
    ",",
    ";",
    "<",
    "\\",
    "[",
    "(",
    ">",
    ")",
    "]",
    ":",
)
# How exports wrap an address in what no mailbox holds: a link, a display form, a quote.
_JUNK_WRAP = (("mailto:", ""), ("MailTo:", ""), ("<", ">"), ("Jane <", ">"), ("", '"'), ('"', '"'))
_WRAP = ("", " ", "  ", "\t", "\n", "\r\n", "\x1c", "\x1f", "\x85", "\xa0", "\u3000", "\u2028")


def email_corpus(count: int, seed: int = 20251126) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.02:
            text = rng.choice(
                (
                    EXISTING_HASH,
                    EXISTING_HASH.upper(),
                    EXISTING_HASH[:63] + "g",
                    EXISTING_HASH[:63],
                    "a" * 60 + "@x.co",
                    "",
                )
            )
        else:
            local = rng.choice(_LOCALS)
            domain = rng.choice(_DOMAINS)
            if rng.random() < 0.3:
                local = "".join(rng.choice((c.upper(), c.lower())) for c in local)
            if rng.random() < 0.1:
                domain = domain.rsplit(".", 1)[0] + "." + rng.choice(("c", "C", "1", "", "co."))
            if rng.random() < 0.05:
                domain = rng.choice(("example", ".example.com", "example..com", "example.com."))
            if rng.random() < 0.05:
                local = f'"{local}"'
            text = f"{local}@{domain}"
            for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):  # about half stay well formed
                at = rng.randrange(len(text) + 1)
                text = text[:at] + rng.choice(_DAMAGE) + text[at:]
            if rng.random() < 0.03:
                text = text.replace("@", "")
            if rng.random() < 0.05:
                before, after = rng.choice(_JUNK_WRAP)
                text = before + text + after
        yield rng.choice(_WRAP) + text + rng.choice(_WRAP)


def test_email_fast_path_gives_exactly_the_full_rules_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = full_rules("EMAIL", normalize_email)
    fallback = FallbackCounter(monkeypatch)
    hasher = identifier_hasher("EMAIL", "US")
    outcomes = [(raw, result(hasher, raw), result(full, raw)) for raw in email_corpus(60_000)]
    mismatches = [raw for raw, fast, expected in outcomes if fast != expected]
    assert mismatches == []
    hashed = sum(not expected.startswith("reject:") for _, _, expected in outcomes)
    rejected = len(outcomes) - hashed
    # both answers occur often, and the fast path answered the usual well-formed addresses
    assert hashed > 20_000
    assert rejected > 10_000
    assert len(outcomes) - fallback.count > 20_000


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        (" jane+news@example.co.uk\t", "jane+news@example.co.uk"),
        ("o'brien!#$%&*/=?^_`{|}~-@x.io", "o'brien!#$%&*/=?^_`{|}~-@x.io"),
        ("a@b.c.de", "a@b.c.de"),
        ("ZOË@EXAMPLE.DE", "zoë@example.de"),  # not ASCII: the full rules
        ("\u212aate@example.com", "kate@example.com"),  # Kelvin sign, lowercased to "k"
    ],
)
def test_email_hasher_examples(raw: str, normalized: str) -> None:
    assert identifier_hasher("EMAIL", "US")(raw) == sha(normalized)


@pytest.mark.parametrize(
    ("raw", "reason_code"),
    [
        ("jane@example.c", "invalid_email"),
        ("jane@@example.com", "invalid_email"),
        ("jane@example..com", "invalid_email"),
        ("jane @example.com", "invalid_email"),
        ("jane\x1f@example.com", "invisible_character"),
        ("jane\x7f@example.com", "invisible_character"),
        ("jane\u200b@example.com", "invisible_character"),
        # quoted local parts are valid by RFC 5322, but no mailbox people use: rejected
        ('"quoted"@example.com', "invalid_email"),
        ("mailto:jane@example.com", "invalid_email"),
        ("<jane@example.com>", "invalid_email"),
        ('jane@example.com"', "invalid_email"),
    ],
)
def test_email_hasher_rejections(raw: str, reason_code: str) -> None:
    expected = result(full_rules("EMAIL", normalize_email), raw)
    assert result(identifier_hasher("EMAIL", "US"), raw) == expected
    assert expected.startswith(f"reject:email:{reason_code}:")


# ---------------------------------------------------------------- device ids
def device_corpus(count: int, seed: int = 20251126) -> Iterator[str]:
    rng = random.Random(seed)
    hexdigits = "0123456789abcdefABCDEF"
    for _ in range(count):
        text = "-".join(
            "".join(rng.choice(hexdigits) for _ in range(size)) for size in (8, 4, 4, 4, 12)
        )
        roll = rng.random()
        if roll < 0.05:
            text = "00000000-0000-0000-0000-000000000000"
        elif roll < 0.1:
            text = text.replace("-", "")  # MD5-like
        elif roll < 0.12:
            text = rng.choice((EXISTING_HASH, EXISTING_HASH.upper(), "{" + text + "}"))
        for _ in range(rng.choice((0, 0, 1))):
            at = rng.randrange(len(text) + 1)
            damage = rng.choice((*_DAMAGE, "g", "G", "-", "\uff10", "\u0663", "\uff41", "\u212a"))
            text = text[:at] + damage + text[at + rng.randrange(2) :]
        yield rng.choice(_WRAP) + text + rng.choice(_WRAP)


@pytest.mark.parametrize("kind", ["IDFA", "AAID"])
def test_device_id_fast_path_gives_exactly_the_full_rules_answer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = full_rules(kind, partial(normalize_device_id, id_type=kind))
    fallback = FallbackCounter(monkeypatch)
    hasher = identifier_hasher(kind, "US")
    outcomes = [(raw, result(hasher, raw), result(full, raw)) for raw in device_corpus(20_000)]
    assert [raw for raw, fast, expected in outcomes if fast != expected] == []
    hashed = sum(not expected.startswith("reject:") for _, _, expected in outcomes)
    assert hashed > 8_000
    assert len(outcomes) - hashed > 3_000
    assert len(outcomes) - fallback.count > 8_000


def test_the_all_zero_device_id_is_rejected_by_the_hasher() -> None:
    with pytest.raises(RowRejected) as caught:
        identifier_hasher("IDFA", "US")("00000000-0000-0000-0000-000000000000")
    assert (caught.value.column, caught.value.reason_code) == ("idfa", "invalid_idfa")
    assert "all zeros" in caught.value.message


# ---------------------------------------------------------------- phones
# +1 213 555 1234 in Arabic-Indic digits: str.isdigit() holds, the fast path must decline
ARABIC_INDIC_US = "".join(chr(0x660 + int(digit)) for digit in "12135551234")


def phone_full_rules(region: str) -> Callable[[str], str]:
    return full_rules("PHONE", partial(phones._normalize_phone, default_region=region, fast=False))


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("2135551234.0", "US"),  # a float rendering: the shared step reads it, not the fast path
        ("+12135551234.0", "US"),
        ("2135551234.5", "US"),
        ("4158444856.0", "GB"),
        ("+44 7911 123456.0", "GB"),
        ("00 1 213 555 1234", "US"),  # 00 is read as "+" in the NANP
        ("00 68", "US"),
        ("0044 7911 123456", "GB"),
        ("\u202a(213) 555-1234\u202c", "US"),  # format characters are removed from phones
        ("(213)\u200b555-1234", "US"),
        ("\t+1 213-555-1234 \n", "US"),
        ("+1 213-555-1234 x12", "US"),
        ("1-800-FLOWERS", "US"),
        ("+1", "US"),
        ("+", "US"),
        ("", "US"),
        ("1", "US"),
        ("1 213 555 1234", "US"),
        ("1 013 555 1234", "US"),
        ("+1 013 555 1234", "US"),
        ("+1 (0) 213 555 1234", "US"),
        ("+1 416-967-1111", "GB"),
        ("(268) 460-1234", "AG"),
        ("+1 268 460 1234", "US"),
        ("+12", "US"),
        ("+" + ARABIC_INDIC_US, "US"),
        (ARABIC_INDIC_US[1:], "US"),
    ],
)
def test_phone_hasher_gives_the_full_rules_answer(raw: str, region: str) -> None:
    assert result(identifier_hasher("PHONE", region), raw) == result(phone_full_rules(region), raw)


def test_phone_hasher_examples() -> None:
    hasher = identifier_hasher("PHONE", "US")
    for raw in ("(213) 555-1234", "+1 213-555-1234", "213.555.1234", "1 213 555 1234"):
        assert hasher(raw) == sha("+12135551234")
    assert hasher("2135551234.0") == sha("+12135551234")
    assert hasher("\u202a(213) 555-1234\u202c") == sha("+12135551234")
    assert hasher("+44 7911 123456") == sha("+447911123456")


def test_phone_fast_path_declines_what_the_shared_steps_change() -> None:
    fast = phone_fast_path._fast_path("US")
    assert fast("(213) 555-1234") == "+12135551234"
    assert fast("2135551234.0") is None  # the rendering step reads the digits before the dot
    assert fast("+12135551234.0") is None
    assert fast("00 68") is None  # the 00 step makes it +68
    assert fast("12 34") == ""  # too short for any NANP number, not a 00 spelling


def test_phone_hasher_gives_exactly_the_full_parse_answer_on_a_generated_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hasher's fast path runs before the shared trimming steps (unlike normalize_phone's):
    the corpus has floats, 00 prefixes, invisible characters and padding to catch a step it
    skips. `make bench-phones` runs 1,000,000 numbers."""
    hashers = {region: identifier_hasher("PHONE", region) for region in DEFAULT_REGIONS}
    fulls = {region: phone_full_rules(region) for region in DEFAULT_REGIONS}
    fallback = FallbackCounter(monkeypatch)
    corpus = list(phone_corpus(30_000, seed=7))
    outcomes = [
        (result(hashers[region], raw), result(fulls[region], raw)) for raw, region in corpus
    ]
    assert [corpus[i] for i, (fast, full) in enumerate(outcomes) if fast != full] == []
    hashed = sum(not full.startswith("reject:") for _, full in outcomes)
    assert hashed > 5_000
    assert len(outcomes) - hashed > 5_000
    assert len(outcomes) - fallback.count > 5_000
