"""Issue 15's property through the whole state machine: a day-1 file, then a day-2 file whose
email or phone column is renamed, emptied, turned into floats or partly filled with junk.

Each day-2 run either stops, naming a reason and leaving TikTok's audience exactly as day 1
left it, or leaves TikTok holding what a careful person expects. The oracle below is that
person: it reads the generated values with hand-written rules (emails trimmed and
lowercased, the generated US phones as +1 and ten digits, SHA-256) and the README's
documented rules (column aliases, reject_threshold per column, the removal guard), and
imports nothing of ours. A run stopped by the removal guard is then re-run with
allow_mass_removal, which must mirror the file as the oracle reads it.

Each case is two or three runs (about 1-3 s each); E2E_IDENTIFIER_DAMAGE_TRIALS raises the
number of cases (E2E_IDENTIFIER_DAMAGE_SEED picks other ones).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest

from tests.conftest import ADVERTISER, CONFIG
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination, RunResult

pytestmark = pytest.mark.e2e

TRIALS = int(os.environ.get("E2E_IDENTIFIER_DAMAGE_TRIALS", "8"))
SEED = int(os.environ.get("E2E_IDENTIFIER_DAMAGE_SEED", "1515"))

REJECT_THRESHOLD = Fraction(1, 5)
MAX_REMOVAL_SHARE = Fraction(1, 2)
MIN_AUDIENCE = 10
SETTINGS = (
    f"mapping_batch_size = 50\nreject_threshold = 0.2\nmax_removal_share = 0.5\n"
    f"mass_removal_min_audience = {MIN_AUDIENCE}"
)
PROPERTY_CONFIG = CONFIG.replace("mapping_batch_size = 4\nreject_threshold = 0.5", SETTINGS)

FIELDS = ("email", "phone")
KINDS = ("rename", "empty", "floats", "junk")
# The README's aliases (without the pre-hashed ones): a column renamed to one is still read.
ALIASES = {
    "email": ("email_address", "e_mail", "e_mail_address", "mail", "email_addr"),
    "phone": (
        "phone_number",
        "phone_no",
        "mobile",
        "mobile_phone",
        "mobile_number",
        "cell",
        "cell_phone",
        "cellphone",
        "telephone",
        "tel",
        "msisdn",
    ),
}
ALIAS_SPELLINGS = {
    "email": ("Email Address", "E-Mail", "MAIL", "email.addr"),
    "phone": ("Phone Number", "Mobile", "Telephone", "cell phone", "TEL"),
}
UNRELATED = ("contact", "col_b", "value1", "customer", "field 7", "data")
JUNK = {
    "email": ("n/a", "unknown", "none", "-", "no email", "test", "name at example.com", "user@"),
    "phone": ("n/a", "unknown", "-", "0", "12345", "555", "call me", "000-000", "tbd"),
}
AREAS = (415, 212, 646, 312, 617, 206)


# ---------------------------------------------------------------- the oracle's rules
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _compact(name: str) -> str:
    return re.sub(r"[\s_.\-]+", "", name.strip().lower())


def _is_alias(name: str, field_name: str) -> bool:
    return _compact(name) in {_compact(a) for a in (field_name, *ALIASES[field_name])}


def _email_member(raw: str) -> str:
    return "EMAIL_SHA256:" + _sha(raw.strip().lower())


def _phone_member(raw: str) -> str:
    """The generated phones: a US number of ten digits, maybe after a 1, or written as a
    float of those digits ending in .0 (the same number)."""
    text = raw.strip()
    if text.endswith(".0"):
        text = text[:-2]
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    assert len(digits) == 10, raw
    return "PHONE_SHA256:" + _sha("+1" + digits)


def _member(field_name: str, raw: str) -> str:
    return _email_member(raw) if field_name == "email" else _phone_member(raw)


@dataclass
class Person:
    email: str
    phone: str


@dataclass
class Case:
    index: int
    day1: list[Person]
    day2: list[Person]
    target: str
    kind: str
    #: the day-2 header name of each field's column (a rename changes the target's)
    header: dict[str, str]
    #: day-2 text of the target column per row (None: the person's own value)
    cells: list[str | None]
    #: rows (from 1) of the target column whose value is junk
    junk_rows: list[int] = field(default_factory=list)
    note: str = ""

    def describe(self) -> str:
        return (
            f"case {self.index} (seed {SEED}): {self.kind} {self.target} {self.note}; "
            f"{len(self.day1)} people on day 1, {len(self.day2)} on day 2"
        )


def _person(rng: random.Random, i: int) -> Person:
    first = rng.choice(("ann", "bob", "cho", "dev", "eva", "fin", "gus", "ida"))
    email = f"{first}.{rng.choice(('lee', 'kim', 'ruiz', 'okafor'))}{i}@example{i % 3}.com"
    email = "".join(c.upper() if rng.random() < 0.2 else c for c in email)
    if rng.random() < 0.2:
        email = f" {email} "
    area, line = rng.choice(AREAS), rng.randrange(10_000)
    phone = rng.choice(
        (
            f"({area}) 555-{line:04d}",
            f"{area}-555-{line:04d}",
            f"+1 {area} 555 {line:04d}",
            f"{area}.555.{line:04d}",
            f"1-{area}-555-{line:04d}",
        )
    )
    return Person(email, phone)


def _typo(rng: random.Random, word: str) -> str:
    at = rng.randrange(len(word))
    edit = rng.randrange(4)
    if edit == 0 and at < len(word) - 1 and word[at] != word[at + 1]:
        return word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    if edit == 1:
        return word[:at] + word[at + 1 :]
    if edit == 2:
        return word[:at] + word[at] + word[at:]
    other = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[at]])
    return word[:at] + other + word[at + 1 :]


def generate(index: int) -> Case:
    rng = random.Random(SEED * 1000 + index)
    # Every email is unique (by its number); a phone drawn twice is left out, so each
    # member is one person's.
    taken: set[str] = set()
    people: list[Person] = []
    for i in range(rng.randint(12, 30) + 3):
        person = _person(rng, i)
        if _phone_member(person.phone) not in taken:
            taken.add(_phone_member(person.phone))
            people.append(person)
    people, joiners = people[:-3], people[-3:][: rng.randint(0, 3)]
    leavers = rng.sample(range(len(people)), rng.randint(0, len(people) // 10))
    day2 = [p for i, p in enumerate(people) if i not in leavers] + joiners
    rng.shuffle(day2)
    # The first cases take each kind of damage twice: once the way a careful person lets
    # through (where there is one), once the way that must stop; later ones draw both.
    if index < len(KINDS) * 2:
        kind, lenient = KINDS[index % len(KINDS)], index < len(KINDS)
    else:
        kind, lenient = rng.choice(KINDS), rng.random() < 0.5
    target = "phone" if kind == "floats" and lenient else rng.choice(FIELDS)
    header = {"email": "email", "phone": "phone"}
    cells: list[str | None] = [None] * len(day2)
    case = Case(index, people, day2, target, kind, header, cells)
    if kind == "rename":
        style = 0 if lenient else rng.randrange(1, 4)
        if style == 0:
            header[target] = rng.choice(ALIAS_SPELLINGS[target])
        elif style == 1:
            header[target] = _typo(rng, target)
        elif style == 2:
            header[target] = rng.choice((f"customer_{target}", f"{target}2", f"old {target}"))
        else:
            header[target] = rng.choice(UNRELATED)
        case.note = f"to {header[target]!r}"
    elif kind == "empty":
        blank = rng.choice(("", " ", "  "))
        case.cells = [blank] * len(day2)
    elif kind == "floats":
        if lenient:
            # a float rendering of the whole number: the same phone
            style = "whole"
            case.cells = [f"{_phone_member_digits(p.phone, rng.random() < 0.3)}.0" for p in day2]
        elif target == "phone":
            style = "scientific"  # Excel's 4.15555E+09: digits rounded away
            case.cells = [f"{float(_phone_member_digits(p.phone, False)):.5E}" for p in day2]
        else:
            style = "numbers"
            case.cells = [f"{rng.uniform(0, 1e6):.{rng.randint(1, 3)}f}" for _ in day2]
        case.note = style
    else:
        # At most reject_threshold of the column, or more.
        most = int(len(day2) * REJECT_THRESHOLD)
        count = rng.randint(1, most) if lenient else rng.randint(most + 1, len(day2) // 2)
        case.junk_rows = sorted(rng.sample(range(1, len(day2) + 1), count))
        for row in case.junk_rows:
            case.cells[row - 1] = rng.choice(JUNK[target])
        case.note = f"{count} of {len(day2)} values"
    return case


def _phone_member_digits(raw: str, with_country: bool) -> str:
    digits = "".join(c for c in raw if c.isdigit())
    national = digits[1:] if len(digits) == 11 else digits
    return ("1" if with_country else "") + national


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def day1_file(case: Case) -> bytes:
    return _csv(["email", "phone", "first_name"], [[p.email, p.phone, "x"] for p in case.day1])


def day2_rows(case: Case) -> list[dict[str, str]]:
    rows = []
    for person, cell in zip(case.day2, case.cells, strict=True):
        values = {"email": person.email, "phone": person.phone}
        if cell is not None:
            values[case.target] = cell
        rows.append(values)
    return rows


def day2_file(case: Case) -> bytes:
    rows = day2_rows(case)
    return _csv(
        [case.header["email"], case.header["phone"], "first_name"],
        [[r["email"], r["phone"], "y"] for r in rows],
    )


def members_of(people: list[Person]) -> set[str]:
    return {_email_member(p.email) for p in people} | {_phone_member(p.phone) for p in people}


@dataclass
class Expectation:
    #: None: the run succeeds; else the error names it may stop with
    stops: frozenset[str] | None
    #: what TikTok holds when the run goes through (also with allow_mass_removal)
    members: set[str]
    #: (row, reason) of the values a kept row drops, in row order
    dropped: list[tuple[int, str]]


def _guard_blocks(before: set[str], after: set[str]) -> bool:
    """The README's removal guard: more than max_removal_share of the audience, or of one
    identifier type's members, would be removed (the audience being at least the minimum)."""
    if len(before) < MIN_AUDIENCE:
        return False
    gone = before - after
    if Fraction(len(gone), len(before)) > MAX_REMOVAL_SHARE:
        return True
    for prefix in ("EMAIL_SHA256:", "PHONE_SHA256:"):
        held = {m for m in before if m.startswith(prefix)}
        if held and Fraction(len({m for m in gone if m.startswith(prefix)}), len(held)) > (
            MAX_REMOVAL_SHARE
        ):
            return True
    return False


def expect(case: Case) -> Expectation:
    """What a careful person expects of day 2, TikTok holding day 1's members."""
    target, before = case.target, members_of(case.day1)
    read = {f for f in FIELDS if _is_alias(case.header[f], f)}
    kept: set[str] = set()
    dropped: list[tuple[int, str]] = []
    invalid = values = 0
    for number, row in enumerate(day2_rows(case), start=1):
        for field_name in sorted(read):
            text = row[field_name]
            if not text.strip():
                continue
            values += field_name == target
            if field_name == target and (
                number in case.junk_rows or case.note in ("scientific", "numbers")
            ):
                invalid += 1
                reason = "phone_lost_digits" if case.note == "scientific" else ""
                dropped.append((number, reason or f"invalid_{target}"))
                continue
            kept.add(_member(field_name, text))
    if target not in read:
        # A renamed identifier column: its members would all go. The run stops, as a
        # vanished identifier type or as a header a typo away from one.
        return Expectation(frozenset({"MassRemovalBlocked", "InputRejected"}), kept, [])
    if values and Fraction(invalid, values) > REJECT_THRESHOLD:
        return Expectation(frozenset({"InputRejected"}), kept, dropped)
    if _guard_blocks(before, kept):
        return Expectation(frozenset({"MassRemovalBlocked"}), kept, dropped)
    return Expectation(None, kept, dropped)


# ---------------------------------------------------------------- the runs
def audience(emulator: TikTokEmulator) -> set[str]:
    (found,) = emulator.audiences(ADVERTISER)
    return set(found["members"])


def rejects_of(local: LocalDestination, run_id: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for key in local.state_keys(f"runs/{run_id}/rejects/"):
        out.extend(csv.DictReader(io.StringIO(local.state_text(key) or "")))
    return out


def check_went_through(
    local: LocalDestination,
    emulator: TikTokEmulator,
    case: Case,
    result: RunResult,
    want: Expectation,
) -> None:
    where = case.describe()
    assert result.succeeded, f"{result.error}: {result.cause}; {where}"
    assert audience(emulator) == want.members, where
    report = result.report
    assert report is not None
    rejects = rejects_of(local, report["run_id"])
    # Every kept row's dropped value is in the rejects file by row, column and reason; the
    # report's counts add up to the file's lines.
    column = case.header[case.target].strip().lower()
    assert [(int(r["row"]), r["column"], r["reason_code"], r["kind"]) for r in rejects] == [
        (row, column, reason, "dropped_value") for row, reason in want.dropped
    ], where
    assert report["rows"]["rejected"] == 0, where
    assert report["dropped_values"]["total"] == len(want.dropped), where
    assert report["rows"]["rejected"] + report["dropped_values"]["total"] == len(rejects)


def check_stopped(
    emulator: TikTokEmulator, case: Case, result: RunResult, want: Expectation, day1: set[str]
) -> None:
    where = case.describe()
    assert want.stops is not None
    assert result.status == "FAILED", f"expected a stop ({sorted(want.stops)}); {where}"
    assert result.error in want.stops, f"{result.error}: {result.cause}; {where}"
    assert emulator.calls["segment/mapping/"] == 0, where
    assert audience(emulator) == day1, f"a stopped run changed TikTok; {where}"
    assert result.report is not None
    message = result.report["workflow_action"]["message"]
    # The reason names the identifier, and never a value of the file.
    named = (case.target, case.target.upper(), case.header[case.target].strip().lower())
    assert any(name in message for name in named), f"{message}; {where}"
    cause = json.loads(result.cause or "{}").get("errorMessage", "")
    for person in case.day2:
        for raw in (person.email.strip(), person.phone):
            assert raw not in message and raw not in cause, where


@pytest.mark.parametrize("index", range(TRIALS))
def test_a_damaged_identifier_column_stops_or_syncs_what_a_careful_person_expects(
    index: int, local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    case = generate(index)
    local.put_config(PROPERTY_CONFIG)
    (tmp_path / "day1.csv").write_bytes(day1_file(case))
    first = local.run_file(tmp_path / "day1.csv", "acme_audiences", "vip")
    assert first.succeeded, f"{first.error}: {first.cause}; {case.describe()}"
    day1 = audience(emulator)
    assert day1 == members_of(case.day1), case.describe()

    emulator.reset_counters()
    want = expect(case)
    (tmp_path / "day2.csv").write_bytes(day2_file(case))
    second = local.run_file(tmp_path / "day2.csv", "acme_audiences", "vip")
    if want.stops is None:
        check_went_through(local, emulator, case, second, want)
        return
    check_stopped(emulator, case, second, want, day1)
    if second.error == "MassRemovalBlocked":
        # The person who checked the file allows it: TikTok then mirrors it.
        assert second.report is not None
        allowed = local.rerun(second.report["run_id"], {"allow_mass_removal": True})
        check_went_through(
            local, emulator, case, allowed, Expectation(None, want.members, want.dropped)
        )
