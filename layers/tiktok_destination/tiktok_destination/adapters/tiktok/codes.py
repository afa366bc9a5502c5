"""TikTok's answer codes and what each becomes in our error tree (docs/tiktok-contract.md).

One table, :data:`TIKTOK_CODES`, decides every code: the error class it raises (whose class
decides retry and the workflow action) and, for a fatal one, the fix its message names.
The transport reads an answer's code here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiktok_destination.adapters.tiktok.limits import DEFAULT_BASE_URL, SANDBOX_BASE_URL
from tiktok_destination.errors import (
    AccessBlocked,
    AdvertiserNotFound,
    ConfigurationError,
    DestinationError,
    InputRejected,
    InvalidCredentials,
    MissingAdvertiserPermissions,
    OAuthError,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokUnavailable,
    TikTokWriteConflict,
)

__all__ = [
    "PARTIAL_SUCCESS_CODE",
    "SUCCESS_CODES",
    "TIKTOK_CODES",
    "UNAVAILABLE_RANGE",
    "CodeRule",
    "advice",
    "classify",
    "rule_for",
]

_REAUTHORIZE = (
    "Re-authorize the credential: run the TikTok authorization link again with a user "
    "who still has access to the advertiser."
)
_ROLE = (
    "The user who authorized the credential must be Admin or Operator on the advertiser, "
    "not Analyst: change the role in TikTok Business Center, or re-authorize the "
    "credential with an Admin or Operator."
)
_SCOPE = (
    "The credential was authorized without a permission this call needs: re-authorize it "
    "(tiktok-destination auth-link --credential NAME) and approve every permission the app "
    "asks for; the app must have the Audience Management and Offline Events permissions in "
    "the TikTok developer portal."
)
_APP_PERMISSION = (
    "The TikTok app (app_id) lacks the permission for this API: in the TikTok developer "
    "portal add the Audience Management and Offline Events permissions to the app, then "
    "re-authorize the credential (tiktok-destination auth-link --credential NAME)."
)
_ADVERTISER = (
    "Check advertiser_id in the destination: the advertiser does not exist, was deleted, "
    "or is not one the credential was authorized for."
)
_OAUTH = (
    "Check the TikTok app's app_id and secret, then start the authorization again "
    "(an auth_code is valid once, for one hour)."
)
_INVALID_PARAMETER = (
    "A parameter is invalid. On segment/ calls this also means the audience is still "
    "processing or matched nothing; check the request against docs/tiktok-contract.md."
)
_REJECTED_DEFAULT = "TikTok refused the request as invalid; check the request parameters."


@dataclass(frozen=True)
class CodeRule:
    """What one TikTok code makes of a call: the error it raises (its class decides retry
    and the workflow action) and, for a fatal one, what to do about it."""

    #: the name TikTok's SDK gives the code (tiktok_code.py, without ``ERROR_CODE_``)
    name: str
    error: type[DestinationError]
    #: the fix a failure's message names (required of a fatal code; a retried one's
    #: message says it will be retried)
    fix: str | None = None


SUCCESS_CODES = frozenset({0, 20001})
PARTIAL_SUCCESS_CODE = 20001

#: The one code table. Every code and name is TikTok's official SDK's
#: (tiktok/tiktok-business-api-sdk,
#: python_sdk/business_api_client/tiktok_business/tiktok_code.py, which has names only): what
#: each means for us, and why, is in docs/tiktok-contract.md ("Codes"). A code not here is
#: a TikTokRequestRejected (fatal: retrying a refused request cannot help), except the
#: 51000-51999 service errors (UNAVAILABLE_RANGE).
TIKTOK_CODES: dict[int, CodeRule] = {
    # Throttling: waited out, then retried. 40016 BIZ_FC_ERROR has no text in the SDK:
    # reading "FC" as frequency control is ours. 40133 appears in no source: not here.
    40016: CodeRule("BIZ_FC_ERROR", TikTokRateLimited),
    40100: CodeRule("REQUEST_TOO_FREQUENT", TikTokRateLimited),
    40132: CodeRule("REQUEST_FREQUENCY_LIMITED", TikTokRateLimited),
    # TikTok's side failed or is not ready: retried (the request may have been applied, so a
    # create is looked up by name instead of being sent again).
    40201: CodeRule("TASK_NOT_READY", TikTokUnavailable),
    50000: CodeRule("SYS_ERROR", TikTokUnavailable),
    50002: CodeRule("SYS_TIMEOUT", TikTokUnavailable),
    52000: CodeRule("DB_ERROR", TikTokUnavailable),
    52001: CodeRule("DB_READ_ERROR", TikTokUnavailable),
    52002: CodeRule("DB_WRITE_ERROR", TikTokUnavailable),
    52003: CodeRule("DB_PARTITION_ERROR", TikTokUnavailable),
    52100: CodeRule("RDS_ERROR", TikTokUnavailable),
    52101: CodeRule("RDS_READ_ERROR", TikTokUnavailable),
    52102: CodeRule("RDS_WRITE_ERROR", TikTokUnavailable),
    52103: CodeRule("RDS_TIMEOUT_ERROR", TikTokUnavailable),
    52201: CodeRule("TOS_ERROR", TikTokUnavailable),
    52202: CodeRule("TOS_UPLOAD_TIMEOUT", TikTokUnavailable),
    52203: CodeRule("TOS_HEAD_OBJECT", TikTokUnavailable),
    52204: CodeRule("TOS_PUT_OBJECT", TikTokUnavailable),
    60001: CodeRule("MAINTENANCE", TikTokUnavailable),
    61000: CodeRule("TOO_MANY_REQUESTS_BL", TikTokUnavailable),
    # Another write to the same object was in progress: not applied, retried.
    40202: CodeRule("WRITE_CONFLICT", TikTokWriteConflict),
    # Permissions: the user's role, the authorization's scopes, the app's permissions.
    40001: CodeRule("PERMISSION_ERROR", MissingAdvertiserPermissions, _ROLE),
    40003: CodeRule("FORBIDDEN", MissingAdvertiserPermissions, f"{_ROLE} {_SCOPE}"),
    40125: CodeRule("DEVELOPER_NO_PERMISSION", MissingAdvertiserPermissions, _APP_PERMISSION),
    40130: CodeRule("SCOPE_NOT_AUTHORIZED", MissingAdvertiserPermissions, _SCOPE),
    40301: CodeRule("ADVERTISER_ROLE_ERROR", MissingAdvertiserPermissions, _ROLE),
    # The access token.
    40102: CodeRule("ACCESS_TOKEN_EXPIRE", InvalidCredentials, _REAUTHORIZE),
    40104: CodeRule("EMPTY_ACCESS_TOKEN", InvalidCredentials, _REAUTHORIZE),
    40105: CodeRule("INVALID_ACCESS_TOKEN", InvalidCredentials, _REAUTHORIZE),
    40106: CodeRule("INVALID_CORE_USER", InvalidCredentials, _REAUTHORIZE),
    # The advertiser.
    40300: CodeRule("ADVERTISER_NOT_EXIST", AdvertiserNotFound, _ADVERTISER),
    40302: CodeRule("CUSTOMER_ADVERTISER_NOT_EXIST", AdvertiserNotFound, _ADVERTISER),
    40013: CodeRule(
        "SANDBOX_ADV_NOT_EXIST",
        AdvertiserNotFound,
        "The advertiser is not a sandbox advertiser: with the sandbox base_url "
        f"({SANDBOX_BASE_URL}) use a sandbox advertiser_id, or set base_url to "
        f"{DEFAULT_BASE_URL} for a real one.",
    ),
    # TikTok blocks the call: the account or the app, TikTok's SDK does not say which.
    41000: CodeRule(
        "BLOCKED",
        AccessBlocked,
        "TikTok blocks this call: check the advertiser account's status in TikTok Business "
        "Center (suspended, in review, restricted) and the app's status in the TikTok "
        "developer portal; if neither shows why, contact TikTok support with the request_id.",
    ),
    # The OAuth exchange.
    40101: CodeRule("INVALID_PARTNER", OAuthError, _OAUTH),
    40110: CodeRule("AUTH_CODE_ERROR", OAuthError, _OAUTH),
    40113: CodeRule("APP_FORBIDDEN", OAuthError, _OAUTH),
    # Our configuration or the input's data, each with its fix.
    40061: CodeRule(
        "INVALID_BATCH_SIZE",
        ConfigurationError,
        "TikTok refused the number of records in one request: lower MAPPING_BATCH_SIZE "
        "(template parameter MappingBatchSize; audiences) or EVENT_BATCH_SIZE (events), or "
        "[settings] mapping_batch_size / event_batch_size, then redrive.",
    ),
    40062: CodeRule(
        "PII_NOT_HASHED",
        InputRejected,
        "TikTok read an identifier as not hashed. Identifiers are sent as 64 lowercase hex "
        "characters: hashed here, or passed on as they are when the file has them pre-hashed. "
        "Check that the file's pre-hashed identifiers are SHA-256 of the normalized value "
        "(see docs/tiktok-contract.md, Hashing examples); if the file has none, report it "
        "with the run report.",
    ),
    # Refused requests: fatal, with what to check.
    40000: CodeRule("INVALID_PARAMS", TikTokRequestRejected, _INVALID_PARAMETER),
    40002: CodeRule("PARAM_ERROR", TikTokRequestRejected, _INVALID_PARAMETER),
    40007: CodeRule(
        "NOT_EXIST",
        TikTokRequestRejected,
        "The object does not exist: check the audience id / event set id, or let the "
        "destination re-resolve the audience by name.",
    ),
    40011: CodeRule(
        "ID_LIMIT_EXCEED",
        TikTokRequestRejected,
        "Too many IDs in one request: lower the batch size.",
    ),
}
#: the SDK's service errors (51000 RPC_ERROR to 51099 STATISTICS_NEW_ERROR), and codes
#: TikTok adds to that block: retried like 50000
UNAVAILABLE_RANGE = range(51000, 52000)


def rule_for(code: int) -> CodeRule | None:
    """The table's rule for ``code``, a retried one in the service-error block, else None."""
    rule = TIKTOK_CODES.get(code)
    if rule is None and code in UNAVAILABLE_RANGE:
        return CodeRule("", TikTokUnavailable)
    return rule


def classify(code: int) -> type[DestinationError]:
    """The error an answer with ``code`` raises: a code not in the table is refused (fatal)."""
    rule = rule_for(code)
    return rule.error if rule is not None else TikTokRequestRejected


def advice(error_cls: type[DestinationError], code: int | None, attempts: int) -> str:
    """What a failure's message adds: when it will be retried, or the fix a fatal code names."""
    if error_cls is TikTokRateLimited:
        return (
            f"TikTok kept answering 'too many requests' for {attempts} attempts; the step "
            "will be retried later. If this repeats, lower the destination's QPS."
        )
    if error_cls is TikTokWriteConflict:
        return (
            f"Another write to the same object was in progress for {attempts} attempts; "
            "the step will be retried later."
        )
    if error_cls is TikTokUnavailable:
        return (
            f"TikTok did not answer properly for {attempts} attempts; the step will be "
            "retried later. Check https://status.tiktok.com if this persists."
        )
    if code is None:
        return ""
    rule = rule_for(code)
    # Every fatal code of the table names its fix (a contract test holds it to that).
    return rule.fix if rule is not None and rule.fix else _REJECTED_DEFAULT
