"""Identifier normalization and SHA-256 hashing, as TikTok matches them.

The rules follow ``tiktok-api.md`` ("Identifier normalization before hashing"): a value that
already is 64 lowercase hex characters is an existing hash and passes through; anything else
is normalized (email: trim + lowercase; phone: E.164; IDFA/AAID: trim + lowercase UUID) and
hashed. An unusable value raises :class:`RowRejected`, whose message says what is wrong
without ever quoting the value: it is personal data.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import cache, partial

import phonenumbers
from phonenumbers import PhoneMetadata

from tiktok_destination.errors import ConfigurationError, RowRejected

ID_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "IDFA", "AAID")

#: id type -> TikTok ``id_schema`` entry for its SHA-256 hash
SCHEMA: dict[str, str] = {
    "EMAIL": "EMAIL_SHA256",
    "PHONE": "PHONE_SHA256",
    "IDFA": "IDFA_SHA256",
    "AAID": "AAID_SHA256",
}

#: id type -> the input column that holds it (headers are matched case-insensitively)
COLUMNS: dict[str, str] = {id_type: id_type.lower() for id_type in ID_TYPES}

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ANY_CASE_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
# One "@", a domain with at least one dot, a top-level domain of two or more characters,
# and nowhere whitespace or a character no address holds unquoted: what is left of a link
# (mailto:), a display form (Name <a@example.com>), a list (a,b; a;b) or a stray quote of
# the export. A quoted local part ("a b"@example.com) is valid by RFC 5322, but no
# mailbox people sign up with uses one, and TikTok would not match it.
# re's \s is str.isspace(), character for character (checked over every code point).
_WHITESPACE = re.compile(r"\s")
_NOT_UNQUOTED = '<>()[]\\,;:"'
_NOT_IN_EMAIL = re.compile(rf"[{re.escape(_NOT_UNQUOTED)}]")
_EMAIL = re.compile(
    rf"[^@\s{re.escape(_NOT_UNQUOTED)}]+@"
    rf"(?:[^@\s.{re.escape(_NOT_UNQUOTED)}]+\.)+[^@\s.{re.escape(_NOT_UNQUOTED)}]{{2,}}"
)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# How spreadsheets and dataframes write a phone column they took for a number: a float with
# a fraction (4158444856.0; at least 7 digits before the one dot, so dotted spellings like
# 415.844.4856 or 089.1234567 stay phone spellings) or scientific notation (4.158444856E9,
# Excel's 4.15844E+09, German Excel's 4,15844E+09).
_NUMBER_RENDERING = re.compile(r"(\+?)(\d{7,}\.\d+|\d+(?:[.,]\d+)?[eE]\+?\d+)")
_LETTER = re.compile(r"[^\W\d_]")
# Unicode categories no identifier may hold: controls (NUL, tab), format characters
# (zero-width space/joiners U+200B..U+200D, word joiner U+2060, BOM U+FEFF, bidi marks),
# line/paragraph separators, private use and surrogates. str.isprintable() is False for
# all of them, so the per-character look-up only runs for the rare value that needs it.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})
# In a phone, format characters cannot change the digits, and phone apps insert them
# (contacts copied from iOS come wrapped in U+202A..U+202C): they are removed, not rejected.
_PHONE_REMOVABLE = "Cf"


def is_sha256_hex(value: str) -> bool:
    """True for exactly 64 lowercase hex characters (an anchored match, nothing around it)."""
    return _SHA256_HEX.fullmatch(value) is not None


_sha256 = hashlib.sha256


def sha256_hex(value: str) -> str:
    return _sha256(value.encode("utf-8")).hexdigest()


def _check_visible(value: str, column: str, *, removable: str = "") -> str:
    """``value`` without the characters of category ``removable``; a ``RowRejected``
    (``invisible_character``) for any other invisible or control character in it."""
    if value.isprintable():
        return value
    kept: list[str] = []
    for ch in value:
        category = unicodedata.category(ch)
        if category == removable:
            continue
        if category in _INVISIBLE:
            which = f"U+{ord(ch):04X} {unicodedata.name(ch, '')}".strip()
            raise RowRejected(
                column,
                "invisible_character",
                f"the {column} holds an invisible or control character ({which}) after trimming; "
                "such values come from copy-paste or broken exports and would never match: "
                "clean the value at the source",
            )
        kept.append(ch)
    return "".join(kept)


def _email_problem(value: str) -> str:
    """Which part of an email address is wrong, described without quoting the value."""
    if not value:
        return "it is empty"
    if _WHITESPACE.search(value):
        return "it contains a space"
    if value.startswith("mailto:"):
        return "it starts with mailto: (a link, not an address); give the address alone"
    if "<" in value or ">" in value:
        return "it has angle brackets (as in Name <name@example.com>); give the address alone"
    if '"' in value:
        return "it has a double quote (often one left over from the export)"
    if _NOT_IN_EMAIL.search(value):
        return "it has a character an address cannot hold unquoted: ( ) [ ] \\ , ; or :"
    count = value.count("@")
    if count == 0:
        return "it has no '@'"
    if count > 1:
        return "it has more than one '@'"
    local, domain = value.split("@")
    if not local:
        return "nothing comes before the '@'"
    if "." not in domain:
        return "the part after the '@' has no dot (expected a domain like example.com)"
    return "the domain after the '@' is not like example.com"


def normalize_email(raw: str, *, strip_dots_and_tags: bool = False) -> str:
    """Trim and lowercase an email address (TikTok's current rule).

    ``strip_dots_and_tags`` applies TikTok's older customer-file rule as well: dots and a
    ``+tag`` are removed from the part before the ``@``.
    """
    value = raw.strip()
    if not value.isprintable():  # the check's own first test, without the call
        value = _check_visible(value, "email")
    value = value.lower()
    if _EMAIL.fullmatch(value) is None:
        raise RowRejected(
            "email",
            "invalid_email",
            f"not an email address: {_email_problem(value)}; expected the form name@example.com",
        )
    if strip_dots_and_tags:
        local, domain = value.split("@")
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            raise RowRejected(
                "email",
                "invalid_email",
                "nothing is left before the '@' once dots and the +tag are removed",
            )
        value = f"{local}@{domain}"
    return value


@cache
def _check_region(default_region: str) -> str:
    region = default_region.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationError(
            f"default phone region {default_region!r} is not a two-letter region code "
            "(ISO 3166-1 alpha-2) that phone number rules exist for, such as US, GB or DE; "
            "fix default_phone_region in the settings"
        )
    return region


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def _phone_rejected(reason_code: str, message: str) -> RowRejected:
    return RowRejected("phone", reason_code, message)


def _not_valid_phone(region: str) -> RowRejected:
    return _phone_rejected(
        "invalid_phone",
        "not a valid phone number: write it with its country code, like +44 20 7946 0958 "
        f"(or 00/011 and the country code), or as a number of the default region {region}; "
        "a number without one is never read as international; check the number of digits",
    )


def _from_number_rendering(text: str) -> str:
    """The digits of a float rendering of a whole number; ``text`` when it is no such rendering.

    A rendering whose digits were rounded away (4.15844E+09) or that has a fraction
    (4158444856.5) is rejected: any number read from it would be some other person's.
    """
    match = _NUMBER_RENDERING.fullmatch(text)
    if match is None:
        return text
    sign, number_text = match.groups()
    number = Decimal(number_text.replace(",", "."))  # the pattern only lets numbers through
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        raise _phone_rejected(
            "phone_lost_digits",
            "the phone is written in scientific notation that has lost digits (like "
            "1.23457E+09): the column was exported as a number and rounded; export the "
            "phone column as text",
        )
    if number != number.to_integral_value():
        raise _phone_rejected(
            "invalid_phone",
            "not a phone number: it is a number with a fraction; export the phone column as text",
        )
    if "." in number_text and "e" not in number_text.lower():
        # The digits as written: int() would drop a leading 0 (a trunk prefix) of 030123456.0.
        return sign + number_text.split(".", 1)[0]
    return sign + str(int(number))


# ---------------------------------------------------------------- phone fast path
# phonenumbers.parse + is_valid_number + format_number cost tens of microseconds a phone,
# most of validate's time. For the common well-formed spellings the fast path below gives
# the full parse's answer from the same libphonenumber metadata: the E.164, or _NOT_VALID
# (then the same invalid_phone rejection is raised). Whatever it is not sure of goes to the
# full parse: it never guesses.
#
# Why it is exact. It only takes ``text`` (after the trimming, invisible-character,
# float-rendering and 00 steps that both paths share) of at most 250 characters, made of
# ASCII digits and the separators " ().-" with at most one "+", before every digit. On such
# text, phonenumbers.parse finds no extension (its labels need x, #, ~, ",", ";" or
# letters), no letters and no RFC 3966 parts; it keeps the text from the "+" or first
# digit and works on the digits alone (too few of them only fails parse, which the full
# path also reports as invalid_phone). Then:
# - "+" and digits: the country code is the first 1 to 3 digits that are one (codes are
#   prefix-free; a leading 0 is none), the rest is the national number. parse then strips
#   the national prefix of the code's main region when its national_prefix_for_parsing
#   matches at the start: the fast path only takes numbers where it does not match.
#   Non-geographic codes (+800...) go to the full parse.
# - no "+", default region in the NANP (country code 1): digits starting with 2-9 are the
#   national number as written (no international prefix 011, no country code 1, and the
#   fast path checks that the region's national prefix does not match). "1" and 10 digits
#   are country code 1 and the 10 when 11 digits are too long for the region's general
#   lengths (parse's own rule) and neither the region's nor the US's (the code's main
#   region) national prefix matches the 10. Fewer digits than any valid NANP number has,
#   in a region without a national-prefix transform rule (one could add digits), are
#   invalid whatever parse reads: every reading keeps the digits or an end of them.
# - validity is is_valid_number's: the region is chosen as region_code_for_number does
#   (the first region of the code whose leading digits match, or, for a region without
#   leading digits, for which the number has a type), and the number must match that
#   region's general description and one type (_number_type_helper's descriptions with
#   their possible lengths), compiled once per region into one regex from the metadata.
# - format_number(E164) is "+", the country code and the national significant number,
#   which keeps the national number's leading zeros (Italian leading zero): the digits.
# tests/unit/test_identifiers.py (30,000 numbers) and `make bench-phones` (1,000,000)
# compare both paths on generated numbers of many regions and spellings: no difference.
#
# The fast path is built once per default region (_fast_path). identifier_hasher calls it on
# the trimmed text, before the steps _normalize_phone shares with the full parse: of those,
# only two change text of the fast path's alphabet (printable ASCII, so the invisible-
# character step never does), and the fast path declines both: a float rendering (one ".")
# and, in the NANP, a 00 spelling. tests/unit/test_identifiers_fast.py and bench-phones
# compare the hasher with the full parse too.
_MAX_PARSE_LENGTH = 250  # phonenumbers' _MAX_INPUT_STRING_LENGTH
_MAX_NATIONAL_LENGTH = 17  # and its _MAX_LENGTH_FOR_NSN
# _number_type_helper's order; mobile only counts when its pattern differs from fixed line
_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
#: what the fast path returns for a number it is sure the full path finds invalid
_NOT_VALID = ""
# The fast path's metadata patterns only ever see ASCII digits (it checks isascii() before
# any match): there re.ASCII's \d gives the same answers as Unicode's, and is faster.
_FAST_PATH_FLAGS = re.ASCII


def _without_separators(text: str) -> str:
    """A phone's text without the separators the fast paths drop (" -()."): str.replace
    five times is faster than str.translate or a regex for a short text."""
    return text.replace(" ", "").replace("-", "").replace("(", "").replace(")", "").replace(".", "")


def _type_descs(metadata: PhoneMetadata) -> list[phonenumbers.PhoneNumberDesc | None]:
    names = list(_TYPE_DESCS)
    if not metadata.same_mobile_and_fixed_line_pattern:
        names.append("mobile")
    return [getattr(metadata, name) for name in names]


def _desc_regex(
    desc: phonenumbers.PhoneNumberDesc | None, checked: frozenset[int] | None = None
) -> str | None:
    """A regex for the digits that _is_number_matching_desc accepts, None if none.
    ``checked``: lengths already required around it (no need to check them again)."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = [n for n in desc.possible_length if n > 0]
    if desc.possible_length and not lengths:
        return None
    # the text is digits only, so a length is a number of \d
    sizes = "|".join(rf"\d{{{n}}}" for n in lengths)
    needed = lengths and (checked is None or not checked <= set(lengths))
    guard = rf"(?=(?:{sizes})\Z)" if needed else ""
    return rf"{guard}(?:{desc.national_number_pattern})\Z"


def _valid_regex(metadata: PhoneMetadata) -> re.Pattern[str] | None:
    """Digits of a number that _number_type_helper gives a type for in this region."""
    general = _desc_regex(metadata.general_desc)
    if general is None or metadata.general_desc is None:
        return None
    checked = frozenset(n for n in metadata.general_desc.possible_length if n > 0) or None
    types = [t for t in (_desc_regex(d, checked) for d in _type_descs(metadata)) if t]
    if not types:
        return None
    return re.compile(f"(?={general})(?:{'|'.join(types)})", _FAST_PATH_FLAGS)


def _shortest_valid(metadata: PhoneMetadata) -> int:
    """The fewest digits a valid number of this region has (0: no sure answer)."""
    general = metadata.general_desc
    if general is None or not general.possible_length:
        return 0
    shortest = [
        min(set(desc.possible_length) & set(general.possible_length), default=99)
        for desc in _type_descs(metadata)
        if desc is not None and desc.national_number_pattern
    ]
    if any(desc is not None and not desc.possible_length for desc in _type_descs(metadata)):
        return 0
    return min(shortest, default=99)


class _Prefix:
    """``regex.match(digits)`` of a national or international prefix pattern, with a
    ``startswith`` for the plain-digit ones (1, 0, 011) that most regions have."""

    def __init__(self, pattern: str | None):
        self.literal = pattern if pattern and pattern.isdigit() and pattern.isascii() else None
        self.regex = (
            re.compile(pattern, _FAST_PATH_FLAGS) if pattern and self.literal is None else None
        )

    def matches(self, digits: str) -> bool:
        if self.literal is not None:
            return digits.startswith(self.literal)
        return self.regex is not None and self.regex.match(digits) is not None


class _CountryRules:
    """What the fast path needs of one country calling code's metadata."""

    def __init__(self, country_code: int):
        self.plus_code = f"+{country_code}"
        main = PhoneMetadata.metadata_for_region(
            phonenumbers.region_code_for_country_code(country_code)
        )
        self.main_prefix = _Prefix(main.national_prefix_for_parsing if main else None)
        self.main_transforms = main is None or bool(main.national_prefix_transform_rule)
        # (leading digits, valid) per region, in region_code_for_number's order
        self.routes: list[tuple[re.Pattern[str] | None, re.Pattern[str] | None]] = []
        self.shortest_valid = 99
        for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
            metadata = PhoneMetadata.metadata_for_region(region)
            if metadata is None:
                continue
            leading = metadata.leading_digits
            self.routes.append(
                (
                    re.compile(leading, _FAST_PATH_FLAGS) if leading is not None else None,
                    _valid_regex(metadata),
                )
            )
            self.shortest_valid = min(self.shortest_valid, _shortest_valid(metadata))

        self.e164 = self._e164_function()

    def _e164_function(self) -> Callable[[str], str | None]:
        """``e164(national)``: + code + national when is_valid_number holds for it,
        _NOT_VALID when it does not; None when parse would strip a national prefix (not
        sure). A closure over bound methods: it runs once per phone."""
        plus_code = self.plus_code
        prefix_literal = self.main_prefix.literal
        prefix_regex = self.main_prefix.regex.match if self.main_prefix.regex else None
        routes = tuple(
            (
                leading.match if leading is not None else None,
                valid.match if valid is not None else None,
            )
            for leading, valid in self.routes
        )

        def e164(national: str) -> str | None:
            if not 2 <= len(national) <= _MAX_NATIONAL_LENGTH:
                return None
            if prefix_literal is not None:
                if national.startswith(prefix_literal):
                    return None
            elif prefix_regex is not None and prefix_regex(national) is not None:
                return None
            for leading, valid in routes:
                if leading is not None and not leading(national):
                    continue
                if valid is not None and valid(national):
                    return plus_code + national
                if leading is not None:
                    return _NOT_VALID  # the number is this region's, and not valid in it
            return _NOT_VALID

        return e164


_COUNTRY_RULES: dict[int, _CountryRules | None] = {}


def _country_rules(country_code: int) -> _CountryRules | None:
    try:
        return _COUNTRY_RULES[country_code]
    except KeyError:
        pass
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    rules = None
    if regions and phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY not in regions:
        rules = _CountryRules(country_code)
    return _COUNTRY_RULES.setdefault(country_code, rules)


class _NanpRegion:
    """The national spellings of a default region with country code 1."""

    def __init__(self, metadata: PhoneMetadata, nanp: _CountryRules):
        self.nanp = nanp
        self.national_prefix = _Prefix(metadata.national_prefix_for_parsing)
        self.international = _Prefix(metadata.international_prefix)
        # Plain-digit prefixes that start with 0 or 1 (the US's 1 and 011) cannot match the
        # digits the fast path takes, which start with 2-9 or with 1 and then 2-9.
        self.prefixes_cannot_match = all(
            prefix.literal is not None and prefix.literal[0] in "01"
            for prefix in (self.national_prefix, self.international)
        )
        general = metadata.general_desc
        # _test_number_length(11 digits) == TOO_LONG: then parse takes a leading 1 as the
        # country code whatever the pattern says
        self.eleven_too_long = (
            general is not None
            and 11 not in general.possible_length_local_only
            and bool(general.possible_length)
            and max(general.possible_length) < 11
        )
        # Without a transform rule the national number parse keeps is the digits or an
        # end of them (after a country code or national prefix): fewer digits than any
        # valid NANP number has can never be valid.
        self.shortest_valid = (
            0
            if metadata.national_prefix_transform_rule or nanp.main_transforms
            else nanp.shortest_valid
        )


_NANP_REGIONS: dict[str, _NanpRegion | None] = {}


def _nanp_region(region: str) -> _NanpRegion | None:
    try:
        return _NANP_REGIONS[region]
    except KeyError:
        pass
    metadata = PhoneMetadata.metadata_for_region(region)
    nanp = _country_rules(1)
    found = None
    if metadata is not None and metadata.country_code == 1 and nanp is not None:
        found = _NanpRegion(metadata, nanp)
    return _NANP_REGIONS.setdefault(region, found)


_NANP_FIRST = frozenset("23456789")
#: country calling code as written ("1", "44") -> its int; codes are prefix-free
_CODE_TEXTS: dict[str, int] = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


def _plus_e164(digits: str) -> str | None:
    """The fast path's answer for the digits after a "+" (any default region)."""
    if not (digits.isdigit() and digits.isascii()) or digits[0] == "0" or len(digits) <= 2:
        return None
    for size in (1, 2, 3):
        code = _CODE_TEXTS.get(digits[:size])
        if code is not None:
            rules = _country_rules(code)
            return rules.e164(digits[size:]) if rules is not None else None
    return None


def _build_fast_path(region: str) -> Callable[[str], str | None]:
    """The fast path of one default region (a _check_region result), built once.

    It answers for ``text`` as it comes from trimming: it declines what the shared steps
    before it would change (a float rendering, the 00 read as "+" in the NANP), so the
    hasher may call it before them; after them (in _normalize_phone) those checks are no-ops.
    """
    nanp = _nanp_region(region)
    rendering = _NUMBER_RENDERING.fullmatch
    if nanp is None:

        def fast_elsewhere(text: str) -> str | None:
            if len(text) > _MAX_PARSE_LENGTH or "+" not in text:
                return None  # national spellings outside the NANP: the full parse
            compact = _without_separators(text)
            if compact[:1] != "+":
                return None
            if "." in text and text.count(".") == 1 and rendering(text) is not None:
                return None
            return _plus_e164(compact[1:])

        return fast_elsewhere

    rules = nanp.nanp
    e164 = rules.e164
    plus_code = rules.plus_code
    national_prefix = nanp.national_prefix.matches
    international = nanp.international.matches
    prefixes_cannot_match = nanp.prefixes_cannot_match
    eleven_too_long = nanp.eleven_too_long
    shortest_valid = nanp.shortest_valid
    # e164's first step for the usual number, without its call and loop: the first region
    # of the code (the US) has no leading digits, so a number valid there is answered by
    # it; and a plain-digit main national prefix starting with 0 or 1 (the US's 1) cannot
    # match a national number starting with 2-9.
    first_leading, first_valid = rules.routes[0] if rules.routes else (None, None)
    main_literal = rules.main_prefix.literal
    quick = (
        first_valid.match
        if first_leading is None
        and first_valid is not None
        and main_literal is not None
        and main_literal[0] in "01"
        else None
    )

    def fast_nanp(text: str) -> str | None:
        if len(text) > _MAX_PARSE_LENGTH:
            return None
        compact = _without_separators(text)
        if "." in text and text.count(".") == 1 and rendering(text) is not None:
            return None  # a float rendering (exactly one dot): read by the shared step
        if compact.isdigit():
            if not compact.isascii():
                return None
            first = compact[0]
            if first in _NANP_FIRST:
                national = compact  # no country code 1, no 011, no national prefix 1
            elif first == "1" and len(compact) == 11 and eleven_too_long:
                national = compact[1:]
                if national[0] not in _NANP_FIRST:
                    return None
            elif (
                len(compact) < shortest_valid
                and not international(compact)
                and not text.startswith("00")  # read as "+" by the shared step
            ):
                return _NOT_VALID
            else:
                return None
            if not prefixes_cannot_match and (national_prefix(national) or international(compact)):
                return None
        elif compact[:2] == "+1":
            # _plus_e164's answer for country code 1 (codes are prefix-free: "1" is the code)
            national = compact[2:]
            if not (national.isdigit() and national.isascii()) or len(national) < 2:
                return _plus_e164(compact[1:])
        else:
            return _plus_e164(compact[1:]) if compact[:1] == "+" else None
        if (
            quick is not None
            and national[0] in _NANP_FIRST
            and 2 <= len(national) <= _MAX_NATIONAL_LENGTH
            and quick(national) is not None
        ):
            return plus_code + national
        return e164(national)

    return fast_nanp


_FAST_PATHS: dict[str, Callable[[str], str | None]] = {}


def _fast_path(region: str) -> Callable[[str], str | None]:
    try:
        return _FAST_PATHS[region]
    except KeyError:
        return _FAST_PATHS.setdefault(region, _build_fast_path(region))


def _fast_e164(text: str, region: str) -> str | None:
    """What the full parse gives ``text``, when sure: the E.164, or _NOT_VALID for an
    invalid number; None when not sure."""
    return _fast_path(region)(text)


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 form (``+`` country code and digits): ``(+1) 213-373-4253`` -> ``+12133734253``.

    A number is international only when written so: a leading ``+``, the default region's
    international prefix (``00`` in most of the world, ``011`` in the US and Canada), or,
    in the NANP regions where no national number starts with 0, ``00`` as well. Any other
    number is read in ``default_region`` and never guessed to be international, since a
    wrong guess hashes some other person's number. A float rendering of a whole number
    (``4158444856.0``, ``4.158444856E9``) is read as its digits. The number must be valid
    for its country (Google's libphonenumber rules): TikTok can never match a number that
    cannot exist. Extensions and letters (vanity numbers) are rejected.
    """
    return _normalize_phone(raw, default_region, fast=True)


def _normalize_phone(raw: str, default_region: str, *, fast: bool) -> str:
    """``normalize_phone``; ``fast=False`` skips the fast path (the equivalence tests
    compare both on a large generated corpus)."""
    region = _check_region(default_region)
    text = raw.strip()
    if not text.isprintable():  # the check's own first test, without the call
        text = _check_visible(text, "phone", removable=_PHONE_REMOVABLE)
    if "." in text or "e" in text or "E" in text:  # a rendering has one; most phones none
        text = _from_number_rendering(text)
    if text.startswith("00") and phonenumbers.country_code_for_region(region) == 1:
        # libphonenumber only knows 011 for NANP; 00 written there is the rest of the
        # world's international prefix, as no NANP national number starts with 0.
        text = "+" + text[2:]
    if fast:
        e164 = _fast_e164(text, region)
        if e164:
            return e164
        if e164 == _NOT_VALID:
            raise _not_valid_phone(region)
    number = _parse(text, region)
    if number is not None and number.extension:
        raise _phone_rejected(
            "phone_extension",
            "the phone has an extension, which TikTok cannot match (people sign up with "
            "their own number, not a switchboard's); give the direct number without the "
            "extension",
        )
    if _LETTER.search(text):
        raise _phone_rejected(
            "invalid_phone",
            "the phone contains letters; vanity numbers like 1-800-FLOWERS and text are not "
            "accepted: write the number in digits, with its country code or as a number of "
            f"the default region {region}",
        )
    if number is None or not phonenumbers.is_valid_number(number):
        raise _not_valid_phone(region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_device_id(raw: str, id_type: str) -> str:
    """Trim and lowercase an IDFA or AAID (Google advertising ID); it must be a UUID."""
    id_type = _check_type(id_type)
    if id_type not in ("IDFA", "AAID"):
        raise ConfigurationError(f"{id_type} is not a device id type; use IDFA or AAID")
    column = COLUMNS[id_type]
    value = _check_visible(raw.strip(), column).lower()
    if _UUID.fullmatch(value) is None:
        hint = (
            "it looks like an MD5 hash, which is not accepted: give the raw id or its SHA-256"
            if _MD5_HEX.fullmatch(value)
            else "expected a UUID: 8-4-4-4-12 hex digits separated by dashes"
        )
        raise RowRejected(column, f"invalid_{column}", f"not a valid {id_type}: {hint}")
    if value == _ZERO_UUID:
        # iOS and Android report all zeros when the person limited ad tracking: it is
        # shared by millions of devices and must never be sent as one person.
        raise RowRejected(
            column,
            f"invalid_{column}",
            f"the {id_type} is all zeros, which devices report when the person opted out "
            "of ad tracking; leave the value empty instead",
        )
    return value


# the id types as _check_type returns them: hash_identifier skips the check for these
_HASHED = frozenset(SCHEMA)


def _check_type(id_type: str) -> str:
    normalized = id_type.strip().upper()
    if normalized not in SCHEMA:
        raise ConfigurationError(
            f"unknown identifier type {id_type!r}; use one of {', '.join(ID_TYPES)}"
        )
    return normalized


def _hash_trimmed(kind: str, value: str, normalize: Callable[[str], str]) -> str:
    """The full rules for a trimmed value: an existing hash passes, else normalize and hash."""
    if len(value) == 64 and is_sha256_hex(value):
        return value
    if len(value) == 64 and _ANY_CASE_SHA256_HEX.fullmatch(value):
        # Lowercasing would be a guess about how it was produced; the spec says lowercase.
        column = COLUMNS[kind]
        raise RowRejected(
            column,
            f"invalid_{column}",
            "looks like a SHA-256 hash with uppercase letters; pre-hashed values must be "
            "64 lowercase hex characters (hash the normalized value and write it in lowercase)",
        )
    return _sha256(normalize(value).encode("utf-8")).hexdigest()


# The hashers below answer the common well-formed spellings with a few C calls and hand
# everything else to _hash_trimmed (the full rules): an answer of a fast path must be the
# full rules' answer for that value, so each accepts only values on which every step of the
# full rules is known to be a no-op or is done identically. tests/unit/test_identifiers_fast.py
# compares both on generated corpora, `make bench-phones` on 1,000,000 phones.

# The email rule's _EMAIL on printable ASCII without the space: every class is a subset of
# _EMAIL's (printable ASCII less "@" and _NOT_UNQUOTED: "(),:;<>[\\]; less "." in the
# domain's labels), and possessive quantifiers only take matches away (they save the
# backtracking; no match is lost, as labels cannot hold the "." that ends them), so a match
# here is a match there. Such a value is printable, so the invisible-character check is a
# no-op, and str.lower() of ASCII is ASCII.
_ASCII_LOCAL = r"[\x21\x23-\x27\x2a\x2b\x2d-\x39\x3d\x3f\x41-\x5a\x5e-\x7e]"
_ASCII_LABEL = r"[\x21\x23-\x27\x2a\x2b\x2d\x2f-\x39\x3d\x3f\x41-\x5a\x5e-\x7e]"
_ASCII_EMAIL = re.compile(rf"{_ASCII_LOCAL}++@(?:{_ASCII_LABEL}++\.)++{_ASCII_LABEL}{{2,}}+")


def _email_hasher() -> Callable[[str], str]:
    fast = _ASCII_EMAIL.fullmatch
    sha256 = _sha256

    def hash_email(raw: str) -> str:
        value = raw.strip()
        if value.isascii():  # O(1): CPython keeps the flag
            lowered = value.lower()
            # a match has an "@", so it is no existing hash (64 hex characters)
            if fast(lowered) is not None:
                return sha256(lowered.encode()).hexdigest()
        return _hash_trimmed("EMAIL", value, normalize_email)

    return hash_email


def _phone_hasher(default_region: str) -> Callable[[str], str]:
    normalize = partial(_normalize_phone, default_region=default_region, fast=True)
    try:
        region = _check_region(default_region)
    except ConfigurationError:
        # hash_identifier only asks for the region once a value needs it: an existing hash
        # still passes (identifier_hasher raises before it gets here).
        return lambda raw: _hash_trimmed("PHONE", raw.strip(), normalize)
    fast = _fast_path(region)
    sha256 = _sha256

    def hash_phone(raw: str) -> str:
        value = raw.strip()
        # the fast path declines what the shared steps of _normalize_phone would change;
        # a 64-digit value is an existing hash
        e164 = fast(value) if len(value) != 64 else None
        if e164:
            return sha256(e164.encode()).hexdigest()
        if e164 == _NOT_VALID:
            raise _not_valid_phone(region)
        return _hash_trimmed("PHONE", value, normalize)

    return hash_phone


def _device_hasher(kind: str) -> Callable[[str], str]:
    normalize = partial(normalize_device_id, id_type=kind)
    uuid = _UUID.fullmatch
    sha256 = _sha256

    def hash_device(raw: str) -> str:
        value = raw.strip()
        if len(value) == 36 and value.isascii():
            lowered = value.lower()  # printable: a UUID's characters are
            if uuid(lowered) is not None and lowered != _ZERO_UUID:
                return sha256(lowered.encode()).hexdigest()
        return _hash_trimmed(kind, value, normalize)

    return hash_device


_HASHERS: dict[tuple[str, str], Callable[[str], str]] = {}


def _hasher(kind: str, default_region: str) -> Callable[[str], str]:
    """The hasher of a checked id type; the region only counts for phones."""
    key = (kind, default_region if kind == "PHONE" else "")
    try:
        return _HASHERS[key]
    except KeyError:
        pass
    if kind == "EMAIL":
        hasher = _email_hasher()
    elif kind == "PHONE":
        hasher = _phone_hasher(default_region)
    else:
        hasher = _device_hasher(kind)
    return _HASHERS.setdefault(key, hasher)


def identifier_hasher(id_type: str, default_region: str) -> Callable[[str], str]:
    """``hash_identifier`` for one id type and default phone region, resolved once.

    The returned function maps a raw value to the SHA-256 (64 lowercase hex) TikTok expects,
    raising :class:`RowRejected` exactly as ``hash_identifier(id_type, raw,
    default_region=default_region)`` does; it is the same function hash_identifier uses.
    An unknown ``id_type``, or for PHONE an unknown ``default_region``, is a
    ``ConfigurationError`` here, before any value (hash_identifier only reports the region
    once a value needs it).
    """
    kind = _check_type(id_type)
    if kind == "PHONE":
        _check_region(default_region)
    return _hasher(kind, default_region)


def hash_identifier(id_type: str, raw: str, *, default_region: str = "US") -> str:
    """The SHA-256 (64 lowercase hex) TikTok expects for one identifier of ``id_type``.

    A trimmed value that already is 64 lowercase hex characters is returned unchanged.
    Hashing many values of one type: ``identifier_hasher`` skips the per-call look-ups.
    """
    kind = id_type if id_type in _HASHED else _check_type(id_type)
    return _hasher(kind, default_region)(raw)


# ---------------------------------------------------------------- whole columns
# validate hashes a block of rows a column at a time: one "\n".join, one lower(), one
# findall over the column's text and one list comprehension of SHA-256 replace a Python
# call, strip, lower and regex match per value. The pattern of a type takes, per line, a
# subset of what its per-value fast path takes, so for those lines every step of the
# per-value path is known to give the same text; any other line (the pattern's catch-all
# alternative gives "") goes to the per-value hasher itself. Lines are values only when no
# value holds "\n" and the text is ASCII (checked on the joined text, in C); otherwise the
# values that are not ASCII or hold "\n" are blanked to "" and go per value.
# tests/unit/test_identifiers_column.py compares the column hasher with identifier_hasher
# value by value on mixed generated columns.

#: ``(digests, misses, rejected)`` for a column of values: ``digests[i]`` is value i's
#: SHA-256, None when it has none (no value: None, empty or only whitespace, or rejected);
#: ``misses`` the positions without a digest, ascending; ``rejected`` position -> why (equal
#: values of a column may share one RowRejected).
ColumnHashes = tuple[list[str | None], list[int], dict[int, RowRejected]]
ColumnHasher = Callable[[Sequence[str | None]], ColumnHashes]

_NO_ANSWER = b""  # what findall gives for a line its fast alternative did not take
#: values -> per value the UTF-8 (ASCII) text to hash, or _NO_ANSWER. The line patterns run
#: on the column's text encoded once: their answers are bytes, ready for SHA-256.
Answers = Callable[[Sequence[str | None]], list[bytes]]


def _column_lines(values: Sequence[str | None], longest: int = 0) -> str:
    """The values joined by "\\n", one per line; "" in place of a value that is None, not
    ASCII, holds "\\n" or (``longest``) is longer: those lines get no fast answer."""
    try:
        joined = "\n".join(values)  # type: ignore[arg-type]  # None: TypeError, below
    except TypeError:
        joined = ""
    else:
        if (
            joined.isascii()
            and joined.count("\n") == len(values) - 1
            and not (longest and max(map(len, values)) > longest)  # type: ignore[arg-type]
        ):
            return joined
    return "\n".join(
        [
            value
            if value is not None
            and value.isascii()
            and "\n" not in value
            and not (longest and len(value) > longest)
            else ""
            for value in values
        ]
    )


def _column_hasher(
    answers: Answers, per_value: Callable[[str], str], prefix: bytes = b""
) -> ColumnHasher:
    """A column hasher from ``answers``, whose answers are hashed after ``prefix`` (the
    phones' "+1"), and the per-value hasher for the values without one."""
    sha256 = _sha256

    def hash_column(values: Sequence[str | None]) -> ColumnHashes:
        if not values:
            return [], [], {}
        found = answers(values)
        if len(found) != len(values):  # cannot happen; never guess which line is which
            found = [_NO_ANSWER] * len(values)
        digests: list[str | None] = (
            [sha256(prefix + text).hexdigest() if text else None for text in found]
            if prefix
            else [sha256(text).hexdigest() if text else None for text in found]
        )
        misses: list[int] = []
        rejected: dict[int, RowRejected] = {}
        # the per-value answers of this column: files repeat their junk ("N/A", a
        # placeholder phone), and each rejection costs microseconds
        seen: dict[str, str | RowRejected] = {}
        index = found.index
        at = -1
        while True:
            try:
                at = index(_NO_ANSWER, at + 1)
            except ValueError:
                break
            raw = values[at]
            if not raw or raw.isspace():  # no value, as validate reads it
                misses.append(at)
                continue
            answer = seen.get(raw)
            if answer is None:
                try:
                    answer = per_value(raw)
                except RowRejected as problem:
                    # without its traceback: the frames would hold this column's lists, in
                    # a cycle only the garbage collector frees (memory grew by tens of MiB)
                    answer = problem.with_traceback(None)
                seen[raw] = answer
            if isinstance(answer, str):
                digests[at] = answer
            else:
                misses.append(at)
                rejected[at] = answer
        return digests, misses, rejected

    return hash_column


# The per-value email fast path's pattern, anchored to a line: a line the first alternative
# takes is printable ASCII without whitespace (strip is a no-op) and, lowered, fullmatches
# _ASCII_EMAIL: what hash_email hashes. re.M: ^ and $ at every line; "." never crosses one.
_EMAIL_LINE = rf"^(?:({_ASCII_EMAIL.pattern})$|.*)"


def _email_answers(line_pattern: str = _EMAIL_LINE) -> Answers:
    # bytes patterns and text: the text is ASCII, where both read the same
    findall = re.compile(line_pattern.encode(), re.M).findall

    def answers(values: Sequence[str | None]) -> list[bytes]:
        return findall(_column_lines(values).lower().encode())

    return answers


# A lowercase UUID on a line of its own: 36 printable ASCII characters without whitespace,
# as hash_device takes them; the all-zero id is taken out of the answers (it is rejected).
_DEVICE_LINE = rf"^(?:({_UUID.pattern})$|.*)"


def _device_answers() -> Answers:
    findall = re.compile(_DEVICE_LINE.encode(), re.M).findall
    zero = _ZERO_UUID.encode()

    def answers(values: Sequence[str | None]) -> list[bytes]:
        found: list[bytes] = findall(_column_lines(values).lower().encode())
        if zero in found:
            found = [_NO_ANSWER if text == zero else text for text in found]
        return found

    return answers


# Phones of a NANP default region: the separators fast_nanp removes (" -()."), removed
# from the whole column's text, leave per line the compact text it works on; the line
# pattern takes the three spellings fast_nanp answers from ``quick`` (its region's first
# route, the US's, which needs no leading digits): 2-9 and the national number, "1" and
# 10 digits starting with 2-9 (only where 11 digits are too long for the region), and
# "+1" and the national number. Values fast_nanp declines are kept from the fast answer:
# longer than 250 characters (before the separators go), and a float rendering with one
# dot (+1213555123.4 would read as +12135551234 without its dot; the shared rendering
# step reads the digits before it).
_SEPARATORS = str.maketrans("", "", " -().")
# A line the pattern takes and that trims to such a rendering (\+?\d{7,}\.\d+; only spaces
# trim off it) has a dot with 7 digits before it and digits, then spaces, after it to the
# line's end. This finds those (and some lines that are no rendering: they go per value
# too). It starts with the literal dot, which re finds without trying every position.
_ONE_DOT_RENDERING = re.compile(r"\.(?<=[0-9]{7}\.)[0-9]+ *$", re.M)


def _line_anchored(pattern: re.Pattern[str]) -> str | None:
    """``pattern`` (a _valid_regex, \\Z-anchored, on digits) for a line of a multi-line
    text; None when it has anything that could see past a line."""
    text = pattern.pattern
    if any(token in text for token in (".", "^", "$", "[^", "\\D", "\\S", "\\W", "\\n")):
        return None
    return text.replace("\\Z", "$")


def _phone_answers(region: str) -> tuple[Answers, bytes] | None:
    """The answers (national numbers) for a NANP default region, and the prefix that makes
    them E.164 ("+1"); None where the column takes no fast answers."""
    nanp = _nanp_region(region)
    if nanp is None or not nanp.prefixes_cannot_match:
        return None
    rules = nanp.nanp
    first_leading, first_valid = rules.routes[0] if rules.routes else (None, None)
    main_literal = rules.main_prefix.literal
    if (
        first_leading is not None
        or first_valid is None
        or main_literal is None
        or main_literal[0] not in "01"
        or rules.plus_code != "+1"
    ):
        return None  # fast_nanp has no ``quick`` here
    valid = _line_anchored(first_valid)
    if valid is None:
        return None
    one = r"|1(?=[2-9][0-9]{9}$)" if nanp.eleven_too_long else ""
    findall = re.compile(
        rf"^(?:(?:\+1{one})?((?=[2-9][0-9]{{1,16}}$)(?:{valid}))$|.*)".encode(), re.M
    ).findall
    renderings = _ONE_DOT_RENDERING.search

    def answers(values: Sequence[str | None]) -> list[bytes]:
        text = _column_lines(values, longest=_MAX_PARSE_LENGTH)
        if "." in text and renderings(text) is not None:
            text = "\n".join(
                "" if renderings(line) is not None else line for line in text.split("\n")
            )
        found: list[bytes] = findall(text.translate(_SEPARATORS).encode())
        return found

    return answers, rules.plus_code.encode()


def _per_value_answers(values: Sequence[str | None]) -> list[bytes]:
    return [_NO_ANSWER] * len(values)


_COLUMN_HASHERS: dict[tuple[str, str], ColumnHasher] = {}


def identifier_column_hasher(id_type: str, default_region: str) -> ColumnHasher:
    """``identifier_hasher`` for a whole column of values at once (see ColumnHashes).

    Each value's digest or rejection is exactly ``identifier_hasher(id_type,
    default_region)``'s; a value that is None, empty or only whitespace is no value (no
    digest, not rejected). Raises ConfigurationError as identifier_hasher does.
    """
    per_value = identifier_hasher(id_type, default_region)
    kind = _check_type(id_type)
    key = (kind, _check_region(default_region) if kind == "PHONE" else "")
    try:
        return _COLUMN_HASHERS[key]
    except KeyError:
        pass
    if kind == "EMAIL":
        hasher = _column_hasher(_email_answers(), per_value)
    elif kind == "PHONE":
        phone = _phone_answers(key[1])
        if phone is None:
            hasher = _column_hasher(_per_value_answers, per_value)
        else:
            hasher = _column_hasher(phone[0], per_value, prefix=phone[1])
    else:
        hasher = _column_hasher(_device_answers(), per_value)
    return _COLUMN_HASHERS.setdefault(key, hasher)
