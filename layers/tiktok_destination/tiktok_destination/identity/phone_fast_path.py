"""The phone fast path: E.164 for the common well-formed spellings straight from
libphonenumber's metadata, exactly the full parse's answer or no answer at all.

``phones.normalize_phone`` asks it first; the hashers and the column hasher build on it.
Why its answers are exact is said below, beside the code that depends on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers
from phonenumbers import PhoneMetadata

# How spreadsheets and dataframes write a phone column they took for a number: a float with
# a fraction (4158444856.0; at least 7 digits before the one dot, so dotted spellings like
# 415.844.4856 or 089.1234567 stay phone spellings) or scientific notation (4.158444856E9,
# Excel's 4.15844E+09, German Excel's 4,15844E+09). Defined here, where the fast path
# declines such text; phones reads the digits back from it.
_NUMBER_RENDERING = re.compile(r"(\+?)(\d{7,}\.\d+|\d+(?:[.,]\d+)?[eE]\+?\d+)")


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
