"""The rules over a whole file's counts: the reject threshold, broken columns, no rows.

Applied once per file, after every output is written (a ranged file's counts added up
first), so the rejects file is there to read when a rule stops the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from tiktok_destination.errors import ConfigurationError, InputRejected
from tiktok_destination.validation.result import ValidationResult

_TOP_REASONS = 3


def check_threshold(reject_threshold: float) -> None:
    if not 0.0 <= reject_threshold <= 1.0:
        raise ConfigurationError(
            f"reject_threshold {reject_threshold} must be a share between 0 and 1 "
            "(0.2 stops a run when more than 20% of its rows are rejected)"
        )


def _top_reasons(by_reason: Mapping[str, int]) -> str:
    ranked = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))[:_TOP_REASONS]
    return ", ".join(f"{code} ({count:,} rows)" for code, count in ranked)


def raise_if_unusable(
    result: ValidationResult, reject_threshold: float, *, empty_audience: bool | None = None
) -> None:
    """Raise when the file as a whole is unusable; call after every output is closed.

    ``empty_audience``: for an audience, whether this execution may empty it (its
    allow_mass_removal); None for offline events.
    """
    try:
        _check_usable(result, reject_threshold, empty_audience=empty_audience)
    except InputRejected as err:
        err.result = result
        raise


#: What to do when many values or rows are rejected for this reason (the reject-threshold
#: messages give the main reason's).
_REASON_FIXES: dict[str, str] = {
    "phone_lost_digits": (
        "the phones were exported as numbers in scientific notation that rounded digits "
        "away (like 4.15844E+09): export the column as text (in a spreadsheet, format it as "
        "Text before saving)"
    ),
    "invalid_phone": (
        "check that the column holds phone numbers, written with their country code or as "
        "numbers of the default region (default_phone_region), and that it is the column "
        "meant for phone"
    ),
    "phone_extension": "give the direct numbers, without extensions",
    # no example address: these messages go to notifications, where "@" looks like PII
    "invalid_email": (
        "check that the column holds email addresses and that it is the column meant for email"
    ),
    "invalid_idfa": "check that the column holds IDFAs (UUIDs), not MD5s or all zeros",
    "invalid_aaid": "check that the column holds AAIDs (UUIDs), not MD5s or all zeros",
    "invisible_character": (
        "the values hold control or invisible characters: clean the column at the source"
    ),
    "event_id_conflict": (
        "rows of one event set, event and event_id name different people: give each "
        "person's event its own event_id"
    ),
}


def _main_reason(by_reason: Mapping[str, int]) -> tuple[str, int]:
    reason, count = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))[0]
    return reason, count


def _fix(by_reason: Mapping[str, int]) -> str:
    """``; <main reason>: <its fix>`` when the main reason has one, else ""."""
    if not by_reason:
        return ""
    reason, _ = _main_reason(by_reason)
    fix = _REASON_FIXES.get(reason)
    return f"; {reason}: {fix}" if fix else ""


def _check_columns(result: ValidationResult, reject_threshold: float) -> None:
    """An identifier column with more than ``reject_threshold`` of its non-empty values
    invalid stops the run, whatever became of its rows: where another identifier kept them,
    the column's values would only be dropped, and their members removed at TikTok."""
    fields = {column: name for name, column in result.columns_used.items()}
    broken: list[str] = []
    for column, reasons in result.invalid_values_by_column.items():
        invalid = sum(reasons.values())
        values = invalid + result.valid_values_by_column.get(column, 0)
        share = invalid / values if values else 0.0
        if share <= reject_threshold:
            continue
        reason, count = _main_reason(reasons)
        field_name = fields.get(column, column)
        named = f"'{column}'" if field_name == column else f"'{column}' (read as {field_name})"
        fix = _REASON_FIXES.get(reason, "fix the column at the source")
        broken.append(
            f"column {named} has too many invalid values: {invalid:,} of its {values:,} "
            f"({share:.1%}), above the reject threshold of {reject_threshold:.1%}; main "
            f"reason {reason} ({count:,} values): {fix}"
        )
    if broken:
        raise InputRejected(
            f"{result.source}: {'; '.join(broken)}. Nothing is sent: syncing the column as it "
            "is would remove those members at TikTok. Fix the column and run again; if it is "
            "not meant to be read, list it in ignore_columns (or raise reject_threshold if "
            "this share is expected)"
        )


def _check_usable(
    result: ValidationResult, reject_threshold: float, *, empty_audience: bool | None = None
) -> None:
    """The file-level rules over a whole file's counts (a ranged file's added up): rows,
    then identifier columns. The one place reject_threshold is applied."""
    source = result.source
    if result.rows_received == 0:
        if empty_audience:
            return  # a header alone empties the audience: this execution allows it
        on_purpose = (
            "; to empty the audience on purpose, start a new execution with the same input "
            'and "allow_mass_removal": true'
            if empty_audience is False
            else ""
        )
        raise InputRejected(
            f"{source} has a header but no data rows; check that the query returned rows "
            f"before it was exported{on_purpose}"
        )
    share = result.rows_rejected / result.rows_received
    if share > reject_threshold:
        raise InputRejected(
            f"{source}: {result.rows_rejected:,} of {result.rows_received:,} rows rejected "
            f"({share:.1%}), above the reject threshold of {reject_threshold:.1%}; top "
            f"reasons: {_top_reasons(result.rejected_by_reason)}"
            f"{_fix(result.rejected_by_reason)}. The rejects file lists each "
            "rejected row with its column and reason: fix those rows and run again, or raise "
            "reject_threshold if this share is expected"
        )
    # A column broken in rows that another identifier kept: the rows' share missed it.
    _check_columns(result, reject_threshold)
    if result.rows_accepted == 0:
        # Even at threshold 1.0: an audience of nobody would remove every member.
        raise InputRejected(
            f"{source}: none of its {result.rows_received:,} rows is usable; top reasons: "
            f"{_top_reasons(result.rejected_by_reason)}. The rejects file lists each row "
            "with its column and reason"
        )
