"""Offline events: the normalized rows of one order become ONE event for ``event/track/``.

TikTok counts ``event_source_id + event + event_id`` once within 48 hours, so the rows of one
order (one row per item) must become ONE event whose ``contents`` lists the items. The caller
sorts normalized rows by :func:`event_group_key` (an external sort: files can be larger than
memory) and feeds each run of equal keys to :func:`build_event`.

Messages name rows, never an email or phone; the values they quote (content type, currency,
event channel) passed the row rules first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any, Literal

from tiktok_destination.events.rules import MAX_AMOUNT

#: names a row in messages (a row number, or a part and the row within it)
RowLabel = Callable[[int], str]
_KEY_SEP = "\x1f"


def event_group_key(row: Mapping[str, Any]) -> str:
    """The text that rows of one TikTok event share; sort by it, then group equal runs.

    The unit separator cannot appear in a stripped CSV value that a person typed, so the
    three parts never run into each other.
    """
    return _KEY_SEP.join((str(row["event_set_id"]), str(row["event"]), str(row["event_id"])))


@dataclass
class BuiltEvent:
    """One ``data[]`` item for ``event/track/`` and what went into it (for the run report)."""

    event_set_id: str
    event_channel: str | None
    payload: dict[str, Any]
    #: every input row number in the event, duplicates included, so every row is accounted
    rows: list[int]
    value_method: Literal["row_value", "sum_price_quantity", "none"]
    #: (row, duplicate_of_row): rows identical to an earlier one, not added again
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    #: (row, first_row): rows of this event key that name another person; not in the event
    #: and not in ``rows`` (the caller rejects them as ``event_id_conflict``)
    other_person: list[tuple[int, int]] = field(default_factory=list)
    #: human notes on rows that disagreed and which value was used; no personal data
    conflicts: list[str] = field(default_factory=list)


def _rows_text(numbers: Sequence[int], label: RowLabel = str) -> str:
    return ",".join(label(n) for n in numbers)


def _first_value(
    rows: Sequence[Mapping[str, Any]],
    key: str,
    conflicts: list[str],
    *,
    quote: bool,
    label: RowLabel = str,
) -> Any:
    """First non-empty value of ``key``; a note when later rows hold a different one."""
    chosen: Any = None
    chosen_row = 0
    disagreeing: list[int] = []
    for row in rows:
        value = row.get(key)
        if value is None:
            continue
        if chosen is None:
            chosen, chosen_row = value, row["row"]
        elif value != chosen:
            disagreeing.append(row["row"])
    if disagreeing:
        used = (
            f"used {chosen} from row {label(chosen_row)}"
            if quote
            else f"used the one from row {label(chosen_row)}"
        )
        conflicts.append(
            f"rows {_rows_text([chosen_row, *disagreeing], label)} disagree on {key}; {used}"
        )
    return chosen


def _sum_price_quantity(items: Sequence[Mapping[str, Any]]) -> float | None:
    """Sum of price x quantity to the cent; None when it is not below ``MAX_AMOUNT``."""
    # Each product is below 10**18, so even a million items stay far inside 60 digits: no
    # rounding, no InvalidOperation from quantize, whatever the caller's decimal context.
    with localcontext(Context(prec=60)):
        total = Decimal(0)
        for item in items:
            price = item.get("price")
            if price is None:
                continue
            # str() first: Decimal(float) would carry the binary error into the rounding.
            total += Decimal(str(price)) * int(item.get("quantity") or 1)
        if not total.is_finite() or total >= MAX_AMOUNT:
            return None
        return float(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _same_person(person: Mapping[str, str], user: Mapping[str, str]) -> bool:
    """Whether ``user`` shares a hash with ``person`` and contradicts none of its kinds."""
    shared = False
    for kind, digest in user.items():
        known = person.get(kind)
        if known is None:
            continue
        if known != digest:
            return False
        shared = True
    return shared


def _split_people(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, str], list[tuple[int, int]]]:
    """Rows of the first row's person, that person's hashes, and (row, first row) of the rest.

    One event is one person: TikTok would credit every hash in ``user`` with the purchase,
    so rows of one event key that name someone else are not merged in. The person grows as
    agreeing rows add a kind (a row with the email, then a row with email and phone).
    """
    first = rows[0]
    person: dict[str, str] = dict(first.get("user") or {})
    kept: list[Mapping[str, Any]] = [first]
    others: list[tuple[int, int]] = []
    for row in rows[1:]:
        user: Mapping[str, str] = row.get("user") or {}
        if _same_person(person, user):
            for kind, digest in user.items():
                person.setdefault(kind, digest)
            kept.append(row)
        else:
            others.append((row["row"], first["row"]))
    return kept, person, others


def _drop_identical(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[tuple[int, int]]]:
    """The rows without repeats, and (row, row it repeats) for each one left out.

    Identical rows (a re-exported line, a join that fanned out) must not double an item.
    """
    unique: list[Mapping[str, Any]] = []
    duplicates: list[tuple[int, int]] = []
    seen: dict[str, int] = {}
    for row in rows:
        signature = repr(sorted((k, repr(v)) for k, v in row.items() if k != "row"))
        if signature in seen:
            duplicates.append((row["row"], seen[signature]))
            continue
        seen[signature] = row["row"]
        unique.append(row)
    return unique, duplicates


def _event_value(
    unique: Sequence[Mapping[str, Any]],
    contents: Sequence[Mapping[str, Any]],
    currency: str | None,
    conflicts: list[str],
    label: RowLabel,
) -> tuple[float | None, Literal["row_value", "sum_price_quantity", "none"]]:
    """The event's value and where it came from; a note in ``conflicts`` when it is not
    the rows' own value (they disagree, or only prices were given without a currency)."""
    value: float | None = None
    value_method: Literal["row_value", "sum_price_quantity", "none"] = "none"
    with_value = [row for row in unique if row.get("value") is not None]
    distinct_values = {row["value"] for row in with_value}
    has_prices = any(item.get("price") is not None for item in contents)
    if len(distinct_values) == 1:
        value, value_method = with_value[0]["value"], "row_value"
    else:
        if distinct_values:
            what = (
                "sent the sum of price x quantity instead"
                if has_prices and currency
                else "sent no value"
            )
            conflicts.append(
                f"rows {_rows_text([r['row'] for r in with_value], label)} disagree on value; "
                + what
            )
        if has_prices and currency:
            value = _sum_price_quantity(contents)
            if value is None:
                conflicts.append(
                    f"rows {_rows_text([r['row'] for r in unique], label)}: the sum of price x "
                    f"quantity is not below {MAX_AMOUNT:,}; sent no value"
                )
            else:
                value_method = "sum_price_quantity"
        elif has_prices and not distinct_values:
            # A value without its currency is meaningless to TikTok's revenue reports.
            conflicts.append(
                f"rows {_rows_text([r['row'] for r in unique], label)} have prices but no "
                "currency; sent no value"
            )
    return value, value_method


def build_event(rows: Sequence[Mapping[str, Any]], *, label: RowLabel = str) -> BuiltEvent:
    """Merge the normalized rows of one event (same :func:`event_group_key`) into one event.

    Rows are taken in row-number order. The event is the person of the first row: a later
    row belongs to it when it shares an email or phone hash with that person and has no
    different hash of the same kind; other rows are left out and listed in
    ``other_person``. ``contents`` gets one item per distinct row that has item fields; the
    user gets the person's hashes; scalar properties come from the first row that has them,
    with a note in ``conflicts`` when rows disagree. ``value`` is the rows' value when every
    row that has one agrees, else the sum of price x quantity when items have prices (and a
    currency is known) and that sum is below ``MAX_AMOUNT``, else it is left out. ``label``
    names a row in those notes (an export in parts: its part and row within it).
    """
    if not rows:
        raise ValueError("build_event needs at least one row")
    key = event_group_key(rows[0])
    for row in rows[1:]:
        if event_group_key(row) != key:
            raise ValueError(
                f"rows {rows[0]['row']} and {row['row']} belong to different events; "
                "sort rows by event_group_key and pass one run at a time"
            )

    ordered = sorted(rows, key=lambda row: int(row["row"]))
    same_person, person, other_person = _split_people(ordered)

    unique, duplicates = _drop_identical(same_person)

    conflicts: list[str] = []
    first = unique[0]
    differing_times = [r["row"] for r in unique[1:] if r["event_time"] != first["event_time"]]
    if differing_times:
        conflicts.append(
            f"rows {_rows_text([first['row'], *differing_times], label)} disagree on event_time; "
            f"used {first['event_time']} from row {first['row']}"
        )

    contents = [dict(row["item"]) for row in unique if row.get("item")]
    content_type = _first_value(unique, "content_type", conflicts, quote=True, label=label)
    currency = _first_value(unique, "currency", conflicts, quote=True, label=label)
    order_id = _first_value(unique, "order_id", conflicts, quote=False, label=label)
    shop_id = _first_value(unique, "shop_id", conflicts, quote=False, label=label)
    description = _first_value(unique, "description", conflicts, quote=False, label=label)
    event_channel = _first_value(unique, "event_channel", conflicts, quote=True, label=label)

    value, value_method = _event_value(unique, contents, currency, conflicts, label)

    properties: dict[str, Any] = {}
    if contents:
        properties["contents"] = contents
    candidates: dict[str, Any] = {
        "content_type": content_type,
        "currency": currency,
        "value": value,
        "order_id": order_id,
        "shop_id": shop_id,
        "description": description,
    }
    properties.update({k: v for k, v in candidates.items() if v is not None})

    payload: dict[str, Any] = {
        "event": first["event"],
        "event_time": int(first["event_time"]),
        "event_id": first["event_id"],
        "user": person,
    }
    if properties:
        payload["properties"] = properties

    return BuiltEvent(
        event_set_id=str(first["event_set_id"]),
        event_channel=event_channel,
        payload=payload,
        rows=[row["row"] for row in same_person],
        value_method=value_method,
        duplicates=duplicates,
        other_person=other_person,
        conflicts=conflicts,
    )
