"""What each function of template.yaml may do, evaluated from its policies.

moto does not enforce IAM, so the local and e2e runs cannot catch a grant that is too wide
(or too narrow). These tests render every function's policy statements (inline statements
and the SAM policy templates the template uses) and ask, like IAM would, whether an action
on a concrete ARN is allowed: which secrets a function may read or write, which state bucket
prefixes it may write or delete under. The expected tables come from the steps' storage
calls (every key is built in runs/layout.py; steps.step_notify).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from tiktok_destination_local.runner import _CfnLoader

ROOT = Path(__file__).resolve().parents[2]

PARTITION, REGION, ACCOUNT, STACK = "aws", "us-east-1", "123456789012", "tiktok-destination"
STATE = "arn:aws:s3:::state-bucket"
RATE_LIMIT_TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/rate-limit"
INBOX = "arn:aws:s3:::inbox-bucket"
# Secrets Manager appends "-" and six random characters to every secret's ARN.
SECRETS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
APP = SECRETS + "tiktok-destination/app-AbCdEf"
CREDENTIAL = SECRETS + "tiktok-destination/credentials/acme-AbCdEf"
OTHER_SECRET = SECRETS + "tiktok-destination/other-AbCdEf"

SECRET_WRITES = (
    "secretsmanager:PutSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:UpdateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:RestoreSecret",
    "secretsmanager:UpdateSecretVersionStage",
    "secretsmanager:PutResourcePolicy",
)

# One sample key per kind of object in the state bucket.
STATE_KEYS = {
    "config": "config/destinations.toml",
    "run": "runs/0123456789abcdef/report.json",
    "execution": "executions/abc/raised/n1.json",
    "execution-report": "executions/abc/report.json",
    "oauth-state": "oauth/used-states/nonce1",
    "registry": "audiences/7000000000000000001/0123456789abcdef/audience.json",
    "snapshot": "audiences/7000000000000000001/0123456789abcdef/snapshot.json",
    "snapshot-shard": "audiences/7000000000000000001/0123456789abcdef/snapshots/0123456789abcdef/"
    "shard-a.txt",
    "legacy-snapshot": "audiences/7000000000000000001/0123456789abcdef/snapshot.txt",
    "journal": "audiences/7000000000000000001/0123456789abcdef/pending/0123456789abcdef.json",
    "lease": "leases/audience/7000000000000000001/0123456789abcdef.json",
}
INBOX_KEY = "inbox/acme/vip/export.csv"

FUNCTIONS = (
    "PreflightFunction",
    "ValidateFunction",
    "ChunkFunction",
    "AudienceFunction",
    "EventsFunction",
    "ReportFunction",
    "NotifyFunction",
    "OAuthFunction",
)

# The state bucket objects each function writes (s3:PutObject).
WRITES = {
    "PreflightFunction": {"run", "lease", "execution-report"},
    "ValidateFunction": {"run"},
    "ChunkFunction": {"run", "journal"},
    "AudienceFunction": {"run", "registry"},
    "EventsFunction": {"run"},
    "ReportFunction": {"run", "snapshot", "snapshot-shard", "legacy-snapshot", "lease"},
    "NotifyFunction": {"run", "execution", "execution-report", "lease"},
    "OAuthFunction": {"oauth-state"},
}
# ... deletes (s3:DeleteObject): ensure forgets a membership, the commit drops journals,
# and the steps that end a run (or find it superseded) release its lease.
DELETES = {
    "PreflightFunction": {"lease"},
    "AudienceFunction": {"registry", "snapshot", "snapshot-shard", "legacy-snapshot", "journal"},
    "ReportFunction": {"snapshot", "snapshot-shard", "legacy-snapshot", "journal", "lease"},
    "NotifyFunction": {"lease"},
}
# ... and reads (s3:GetObject); every reader also needs s3:ListBucket to see 404s.
READS = {
    "PreflightFunction": {"config", "lease"},
    "ValidateFunction": {"run"},
    "ChunkFunction": {"run", "snapshot", "snapshot-shard", "legacy-snapshot", "journal"},
    "AudienceFunction": {"run", "registry"},
    "EventsFunction": {"run"},
    "ReportFunction": {"run", "lease"},
    "NotifyFunction": {"config", "run", "execution", "execution-report", "lease"},
    "OAuthFunction": set(),
}

# The SAM policy templates the template may use, as SAM expands them.
_S3_READ = (
    "s3:GetObject",
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:GetObjectVersion",
    "s3:GetLifecycleConfiguration",
)
_S3_CRUD = (
    *_S3_READ,
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutLifecycleConfiguration",
    "s3:DeleteObject",
)


# ------------------------------------------------------------------ rendering
def _template() -> dict[str, Any]:
    return _CfnLoader.load((ROOT / "template.yaml").read_text(encoding="utf-8"))


TEMPLATE = _template()


def _parameter(name: str) -> str | None:
    param = TEMPLATE["Parameters"].get(name)
    return None if param is None else str(param.get("Default", ""))


def _att(name: str, attribute: str) -> str:
    known = {
        ("StateBucket", "Arn"): STATE,
        ("InboxBucket", "Arn"): INBOX,
        ("RateLimitTable", "Arn"): RATE_LIMIT_TABLE,
    }
    return known.get((name, attribute), f"<{name}.{attribute}>")


def _ref(name: str) -> str:
    pseudo = {
        "AWS::Partition": PARTITION,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::StackName": STACK,
        "StateBucket": "state-bucket",
        "InboxBucket": "inbox-bucket",
    }
    if name in pseudo:
        return pseudo[name]
    value = _parameter(name)
    return value if value is not None else f"<{name}>"


def _render(value: Any) -> str:
    """A resource value as the concrete string IAM would see after deployment."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return _ref(value["Ref"])
    if "Fn::GetAtt" in value:
        name, attribute = value["Fn::GetAtt"]
        return _att(name, attribute)
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        assert isinstance(text, str), f"unsupported Fn::Sub form {value}"

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name and not name.startswith("AWS::"):
                return _att(*name.split(".", 1))
            return _ref(name)

        return re.sub(r"\$\{([^}]+)\}", sub, text)
    raise AssertionError(f"cannot render {value!r}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policies: Iterable[Any]) -> list[dict[str, Any]]:
    """Allow statements as {"actions": [...], "resources": [...]}, SAM templates expanded."""
    found: list[dict[str, Any]] = []
    for policy in policies:
        assert isinstance(policy, dict), f"managed policy {policy!r}: model it in this test"
        ((name, body),) = policy.items()
        if name == "Statement":
            for statement in _as_list(body):
                assert statement.get("Effect") == "Allow", statement
                found.append(
                    {
                        "actions": _as_list(statement["Action"]),
                        "resources": [_render(r) for r in _as_list(statement["Resource"])],
                    }
                )
        elif name in ("S3ReadPolicy", "S3CrudPolicy"):
            bucket = f"arn:aws:s3:::{_render(body['BucketName'])}"
            actions = _S3_READ if name == "S3ReadPolicy" else _S3_CRUD
            found.append({"actions": list(actions), "resources": [bucket, f"{bucket}/*"]})
        elif name == "SNSPublishMessagePolicy":
            found.append({"actions": ["sns:Publish"], "resources": ["<NotifyTopic>"]})
        elif name == "LambdaInvokePolicy":
            found.append({"actions": ["lambda:InvokeFunction"], "resources": ["<function>"]})
        elif name == "EventBridgePutEventsPolicy":
            found.append({"actions": ["events:PutEvents"], "resources": ["<default bus>"]})
        else:
            raise AssertionError(f"SAM policy template {name} is not modelled in this test")
    return found


def _matches(pattern: str, value: str) -> bool:
    # IAM wildcards: * any run of characters (including "/"), ? exactly one.
    return fnmatch.fnmatchcase(value, pattern)


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(
        any(_matches(a.lower(), action.lower()) for a in s["actions"])
        and any(_matches(r, resource) for r in s["resources"])
        for s in statements
    )


def _function(name: str) -> dict[str, Any]:
    resource = TEMPLATE["Resources"][name]
    assert resource["Type"] == "AWS::Serverless::Function"
    props: dict[str, Any] = resource["Properties"]
    return props


def _may(name: str, action: str, resource: str) -> bool:
    return _allows(_statements(_function(name).get("Policies", [])), action, resource)


def _object_kinds(name: str, action: str) -> set[str]:
    return {kind for kind, key in STATE_KEYS.items() if _may(name, action, f"{STATE}/{key}")}


def test_the_function_list_is_complete() -> None:
    functions = {
        n for n, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    assert functions == set(FUNCTIONS)


# ------------------------------------------------------------------ secrets
@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_may_write_the_app_secret(function: str) -> None:
    allowed = [a for a in SECRET_WRITES if _may(function, a, APP)]
    assert allowed == [], f"{function} may {allowed} the app secret (app secret, state key)"


def test_only_the_oauth_function_writes_secrets_and_only_credentials() -> None:
    for function in FUNCTIONS:
        for secret in (CREDENTIAL, OTHER_SECRET):
            allowed = {a for a in SECRET_WRITES if _may(function, a, secret)}
            if function == "OAuthFunction" and secret == CREDENTIAL:
                # _store_credential: put_secret_value, create_secret the first time.
                assert allowed == {
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:CreateSecret",
                }
            else:
                assert allowed == set(), f"{function} may {sorted(allowed)} {secret}"


def test_only_preflight_and_oauth_read_the_app_secret() -> None:
    readers = {f for f in FUNCTIONS if _may(f, "secretsmanager:GetSecretValue", APP)}
    # Preflight checks the authorized advertisers with the app secret; OAuth verifies
    # states with its signing key. Audience and Events need only the access token.
    assert readers == {"PreflightFunction", "OAuthFunction"}
    # The "-??????" suffix: the app grant must not cover secrets whose name starts with "app".
    lookalike = SECRETS + "tiktok-destination/application-x-AbCdEf"
    assert not _may("OAuthFunction", "secretsmanager:GetSecretValue", lookalike)


def test_token_readers_are_the_steps_that_call_tiktok() -> None:
    readers = {f for f in FUNCTIONS if _may(f, "secretsmanager:GetSecretValue", CREDENTIAL)}
    assert readers == {"PreflightFunction", "AudienceFunction", "EventsFunction"}
    assert not _may("AudienceFunction", "secretsmanager:GetSecretValue", OTHER_SECRET)


# ------------------------------------------------------------------ state bucket
def test_no_function_uses_s3_crud_policy() -> None:
    for function in FUNCTIONS:
        templates = [
            next(iter(p)) for p in _function(function).get("Policies", []) if isinstance(p, dict)
        ]
        assert "S3CrudPolicy" not in templates, function


@pytest.mark.parametrize("function", FUNCTIONS)
def test_writes_go_only_where_the_step_writes(function: str) -> None:
    assert _object_kinds(function, "s3:PutObject") == WRITES[function]
    assert not _may(function, "s3:PutObject", f"{INBOX}/{INBOX_KEY}")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_deletes_only_under_the_prefixes_that_need_them(function: str) -> None:
    assert _object_kinds(function, "s3:DeleteObject") == DELETES.get(function, set())
    assert not _may(function, "s3:DeleteObject", f"{INBOX}/{INBOX_KEY}")


def test_only_chunk_deletes_plans_and_nothing_else_of_a_run() -> None:
    # A plan the removal guard blocked (its shard files, batches, shard markers), or one
    # committed before and planned again, is removed whole by chunk (plan or collect step).
    plan_file = f"{STATE}/runs/0123456789abcdef/plan/0123456789abcdef/diff/shard-a.json"
    deleters = {f for f in FUNCTIONS if _may(f, "s3:DeleteObject", plan_file)}
    assert deleters == {"ChunkFunction"}
    assert not _may("ChunkFunction", "s3:DeleteObject", f"{STATE}/{STATE_KEYS['run']}")
    assert not _may("ChunkFunction", "s3:DeleteObject", f"{STATE}/runs/0123456789abcdef/run.json")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_reads_match_the_step(function: str) -> None:
    assert _object_kinds(function, "s3:GetObject") == READS[function]
    if READS[function]:
        assert _may(function, "s3:ListBucket", STATE), f"{function} would see 403 for 404"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_changes_acls_or_bucket_settings(function: str) -> None:
    for action in (
        "s3:PutObjectAcl",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketPolicy",
        "s3:DeleteBucket",
        "s3:DeleteObjectVersion",
    ):
        for target in (STATE, f"{STATE}/{STATE_KEYS['run']}", INBOX, f"{INBOX}/{INBOX_KEY}"):
            assert not _may(function, action, target), f"{function} may {action} {target}"


def test_buckets_are_named_by_cloudformation() -> None:
    # A name built from the stack name breaks on upper-case or long stack names.
    for name in ("InboxBucket", "StateBucket"):
        assert "BucketName" not in TEMPLATE["Resources"][name]["Properties"], name


# ------------------------------------------------------------------ retention
def test_inbox_objects_expire_after_the_parameter() -> None:
    rules = TEMPLATE["Resources"]["InboxBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    assert len(expiring) == 1
    (rule,) = expiring
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == {"Ref": "InboxRetentionDays"}
    # The whole bucket: schedule source prefixes live outside inbox/ and hold raw data too.
    assert "Prefix" not in rule and "Filter" not in rule
    assert _parameter("InboxRetentionDays") == "30"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_logs_to_a_group_with_retention(function: str) -> None:
    group = _function(function)["LoggingConfig"]["LogGroup"]["Ref"]
    resource = TEMPLATE["Resources"][group]
    assert resource["Type"] == "AWS::Logs::LogGroup"
    assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert _parameter("LogRetentionDays") == "90"


def test_state_machine_logs_keep_the_same_retention() -> None:
    group = TEMPLATE["Resources"]["StateMachineLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ------------------------------------------------------------------ failed starts
def _queue_of(arn_value: Any) -> str:
    name, attribute = arn_value["Fn::GetAtt"]
    assert attribute == "Arn"
    assert TEMPLATE["Resources"][name]["Type"] == "AWS::SQS::Queue"
    return str(name)


def _alarm_notifies_topic(queue: str) -> None:
    alarms = [
        r["Properties"]
        for r in TEMPLATE["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        in r["Properties"].get("Dimensions", [])
    ]
    assert len(alarms) == 1, f"no (or several) alarms on {queue}"
    (alarm,) = alarms
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    assert {"Ref": "NotifyTopic"} in alarm["AlarmActions"]


def test_the_inbox_rule_has_an_alarmed_dead_letter_queue() -> None:
    machine = TEMPLATE["Resources"]["DestinationStateMachine"]["Properties"]
    (rule,) = machine["Events"].values()
    queue = _queue_of(rule["Properties"]["DeadLetterConfig"]["Arn"])
    # With an Arn (not Type: SQS) SAM adds no queue policy: EventBridge needs this one.
    policies = [
        r["Properties"]
        for r in TEMPLATE["Resources"].values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue} in r["Properties"]["Queues"]
    ]
    assert len(policies) == 1
    (statement,) = policies[0]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    # Only the rule SAM generates for this event (<machine><event>) may send.
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["DestinationStateMachineInboxObjectCreated", "Arn"]
    }
    _alarm_notifies_topic(queue)


def test_the_schedule_target_has_an_alarmed_dead_letter_queue() -> None:
    target = TEMPLATE["Resources"]["DestinationSchedule"]["Properties"]["Target"]
    queue = _queue_of(target["DeadLetterConfig"]["Arn"])
    # The Scheduler delivers dead letters with the schedule's execution role.
    role = TEMPLATE["Resources"]["ScheduleRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])]
    assert any(
        s["Action"] == "sqs:SendMessage" and s["Resource"] == {"Fn::GetAtt": [queue, "Arn"]}
        for s in statements
    )
    _alarm_notifies_topic(queue)


def test_cloudwatch_may_publish_to_the_encrypted_topic() -> None:
    key_ref = TEMPLATE["Resources"]["NotifyTopic"]["Properties"]["KmsMasterKeyId"]
    # alias/aws/sns cannot be granted to CloudWatch: alarms would be dropped.
    assert isinstance(key_ref, dict) and "Ref" in key_ref, key_ref
    key = TEMPLATE["Resources"][key_ref["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"
    grants = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(grants) == 1
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(_as_list(grants[0]["Action"]))
    # Notify publishes to the same topic and needs the key as well.
    statements = _statements(_function("NotifyFunction")["Policies"])
    assert _allows(statements, "kms:GenerateDataKey", f"<{key_ref['Ref']}.Arn>")


# ------------------------------------------------------------------ OAuth URL, redrive
def test_the_public_oauth_function_has_reserved_concurrency() -> None:
    props = _function("OAuthFunction")
    assert props["FunctionUrlConfig"]["AuthType"] == "NONE"
    assert props["ReservedConcurrentExecutions"] == {"Ref": "OAuthReservedConcurrency"}
    parameter = TEMPLATE["Parameters"]["OAuthReservedConcurrency"]
    # 0 would throttle the callback entirely.
    assert parameter["MinValue"] >= 1 and int(parameter["Default"]) >= 1


def test_redrive_is_granted_on_the_map_run_child_executions() -> None:
    machine = TEMPLATE["Resources"]["DestinationStateMachine"]["Properties"]
    statements = _statements(machine["Policies"])
    redrive = [s for s in statements if "states:RedriveExecution" in s["actions"]]
    assert redrive, "redriving a run redrives its Map Run's children with the machine's role"
    for statement in redrive:
        for resource in statement["resources"]:
            assert f":states:{REGION}:{ACCOUNT}:execution:{STACK}/" in resource, resource
    child = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}/3f2a7c1e-label:child-0001"
    assert _allows(statements, "states:RedriveExecution", child)
    # The parent executions are redriven by the operator, not by the machine itself.
    parent = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}:run-1"
    assert not _allows(statements, "states:RedriveExecution", parent)


# ------------------------------------------------------------------ dashboard and alarms
SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")
SEARCH_SCHEMA = re.compile(r"SEARCH\('\{([^}]*)\} MetricName=\"(\w+)\"")


def _dashboard() -> dict[str, Any]:
    import json

    (dashboard,) = [
        r["Properties"]
        for r in TEMPLATE["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Dashboard"
    ]
    body = dashboard["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    # Every ${...} is a resource, attribute or pseudo parameter CloudFormation fills in.
    for name in SUB_VARIABLE.findall(body):
        assert name.startswith("AWS::") or name.split(".")[0] in TEMPLATE["Resources"], name
    loaded = json.loads(SUB_VARIABLE.sub(lambda m: f"<{m.group(1)}>", body))
    assert isinstance(loaded, dict)
    return loaded


def _dashboard_metrics() -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric name, {dimension: value}) of every series the dashboard shows;
    a SEARCH expression's dimensions have the value "*"."""
    found = []
    for widget in _dashboard()["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                match = SEARCH_SCHEMA.search(row[0]["expression"])
                assert match, row
                namespace, *dims = (part.strip('"') for part in match.group(1).split(","))
                found.append((namespace, match.group(2), dict.fromkeys(dims, "*")))
            else:
                namespace, name, *rest = [part for part in row if isinstance(part, str)]
                found.append((namespace, name, dict(zip(rest[0::2], rest[1::2], strict=True))))
    return found


def test_the_dashboard_shows_every_metric_the_code_emits_with_its_dimensions() -> None:
    from tiktok_destination.adapters.metrics import (
        ACTION_DIMENSION,
        METRIC_NAMES,
        RUN_DIMENSIONS,
        RUN_METRICS,
        WORKFLOW_ACTION_METRIC,
    )

    ours = [
        (name, tuple(sorted(dims)))
        for ns, name, dims in _dashboard_metrics()
        if ns == "<AWS::StackName>"
    ]
    assert {name for name, _ in ours} == set(METRIC_NAMES)
    for name, dims in ours:
        # The dimension sets metrics.py publishes: per run target, per action, or service.
        if name == WORKFLOW_ACTION_METRIC:
            assert dims == (ACTION_DIMENSION,)
        else:
            assert name in RUN_METRICS
            assert dims in (tuple(sorted(RUN_DIMENSIONS)), ("service",)), (name, dims)


def test_the_dashboard_shows_executions_and_dead_letter_queues() -> None:
    series = _dashboard_metrics()
    states = {name for ns, name, _ in series if ns == "AWS/States"}
    assert {"ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed"} <= states
    queues = {r for r, res in TEMPLATE["Resources"].items() if res["Type"] == "AWS::SQS::Queue"}
    assert queues == {"InboxRuleDeadLetterQueue", "ScheduleDeadLetterQueue"}
    body = TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for queue in queues:
        assert "${" + queue + ".QueueName}" in body


def test_metrics_namespace_is_the_stack_and_service_matches_the_functions() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "AWS::StackName"}
    service = variables["POWERTOOLS_SERVICE_NAME"]
    per_service = [dims for ns, _, dims in _dashboard_metrics() if "service" in dims]
    assert per_service and all(dims == {"service": service} for dims in per_service)
    alarm = TEMPLATE["Resources"]["TikTokRateLimitedAlarm"]["Properties"]
    assert alarm["Namespace"] == {"Ref": "AWS::StackName"}
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]


def test_failed_executions_and_rate_limiting_alarm_the_workflow_action_topic() -> None:
    from tiktok_destination.adapters.metrics import METRIC_NAMES

    alarms = {
        name: r["Properties"]
        for name, r in TEMPLATE["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    failed = [a for a in alarms.values() if a["MetricName"] == "ExecutionsFailed"]
    assert len(failed) == 1
    assert failed[0]["Namespace"] == "AWS/States"
    assert failed[0]["Dimensions"] == [
        {"Name": "StateMachineArn", "Value": {"Ref": "DestinationStateMachine"}}
    ]
    limited = [a for a in alarms.values() if a["MetricName"] == "TikTokRateLimited"]
    assert len(limited) == 1 and "TikTokRateLimited" in METRIC_NAMES
    for alarm in (failed[0], limited[0]):
        assert alarm["AlarmActions"] == [{"Ref": "NotifyTopic"}]
        assert alarm["Statistic"] == "Sum"
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
        assert alarm["TreatMissingData"] == "notBreaching"


# ------------------------------------------------------------------ app-wide rate limit
TIKTOK_CALLERS = {"PreflightFunction", "AudienceFunction", "EventsFunction"}
DYNAMODB_ACTIONS = (
    "dynamodb:UpdateItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
)


def test_the_steps_that_call_tiktok_take_slots_from_the_rate_limit_table() -> None:
    table = TEMPLATE["Resources"]["RateLimitTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    other_table = "arn:aws:dynamodb:us-east-1:123456789012:table/other"
    for function in FUNCTIONS:
        allowed = {a for a in DYNAMODB_ACTIONS if _may(function, a, RATE_LIMIT_TABLE)}
        expected = (
            {"dynamodb:UpdateItem", "dynamodb:GetItem"} if function in TIKTOK_CALLERS else set()
        )
        assert allowed == expected, function
        assert not any(_may(function, a, other_table) for a in DYNAMODB_ACTIONS), function
        variables = (_function(function).get("Environment") or {}).get("Variables") or {}
        if function in TIKTOK_CALLERS:
            # Without it the step paces only itself (settings.rate_limit_table).
            assert variables.get("RATE_LIMIT_TABLE") == {"Ref": "RateLimitTable"}, function
        else:
            assert "RATE_LIMIT_TABLE" not in variables, function


# ------------------------------------------------------------------ Map results
def test_the_machine_exports_map_results_only_under_their_prefix_and_they_expire() -> None:
    machine = TEMPLATE["Resources"]["DestinationStateMachine"]["Properties"]
    statements = _statements(machine["Policies"])
    exported = f"{STATE}/map-results/0123-map-run/SUCCEEDED_0.json"
    for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"):
        assert _allows(statements, action, exported), action
    for kind, key in STATE_KEYS.items():
        assert not _allows(statements, "s3:PutObject", f"{STATE}/{key}"), kind
    rules = TEMPLATE["Resources"]["StateBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "map-results/" and r.get("ExpirationInDays") for r in rules), (
        "exported Map results must expire"
    )
