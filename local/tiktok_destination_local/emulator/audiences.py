"""Custom audiences: ``dmp/custom_audience/list|get/``, ``segment/audience/`` and
``segment/mapping/``, with the member hashes a test checks."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .base import EmulatorBase
from .contract import _HEX, ID_TYPES, MAX_AUDIENCE_NAME
from .model import _ApiError, _Audience, _bad, _fmt_time, _new_id, _Request, _type_name


class AudiencesApi(EmulatorBase):
    """Audience endpoints and the inspection helpers tests read members through."""

    def set_audience_valid(self, audience_id: str, valid: bool) -> None:
        """Simulate TikTok still calculating an audience (``is_valid`` false)."""
        with self._lock:
            self._audiences[audience_id].is_valid = valid

    def audiences(self, advertiser_id: str) -> list[dict[str, Any]]:
        """The advertiser's audiences in creation order: id, name, members (copies)."""
        with self._lock:
            return [
                {
                    "id": a.audience_id,
                    "name": a.name,
                    "members": set(a.members),
                    "create_time": _fmt_time(a.created),
                }
                for a in self._audiences.values()
                if a.advertiser_id == advertiser_id
            ]

    def audience_members(self, audience_id: str) -> set[str]:
        """Members of one audience as "EMAIL_SHA256:<hash>" strings (a copy)."""
        with self._lock:
            return set(self._audiences[audience_id].members)

    # ------------------------------------------------------------------ endpoints
    def _audience_item(self, aud: _Audience) -> dict[str, Any]:
        return {
            "audience_id": aud.audience_id,
            "name": aud.name,
            "audience_type": "Partner",
            "cover_num": len(aud.members),
            "is_valid": aud.is_valid,
            "is_expiring": False,
            "create_time": _fmt_time(aud.created),
            "expired_time": _fmt_time(aud.created + 365 * 86400),
        }

    def _ep_audience_list(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        adv_id = self._id_value(req.query.get("advertiser_id"), "advertiser_id")
        self._advertiser_access(tok, adv_id, write=False)
        ids = self._id_list_param(req.query, "custom_audience_ids", required=False)
        page = self._int_param(req.query, "page", 1, 1, 10**9)
        page_size = self._int_param(req.query, "page_size", 10, 1, 100)
        # TikTok lists the newest first
        items = [a for a in reversed(self._audiences.values()) if a.advertiser_id == adv_id]
        if ids is not None:
            wanted = set(ids)
            items = [a for a in items if a.audience_id in wanted]
        total = len(items)
        chunk = items[(page - 1) * page_size : page * page_size]
        return {
            "page_info": {
                "page": page,
                "page_size": page_size,
                "total_number": total,
                "total_page": math.ceil(total / page_size),
            },
            "list": [self._audience_item(a) for a in chunk],
        }

    def _ep_audience_get(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        adv_id = self._id_value(req.query.get("advertiser_id"), "advertiser_id")
        self._advertiser_access(tok, adv_id, write=False)
        ids = self._id_list_param(req.query, "custom_audience_ids", required=True) or []
        out = []
        for aid in ids:
            aud = self._audiences.get(aid)
            if aud is None or aud.advertiser_id != adv_id:
                raise _ApiError(
                    40007, f"Custom audience {aid} does not exist for advertiser {adv_id}."
                )
            details = self._audience_item(aud)
            details["advertiser_id"] = adv_id
            out.append({"audience_details": details, "audience_history": list(aud.history)})
        return {"list": out}

    def _ep_segment_audience(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        body = self._json_body(req)
        adv_id = self._id_value(body.get("advertiser_id"), "advertiser_id")
        self._advertiser_access(tok, adv_id, write=True)
        action = body.get("action")
        if action == "create":
            name = self._str_value(body.get("custom_audience_name"), "custom_audience_name")
            count = sum(1 for a in self._audiences.values() if a.advertiser_id == adv_id)
            if count >= self.audience_limit:
                raise _bad(
                    f"The number of custom audiences has reached the limit ({self.audience_limit})"
                )
            if len(name) > MAX_AUDIENCE_NAME:
                name = name[: MAX_AUDIENCE_NAME - 3] + "..."
            aud_id = _new_id()
            while aud_id in self._audiences:
                aud_id = _new_id()
            now = self.clock()
            aud = _Audience(aud_id, adv_id, name, now)
            aud.history.append(
                {
                    "action": "Create",
                    "action_detail": "Created via segment API",
                    "opt_time": _fmt_time(now),
                }
            )
            self._audiences[aud_id] = aud
            return {"audience_id": aud_id}
        if action == "delete":
            aud_id = self._id_value(body.get("delete_audience_id"), "delete_audience_id")
            doomed = self._audiences.get(aud_id)
            if doomed is None or doomed.advertiser_id != adv_id:
                raise _ApiError(
                    40007, f"Custom audience {aud_id} does not exist for advertiser {adv_id}."
                )
            del self._audiences[aud_id]
            return {}
        raise _bad('action: must be "create" or "delete".')

    def _ep_segment_mapping(self, req: _Request) -> dict[str, Any]:
        tok = self._token(req)
        body = self._json_body(req)
        adv_ids = body.get("advertiser_ids")
        if (
            not isinstance(adv_ids, list)
            or len(adv_ids) != 1
            or not isinstance(adv_ids[0], str)
            or not adv_ids[0]
        ):
            raise _bad("advertiser_ids: must be a list with exactly one advertiser ID string.")
        adv_id = adv_ids[0]
        self._advertiser_access(tok, adv_id, write=True)

        action = body.get("action")
        if action not in ("add", "delete"):
            raise _bad('action: must be "add" or "delete".')

        schema = body.get("id_schema")
        if not isinstance(schema, list) or not schema:
            raise _bad(
                "id_schema: must be a non-empty list of ID types from " + ", ".join(ID_TYPES) + "."
            )
        for k, typ in enumerate(schema):
            if typ not in ID_TYPES:
                raise _bad(
                    f"id_schema[{k}]: unsupported ID type {typ!r}; use one of "
                    + ", ".join(ID_TYPES)
                    + "."
                )
        if len(set(schema)) != len(schema):
            raise _bad("id_schema: ID types must be distinct; a type is listed twice.")

        rows = body.get("batch_data")
        if not isinstance(rows, list) or not rows:
            raise _bad("batch_data: must be a non-empty list of rows aligned with id_schema.")
        if len(rows) > self.max_ids_per_request:
            raise _ApiError(
                40011,
                f"Too many IDs in one request: batch_data has {len(rows)} rows, the maximum is "
                f"{self.max_ids_per_request}. Split the batch.",
            )

        # validate everything before touching state: TikTok applies a request whole or not at all
        changes: list[tuple[str, str]] = []  # (audience_id, "TYPE:hash")
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise _bad(f"batch_data[{i}]: must be a list aligned with id_schema.")
            if len(row) != len(schema):
                raise _bad(
                    f"batch_data[{i}]: has {len(row)} entries but id_schema has {len(schema)}; "
                    "each row must be aligned with id_schema (use {} for a missing value)."
                )
            for j, entry in enumerate(row):
                where = f"batch_data[{i}][{j}]"
                if not isinstance(entry, dict):
                    raise _bad(f'{where}: must be an object {{"id", "audience_ids"}} or {{}}.')
                if not entry:
                    continue
                extra = set(entry) - {"id", "audience_ids"}
                if extra or "id" not in entry or "audience_ids" not in entry:
                    raise _bad(
                        f'{where}: must have exactly the keys "id" and "audience_ids" (or be {{}}).'
                    )
                typ = schema[j]
                length = ID_TYPES[typ]
                hashed = entry["id"]
                if not isinstance(hashed, str) or not _HEX[length].fullmatch(hashed):
                    kind = "SHA-256" if length == 64 else "MD5"
                    raise _bad(
                        f"{where}.id: {typ} must be {length} lowercase hex characters (a {kind} "
                        "digest); normalize and hash the value before sending."
                    )
                aud_ids = entry["audience_ids"]
                if not isinstance(aud_ids, list) or not aud_ids:
                    raise _bad(f"{where}.audience_ids: must be a non-empty list of audience IDs.")
                for aid in aud_ids:
                    if not isinstance(aid, str):
                        raise _bad(
                            f"{where}.audience_ids: IDs must be strings, got {_type_name(aid)}."
                        )
                    aud = self._audiences.get(aid)
                    if aud is None or aud.advertiser_id != adv_id:
                        raise _ApiError(
                            40007,
                            f"{where}.audience_ids: custom audience {aid} does not exist for "
                            f"advertiser {adv_id}.",
                        )
                    changes.append((aid, f"{typ}:{hashed}"))

        touched: Counter[str] = Counter()
        for aid, member in changes:
            members = self._audiences[aid].members
            if action == "add":
                members.add(member)
            else:
                members.discard(member)
            touched[aid] += 1
        now = _fmt_time(self.clock())
        verb = "Added" if action == "add" else "Removed"
        for aid, n in touched.items():
            self._audiences[aid].history.append(
                {"action": "Update", "action_detail": f"{verb} {n} identifiers", "opt_time": now}
            )
        return {}
