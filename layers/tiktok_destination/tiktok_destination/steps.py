"""The logic behind each Lambda handler: handler -> step -> domain + adapters.

Each function takes the handler's parsed input and returns the small pointer payload the
state machine passes on. Failures are raised, never swallowed: the state machine's Retry
and Catch match the exception's class name.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tiktok_destination import audiences as audience_domain
from tiktok_destination.adapters.metrics import emit_run_metrics, emit_workflow_action
from tiktok_destination.adapters.notifications import publish_workflow_action
from tiktok_destination.adapters.rate_limit import make_pacer
from tiktok_destination.adapters.s3 import Bucket, scratch_dir
from tiktok_destination.adapters.secrets import load_access_token
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.config.settings import Settings, load_settings
from tiktok_destination.errors import DestinationError
from tiktok_destination.events import plan as event_plan
from tiktok_destination.events import send as event_send
from tiktok_destination.inputs import exports, ranges
from tiktok_destination.inputs.csv_lines import lines_report
from tiktok_destination.runs import leases
from tiktok_destination.runs.layout import RunPaths, execution_report_key, raised_marker_key
from tiktok_destination.runs.preflight import build_run, preflight
from tiktok_destination.runs.report import (
    AUDIENCE_REMINDERS,
    EVENTS_REMINDERS,
    base_report,
    columns_report,
    dropped_values_report,
    export_report,
    record_calls,
    rejects_summary,
    sum_calls,
)
from tiktok_destination.runs.run import Run
from tiktok_destination.runs.workflow_actions import (
    action_for_error,
    is_classified,
    parse_step_error,
)
from tiktok_destination.validation import range_outputs

logger = logging.getLogger(__name__)


def make_client(settings: Settings, token: str, run: Run | None = None) -> TikTokClient:
    qps = run.options.tiktok_qps if run else settings.tiktok_qps
    return TikTokClient(
        token,
        base_url=settings.tiktok_base_url,
        qps=qps,
        retry=settings.retry_policy(),
        timeout=settings.tiktok_timeout,
        # Every Map child of every run takes its slots from the one limiter of the app.
        pacer=make_pacer(settings.rate_limit_table, settings.tiktok_base_url, qps),
    )


def load_run(bucket: Bucket, run_id: str) -> Run:
    data = bucket.get_json(RunPaths(run_id).run)
    if data is None:
        raise DestinationError(f"run {run_id} has no run.json in {bucket.uri('runs/')}")
    return Run.model_validate(data)


@contextmanager
def recorded_failure(bucket: Bucket, run: Run, step: str) -> Iterator[None]:
    """Record a step's failure in S3 before re-raising it.

    A Distributed Map reports a child's failure under its own error name, so notify reads
    these records to classify the real cause.
    """
    try:
        yield
    except DestinationError as exc:
        bucket.put_json(
            f"{run.paths.failures}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{step}.json",
            {
                "step": step,
                "error": type(exc).__name__,
                "message": exc.message,
                "code": exc.code,
                "request_id": exc.request_id,
                "execution_id": run.execution_id,
                "details": exc.details,
            },
        )
        raise


# ---------------------------------------------------------------- steps
def step_preflight(
    event: dict[str, Any], execution_id: str, execution_started_at: str | None = None
) -> dict[str, Any]:
    """The run's payload, or the no-op payload ``{"start": …}`` of a start that runs
    nothing (the state machine's ExportStart choice tells them apart)."""
    settings = load_settings()
    run = preflight(
        event,
        execution_id,
        settings,
        execution_started_at=execution_started_at,
        client_factory=lambda token, run: make_client(settings, token, run),
    )
    return run if isinstance(run, dict) else run.model_dump()


def step_validate(run: Run) -> dict[str, Any]:
    """Plan the input's ranges; a one-range input is validated right here, with no Map.

    Returns the validated pointer payload (``merged``: true), or the Map's manifest.
    """
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    with recorded_failure(bucket, run, "validate"):
        plan = ranges.plan_validation(
            bucket,
            Bucket(run.source.bucket),
            run,
            range_bytes=settings.validate_range_bytes,
            default_region=run.options.default_phone_region,
            now=datetime.now(UTC),
        )
    if len(plan["ranges"]) == 1 or int(plan["size"]) <= settings.validate_range_bytes:
        # One range, or an export of small parts that together are no more than one range:
        # validated right here, one after the other, as one file would be.
        for spec in plan["ranges"]:
            item = {"index": spec["index"], "validate_id": plan["validate_id"]}
            step_validate_range(run.run_id, item, run)
        return step_merge_ranges(run, plan["validate_id"], plan)
    keys = run.paths.validate(plan["validate_id"])
    return {
        "merged": False,
        "ranges": len(plan["ranges"]),
        "bucket": bucket.name,
        "manifest_key": keys.manifest,
        "validate_id": plan["validate_id"],
    }


def step_validate_range(
    run_id: str, item: dict[str, Any], run: Run | None = None
) -> dict[str, Any]:
    """One Map child: validate one range of the input (skipped when already done)."""
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    run = run or load_run(bucket, run_id)
    index = int(item["index"])
    plan = _validate_plan(bucket, run, str(item["validate_id"]))
    workdir = scratch_dir()
    try:
        with recorded_failure(bucket, run, f"validate-{index:05d}"):
            record = range_outputs.validate_range(
                bucket, Bucket(run.source.bucket), run, plan, index, workdir=workdir
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = record["result"]
    # Small: a Map child's result is dropped (ResultPath null) but still passes through.
    return {"index": index, "rows_received": result["rows_received"]}


def step_merge_ranges(
    run: Run, validate_id: str, plan: dict[str, Any] | None = None
) -> dict[str, Any]:
    """After the Map: add the ranges up into the one validated payload a
    one-range input returns (or InputRejected)."""
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    paths = run.paths
    if plan is None:
        plan = _validate_plan(bucket, run, validate_id)
    workdir = scratch_dir()
    try:
        with recorded_failure(bucket, run, "validate"):
            if run.source.parts:
                # Every part was read: the export must still be the one pinned, or the run
                # stops before anything is sent (validate reads the inbox; later steps don't).
                exports.check_unchanged(
                    Bucket(run.source.bucket), bucket.get_json(run.paths.export) or {}, run.resolved
                )
            result = range_outputs.merge_ranges(
                bucket,
                run,
                plan,
                reject_threshold=run.options.reject_threshold,
                workdir=workdir,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "merged": True,
        "ranges": len(plan["ranges"]),
        "rows_received": result.rows_received,
        "rows_accepted": result.rows_accepted,
        "rows_rejected": result.rows_rejected,
        "output_key": paths.members if run.kind == "custom_audience" else paths.events,
        "rejects_key": paths.rejects("validate"),
        "result_key": paths.validation,
    }


def _validate_plan(bucket: Bucket, run: Run, vid: str) -> dict[str, Any]:
    plan = bucket.get_json(run.paths.validate(vid).plan)
    if plan is None:
        raise DestinationError(
            f"run {run.run_id} has no validate plan {vid}; re-run the input to plan it again"
        )
    return dict(plan)


def step_ensure_audience(run: Run) -> dict[str, Any]:
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    client = make_client(settings, load_access_token(settings, run.resolved.credential), run)
    try:
        with recorded_failure(bucket, run, "ensure"):
            found = audience_domain.ensure_audience(client, bucket, run)
    finally:
        record_calls(bucket, run, "ensure", client.stats.as_dict())
    bucket.put_json(run.paths.ensure, found)
    return found


def step_chunk(run: Run, audience: dict[str, Any] | None) -> dict[str, Any]:
    """Plan the batches. An audience small enough (``diff_inline_members``) is diffed right
    here; a larger one returns the DiffShards Map's items (``planned``: false)."""
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    workdir = scratch_dir()
    try:
        with recorded_failure(bucket, run, "chunk"):
            if run.kind == "custom_audience":
                if not audience or not audience.get("audience_id"):
                    raise DestinationError("chunk needs the audience id from EnsureAudience")
                plan: Any = audience_domain.prepare_diff(
                    bucket,
                    run,
                    str(audience["audience_id"]),
                    batch_size=run.options.mapping_batch_size,
                )
                if isinstance(plan, audience_domain.DiffPlan):
                    members = audience_domain.estimated_members(bucket, run, plan)
                    if members > settings.diff_inline_members:
                        return {
                            "planned": False,
                            "bucket": bucket.name,
                            "plan_id": plan.plan_id,
                            "items_key": plan.items_key,
                            "members_estimate": members,
                        }
                    plan = audience_domain.diff_inline(bucket, run, plan, workdir=workdir)
            else:
                plan = event_plan.plan_events(
                    bucket,
                    run,
                    batch_size=run.options.event_batch_size,
                    workdir=workdir,
                )
                # Rows grouping rejected count toward the threshold too: checked here, on
                # every execution (a re-run reuses the plan), before any event is sent.
                event_plan.check_rejected_share(
                    bucket, run, plan, reject_threshold=run.options.reject_threshold
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _planned(bucket, plan)


def _planned(bucket: Bucket, plan: Any) -> dict[str, Any]:
    return {
        "planned": True,
        "bucket": bucket.name,
        "manifest_key": plan.manifest_key,
        "plan_id": plan.plan_id,
        "batches": plan.batches,
        "pending_batches": plan.pending_batches,
    }


def step_diff_shard(run_id: str, item: dict[str, Any]) -> dict[str, Any]:
    """One DiffShards child: diff one shard of the plan (at once when its marker exists)."""
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    run = load_run(bucket, run_id)
    shard = str(item["shard"])
    workdir = scratch_dir()
    try:
        with recorded_failure(bucket, run, f"diff-{shard}"):
            diff = audience_domain.load_diff(bucket, run, str(item["plan_id"]))
            record = audience_domain.diff_planned_shard(bucket, run, diff, shard, workdir=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Counts only: the batch keys stay in the marker, out of the state.
    return {"shard": shard, "members": record["members"]}


def step_collect_diff(run: Run, plan_id: str) -> dict[str, Any]:
    """After DiffShards: the shards' diffs added up into the chunk payload an
    inline diff returns."""
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    workdir = scratch_dir()
    try:
        with recorded_failure(bucket, run, "chunk"):
            diff = audience_domain.load_diff(bucket, run, plan_id)
            plan = audience_domain.collect_diff(bucket, run, diff, workdir=workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _planned(bucket, plan)


def step_map_audience_batch(run_id: str, audience_id: str, batch: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    run = load_run(bucket, run_id)
    client = make_client(settings, load_access_token(settings, run.resolved.credential), run)
    try:
        with recorded_failure(bucket, run, f"map-{int(batch['index']):05d}"):
            return audience_domain.send_batch(client, bucket, run, audience_id, batch)
    finally:
        record_calls(bucket, run, f"map-{int(batch['index']):05d}", client.stats.as_dict())


def step_send_event_batch(run_id: str, batch: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    run = load_run(bucket, run_id)
    client = make_client(settings, load_access_token(settings, run.resolved.credential), run)
    try:
        with recorded_failure(bucket, run, f"send-{int(batch['index']):05d}"):
            return event_send.send_event_batch(client, bucket, run, batch)
    finally:
        record_calls(bucket, run, f"send-{int(batch['index']):05d}", client.stats.as_dict())


def step_report(run: Run, validate: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    paths = run.paths
    validation = bucket.get_json(paths.validation) or {}
    plan = bucket.get_json(f"{paths.plan(chunk['plan_id'])}plan.json") or {}
    rejects = rejects_summary(bucket, run)
    report = base_report(run, "succeeded")
    received = int(validation.get("rows_received", 0))
    report["rows"] = {
        "received": received,
        "rejected": rejects["rejected"],
        "rejected_by_reason": rejects["by_reason"],
    }
    lines = lines_report(validation)
    if lines:
        # The rows read against the file's physical lines, with a note when they differ.
        report["lines"] = lines
    report["dropped_values"] = dropped_values_report(rejects)
    report["rejects_files"] = rejects["files"]
    report["columns"] = columns_report(validation)
    export = export_report(run, validation)
    if export:
        report["export"] = export
    done = bucket.count(f"{paths.plan(chunk['plan_id'])}done/")
    if run.kind == "custom_audience":
        with recorded_failure(bucket, run, "commit"):
            audience_domain.commit_audience(bucket, run, chunk["plan_id"])
        found = bucket.get_json(paths.ensure) or {}
        report["audience"] = {
            "audience_id": found.get("audience_id"),
            "name": run.resolved.audience_name,
            "created_this_run": bool(found.get("created")),
            # Other partner audiences of the name in TikTok (a create applied after its
            # answer was lost, or made by hand): not used, not deleted, named for a person.
            "duplicate_audience_ids": list(found.get("duplicate_audience_ids") or []),
        }
        report["rows"]["accepted"] = received - rejects["rejected"]
        report["members"] = {
            "note": "a member is one hashed identifier (EMAIL, PHONE, IDFA or AAID)",
            "in_file": plan.get("members", 0),
            "by_type": validation.get("identifiers_by_type", {}),
            # Invalid values in rows that still had another usable identifier.
            "dropped_invalid": validation.get("dropped_identifiers_by_reason", {}),
            "added": plan.get("added", 0),
            "removed": plan.get("removed", 0),
            "unchanged": plan.get("unchanged", 0),
        }
        if plan.get("mass_removal_allowed"):
            # Over max_removal_share, sent because the execution input allowed it.
            report["members"]["mass_removal_allowed"] = True
        report["reminders"] = list(AUDIENCE_REMINDERS)
    else:
        if done < int(chunk.get("batches", 0)):
            # A Distributed Map whose children failed must not end in a success report.
            with recorded_failure(bucket, run, "report"):
                raise DestinationError(
                    f"{int(chunk['batches']) - done} of {chunk['batches']} event batches did "
                    "not finish; re-run the same input to send them"
                )
        totals = event_send.sent_totals(bucket, run, chunk["plan_id"])
        report["rows"]["in_events_sent"] = received - rejects["rejected"]
        report["events"] = {
            "built": plan.get("events_built", 0),
            "sent": totals["events_sent"],
            "rejected_by_tiktok": totals["events_rejected_by_tiktok"],
            "duplicate_rows_merged": plan.get("duplicate_rows", 0),
            "event_id_conflict_rows": plan.get("event_id_conflict_rows", 0),
            "by_event": plan.get("by_event", {}),
            "by_event_channel": plan.get("by_event_channel", {}),
            "value_method": plan.get("value_method", {}),
            "notes": plan.get("conflicts", []),
            "event_set_ids": sorted({b["event_set_id"] for b in _manifest(bucket, chunk)}),
            "test_event_code": run.resolved.test_event_code,
        }
        report["reminders"] = list(EVENTS_REMINDERS)
    report["batches"] = {
        "total": int(chunk.get("batches", 0)),
        "sent_this_execution": int(chunk.get("pending_batches", 0)),
        "already_done_before": int(chunk.get("batches", 0)) - int(chunk.get("pending_batches", 0)),
        "done": done,
    }
    report["api"] = sum_calls(bucket, run)
    bucket.put_json(paths.report, report)
    emit_run_metrics(report)
    # Only now may the next run of this audience start: the snapshot is committed.
    leases.release(bucket, run, completed=True)
    return {"report_key": paths.report, "bucket": bucket.name}


def _manifest(bucket: Bucket, chunk: dict[str, Any]) -> list[dict[str, Any]]:
    return list(bucket.get_json(chunk["manifest_key"]) or [])


def step_notify(state: dict[str, Any], execution_id: str) -> dict[str, Any]:
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    error_name, message = parse_step_error(state.get("error"))
    run: Run | None = None
    if isinstance(state.get("run"), dict):
        try:
            run = Run.model_validate(state["run"])
        except ValueError:
            run = None
    if run is None:
        run = _rebuild_run(state, execution_id, settings, bucket)
    mine: list[dict[str, Any]] = []
    if run is not None:
        recorded = [bucket.get_json(o["Key"]) or {} for o in bucket.list(run.paths.failures)]
        mine = [r for r in recorded if r.get("execution_id") == run.execution_id]
    if mine and not is_classified(error_name):
        # A Map reports its child's failure under a States.* name: use the recorded cause.
        # The first failure is the cause; later ones (e.g. commit) are consequences.
        error_name, message = str(mine[0]["error"]), str(mine[0]["message"])
    # The numbers behind the failure (e.g. MassRemovalBlocked's sizes), from its record.
    details = next(
        (r["details"] for r in mine if r.get("error") == error_name and r.get("details")), None
    )
    action = action_for_error(error_name)
    detail = {
        "action": action.name,
        "title": action.title,
        "summary": action.summary,
        "steps": list(action.steps),
        "error": error_name,
        "message": message,
        "execution_id": execution_id,
        "run_id": run.run_id if run else None,
        "destination": run.destination if run else None,
        "data_template": run.data_template if run else None,
        "source": run.source.uri if run else None,
    }
    if details:
        detail["details"] = details
    if run is not None:
        report = base_report(run, "failed")
        report["workflow_action"] = detail
        report["api"] = sum_calls(bucket, run)
        rejects = rejects_summary(bucket, run)
        validation = bucket.get_json(run.paths.validation) or {}
        report["rows"] = {
            "received": validation.get("rows_received"),
            "rejected": rejects["rejected"],
            "rejected_by_reason": rejects["by_reason"],
        }
        lines = lines_report(validation)
        if lines:
            report["lines"] = lines
        report["dropped_values"] = dropped_values_report(rejects)
        report["rejects_files"] = rejects["files"]
        export = export_report(run, validation)
        if export:
            report["export"] = export
        report_key = run.paths.report
    else:
        report = {"status": "failed", "execution_id": execution_id, "workflow_action": detail}
        report_key = execution_report_key(execution_id)
    bucket.put_json(report_key, report)
    emit_workflow_action(action.name)
    if run is not None:
        emit_run_metrics(report)
        # A failed run gives its target back; the next run diffs against what it may have
        # sent (pending journals), so nothing is lost by letting it go.
        leases.release(bucket, run)
    publish_workflow_action(settings, detail)
    cause = f"{action.title}: {message}\n" + "\n".join(
        f"{i}. {step}" for i, step in enumerate(action.steps, 1)
    )
    return {
        "action": action.name,
        "cause": cause,
        "report_key": report_key,
        "notification_id": uuid.uuid4().hex,
    }


def step_raise_action(
    action: str, cause: str, notification_id: str, execution_id: str
) -> dict[str, Any]:
    """Fail the execution with the workflow action, or resume it when it is redriven.

    The first call for a notification raises an error named after the action. A redrive
    re-runs only the failed state, so a second call for the same notification means someone
    resolved the cause and redrove: return, and the state machine starts over at Preflight.
    """
    settings = load_settings()
    bucket = Bucket(settings.state_bucket)
    marker = raised_marker_key(execution_id, notification_id)
    if bucket.exists(marker):
        logger.info("redrive: resuming the run", extra={"action": action})
        return {"resumed": True}
    bucket.put_json(marker, {"action": action, "execution_id": execution_id})
    raise workflow_action_error(action)(cause)


def workflow_action_error(action: str) -> type[DestinationError]:
    """An exception class named after the action: Lambda reports it as the error type."""
    return type(action, (DestinationError,), {})


def _rebuild_run(
    state: dict[str, Any], execution_id: str, settings: Settings, bucket: Bucket
) -> Run | None:
    """The run of an execution that failed in Preflight, when its input can still name one.

    Preflight failed before returning the run, so rebuild it from the execution input (no
    TikTok call) to give the report a run id to re-run by. None when the input itself is
    what is wrong.
    """
    event = {k: v for k, v in state.items() if k not in ("error", "notify", "run")}
    try:
        return build_run(event, execution_id, settings, bucket)
    except Exception:
        return None
