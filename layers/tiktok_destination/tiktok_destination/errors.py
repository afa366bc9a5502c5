"""One error tree for the whole destination.

A Lambda error's ``errorType`` is the exception's class name, and the state machine's
``Retry`` and ``Catch`` match on it. So the class names below are part of the deployed
contract: ``statemachine/destination.asl.json`` retries every ``RetriableError`` subclass
by name, and everything else is fatal: ``runs/workflow_actions.py`` maps each class name to the
one workflow action the operator sees.

Messages never carry raw identifiers or tokens: they name the file, row, column, field
or TikTok code, and say what to do.
"""

from __future__ import annotations

from typing import Any


class DestinationError(Exception):
    """Base of every error this project raises on purpose."""

    #: structured numbers behind the failure (counts only, never personal data), carried
    #: into the failure record, the notification and the failed run's report
    details: dict[str, Any] | None = None

    def __init__(self, message: str, *, code: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id


# ---------------------------------------------------------------- retriable
class RetriableError(DestinationError):
    """Transient: the same call may succeed later. Step Functions retries these."""


class TikTokRateLimited(RetriableError):
    """TikTok answered 40016/40100/40132 (too many requests) and in-process retries ran out.

    Which code raises which class is the one code table, ``adapters/tiktok``'s ``TIKTOK_CODES``."""


class TikTokUnavailable(RetriableError):
    """TikTok answered 5xx, a system/database/storage code (50000, 51xxx, 52000-52204,
    60001, 61000), 40201 (task not ready), or did not answer."""


class TikTokWriteConflict(RetriableError):
    """TikTok answered 40202: a concurrent write to the same object."""


# ---------------------------------------------------------------- fatal
class FatalError(DestinationError):
    """Retrying the same input will fail the same way until someone fixes the cause."""


class ConfigurationError(FatalError):
    """The destination / data template / orchestration input is incomplete or invalid."""


class InputRejected(FatalError):
    """The input file is unusable, or too many of its rows were rejected."""

    #: the validation counts when the whole file was read (so the report can show them)
    result: object | None = None


class InputChanged(InputRejected):
    """An export's pinned parts changed while its run read them (a part added, replaced or
    deleted): the run stops rather than mix two versions of the export."""


class MassRemovalBlocked(FatalError):
    """The file would remove more of a custom audience than ``max_removal_share`` allows (of
    the whole audience or of one identifier type's members), or every member of a type the
    last sync had and the file has no column for.

    Raised while planning, before any batch is sent: mirror semantics would turn a truncated
    or near-empty export into mass deletions at TikTok.
    """

    def __init__(
        self,
        message: str,
        *,
        current_members: int,
        would_remove: int,
        would_add: int,
        max_removal_share: float,
        min_audience: int,
        by_type: dict[str, dict[str, int]] | None = None,
        types_over_share: list[str] | None = None,
        types_without_column: dict[str, int] | None = None,
    ):
        super().__init__(message)
        self.details = {
            "current_members": current_members,
            "would_remove": would_remove,
            "would_add": would_add,
            "max_removal_share": max_removal_share,
            "mass_removal_min_audience": min_audience,
        }
        if by_type is not None:
            # Per identifier type (EMAIL, PHONE, IDFA, AAID): the same three counts, and the
            # types of which more than max_removal_share would be removed.
            self.details["by_type"] = by_type
            self.details["types_over_share"] = list(types_over_share or [])
        if types_without_column:
            # Types the last committed sync held (with its member count) that the file has
            # no column for.
            self.details["types_without_column"] = types_without_column


class AdvertiserNotFound(FatalError):
    """40300/40302 (40013 in the sandbox), or the advertiser is not among those the token
    may act for."""


class InvalidCredentials(FatalError):
    """40102/40104/40105/40106, or no token stored for the credential."""


class MissingAdvertiserPermissions(FatalError):
    """40001/40003/40301: the authorizing user is not Admin or Operator on the advertiser;
    40130: the authorization lacks a scope; 40125: the app lacks the API permission."""


class AccessBlocked(FatalError):
    """41000 (BLOCKED): TikTok blocks the call, for the advertiser account or the app."""


class AudienceLimitReached(FatalError):
    """The advertiser already has the maximum number of custom audiences."""


class EventSetNotFound(FatalError):
    """The event set id is not among the advertiser's offline event sets."""


class TikTokRequestRejected(FatalError):
    """TikTok refused a request as malformed (40000/40002/40007/40011 and friends)."""


class RunInProgress(FatalError):
    """Another run of the same audience or event set held the lease for every wait."""


class OAuthError(FatalError):
    """The OAuth callback could not complete (bad state, denied, bad auth_code)."""


#: Every class the state machine may match by name. A test keeps the ASL in step with it.
RETRIABLE_ERROR_NAMES: tuple[str, ...] = (
    "RetriableError",
    "TikTokRateLimited",
    "TikTokUnavailable",
    "TikTokWriteConflict",
)


class RowRejected(Exception):
    """One input row cannot be used. Not a run failure: the row goes to the rejects file.

    ``reason_code`` is a stable snake_case key (counted in the report); ``message`` says what
    is wrong and how to fix it, and never quotes the raw value (it may be personal data).
    """

    def __init__(self, column: str, reason_code: str, message: str):
        super().__init__(f"{column}: {message}")
        self.column = column
        self.reason_code = reason_code
        self.message = message
