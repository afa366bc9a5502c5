"""The three starts of a run, and the one ``Start`` they all become.

- An S3 drop, delivered by EventBridge as an ``Object Created`` event for
  ``inbox/<destination>/<data_template>/<file>``, or for one object of an export in parts
  ``inbox/<destination>/<data_template>/<export>/…`` (``inputs/exports.py`` decides whether
  that object completes the export; when it does not, Preflight returns the no-op payload
  ``{"start": "not_data" | "part_of_export" | "wait", "reason": …}`` and runs nothing).
- An EventBridge Scheduler schedule: ``{"orchestration": "<name in config>"}`` or
  ``{"orchestration": {"destination", "data_template", "source_prefix"}}`` — the newest
  export under the prefix is sent (a file directly under it, or the folder of the newest
  part).
- A console start or re-run: ``{"bucket", "key", "destination", "data_template"}``; a key
  ending in ``/``, or inside an export folder, means that export's folder as it is.

Any of them may add ``event_set_id`` and ``test_event_code`` (offline events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent
from pydantic import BaseModel, ConfigDict, ValidationError

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.config.document import Config
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.config.settings import Settings
from tiktok_destination.errors import (
    ConfigurationError,
    InputRejected,
)
from tiktok_destination.inputs import exports

INBOX_PREFIX = "inbox/"


class Orchestration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destination: str
    data_template: str
    source_prefix: str
    bucket: str | None = None
    event_set_id: str | None = None
    test_event_code: str | None = None


class DirectInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: str
    key: str
    destination: str | None = None
    data_template: str | None = None
    event_set_id: str | None = None
    test_event_code: str | None = None
    orchestration: Any = None


def _path_parts(key: str) -> tuple[str, str]:
    parts = key.split("/")
    if len(parts) < 4 or parts[0] + "/" != INBOX_PREFIX or not parts[1] or not parts[2]:
        raise ConfigurationError(
            f"object key '{key}' is not under inbox/<destination>/<data_template>/: drop files "
            "there, or start the execution with destination and data_template in its input"
        )
    return parts[1], parts[2]


def _newest(bucket: Bucket, prefix: str, template: ResolvedTemplate) -> dict[str, Any]:
    newest: dict[str, Any] | None = None
    for obj in bucket.list(prefix):
        if exports.not_data_reason(obj["Key"], int(obj.get("Size", 1)), template) is not None:
            continue
        # S3 times have one-second resolution; on a tie the later key wins, which is the
        # newer export for the usual date-stamped names.
        if newest is None or (obj["LastModified"], obj["Key"]) > (
            newest["LastModified"],
            newest["Key"],
        ):
            newest = obj
    if newest is None:
        raise InputRejected(f"no object under {bucket.uri(prefix)} to send")
    return newest


@dataclass(frozen=True)
class Start:
    """What started the execution: one object (or export folder) and where it goes."""

    bucket: str
    key: str
    etag: str
    destination: str
    data_template: str
    event_set_id: str | None = None
    test_event_code: str | None = None
    #: the object's size when the start says it (an S3 event)
    size: int | None = None
    #: an S3 Object Created event: an export's completion rules apply
    from_event: bool = False
    #: the prefix exports are folders of (the template's inbox folder, a schedule's prefix)
    base: str | None = None


def resolve_input(event: dict[str, Any], settings: Settings, config: Config) -> Start:
    """The start of any of the three kinds, before its export is looked at."""
    if event.get("detail-type") == "Object Created" or "detail" in event:
        bucket, key, etag, size = _s3_event_object(S3EventBridgeNotificationEvent(event))
        destination, template = _path_parts(key)
        return Start(
            bucket,
            key,
            etag,
            destination,
            template,
            size=size,
            from_event=True,
            base=exports.template_prefix(key),
        )
    orchestration = event.get("orchestration")
    if orchestration is not None and "key" not in event:
        if isinstance(orchestration, str):
            known = config.orchestrations.get(orchestration)
            if known is None:
                raise ConfigurationError(
                    f"orchestration '{orchestration}' is not in the configuration; known: "
                    f"{', '.join(sorted(config.orchestrations)) or '(none)'}"
                )
            orchestration = {
                "destination": known.destination,
                "data_template": known.data_template,
                "source_prefix": known.source_prefix,
                "event_set_id": known.event_set_id,
            }
        try:
            orch = Orchestration.model_validate(orchestration)
        except ValidationError as err:
            raise ConfigurationError(_pydantic_message("orchestration input", err)) from None
        bucket_name = orch.bucket or settings.inbox_bucket
        if not bucket_name:
            raise ConfigurationError(
                "the orchestration input has no bucket and INBOX_BUCKET is not set"
            )
        # The newest export: a file directly under the prefix, or the folder of the newest
        # part (exports.resolve takes it whole).
        resolved = config.resolve(orch.destination, orch.data_template)
        newest = _newest(Bucket(bucket_name), orch.source_prefix, resolved)
        return Start(
            bucket_name,
            str(newest["Key"]),
            str(newest.get("ETag", "")).strip('"'),
            orch.destination,
            orch.data_template,
            event.get("event_set_id") or orch.event_set_id,
            event.get("test_event_code") or orch.test_event_code,
            base=orch.source_prefix,
        )
    try:
        direct = DirectInput.model_validate(event)
    except ValidationError as err:
        raise ConfigurationError(
            _pydantic_message("execution input", err)
            + '; expected an S3 "Object Created" event, {"orchestration": ...}, or '
            '{"bucket", "key", "destination", "data_template"}'
        ) from None
    named: tuple[str, str] = (
        (direct.destination, direct.data_template)
        if direct.destination and direct.data_template
        else _path_parts(direct.key)
    )
    found_etag = "" if direct.key.endswith("/") else Bucket(direct.bucket).etag(direct.key)
    if found_etag is None:
        raise InputRejected(f"s3://{direct.bucket}/{direct.key} does not exist")
    return Start(
        direct.bucket,
        direct.key,
        found_etag,
        named[0],
        named[1],
        direct.event_set_id,
        direct.test_event_code,
        base=exports.template_prefix(direct.key),
    )


def _s3_event_object(event: S3EventBridgeNotificationEvent) -> tuple[str, str, str, int | None]:
    """(bucket, key, ETag, size) of the object an EventBridge ``Object Created`` event names."""
    try:
        bucket = event.detail.bucket.name
        # The key as sent, not the data class's ``key``: that one URL-decodes as for S3's
        # own notifications, but EventBridge sends the key as written (a ":" arrives as
        # ":"), and decoding would read "a+b.csv" as "a b.csv", another object.
        key = str(event.detail.object.raw_event["key"])
        etag = event.detail.object.etag
        size = event.detail.object.raw_event.get("size")
    except (KeyError, TypeError, AttributeError):
        bucket = key = etag = ""
        size = None
    if not bucket or not key:
        raise ConfigurationError(
            "the S3 event has no detail.bucket.name / detail.object.key; is the "
            "EventBridge rule forwarding the whole event?"
        )
    key, found = _key_as_stored(Bucket(bucket), key)
    if found is not None:
        etag = found
    return (
        bucket,
        key,
        etag or ("" if key.endswith("/") else Bucket(bucket).etag(key) or ""),
        size if isinstance(size, int) else None,
    )


def _key_as_stored(bucket: Bucket, key: str) -> tuple[str, str | None]:
    """The key as S3 stores it, and its ETag when it had to be looked up.

    EventBridge sends keys as written, but a start relayed from S3's own notifications (or
    hand-written from one) URL-encodes them: ``dt%3D2026-12-07/part+1.csv`` for
    ``dt=2026-12-07/part 1.csv``. A key with a ``%`` escape is looked up as sent first and
    used when it exists; only when it does not and its decoded form does is the decoded one
    used. A key without one is used as sent (a "+" alone is a legal character, and when it
    stood for a space the object is not found: a failed run, never another object)."""
    if "%" not in key:
        return key, None
    found = bucket.etag(key)
    if found is not None:
        return key, found
    decoded = unquote_plus(key)
    found = bucket.etag(decoded) if decoded != key else None
    return (decoded, found) if found is not None else (key, None)


def _pydantic_message(where: str, err: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()]
    return f"{where}: " + "; ".join(parts)
