"""Email addresses as TikTok matches them: trim and lowercase (optionally TikTok's older
customer-file rule), and why an address is rejected, said without quoting it; also the
ASCII pattern the hashers' fast paths take (a subset of the full rule's)."""

from __future__ import annotations

import re

from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.schema import _check_visible

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


# The email rule's _EMAIL on printable ASCII without the space: every class is a subset of
# _EMAIL's (printable ASCII less "@" and _NOT_UNQUOTED: "(),:;<>[\\]; less "." in the
# domain's labels), and possessive quantifiers only take matches away (they save the
# backtracking; no match is lost, as labels cannot hold the "." that ends them), so a match
# here is a match there. Such a value is printable, so the invisible-character check is a
# no-op, and str.lower() of ASCII is ASCII.
_ASCII_LOCAL = r"[\x21\x23-\x27\x2a\x2b\x2d-\x39\x3d\x3f\x41-\x5a\x5e-\x7e]"
_ASCII_LABEL = r"[\x21\x23-\x27\x2a\x2b\x2d\x2f-\x39\x3d\x3f\x41-\x5a\x5e-\x7e]"
_ASCII_EMAIL = re.compile(rf"{_ASCII_LOCAL}++@(?:{_ASCII_LABEL}++\.)++{_ASCII_LABEL}{{2,}}+")
