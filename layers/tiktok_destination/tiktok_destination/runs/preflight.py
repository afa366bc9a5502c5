"""Preflight: turn the execution's start into a run, and check the run can succeed.

The start (an S3 drop, a schedule, a console start; see ``runs/starts.py``) names the input,
the destination and the data template. Preflight resolves the template and the export (an
export in parts may not be complete yet: then the start runs nothing, see ``NoRun``),
builds the run with its options, checks the header of a CSV input, the token
(``user/info/``), that the advertiser is one the token may act for, and that an event set
named at run level exists, and takes the target's lease. ``"allow_mass_removal": true`` at
the top of the execution input lets this execution remove more of a custom audience than
``max_removal_share`` allows (see ``audiences/guard.py``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.adapters.secrets import load_access_token, load_app, load_credential
from tiktok_destination.adapters.step_functions import execution_is_running
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.config.document import Config
from tiktok_destination.config.loader import load_config
from tiktok_destination.config.settings import Settings
from tiktok_destination.errors import (
    AdvertiserNotFound,
    ConfigurationError,
    EventSetNotFound,
    InputRejected,
    RunInProgress,
)
from tiktok_destination.identity.columns import resolve_event_columns
from tiktok_destination.inputs import exports, ranges
from tiktok_destination.inputs.csv_reader import iter_csv_lines
from tiktok_destination.inputs.formats import detect_format, text_stream
from tiktok_destination.runs import leases
from tiktok_destination.runs.layout import execution_report_key
from tiktok_destination.runs.report import base_report, record_calls
from tiktok_destination.runs.run import (
    Run,
    RunOptions,
    Source,
    run_id_for,
)
from tiktok_destination.runs.starts import resolve_input

logger = logging.getLogger(__name__)


def load_run_config(settings: Settings, bucket: Bucket) -> Config:
    data = bucket.get_bytes(settings.config_key)
    if data is None:
        raise ConfigurationError(
            f"no configuration at {bucket.uri(settings.config_key)}: upload the TOML document "
            "there (see samples/config.toml), or set CONFIG_KEY to where it is"
        )
    return load_config(data, source=bucket.uri(settings.config_key))


class NoRun(Exception):
    """The start runs nothing (not data, a part of an export that another start runs, or
    a quiet period to wait out): Preflight returns ``payload`` instead of a run."""

    def __init__(self, export: exports.Export):
        super().__init__(export.reason)
        self.payload = export.no_op()


def build_run(
    event: dict[str, Any],
    execution_id: str,
    settings: Settings,
    bucket: Bucket,
    *,
    started_at: str | None = None,
) -> Run:
    """The run of one start; raises NoRun when the start runs nothing."""
    return build_run_and_export(event, execution_id, settings, bucket, started_at=started_at)[0]


def build_run_and_export(
    event: dict[str, Any],
    execution_id: str,
    settings: Settings,
    bucket: Bucket,
    *,
    started_at: str | None = None,
) -> tuple[Run, exports.Export]:
    """The run of one start and its export (the parts Preflight pins); raises NoRun when
    the start runs nothing."""
    config = load_run_config(settings, bucket)
    start = resolve_input(event, settings, config)
    template = config.resolve(
        start.destination,
        start.data_template,
        event_set_id=start.event_set_id,
        test_event_code=start.test_event_code,
    )
    export = exports.resolve(
        Bucket(start.bucket),
        bucket,
        start.key,
        template,
        size=start.size,
        from_event=start.from_event,
        base=start.base,
        execution_id=execution_id,
        started_at=started_at,
        previous=event.get("run"),
    )
    if export.status != "run":
        raise NoRun(export)
    if export.parts:
        source = Source(
            bucket=start.bucket,
            key=str(export.folder),
            etag=export.etag,
            format=exports.export_format(export),
            parts=len(export.parts),
            completion=export.completion,
        )
    else:
        source = Source(
            bucket=start.bucket, key=start.key, etag=start.etag, format=detect_format(start.key)
        )
    allow_mass_removal = _allow_mass_removal(event)
    run = Run(
        # allow_mass_removal is not part of the id: the run is the input, so a re-run with it
        # after a blocked run is the same run (nothing was planned or sent when it stopped).
        run_id=run_id_for(
            source, start.destination, start.data_template, salt=start.event_set_id or ""
        ),
        execution_id=execution_id,
        kind=template.kind,  # type: ignore[arg-type]
        state_bucket=bucket.name,
        source=source,
        destination=start.destination,
        data_template=start.data_template,
        template=template.as_dict(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        options=RunOptions.resolve(
            settings.with_config(config),
            template.default_phone_region,
            allow_mass_removal=allow_mass_removal,
        ),
    )
    return run, export


def _allow_mass_removal(event: dict[str, Any]) -> bool:
    """The execution input's ``allow_mass_removal``, for any of the three starts."""
    value = event.get("allow_mass_removal", False)
    # Only a JSON true lifts a safety guard: "false" as a string is truthy, and guessing
    # what "yes" or 1 meant is how audiences get emptied.
    if not isinstance(value, bool):
        raise ConfigurationError(
            "execution input: allow_mass_removal: must be true or false (a JSON boolean, "
            'not a string or number), e.g. "allow_mass_removal": true; it lets this one '
            "execution remove more of a custom audience than max_removal_share allows"
        )
    return value


def check_access(client: TikTokClient, settings: Settings, run: Run) -> dict[str, Any]:
    """The token works, may act for the advertiser, and the run-level event set exists."""
    template = run.resolved
    client.user_info()
    advertiser_ids: list[str] | None = None
    app = load_app(settings)
    if app and app.get("app_id") and app.get("secret"):
        advertisers = client.authorized_advertisers(str(app["app_id"]), str(app["secret"]))
        advertiser_ids = [str(a.get("advertiser_id")) for a in advertisers]
    else:
        stored = load_credential(settings, template.credential) or {}
        if stored.get("advertiser_ids"):
            advertiser_ids = [str(a) for a in stored["advertiser_ids"]]
    if advertiser_ids is not None and template.advertiser_id not in advertiser_ids:
        raise AdvertiserNotFound(
            f"advertiser {template.advertiser_id} (destination '{run.destination}') is not "
            f"among the {len(advertiser_ids)} advertiser(s) credential '{template.credential}' "
            "may act for: check advertiser_id in the configuration, or re-authorize with a "
            "user who has access to that advertiser"
        )
    if run.kind == "offline_events" and template.event_set_id:
        sets = client.event_sets(template.advertiser_id, [template.event_set_id])
        if not any(str(s.get("event_set_id")) == template.event_set_id for s in sets):
            raise EventSetNotFound(
                f"offline event set {template.event_set_id} (from the "
                f"{template.event_set_id_source}) was not found for advertiser "
                f"{template.advertiser_id}: check the id in TikTok Events Manager"
            )
    return {"advertiser_checked": advertiser_ids is not None}


HEADER_PEEK_BYTES = 65_536


def require_event_set_id(run: Run) -> None:
    """Offline events need an event set from the input, the template, or a file column.

    Checked here, before any call to TikTok, by reading only the CSV header (a ranged GET).
    Parquet and compressed files are checked by validate, still before anything is sent.
    """
    template = run.resolved
    if run.kind != "offline_events" or template.event_set_id:
        return
    header = _file_header(run)
    if header is None:
        return
    # The same rule as validate, so a mapped event_set_id column counts here too.
    used = resolve_event_columns(
        header,
        columns=template.columns,
        ignore_columns=template.ignore_columns,
        source=run.source.uri,
        data_template=run.data_template,
    ).used
    if "event_set_id" not in used:
        raise ConfigurationError(
            f"{run.source.uri}: no event_set_id: add an event_set_id column, pass "
            "event_set_id in the execution input, or set event_set_id in "
            f"[data_templates.{run.data_template}]"
        )


def check_columns(run: Run) -> None:
    """The file's header against the data template's columns, before any call to TikTok: a
    misnamed or misspelt identifier column stops the run here (the rule validate applies).
    """
    header = _file_header(run)
    if header is not None:
        ranges.check_header(run, header, run.source.uri)


def _file_header(run: Run) -> list[str] | None:
    """The header names of a single CSV (a ranged GET), or None when only validate can
    read it (Parquet, gzip, an export in parts: still checked before anything is sent)."""
    template = run.resolved
    if template.headerless_columns:
        return list(template.headerless_columns)
    return None if run.source.parts else _peek_csv_header(run.source)


def _peek_csv_header(source: Source) -> list[str] | None:
    if source.format != "csv":
        return None
    try:
        body = (
            Bucket(source.bucket)
            .s3.get_object(
                Bucket=source.bucket, Key=source.key, Range=f"bytes=0-{HEADER_PEEK_BYTES - 1}"
            )["Body"]
            .read()
        )
    except Exception:
        return None
    if body[:2] == b"\x1f\x8b":  # gzip: validate decompresses it
        return None
    if len(body) >= HEADER_PEEK_BYTES:
        # The header line must end inside the peek, else its last name would be cut.
        body = body[: body.rfind(b"\n") + 1]
        if not body.strip():
            return None
    # validate's own header reader (blank lines before it, delimiter, quotes, BOM); what it
    # refuses (not UTF-8, no header) it refuses again with the whole file in hand.
    try:
        text = text_stream(io.BufferedReader(io.BytesIO(body)), source.uri)
        header, rows = iter_csv_lines(text, text, source.uri)
        rows.close()
    except (InputRejected, ConfigurationError):
        return None
    return header


def take_lease(
    bucket: Bucket,
    run: Run,
    settings: Settings,
    *,
    previous: Any = None,
    started_at: str | None = None,
) -> dict[str, Any]:
    """The target's lease for ``run``, counting the state machine's waits for it.

    ``previous`` is the run payload of the last pass through Preflight in this execution
    (the WaitForLease loop), which carries the number of waits so far.
    """
    waits = 0
    if isinstance(previous, dict) and isinstance(previous.get("lease"), dict):
        waits = int(previous["lease"].get("waits") or 0)
    outcome = leases.acquire(
        bucket,
        run,
        ttl_seconds=settings.lease_ttl_seconds,
        is_running=execution_is_running,
        started_at=started_at,
    )
    if outcome.status == "busy":
        if waits >= settings.lease_max_waits:
            raise RunInProgress(
                f"another run of this {_target(run)} (run {outcome.holder_run_id}, execution "
                f"{outcome.holder_execution_id}) still holds its lease after {waits} waits of "
                f"{settings.lease_wait_seconds} s; let it finish (or stop it), then re-run "
                f"this input (run {run.run_id})"
            )
        waits += 1
        logger.info(
            "waiting for the lease",
            extra={"holder_run_id": outcome.holder_run_id, "waits": waits, "lease": outcome.key},
        )
    elif outcome.status == "superseded":
        logger.info(
            "a run of this target that started later has finished: this older input is not sent",
            extra={"run_id": run.run_id, "newer_run_id": outcome.holder_run_id},
        )
    elif outcome.status == "duplicate":
        logger.info(
            "this input is already being run by another execution: nothing to do",
            extra={"run_id": run.run_id, "holder_execution_id": outcome.holder_execution_id},
        )
    return outcome.as_dict() | {"waits": waits, "wait_seconds": settings.lease_wait_seconds}


def _nothing_sent_report(run: Run) -> dict[str, Any]:
    """The report of an execution that ends without sending (its run's lease says why)."""
    lease = run.lease or {}
    if lease.get("status") == "superseded":
        return base_report(run, "superseded") | {
            "superseded_by_run_id": lease.get("holder_run_id"),
            "sent": "nothing: a run of this audience that started later has finished, and "
            "the audience mirrors the newest export",
        }
    return base_report(run, "already_running") | {
        "running_in_execution": lease.get("holder_execution_id"),
        "sent": "nothing: another execution is running this same input (an S3 event "
        "delivered twice, a second start); its report says what it sent",
    }


def _target(run: Run) -> str:
    if run.kind == "custom_audience":
        return f"audience '{run.resolved.audience_name}'"
    return "offline event set"


def preflight(
    event: dict[str, Any],
    execution_id: str,
    settings: Settings,
    *,
    client_factory: Callable[[str, Run], TikTokClient],
    execution_started_at: str | None = None,
) -> Run | dict[str, Any]:
    """The run, or (a start that runs nothing) the no-op payload ``{"start": …}``."""
    bucket = Bucket(settings.state_bucket)
    try:
        run, export = build_run_and_export(
            event, execution_id, settings, bucket, started_at=execution_started_at
        )
    except NoRun as no_run:
        logger.info("this start runs nothing", extra=no_run.payload)
        return no_run.payload
    require_event_set_id(run)
    run.lease = take_lease(
        bucket, run, settings, previous=event.get("run"), started_at=execution_started_at
    )
    if run.lease["status"] in ("superseded", "duplicate"):
        # It ends SUCCEEDED having sent nothing: its own report says so, and why.
        bucket.put_json(execution_report_key(execution_id), _nothing_sent_report(run))
    if run.lease["status"] != "acquired":
        # Nothing is written under the run while another execution owns it: its Map
        # children read runs/<id>/run.json and must keep seeing their own execution.
        return run
    # Written before the checks so a run that fails them has an id to re-run by.
    if export.parts:
        bucket.put_json(
            run.paths.export,
            {
                "folder": export.folder,
                "completion": export.completion,
                **export.extra,
                "parts": [p.as_dict() for p in export.parts],
            },
        )
    bucket.put_json(run.paths.run, run.model_dump())
    check_columns(run)
    token = load_access_token(settings, run.resolved.credential, fresh=True)
    client = client_factory(token, run)
    try:
        check_access(client, settings, run)
    finally:
        record_calls(bucket, run, "preflight", client.stats.as_dict())
    return run
