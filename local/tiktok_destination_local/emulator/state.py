"""The emulated world as data: ``dump_state`` and a checked ``load_state``."""

from __future__ import annotations

import copy
from typing import Any

from .base import EmulatorBase
from .contract import ROLES, STATE_FORMAT, STATE_VERSION
from .model import _Advertiser, _Audience, _AuthCode, _is_number, _Token, _type_name


class StateStore(EmulatorBase):
    """Dump and load the world (not options, faults or counters, which are per process)."""

    def dump_state(self) -> dict[str, Any]:
        """The emulated world as JSON-ready data (deep copies), for ``load_state`` / ``save``.

        Holds apps, advertisers, event sets, tokens, pending auth codes, audiences (members
        sorted), received events and the deduplication index. Options, injected faults, call
        counters and the rate-limit window are per process and are not part of it. The dump
        holds app secrets and access tokens: keep it out of logs.
        """
        with self._lock:
            positions = {id(rec): i for i, rec in enumerate(self.received_events)}
            dedup: list[dict[str, Any]] = []
            for (set_id, name, event_id), rec in self.events_by_key.items():
                entry: dict[str, Any] = {
                    "event_set_id": set_id,
                    "event": name,
                    "event_id": event_id,
                }
                # the index shares its records with received_events; a position keeps that
                # sharing across a reload (a record no longer in the list is stored whole)
                pos = positions.get(id(rec))
                if pos is not None:
                    entry["received_index"] = pos
                else:
                    entry["record"] = copy.deepcopy(rec)
                dedup.append(entry)
            return {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "apps": [
                    {"app_id": app_id, "secret": secret, "redirect_uri": redirect}
                    for app_id, (secret, redirect) in self._apps.items()
                ],
                "advertisers": [
                    {
                        "advertiser_id": adv.advertiser_id,
                        "name": adv.name,
                        "event_sets": [
                            {"event_set_id": k, "name": v} for k, v in adv.event_sets.items()
                        ],
                    }
                    for adv in self._advertisers.values()
                ],
                "event_sets": [
                    {"event_set_id": k, "advertiser_id": v} for k, v in self._event_sets.items()
                ],
                "tokens": [
                    {
                        "token": tok.token,
                        "advertiser_ids": list(tok.advertiser_ids),
                        "role": tok.role,
                        "user": copy.deepcopy(tok.user),
                        "revoked": tok.revoked,
                    }
                    for tok in self._tokens.values()
                ],
                "auth_codes": [
                    {
                        "auth_code": code,
                        "advertiser_ids": list(grant.advertiser_ids),
                        "role": grant.role,
                        "user": copy.deepcopy(grant.user),
                        "issued": grant.issued,
                        "used": grant.used,
                    }
                    for code, grant in self._auth_codes.items()
                ],
                "audiences": [
                    {
                        "audience_id": aud.audience_id,
                        "advertiser_id": aud.advertiser_id,
                        "name": aud.name,
                        "created": aud.created,
                        "members": sorted(aud.members),
                        "is_valid": aud.is_valid,
                        "history": copy.deepcopy(aud.history),
                    }
                    for aud in self._audiences.values()
                ],
                "received_events": copy.deepcopy(self.received_events),
                "events_by_key": dedup,
            }

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the emulated world with a ``dump_state`` one; the old world is dropped.

        Everything is checked before anything changes, so a bad dump leaves the current state
        as it was. Faults, counters and options stay as they are.

        Raises:
            ValueError: ``state`` is not a dump, is of another version, or is malformed.
        """
        r = _StateReader()
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"emulator state: not a TikTokEmulator state (expected format {STATE_FORMAT!r}); "
                "pass what dump_state() returned or a file written by save()."
            )
        version = state.get("version")
        if version != STATE_VERSION:
            raise ValueError(
                f"emulator state: version {version!r} is not supported; this emulator reads "
                f"version {STATE_VERSION}. Delete the state file (or directory) to start fresh."
            )

        apps: dict[str, tuple[str, str | None]] = {}
        for where, item in r.items(state, "apps"):
            apps[r.string(item, "app_id", where)] = (
                r.typed(item, "secret", str, where),
                r.optional(item, "redirect_uri", str, where),
            )

        advertisers: dict[str, _Advertiser] = {}
        for where, item in r.items(state, "advertisers"):
            adv = _Advertiser(
                r.string(item, "advertiser_id", where), r.typed(item, "name", str, where)
            )
            for spot, es in r.items(item, "event_sets", where):
                adv.event_sets[r.string(es, "event_set_id", spot)] = r.typed(es, "name", str, spot)
            advertisers[adv.advertiser_id] = adv

        event_sets: dict[str, str] = {}
        for where, item in r.items(state, "event_sets"):
            event_sets[r.string(item, "event_set_id", where)] = r.known(
                item, "advertiser_id", advertisers, where
            )

        tokens: dict[str, _Token] = {}
        for where, item in r.items(state, "tokens"):
            tok = _Token(
                r.string(item, "token", where),
                r.id_list(item, "advertiser_ids", advertisers, where),
                r.role(item, where),
                r.typed(item, "user", dict, where),
                r.typed(item, "revoked", bool, where),
            )
            tokens[tok.token] = tok

        auth_codes: dict[str, _AuthCode] = {}
        for where, item in r.items(state, "auth_codes"):
            auth_codes[r.string(item, "auth_code", where)] = _AuthCode(
                r.id_list(item, "advertiser_ids", advertisers, where),
                r.role(item, where),
                r.optional(item, "user", dict, where),
                r.number(item, "issued", where),
                r.typed(item, "used", bool, where),
            )

        audiences: dict[str, _Audience] = {}
        for where, item in r.items(state, "audiences"):
            members = r.typed(item, "members", list, where)
            if not all(isinstance(m, str) for m in members):
                raise r.error(f"{where}.members", 'a list of "TYPE:hash" strings')
            history = r.typed(item, "history", list, where)
            if not all(isinstance(h, dict) for h in history):
                raise r.error(f"{where}.history", "a list of objects")
            aud = _Audience(
                r.string(item, "audience_id", where),
                r.known(item, "advertiser_id", advertisers, where),
                r.typed(item, "name", str, where),
                r.number(item, "created", where),
                set(members),
                r.typed(item, "is_valid", bool, where),
                copy.deepcopy(history),
            )
            audiences[aud.audience_id] = aud

        received: list[dict[str, Any]] = []
        for where, item in r.items(state, "received_events"):
            for key in ("event_set_id", "event", "event_id"):
                r.string(item, key, where)
            r.number(item, "received_at", where)
            received.append(copy.deepcopy(item))

        by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
        for where, item in r.items(state, "events_by_key"):
            key3 = (
                r.string(item, "event_set_id", where),
                r.string(item, "event", where),
                r.string(item, "event_id", where),
            )
            pos = item.get("received_index")
            if pos is not None:
                if type(pos) is not int or not 0 <= pos < len(received):
                    raise r.error(
                        f"{where}.received_index",
                        f"a position in received_events (0-{len(received) - 1})",
                    )
                rec = received[pos]
            else:
                rec = copy.deepcopy(r.typed(item, "record", dict, where))
                r.number(rec, "received_at", f"{where}.record")
            by_key[key3] = rec

        with self._lock:
            self._apps = apps
            self._advertisers = advertisers
            self._event_sets = event_sets
            self._tokens = tokens
            self._auth_codes = auth_codes
            self._audiences = audiences
            # in place: tests and callers may hold references to these public containers
            self.received_events[:] = received
            self.events_by_key.clear()
            self.events_by_key.update(by_key)


class _StateReader:
    """Checks of a ``dump_state`` dict; errors name the field (``audiences[2].members``)."""

    @staticmethod
    def error(where: str, expected: str) -> ValueError:
        return ValueError(
            f"emulator state {where}: expected {expected}. The state was not written by "
            "TikTokEmulator.save or was edited; delete it to start fresh."
        )

    def items(
        self, obj: dict[str, Any], key: str, where: str = ""
    ) -> list[tuple[str, dict[str, Any]]]:
        spot = f"{where}.{key}" if where else key
        value = obj.get(key)
        if not isinstance(value, list):
            raise self.error(spot, "a list")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error(f"{spot}[{i}]", "an object")
            out.append((f"{spot}[{i}]", item))
        return out

    def typed(self, obj: dict[str, Any], key: str, kind: type[Any], where: str) -> Any:
        value = obj.get(key)
        if not isinstance(value, kind):
            raise self.error(f"{where}.{key}", f"a {kind.__name__}, got {_type_name(value)}")
        return value

    def optional(self, obj: dict[str, Any], key: str, kind: type[Any], where: str) -> Any:
        return None if obj.get(key) is None else self.typed(obj, key, kind, where)

    def string(self, obj: dict[str, Any], key: str, where: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}.{key}", f"a non-empty string, got {_type_name(value)}")
        return value

    def number(self, obj: dict[str, Any], key: str, where: str) -> float:
        value = obj.get(key)
        if not isinstance(value, int | float) or not _is_number(value):
            raise self.error(f"{where}.{key}", f"a number, got {_type_name(value)}")
        return float(value)

    def known(self, obj: dict[str, Any], key: str, advertisers: dict[str, Any], where: str) -> str:
        value = self.string(obj, key, where)
        if value not in advertisers:
            raise self.error(f"{where}.{key}", f"an advertiser listed under advertisers ({value})")
        return value

    def id_list(
        self, obj: dict[str, Any], key: str, advertisers: dict[str, Any], where: str
    ) -> list[str]:
        value = obj.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"{where}.{key}", "a list of advertiser ID strings")
        unknown = [v for v in value if v not in advertisers]
        if unknown:
            raise self.error(
                f"{where}.{key}", f"advertisers listed under advertisers ({unknown[0]})"
            )
        return list(value)

    def role(self, obj: dict[str, Any], where: str) -> str:
        value = obj.get("role")
        if value not in ROLES:
            raise self.error(f"{where}.role", "one of " + ", ".join(ROLES))
        return str(value)
