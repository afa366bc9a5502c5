"""Offline events: per-row rules, grouping rows of one order into one event, track body."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Context, localcontext
from typing import Any

import pytest

from tiktok_destination.adapters.tiktok.bodies import track_body
from tiktok_destination.errors import RowRejected
from tiktok_destination.events.build import build_event, event_group_key
from tiktok_destination.events.rules import (
    EVENT_CHANNELS,
    ISO_4217,
    MAX_EVENT_AGE,
    MAX_FUTURE_SKEW,
    STANDARD_EVENTS,
    normalize_event_row,
)

NOW = datetime(2024, 5, 20, 12, 0, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())
SET_ID = "7654321098765432109"
OTHER_SET_ID = "7654321098765432100"
EMAIL = "Jane.Doe@Example.com"
EMAIL_HASH = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PHONE = "(213) 373-4253"
PHONE_HASH = hashlib.sha256(b"+12133734253").hexdigest()


def normalize_columns(
    columns: Mapping[str, str | None], *, row_number: int = 2, fallback: str | None = SET_ID
) -> dict[str, Any]:
    """A valid Purchase row by default; ``columns`` add to or override it."""
    row: dict[str, str | None] = {"event": "Purchase", "event_id": "order-1", "email": EMAIL}
    row.update(columns)
    return normalize_event_row(
        row, row_number=row_number, default_region="US", fallback_event_set_id=fallback, now=NOW
    )


def normalize(row_number: int = 2, **columns: str | None) -> dict[str, Any]:
    return normalize_columns(columns, row_number=row_number)


def rejected(**columns: str | None) -> RowRejected:
    with pytest.raises(RowRejected) as info:
        normalize_columns(columns)
    return info.value


# ---------------------------------------------------------------- constants
def test_standard_events_cover_the_seed_and_the_events_api_names() -> None:
    seed = {
        "AddPaymentInfo",
        "AddToCart",
        "CompletePayment",
        "CompleteRegistration",
        "Contact",
        "Download",
        "PlaceAnOrder",
        "Subscribe",
    }
    api = {"AddToWishlist", "InitiateCheckout", "Lead", "Purchase", "Search", "ViewContent"}
    assert seed | api <= STANDARD_EVENTS


def test_iso_4217_holds_current_codes_and_not_withdrawn_ones() -> None:
    assert {"USD", "EUR", "GBP", "JPY", "CNY", "BRL", "INR", "SLE", "VES", "ZWG"} <= ISO_4217
    assert len(ISO_4217) > 170
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217)
    assert not {"DEM", "FRF", "HRK", "VEF", "US"} & ISO_4217


def test_event_channels_and_windows() -> None:
    assert EVENT_CHANNELS == ("email", "website", "phone_call", "in_store", "crm", "other")
    assert timedelta(days=28) == MAX_EVENT_AGE
    assert timedelta(minutes=5) == MAX_FUTURE_SKEW


# ---------------------------------------------------------------- a full row
def test_full_row_is_normalized_hashed_and_json_ready() -> None:
    result = normalize(
        row_number=7,
        event_set_id=SET_ID,
        event="purchase",
        event_id="A1b2C3",
        email=EMAIL,
        phone=PHONE,
        timestamp="2024-05-19T10:30:00Z",
        event_channel="In_Store",
        currency="usd",
        price="19.99",
        quantity="2",
        value="39.98",
        content_type="Product",
        content_id="SKU-1",
        content_category="Shoes",
        content_name="Runner",
        brand="Acme",
        order_id="ORD-9",
        shop_id="store-12",
        description="in-store pickup",
    )
    assert result == {
        "row": 7,
        "event_set_id": SET_ID,
        "event": "Purchase",
        "event_id": "A1b2C3",
        "event_time": int(datetime(2024, 5, 19, 10, 30, tzinfo=UTC).timestamp()),
        "user": {"email": EMAIL_HASH, "phone": PHONE_HASH},
        "item": {
            "price": 19.99,
            "quantity": 2,
            "content_id": "SKU-1",
            "content_category": "Shoes",
            "content_name": "Runner",
            "brand": "Acme",
        },
        "content_type": "product",
        "currency": "USD",
        "value": 39.98,
        "order_id": "ORD-9",
        "shop_id": "store-12",
        "event_channel": "in_store",
        "description": "in-store pickup",
    }
    text = json.dumps(result)
    assert "example.com" not in text.lower()
    assert "373" not in text.replace(PHONE_HASH, "")


def test_minimal_row_has_only_keys_with_values() -> None:
    result = normalize(phone="", price=None, content_id="  ")
    assert set(result) == {"row", "event_set_id", "event", "event_id", "event_time", "user"}
    assert result["user"] == {"email": EMAIL_HASH}
    assert result["event_time"] == NOW_TS


# ---------------------------------------------------------------- event_set_id
def test_event_set_id_column_wins_over_the_fallback() -> None:
    assert normalize(event_set_id=OTHER_SET_ID)["event_set_id"] == OTHER_SET_ID
    assert normalize(event_set_id=None)["event_set_id"] == SET_ID


def test_missing_event_set_id() -> None:
    with pytest.raises(RowRejected) as info:
        normalize_columns({}, fallback=None)
    assert info.value.reason_code == "missing_event_set_id"
    assert info.value.column == "event_set_id"


@pytest.mark.parametrize("value", ["12345", "7.654321098765432E+18", "765432109876543210x"])
def test_event_set_id_must_be_19_digits(value: str) -> None:
    error = rejected(event_set_id=value)
    assert error.reason_code == "invalid_event_set_id"
    assert "19 digits" in error.message


def test_event_set_id_in_scientific_notation_gets_a_spreadsheet_hint() -> None:
    assert "spreadsheet" in rejected(event_set_id="7.654321098765432E+18").message


# ---------------------------------------------------------------- event
def test_event_name_case_is_corrected_to_the_canonical_name() -> None:
    assert normalize(event="COMPLETEPAYMENT")["event"] == "CompletePayment"
    assert normalize(event="addtocart")["event"] == "AddToCart"


def test_near_miss_event_name_suggests_the_standard_one() -> None:
    error = rejected(event="Purchse")
    assert error.reason_code == "invalid_event"
    assert error.column == "event"
    assert "did you mean Purchase?" in error.message
    assert "'Purchse'" in error.message


def test_unknown_event_name_lists_the_standard_names() -> None:
    error = rejected(event="Zzzzqqq")
    assert error.reason_code == "invalid_event"
    assert "did you mean" not in error.message
    assert "CompletePayment" in error.message


def test_event_message_never_quotes_an_email_put_in_the_event_column() -> None:
    error = rejected(event="someone@example.com")
    assert error.reason_code == "invalid_event"
    assert "someone" not in error.message


def test_missing_event() -> None:
    assert rejected(event=None).reason_code == "missing_event"


def test_missing_event_id() -> None:
    error = rejected(event_id="")
    assert (error.column, error.reason_code) == ("event_id", "missing_event_id")


# ---------------------------------------------------------------- identifiers
def test_no_identifier_is_rejected() -> None:
    error = rejected(email=None, phone=None)
    assert error.reason_code == "missing_identifier"


def test_phone_alone_is_enough() -> None:
    assert normalize(email=None, phone="+1 213 373 4253")["user"] == {"phone": PHONE_HASH}


def test_invalid_email_is_dropped_when_the_phone_is_valid() -> None:
    assert normalize(email="not-an-email", phone=PHONE)["user"] == {"phone": PHONE_HASH}


def test_invalid_phone_is_dropped_when_the_email_is_valid() -> None:
    assert normalize(phone="12")["user"] == {"email": EMAIL_HASH}


def test_email_with_an_invisible_character_is_never_hashed() -> None:
    error = rejected(email="jane.doe\u200b@example.com", phone=None)
    assert (error.column, error.reason_code) == ("email", "invisible_character")
    assert "jane" not in error.message
    assert normalize(email="jane.doe@example.com\x00", phone=PHONE)["user"] == {"phone": PHONE_HASH}


def test_only_invalid_identifiers_reject_with_the_identifier_reason() -> None:
    error = rejected(email="not-an-email", phone=None)
    assert error.column == "email"
    assert error.reason_code not in {"missing_identifier", ""}
    assert "not-an-email" not in error.message


def test_existing_hash_passes_through() -> None:
    digest = "a" * 64
    assert normalize(email=digest)["user"] == {"email": digest}


# ---------------------------------------------------------------- timestamp
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-19T10:30:00Z", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
        ("2024-05-19T12:30:00+02:00", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
        ("2024-05-19T10:30:00.750Z", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
        ("2024-05-19 10:30:00", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
        ("2024-05-19", datetime(2024, 5, 19, tzinfo=UTC)),
        ("1716114600", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
        ("1716114600123", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
        ("1716114600.9", datetime(2024, 5, 19, 10, 30, tzinfo=UTC)),
    ],
)
def test_timestamp_formats(value: str, expected: datetime) -> None:
    assert normalize(timestamp=value)["event_time"] == int(expected.timestamp())


def test_missing_timestamp_means_now() -> None:
    assert normalize(timestamp=None)["event_time"] == NOW_TS


def test_stale_event_is_rejected_with_the_28_day_reason() -> None:
    error = rejected(timestamp=(NOW - timedelta(days=28, minutes=1)).isoformat())
    assert error.reason_code == "stale_event"
    assert "TikTok only attributes events from the last 28 days" in error.message
    assert normalize(timestamp=(NOW - timedelta(days=27, hours=23)).isoformat())


def test_unix_seconds_from_1970_is_stale_not_misread() -> None:
    error = rejected(timestamp="20240519")
    assert error.reason_code == "stale_event"
    assert "1970-" in error.message


def test_future_event_beyond_the_skew_is_rejected() -> None:
    ahead = NOW + timedelta(minutes=6)
    error = rejected(timestamp=str(int(ahead.timestamp()) * 1000))
    assert error.reason_code == "future_event"
    within = NOW + timedelta(minutes=4)
    assert normalize(timestamp=str(int(within.timestamp())))["event_time"] == int(
        within.timestamp()
    )


@pytest.mark.parametrize("value", ["yesterday", "05/19/2024", "2024-13-01", "-1716114600"])
def test_unparseable_timestamp(value: str) -> None:
    error = rejected(timestamp=value)
    assert (error.column, error.reason_code) == ("timestamp", "invalid_timestamp")
    assert "ISO 8601" in error.message


# ---------------------------------------------------------------- channel, currency, numbers
def test_event_channel() -> None:
    assert normalize(event_channel="CRM")["event_channel"] == "crm"
    error = rejected(event_channel="store")
    assert error.reason_code == "invalid_event_channel"
    assert "in_store" in error.message


def test_currency_is_upper_cased_and_checked() -> None:
    assert normalize(currency="eur")["currency"] == "EUR"
    error = rejected(currency="EURO")
    assert error.reason_code == "invalid_currency"
    assert "'EURO'" in error.message


def test_an_iso_currency_tiktok_does_not_support_is_rejected_with_its_own_reason() -> None:
    # XAU (gold) and AFN are ISO 4217 codes missing from TikTok's supported list.
    for code in ("xau", "AFN"):
        error = rejected(currency=code, value="10")
        assert (error.column, error.reason_code) == ("currency", "unsupported_currency")
        assert f"'{code}'" in error.message
        assert "USD" in error.message
    assert normalize(currency="vnd")["currency"] == "VND"  # on TikTok's list


def test_value_needs_a_currency() -> None:
    error = rejected(value="10.00")
    assert (error.column, error.reason_code) == ("currency", "missing_currency")
    assert normalize(value="10", currency="USD")["value"] == 10.0


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "$10",
        "1,000.00",
        "abc",
        "NaN",
        "-NaN",
        "sNaN",
        "inf",
        "-Infinity",
        # Decimal reads these as finite; as floats they are infinite or absurd.
        "1e400",
        "1E+400",
        "1" + "0" * 400,
        "1e12",
        "1000000000000.00",
        "-1e400",
    ],
)
def test_invalid_price_and_value(value: str) -> None:
    price = rejected(price=value)
    assert (price.column, price.reason_code) == ("price", "invalid_price")
    amount = rejected(value=value, currency="USD")
    assert (amount.column, amount.reason_code) == ("value", "invalid_value")
    assert value not in price.message and value not in amount.message


def test_amounts_up_to_just_below_one_trillion_are_accepted() -> None:
    result = normalize(price="999999999999.99", value="999999999999.99", currency="IDR")
    assert result["item"]["price"] == 999999999999.99
    assert result["value"] == 999999999999.99
    assert normalize(price="1e-400")["item"] == {"price": 0.0}
    # "-0" is zero, not a negative amount, and is not sent as -0.0.
    assert json.dumps(normalize(price="-0")["item"]) == '{"price": 0.0}'


def test_amount_range_message_names_the_limit() -> None:
    assert "below 1,000,000,000,000" in rejected(price="1e400").message


def test_zero_price_is_allowed() -> None:
    assert normalize(price="0")["item"] == {"price": 0.0}


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("2.0", 2), ("12", 12), ("1e3", 1000), ("1000000", 1000000)]
)
def test_quantity_whole_numbers(value: str, expected: int) -> None:
    quantity = normalize(quantity=value)["item"]["quantity"]
    assert quantity == expected
    assert isinstance(quantity, int)


@pytest.mark.parametrize(
    "value",
    [
        "2.5",
        "0",
        "-1",
        "two",
        "1e400x",
        "1e30",
        "1e400",
        "1000001",
        "NaN",
        "sNaN",
        "inf",
        "1.5e-999999999",
    ],
)
def test_invalid_quantity(value: str) -> None:
    error = rejected(quantity=value)
    assert (error.column, error.reason_code) == ("quantity", "invalid_quantity")
    assert "1 to 1,000,000" in error.message


def test_a_quantity_with_a_huge_exponent_is_rejected_at_once() -> None:
    # int(Decimal("1e999999999")) would build a billion-digit number: minutes of CPU for
    # one row (on the original main this test hangs rather than fails).
    assert rejected(quantity="1e999999999").reason_code == "invalid_quantity"


def test_a_row_with_a_bad_number_does_not_affect_the_next_row() -> None:
    # The rows of one file go through one after the other: a rejected 1e400 leaves no state.
    with pytest.raises(RowRejected):
        normalize(row_number=2, value="1e400", currency="USD")
    with pytest.raises(RowRejected):
        normalize(row_number=3, price="1e400")
    with pytest.raises(RowRejected):
        normalize(row_number=4, quantity="1e30", price="1")
    good = normalize(row_number=5, value="12.5", currency="USD", price="12.5", quantity="1")
    assert good["value"] == 12.5
    json.dumps(good, allow_nan=False)


def test_content_type() -> None:
    assert normalize(content_type="product_group")["content_type"] == "product_group"
    assert rejected(content_type="service").reason_code == "invalid_content_type"


# ---------------------------------------------------------------- grouping
def item_row(row_number: int, **columns: str | None) -> dict[str, Any]:
    base: dict[str, str | None] = {"event_id": "order-1", "currency": "USD", "quantity": "1"}
    base.update(columns)
    return normalize_columns(base, row_number=row_number)


def order_rows(**values: str) -> list[dict[str, Any]]:
    """A three-item order, one row per item, as a query over order lines produces it."""
    return [
        item_row(2, content_id="A", price="10.00", quantity="2", value=values.get("a")),
        item_row(3, content_id="B", price="5.50", quantity="1", value=values.get("b")),
        item_row(4, content_id="C", price="0.333", quantity="3", value=values.get("c")),
    ]


def test_group_key_sorts_rows_of_one_event_together() -> None:
    rows = [
        normalize(row_number=1, event_id="b"),
        normalize(row_number=2, event_id="a"),
        normalize(row_number=3, event_id="b", event="Lead"),
        normalize(row_number=4, event_id="a"),
    ]
    ordered = sorted(rows, key=event_group_key)
    assert [r["row"] for r in ordered] == [3, 2, 4, 1]
    assert event_group_key(rows[1]) == f"{SET_ID}\x1fPurchase\x1fa"


def test_three_item_order_with_agreeing_value_is_one_event() -> None:
    built = build_event(order_rows(a="31.50", b="31.50", c="31.50"))
    assert built.value_method == "row_value"
    assert built.rows == [2, 3, 4]
    assert built.duplicates == []
    assert built.conflicts == []
    assert built.event_set_id == SET_ID
    assert built.payload == {
        "event": "Purchase",
        "event_time": NOW_TS,
        "event_id": "order-1",
        "user": {"email": EMAIL_HASH},
        "properties": {
            "contents": [
                {"price": 10.0, "quantity": 2, "content_id": "A"},
                {"price": 5.5, "quantity": 1, "content_id": "B"},
                {"price": 0.333, "quantity": 3, "content_id": "C"},
            ],
            "currency": "USD",
            "value": 31.5,
        },
    }
    json.dumps(built.payload)


def test_value_present_on_one_row_only_is_used() -> None:
    built = build_event(order_rows(a="40"))
    assert (built.value_method, built.payload["properties"]["value"]) == ("row_value", 40.0)


def test_disagreeing_values_fall_back_to_sum_of_price_times_quantity() -> None:
    built = build_event(order_rows(a="20.00", b="5.50", c="1.00"))
    assert built.value_method == "sum_price_quantity"
    # 10.00*2 + 5.50*1 + 0.333*3 = 26.499 -> 26.50
    assert built.payload["properties"]["value"] == 26.5
    assert built.conflicts == [
        "rows 2,3,4 disagree on value; sent the sum of price x quantity instead"
    ]


def test_no_value_but_prices_sums_price_times_quantity_with_default_quantity_one() -> None:
    rows = [
        item_row(2, content_id="A", price="2.25", quantity=None),
        item_row(3, content_id="B", price="1.10", quantity="4"),
    ]
    built = build_event(rows)
    assert built.value_method == "sum_price_quantity"
    assert built.payload["properties"]["value"] == 6.65
    assert built.payload["properties"]["contents"][0] == {"price": 2.25, "content_id": "A"}


def test_a_sum_of_price_times_quantity_not_below_one_trillion_sends_no_value() -> None:
    rows = [
        item_row(2, content_id="A", price="999999999999.99", quantity="1000000"),
        item_row(3, content_id="B", price="999999999999.99", quantity="1000000"),
    ]
    built = build_event(rows)
    assert "value" not in built.payload["properties"]
    assert built.value_method == "none"
    assert any("not below 1,000,000,000,000; sent no value" in c for c in built.conflicts)
    json.dumps(built.payload, allow_nan=False)


def test_the_sum_does_not_depend_on_the_callers_decimal_context() -> None:
    rows = [item_row(2, content_id="A", price="123456.78", quantity="3")]
    with localcontext(Context(prec=5)):
        built = build_event(rows)
    assert built.payload["properties"]["value"] == 370370.34


def test_prices_without_currency_send_no_value() -> None:
    rows = [item_row(2, content_id="A", price="3", currency=None)]
    built = build_event(rows)
    assert built.value_method == "none"
    assert "value" not in built.payload["properties"]
    assert "no currency" in built.conflicts[0]


def test_no_value_and_no_price_means_no_value() -> None:
    built = build_event([normalize(row_number=5)])
    assert built.value_method == "none"
    assert "properties" not in built.payload
    assert built.rows == [5]


def test_exact_duplicate_row_is_not_added_twice() -> None:
    rows = order_rows()
    duplicate = dict(rows[1], row=9)
    built = build_event([*rows, duplicate])
    assert built.duplicates == [(9, 3)]
    assert built.rows == [2, 3, 4, 9]
    assert [c["content_id"] for c in built.payload["properties"]["contents"]] == ["A", "B", "C"]
    assert built.payload["properties"]["value"] == 26.5


def test_same_item_with_a_different_quantity_is_not_a_duplicate() -> None:
    rows = [item_row(2, content_id="A", quantity="1"), item_row(3, content_id="A", quantity="2")]
    built = build_event(rows)
    assert built.duplicates == []
    assert len(built.payload["properties"]["contents"]) == 2


def test_conflicts_are_noted_and_the_first_row_wins() -> None:
    rows = [
        item_row(4, content_id="A", currency="USD", timestamp="2024-05-19T10:00:00Z"),
        item_row(5, content_id="B", currency="USD", timestamp="2024-05-19T10:00:00Z"),
        item_row(7, content_id="C", currency="EUR", timestamp="2024-05-19T11:00:00Z"),
    ]
    rows[0]["order_id"] = "private-1"
    rows[2]["order_id"] = "private-2"
    rows[1]["event_channel"] = "in_store"
    rows[2]["event_channel"] = "crm"
    built = build_event(rows)
    first_time = int(datetime(2024, 5, 19, 10, tzinfo=UTC).timestamp())
    assert built.payload["event_time"] == first_time
    assert built.payload["properties"]["currency"] == "USD"
    assert built.payload["properties"]["order_id"] == "private-1"
    assert built.event_channel == "in_store"
    assert "event_channel" not in json.dumps(built.payload)
    assert f"rows 4,7 disagree on event_time; used {first_time} from row 4" in built.conflicts
    assert "rows 4,7 disagree on currency; used USD from row 4" in built.conflicts
    assert "rows 5,7 disagree on event_channel; used in_store from row 5" in built.conflicts
    order_note = next(note for note in built.conflicts if "order_id" in note)
    assert "private" not in order_note
    assert "row 4" in order_note


def test_user_hashes_of_one_person_are_united() -> None:
    # Row 3 only has the phone, row 4 only the email: both agree with row 2's person.
    rows = [
        item_row(2, content_id="A", phone=PHONE),
        item_row(3, content_id="B", email=None, phone=PHONE),
        item_row(4, content_id="C"),
    ]
    built = build_event(rows)
    assert built.payload["user"] == {"email": EMAIL_HASH, "phone": PHONE_HASH}
    assert built.other_person == []
    assert built.rows == [2, 3, 4]


def test_a_later_row_adds_a_kind_the_first_row_lacked() -> None:
    rows = [
        item_row(2, content_id="A"),
        item_row(3, content_id="B", phone=PHONE),
        item_row(4, content_id="C", email=None, phone=PHONE),
    ]
    built = build_event(rows)
    assert built.payload["user"] == {"email": EMAIL_HASH, "phone": PHONE_HASH}
    assert built.other_person == []


def test_rows_of_another_person_are_left_out_and_the_first_row_decides() -> None:
    other = "other@example.com"
    rows = [
        item_row(5, content_id="C", email=other),
        item_row(3, content_id="B"),
        item_row(2, content_id="A"),
    ]
    built = build_event(rows)
    # Row 2 is the lowest row number, whatever order the rows arrive in.
    assert built.payload["user"] == {"email": EMAIL_HASH}
    assert built.other_person == [(5, 2)]
    assert built.rows == [2, 3]
    assert [c["content_id"] for c in built.payload["properties"]["contents"]] == ["A", "B"]


@pytest.mark.parametrize(
    "columns",
    [
        # same phone, another email: a shared phone is not proof of one person
        {"email": "other@example.com", "phone": PHONE},
        # nothing shared: no way to tell it is the same person
        {"email": None, "phone": "+1 415 555 0101"},
    ],
)
def test_a_contradicting_or_unrelated_person_is_another_person(
    columns: dict[str, str | None],
) -> None:
    rows = [item_row(2, content_id="A", phone=PHONE), item_row(3, content_id="B", **columns)]
    built = build_event(rows)
    assert built.payload["user"] == {"email": EMAIL_HASH, "phone": PHONE_HASH}
    assert built.other_person == [(3, 2)]
    assert built.rows == [2]


def test_email_only_then_phone_only_is_not_assumed_to_be_one_person() -> None:
    rows = [item_row(2, content_id="A"), item_row(3, content_id="B", email=None, phone=PHONE)]
    built = build_event(rows)
    assert built.payload["user"] == {"email": EMAIL_HASH}
    assert built.other_person == [(3, 2)]


def test_build_event_refuses_rows_of_different_events() -> None:
    with pytest.raises(ValueError, match="different events"):
        build_event([normalize(row_number=2), normalize(row_number=3, event_id="x")])
    with pytest.raises(ValueError):
        build_event([])


# ---------------------------------------------------------------- track body
def payloads(count: int) -> list[Mapping[str, Any]]:
    return [build_event([normalize(row_number=n, event_id=f"e{n}")]).payload for n in range(count)]


def test_track_body_shape() -> None:
    events = payloads(2)
    body = track_body(SET_ID, events, test_event_code=None)
    assert body == {"event_source": "offline", "event_source_id": SET_ID, "data": events}
    assert isinstance(body["event_source_id"], str)
    with_code = track_body(SET_ID, events, test_event_code="TEST123")
    assert with_code["test_event_code"] == "TEST123"
    json.dumps(with_code)


def test_track_body_limits() -> None:
    one = payloads(1)[0]
    assert len(track_body(SET_ID, [one] * 1000, test_event_code=None)["data"]) == 1000
    with pytest.raises(ValueError, match="1000"):
        track_body(SET_ID, [one] * 1001, test_event_code=None)
    with pytest.raises(ValueError):
        track_body("123", [one], test_event_code=None)


# ---------------------------------------------------------------- rules only mutations caught
def test_exactly_1e11_is_still_seconds_not_milliseconds() -> None:
    # 100000000000 read as seconds is in the year 5138 (future); as milliseconds, 1973.
    assert rejected(timestamp="100000000000").reason_code == "future_event"
    assert rejected(timestamp="100000000001").reason_code == "stale_event"


def test_an_unquotable_value_is_called_the_value() -> None:
    error = rejected(event="Purchase #1!")
    assert error.message.startswith("the value is not a TikTok standard event name; ")


def test_build_event_refuses_no_rows_and_rows_of_two_events() -> None:
    with pytest.raises(ValueError, match=r"^build_event needs at least one row$"):
        build_event([])
    with pytest.raises(ValueError, match=r"^rows 2 and 3 belong to different events; "):
        build_event([normalize(2, event_id="a"), normalize(3, event_id="b")])


def test_two_rows_with_different_times_note_the_conflict() -> None:
    early = normalize(2, timestamp=str(NOW_TS - 60))
    late = normalize(3, timestamp=str(NOW_TS - 30))

    event = build_event([early, late])

    assert event.payload["event_time"] == NOW_TS - 60
    assert event.conflicts == [f"rows 2,3 disagree on event_time; used {NOW_TS - 60} from row 2"]


def test_a_duplicate_row_does_not_hide_the_rows_after_it() -> None:
    first = normalize(2, content_id="sku1", price="5", currency="USD")
    again = normalize(3, content_id="sku1", price="5", currency="USD")
    other = normalize(4, content_id="sku2", price="7", currency="USD")

    event = build_event([first, again, other])

    assert event.duplicates == [(3, 2)]
    assert [c["content_id"] for c in event.payload["properties"]["contents"]] == ["sku1", "sku2"]
    assert event.rows == [2, 3, 4]


def test_an_item_without_a_price_does_not_stop_the_sum() -> None:
    free = normalize(2, content_id="gift", currency="USD")
    paid = normalize(3, content_id="sku1", price="5", quantity="2", currency="USD")

    event = build_event([free, paid])

    assert event.payload["properties"]["value"] == 10.0
    assert event.value_method == "sum_price_quantity"


def test_the_sum_rounds_half_up_to_cents() -> None:
    # Banker's rounding would give 0.12.
    event = build_event([normalize(2, content_id="sku1", price="0.125", currency="USD")])
    assert event.payload["properties"]["value"] == 0.13


def test_rows_disagreeing_on_scalar_properties_take_the_first_and_say_so() -> None:
    first = normalize(2, content_id="a", content_type="product", shop_id="s1", description="one")
    second = normalize(
        3, content_id="b", content_type="product_group", shop_id="s2", description="two"
    )

    event = build_event([first, second])

    properties = event.payload["properties"]
    assert (properties["content_type"], properties["shop_id"], properties["description"]) == (
        "product",
        "s1",
        "one",
    )
    assert event.conflicts == [
        "rows 2,3 disagree on content_type; used product from row 2",
        "rows 2,3 disagree on shop_id; used the one from row 2",
        "rows 2,3 disagree on description; used the one from row 2",
    ]


def test_a_row_without_a_user_adds_no_identifier() -> None:
    row = normalize(2)
    bare = {k: v for k, v in normalize(3).items() if k != "user"}
    bare["content_id"] = "x"

    event = build_event([row, bare])

    assert event.payload["user"] == {"email": EMAIL_HASH}


def test_track_body_refuses_no_events_and_bad_set_ids() -> None:
    one = payloads(1)[0]
    with pytest.raises(ValueError, match=r"^track_body needs at least one event$"):
        track_body(SET_ID, [], test_event_code=None)
    with pytest.raises(ValueError, match=r"^event_set_id must be a 19-digit string$"):
        track_body(SET_ID[:-1], [one], test_event_code=None)


@pytest.mark.parametrize(
    ("columns", "column", "reason_code"),
    [
        ({"event_channel": "bogus"}, "event_channel", "invalid_event_channel"),
        ({"currency": "XYZ"}, "currency", "invalid_currency"),
        ({"quantity": "1.5"}, "quantity", "invalid_quantity"),
        ({"price": "abc"}, "price", "invalid_price"),
        ({"value": "abc", "currency": "USD"}, "value", "invalid_value"),
        ({"content_type": "sku"}, "content_type", "invalid_content_type"),
        ({"value": "5"}, "currency", "missing_currency"),
    ],
)
def test_each_rejection_names_its_column(
    columns: dict[str, str], column: str, reason_code: str
) -> None:
    error = rejected(**columns)
    assert (error.column, error.reason_code) == (column, reason_code)


def test_closed_lists_are_spelled_out_in_the_message() -> None:
    assert rejected(event_channel="bogus").message == (
        "event_channel 'bogus' is not allowed; use one of email, website, phone_call, "
        "in_store, crm, other"
    )
    assert rejected(content_type="sku").message == (
        "content_type 'sku' is not allowed; use product or product_group"
    )
    assert rejected(currency="XYZ").message == (
        "currency 'XYZ' is not an ISO 4217 code; use a three-letter code such as USD, EUR or GBP"
    )


def test_exactly_28_days_old_is_still_accepted() -> None:
    oldest = NOW - timedelta(days=28)
    assert normalize(timestamp=oldest.isoformat())["event_time"] == int(oldest.timestamp())
    assert rejected(timestamp=str(int(oldest.timestamp()) - 1)).reason_code == "stale_event"


def test_a_stale_event_is_shown_in_utc_whatever_the_host_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        error = rejected(timestamp="2024-04-01T12:00:00+02:00")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert (error.column, error.reason_code) == ("timestamp", "stale_event")
    assert error.message.startswith(
        "the event happened at 2024-04-01T10:00:00Z, more than 28 days ago; "
    )


def test_a_national_phone_takes_the_runs_default_region() -> None:
    row = normalize_event_row(
        {"event": "Purchase", "event_id": "o-1", "phone": "07911 123456"},
        row_number=2,
        default_region="GB",
        fallback_event_set_id=SET_ID,
        now=NOW,
    )
    assert row["user"] == {"phone": hashlib.sha256(b"+447911123456").hexdigest()}


def test_a_missing_event_names_the_column_and_the_choices() -> None:
    error = rejected(event=None)
    assert (error.column, error.reason_code) == ("event", "missing_event")
    assert error.message.startswith("event is required: set it to a TikTok standard event, one of ")


def test_a_bad_event_set_id_says_where_it_came_from() -> None:
    from_row = rejected(event_set_id="123")
    assert (from_row.column, from_row.reason_code) == ("event_set_id", "invalid_event_set_id")
    assert "the event_set_id column" in from_row.message
    with pytest.raises(RowRejected) as caught:
        normalize_columns({}, fallback="123")
    assert "the destination's event set id" in caught.value.message
    assert "the event_set_id column" not in caught.value.message


def test_a_naive_now_is_read_as_utc() -> None:
    row = {"event": "Purchase", "event_id": "o-1", "email": EMAIL, "timestamp": str(NOW_TS - 60)}
    naive = normalize_event_row(
        row,
        row_number=2,
        default_region="US",
        fallback_event_set_id=SET_ID,
        now=NOW.replace(tzinfo=None),
    )
    assert naive == normalize_event_row(
        row, row_number=2, default_region="US", fallback_event_set_id=SET_ID, now=NOW
    )


def test_a_row_without_email_or_phone_is_rejected_on_the_email_column() -> None:
    error = rejected(email=None)
    assert (error.column, error.reason_code) == ("email", "missing_identifier")


def test_five_minutes_ahead_is_accepted_and_a_second_more_is_the_future() -> None:
    ahead = NOW_TS + 300
    assert normalize(timestamp=str(ahead))["event_time"] == ahead
    error = rejected(timestamp=str(ahead + 1))
    assert (error.column, error.reason_code) == ("timestamp", "future_event")
