"""Whole columns to SHA-256 at once: ``identifier_column_hasher``, validate's hot path.

Each value's digest or rejection is exactly ``hashing.identifier_hasher``'s: a few C calls
over the column's text answer the spellings the per-value fast paths take, the rest goes
to the per-value hasher.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.device_ids import _UUID, _ZERO_UUID
from tiktok_destination.identity.emails import _ASCII_EMAIL
from tiktok_destination.identity.hashing import identifier_hasher
from tiktok_destination.identity.phone_fast_path import _MAX_PARSE_LENGTH, _nanp_region
from tiktok_destination.identity.phones import _check_region
from tiktok_destination.identity.schema import _check_type, _sha256

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
