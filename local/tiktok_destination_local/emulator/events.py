"""Offline events: ``offline/get/`` and ``event/track/``, with 48-hour deduplication."""

from __future__ import annotations

from typing import Any

from .base import EmulatorBase
from .contract import (
    _SHA256,
    CONTENT_TYPES,
    CURRENCIES,
    DEDUP_WINDOW_SECONDS,
    MAX_EVENTS_PER_REQUEST,
    STANDARD_EVENTS,
    USER_KEYS,
)
from .model import _ApiError, _bad, _is_number, _Request, _type_name


class EventsApi(EmulatorBase):
    """Event set listing and event/track: validation, then every event kept for tests."""

    def _ep_offline_get(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        adv_id = self._id_value(req.query.get("advertiser_id"), "advertiser_id")
        adv = self._advertiser_access(tok, adv_id, write=False)
        ids = self._id_list_param(req.query, "event_set_ids", required=False)
        sets = adv.event_sets
        chosen = list(sets) if ids is None else [i for i in ids if i in sets]
        return {"event_set_list": [{"event_set_id": i, "name": sets[i]} for i in chosen]}

    def _ep_event_track(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        body = self._json_body(req)
        if body.get("event_source") != "offline":
            raise _bad(
                'event_source: must be "offline" (this project sends offline events to an '
                "offline event set)."
            )
        set_id = self._id_value(body.get("event_source_id"), "event_source_id")
        adv_id = self._event_sets.get(set_id)
        if adv_id is None:
            raise _bad(
                f"event_source_id: {set_id} is not an offline event set. Check the ID under "
                "Assets > Events > Offline > Manage in TikTok Ads Manager."
            )
        if adv_id not in tok.advertiser_ids:
            raise _ApiError(
                40300,
                f"No permission to event set {set_id}: its advertiser is not authorized for "
                "this access token.",
            )
        self._advertiser_access(tok, adv_id, write=True)
        test_code = body.get("test_event_code")
        if test_code is not None and not isinstance(test_code, str):
            raise _bad("test_event_code: must be a string.")
        events = body.get("data")
        if not isinstance(events, list):
            raise _bad("data: must be a list of 1 to 1000 events.")
        if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
            raise _bad(
                f"data: must hold 1 to {MAX_EVENTS_PER_REQUEST} events, got {len(events)}. "
                "Split the batch."
            )
        now = self.clock()
        for i, ev in enumerate(events):
            self._validate_event(i, ev, now)

        for ev in events:
            record = {
                "event_set_id": set_id,
                "event": ev["event"],
                "event_id": ev["event_id"],
                "event_time": ev["event_time"],
                "user": ev.get("user"),
                "properties": ev.get("properties"),
                "test_event_code": test_code,
                "received_at": now,
            }
            key = (set_id, ev["event"], ev["event_id"])
            first = self.events_by_key.get(key)
            duplicate = first is not None and now - first["received_at"] < DEDUP_WINDOW_SECONDS
            record["duplicate"] = duplicate
            self.received_events.append(record)
            if not duplicate:
                self.events_by_key[key] = record
        return {}

    def _validate_event(self, i: int, ev: object, now: float) -> None:
        where = f"data[{i}]"
        if not isinstance(ev, dict):
            raise _bad(f"{where}: must be an event object.")
        name = ev.get("event")
        if not isinstance(name, str) or name not in STANDARD_EVENTS:
            shown = repr(name) if isinstance(name, str) else _type_name(name)
            raise _bad(
                f"{where}.event: {shown} is not a supported standard event; use one of "
                + ", ".join(sorted(STANDARD_EVENTS))
                + "."
            )
        ts = ev.get("event_time")
        if type(ts) is not int:
            raise _bad(
                f"{where}.event_time: must be an integer of Unix seconds (UTC), "
                f"got {_type_name(ts)}."
            )
        if ts <= 0 or ts > 10**11:
            raise _bad(
                f"{where}.event_time: {ts} is not a Unix time in seconds (milliseconds are not "
                "accepted)."
            )
        if self.max_event_age_days is not None and now - ts > self.max_event_age_days * 86400:
            raise _bad(
                f"{where}.event_time: the event is older than {self.max_event_age_days} days."
            )
        event_id = ev.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise _bad(f"{where}.event_id: a non-empty string is required.")

        user = ev.get("user")
        if not isinstance(user, dict):
            raise _bad(f"{where}.user: an object with email and/or phone hashes is required.")
        unknown = set(user) - USER_KEYS
        if unknown:
            raise _bad(
                f"{where}.user: unsupported key(s) {', '.join(sorted(unknown))}; use "
                + ", ".join(sorted(USER_KEYS))
                + "."
            )
        if not any(user.get(k) for k in ("email", "phone", "external_id")):
            raise _bad(f"{where}.user: at least one of email, phone, external_id is required.")
        for key in ("email", "phone", "external_id"):
            if key in user:
                _check_hashes(f"{where}.user.{key}", user[key])

        props = ev.get("properties")
        if props is None:
            return
        if not isinstance(props, dict):
            raise _bad(f"{where}.properties: must be an object.")
        self._validate_properties(f"{where}.properties", props)

    @staticmethod
    def _validate_properties(where: str, props: dict[str, Any]) -> None:
        if "contents" in props:
            contents = props["contents"]
            if not isinstance(contents, list):
                raise _bad(f"{where}.contents: must be a list of objects.")
            for k, item in enumerate(contents):
                spot = f"{where}.contents[{k}]"
                if not isinstance(item, dict):
                    raise _bad(f"{spot}: must be an object.")
                if "price" in item and not _is_number(item["price"]):
                    raise _bad(f"{spot}.price: must be a number, got {_type_name(item['price'])}.")
                if "quantity" in item and (
                    type(item["quantity"]) is not int or item["quantity"] < 0
                ):
                    raise _bad(f"{spot}.quantity: must be a non-negative integer.")
                for name in ("content_id", "content_category", "content_name", "brand"):
                    if name in item and not isinstance(item[name], str):
                        raise _bad(
                            f"{spot}.{name}: must be a string, got {_type_name(item[name])}."
                        )
        if "content_type" in props and props["content_type"] not in CONTENT_TYPES:
            raise _bad(f'{where}.content_type: must be "product" or "product_group".')
        if "currency" in props:
            cur = props["currency"]
            if not isinstance(cur, str) or cur not in CURRENCIES:
                raise _bad(
                    f"{where}.currency: must be a currency TikTok supports, as an uppercase "
                    'ISO 4217 code like "USD".'
                )
        if "value" in props and not _is_number(props["value"]):
            raise _bad(f"{where}.value: must be a number, got {_type_name(props['value'])}.")
        for name in ("order_id", "shop_id", "description"):
            if name in props and not isinstance(props[name], str):
                raise _bad(f"{where}.{name}: must be a string, got {_type_name(props[name])}.")


def _check_hashes(where: str, value: object) -> None:
    if isinstance(value, str):
        values: list[object] = [value]
    elif isinstance(value, list) and value:
        values = value
    else:
        raise _bad(f"{where}: must be a SHA-256 hash string or a non-empty list of them.")
    for k, item in enumerate(values):
        if not isinstance(item, str) or not _SHA256.fullmatch(item):
            spot = where if isinstance(value, str) else f"{where}[{k}]"
            raise _bad(
                f"{spot}: must be 64 lowercase hex characters (SHA-256); normalize and hash the "
                "value before sending."
            )
