"""The identifier types TikTok matches, their ``id_schema`` names and input columns, and the
checks every type shares: an existing SHA-256, invisible characters, a known type.

The rules follow docs/tiktok-contract.md ("Identifier normalization before hashing"): a
value that already is 64 lowercase hex characters is an existing hash and passes through;
anything else is normalized by its type's module (``emails``, ``phones``, ``device_ids``)
and hashed (``hashing``). An unusable value raises :class:`RowRejected`, whose message
says what is wrong without ever quoting the value: it is personal data.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

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
# Unicode categories no identifier may hold: controls (NUL, tab), format characters
# (zero-width space/joiners U+200B..U+200D, word joiner U+2060, BOM U+FEFF, bidi marks),
# line/paragraph separators, private use and surrogates. str.isprintable() is False for
# all of them, so the per-character look-up only runs for the rare value that needs it.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})


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


def _check_type(id_type: str) -> str:
    normalized = id_type.strip().upper()
    if normalized not in SCHEMA:
        raise ConfigurationError(
            f"unknown identifier type {id_type!r}; use one of {', '.join(ID_TYPES)}"
        )
    return normalized
