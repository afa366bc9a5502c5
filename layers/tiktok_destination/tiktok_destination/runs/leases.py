"""Leases: at most one live run per TikTok audience (or offline event set).

Two runs of one audience that overlap would each diff against the same base and end as the
union of both files (and runs of one event set are kept to one at a time as well), so
every run takes the target's lease before Validate and gives it back in Report or Notify.
A lease is one S3 object under ``leases/`` written with conditional requests, the same
mechanism the OAuth callback uses for its single-use marker:

- acquire: ``PutObject If-None-Match: *`` -- exactly one writer wins an empty slot;
- take over a stale lease: ``PutObject If-Match: <etag read>`` -- a compare-and-swap, so two
  runs that both saw the stale lease cannot both take it;
- release: ``DeleteObject If-Match: <etag>`` after checking that this execution holds it.

A lease is stale when its holder's execution is no longer running (asked of Step Functions,
so an aborted or crashed execution frees its lease at once) or when it expired (the backstop
for when that cannot be asked). A second execution of the *same* run (one S3 event delivered
twice, a console start during a live run) while the first is live is a no-op; a run of
another file waits in the state machine (``WaitForLease``) and gives up with the workflow
action ``RunInProgress`` after a bounded number of waits.

What a run does once it has the lease depends on the kind of target
(``can_be_superseded``, the one place this rule lives):

- Audiences mirror a file, so the newest start wins: a run that completes leaves
  ``<lease>.last.json`` naming its execution's start time, and a run that gets the lease
  after a run started *later* than itself completed is ``superseded`` (it sends nothing),
  so whatever order overlapping runs take the lease in, TikTok ends equal to the file of
  the last one started.
- Offline events add up: every file's events must reach TikTok, whatever order the files
  came in. Runs of one event set queue (one at a time; the others wait in
  ``WaitForLease``) and each is sent in full; an event run is never superseded, so a
  redrive or re-run of an older event file after a newer one finished still sends the
  batches it had not sent (its done markers keep it from sending any twice).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.runs.layout import LEASE_PREFIX
from tiktok_destination.runs.run import Run

logger = logging.getLogger(__name__)

_CAS_ATTEMPTS = 5

Status = Literal["acquired", "duplicate", "busy", "superseded"]
#: execution id -> True (running), False (finished or unknown to Step Functions), None
#: (cannot tell: then only the expiry frees the lease)
LivenessCheck = Callable[[str], bool | None]


def lease_key(run: Run) -> str:
    """One key per TikTok target: the audience (advertiser + name) or the event set."""
    template = run.resolved
    if run.kind == "custom_audience":
        name = template.audience_name or ""
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return f"{LEASE_PREFIX}audience/{template.advertiser_id}/{digest}.json"
    # Rows may name other event sets; the run-level one (or the template) is what runs of
    # one feed share, and TikTok de-duplicates repeated event ids within 48 h anyway.
    target = template.event_set_id or f"template-{run.destination}-{run.data_template}"
    return f"{LEASE_PREFIX}event-set/{template.advertiser_id}/{target}.json"


@dataclass(frozen=True)
class LeaseOutcome:
    status: Status
    key: str
    holder_run_id: str
    holder_execution_id: str
    expires_at: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _expired(lease: dict[str, Any], now: datetime) -> bool:
    try:
        return datetime.fromisoformat(str(lease["expires_at"])) <= now
    except (KeyError, ValueError):
        return True


def _last_key(key: str) -> str:
    return key.removesuffix(".json") + ".last.json"


def _start_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def acquire(
    bucket: Bucket,
    run: Run,
    *,
    ttl_seconds: int,
    is_running: LivenessCheck,
    started_at: str | None = None,
    now: datetime | None = None,
) -> LeaseOutcome:
    """Take (or renew) the lease of ``run``'s target, or say who holds it.

    ``started_at`` is the execution's start time (``$$.Execution.StartTime``): for an
    audience it orders overlapping runs so that the last one started is the one TikTok ends
    up equal to; event runs only queue, so for them it is just recorded.
    """
    key = lease_key(run)
    now = now or datetime.now(UTC)
    mine = {
        "run_id": run.run_id,
        "execution_id": run.execution_id,
        "execution_started_at": started_at or now.isoformat(),
        "destination": run.destination,
        "data_template": run.data_template,
        "acquired_at": now.isoformat(timespec="seconds"),
        "expires_at": (now + timedelta(seconds=ttl_seconds)).isoformat(timespec="seconds"),
    }
    for _ in range(_CAS_ATTEMPTS):
        if bucket.put_json_if(key, mine, if_none_match=True):
            return _superseded_or_acquired(bucket, run, key, mine)
        held, etag = bucket.get_json_and_etag(key)
        if not isinstance(held, dict) or etag is None:
            continue  # released between our write and our read: try the empty slot again
        holder = str(held.get("execution_id", ""))
        if holder == run.execution_id:
            # A redrive, or the state machine's wait loop coming back: renew in place.
            renewed = mine | {"acquired_at": held.get("acquired_at")}
            if bucket.put_json_if(key, renewed, if_match=etag):
                return _superseded_or_acquired(bucket, run, key, mine)
            continue
        # Trust Step Functions when it answers; the expiry is only for when it cannot.
        running = is_running(holder) if holder else False
        stale = running is False or (running is None and _expired(held, now))
        if stale:
            logger.warning(
                "taking over a stale lease",
                extra={"lease": key, "holder_run_id": held.get("run_id"), "expired": True},
            )
            if bucket.put_json_if(key, mine, if_match=etag):
                return _superseded_or_acquired(bucket, run, key, mine)
            continue
        status: Status = "duplicate" if held.get("run_id") == run.run_id else "busy"
        return _outcome(status, key, held)
    # Every compare-and-swap lost a race: somebody else is actively taking it.
    held, _ = bucket.get_json_and_etag(key)
    return _outcome("busy", key, held if isinstance(held, dict) else {})


def can_be_superseded(run: Run) -> bool:
    """Whether a completed run that started later makes ``run`` send nothing.

    True for a custom audience, which mirrors one file (the newest wins); False for offline
    events, which add up: a later file never replaces an earlier one's events.
    """
    return run.kind == "custom_audience"


def _superseded_or_acquired(
    bucket: Bucket, run: Run, key: str, mine: dict[str, Any]
) -> LeaseOutcome:
    if not can_be_superseded(run):
        return _outcome("acquired", key, mine)
    last, _ = bucket.get_json_and_etag(_last_key(key))
    if isinstance(last, dict) and last and last.get("run_id") != run.run_id:
        theirs = _start_time(last.get("execution_started_at"))
        ours = _start_time(mine["execution_started_at"])
        if theirs and ours and theirs > ours:
            release(bucket, run)
            return _outcome("superseded", key, last)
    return _outcome("acquired", key, mine)


def _outcome(status: Status, key: str, holder: dict[str, Any]) -> LeaseOutcome:
    return LeaseOutcome(
        status=status,
        key=key,
        holder_run_id=str(holder.get("run_id", "")),
        holder_execution_id=str(holder.get("execution_id", "")),
        expires_at=str(holder.get("expires_at", "")),
    )


def release(bucket: Bucket, run: Run, *, completed: bool = False) -> bool:
    """Give the lease back if this execution holds it; True when it was released.

    ``completed``: the run finished its work (the snapshot is committed); it is recorded
    as the target's last completed run, which supersedes later runs of older audience
    files (see ``can_be_superseded``; event runs are never superseded).
    """
    key = lease_key(run)
    held, etag = bucket.get_json_and_etag(key)
    if not isinstance(held, dict) or etag is None or held.get("execution_id") != run.execution_id:
        return False
    if completed:
        bucket.put_json(
            _last_key(key),
            {
                "run_id": run.run_id,
                "execution_id": run.execution_id,
                "execution_started_at": held.get("execution_started_at"),
                "source": run.source.uri,
            },
        )
    # False: taken over as stale meanwhile, so it is no longer ours to delete.
    return bucket.delete_if_match(key, etag)


__all__ = [
    "LeaseOutcome",
    "acquire",
    "can_be_superseded",
    "lease_key",
    "release",
]
