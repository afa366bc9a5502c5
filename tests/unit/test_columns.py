"""Column mapping: which header column feeds which field, and no identifier column is
ever left out without the data template saying so."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tiktok_destination.config.loader import load_config
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.errors import ConfigurationError, InputRejected
from tiktok_destination.validation.audience_rows import validate_audience_file
from tiktok_destination.validation.event_rows import validate_events_file
from tiktok_destination.validation.result import ValidationResult

SOURCE = "s3://inbox/acme/vip/members.csv"
NOW = datetime(2024, 5, 20, 12, 0, 0, tzinfo=UTC)
SET_ID = "7654321098765432109"

CONFIG = """
[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "7000000000000000001"
kind = "custom_audience"

[destinations.evt]
credential = "acme"
advertiser_id = "7000000000000000001"
kind = "offline_events"

[data_templates.vip]
destination = "aud"
audience_name = "VIP customers"
"""


def sha(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def config_error(text: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_config(text)
    return info.value.message


def run_audience(
    tmp_path: Path, text: str, **kwargs: Any
) -> tuple[ValidationResult, list[str], list[dict[str, str]]]:
    src = tmp_path / "in.csv"
    src.write_text(text, encoding="utf-8")
    members = tmp_path / "members.tsv"
    rejects = tmp_path / "rejects.csv"
    options: dict[str, Any] = {"user_id_types": ("EMAIL", "PHONE"), "data_template": "vip"}
    options.update(kwargs)
    result = validate_audience_file(
        src,
        source=SOURCE,
        file_format="csv",
        default_region="US",
        reject_threshold=0.5,
        out_members=members,
        out_rejects=rejects,
        **options,
    )
    with open(rejects, newline="") as handle:
        rejected = list(csv.DictReader(handle))
    return result, sorted(members.read_text().splitlines()), rejected


def rejected_audience(tmp_path: Path, text: str, **kwargs: Any) -> str:
    with pytest.raises(InputRejected) as info:
        run_audience(tmp_path, text, **kwargs)
    assert not (tmp_path / "members.tsv").exists(), "stopped before any row was read"
    return info.value.message


# ---------------------------------------------------------------- configuration
def test_config_mapping_and_ignore_list_flow_into_the_resolved_template() -> None:
    text = CONFIG + (
        'columns = { email = "Email Address", phone = " Mobile Nr " }\n'
        'ignore_columns = ["secondary_email"]\n'
    )
    resolved = load_config(text).resolve("aud", "vip")
    assert resolved.columns == {"email": "Email Address", "phone": "Mobile Nr"}
    assert resolved.ignore_columns == ("secondary_email",)
    payload = json.loads(json.dumps(resolved.as_dict()))
    assert payload["columns"] == {"email": "Email Address", "phone": "Mobile Nr"}
    assert payload["ignore_columns"] == ["secondary_email"]
    assert ResolvedTemplate.from_dict(payload) == resolved


def test_resolved_template_recorded_before_columns_existed_still_loads() -> None:
    payload = load_config(CONFIG).resolve("aud", "vip").as_dict()
    del payload["columns"], payload["ignore_columns"]
    again = ResolvedTemplate.from_dict(payload)
    assert (again.columns, again.ignore_columns) == ({}, ())


def test_config_unknown_target_field_names_table_and_field() -> None:
    message = config_error(CONFIG + 'columns = { emial = "Email Address" }\n')
    assert message.startswith("config.toml: [data_templates.vip] columns: ")
    assert '"emial" is not a field; did you mean email?' in message
    assert "email, phone, idfa, aaid, event_set_id, event, event_id" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('columns = "Kunden Mail"', "columns: must be a table from field name to header"),
        ("columns = { email = 5 }", "columns: email must be the file's header name"),
        ('columns = { email = "  " }', "columns: email must be the file's header name"),
        ('ignore_columns = "phone2"', "ignore_columns: must be a list of header names"),
        ("ignore_columns = [2]", "ignore_columns: entry 1 must be a non-empty quoted string"),
    ],
)
def test_config_wrong_types(line: str, expected: str) -> None:
    message = config_error(CONFIG + line + "\n")
    assert message.startswith("config.toml: [data_templates.vip] ")
    assert expected in message
    assert "Kunden" not in message and "phone2" not in message  # values not echoed


def test_config_example_in_messages_keeps_its_braces() -> None:
    message = config_error(CONFIG + 'columns = "x"\n')
    assert 'e.g. columns = { email = "Email Address" }' in message


def test_config_field_the_template_never_reads() -> None:
    message = config_error(CONFIG + 'user_id_types = ["EMAIL"]\ncolumns = { phone = "Mobile" }\n')
    assert "[data_templates.vip] columns.phone: this data template never reads phone" in message
    assert "add it to user_id_types" in message
    message = config_error(CONFIG + 'columns = { event_id = "Order" }\n')
    assert "[data_templates.vip] columns.event_id: this data template never reads" in message


def test_config_one_column_for_two_fields_and_mapped_and_ignored() -> None:
    message = config_error(CONFIG + 'columns = { email = "Contact", phone = "contact" }\n')
    assert "columns: email and phone name the same column" in message
    message = config_error(
        CONFIG + 'columns = { email = "Contact" }\nignore_columns = ["CONTACT"]\n'
    )
    assert 'ignore_columns: "CONTACT" is also mapped to email in columns' in message


def test_config_offline_events_may_map_event_fields() -> None:
    text = CONFIG + (
        '[data_templates.sales]\ndestination = "evt"\n'
        'columns = { event = "Event Name", event_id = "Order No", event_set_id = "Pixel" }\n'
    )
    resolved = load_config(text).resolve("evt", "sales")
    assert resolved.columns["event_id"] == "Order No"
    assert "idfa" in config_error(text.replace('event = "Event Name"', 'idfa = "IDFA"'))


# ---------------------------------------------------------------- audience files
def test_alias_email_address_is_used_and_both_identifiers_hashed(tmp_path: Path) -> None:
    # The issue: this header used to send phones only.
    result, members, _ = run_audience(
        tmp_path, "Email Address,phone\n Jane@Example.COM ,(213) 373-4253\n"
    )
    assert members == sorted(
        [
            f"EMAIL_SHA256\t{sha('jane@example.com')}",
            f"PHONE_SHA256\t{sha('+12133734253')}",
        ]
    )
    assert result.columns_used == {"email": "email address", "phone": "phone"}
    assert result.columns_ignored == {}


@pytest.mark.parametrize("header", ["E-Mail", "email_address", "MAIL", "e_mail"])
def test_other_email_aliases(tmp_path: Path, header: str) -> None:
    _, members, _ = run_audience(tmp_path, f"{header},mobile\njane@example.com,\n")
    assert members == [f"EMAIL_SHA256\t{sha('jane@example.com')}"]


def test_unused_email_like_column_stops_with_the_exact_config_line(tmp_path: Path) -> None:
    message = rejected_audience(tmp_path, "customer_email,phone\njane@example.com,2133734253\n")
    assert message.startswith(f"{SOURCE}: Column 'customer_email' looks like an email column")
    assert (
        'Did you mean columns = { email = "customer_email" }? Add it to [data_templates.vip]'
        in message
    )
    assert 'ignore_columns = ["customer_email"]' in message
    assert "jane" not in message and "2133734253" not in message


def test_second_phone_column_stops_unless_ignored(tmp_path: Path) -> None:
    text = "email,phone,phone2\njane@example.com,2133734253,2133734254\n"
    message = rejected_audience(tmp_path, text)
    assert "Column 'phone2' looks like a phone column but is not used" in message
    assert "(phone is read from column 'phone')" in message
    assert 'add ignore_columns = ["phone2"] to [data_templates.vip]' in message

    result, members, _ = run_audience(tmp_path, text, ignore_columns=["Phone2"])
    assert f"PHONE_SHA256\t{sha('+12133734254')}" not in members
    assert len(members) == 2
    assert result.columns_ignored == {"phone2": "listed in ignore_columns"}


def test_explicit_mapping_wins_and_rejects_name_the_files_column(tmp_path: Path) -> None:
    text = "Customer_Email,phone\njane@example.com,2133734253\nnot-an-email,\n"
    result, members, rejects = run_audience(tmp_path, text, columns={"email": "customer_email "})
    assert f"EMAIL_SHA256\t{sha('jane@example.com')}" in members
    assert result.columns_used == {"email": "customer_email", "phone": "phone"}
    assert [(r["row"], r["column"], r["reason_code"]) for r in rejects] == [
        ("2", "customer_email", "invalid_email")
    ]


def test_mapped_column_missing_from_the_header_stops(tmp_path: Path) -> None:
    message = rejected_audience(
        tmp_path, "email,phone\njane@example.com,\n", columns={"email": "E-mail Addr"}
    )
    assert '[data_templates.vip] maps email to column "E-mail Addr", which the file' in message
    assert "header has: email, phone" in message


def test_two_columns_claiming_one_field_ask_for_a_mapping(tmp_path: Path) -> None:
    text = "email,Email Address\njane@example.com,john@example.com\n"
    message = rejected_audience(tmp_path, text)
    assert "columns 'email' and 'email address' could both be the email column" in message
    assert 'columns = { email = "email address" } and ignore_columns = ["email"]' in message
    assert "jane" not in message and "john" not in message

    _, members, _ = run_audience(
        tmp_path, text, columns={"email": "Email Address"}, ignore_columns=["email"]
    )
    assert members == [f"EMAIL_SHA256\t{sha('john@example.com')}"]


def test_identifier_column_the_template_does_not_ask_for_is_reported(tmp_path: Path) -> None:
    result, members, _ = run_audience(
        tmp_path,
        "email,phone,first_name,email_opt_in\njane@example.com,2133734253,Jane,yes\n",
        user_id_types=("EMAIL",),
    )
    assert members == [f"EMAIL_SHA256\t{sha('jane@example.com')}"]
    assert result.columns_ignored == {
        "phone": "looks like phone, which this data template does not ask for",
        "first_name": "not a field this data template reads",
        "email_opt_in": "not a field this data template reads",
    }


def test_asked_identifier_without_any_column_is_reported(tmp_path: Path) -> None:
    result, _, _ = run_audience(tmp_path, "phone\n2133734253\n")
    assert result.columns_missing == ["email"]


def test_headerless_file_names_are_not_echoed(tmp_path: Path) -> None:
    message = rejected_audience(tmp_path, "jane@example.com,2133734253\nx@example.com,\n")
    assert "jane" not in message and "2133734253" not in message


# ---------------------------------------------------------------- offline events
def test_events_mapping_feeds_the_event_rules(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        "Event Name,Order No,Customer E-mail,Pixel,Order Time,notes\n"
        f"Purchase,A1,Jane@Example.com,{SET_ID},2024-05-20T10:00:00Z,gift\n"
        f"Purchase,A2,not-an-email,{SET_ID},2024-05-20T10:00:00Z,\n",
        encoding="utf-8",
    )
    out = tmp_path / "events.jsonl"
    rejects = tmp_path / "rejects.csv"
    result = validate_events_file(
        src,
        source=SOURCE,
        file_format="csv",
        default_region="US",
        reject_threshold=0.5,
        fallback_event_set_id=None,
        now=NOW,
        out_events=out,
        out_rejects=rejects,
        data_template="sales",
        columns={
            "event": "event name",
            "event_id": "Order No",
            "event_set_id": "Pixel",
            "timestamp": "Order Time",
            "email": "Customer E-mail",
        },
    )
    event = json.loads(out.read_text().splitlines()[0])
    assert (event["event"], event["event_id"], event["event_set_id"]) == ("Purchase", "A1", SET_ID)
    assert event["user"] == {"email": sha("jane@example.com")}
    assert event["event_time"] == int(datetime(2024, 5, 20, 10, tzinfo=UTC).timestamp())
    assert result.columns_used == {
        "event": "event name",
        "event_id": "order no",
        "event_set_id": "pixel",
        "timestamp": "order time",
        "email": "customer e-mail",
    }
    assert result.columns_ignored == {"notes": "not a field this data template reads"}
    with open(rejects, newline="") as handle:
        assert [r["column"] for r in csv.DictReader(handle)] == ["customer e-mail"]


def test_events_unused_phone_like_column_stops(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(f"event,event_id,email,event_set_id,mobile_nr\nLead,1,a@b.co,{SET_ID},1\n")
    with pytest.raises(InputRejected) as info:
        validate_events_file(
            src,
            source=SOURCE,
            file_format="csv",
            default_region="US",
            reject_threshold=0.5,
            fallback_event_set_id=None,
            now=NOW,
            out_events=tmp_path / "events.jsonl",
            out_rejects=tmp_path / "rejects.csv",
            data_template="sales",
        )
    assert 'columns = { phone = "mobile_nr" }' in info.value.message
    assert "[data_templates.sales]" in info.value.message
