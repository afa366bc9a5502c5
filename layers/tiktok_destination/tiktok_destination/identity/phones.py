"""Phone numbers as TikTok matches them: E.164 (``+``, country code, digits) through
libphonenumber, with the destination's default region for numbers without a country code.

Spreadsheet renderings of a number (4158444856.0, 4.15844E+09) are read back to their
digits when none were lost, else rejected as ``phone_lost_digits``; extensions and letters
are rejected; format characters phone apps insert are removed.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

import phonenumbers

from tiktok_destination.errors import ConfigurationError, RowRejected
from tiktok_destination.identity.phone_fast_path import (
    _NOT_VALID,
    _NUMBER_RENDERING,
    _fast_e164,
)
from tiktok_destination.identity.schema import _check_visible

_LETTER = re.compile(r"[^\W\d_]")
# In a phone, format characters cannot change the digits, and phone apps insert them
# (contacts copied from iOS come wrapped in U+202A..U+202C): they are removed, not rejected.
_PHONE_REMOVABLE = "Cf"


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
