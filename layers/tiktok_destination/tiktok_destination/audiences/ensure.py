"""Find or create the run's custom audience in TikTok, creating it at most once.

The registry (``audience.json``) names the audience a template syncs into; without one the
audience is looked up by name, never adopting one that another template's registry holds.
A create is not idempotent, so a create whose answer was lost is followed by lookups with
backoff (:func:`lost_create_waits`) before another create. Other partner audiences of the
name are reported as ``duplicate_audience_ids`` and left alone in TikTok.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.names import tiktok_visible_name
from tiktok_destination.errors import (
    AudienceLimitReached,
    RetriableError,
    TikTokRequestRejected,
    TikTokUnavailable,
)
from tiktok_destination.runs.layout import (
    AudienceKeys,
    advertiser_audiences_prefix,
    is_audience_registry,
)
from tiktok_destination.runs.run import Run

logger = logging.getLogger(__name__)


AUDIENCE_LIMIT = 400


def ensure_audience(
    client: TikTokClient,
    bucket: Bucket,
    run: Run,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Return the audience id for the run's template, creating the audience at most once.

    ``duplicate_audience_ids``: other partner audiences of the name in TikTok, seen when the
    audience was looked up by name; they are left alone (never deleted) and reported.
    ``sleep`` is what the lookups after a lost create wait with (tests pass a fake one).
    """
    template = run.resolved
    advertiser_id = template.advertiser_id
    name = template.audience_name or ""
    keys = AudienceKeys(advertiser_id, name)
    registry = bucket.get_json(keys.registry)
    if registry and registry.get("audience_id"):
        audience_id = str(registry["audience_id"])
        found = client.get(
            "dmp/custom_audience/list/",
            {
                "advertiser_id": advertiser_id,
                "custom_audience_ids": [audience_id],
                "page": 1,
                "page_size": 1,
            },
        )
        if any(str(a.get("audience_id")) == audience_id for a in found.get("list", [])):
            return _ensured(audience_id, created=False, found_by="registry")
        logger.warning(
            "audience from the registry no longer exists in TikTok; looking it up by name",
            extra={"audience_id": audience_id, "advertiser_id": advertiser_id},
        )
        _forget_membership(bucket, keys)

    visible = tiktok_visible_name(name)
    # Another template's audience may show the same name (configs checked before the rule
    # existed, or edited since): never adopt one another registry holds.
    held = _held_by_other_templates(bucket, advertiser_id, keys)
    matches, total = _find_by_name(client, advertiser_id, name, held)
    if matches:
        audience_id, duplicates = _oldest(matches, advertiser_id)
        found_by = "name"
        created = False
        # Found by name, not by our registry: we do not know what it holds, so the next
        # plan must treat everything as possibly present (no committed snapshot to trust).
        _forget_membership(bucket, keys)
    else:
        if total >= AUDIENCE_LIMIT:
            raise AudienceLimitReached(
                f"advertiser {advertiser_id} already has {total} custom audiences "
                f"(TikTok's limit is {AUDIENCE_LIMIT}), so '{visible}' cannot be created: "
                "delete unused audiences in TikTok Ads Manager, then re-run"
            )
        audience_id, found_by, duplicates = _create_once(
            client, bucket, keys, advertiser_id, name, held, sleep
        )
        created = True
    bucket.put_json(
        keys.registry,
        {"advertiser_id": advertiser_id, "audience_id": audience_id, "name": name},
    )
    return _ensured(audience_id, created=created, found_by=found_by, duplicates=duplicates)


def _ensured(
    audience_id: str, *, created: bool, found_by: str, duplicates: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "audience_id": audience_id,
        "created": created,
        "found_by": found_by,
        "duplicate_audience_ids": list(duplicates),
    }


#: creates sent for one ensure when each answer is lost (timeout, 5xx) and the name
#: lookups after it find nothing; then the state machine retries the step later
CREATE_ATTEMPTS = 3
#: after a lost create, the name is looked up after waits doubling from this (seconds)...
LOOKUP_FIRST_WAIT = 1.0
#: ...up to this, until they add up to LOOKUP_WINDOW_TIMEOUTS times the client's timeout
LOOKUP_MAX_WAIT = 15.0
LOOKUP_WINDOW_TIMEOUTS = 2


# Time budget, at the client's DEFAULT_TIMEOUT of 30 s (adapters/tiktok/limits.py): a lost
# create costs at most the timeout (30 s), then 60 s of waits (1+2+4+8+15+15+15) and 7 name
# lookups (one listing each: at most 4 pages of 100 for TikTok's 400 audiences, about 1 s at
# 10 QPS). CREATE_ATTEMPTS rounds: 3 x (30 + 60 + ~4) = ~282 s of the AudienceFunction's
# Timeout: 600 s in template.yaml (Lambda allows 900 s); at the largest
# TIKTOK_TIMEOUT_SECONDS (settings.MAX_TIKTOK_TIMEOUT, 50 s; 10 lookups): 3 x (50 + 100 +
# ~6) = ~468 s (tests/unit/test_settings.py checks this against template.yaml).
# The EnsureAudience state's Retry (statemachine/destination.asl.json: TikTokUnavailable,
# 4 more attempts after 5/10/20/40 s) starts a new invocation only after one ended, which
# (when its last create was lost) is after a full window of lookups: so no create is ever
# sent within the window of an earlier lost one, even across invocations.


def lost_create_waits(timeout: float) -> list[float]:
    """The waits before each name lookup after a create whose answer was lost.

    A create TikTok received may be applied after the client stopped waiting, so "not listed"
    right after a timeout proves nothing: the lookups go on for twice the client's timeout
    (longer than a create the client waited for can take), from quick to patient.
    """
    window = LOOKUP_WINDOW_TIMEOUTS * timeout
    wait = min(LOOKUP_FIRST_WAIT, window / 8)
    waits: list[float] = []
    left = window
    while left > 1e-9:
        waits.append(min(wait, left))
        left -= waits[-1]
        wait = min(wait * 2, LOOKUP_MAX_WAIT)
    return waits


def _create_once(
    client: TikTokClient,
    bucket: Bucket,
    keys: AudienceKeys,
    advertiser_id: str,
    name: str,
    held: set[str],
    sleep: Callable[[float], None],
) -> tuple[str, str, list[str]]:
    """Create the audience; after an answer that was lost, look before creating again.

    A create is not idempotent: a timed-out create may still make the audience, even after
    the client gave up, and sending it again would make a second one with the same name.
    """
    visible = tiktok_visible_name(name)
    lost: TikTokUnavailable | None = None
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            audience_id = client.create_audience(advertiser_id, name)
        except TikTokUnavailable as err:
            logger.warning(
                "the answer to creating the audience was lost; looking it up by name",
                extra={"advertiser_id": advertiser_id, "attempt": attempt, "error": err.code},
            )
            lost = err
        except TikTokRequestRejected as err:
            if "limit" in err.message.lower():
                raise AudienceLimitReached(
                    f"TikTok refused to create audience '{visible}' for advertiser "
                    f"{advertiser_id}: the custom audience limit is reached ({err.message}). "
                    "Delete unused audiences in TikTok Ads Manager, then re-run",
                    code=err.code,
                    request_id=err.request_id,
                ) from None
            raise
        else:
            if lost is None:
                return audience_id, "created", []
            # An earlier create was lost: it may have landed since the last lookup.
            matches, _ = _find_by_name(client, advertiser_id, name, held)
            if len(matches) > 1:
                oldest, duplicates = _oldest(matches, advertiser_id)
                return oldest, "created (earlier create landed too)", duplicates
            return audience_id, "created", []
        matches = _look_after_lost_create(client, advertiser_id, name, held, sleep)
        if matches:
            # The lost create did make it; no snapshot of ours can describe it yet.
            _forget_membership(bucket, keys)
            oldest, duplicates = _oldest(matches, advertiser_id)
            return oldest, "created (answer lost, found by name)", duplicates
    assert lost is not None
    raise TikTokUnavailable(
        f"creating audience '{visible}' for advertiser {advertiser_id} got no usable answer "
        f"{CREATE_ATTEMPTS} times and the audience is not listed; the step will be retried, "
        "looking the name up before creating again",
        code=lost.code,
        request_id=lost.request_id,
    )


def _look_after_lost_create(
    client: TikTokClient,
    advertiser_id: str,
    name: str,
    held: set[str],
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    """The audiences of the name, looked for with backoff for the whole window; a lookup
    that fails inside the window is not a reason to stop waiting (nor to create again)."""
    waits = lost_create_waits(client.timeout)
    failed: RetriableError | None = None
    for wait in waits:
        sleep(wait)
        try:
            matches, _ = _find_by_name(client, advertiser_id, name, held)
        except RetriableError as err:
            failed = err
            continue
        if matches:
            return matches
        failed = None
    if failed is not None:
        # The last look failed: "not listed" is not known, so do not create; the step's
        # retry looks again first.
        raise failed
    logger.warning(
        "the audience is still not listed after a lost create; creating it again",
        extra={"advertiser_id": advertiser_id, "waited_seconds": round(sum(waits), 3)},
    )
    return []


def _find_by_name(
    client: TikTokClient, advertiser_id: str, name: str, held: set[str]
) -> tuple[list[dict[str, Any]], int]:
    """Partner audiences listed under ``name`` (as TikTok shows it) that no other registry
    holds, and how many audiences the advertiser has in all."""
    visible = tiktok_visible_name(name)
    matches: list[dict[str, Any]] = []
    total = 0
    for audience in client.iter_audiences(advertiser_id):
        total += 1
        if (
            audience.get("name") in (name, visible)
            and audience.get("audience_type", "Partner") in ("Partner", "PARTNER")
            and str(audience.get("audience_id")) not in held
        ):
            matches.append(audience)
    return matches, total


def _oldest(matches: list[dict[str, Any]], advertiser_id: str) -> tuple[str, list[str]]:
    """The oldest audience of the name, and the ids of the others (left alone in TikTok:
    one may hold what someone else put there, so they are reported, never deleted)."""
    matches = sorted(
        matches, key=lambda a: (str(a.get("create_time", "")), str(a.get("audience_id")))
    )
    oldest = str(matches[0]["audience_id"])
    others = [str(m["audience_id"]) for m in matches[1:]]
    if others:
        logger.warning(
            "several TikTok audiences share this name; using the oldest, %s, and leaving "
            "the others (not deleted): %s",
            oldest,
            ", ".join(others),
            extra={"advertiser_id": advertiser_id, "duplicate_audience_ids": others},
        )
    return oldest, others


def _held_by_other_templates(bucket: Bucket, advertiser_id: str, keys: AudienceKeys) -> set[str]:
    """Audience ids the registries of the advertiser's other audience names hold.

    One listing of ``audiences/<advertiser>/`` plus one read per registry: run only when
    the audience is looked up by name (first run, or its audience was deleted), so cheap
    at the hundreds of templates an advertiser's 400-audience limit allows.
    """
    held: set[str] = set()
    for obj in bucket.list(advertiser_audiences_prefix(advertiser_id)):
        key = obj["Key"]
        if key == keys.registry or not is_audience_registry(key):
            continue
        registry = bucket.get_json(key)
        if registry and registry.get("audience_id"):
            held.add(str(registry["audience_id"]))
    return held


def _forget_membership(bucket: Bucket, keys: AudienceKeys) -> None:
    bucket.delete_prefix(keys.pending_prefix)
    bucket.delete(keys.snapshot)
    bucket.delete(keys.legacy_snapshot)
    bucket.delete_prefix(keys.generations_prefix)
    bucket.delete(keys.registry)
