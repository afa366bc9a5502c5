"""Column mapping through the whole state machine: a mapped file syncs, a misnamed
identifier column stops the run before anything reaches TikTok."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ADVERTISER, CONFIG, EVENT_SET, write_csv
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import LocalDestination

pytestmark = pytest.mark.e2e

MAPPED = (
    CONFIG
    + """
[data_templates.crm]
destination = "acme_audiences"
audience_name = "CRM customers"
user_id_types = ["EMAIL", "PHONE"]
columns = { email = "Customer E-mail", phone = "Contact Number" }
ignore_columns = ["secondary_email"]

[data_templates.store_sales]
destination = "acme_offline"
columns = { event = "Event Name", event_id = "Order No", event_set_id = "Pixel" }
"""
)

PEOPLE = [("ann@example.com", "+14155550100"), ("bob@example.com", "+14155550101")]


def sha(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def expected_members(people: list[tuple[str, str]]) -> set[str]:
    return {f"EMAIL_SHA256:{sha(e)}" for e, _ in people} | {
        f"PHONE_SHA256:{sha(p)}" for _, p in people
    }


def the_audience(emulator: TikTokEmulator) -> dict:
    found = emulator.audiences(ADVERTISER)
    assert len(found) == 1, f"expected exactly one audience, found {len(found)}"
    return found[0]


def test_mapped_columns_sync_the_audience_and_the_report_says_which_column_fed_what(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    local.put_config(MAPPED)
    path = write_csv(
        tmp_path / "crm.csv",
        "Customer E-mail,Contact Number,secondary_email,first_name",
        [f"{e.upper()},{p},other{i}@example.com,Name{i}" for i, (e, p) in enumerate(PEOPLE)],
    )
    result = local.run_file(path, "acme_audiences", "crm")
    assert result.succeeded, result.cause
    created = the_audience(emulator)
    assert created["name"] == "CRM customers"
    assert created["members"] == expected_members(PEOPLE)
    assert result.report is not None
    assert result.report["columns"] == {
        "used": {"email": "customer e-mail", "phone": "contact number"},
        "ignored": {
            "secondary_email": "listed in ignore_columns",
            "first_name": "not a field this data template reads",
        },
        "identifiers_without_column": [],
    }


def test_did_you_mean_stops_the_run_with_nothing_sent(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    first = local.run_file(
        write_csv(tmp_path / "day1.csv", "email,phone", [f"{e},{p}" for e, p in PEOPLE]),
        "acme_audiences",
        "vip",
    )
    assert first.succeeded, first.cause
    before = the_audience(emulator)["members"]

    # The export renamed the email column: before, this synced phones only and removed
    # every email member.
    emulator.reset_counters()
    renamed = write_csv(
        tmp_path / "day2.csv", "customer_email,phone", [f"{e},{p}" for e, p in PEOPLE]
    )
    result = local.run_file(renamed, "acme_audiences", "vip")
    assert result.status == "FAILED"
    assert result.error == "InputRejected"
    assert result.report is not None
    message = result.report["workflow_action"]["message"]
    assert (
        'Did you mean columns = { email = "customer_email" }? Add it to [data_templates.vip]'
        in (message)
    )
    assert "ann@example.com" not in (result.cause or "") and "ann@" not in message
    assert emulator.calls["segment/mapping/"] == 0
    assert the_audience(emulator)["members"] == before


def test_offline_events_mapping_including_the_event_set_column(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # No event_set_id in the template: preflight must find the mapped Pixel column.
    local.put_config(MAPPED)
    recent = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = write_csv(
        tmp_path / "sales.csv",
        "Event Name,Order No,Email Address,Pixel,timestamp",
        [f"Purchase,A1,ann@example.com,{EVENT_SET},{recent}"],
    )
    result = local.run_file(path, "acme_offline", "store_sales")
    assert result.succeeded, result.cause
    assert sorted(emulator.events_by_key) == [(EVENT_SET, "Purchase", "A1")]
    assert result.report is not None
    assert result.report["columns"]["used"]["email"] == "email address"


def test_phones_exported_as_floats_stop_the_run_and_tiktok_keeps_every_phone(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    people = [(f"p{i}@example.com", f"+1415555{100 + i:04d}") for i in range(10)]
    first = local.run_file(
        write_csv(tmp_path / "day1.csv", "email,phone", [f"{e},{p}" for e, p in people]),
        "acme_audiences",
        "vip",
    )
    assert first.succeeded, first.cause
    before = the_audience(emulator)["members"]
    assert before == expected_members(people)

    # Day 2: the same people, the phone column saved by Excel as numbers (4.15555E+09).
    # Every row still has its email, so no row is rejected: before, every phone was removed.
    emulator.reset_counters()
    floats = [f"{e},{float(p[2:]):.5E}" for e, p in people]
    assert floats[0].endswith(",4.15555E+09")
    result = local.run_file(
        write_csv(tmp_path / "day2.csv", "email,phone", floats), "acme_audiences", "vip"
    )
    assert result.status == "FAILED"
    assert result.error == "InputRejected"
    assert result.report is not None
    message = result.report["workflow_action"]["message"]
    assert "column 'phone' has too many invalid values: 10 of its 10" in message
    assert "phone_lost_digits" in message and "export the column as text" in message
    assert "4.15555E+09" not in message and "@example.com" not in message
    assert emulator.calls["segment/mapping/"] == 0
    assert the_audience(emulator)["members"] == before


def test_emails_no_mailbox_can_be_never_become_members(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    people = [(f"p{i}@example.com", f"+1415555{100 + i:04d}") for i in range(10)]
    junk = {0: "mailto:p0@example.com", 1: "<p1@example.com>", 2: 'p2@example.com"'}
    rows = []
    for i, (email, phone) in enumerate(people):
        shown = junk.get(i, email)
        rows.append(f'"{shown.replace(chr(34), chr(34) * 2)}",{phone}')
    result = local.run_file(
        write_csv(tmp_path / "junk.csv", "email,phone", rows), "acme_audiences", "vip"
    )
    assert result.succeeded, result.cause
    members = the_audience(emulator)["members"]
    # every phone, and the emails that are addresses; no hash of a junk spelling
    assert members == expected_members(people) - {f"EMAIL_SHA256:{sha(people[i][0])}" for i in junk}
    assert not {f"EMAIL_SHA256:{sha(text.lower())}" for text in junk.values()} & members
    assert result.report is not None
    assert result.report["members"]["dropped_invalid"] == {"invalid_email": 3}
    # Each dropped email is in the rejects file, by row and column, without its value; the
    # report's counts add up to the file's lines.
    text = local.state_text(f"runs/{result.report['run_id']}/rejects/validate.csv") or ""
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [(r["row"], r["column"], r["reason_code"], r["kind"]) for r in lines] == [
        (str(i + 1), "email", "invalid_email", "dropped_value") for i in sorted(junk)
    ]
    assert not any(f"p{i}@" in text for i in junk)
    assert result.report["dropped_values"]["total"] == 3
    assert result.report["dropped_values"]["by_reason"] == {"invalid_email": 3}
    assert result.report["rows"]["rejected"] + result.report["dropped_values"]["total"] == len(
        lines
    )


# ------------------------------------------------------------------ near misses (issue 15)
CROWD = [(f"person{i}@example.com", f"+1415555{1000 + i:04d}") for i in range(40)]


def test_day2_header_typo_stops_before_any_tiktok_call_and_tiktok_keeps_everyone(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = [f"{e},{p}" for e, p in CROWD]
    first = local.run_file(
        write_csv(tmp_path / "day1.csv", "email,phone", rows), "acme_audiences", "vip"
    )
    assert first.succeeded, first.cause
    assert the_audience(emulator)["members"] == expected_members(CROWD)

    # Day 2: the same rows, the header misspelt. Before, every email member was removed
    # (or, with the per-type guard, the run stopped only because a last sync had emails).
    emulator.reset_counters()
    result = local.run_file(
        write_csv(tmp_path / "day2.csv", "emial,phone", rows), "acme_audiences", "vip"
    )
    assert result.status == "FAILED"
    assert result.error == "InputRejected", result.cause
    assert result.report is not None
    message = result.report["workflow_action"]["message"]
    for part in (
        "Column 'emial' is a near miss of email (a typo?) but is not used",
        'Did you mean columns = { email = "emial" }? Add it to [data_templates.vip]',
        "rename the column to email",
        'add ignore_columns = ["emial"] there',
    ):
        assert part in message, message
    assert "@example.com" not in message
    assert dict(emulator.calls) == {}, "stopped before any call to TikTok"
    assert the_audience(emulator)["members"] == expected_members(CROWD)


def test_a_first_run_with_a_translated_header_stops_and_creates_no_audience(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = [f"{e},{p}" for e, p in CROWD]
    result = local.run_file(
        write_csv(tmp_path / "clientes.csv", "correo,teléfono", rows), "acme_audiences", "vip"
    )
    assert result.status == "FAILED"
    assert result.error == "InputRejected", result.cause
    assert result.report is not None
    message = result.report["workflow_action"]["message"]
    assert "Column 'correo' is Spanish for email but is not used" in message, message
    assert 'Did you mean columns = { email = "correo" }?' in message
    assert emulator.audiences(ADVERTISER) == []
    assert dict(emulator.calls) == {}

    # Declared deliberately unused (and the phone column mapped), the file syncs the phones.
    local.put_config(
        CONFIG
        + '\n[data_templates.vip_phones]\ndestination = "acme_audiences"\n'
        + 'audience_name = "VIP phones"\nignore_columns = ["Correo"]\n'
        + 'columns = { phone = "Teléfono" }\n'
    )
    synced = local.run_file(tmp_path / "clientes.csv", "acme_audiences", "vip_phones")
    assert synced.succeeded, synced.cause
    assert the_audience(emulator)["members"] == {f"PHONE_SHA256:{sha(p)}" for _, p in CROWD}


def test_an_events_header_typo_stops_before_any_event_is_sent(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    recent = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = write_csv(
        tmp_path / "sales.csv",
        "event,event_id,email,timestamp,vlaue,currency",
        [f"Purchase,A{i},{e},{recent},19.99,EUR" for i, (e, _) in enumerate(CROWD)],
    )
    result = local.run_file(path, "acme_offline", "purchases")
    assert result.status == "FAILED"
    assert result.error == "InputRejected", result.cause
    assert result.report is not None
    message = result.report["workflow_action"]["message"]
    assert "Column 'vlaue' is a near miss of value (a typo?)" in message, message
    assert 'Did you mean columns = { value = "vlaue" }? Add it to [data_templates.purchases]' in (
        message
    )
    assert emulator.calls["event/track/"] == 0
    assert emulator.events_by_key == {}
