"""Identifier normalization and hashing, per docs/tiktok-contract.md, "Identifier normalization
before hashing"."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from tests.phone_corpus import outcome, phone_corpus
from tiktok_destination.errors import ConfigurationError, RowRejected
from tiktok_destination.identity import phone_fast_path, phones
from tiktok_destination.identity.device_ids import normalize_device_id
from tiktok_destination.identity.emails import normalize_email
from tiktok_destination.identity.hashing import hash_identifier
from tiktok_destination.identity.phones import normalize_phone
from tiktok_destination.identity.schema import ID_TYPES, SCHEMA, is_sha256_hex


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


EXISTING_HASH = sha("jane@example.com")


def test_schema_covers_every_type() -> None:
    assert set(SCHEMA) == set(ID_TYPES)
    assert SCHEMA["EMAIL"] == "EMAIL_SHA256"
    assert SCHEMA["AAID"] == "AAID_SHA256"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EXISTING_HASH, True),
        (EXISTING_HASH.upper(), False),
        (EXISTING_HASH[:-1], False),
        (EXISTING_HASH + "0", False),
        (EXISTING_HASH + "\n", False),
        (" " + EXISTING_HASH, False),
        ("g" * 64, False),
        ("", False),
    ],
)
def test_is_sha256_hex_is_anchored_and_lowercase(value: str, expected: bool) -> None:
    assert is_sha256_hex(value) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.COM \t", "jane.doe@example.com"),
        ("jane+news@example.co.uk", "jane+news@example.co.uk"),
        ("ZOË@EXAMPLE.DE", "zoë@example.de"),
    ],
)
def test_normalize_email_trims_and_lowercases(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


def test_normalize_email_older_rule_strips_dots_and_tag() -> None:
    assert normalize_email(" J.a.n.e+News@Example.com ", strip_dots_and_tags=True) == (
        "jane@example.com"
    )
    # the domain keeps its dots
    assert normalize_email("a.b@mail.example.com", strip_dots_and_tags=True) == (
        "ab@mail.example.com"
    )


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("jane.example.com", "no '@'"),
        ("jane@@example.com", "more than one '@'"),
        ("jane@example", "no dot"),
        ("@example.com", "before the '@'"),
        ("jane doe@example.com", "space"),
        ("jane@example.c", "example.com"),
        ("", "empty"),
    ],
)
def test_invalid_email_raises_without_the_value(raw: str, hint: str) -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_email(raw)
    error = caught.value
    assert error.column == "email"
    assert error.reason_code == "invalid_email"
    assert hint in error.message
    local_part = raw.split("@")[0]
    if local_part:
        assert local_part not in str(error)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(+1) 213-373-4253", "US", "+12133734253"),
        ("213-373-4253", "US", "+12133734253"),
        ("1 (213) 373 4253", "US", "+12133734253"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("07911 123456", "GB", "+447911123456"),
        ("0044 7911 123456", "GB", "+447911123456"),
        ("(+1) 213-373-4253", "GB", "+12133734253"),
        ("030 123456", "de", "+4930123456"),
    ],
)
def test_normalize_phone_to_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


def test_normalize_phone_default_region_is_us() -> None:
    assert normalize_phone("(213) 373-4253") == "+12133734253"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("12345", "US"),
        ("555-555-5555", "US"),  # right length but no such number
        ("2133734253", "GB"),  # a US number without its country code, read as British
        ("not a number", "US"),
        ("+999 1234 5678", "US"),
    ],
)
def test_invalid_phone_raises_without_the_value(raw: str, region: str) -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_phone(raw, region)
    error = caught.value
    assert (error.column, error.reason_code) == ("phone", "invalid_phone")
    assert region in error.message  # says which default region was assumed
    digits = "".join(ch for ch in raw if ch.isdigit())
    assert raw not in str(error)
    if len(digits) >= 5:
        assert digits not in str(error)


# Real-world spellings of phone numbers, as exports and people write them: the E.164 each
# must give, or the reason code of its rejection. A number is only international when written
# so (+, 00, 011); nothing else is ever guessed to be another country's number.
PHONE_SPELLINGS: list[tuple[str, str, str]] = [
    # national, default region US
    ("4158444856", "US", "+14158444856"),
    ("415-844-4856", "US", "+14158444856"),
    ("(415) 844-4856", "US", "+14158444856"),
    ("415.844.4856", "US", "+14158444856"),
    ("415 844 4856", "US", "+14158444856"),
    ("  (415)844-4856\t", "US", "+14158444856"),
    ("415\u00a0844\u00a04856", "US", "+14158444856"),  # no-break spaces
    ("1 415 844 4856", "US", "+14158444856"),
    ("1-415-844-4856", "US", "+14158444856"),
    ("14158444856", "US", "+14158444856"),
    ("1-800-356-9377", "US", "+18003569377"),
    # written as international
    ("+1 415 844 4856", "US", "+14158444856"),
    ("+14158444856", "US", "+14158444856"),
    ("(+1) 213-373-4253", "US", "+12133734253"),
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("+447911123456", "US", "+447911123456"),
    ("+41 58 444 85 60", "US", "+41584448560"),
    ("+49 30 123456", "US", "+4930123456"),
    ("011 44 20 7946 0958", "US", "+442079460958"),
    ("0044 20 7946 0958", "US", "+442079460958"),
    ("00 44 7911 123456", "US", "+447911123456"),
    ("001 415 844 4856", "US", "+14158444856"),
    # a dropped "+" is never guessed back: read in the default region, where it is invalid
    ("447911123456", "US", "invalid_phone"),
    ("41584448560", "US", "invalid_phone"),  # was read as the Swiss +41 58 444 85 60
    ("4930123456", "US", "invalid_phone"),
    # float renderings of a numeric column
    ("4158444856.0", "US", "+14158444856"),
    ("4158444856.00", "US", "+14158444856"),
    ("14158444856.0", "US", "+14158444856"),
    ("4.158444856E9", "US", "+14158444856"),
    ("4.158444856e+09", "US", "+14158444856"),
    ("1.4158444856E10", "US", "+14158444856"),
    ("447911123456.0", "US", "invalid_phone"),
    ("4.15844E+09", "US", "phone_lost_digits"),  # Excel's narrow-column rendering
    ("4,15844E+09", "US", "phone_lost_digits"),  # the same from a German Excel
    ("4.158445e+09", "US", "phone_lost_digits"),  # a Parquet float32 column
    ("4158444856.5", "US", "invalid_phone"),
    ("4158444856.25", "US", "invalid_phone"),
    # extensions: TikTok matches the person's own number, never a switchboard's
    ("415-844-4856 x123", "US", "phone_extension"),
    ("(415) 844-4856 ext. 12", "US", "phone_extension"),
    ("415 844 4856 extension 5", "US", "phone_extension"),
    ("4158444856#123", "US", "phone_extension"),
    ("+44 20 7946 0958 ext 4", "US", "phone_extension"),
    # letters
    ("1-800-FLOWERS", "US", "invalid_phone"),
    ("415-844-4856 x", "US", "invalid_phone"),
    ("tel:+14158444856", "US", "invalid_phone"),
    ("n/a", "US", "invalid_phone"),
    # too short, too long, impossible
    ("844-4856", "US", "invalid_phone"),
    ("12345", "US", "invalid_phone"),
    ("415844485612", "US", "invalid_phone"),
    ("+1 415 844 48561", "US", "invalid_phone"),
    ("555-555-5555", "US", "invalid_phone"),
    ("0", "US", "invalid_phone"),
    ("+", "US", "invalid_phone"),
    # invisible characters: format characters (bidi marks, zero-width, BOM) cannot change the
    # digits and are dropped; controls and line separators are rejected
    ("\u202a+1 415 844 4856\u202c", "US", "+14158444856"),
    ("415\u200b844\u200b4856", "US", "+14158444856"),
    ("\ufeff4158444856", "US", "+14158444856"),
    ("415\x00844 4856", "US", "invisible_character"),
    ("415\t844 4856", "US", "invisible_character"),
    ("415 844 4856\u20284158444857", "US", "invisible_character"),
    # other default regions
    ("020 7946 0958", "GB", "+442079460958"),
    ("07911 123456", "GB", "+447911123456"),
    ("0044 7911 123456", "GB", "+447911123456"),
    ("447911123456", "GB", "+447911123456"),  # GB's own country code, not a guess abroad
    ("0118 496 0123", "GB", "+441184960123"),  # Reading: 011 is no international prefix here
    ("011 44 20 7946 0958", "GB", "invalid_phone"),
    ("4158444856.0", "GB", "invalid_phone"),
    ("030 123456", "DE", "+4930123456"),
    ("0049 30 123456", "DE", "+4930123456"),
    ("030123456.0", "DE", "+4930123456"),  # the trunk 0 is kept, not lost to int()
    ("+1 415 844 4856", "DE", "+14158444856"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), PHONE_SPELLINGS)
def test_phone_spellings(raw: str, region: str, expected: str) -> None:
    if expected.startswith("+"):
        assert normalize_phone(raw, region) == expected
        assert hash_identifier("PHONE", raw, default_region=region) == sha(expected)
        return
    with pytest.raises(RowRejected) as caught:
        normalize_phone(raw, region)
    assert (caught.value.column, caught.value.reason_code) == ("phone", expected)
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 5:
        assert digits not in str(caught.value)


def test_phone_spellings_table_is_large_enough() -> None:
    assert len(PHONE_SPELLINGS) >= 40
    assert len({(raw, region) for raw, region, _ in PHONE_SPELLINGS}) == len(PHONE_SPELLINGS)


def test_lost_digits_message_says_the_column_was_exported_as_a_number() -> None:
    with pytest.raises(RowRejected, match="exported as a number") as caught:
        normalize_phone("4.15844E+09", "US")
    assert "15844" not in str(caught.value)


def test_unknown_default_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="default_phone_region"):
        normalize_phone("213-373-4253", "USA")


@pytest.mark.parametrize("id_type", ["IDFA", "AAID"])
def test_normalize_device_id_trims_and_lowercases(id_type: str) -> None:
    raw = "  6D92078A-8246-4BA4-AE5B-76104861E7DC "
    assert normalize_device_id(raw, id_type) == "6d92078a-8246-4ba4-ae5b-76104861e7dc"


@pytest.mark.parametrize(
    ("raw", "id_type", "column", "reason"),
    [
        ("6d92078a82464ba4ae5b76104861e7dc", "IDFA", "idfa", "invalid_idfa"),
        ("not-a-device-id", "AAID", "aaid", "invalid_aaid"),
        ("6d92078a-8246-4ba4-ae5b-76104861e7d", "AAID", "aaid", "invalid_aaid"),
        ("00000000-0000-0000-0000-000000000000", "IDFA", "idfa", "invalid_idfa"),
    ],
)
def test_invalid_device_id_raises_without_the_value(
    raw: str, id_type: str, column: str, reason: str
) -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_device_id(raw, id_type)
    error = caught.value
    assert (error.column, error.reason_code) == (column, reason)
    assert raw not in str(error)


def test_all_zero_idfa_message_explains_opt_out() -> None:
    with pytest.raises(RowRejected, match="opted out"):
        normalize_device_id("00000000-0000-0000-0000-000000000000", "IDFA")


@pytest.mark.parametrize(
    ("id_type", "raw", "normalized"),
    [
        ("EMAIL", " Jane@Example.com ", "jane@example.com"),
        ("email", "JANE@EXAMPLE.COM", "jane@example.com"),
        ("PHONE", "(+1) 213-373-4253", "+12133734253"),
        ("IDFA", "6D92078A-8246-4BA4-AE5B-76104861E7DC", "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
        ("AAID", "38400000-8cf0-11bd-b23e-10b96e40000d", "38400000-8cf0-11bd-b23e-10b96e40000d"),
    ],
)
def test_hash_identifier_normalizes_then_hashes(id_type: str, raw: str, normalized: str) -> None:
    assert hash_identifier(id_type, raw) == sha(normalized)


def test_hash_identifier_uses_default_region() -> None:
    assert hash_identifier("PHONE", "07911 123456", default_region="GB") == sha("+447911123456")


@pytest.mark.parametrize("id_type", ID_TYPES)
def test_existing_hash_passes_through_after_trim(id_type: str) -> None:
    assert hash_identifier(id_type, EXISTING_HASH) == EXISTING_HASH
    assert hash_identifier(id_type, f"  {EXISTING_HASH}\n") == EXISTING_HASH


def test_uppercase_hash_is_rejected_not_rehashed() -> None:
    with pytest.raises(RowRejected) as caught:
        hash_identifier("EMAIL", EXISTING_HASH.upper())
    assert caught.value.reason_code == "invalid_email"
    assert "lowercase" in caught.value.message
    assert EXISTING_HASH.upper() not in str(caught.value)


def test_hash_identifier_rejects_invalid_value_without_quoting_it() -> None:
    with pytest.raises(RowRejected) as caught:
        hash_identifier("EMAIL", "jane.doe.example.com")
    assert caught.value.reason_code == "invalid_email"
    assert "jane" not in str(caught.value)


def test_unknown_id_type_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="EMAIL, PHONE, IDFA, AAID"):
        hash_identifier("MAID", "x")


INVISIBLE = [
    "\x00",  # NUL
    "\x07",
    "\x7f",
    "\u200b",  # zero-width space
    "\u200c",
    "\u200d",
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
    "\u202e",  # right-to-left override
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\ue000",  # private use
    "\ud800",  # lone surrogate
]


INVISIBLE_PLACES = [
    ("EMAIL", "jane", "@example.com"),
    ("EMAIL", "jane@example.com", ""),  # trailing: strip() keeps zero-width characters
    ("EMAIL", "", "jane@example.com"),
    ("IDFA", "6d92078a-8246-4ba4-", "ae5b-76104861e7dc"),
    ("AAID", "38400000-8cf0-11bd-b23e-10b96e40000d", ""),
]


@pytest.mark.parametrize(
    ("char", "id_type", "before", "after"),
    [
        (char, *place)
        for char in INVISIBLE
        for place in INVISIBLE_PLACES
        # line/paragraph separators are whitespace: at either end the usual trim removes them
        if char.isprintable() or not char.isspace() or (place[1] and place[2])
    ],
)
def test_invisible_character_is_rejected_never_hashed(
    char: str, id_type: str, before: str, after: str
) -> None:
    column = id_type.lower()
    raw = f" {before}{char}{after} "
    with pytest.raises(RowRejected) as caught:
        hash_identifier(id_type, raw)
    error = caught.value
    assert (error.column, error.reason_code) == (column, "invisible_character")
    assert column in error.message
    assert f"U+{ord(char):04X}" in error.message
    for part in (before, after):
        if part:
            assert part not in str(error)


def test_invisible_character_in_normalize_functions() -> None:
    with pytest.raises(RowRejected, match="invisible"):
        normalize_email("jane\u200b@example.com")
    with pytest.raises(RowRejected, match="invisible"):
        normalize_device_id("6d92078a-8246-4ba4-ae5b-76104861e7dc\x00", "IDFA")


def test_usual_trim_still_applies_before_the_invisible_check() -> None:
    assert normalize_email("\t jane@example.com \r\n") == "jane@example.com"
    assert normalize_device_id("\x1f6d92078a-8246-4ba4-ae5b-76104861e7dc\x85", "AAID") == (
        "6d92078a-8246-4ba4-ae5b-76104861e7dc"
    )


# ---------------------------------------------------------------- phone fast path
def _full_parse(raw: str, region: str) -> str:
    return phones._normalize_phone(raw, region, fast=False)


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("(415) 844-4856", "US", "+14158444856"),
        ("415.844.4856", "US", "+14158444856"),
        ("1-415-844-4856", "US", "+14158444856"),
        ("+1 415 844 4856", "DE", "+14158444856"),
        ("416-967-1111", "US", "+14169671111"),  # Canada, read with region US
        ("416-967-1111", "CA", "+14169671111"),
        ("(268) 460-1234", "US", "+12684601234"),  # Antigua: leading digits 268
        ("+44 7911 123456", "US", "+447911123456"),
        ("+44 7624 123456", "US", "+447624123456"),  # Isle of Man, shares +44
        ("+49 30 123456", "FR", "+4930123456"),
        ("555-555-5555", "US", ""),  # answered as invalid, not sent to the full parse
        ("12345", "US", ""),
        ("07911 123456", "GB", None),  # national spellings outside the NANP: full parse
        ("+44 (0) 20 7946 0958", "US", None),  # a national prefix after the code: full parse
        ("011 44 20 7946 0958", "US", None),
        ("+800 1234 5678", "US", None),  # non-geographic codes: full parse
    ],
)
def test_fast_path_answers_common_spellings_and_leaves_the_rest(
    text: str, region: str, expected: str | None
) -> None:
    assert phone_fast_path._fast_e164(text, region) == expected


@pytest.mark.parametrize(("raw", "region", "expected"), PHONE_SPELLINGS)
def test_phone_spellings_same_with_and_without_fast_path(
    raw: str, region: str, expected: str
) -> None:
    assert outcome(normalize_phone, raw, region) == outcome(_full_parse, raw, region)


def test_fast_path_gives_exactly_what_the_full_parse_gives_on_a_generated_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast version of `make bench-phones` (1,000,000 numbers): same E.164 or the same
    rejection for every generated number of many regions and spellings."""
    answered: Counter[str] = Counter()
    fast = phone_fast_path._fast_e164

    def counting(text: str, region: str) -> str | None:
        result = fast(text, region)
        answered["full" if result is None else "valid" if result else "invalid"] += 1
        return result

    monkeypatch.setattr(phones, "_fast_e164", counting)
    mismatches = [
        (raw, region)
        for raw, region in phone_corpus(30_000)
        if outcome(normalize_phone, raw, region) != outcome(_full_parse, raw, region)
    ]
    assert mismatches == []
    # the corpus exercises both of the fast path's answers, not only the fallback
    assert answered["valid"] > 5_000
    assert answered["invalid"] > 5_000
    assert answered["full"] > 5_000


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "it is empty"),
        ("jane doe@example.com", "it contains a space"),
        ("jane.example.com", "it has no '@'"),
        ("jane@@example.com", "it has more than one '@'"),
        ("@example.com", "nothing comes before the '@'"),
        ("jane@example", "the part after the '@' has no dot (expected a domain like example.com)"),
        ("jane@example.c", "the domain after the '@' is not like example.com"),
    ],
)
def test_invalid_email_message_names_the_problem_and_the_fix(raw: str, problem: str) -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_email(raw)
    assert caught.value.message == (
        f"not an email address: {problem}; expected the form name@example.com"
    )


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("not-a-device-id", "expected a UUID: 8-4-4-4-12 hex digits separated by dashes"),
        (
            "6d92078a82464ba4ae5b76104861e7dc",
            "it looks like an MD5 hash, which is not accepted: give the raw id or its SHA-256",
        ),
    ],
)
def test_invalid_device_id_message_says_what_was_expected(raw: str, hint: str) -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_device_id(raw, "AAID")
    assert caught.value.message == f"not a valid AAID: {hint}"


def test_a_non_device_id_type_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        normalize_device_id("6d92078a-8246-4ba4-ae5b-76104861e7dc", "EMAIL")
    assert caught.value.message == "EMAIL is not a device id type; use IDFA or AAID"


# ---------------------------------------------------------------- rules only mutations caught
def test_a_rendering_one_digit_short_has_lost_a_digit() -> None:
    # 4.158444856E+10 is 11 digits written with 10: the last one was rounded away.
    with pytest.raises(RowRejected) as caught:
        normalize_phone("4.158444856E+10")
    assert caught.value.reason_code == "phone_lost_digits"


def test_a_decimal_rendering_keeps_its_leading_trunk_zero() -> None:
    assert normalize_phone("030123456.0", "DE") == "+4930123456"


def test_an_unnamed_invisible_character_is_named_by_its_code_point_only() -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_email("a\ue000@example.com")
    assert "character (U+E000) after trimming" in caught.value.message


def test_older_rule_drops_everything_from_the_first_plus() -> None:
    assert normalize_email("a.b+c+d@x.com", strip_dots_and_tags=True) == "ab@x.com"


def test_older_rule_rejects_an_address_left_empty() -> None:
    with pytest.raises(RowRejected) as caught:
        normalize_email("+tag@x.com", strip_dots_and_tags=True)
    error = caught.value
    assert (error.column, error.reason_code) == ("email", "invalid_email")
    assert error.message == "nothing is left before the '@' once dots and the +tag are removed"


def test_the_default_region_is_the_us() -> None:
    assert normalize_phone("(213) 373-4253") == "+12133734253"
    assert hash_identifier("PHONE", "(213) 373-4253") == sha("+12133734253")


@pytest.mark.parametrize(("id_type", "column"), [("EMAIL", "email"), ("PHONE", "phone")])
def test_an_uppercase_hash_is_rejected_in_its_column(id_type: str, column: str) -> None:
    with pytest.raises(RowRejected) as caught:
        hash_identifier(id_type, EXISTING_HASH.upper())
    assert (caught.value.column, caught.value.reason_code) == (column, f"invalid_{column}")
