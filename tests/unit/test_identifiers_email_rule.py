"""The email rule, checked against an oracle written from the rule's text, not our code.

The rule (README, "Custom audiences" and the reasons table): trim; a value of 64 lowercase
hex characters is an existing hash and passes; a control or invisible character rejects the
value (``invisible_character``); otherwise it is lowercased and is an address only with
exactly one "@", something before it, a domain of dot-separated non-empty labels whose last
has at least two characters, and nowhere whitespace or a character no mailbox holds
unquoted: ``< > ( ) [ ] \\ , ; : "`` (so also no ``mailto:``, no angle brackets, no quotes).
Anything else is ``invalid_email``.

Both of validate's ways of hashing are compared with the oracle on a generated corpus: the
per-value hasher (``hash_identifier``, also what offline events use) and the column hasher
with its fast path (``identifier_column_hasher``).
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections import Counter
from collections.abc import Iterator

import pytest

from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.column_hashing import identifier_column_hasher
from tiktok_destination.identity.hashing import hash_identifier

NOT_UNQUOTED = set('<>()[]\\,;:"')
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs"}
HEX = set("0123456789abcdef")


def oracle(raw: str) -> tuple[str, str]:
    """``("hash", digest)`` or ``("reject", reason code)``, from the rule above."""
    value = raw.strip()
    if len(value) == 64 and set(value) <= HEX:
        return "hash", value
    if any(unicodedata.category(ch) in INVISIBLE_CATEGORIES for ch in value):
        return "reject", "invisible_character"
    value = value.lower()
    if any(ch.isspace() or ch in NOT_UNQUOTED for ch in value):
        return "reject", "invalid_email"
    if value.count("@") != 1:
        return "reject", "invalid_email"
    local, domain = value.split("@")
    labels = domain.split(".")
    if not local or len(labels) < 2 or "" in labels or len(labels[-1]) < 2:
        return "reject", "invalid_email"
    return "hash", hashlib.sha256(value.encode("utf-8")).hexdigest()


def outcome(raw: str) -> tuple[str, str]:
    try:
        return "hash", hash_identifier("EMAIL", raw)
    except RowRejected as rejected:
        assert rejected.column == "email"
        return "reject", rejected.reason_code


# ---------------------------------------------------------------- the corpus
ATEXT = "abcxyzABCXYZ0189!#$%&'*+-/=?^_`{|}~"
UNICODE = "éÖßİ\u212a\uff4a"
SPACES = " \t\xa0\u3000"
INVISIBLE = "\x00\x1f\x7f\u200b\ufeff\u2028\ue000"
WRAPS = [
    ("", ""),
    ("mailto:", ""),
    ("MAILTO:", ""),
    ("<", ">"),
    ("Jane Doe <", ">"),
    ('"', '"'),
    ("", '"'),
    ("'", "'"),
    ("(", ")"),
    ("[", "]"),
    (" ", "  "),
    ("\t", "\n"),
]


def _text(rng: random.Random, pool: str, low: int, high: int) -> str:
    return "".join(rng.choice(pool) for _ in range(rng.randint(low, high)))


def _junk(rng: random.Random) -> str:
    """Sometimes a character the rule is about: not unquoted, a space, invisible, "@", "."."""
    roll = rng.random()
    if roll < 0.90:
        return ""
    if roll < 0.95:
        return rng.choice(sorted(NOT_UNQUOTED))
    return rng.choice(SPACES + INVISIBLE + "@.")


def email_rule_corpus(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 0.01:
            yield rng.choice(
                (
                    hashlib.sha256(b"x").hexdigest(),
                    hashlib.sha256(b"x").hexdigest().upper(),
                    hashlib.sha256(b"x").hexdigest()[:63],
                )
            )
            continue
        pool = ATEXT + (UNICODE if rng.random() < 0.1 else "")
        local = _text(rng, pool, 0 if rng.random() < 0.02 else 1, 10) + _junk(rng)
        if rng.random() < 0.2:
            local = local + "." + _text(rng, pool, 0, 5)
        labels = [
            _text(rng, "abcxyz019-" + ("é" if rng.random() < 0.05 else ""), 0, 8) + _junk(rng)
            for _ in range(rng.choice((1, 2, 2, 2, 3)))
        ]
        labels[-1] = _text(rng, "comorgdeXYZ", 1, 4) + _junk(rng) if len(labels) > 1 else labels[-1]
        at = rng.choice(("@",) * 30 + ("", "@@"))
        before, after = ("", "") if rng.random() < 0.4 else rng.choice(WRAPS)
        yield before + local + at + ".".join(labels) + after


CORPUS = list(email_rule_corpus(40_000, seed=15))


def test_the_corpus_reaches_every_branch_of_the_rule() -> None:
    kinds = Counter(oracle(raw)[1] if oracle(raw)[0] == "reject" else "hash" for raw in CORPUS)
    assert kinds["hash"] > 8_000
    assert kinds["invalid_email"] > 8_000
    assert kinds["invisible_character"] > 100
    # each thing the rule names was met in a value that is otherwise an address
    wrapped = Counter(
        before
        for raw in CORPUS
        for before, after in WRAPS
        if before and raw.startswith(before) and raw.endswith(after)
    )
    assert all(wrapped[before] > 100 for before, _ in WRAPS if before)
    for ch in NOT_UNQUOTED:
        assert sum(ch in raw for raw in CORPUS) > 100, ch


def test_the_per_value_hasher_follows_the_rule() -> None:
    mismatches = [(raw, outcome(raw), oracle(raw)) for raw in CORPUS if outcome(raw) != oracle(raw)]
    assert mismatches[:5] == []


def test_the_column_hasher_follows_the_rule() -> None:
    digests, misses, rejected = identifier_column_hasher("EMAIL", "US")(CORPUS)
    mismatches = []
    for at, raw in enumerate(CORPUS):
        if not raw or raw.isspace():  # no value, as validate reads it
            got: tuple[str, str] | None = None
            want: tuple[str, str] | None = None
        else:
            got = (
                ("hash", str(digests[at]))
                if digests[at] is not None
                else ("reject", rejected[at].reason_code)
            )
            want = oracle(raw)
        if got != want:
            mismatches.append((raw, got, want))
    assert mismatches[:5] == []
    assert len(misses) == sum(1 for d in digests if d is None)


@pytest.mark.parametrize(
    "raw",
    [
        "mailto:m@acme-mail.net",
        "MAILTO:m@acme-mail.net",
        "<ang@acme-mail.net>",
        "Ann <ang@acme-mail.net>",
        'person600@acme-mail.net"',
        '"person600@acme-mail.net"',
        '"quoted"@acme-mail.net',
        "a,b@acme-mail.net",
        "a;b@acme-mail.net",
        "a:b@acme-mail.net",
        "a(b)@acme-mail.net",
        "a[b]@acme-mail.net",
        "a\\b@acme-mail.net",
        "ann@acme",
        "ann@acmehost",
    ],
)
def test_what_no_mailbox_can_be_is_invalid_email_with_a_message_without_the_value(
    raw: str,
) -> None:
    with pytest.raises(RowRejected) as caught:
        hash_identifier("EMAIL", raw)
    assert caught.value.reason_code == "invalid_email"
    assert "acme" not in caught.value.message
    digests, _, rejected = identifier_column_hasher("EMAIL", "US")([raw])
    assert digests == [None] and rejected[0].reason_code == "invalid_email"


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("o'brien@example.com", "o'brien@example.com"),
        ("a!#$%&*+/=?^_`{|}~-@x.io", "a!#$%&*+/=?^_`{|}~-@x.io"),
        ("Jane.Doe+news@Mail.Example.CO.UK", "jane.doe+news@mail.example.co.uk"),
    ],
)
def test_addresses_with_the_unusual_characters_an_address_may_hold_still_pass(
    raw: str, normalized: str
) -> None:
    assert hash_identifier("EMAIL", raw) == hashlib.sha256(normalized.encode()).hexdigest()
