"""Generated phone numbers of many regions and spellings, for the fast-path equivalence tests.

Each item is ``(raw, default_region)``. Numbers come from the libphonenumber metadata's
example numbers of each region and type, mutated digit by digit (so most are near-valid,
some valid, some not), plus NANP numbers over every area code and exchange pattern
(0xx/1xx area codes, 555, toll-free, N11), and are written in the spellings exports use:
national, with/without "+", country code without "+", 00/011 prefixes, spaces, dashes,
dots, parentheses, leading 1, floats, wrong lengths and a few characters the fast path
must leave to the full parse.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

from tiktok_destination.errors import RowRejected

DEFAULT_REGIONS = ("US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "JP", "MX", "PR", "AG")
# regions that share a country code (+1, +44, +7, +39, +61) test the region routing
NUMBER_REGIONS = (
    *DEFAULT_REGIONS,
    *("IT", "ES", "NL", "CH", "SE", "NO", "RU", "KZ", "CN", "KR", "SG", "ZA", "NG", "AR"),
    *("IM", "JE", "GG", "VA", "CC", "CX", "DM", "JM", "BS", "VI", "GU"),
)
_TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
)


def _examples() -> list[tuple[str, int, str]]:
    """(region, country code, national significant number) of the metadata's examples."""
    found = []
    for region in NUMBER_REGIONS:
        code = PhoneMetadata.metadata_for_region(region).country_code  # type: ignore[union-attr]
        for kind in _TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                nsn = phonenumbers.national_significant_number(example)
                found.append((region, code, nsn))
    return found


# US, Canada, Puerto Rico, Antigua, Cayman; toll-free, premium; 555, N11, 0xx, 1xx
_AREAS = [
    "212",
    "213",
    "310",
    "415",
    "416",
    "604",
    "514",
    "613",
    "787",
    "268",
    "345",
    "800",
    "888",
    "877",
    "900",
    "555",
    "911",
    "011",
    "123",
]


def _nanp(rng: random.Random) -> str:
    """Ten NANP digits: any area code (0xx, 1xx, N11, 555, toll-free), any exchange."""
    roll = rng.random()
    area = rng.choice(_AREAS) if roll < 0.5 else f"{rng.randrange(1000):03d}"
    exchange = rng.choice(("555", "011", "123", "911", f"{rng.randrange(1000):03d}"))
    if rng.random() < 0.7:
        exchange = f"{rng.randrange(200, 1000):03d}"
    line = f"{rng.randrange(10000):04d}"
    if rng.random() < 0.05:
        line = "01" + f"{rng.randrange(100):02d}"  # 555-01xx: fictional numbers
    return area + exchange + line


def _mutate(rng: random.Random, nsn: str) -> str:
    roll = rng.random()
    if roll < 0.45:  # keep the prefix, new digits after it: mostly still valid
        keep = rng.randrange(1, len(nsn) + 1)
        return nsn[:keep] + "".join(rng.choice("0123456789") for _ in nsn[keep:])
    if roll < 0.55:
        return nsn[:-1]
    if roll < 0.65:
        return nsn + rng.choice("0123456789")
    if roll < 0.7:
        return "0" + nsn
    return nsn


def _group(rng: random.Random, digits: str, separator: str) -> str:
    if not separator or len(digits) < 4:
        return digits
    cuts = sorted(rng.sample(range(1, len(digits)), min(len(digits) - 1, rng.randrange(1, 4))))
    parts = [digits[i:j] for i, j in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    if rng.random() < 0.3 and len(parts) > 1:
        parts[0] = f"({parts[0]})"
    return separator.join(parts)


def _spell(rng: random.Random, code: int, nsn: str) -> str:
    separator = rng.choice(("", "", " ", "-", ".", " - ", "  "))
    body = _group(rng, nsn, separator)
    national_prefix = "0" if code not in (1, 52) and rng.random() < 0.5 else ""
    form = rng.randrange(14)
    if form == 0:
        text = f"+{code}{separator}{body}"
    elif form == 1:
        text = f"+{code}{nsn}"
    elif form == 2:
        text = f"(+{code}) {body}"
    elif form == 3:
        text = f"{code}{separator}{body}"  # country code without "+"
    elif form == 4:
        text = f"00{code} {body}"
    elif form == 5:
        text = f"011 {code} {body}"
    elif form == 6:
        text = f"1{separator}{body}" if code == 1 else f"{national_prefix}{body}"
    elif form == 7:
        text = f"{nsn}.0" if rng.random() < 0.7 else f"{code}{nsn}.0"  # a float column
    elif form == 8:
        text = f"+{code} (0) {body}"
    elif form == 9:
        text = f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}"
    elif form == 10:  # characters the fast path must leave to the full parse
        extra = rng.choice((" x12", " ext. 4", "#1", "/", "+", ",", "\u00a0", "\u200b", "a", "++"))
        at = rng.randrange(len(body) + 1)
        text = body[:at] + extra + body[at:]
    elif form == 11:
        text = rng.choice(("", " ", "(", ")", "-", ".", "+")) + body + rng.choice(("", ")", "."))
    elif form == 12:
        text = f"+{code}{separator}{national_prefix}{body}"
    else:
        text = body
    if rng.random() < 0.05:
        text = f"  {text}\t"
    return text


def phone_corpus(count: int, seed: int = 20251126) -> Iterator[tuple[str, str]]:
    """``count`` seeded ``(raw, default_region)`` pairs."""
    rng = random.Random(seed)
    examples = _examples()
    for _ in range(count):
        region = rng.choice(DEFAULT_REGIONS)
        if rng.random() < 0.45:
            code, nsn = 1, _nanp(rng)
            if rng.random() < 0.1:
                nsn = _mutate(rng, nsn)
        else:
            _, code, nsn = rng.choice(examples)
            nsn = _mutate(rng, nsn)
        yield _spell(rng, code, nsn), region


def outcome(normalize: Callable[[str, str], str], raw: str, region: str) -> str:
    """The E.164 of ``normalize(raw, region)`` or ``reject:<reason code>:<message>``."""
    try:
        return normalize(raw, region)
    except RowRejected as rejected:
        return f"reject:{rejected.reason_code}:{rejected.message}"
