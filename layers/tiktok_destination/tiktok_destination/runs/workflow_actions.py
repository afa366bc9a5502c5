"""Workflow actions: every failure becomes exactly one action with its resolution steps.

The steps follow the seed's "Workflow actions" (advertiser not found, invalid credentials,
missing advertiser permissions) in this product's vocabulary: "Resolve" is a redrive in
the Step Functions console or ``tiktok-destination rerun RUN_ID`` locally, and a re-run of
the same input continues where the failed one stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

RESOLVE = (
    "Resolve: redrive the failed execution in the Step Functions console (or start a new "
    "execution with the same input; locally `tiktok-destination rerun RUN_ID`). Finished "
    "batches are not sent again."
)


@dataclass(frozen=True)
class WorkflowAction:
    name: str  # the Fail state's error name, e.g. "InvalidCredentials"
    title: str
    summary: str
    steps: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "summary": self.summary,
            "steps": list(self.steps),
        }


ACTIONS: dict[str, WorkflowAction] = {
    a.name: a
    for a in (
        WorkflowAction(
            "AdvertiserNotFound",
            "Advertiser not found",
            "TikTok does not know the destination's advertiser id, or the authorized user "
            "cannot act for it.",
            (
                "Check advertiser_id in the destination's table of the configuration "
                "(a 19-digit quoted string) and that the data template names that destination.",
                "Open TikTok Business Center and verify that the advertiser account exists, "
                "is approved, and that the authorizing user was given access to it.",
                "Fix the configuration (upload it to the state bucket), or re-authorize with "
                "a user who can access the advertiser: `tiktok-destination auth-link "
                "--credential NAME`.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "InvalidCredentials",
            "Invalid credentials",
            "The credential's TikTok access token is missing, expired, revoked or belongs to "
            "another user.",
            (
                "Run `tiktok-destination auth-link --credential NAME` and open the printed "
                "link as a TikTok Business Center user who is Admin or Operator on the "
                "advertiser.",
                "Approve the consent screen; the callback replaces the stored token in place.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "MissingAdvertiserPermissions",
            "Missing advertiser permissions",
            "The user who authorized the credential may read but not manage audiences or "
            "events on this advertiser: they must be Admin or Operator (recommended), not "
            "Analyst; or the authorization or the TikTok app lacks the permission (scope) the "
            "call needs. The message names TikTok's code and which it is.",
            (
                "Open TikTok Business Center and check the authorizing user's role on the "
                "advertiser account; assign Operator (or Admin).",
                "If the message names a permission (scope), in the TikTok developer portal "
                "give the app the Audience Management and Offline Events permissions.",
                "Regenerate the authorization link (`tiktok-destination auth-link --credential "
                "NAME`) and authorize as the Operator user.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "AccessBlocked",
            "Access blocked by TikTok",
            "TikTok answered 41000 (BLOCKED): it blocks calls for this advertiser account or "
            "this app, for example an account suspended, in review or restricted. TikTok's "
            "SDK names the code without saying which.",
            (
                "Open TikTok Business Center and Ads Manager: check the advertiser account's "
                "status and any notice there, and resolve it with TikTok.",
                "In the TikTok developer portal, check that the app is active and approved "
                "for the Marketing API.",
                "If neither shows why, contact TikTok support with the request_id in the message.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "AudienceLimitReached",
            "Audience limit reached",
            "The advertiser already has 400 custom audiences, TikTok's limit, so a new "
            "audience cannot be created.",
            (
                "In TikTok Ads Manager (Assets > Audiences), delete audiences no longer used.",
                "Or point the data template at an existing audience name.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "EventSetNotFound",
            "Event set not found",
            "The offline event set id is not among the advertiser's event sets.",
            (
                "In TikTok Events Manager, find the offline event set's id (19 digits).",
                "Set it in the data template (event_set_id), the execution input, or an "
                "event_set_id column.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "InputRejected",
            "Input rejected",
            "The input file cannot be used as it is: a needed column is missing, it has no "
            "rows, more rows were rejected than the reject threshold allows, an "
            "identifier column has more invalid values than it allows, or TikTok read an "
            "identifier as not hashed (40062; the message says what to check).",
            (
                "Read the run report and the rejects file it names (row, column, reason).",
                "Fix the query or export that produced the file and drop the corrected file "
                "in the inbox (a new file is a new run), or raise reject_threshold in "
                "[settings] if the share is expected.",
            ),
        ),
        WorkflowAction(
            "InputChanged",
            "Input changed during the run",
            "A part of the export was added, replaced or deleted while this run was reading "
            "it, so the run stopped rather than mix two versions of the export.",
            (
                'Let the export finish writing: with export_completion = "auto" or '
                '"quiet_period", its newest complete version starts a run of its own.',
                "Otherwise start a run for the export's folder once it is complete (locally "
                "`tiktok-destination run FOLDER`); the audience then equals the whole export.",
            ),
        ),
        WorkflowAction(
            "MassRemovalBlocked",
            "Mass removal blocked",
            "The file would remove more of the audience than max_removal_share allows (of "
            "the whole audience, or of its members of one identifier type: EMAIL, PHONE, "
            "IDFA or AAID), or the file has no column for an identifier type the last sync "
            "of the audience had, so the run stopped before any call changed the audience: "
            "every member missing from a file is deleted at TikTok, and a truncated or "
            "near-empty export, or a renamed or dropped column, looks like this. The message "
            "gives the current size, how many would be removed and added, and per type.",
            (
                "Check the file: read the run report (rows received, rejected by reason) and "
                "the rejects file it names; compare the row count with what the query should "
                "return.",
                "If the message names a type the file has no column for, or one whose members "
                "would mostly go, check that column's header: map it in the data template with "
                'columns = { email = "<the header name>" } (the message names a near-miss '
                "header when it sees one), upload the configuration, then re-run.",
                "If the export is wrong, fix the query or export and drop the corrected file "
                "in the inbox (a new file is a new run).",
                "If the removal is intended, start a new execution with the same input plus "
                '"allow_mass_removal": true (console: {"bucket", "key", "destination", '
                '"data_template", "allow_mass_removal": true}; locally `tiktok-destination '
                "rerun RUN_ID --allow-mass-removal`). It applies to that execution only; a "
                "redrive without it stops again.",
                "Or, if such removals are normal for this audience, raise max_removal_share "
                "(0 to 1; 1 turns the guard off) in the data template, the destination's "
                "defaults or [settings], upload the configuration, then redrive.",
            ),
        ),
        WorkflowAction(
            "ConfigurationError",
            "Configuration error",
            "The configuration document, a deployment setting or the execution input is "
            "invalid or incomplete, or TikTok refused a value it sets (such as a batch size).",
            (
                "Read the message: it names the table and field, or the setting.",
                "Fix the configuration and upload it to the state bucket (CONFIG_KEY), or fix "
                "the execution input.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "RateLimited",
            "Rate limited",
            "TikTok kept answering 'requests made too frequently' after every retry.",
            (
                "Lower TIKTOK_QPS (template parameter TikTokQps) or [settings] tiktok_qps, or "
                "run fewer destinations at once.",
                "Wait a few minutes (TikTok's per-minute quota resets), then resolve.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "TikTokUnavailable",
            "TikTok unavailable",
            "TikTok answered with server errors or did not answer, after every retry.",
            (
                "Check https://business-api.tiktok.com status and the run report's last error.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "TikTokRequestRejected",
            "TikTok rejected a request",
            "TikTok refused a request as malformed; the message names the endpoint and code.",
            (
                "Read the message and the run report; this usually means a product bug or an "
                "API change: open an issue with the run report attached (it holds no personal "
                "data).",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "RunInProgress",
            "Another run of this audience is in progress",
            "Runs of one audience (or offline event set) never overlap: overlapping runs would "
            "each diff against the same base. This run waited for the other one to finish "
            "and gave up after the configured number of waits.",
            (
                "Open the run named in the message (its execution is in the Step Functions "
                "console) and let it finish, or stop it if it is stuck: a stopped execution "
                "frees its lease at once.",
                "Then re-run this input; raise LEASE_MAX_WAITS / LEASE_WAIT_SECONDS if runs "
                "of one audience routinely take longer than the wait.",
                RESOLVE,
            ),
        ),
        WorkflowAction(
            "UnexpectedError",
            "Unexpected error",
            "A step failed in a way this product does not classify.",
            (
                "Open the failed step in the Step Functions console and its CloudWatch log.",
                RESOLVE,
            ),
        ),
    )
}

_BY_CLASS: dict[str, str] = {
    "AdvertiserNotFound": "AdvertiserNotFound",
    "InvalidCredentials": "InvalidCredentials",
    "OAuthError": "InvalidCredentials",
    "MissingAdvertiserPermissions": "MissingAdvertiserPermissions",
    "AccessBlocked": "AccessBlocked",
    "AudienceLimitReached": "AudienceLimitReached",
    "EventSetNotFound": "EventSetNotFound",
    "InputRejected": "InputRejected",
    "InputChanged": "InputChanged",
    "MassRemovalBlocked": "MassRemovalBlocked",
    "ConfigurationError": "ConfigurationError",
    "TikTokRateLimited": "RateLimited",
    "TikTokUnavailable": "TikTokUnavailable",
    "TikTokWriteConflict": "TikTokUnavailable",
    "RetriableError": "TikTokUnavailable",
    "TikTokRequestRejected": "TikTokRequestRejected",
    "RunInProgress": "RunInProgress",
}


def is_classified(error_name: str) -> bool:
    """True when the error name is one of ours, not a States.* or Lambda runtime error."""
    return error_name in _BY_CLASS or error_name in ACTIONS


def action_for_error(error_name: str) -> WorkflowAction:
    return ACTIONS[_BY_CLASS.get(error_name, "UnexpectedError")]


def parse_step_error(error: dict[str, Any] | None) -> tuple[str, str]:
    """(error name, message) from a Catch's ``{"Error", "Cause"}``; Lambda's Cause is JSON."""
    if not error:
        return "UnexpectedError", "no error information"
    name = str(error.get("Error", "UnexpectedError"))
    cause = error.get("Cause") or ""
    message = cause
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            message = str(parsed.get("errorMessage") or cause)
            name = str(parsed.get("errorType") or name)
    except (TypeError, ValueError):
        pass
    return name, message
