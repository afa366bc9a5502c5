"""A header that is a near miss or a common translation of a field stops every run with a
"did you mean" (issue 15: a typo in the header deleted a whole identifier type), and an
ordinary unrelated column never does."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tiktok_destination.errors import InputRejected
from tiktok_destination.identity.columns import (
    TRANSLATIONS,
    ColumnResolution,
    resolve_columns,
    resolve_event_columns,
)

SOURCE = "s3://inbox/acme/vip/day2.csv"
IDENTIFIERS = ("email", "phone", "idfa", "aaid")


def audience(
    header: Sequence[str], fields: Sequence[str] = ("email", "phone"), **kwargs: object
) -> ColumnResolution:
    return resolve_columns(
        header,
        fields,
        identifier_fields=fields,
        source=SOURCE,
        data_template="vip",
        **kwargs,  # type: ignore[arg-type]
    )


def stopped(header: Sequence[str], fields: Sequence[str] = ("email", "phone")) -> str:
    with pytest.raises(InputRejected) as info:
        audience(header, fields)
    return info.value.message


@pytest.mark.parametrize(
    ("header", "fields", "column", "field_name", "how"),
    [
        (["emial", "phone"], ("email", "phone"), "emial", "email", "is a near miss of email"),
        (["email", "phnoe"], ("email", "phone"), "phnoe", "phone", "is a near miss of phone"),
        (["Courriel", "phone"], ("email", "phone"), "courriel", "email", "is French for email"),
        (["correo", "phone"], ("email", "phone"), "correo", "email", "is Spanish for email"),
        (["Mailadresse"], ("email",), "mailadresse", "email", "is German for email"),
        (["email", "Cellulare"], ("email", "phone"), "cellulare", "phone", "is Italian for"),
        (["email", "TELEFONE"], ("email", "phone"), "telefone", "phone", "is Portuguese for"),
        (["email", "telefono"], ("email", "phone"), "telefono", "phone", "Spanish/Italian for"),
        (["email", "celular"], ("email", "phone"), "celular", "phone", "is Spanish for phone"),
        (["email", "Handynummer"], ("email", "phone"), "handynummer", "phone", "German"),
        (["email", "telefoonnummer"], ("email", "phone"), "telefoonnummer", "phone", "Dutch"),
        (["Geräte-ID"], ("idfa",), "geräte-id", "idfa", "is German for a device id"),
        (["ID Dispositivo"], ("aaid",), "id dispositivo", "aaid", "for a device id"),
        (["Émial"], ("email",), "émial", "email", "is a near miss of email"),
    ],
)
def test_a_near_miss_or_translation_stops_naming_header_field_and_fixes(
    header: list[str], fields: tuple[str, ...], column: str, field_name: str, how: str
) -> None:
    message = stopped(header, fields)
    assert message.startswith(f"{SOURCE}: Column '{column}' "), message
    assert how in message
    if field_name in [name.lower() for name in header]:
        raise AssertionError("the test header must not have the field itself")
    # the three fixes: map it, rename it, or declare it deliberately unused
    assert f'columns = {{ {field_name} = "{column}" }}' in message
    assert f"rename the column to {field_name}" in message
    assert f'ignore_columns = ["{column}"]' in message
    assert "[data_templates.vip]" in message
    assert len(message.splitlines()) == 1


def test_a_near_miss_beside_the_real_column_still_stops() -> None:
    # Two spellings of email in one file are as suspect as customer_email beside email.
    message = stopped(["email", "emial", "phone"])
    assert "Column 'emial' is a near miss of email (a typo?) but is not used" in message
    assert "(email is read from column 'email')" in message
    assert 'add ignore_columns = ["emial"] to [data_templates.vip]' in message


def test_ignore_columns_declares_a_near_miss_deliberately_unused() -> None:
    result = audience(["email", "phone", "Courriel", "emial"], ignore_columns=["courriel", "EMIAL"])
    assert result.used == {"email": "email", "phone": "phone"}
    assert result.ignored == {
        "courriel": "listed in ignore_columns",
        "emial": "listed in ignore_columns",
    }


def test_a_mapping_to_the_near_miss_reads_it() -> None:
    result = audience(["correo", "phone"], columns={"email": "Correo"})
    assert result.used == {"email": "correo", "phone": "phone"}
    assert result.missing == []


def test_a_near_miss_of_a_type_the_template_does_not_ask_for_is_only_ignored() -> None:
    result = audience(["email", "telefono"], ("email",))
    assert result.ignored == {"telefono": "not a field this data template reads"}


# A CRM / e-commerce export as warehouses write them: none of these is a near miss.
ORDINARY = [
    "first_name", "last_name", "full_name", "name", "country", "country_code", "zip",
    "zipcode", "postal_code", "city", "state", "region", "address", "street", "gender",
    "birthday", "dob", "age", "customer_id", "user_id", "id", "member_id", "account_id",
    "loyalty_id", "created_at", "updated_at", "signup_date", "last_order_date", "order_id",
    "order_count", "orders", "value", "total_spent", "ltv", "currency", "language", "locale",
    "segment", "tier", "status", "email_opt_in", "sms_opt_in", "marketing_consent", "source",
    "channel", "store_id", "company", "job_title", "notes", "tags", "score", "is_active",
    "phone_type", "has_phone", "email_verified", "email_domain", "prenom", "nom", "pays",
    "ville", "code_postal", "nombre", "apellido", "ciudad", "vorname", "nachname", "stadt",
]  # fmt: skip


def test_ordinary_columns_of_an_audience_file_are_never_a_near_miss() -> None:
    result = audience(["email", "phone", *ORDINARY], IDENTIFIERS)
    assert result.used == {"email": "email", "phone": "phone"}
    assert sorted(result.ignored) == sorted(ORDINARY)


ORDINARY_EVENTS = [
    "customer_id", "user_id", "store_id", "sku", "product_id", "product_name", "category",
    "country", "zip", "first_name", "status", "channel", "created_at", "order_date", "total",
    "tax", "shipping", "discount", "coupon", "item_count", "contact_id", "revenue", "amount",
    "payment_method", "transaction_id", "location", "unit_price", "event_date", "pixel_id",
]  # fmt: skip


def test_ordinary_columns_of_an_events_file_are_never_a_near_miss() -> None:
    header = ["event", "event_id", "email", "timestamp", "value", *ORDINARY_EVENTS]
    result = resolve_event_columns(header, source=SOURCE, data_template="sales")
    assert sorted(result.ignored) == sorted(ORDINARY_EVENTS)
    # contact_id is two letters from content_id: for event fields one letter is the limit
    assert "content_id" not in result.used


@pytest.mark.parametrize(
    ("column", "field_name", "how"),
    [
        ("timestmap", "timestamp", "is a near miss of timestamp"),
        ("Valeur", "value", "is French for value"),
        ("curency", "currency", "is a near miss of currency"),
        ("Währung", "currency", "is German for currency"),
        ("cantidad", "quantity", "is Spanish for quantity"),
    ],
)
def test_events_a_near_miss_of_an_event_field_without_a_column_stops(
    column: str, field_name: str, how: str
) -> None:
    with pytest.raises(InputRejected) as info:
        resolve_event_columns(
            ["event", "event_id", "email", column], source=SOURCE, data_template="sales"
        )
    message = info.value.message
    assert f"Column '{column.lower()}' {how}" in message
    assert f'Did you mean columns = {{ {field_name} = "{column.lower()}" }}?' in message
    assert "[data_templates.sales]" in message


def test_events_a_near_miss_of_an_event_field_that_has_a_column_is_ignored() -> None:
    # value is read from its column: nothing is lost, and "valeur" may be another amount
    result = resolve_event_columns(["event", "event_id", "email", "value", "valeur"], source=SOURCE)
    assert result.ignored == {"valeur": "not a field this data template reads"}


def test_events_a_translation_of_email_stops_even_beside_phone() -> None:
    with pytest.raises(InputRejected, match="Column 'correo' is Spanish for email"):
        resolve_event_columns(["event", "event_id", "phone", "correo"], source=SOURCE)


def test_every_listed_translation_stops_as_its_own_field() -> None:
    for field_name, languages in TRANSLATIONS.items():
        for names in languages.values():
            for name in names:
                if field_name in IDENTIFIERS:
                    message = stopped([name], (field_name,))
                else:
                    header = [f for f in ("event", "event_id", "email") if f != field_name]
                    with pytest.raises(InputRejected) as info:
                        resolve_event_columns([*header, name], source=SOURCE)
                    message = info.value.message
                assert f"columns = {{ {field_name} = " in message, (name, message)
