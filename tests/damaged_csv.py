"""Random audience CSVs with random damage, and an oracle for them that never asks the product.

Each data row is one known person with a unique email and phone. The generator knows what it
wrote, so it knows, from the documented rules alone, what every row must come to: the
identifiers an accepted row must carry (SHA-256 over the email lowercased by hand and the
E.164 number built from the digits it chose), whether the row is certainly accepted,
certainly rejected (and with which reason codes), or may go either way (damage whose outcome
the docs leave open); and an accepted row never carries anyone else's identifiers.

Used by tests/unit/test_csv_damage_property.py (hundreds of files through validate and the
plan) and tests/e2e/test_csv_damage_property_e2e.py (a few through the state machine).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

#: The page whose *Rejection reasons* table documents every reason code.
REASONS_DOC = Path(__file__).resolve().parent.parent / "docs" / "input-format.md"

Fate = Literal["accepted", "rejected", "either"]

# (email, phone, note) header names; the last item is the data template's `columns` mapping.
HEADERS: list[tuple[str, str, str, dict[str, str] | None]] = [
    ("email", "phone", "note", None),
    ("Email", "Phone", "Note", None),
    ("E-mail Address", "Mobile", "Comments", None),
    ("email_address", "phone_number", "notes", None),
    ("Customer E-mail", "Cell Phone", "memo", {"email": "Customer E-mail"}),
    ("EMAIL", "Tel", "remarks", None),
]
AREAS = ("415", "212", "312", "617", "206", "303", "512", "702")
EXCHANGES = ("844", "267", "903", "482", "736")
WORDS = ("order", "called", "vip", "refund", "left", "message", "store", "gift", "12 inch", "ok")
DOMAINS = ("example.com", "Example.org", "mail.example.net", "shop.example.co.uk")
# Controls and invisible characters: any of them inside an email rejects it.
EMAIL_INVISIBLE = (
    "\x00",
    "\x07",
    "\x1b",
    "\x7f",
    "\x85",
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\x0b",
)
# Format characters phone apps insert: removed from a phone, the number stays.
PHONE_FORMAT = ("\u200b", "\u200e", "\u200f", "\u2060", "\ufeff")
PHONE_CONTROL = ("\x00", "\x07", "\x1b", "\x7f")
MAX_FIELD = 65_536
# Blank lines: empty, or only spaces and tabs (never the delimiter: ",," is a row).
BLANK = ("", "", "", "  ", "\t", " \t ")

# A quote left open is closed by the next quote in the file, which may be on its own line
# ('"x" y': malformed_row) or run over a huge line (field_too_large).
UNTERMINATED = frozenset({"unterminated_quote", "field_too_large", "malformed_row"})


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def email_id(normalized: str) -> str:
    return f"EMAIL_SHA256\t{sha(normalized)}"


def phone_id(e164: str) -> str:
    return f"PHONE_SHA256\t{sha(e164)}"


@dataclass
class Expected:
    """What one data row must come to, from the generator's own knowledge."""

    row: int
    fate: Fate
    #: identifiers the row must carry when accepted
    ids: frozenset[str]
    #: identifiers the row may carry as well when accepted (damage the docs leave open)
    maybe: frozenset[str]
    #: reason codes the row may be rejected with
    reasons: frozenset[str]
    damage: tuple[str, ...]
    #: raw values (personal data) that must never appear in a rejects file
    secrets: tuple[str, ...]
    #: reason codes of the row's invalid values: when the row is kept for another value,
    #: each is a ``dropped_value`` line of the rejects file
    bad_values: tuple[str, ...] = ()

    def own(self) -> frozenset[str]:
        return self.ids | self.maybe


@dataclass
class DamagedFile:
    seed: int
    data: bytes
    header: tuple[str, str, str]
    columns: dict[str, str] | None
    rows: list[Expected]
    blank_lines: int
    physical_lines: int
    multiline_rows: int
    delimiter: str
    eol: str
    description: str = ""

    def describe(self) -> str:
        damaged = [f"row {r.row}: {'+'.join(r.damage)}" for r in self.rows if r.damage]
        return f"seed {self.seed} ({self.description}); " + "; ".join(damaged)


@dataclass
class _Field:
    text: str
    #: ("ok", id) | ("bad", code) | ("maybe", id) | ("absent", "")
    outcome: tuple[str, str]
    damage: str = ""
    secret: str = ""


@dataclass
class _Options:
    #: also damage whose outcome the docs leave open
    ambiguous: bool
    #: the share of rows that get damage of some kind
    damage_share: float
    #: the share of values quoted although they need not be
    quote_share: float = 0.1
    #: a row (from 1) whose note opens a quote that nothing closes for many lines; 0: none
    open_quote_row: int = 0


# ------------------------------------------------------------------ identifiers
def _email(rng: random.Random, i: int) -> _Field:
    local = f"{rng.choice(('ann', 'bo', 'cy', 'di'))}.{rng.choice(('lee', 'ng', 'ruiz'))}{i}"
    address = f"{local}@{rng.choice(DOMAINS)}"
    normalized = address.lower()
    written = "".join(ch.upper() if rng.random() < 0.3 else ch for ch in address)
    roll = rng.random()
    if roll < 0.05:
        return _Field("", ("absent", ""), "email_empty")
    if roll < 0.09:
        # Already a SHA-256 of the normalized address: passed through.
        return _Field(sha(normalized), ("ok", email_id(normalized)), "email_prehashed", local)
    if roll < 0.15:
        written = f"  {written} "  # trimmed
    elif roll < 0.27:
        at = rng.randrange(1, len(written) - 1)
        bad = rng.choice(EMAIL_INVISIBLE)
        text = written[:at] + bad + written[at:]
        return _Field(text, ("bad", "invisible_character"), f"email_U+{ord(bad):04X}", local)
    return _Field(written, ("ok", email_id(normalized)), "", local)


def _phone(rng: random.Random, i: int, opts: _Options) -> _Field:
    a, e, n = rng.choice(AREAS), rng.choice(EXCHANGES), str(1000 + i)
    digits = a + e + n
    own = phone_id("+1" + digits)
    roll = rng.random()
    if roll < 0.05:
        return _Field("", ("absent", ""), "phone_empty")
    if roll < 0.55:
        text = rng.choice(
            (
                digits,
                f"({a}) {e}-{n}",
                f"{a}-{e}-{n}",
                f"+1 {a} {e} {n}",
                f"+1{digits}",
                f"{a}.{e}.{n}",
                f"011 1 {a} {e} {n}",
                f"001 {a} {e} {n}",
                f"+1 ({a}) {e}-{n}",
            )
        )
        return _Field(text, ("ok", own), "", digits)
    if roll < 0.65:
        mantissa = f"{digits[0]}.{digits[1:]}"
        if opts.ambiguous and digits.endswith("0") and rng.random() < 0.5:
            # 4.15844103E9: exact if the 0 was dropped, short if a digit was rounded away;
            # the docs leave open which way it reads, never someone else's number.
            text = mantissa.rstrip("0") + rng.choice(("E9", "E+09"))
            return _Field(text, ("maybe", own), "phone_float_short", digits)
        text = rng.choice((f"{digits}.0", f"{mantissa}E9", f"{mantissa}E+09", f"{mantissa}e9"))
        return _Field(text, ("ok", own), "phone_float", digits)
    if roll < 0.70:
        at = rng.randrange(1, len(digits))
        mark = rng.choice(PHONE_FORMAT)
        return _Field(digits[:at] + mark + digits[at:], ("ok", own), "phone_format_char", digits)
    if roll < 0.76:
        rounded = format(Decimal(digits), ".5E").replace("E+9", rng.choice(("E+09", "E9", "E+9")))
        return _Field(rounded, ("bad", "phone_lost_digits"), "phone_lost_digits", digits)
    if roll < 0.82:
        ext = str(rng.randrange(1, 9999))
        text = rng.choice(
            (f"{a}-{e}-{n} x{ext}", f"({a}) {e}-{n} ext. {ext}", f"+1 {a} {e} {n} ext {ext}")
        )
        return _Field(text, ("bad", "phone_extension"), "phone_extension", digits)
    if roll < 0.87:
        at = rng.randrange(1, len(digits))
        bad = rng.choice(PHONE_CONTROL)
        return _Field(
            digits[:at] + bad + digits[at:],
            ("bad", "invisible_character"),
            f"phone_U+{ord(bad):04X}",
            digits,
        )
    if opts.ambiguous and roll < 0.95:
        # 1 + ten digits: the NANP trunk prefix; the docs do not promise how it reads.
        if rng.random() < 0.5:
            text = rng.choice((f"1{digits}", f"1-{a}-{e}-{n}", f"1.{digits}E10", f"1{digits}.0"))
            return _Field(text, ("maybe", own), "phone_trunk_1", digits)
        # Spellings the docs do not name: a spreadsheet's text marker, two decimals, a
        # German float.
        mantissa = f"{digits[0]},{digits[1:]}"
        text = rng.choice((f"'{digits}", f"{digits}.00", f"{mantissa}E+09"))
        return _Field(text, ("maybe", own), "phone_odd_spelling", digits)
    return _Field(digits, ("ok", own), "", digits)


# ------------------------------------------------------------------ rows
def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _plain(rng: random.Random, text: str, delimiter: str, quote_share: float = 0.1) -> str:
    """A value as a CSV writer would write it (quoted when it must be, sometimes anyway)."""
    must = any(ch in text for ch in (delimiter, '"', "\r", "\n"))
    if must or (text and rng.random() < quote_share):
        return _quote(text)
    return text


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def _note(
    rng: random.Random, delimiter: str, eol: str, oversize_left: list[int]
) -> tuple[str, str, int]:
    """(written note, structural damage or "", physical lines it takes)."""
    roll = rng.random()
    if roll < 0.06:
        return '"' + _words(rng, 2), "unterminated_quote", 1
    if roll < 0.10:
        return _quote(_words(rng, 1)) + " " + _words(rng, 1), "quote_then_text", 1
    if roll < 0.14:
        return _words(rng, 1) + '" ' + _words(rng, 1), "stray_quote", 1
    if roll < 0.22:
        parts = [_words(rng, 2) for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.3:
            parts.insert(1, "")  # a blank line inside a quoted value is part of it
        return _quote(eol.join(parts)), "multiline_note", len(parts)
    if roll < 0.26:
        return _quote(f'said "{_words(rng, 1)}"{delimiter} twice'), "escaped_quotes", 1
    if oversize_left[0] and roll < 0.30:
        oversize_left[0] -= 1
        size = rng.choice((MAX_FIELD + 1, rng.randint(MAX_FIELD + 2, 70_000), 140_000))
        text = "x" * size
        return (_quote(text) if rng.random() < 0.5 else text), "field_too_large", 1
    return _plain(rng, _words(rng, rng.randint(0, 3)), delimiter), "", 1


def _row(
    rng: random.Random,
    i: int,
    order: list[int],
    delimiter: str,
    eol: str,
    opts: _Options,
    oversize_left: list[int],
) -> tuple[str, Expected, int, bool]:
    clean = rng.random() >= opts.damage_share or i == opts.open_quote_row
    if clean:
        local = f"ok{i}.person"
        address = f"{local}@{rng.choice(DOMAINS)}"
        a, e, n = rng.choice(AREAS), rng.choice(EXCHANGES), str(1000 + i)
        em = _Field(address, ("ok", email_id(address.lower())), "", local)
        ph = _Field(f"({a}) {e}-{n}", ("ok", phone_id(f"+1{a}{e}{n}")), "", a + e + n)
        note, structure, lines = _plain(rng, _words(rng, 2), delimiter, opts.quote_share), "", 1
        if i == opts.open_quote_row:
            note, structure = '"' + _words(rng, 2), "unterminated_quote"
    else:
        em, ph = _email(rng, i), _phone(rng, i, opts)
        note, structure, lines = _note(rng, delimiter, eol, oversize_left)
        where = rng.random()
        if structure == "unterminated_quote" and where < 0.45:
            # The quote opened at the start of the email or phone instead: the rest of the
            # line and the lines after it are inside it.
            if where < 0.3:
                em = _Field('"' + em.text, em.outcome, em.damage, em.secret)
                structure = "unterminated_quote_in_email"
            else:
                ph = _Field('"' + ph.text, ph.outcome, ph.damage, ph.secret)
                structure = "unterminated_quote_in_phone"
            note = _plain(rng, _words(rng, 1), delimiter)
    values: list[str | None] = [
        em.text
        if structure == "unterminated_quote_in_email"
        else _plain(rng, em.text, delimiter, opts.quote_share),
        ph.text
        if structure == "unterminated_quote_in_phone"
        else _plain(rng, ph.text, delimiter, opts.quote_share),
        note,
    ]
    shape = rng.random() if not clean and not structure else 1.0
    if shape < 0.04:
        values[2] = None
        structure = "missing_field"
    elif shape < 0.07:
        values.append(_words(rng, 1))
        structure = "extra_field"
    elif shape < 0.11:
        values.append("")
        structure = "trailing_delimiter"
    ordered = [values[k] for k in order] + values[3:]
    line = delimiter.join(v for v in ordered if v is not None)

    damage = tuple(d for d in (em.damage, ph.damage, structure) if d)
    secrets = tuple(s for s in (em.secret, ph.secret) if s)
    outcomes = [em.outcome, ph.outcome]
    ids = frozenset(v for kind, v in outcomes if kind == "ok")
    maybe = frozenset(v for kind, v in outcomes if kind == "maybe")
    bad = {v for kind, v in outcomes if kind == "bad"}
    if ph.outcome[0] == "maybe":
        bad.add("phone_lost_digits" if ph.damage == "phone_float_short" else "invalid_phone")
    fate: Fate
    if structure.startswith("unterminated_quote"):
        fate, ids, maybe, reasons = "rejected", frozenset(), frozenset(), set(UNTERMINATED)
    elif structure == "field_too_large":
        fate, ids, maybe, reasons = "rejected", frozenset(), frozenset(), {"field_too_large"}
    elif structure in ("quote_then_text", "missing_field", "extra_field"):
        fate, ids, maybe, reasons = "rejected", frozenset(), frozenset(), {"malformed_row"}
    else:
        reasons = bad or {"no_identifier"}
        if ids:
            fate = "accepted"
        elif maybe:
            fate = "either"
        else:
            fate = "rejected"
        if structure in ("stray_quote", "trailing_delimiter"):
            # A quote inside an unquoted value (csv reads it as a character) or an empty field
            # after the last column (spreadsheets write them): rejecting the row is fine too,
            # reading it as anyone else's is not.
            fate = "rejected" if fate == "rejected" else "either"
            reasons |= {"malformed_row", "unterminated_quote"}
    bad_values = tuple(v for kind, v in outcomes if kind == "bad")
    expected = Expected(i, fate, ids, maybe, frozenset(reasons), damage, secrets, bad_values)
    multiline = structure == "multiline_note"
    return line, expected, lines, multiline


def generate(
    seed: int,
    *,
    rows: tuple[int, int] = (5, 60),
    ambiguous: bool = True,
    oversize: bool = True,
    damage_share: float = 0.4,
    long_files: bool = True,
) -> DamagedFile:
    rng = random.Random(seed)
    opts = _Options(ambiguous=ambiguous, damage_share=damage_share)
    email_h, phone_h, note_h, columns = rng.choice(HEADERS)
    order = [0, 1, 2]
    rng.shuffle(order)
    names = (email_h, phone_h, note_h)
    delimiter = rng.choices((",", "\t", ";", "|"), weights=(70, 15, 10, 5))[0]
    eol = rng.choices(("\n", "\r\n", "\r"), weights=(55, 40, 5))[0]
    count = rng.randint(*rows)
    if long_files and rng.random() < 0.08:
        # A quote left open in one of the first rows, and little else quoted after it: it
        # runs over more than 100 lines before any quote closes it.
        count = rng.randint(130, 180)
        opts = _Options(
            ambiguous, damage_share=0.05, quote_share=0.0, open_quote_row=rng.randint(1, 20)
        )
    # Files glued together from two exports mix LF and CRLF (a lone CR would join them).
    mixed = eol != "\r" and rng.random() < 0.08
    oversize_left = [1 if oversize and rng.random() < 0.3 else 0]

    out: list[str] = []
    blanks = [line for line in BLANK if delimiter not in line]
    blank = 0
    physical = 0
    multiline_rows = 0
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        out.append(rng.choice(blanks))
        blank += 1
    out.append(delimiter.join(names[k] for k in order))
    physical += 1
    expected: list[Expected] = []
    for i in range(1, count + 1):
        line, row, lines, multiline = _row(rng, i, order, delimiter, eol, opts, oversize_left)
        out.append(line)
        expected.append(row)
        physical += lines
        multiline_rows += multiline
        if rng.random() < 0.08:
            for _ in range(rng.randint(1, 2)):
                out.append(rng.choice(blanks))
                blank += 1
    if not any(r.fate == "accepted" for r in expected):
        # A file with no usable row stops the run; keep every file one that runs.
        i = count + 1
        address = f"last{i}@example.com"
        n = str(1000 + i)
        values = [address, f"415-844-{n}", "last"]
        out.append(delimiter.join(values[k] for k in order))
        expected.append(
            Expected(
                i,
                "accepted",
                frozenset({email_id(address), phone_id(f"+1415844{n}")}),
                frozenset(),
                frozenset(),
                (),
                (),
            )
        )
        physical += 1
    physical += blank
    ends = [rng.choice(("\n", "\r\n")) if mixed else eol for _ in out]
    if out[-1] and rng.random() < 0.15:
        ends[-1] = ""  # no line end after the last line (a blank last line needs one)
    text = "".join(line + end for line, end in zip(out, ends, strict=True))
    bom = rng.random() < 0.2
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    description = (
        f"header {[names[k] for k in order]!r}, delimiter {delimiter!r}, eol {eol!r}"
        f"{' mixed with the other' if mixed else ''}, "
        f"bom {bom}, {len(expected)} rows"
    )
    return DamagedFile(
        seed,
        data,
        names,
        columns,
        expected,
        blank,
        physical,
        multiline_rows,
        delimiter,
        eol,
        description,
    )


# ------------------------------------------------------------------ the oracle
def rejection_reasons_section(doc: Path = REASONS_DOC) -> str:
    """The text of the doc's *Rejection reasons* section, up to the next heading."""
    text = doc.read_text(encoding="utf-8")
    return text.split("## Rejection reasons\n", 1)[1].split("\n#", 1)[0]


def documented_reason_codes(doc: Path = REASONS_DOC) -> set[str]:
    """The codes of the *Rejection reasons* table in docs/input-format.md."""
    section = rejection_reasons_section(doc)
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            codes.update(re.findall(r"`([a-z0-9_]+)`", first_cell))
    return codes


def read_rejects(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def check_run(
    file: DamagedFile,
    *,
    members: Iterable[str],
    rejects: list[dict[str, str]],
    counts: Mapping[str, Any],
    documented: set[str],
) -> set[str]:
    """Assert what the product did with ``file`` against the oracle; the members written.

    ``members``: the identifiers written (``TYPE\\thash``); ``rejects``: the rejects file's
    records, rejected rows and dropped values; ``counts``: ``received``, ``accepted``,
    ``rejected``, ``by_reason``.
    """
    where = file.describe()
    written = list(members)
    found = set(written)
    assert len(found) == len(written), f"an identifier was written twice; {where}"
    rows = {r.row: r for r in file.rows}
    kinds = Counter(record["kind"] for record in rejects)
    assert set(kinds) <= {"rejected_row", "dropped_value"}, f"{kinds}; {where}"
    dropped: dict[int, list[dict[str, str]]] = {}
    for record in rejects:
        if record["kind"] == "dropped_value":
            dropped.setdefault(int(record["row"]), []).append(record)
    by_row: dict[int, dict[str, str]] = {}
    for record in rejects:
        if record["kind"] != "rejected_row":
            continue
        number = int(record["row"])
        assert number in rows, f"rejects name row {number}, not a row of the file; {where}"
        assert number not in by_row, f"row {number} rejected twice; {where}"
        by_row[number] = record
    for number, record in by_row.items():
        code, expected = record["reason_code"], rows[number]
        assert code in documented, f"row {number}: reason {code} is not in the reasons table"
        assert expected.fate != "accepted", (
            f"row {number} ({'+'.join(expected.damage) or 'undamaged'}) must be accepted but "
            f"was rejected as {code}: {record['reason']}; {where}"
        )
        assert code in expected.reasons, (
            f"row {number} ({'+'.join(expected.damage)}) rejected as {code}, expected one of "
            f"{sorted(expected.reasons)}; {where}"
        )
        assert record["reason"], f"row {number}: no reason text; {where}"
        for secret in expected.secrets:
            for other in rejects:
                assert secret not in other["reason"], f"a raw value leaked into a reason; {where}"

    accepted = [r for r in file.rows if r.row not in by_row]
    allowed: set[str] = set()
    for row in accepted:
        assert row.fate != "rejected", (
            f"row {row.row} ({'+'.join(row.damage)}) must be rejected with one of "
            f"{sorted(row.reasons)} but was accepted; {where}"
        )
        missing = row.ids - found
        assert not missing, f"row {row.row} accepted without its own identifiers; {where}"
        assert row.own() & found, f"row {row.row} accepted but wrote nothing of its own; {where}"
        allowed |= row.own()
    for number, records in dropped.items():
        assert number in rows and number not in by_row, (
            f"a dropped value names row {number}, which is not a kept row; {where}"
        )
        row = rows[number]
        codes = Counter(r["reason_code"] for r in records)
        for record in records:
            assert record["column"] in {name.strip().lower() for name in file.header}, (
                f"row {number}: dropped value of column {record['column']!r}; {where}"
            )
            assert record["reason"], f"row {number}: no reason text; {where}"
            assert record["reason_code"] in row.reasons, (
                f"row {number}: value dropped as {record['reason_code']}, expected one of "
                f"{sorted(row.reasons)}; {where}"
            )
        # Values the docs leave open may be dropped as well; no more than those.
        extra = codes - Counter(row.bad_values)
        assert row.fate != "accepted" or sum(extra.values()) <= len(row.maybe), (
            f"row {number}: values dropped {dict(codes)}, its invalid values "
            f"{list(row.bad_values)}; {where}"
        )
    for row in (r for r in accepted if r.fate == "accepted"):
        missing_drops = Counter(row.bad_values) - Counter(
            r["reason_code"] for r in dropped.get(row.row, [])
        )
        assert not missing_drops, (
            f"row {row.row} was kept but its invalid value(s) {dict(missing_drops)} are not "
            f"in the rejects file as dropped values; {where}"
        )
    strangers = found - allowed
    assert not strangers, (
        f"{len(strangers)} identifier(s) written that belong to no accepted row (a rejected "
        f"row's, or nobody's: a row read as someone else); {where}"
    )

    assert counts["received"] == len(file.rows), f"rows received; {where}"
    assert counts["rejected"] == len(by_row), f"rows rejected vs the rejects file; {where}"
    assert counts["accepted"] == len(accepted), f"rows accepted; {where}"
    assert counts["accepted"] + counts["rejected"] == counts["received"]
    assert counts["by_reason"] == dict(Counter(r["reason_code"] for r in by_row.values())), where
    return found
