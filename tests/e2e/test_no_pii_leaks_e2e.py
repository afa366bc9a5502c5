"""No raw identifier or token anywhere a run leaves a trace.

An audience file, an events file (with a rejected row) and a failing audience file
(InputRejected) run through the state machine with every log at DEBUG; then the handler
logs, pytest's captured log records, stdout/stderr, every object in the state bucket, the
execution history of every execution (each state's input and output), the run results and
what reached the TikTok emulator are searched for each raw email and phone (as written in
the file, normalized email, E.164 phone) and for the access token.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import phonenumbers
import pytest

from tests.conftest import TOKEN, write_csv
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import (
    LOCAL_APP_SECRET,
    REGION,
    STATE_BUCKET,
    LocalDestination,
    RunResult,
)

pytestmark = pytest.mark.e2e

# Written the way exports write them: mixed case, padding, national and formatted phones.
AUDIENCE_ROWS = [
    (" Ann.Lee@Example.COM ", "+1 (415) 555-0131"),
    ("bjorn.k@example.org", "415.555.0132"),
    ("carla+vip@example.net", "(415) 555 0133"),
    ("dev.o@example.com", "+14155550134"),
]
EVENT_ROWS = [
    ("Purchase", "ord-1", "Emil.Sand@Example.com", "+1 415-555-0141"),
    ("Purchase", "ord-2", "", "415 555 0142"),
    ("Lead", "lead-1", "fatima.r@example.org", ""),
    ("Lead", "lead-2", "gus@example", "+1 415 555 01"),  # both invalid: a rejected row
]
# The failing run: most rows unusable, yet every value is still somebody's data.
REJECTED_ROWS = [
    ("hana.at.example.com", "+1 415 555 01"),
    ("ivan@@example.com", "555-01"),
    ("jo@example", "+44 20 7946"),
    ("kim@example.com", "+1 415 555 0151"),  # valid
]
EVENTS_HEADER = "event,event_id,email,phone,timestamp"
SERVICE = "tiktok-destination"  # POWERTOOLS_SERVICE_NAME: the handlers' logger
SECRETS = {"access token": TOKEN, "app secret": LOCAL_APP_SECRET}
HASH = re.compile(r"[0-9a-f]{64}")
MEMBER_LINE = re.compile(r"[A-Z0-9]+_SHA256\t[0-9a-f]{64}")
# Third-party HTTP clients log whole requests and responses at DEBUG (the layer pins them at
# WARNING); "responses" is moto's request interceptor, which exists only in the local runner.
THIRD_PARTY = ("botocore", "boto3", "s3transfer", "urllib3", "responses", "moto")


@dataclass(frozen=True)
class Needle:
    label: str
    value: str


def needles() -> list[Needle]:
    found: list[Needle] = []
    emails = [e for e, _ in AUDIENCE_ROWS + REJECTED_ROWS] + [r[2] for r in EVENT_ROWS]
    phones = [p for _, p in AUDIENCE_ROWS + REJECTED_ROWS] + [r[3] for r in EVENT_ROWS]
    for i, email in enumerate(e for e in emails if e):
        found.append(Needle(f"email {i} as written", email.strip()))
        found.append(Needle(f"email {i} normalized", email.strip().lower()))
    for i, phone in enumerate(p for p in phones if p):
        found.append(Needle(f"phone {i} as written", phone))
        try:
            parsed = phonenumbers.parse(phone, "US")
        except phonenumbers.NumberParseException:
            continue
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        found.append(Needle(f"phone {i} E.164", e164))
    return found


SECRET_NEEDLES = [Needle(label, value) for label, value in SECRETS.items()]


def leaks(sources: dict[str, str], wanted: list[Needle]) -> list[str]:
    out: list[str] = []
    for where, text in sources.items():
        lowered = text.lower()
        out.extend(f"{n.label} in {where}" for n in wanted if n.value.lower() in lowered)
    return out


# ------------------------------------------------------------------- runs
def _recent() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_everything(local: LocalDestination, tmp_path: Path) -> list[RunResult]:
    audience = write_csv(
        tmp_path / "vip.csv", "Email,PHONE", [f'"{e}",{p}' for e, p in AUDIENCE_ROWS]
    )
    events = write_csv(
        tmp_path / "orders.csv",
        EVENTS_HEADER,
        [f"{name},{eid},{email},{phone},{_recent()}" for name, eid, email, phone in EVENT_ROWS],
    )
    rejected = write_csv(
        tmp_path / "vip-broken.csv", "Email,PHONE", [f"{e},{p}" for e, p in REJECTED_ROWS]
    )
    results = [
        local.run_file(audience, "acme_audiences", "vip"),
        local.run_file(events, "acme_offline", "purchases"),
        local.run_file(rejected, "acme_audiences", "vip"),
    ]
    assert [r.status for r in results] == ["SUCCEEDED", "SUCCEEDED", "FAILED"], [
        r.cause for r in results
    ]
    assert results[1].report is not None and results[1].report["rows"]["rejected"] == 1
    assert results[2].error == "InputRejected"
    return results


@pytest.fixture
def debug_logs(
    local: LocalDestination, caplog: pytest.LogCaptureFixture, handler_logs: io.StringIO
) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG, the handlers' Powertools loggers included."""
    # Import the handler modules now: their Powertools loggers set their own level (INFO
    # from the environment) when created, which must not undo the DEBUG set here.
    for name, spec in local.lambdas.specs.items():
        local.lambdas.load(name, spec)
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("tiktok", "aws_lambda_powertools")):
            caplog.set_level(logging.DEBUG, logger=name)
    # Powertools binds sys.stdout when a handler module is first imported, so after the
    # first LocalDestination of the session its JSON lines go to that one's stream, not
    # to this test's handler_logs: point them here (reported to the lead as a runner bug).
    handlers = [
        h for h in logging.getLogger(SERVICE).handlers if isinstance(h, logging.StreamHandler)
    ]
    assert handlers, f"no Powertools stream handler on the '{SERVICE}' logger"
    previous = [h.setStream(handler_logs) for h in handlers]
    yield caplog
    for handler, stream in zip(handlers, previous, strict=True):
        if stream is not None:
            handler.setStream(stream)


# ---------------------------------------------------------------- sources
def state_objects() -> dict[str, str]:
    s3 = boto3.client("s3", region_name=REGION)
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=STATE_BUCKET):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=STATE_BUCKET, Key=obj["Key"])["Body"].read()
            out[f"s3://{STATE_BUCKET}/{obj['Key']}"] = body.decode("utf-8", errors="replace")
    return out


def execution_histories(local: LocalDestination) -> dict[str, str]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    out = {}
    executions = sfn.list_executions(stateMachineArn=local.state_machine_arn)["executions"]
    for execution in executions:
        arn = execution["executionArn"]
        described = sfn.describe_execution(executionArn=arn)
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        assert any("stateEnteredEventDetails" in e for e in events)
        out[f"history of {arn}"] = json.dumps([described, events], default=str)
    assert len(out) == 3
    return out


def record_text(record: logging.LogRecord) -> str:
    # The formatted message plus every attribute: Powertools and botocore put data in extras.
    return f"{record.getMessage()} {vars(record)!r}"


# ------------------------------------------------------------------ tests
def test_no_raw_identifier_or_token_anywhere_a_run_leaves_a_trace(
    local: LocalDestination,
    emulator: TikTokEmulator,
    handler_logs: io.StringIO,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    results = run_everything(local, tmp_path)
    # The search itself finds what it looks for: every value as written is in the inputs.
    inputs = {p.name: p.read_text() for p in tmp_path.glob("*.csv")}
    written = [n for n in needles() if n.label.endswith("as written")]
    assert {hit.split(" in ")[0] for hit in leaks(inputs, written)} == {n.label for n in written}

    captured = capsys.readouterr()
    records = debug_logs.records
    assert any(r.levelno == logging.DEBUG for r in records), "DEBUG logging is on"
    assert handler_logs.getvalue(), "the handlers logged"
    sources: dict[str, str] = {
        "handler logs": handler_logs.getvalue(),
        "stdout": captured.out,
        "stderr": captured.err,
        **state_objects(),
        **execution_histories(local),
        "what reached TikTok": json.dumps(
            [emulator.received_events, emulator.audiences("7000000000000000001")], default=str
        ),
    }
    for result in results:
        sources[f"result of {result.execution_arn}"] = json.dumps(
            [result.error, result.cause, result.output, result.report], default=str
        )
    own_records = "\n".join(record_text(r) for r in records if not r.name.startswith(THIRD_PARTY))
    all_records = "\n".join(record_text(r) for r in records)

    assert leaks({**sources, "captured log records": all_records}, needles()) == []
    assert leaks({**sources, "captured log records": own_records}, SECRET_NEEDLES) == []


def test_hashed_outputs_hold_hashes_only(
    local: LocalDestination, emulator: TikTokEmulator, tmp_path: Path
) -> None:
    run_everything(local, tmp_path)
    objects = {k.removeprefix(f"s3://{STATE_BUCKET}/"): v for k, v in state_objects().items()}

    member_files = [
        k
        for k in objects
        if k.endswith(
            (
                "snapshot.txt",
                "adds.txt",
                "deletes.txt",
                "members.sorted.txt",
            )
        )
        # A shard's own full batches, the batches cut from every shard's tail, the tails.
        or re.search(r"/batches/(add|delete)-([0-9a-f]|tail)-\d{5}\.txt$", k)
        or re.search(r"/tails/(add|delete)-[0-9a-f]\.txt$", k)
        or re.search(r"/validate/[0-9a-f]{16}/range-\d{5}/shard-[0-9a-f]\.txt$", k)
        or re.search(r"/(snapshot|snapshots/[0-9a-f]{16}|adds|deletes)/shard-[0-9a-f]\.txt$", k)
    ]
    assert any("/snapshots/" in k for k in member_files)  # the committed snapshot's shards
    assert any("/shard-" in k for k in member_files)  # validate's hashed output
    assert any("/batches/" in k for k in member_files)
    assert any("/tails/" in k for k in member_files)
    for key in member_files:
        bad = [line for line in objects[key].splitlines() if not MEMBER_LINE.fullmatch(line)]
        assert bad == [], f"{key} holds a line that is not TYPE<tab>sha256"

    event_files = [
        k
        for k in objects
        if re.search(r"/validate/[0-9a-f]{16}/range-\d{5}/events\.jsonl$", k)
        or re.search(r"/batches/\d+\.json$", k)
    ]
    assert len(event_files) == 2
    users = 0
    for key in event_files:
        text = objects[key]
        if key.endswith(".jsonl"):
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            docs = [json.loads(text)]
        for user in _users(docs):
            users += 1
            values = [v for value in user.values() for v in _as_list(value)]
            assert values and all(HASH.fullmatch(str(v)) for v in values), (
                f"{key}: a user field is not a SHA-256 hash"
            )
    assert users >= 2 * 3, "three events, in the validated file and in a batch"
    assert leaks({k: objects[k] for k in member_files + event_files}, needles()) == []


def test_secrets_stay_out_of_third_party_debug_logs(
    local: LocalDestination,
    emulator: TikTokEmulator,
    debug_logs: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    path = write_csv(tmp_path / "vip.csv", "Email,PHONE", ["zoe@example.com,+14155550160"])
    assert local.run_file(path, "acme_audiences", "vip").succeeded
    third_party = "\n".join(
        record_text(r) for r in debug_logs.records if r.name.startswith(THIRD_PARTY)
    )
    assert leaks({"third-party log records": third_party}, SECRET_NEEDLES) == []


def _users(docs: list[Any]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if isinstance(doc, dict):
            for key, value in doc.items():
                if key == "user" and isinstance(value, dict):
                    yield value
                else:
                    yield from _users([value])
        elif isinstance(doc, list):
            yield from _users(doc)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
