"""What validate found in a file: the counts the run report shows (``ValidationResult``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tiktok_destination.identity.columns import ColumnResolution
from tiktok_destination.inputs.csv_lines import LineCounts


@dataclass
class ValidationResult:
    """Counts for the run report: every row received is either accepted or rejected."""

    source: str
    rows_received: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    #: audience: lines written to ``out_members``; events: rows written to ``out_events``
    identifiers_written: int = 0
    #: keyed by TikTok schema type (``EMAIL_SHA256``...)
    identifiers_by_type: dict[str, int] = field(default_factory=dict)
    #: an invalid value in a row that was still accepted thanks to another identifier; each
    #: is also a ``dropped_value`` line of the rejects file
    dropped_identifiers_by_reason: dict[str, int] = field(default_factory=dict)
    #: audiences, per identifier column (the file's header name): its values that gave an
    #: identifier, and its invalid values by reason (in rejected and accepted rows alike);
    #: a column's non-empty values are the two together (see ``file_rules._check_columns``)
    valid_values_by_column: dict[str, int] = field(default_factory=dict)
    invalid_values_by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    #: field -> the header column it was read from
    columns_used: dict[str, str] = field(default_factory=dict)
    #: header column -> why nothing was read from it
    columns_ignored: dict[str, str] = field(default_factory=dict)
    #: identifier fields the data template asks for that no column supplies
    columns_missing: list[str] = field(default_factory=list)

    def record_columns(self, resolution: ColumnResolution) -> None:
        self.columns_used = dict(resolution.used)
        self.columns_ignored = dict(resolution.ignored)
        self.columns_missing = list(resolution.missing)

    #: CSV only: the physical lines read and where they went (None for Parquet)
    lines: LineCounts | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
