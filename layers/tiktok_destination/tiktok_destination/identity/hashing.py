"""One identifier to the SHA-256 TikTok expects: ``hash_identifier``, and
``identifier_hasher`` (the same, resolved once per id type and region for many values).

Each type's hasher answers its common well-formed spellings with a few C calls and hands
everything else to the full rules of ``emails``, ``phones`` and ``device_ids``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tiktok_destination.errors import ConfigurationError, RowRejected
from tiktok_destination.identity.device_ids import _UUID, _ZERO_UUID, normalize_device_id
from tiktok_destination.identity.emails import _ASCII_EMAIL, normalize_email
from tiktok_destination.identity.phone_fast_path import _NOT_VALID, _fast_path
from tiktok_destination.identity.phones import _check_region, _normalize_phone, _not_valid_phone
from tiktok_destination.identity.schema import (
    _ANY_CASE_SHA256_HEX,
    COLUMNS,
    SCHEMA,
    _check_type,
    _sha256,
    is_sha256_hex,
)

# the id types as _check_type returns them: hash_identifier skips the check for these
_HASHED = frozenset(SCHEMA)


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
