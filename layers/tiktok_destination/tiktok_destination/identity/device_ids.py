"""Device advertising ids as TikTok matches them: an IDFA or AAID (Google advertising ID)
is a UUID, trimmed and lowercased; the all-zero id of a person who opted out is rejected."""

from __future__ import annotations

import re

from tiktok_destination.errors import ConfigurationError, RowRejected
from tiktok_destination.identity.schema import COLUMNS, _check_type, _check_visible

_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def normalize_device_id(raw: str, id_type: str) -> str:
    """Trim and lowercase an IDFA or AAID (Google advertising ID); it must be a UUID."""
    id_type = _check_type(id_type)
    if id_type not in ("IDFA", "AAID"):
        raise ConfigurationError(f"{id_type} is not a device id type; use IDFA or AAID")
    column = COLUMNS[id_type]
    value = _check_visible(raw.strip(), column).lower()
    if _UUID.fullmatch(value) is None:
        hint = (
            "it looks like an MD5 hash, which is not accepted: give the raw id or its SHA-256"
            if _MD5_HEX.fullmatch(value)
            else "expected a UUID: 8-4-4-4-12 hex digits separated by dashes"
        )
        raise RowRejected(column, f"invalid_{column}", f"not a valid {id_type}: {hint}")
    if value == _ZERO_UUID:
        # iOS and Android report all zeros when the person limited ad tracking: it is
        # shared by millions of devices and must never be sent as one person.
        raise RowRejected(
            column,
            f"invalid_{column}",
            f"the {id_type} is all zeros, which devices report when the person opted out "
            "of ad tracking; leave the value empty instead",
        )
    return value
