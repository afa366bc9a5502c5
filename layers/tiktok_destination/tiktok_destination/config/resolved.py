"""``ResolvedTemplate``: what one run needs from the configuration (one destination and
data template, with the orchestration's overrides), flattened and JSON-friendly, and the
built-in defaults it falls back to. Runs carry it in their payloads."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiktok_destination.errors import ConfigurationError

#: the removal guard: a custom audience run stops (MassRemovalBlocked) when the file would
#: remove more than this share of the members TikTok may hold ...
DEFAULT_MAX_REMOVAL_SHARE = 0.5
#: ... unless the audience has fewer members than this (small audiences churn in big shares)
DEFAULT_MASS_REMOVAL_MIN_AUDIENCE = 1_000
#: exports in parts: Spark / Glue / Hadoop / Databricks write this marker last
DEFAULT_EXPORT_MARKER = "_SUCCESS"
#: exports in parts without a marker or manifest start after this long with no new part
DEFAULT_EXPORT_QUIET_SECONDS = 60


@dataclass(frozen=True)
class ResolvedTemplate:
    """Everything one run needs from the configuration, flattened and JSON-friendly."""

    destination: str
    data_template: str
    credential: str
    advertiser_id: str
    kind: str
    audience_name: str | None
    user_id_types: tuple[str, ...]
    #: orchestration input > data template > destination defaults; a row-level
    #: event_set_id column is handled later by validate
    event_set_id: str | None
    #: "orchestration input" | "data template" | "destination defaults" | None
    event_set_id_source: str | None
    test_event_code: str | None
    default_phone_region: str | None
    #: field -> header name, from the data template's ``columns``
    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    ignore_columns: tuple[str, ...] = ()
    #: the removal guard (custom audiences): data template > destination defaults >
    #: [settings] > the built-in default. Defaulted, so a run payload without these keys
    #: still loads.
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE
    mass_removal_min_audience: int = DEFAULT_MASS_REMOVAL_MIN_AUDIENCE
    #: exports in parts (see exports.py); defaulted, so a run payload without them loads
    export_completion: str = "auto"
    export_marker: str = DEFAULT_EXPORT_MARKER
    export_quiet_seconds: int = DEFAULT_EXPORT_QUIET_SECONDS
    #: the file's columns when it has no header line; empty: the first line is the header
    headerless_columns: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["user_id_types"] = list(self.user_id_types)
        data["ignore_columns"] = list(self.ignore_columns)
        data["headerless_columns"] = list(self.headerless_columns)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedTemplate:
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        unknown = sorted(k for k in data if k not in names)
        if missing or unknown:
            raise ConfigurationError(
                "resolved template: "
                + "; ".join(
                    ([f"missing keys: {', '.join(missing)}"] if missing else [])
                    + ([f"unknown keys: {', '.join(unknown)}"] if unknown else [])
                )
                + "; pass the dictionary produced by ResolvedTemplate.as_dict() unchanged"
            )
        values = {n: data[n] for n in names if n in data}
        types = values["user_id_types"]
        if isinstance(types, str) or not isinstance(types, Sequence):
            raise ConfigurationError(
                "resolved template: user_id_types must be a list of identifier types; "
                "pass the dictionary produced by ResolvedTemplate.as_dict() unchanged"
            )
        values["user_id_types"] = tuple(types)
        columns = values.get("columns", {})
        ignore = values.get("ignore_columns", ())
        if (
            not isinstance(columns, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items())
            or isinstance(ignore, str)
            or not isinstance(ignore, Sequence)
        ):
            raise ConfigurationError(
                "resolved template: columns must map field names to header names and "
                "ignore_columns must be a list; pass the dictionary produced by "
                "ResolvedTemplate.as_dict() unchanged"
            )
        values["columns"] = dict(columns)
        values["ignore_columns"] = tuple(str(name) for name in ignore)
        values["headerless_columns"] = tuple(
            str(name) for name in values.get("headerless_columns") or ()
        )
        return cls(**values)
