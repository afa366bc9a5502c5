"""Every workflow action through the state machine: fault on, run fails, fault off, re-run.

For each action the emulator is switched into the fault, the run fails with that action's
name, cause and steps, and nothing reaches TikTok's audience or event set. Then the fault
is cleared, the same input is re-run, and what TikTok holds equals what a run that never
failed would have left (expected hashes are computed here, independently of the product).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ADVERTISER, CONFIG, EVENT_SET, TOKEN, write_csv
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination.runs.workflow_actions import ACTIONS
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import REGION, LocalDestination, RunResult, project_root

pytestmark = pytest.mark.e2e

OTHER_ADVERTISER = "7000000000000000099"
UNKNOWN_EVENT_SET = "7100000000000000777"
FRESH_TOKEN = "e2e-token-reauthorized-51be07"
AUDIENCE_NAME = "VIP customers"
EVENTS_HEADER = "event,event_id,email,phone,content_id,price,quantity,currency,value,timestamp"

# The product's own attempt count, captured before the fixture below removes the waits.
CLIENT_ATTEMPTS = RetryPolicy().max_retries + 1
RETRIABLE = "TikTokRateLimited"


@pytest.fixture(autouse=True)
def fast_client_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The product's retry count, without the backoff waits (settings: TIKTOK_BACKOFF_*).
    monkeypatch.setenv("TIKTOK_BACKOFF_BASE", "0")
    monkeypatch.setenv("TIKTOK_BACKOFF_MAX", "0")


@pytest.fixture
def deployment(local: LocalDestination, monkeypatch: pytest.MonkeyPatch) -> LocalDestination:
    # Pacing at 10 QPS costs 0.1 s per retried call; irrelevant to what is tested here.
    monkeypatch.setenv("TIKTOK_QPS", "1000")
    # A create answered 503 is looked up for twice the client's timeout in each of the
    # Audience step's attempts before the run fails (60 s each at the default 30 s).
    monkeypatch.setenv("TIKTOK_TIMEOUT_SECONDS", "1")
    return local


def _config(event_set_id: str) -> str:
    return CONFIG.replace(f'event_set_id = "{EVENT_SET}"', f'event_set_id = "{event_set_id}"')


def asl_attempts(state: str) -> int:
    """1 + the MaxAttempts of ``state``'s Retry for TikTok's transient errors."""
    definition = json.loads((project_root() / "statemachine/destination.asl.json").read_text())
    found = _find_state(definition["States"], state)
    for retrier in found.get("Retry", []):
        if RETRIABLE in retrier["ErrorEquals"]:
            return int(retrier["MaxAttempts"]) + 1
    return 1


def _find_state(states: dict[str, Any], name: str) -> dict[str, Any]:
    if name in states:
        return dict(states[name])
    for value in states.values():
        inner = (value.get("ItemProcessor") or {}).get("States")
        if inner:
            try:
                return _find_state(inner, name)
            except KeyError:
                continue
    raise KeyError(name)


# ------------------------------------------------------------------- inputs
PEOPLE = [(f"member{i}@example.com", f"+1 415 555 {i:04d}") for i in range(6)]
BAD_ROWS = [(f"not-an-email-{i}", f"tel-unknown-{i}") for i in range(7)]


def audience_csv(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    return write_csv(tmp_path / "vip.csv", "Email,PHONE", [f"{e},{p}" for e, p in rows])


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def e164(phone: str) -> str:
    """By hand, for the "+1 415 555 0101" numbers here: the E.164 the hash is taken over."""
    return "+" + "".join(c for c in phone if c.isdigit())


def expected_members(rows: list[tuple[str, str]]) -> set[str]:
    # Hashed here, not with the product's hash_identifier: the emails are already lowercase.
    return {f"EMAIL_SHA256:{sha256(e)}" for e, _ in rows} | {
        f"PHONE_SHA256:{sha256(e164(p))}" for _, p in rows
    }


def _recent() -> str:
    return (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


EVENT_ROWS = [
    ("Purchase", "o-1", "ann@example.com", "", "sku1", "10", "1", "USD", "10"),
    ("Purchase", "o-2", "", "+1 415 555 0101", "sku2", "5", "2", "USD", "10"),
    ("Lead", "l-1", "cat@example.com", "", "", "", "", "", ""),
    ("Lead", "l-2", "dan@example.com", "+1 415 555 0102", "", "", "", "", ""),
]


def events_csv(tmp_path: Path) -> Path:
    when = _recent()
    return write_csv(
        tmp_path / "orders.csv", EVENTS_HEADER, [",".join((*r, when)) for r in EVENT_ROWS]
    )


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def expected_events(event_set_id: str) -> set[tuple[str, str, str, str | None, str | None]]:
    return {
        (
            event_set_id,
            name,
            event_id,
            sha256(email) if email else None,
            sha256(e164(phone)) if phone else None,
        )
        for name, event_id, email, phone, *_ in EVENT_ROWS
    }


def received_events(emulator: TikTokEmulator) -> list[tuple[str, str, str, Any, Any]]:
    out = []
    for event in emulator.received_events:
        user = event.get("user") or {}
        out.append(
            (
                event["event_set_id"],
                event["event"],
                event["event_id"],
                _one(user.get("email")),
                _one(user.get("phone")),
            )
        )
    return out


# ------------------------------------------------------------------- faults
Switch = Callable[[LocalDestination, TikTokEmulator], None]


@dataclass(frozen=True)
class Fault:
    action: str
    kind: str  # "audience" | "events"
    failing_state: str
    inject: Switch
    clear: Switch
    event_set_id: str = EVENT_SET

    @property
    def runs_map(self) -> bool:
        return self.failing_state in ("MapAudienceBatches", "SendEventBatches")


def reauthorize(local: LocalDestination, emulator: TikTokEmulator) -> None:
    """What the OAuth callback does: a new token for the advertiser replaces the stored one."""
    emulator.add_token(FRESH_TOKEN, [ADVERTISER], role="ADMIN")
    local.put_token("acme", FRESH_TOKEN, [ADVERTISER])


def _clear_faults(local: LocalDestination, emulator: TikTokEmulator) -> None:
    emulator.clear_faults()


def _set(name: str, value: Any) -> Switch:
    def switch(local: LocalDestination, emulator: TikTokEmulator) -> None:
        setattr(emulator, name, value)

    return switch


def _fail(path: str, **kwargs: Any) -> Switch:
    def switch(local: LocalDestination, emulator: TikTokEmulator) -> None:
        # Far more than every attempt a run makes: the fault holds until cleared.
        emulator.fail_next(path, times=10_000, **kwargs)

    return switch


FAULTS: dict[str, Fault] = {
    "advertiser-not-authorized-for-token": Fault(
        action="AdvertiserNotFound",
        kind="audience",
        failing_state="Preflight",
        inject=lambda _l, emu: emu.add_token(TOKEN, [OTHER_ADVERTISER]),
        clear=reauthorize,
    ),
    "advertiser-40300-at-first-advertiser-call": Fault(
        action="AdvertiserNotFound",
        kind="audience",
        failing_state="EnsureAudience",
        inject=_fail("dmp/custom_audience/list/", code=40300),
        clear=_clear_faults,
    ),
    "blocked-41000-at-first-advertiser-call": Fault(
        action="AccessBlocked",
        kind="audience",
        failing_state="EnsureAudience",
        inject=_fail("dmp/custom_audience/list/", code=41000),
        clear=_clear_faults,
    ),
    "revoked-token-40105": Fault(
        action="InvalidCredentials",
        kind="audience",
        failing_state="Preflight",
        inject=lambda _l, emu: emu.revoke_token(TOKEN),
        clear=reauthorize,
    ),
    "analyst-role-40001-at-first-write": Fault(
        action="MissingAdvertiserPermissions",
        kind="audience",
        failing_state="EnsureAudience",
        inject=lambda _l, emu: emu.add_token(TOKEN, [ADVERTISER], role="ANALYST"),
        clear=reauthorize,
    ),
    "audience-limit-reached": Fault(
        action="AudienceLimitReached",
        kind="audience",
        failing_state="EnsureAudience",
        inject=_set("audience_limit", 0),
        clear=_set("audience_limit", 400),
    ),
    "rate-limited-40100-on-every-mapping-call": Fault(
        action="RateLimited",
        kind="audience",
        failing_state="MapAudienceBatches",
        inject=_fail("segment/mapping/", code=40100),
        clear=_clear_faults,
    ),
    "tiktok-503-on-audience-create": Fault(
        action="TikTokUnavailable",
        kind="audience",
        failing_state="EnsureAudience",
        inject=_fail("segment/audience/", http_status=503),
        clear=_clear_faults,
    ),
    "event-set-not-registered": Fault(
        action="EventSetNotFound",
        kind="events",
        failing_state="Preflight",
        inject=lambda local, _emu: local.put_config(_config(UNKNOWN_EVENT_SET)),
        clear=lambda _l, emu: emu.add_event_set(ADVERTISER, UNKNOWN_EVENT_SET, "Stores (new)"),
        event_set_id=UNKNOWN_EVENT_SET,
    ),
    "rate-limited-qps-limit-zero": Fault(
        action="RateLimited",
        kind="events",
        failing_state="Preflight",
        inject=_set("qps_limit", 0),
        clear=_set("qps_limit", None),
    ),
    "tiktok-503-on-every-event-track-call": Fault(
        action="TikTokUnavailable",
        kind="events",
        failing_state="SendEventBatches",
        inject=_fail("event/track/", http_status=503),
        clear=_clear_faults,
    ),
}


# ------------------------------------------------------------------- checks
def cause_text(result: RunResult) -> str:
    """The execution's cause; a Task that fails it reports Lambda's JSON error payload."""
    cause = result.cause or ""
    try:
        payload = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(payload, dict) and "errorMessage" in payload:
        assert payload.get("errorType") == result.error
        return str(payload["errorMessage"])
    return cause


def assert_failed_with(result: RunResult, action_name: str) -> dict[str, Any]:
    action = ACTIONS[action_name]
    assert result.status == "FAILED", result.cause
    assert result.error == action_name, result.cause
    cause = cause_text(result)
    assert cause.startswith(f"{action.title}: "), cause
    numbered = [f"{i}. {step}" for i, step in enumerate(action.steps, 1)]
    assert cause.splitlines()[-len(numbered) :] == numbered
    assert result.report is not None, "Notify must write a report for every failure"
    assert result.report["status"] == "failed"
    detail = result.report["workflow_action"]
    assert detail["action"] == action_name
    assert (detail["title"], detail["summary"], detail["steps"]) == (
        action.title,
        action.summary,
        list(action.steps),
    )
    assert detail["message"] and detail["message"] in cause
    assert detail["execution_id"] == result.execution_arn
    return dict(detail)


def assert_nothing_sent(emulator: TikTokEmulator) -> None:
    assert all(not a["members"] for a in emulator.audiences(ADVERTISER)), "a member was mapped"
    accepted_mapping = [c for c in emulator.calls_log if c[1] == "segment/mapping/" and c[2] == 0]
    assert accepted_mapping == []
    assert emulator.received_events == []


def assert_audience_as_if_never_failed(
    emulator: TikTokEmulator, result: RunResult, rows: list[tuple[str, str]]
) -> None:
    assert result.succeeded, result.cause
    found = emulator.audiences(ADVERTISER)
    assert [a["name"] for a in found] == [AUDIENCE_NAME], "exactly one audience, created once"
    assert found[0]["members"] == expected_members(rows)
    report = result.report
    assert report is not None and report["status"] == "succeeded"
    assert report["audience"]["audience_id"] == found[0]["id"]
    identifiers = len(expected_members(rows))
    members = report["members"]
    assert (members["in_file"], members["added"], members["removed"]) == (
        identifiers,
        identifiers,
        0,
    )
    assert report["rows"]["received"] == report["rows"]["accepted"] == len(rows)
    assert "workflow_action" not in report


def assert_events_as_if_never_failed(
    emulator: TikTokEmulator, result: RunResult, event_set_id: str
) -> None:
    assert result.succeeded, result.cause
    received = received_events(emulator)
    assert len(received) == len(set(received)), "an event was sent twice"
    assert set(received) == expected_events(event_set_id)
    assert not any(e["duplicate"] for e in emulator.received_events)
    report = result.report
    assert report is not None and report["status"] == "succeeded"
    assert report["events"]["sent"] == report["events"]["built"] == len(EVENT_ROWS)
    assert report["rows"]["rejected"] == 0
    assert report["events"]["event_set_ids"] == [event_set_id]


def rerun(local: LocalDestination, failed: RunResult) -> RunResult:
    """Resolve: re-run the failed run's input (``tiktok-destination rerun RUN_ID``).

    A failure in Preflight leaves no run id in the report (see
    ``test_preflight_failure_report_names_its_run``), so there the failed execution's
    input is started again, the console's "new execution with the same input".
    """
    assert failed.report is not None
    run_id = failed.report.get("run_id")
    if run_id:
        return local.rerun(run_id)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    original = sfn.describe_execution(executionArn=failed.execution_arn)["input"]
    return local.start(json.loads(original))


# -------------------------------------------------------------------- tests
def _cases() -> list[Any]:
    return [pytest.param(fault, id=name) for name, fault in FAULTS.items()]


@pytest.mark.parametrize("fault", _cases())
def test_fault_fails_with_its_action_then_clearing_it_and_rerunning_converges(
    fault: Fault, deployment: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    if fault.kind == "audience":
        path = audience_csv(tmp_path, PEOPLE)
        destination, template = "acme_audiences", "vip"
    else:
        path = events_csv(tmp_path)
        destination, template = "acme_offline", "purchases"

    fault.inject(deployment, emulator)
    failed = deployment.run_file(path, destination, template)

    detail = assert_failed_with(failed, fault.action)
    assert failed.states[-3:] == [fault.failing_state, "Notify", "Failed"] or (
        # moto's Distributed Map succeeds over failed children; Report then refuses to
        # commit unfinished batches and Notify classifies the child's recorded failure.
        fault.runs_map and failed.states[-4:] == [fault.failing_state, "Report", "Notify", "Failed"]
    ), failed.states
    assert_nothing_sent(emulator)
    if fault.failing_state != "Preflight":
        assert detail["run_id"] and failed.report and failed.report["run_id"] == detail["run_id"]

    fault.clear(deployment, emulator)
    resolved = rerun(deployment, failed)

    if fault.kind == "audience":
        assert_audience_as_if_never_failed(emulator, resolved, PEOPLE)
    else:
        assert_events_as_if_never_failed(emulator, resolved, fault.event_set_id)


def test_retries_are_exhausted_before_rate_limited_is_raised(
    deployment: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    rows = PEOPLE[:2]  # 4 identifiers: one batch
    emulator.fail_next("segment/mapping/", code=40100, times=10_000)
    failed = deployment.run_file(audience_csv(tmp_path, rows), "acme_audiences", "vip")
    assert_failed_with(failed, "RateLimited")
    # Each Lambda attempt retries in-process, and Step Functions retries the Lambda.
    attempts = CLIENT_ATTEMPTS * asl_attempts("MapAudienceBatch")
    assert emulator.calls["segment/mapping/"] == attempts
    assert failed.report is not None
    assert failed.report["api"]["by_endpoint"]["segment/mapping/"] == attempts
    # The report counts the client's in-process retries of every Lambda attempt.
    assert failed.report["api"]["retries"] == (CLIENT_ATTEMPTS - 1) * asl_attempts(
        "MapAudienceBatch"
    )
    assert_nothing_sent(emulator)


def test_input_rejected_then_a_corrected_file_converges(
    deployment: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    # 7 of 13 rows unusable: above the test configuration's 50 % reject threshold.
    failed = deployment.run_file(audience_csv(tmp_path, PEOPLE + BAD_ROWS), "acme_audiences", "vip")
    detail = assert_failed_with(failed, "InputRejected")
    assert failed.states[-3:] == ["Validate", "Notify", "Failed"]
    assert f"{len(BAD_ROWS)} of {len(PEOPLE + BAD_ROWS)} rows rejected" in detail["message"]
    rejects = deployment.state_text(f"runs/{detail['run_id']}/rejects/validate.csv") or ""
    assert len(rejects.splitlines()) == 1 + len(BAD_ROWS), "header + one line per bad row"
    assert emulator.calls["segment/audience/"] == 0 and emulator.audiences(ADVERTISER) == []
    assert_nothing_sent(emulator)

    # "Clear" is the corrected export dropped under the same name: a new object, a new run.
    resolved = deployment.run_file(audience_csv(tmp_path, PEOPLE), "acme_audiences", "vip")
    assert_audience_as_if_never_failed(emulator, resolved, PEOPLE)
    assert resolved.report is not None and resolved.report["run_id"] != detail["run_id"]


def test_preflight_failure_report_names_its_run(
    deployment: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    emulator.revoke_token(TOKEN)
    failed = deployment.run_file(audience_csv(tmp_path, PEOPLE), "acme_audiences", "vip")
    assert_failed_with(failed, "InvalidCredentials")
    assert failed.report is not None
    assert failed.report.get("run_id"), "the failed report must name the run to re-run"
    reauthorize(deployment, emulator)
    assert_audience_as_if_never_failed(emulator, deployment.rerun(failed.report["run_id"]), PEOPLE)


def test_input_rejected_report_names_the_rejects_file(
    deployment: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    failed = deployment.run_file(audience_csv(tmp_path, PEOPLE + BAD_ROWS), "acme_audiences", "vip")
    detail = assert_failed_with(failed, "InputRejected")
    # The action's first step: "Read the run report and the rejects file it names".
    assert failed.report is not None
    assert failed.report["rejects_files"] == [
        f"s3://tiktok-destination-state-local/runs/{detail['run_id']}/rejects/validate.csv"
    ]
    assert failed.report["rows"]["received"] == len(PEOPLE + BAD_ROWS)
    assert failed.report["rows"]["rejected"] == len(BAD_ROWS)


# ------------------------------------------------------- notification targets
@dataclass
class Queues:
    sns: str
    events: str


@pytest.fixture
def notification_queues(
    deployment: LocalDestination, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Queues]:
    """An SNS topic (NOTIFY_TOPIC_ARN) and an EventBridge rule, each delivering to SQS."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events = boto3.client("events", region_name=REGION)

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    topic = sns.create_topic(Name="tiktok-destination-workflow-actions")["TopicArn"]
    sns_url, sns_arn = queue("workflow-actions-email")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sns_arn)
    events_url, events_arn = queue("workflow-actions-bus")
    events.put_rule(
        Name="workflow-actions",
        EventPattern=json.dumps(
            {"source": ["tiktok-destination"], "detail-type": ["Workflow action"]}
        ),
    )
    events.put_targets(Rule="workflow-actions", Targets=[{"Id": "queue", "Arn": events_arn}])
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", topic)
    yield Queues(sns_url, events_url)


def _drain(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_workflow_action_is_published_to_sns_and_eventbridge_without_personal_data(
    deployment: LocalDestination,
    emulator: TikTokEmulator,
    notification_queues: Queues,
    tmp_path: Path,
) -> None:
    raw_values = [e for e, _ in PEOPLE + BAD_ROWS] + [p for _, p in PEOPLE + BAD_ROWS]
    failed = deployment.run_file(audience_csv(tmp_path, PEOPLE + BAD_ROWS), "acme_audiences", "vip")
    detail = assert_failed_with(failed, "InputRejected")

    published = _drain(notification_queues.sns)
    assert len(published) == 1, "one notification per failed execution"
    assert published[0]["Subject"] == "tiktok-destination: Input rejected"
    message = json.loads(published[0]["Message"])
    assert message == detail
    assert message["steps"] == list(ACTIONS["InputRejected"].steps)

    bus = _drain(notification_queues.events)
    assert len(bus) == 1
    assert (bus[0]["source"], bus[0]["detail-type"]) == ("tiktok-destination", "Workflow action")
    assert bus[0]["detail"] == detail

    for text in (published[0]["Message"], json.dumps(bus[0])):
        assert "@example.com" not in text
        leaked = [v for v in raw_values if v in text]
        assert leaked == [], "a raw identifier reached a notification"
        assert TOKEN not in text
