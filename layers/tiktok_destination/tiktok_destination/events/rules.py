"""Offline events: the per-row rules.

:func:`normalize_event_row` checks one input row against the offline-events parameters (event
name, event set id, identifiers, time, currency, value, price, quantity) and returns a small
JSON-serializable dict with identifiers already hashed. Problems raise
:class:`~tiktok_destination.errors.RowRejected` so the row goes to the rejects file. The rows
of one order become one event in :mod:`tiktok_destination.events.build`; the client's
:func:`~tiktok_destination.adapters.tiktok.bodies.track_body` wraps up to 1,000 of them for
``POST event/track/``.

Messages never quote an email or phone. Event names and currency codes are quoted only when
they look like one (letters only), because a mis-mapped column could put an email there.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from tiktok_destination.adapters.tiktok.bodies import EVENT_SET_ID
from tiktok_destination.errors import RowRejected
from tiktok_destination.identity.hashing import hash_identifier

# The seed lists eight names; Events API 2.0 adds the rest. TikTok matches names exactly.
STANDARD_EVENTS: frozenset[str] = frozenset(
    {
        "AddPaymentInfo",
        "AddToCart",
        "AddToWishlist",
        "CompletePayment",
        "CompleteRegistration",
        "Contact",
        "Download",
        "InitiateCheckout",
        "Lead",
        "PlaceAnOrder",
        "Purchase",
        "Search",
        "Subscribe",
        "ViewContent",
    }
)

# Kept for the run report: Events API 2.0 has no event_channel field (only the legacy
# offline/batch endpoint had it), so it is validated but never sent.
EVENT_CHANNELS: tuple[str, ...] = ("email", "website", "phone_call", "in_store", "crm", "other")

CONTENT_TYPES: tuple[str, ...] = ("product", "product_group")

# ISO 4217 List One, alphabetic codes, as published by the maintenance agency (SIX) in 2025,
# including fund, precious-metal and special codes. ANG, SLL and ZWL are kept because they
# are still legal tender during their replacement periods (by XCG, SLE and ZWG).
ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD
    EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL
    MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP
    STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED
    VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA
    XXX YER ZAR ZMW ZWG ZWL
    """.split()  # noqa: SIM905 - 181 codes read better as a block than as a list
)

# The currencies TikTok accepts for an event's value: not every ISO 4217 code. Taken from
# TikTok's own Business SDK (tiktok/tiktok-business-ios-sdk, TikTokBusinessSDK/
# TikTokConstants.m, the TTCurrency constants, 67 codes), the only machine-readable copy of
# the list in TikTok's event docs that was found. A code outside it is a rejected row with
# its reason, not an event that fails its whole batch at TikTok.
TIKTOK_CURRENCIES: frozenset[str] = frozenset(
    """
    AED ARS AUD BDT BGN BHD BIF BOB BRL CAD CHF CLP CNY COP CRC CZK DKK DZD EGP EUR GBP GTQ
    HKD HNL HUF IDR ILS INR IQD ISK JOD JPY KES KHR KRW KWD KZT LBP MAD MOP MXN MYR NGN NIO
    NOK NZD OMR PEN PHP PKR PLN PYG QAR RON RUB SAR SEK SGD THB TRY TWD TZS UAH USD VES VND
    ZAR
    """.split()  # noqa: SIM905 - 67 codes read better as a block than as a list
)

MAX_EVENT_AGE = timedelta(days=28)
MAX_FUTURE_SKEW = timedelta(minutes=5)

#: price and value must be below this, in any currency. Far above any real order (even in
#: currencies with large numbers, like IDR), and small enough that a float keeps the cents
#: and a sum of price x quantity stays finite.
MAX_AMOUNT = Decimal(10**12)
#: quantity is a whole number from 1 to this.
MAX_QUANTITY = 1_000_000

_UNIX_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# A value made only of letters (and _ - space) cannot be an email or phone, so quoting it
# in a message is safe and helps the reader.
_QUOTABLE = re.compile(r"^[A-Za-z][A-Za-z _-]{0,39}$")
# Above this a Unix number is milliseconds: 1e11 seconds is the year 5138.
_MILLISECONDS_ABOVE = 1e11

_EVENTS_BY_LOWER = {name.lower(): name for name in STANDARD_EVENTS}
_STANDARD_LIST = ", ".join(sorted(STANDARD_EVENTS))


def _get(row: Mapping[str, str | None], column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _quoted(value: str) -> str:
    return f"'{value}'" if _QUOTABLE.match(value) else "the value"


# ---------------------------------------------------------------- per-row rules
def _event_set_id(row: Mapping[str, str | None], fallback: str | None) -> str:
    from_row = _get(row, "event_set_id")
    value = from_row or (fallback.strip() if fallback else None)
    if not value:
        raise RowRejected(
            "event_set_id",
            "missing_event_set_id",
            "no event set id: add an event_set_id column, or set the event set id in the "
            "destination settings (TikTok Events Manager > Offline > the id under the set name)",
        )
    if not EVENT_SET_ID.match(value):
        where = "the event_set_id column" if from_row else "the destination's event set id"
        hint = (
            "; a value in scientific notation means a spreadsheet turned it into a number, "
            "keep the column as text"
            if "e" in value.lower() or "." in value
            else ""
        )
        raise RowRejected(
            "event_set_id",
            "invalid_event_set_id",
            f"{where} must be exactly 19 digits, like 7654321098765432109{hint}",
        )
    return value


def _event_name(row: Mapping[str, str | None]) -> str:
    value = _get(row, "event")
    if value is None:
        raise RowRejected(
            "event",
            "missing_event",
            f"event is required: set it to a TikTok standard event, one of {_STANDARD_LIST}",
        )
    if value in STANDARD_EVENTS:
        return value
    canonical = _EVENTS_BY_LOWER.get(value.lower())
    if canonical is not None:
        return canonical
    close = difflib.get_close_matches(value.lower(), list(_EVENTS_BY_LOWER), n=1, cutoff=0.6)
    if close:
        suggestion = f"did you mean {_EVENTS_BY_LOWER[close[0]]}?"
    else:
        suggestion = f"use one of {_STANDARD_LIST}"
    raise RowRejected(
        "event",
        "invalid_event",
        f"{_quoted(value)} is not a TikTok standard event name; {suggestion}",
    )


def _event_id(row: Mapping[str, str | None]) -> str:
    value = _get(row, "event_id")
    if value is None:
        raise RowRejected(
            "event_id",
            "missing_event_id",
            "event_id is required: give every event a unique id (for example the order "
            "number); rows of one order share it and are sent as one event",
        )
    return value


def _user(row: Mapping[str, str | None], default_region: str) -> dict[str, str]:
    user: dict[str, str] = {}
    first_error: RowRejected | None = None
    for column, id_type in (("email", "EMAIL"), ("phone", "PHONE")):
        raw = _get(row, column)
        if raw is None:
            continue
        try:
            user[column] = hash_identifier(id_type, raw, default_region=default_region)
        except RowRejected as error:
            # One bad identifier does not sink a row whose other identifier is usable.
            first_error = first_error or error
    if user:
        return user
    if first_error is not None:
        raise first_error
    raise RowRejected(
        "email",
        "missing_identifier",
        "neither email nor phone is set: TikTok matches offline events to people by email "
        "or phone, so each row needs at least one",
    )


def _parse_time(value: str) -> datetime | None:
    if _UNIX_NUMBER.match(value):
        number = float(value)
        if number > _MILLISECONDS_ABOVE:
            number /= 1000.0
        try:
            return datetime.fromtimestamp(number, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        # Python 3.11's fromisoformat reads the ISO 8601 forms people export: "Z",
        # offsets, fractions, a space instead of "T", and a bare date.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _event_time(row: Mapping[str, str | None], now: datetime) -> int:
    value = _get(row, "timestamp")
    if value is None:
        return int(now.timestamp())
    parsed = _parse_time(value)
    if parsed is None:
        raise RowRejected(
            "timestamp",
            "invalid_timestamp",
            "could not read the timestamp: use ISO 8601 (2024-05-01T14:30:00Z, "
            "2024-05-01T14:30:00+02:00 or 2024-05-01) or Unix seconds or milliseconds",
        )
    shown = parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if parsed < now - MAX_EVENT_AGE:
        raise RowRejected(
            "timestamp",
            "stale_event",
            f"the event happened at {shown}, more than 28 days ago; TikTok only attributes "
            "events from the last 28 days, so send events soon after they happen",
        )
    if parsed > now + MAX_FUTURE_SKEW:
        raise RowRejected(
            "timestamp",
            "future_event",
            f"the event time {shown} is in the future; check the time zone (a time without "
            "an offset is read as UTC) and that the value is seconds, not another unit",
        )
    return int(parsed.timestamp())


def _event_channel(row: Mapping[str, str | None]) -> str | None:
    value = _get(row, "event_channel")
    if value is None:
        return None
    if value.lower() in EVENT_CHANNELS:
        return value.lower()
    raise RowRejected(
        "event_channel",
        "invalid_event_channel",
        f"event_channel {_quoted(value)} is not allowed; use one of {', '.join(EVENT_CHANNELS)}",
    )


def _currency(row: Mapping[str, str | None]) -> str | None:
    value = _get(row, "currency")
    if value is None:
        return None
    code = value.upper()
    if code in TIKTOK_CURRENCIES:
        return code
    if code in ISO_4217:
        raise RowRejected(
            "currency",
            "unsupported_currency",
            f"currency {_quoted(value)} is an ISO 4217 code TikTok does not accept for event "
            "values; convert the value to a supported currency such as USD or EUR (the list "
            "is in docs/tiktok-contract.md)",
        )
    raise RowRejected(
        "currency",
        "invalid_currency",
        f"currency {_quoted(value)} is not an ISO 4217 code; use a three-letter code such "
        "as USD, EUR or GBP",
    )


def _decimal(row: Mapping[str, str | None], column: str) -> Decimal | None:
    value = _get(row, column)
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    # is_finite first: comparing a NaN raises. Decimal reads "1e400" as finite, but its
    # float is infinity, which json would write as the invalid token Infinity.
    if number is None or not number.is_finite() or number < 0:
        raise RowRejected(
            column,
            f"invalid_{column}",
            f"{column} must be a number of 0 or more written plainly, like 12.50 "
            "(no currency symbol, no thousands separator)",
        )
    if number >= MAX_AMOUNT:
        raise RowRejected(
            column,
            f"invalid_{column}",
            f"{column} must be below {MAX_AMOUNT:,} (one trillion); a larger amount is "
            "usually a column mix-up or an amount in the wrong unit",
        )
    # "-0" would otherwise be sent as -0.0.
    return number if number else Decimal(0)


def _amount(row: Mapping[str, str | None], column: str) -> float | None:
    number = _decimal(row, column)
    return None if number is None else float(number)


def _quantity(row: Mapping[str, str | None]) -> int | None:
    value = _get(row, "quantity")
    if value is None:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    # "2.0" is how many exports write a whole number; "2.5" items is not a quantity. The
    # range is checked before to_integral_value, which can fail on huge exponents.
    if (
        number is None
        or not number.is_finite()
        or not 1 <= number <= MAX_QUANTITY
        or number != number.to_integral_value()
    ):
        raise RowRejected(
            "quantity",
            "invalid_quantity",
            f"quantity must be a whole number from 1 to {MAX_QUANTITY:,}, like 2",
        )
    return int(number)


def _content_type(row: Mapping[str, str | None]) -> str | None:
    value = _get(row, "content_type")
    if value is None:
        return None
    if value.lower() in CONTENT_TYPES:
        return value.lower()
    raise RowRejected(
        "content_type",
        "invalid_content_type",
        f"content_type {_quoted(value)} is not allowed; use product or product_group",
    )


def normalize_event_row(
    row: Mapping[str, str | None],
    *,
    row_number: int,
    default_region: str,
    fallback_event_set_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Check one offline-event row and return it normalized, with identifiers hashed.

    ``row`` has lowercase column names. The result holds only keys that have values:
    ``row, event_set_id, event, event_id, event_time, user, item, content_type, currency,
    value, order_id, shop_id, event_channel, description``. Raises ``RowRejected`` on the
    first problem found.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    event_set_id = _event_set_id(row, fallback_event_set_id)
    event = _event_name(row)
    event_id = _event_id(row)
    user = _user(row, default_region)
    event_time = _event_time(row, now)
    event_channel = _event_channel(row)
    currency = _currency(row)
    price = _amount(row, "price")
    value = _amount(row, "value")
    quantity = _quantity(row)
    content_type = _content_type(row)
    if value is not None and currency is None:
        raise RowRejected(
            "currency",
            "missing_currency",
            "value is set but currency is empty: TikTok needs the ISO 4217 currency of the "
            "value (for example USD); add a currency column",
        )

    item: dict[str, Any] = {}
    if price is not None:
        item["price"] = price
    if quantity is not None:
        item["quantity"] = quantity
    for column in ("content_id", "content_category", "content_name", "brand"):
        text = _get(row, column)
        if text is not None:
            item[column] = text

    result: dict[str, Any] = {
        "row": row_number,
        "event_set_id": event_set_id,
        "event": event,
        "event_id": event_id,
        "event_time": event_time,
        "user": user,
    }
    optional: dict[str, Any] = {
        "item": item or None,
        "content_type": content_type,
        "currency": currency,
        "value": value,
        "order_id": _get(row, "order_id"),
        "shop_id": _get(row, "shop_id"),
        "event_channel": event_channel,
        "description": _get(row, "description"),
    }
    result.update({key: val for key, val in optional.items() if val is not None})
    return result
