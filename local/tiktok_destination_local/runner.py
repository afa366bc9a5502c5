"""The local default: the deployed state machine and handlers, on moto, with no AWS account.

What runs is exactly what deploys: ``template.yaml`` names the functions (code directory,
handler, environment) and the state machine's substitutions, and
``statemachine/destination.asl.json`` is loaded unchanged into moto's Step Functions
executor. moto cannot run Lambda code without Docker, so ``LambdaFunction.invoke`` is
replaced by an in-process call of the handler the function names.

Two moto gaps are bridged here (see DESIGN.md): the EventBridge rule does not start the
state machine, so the runner starts the execution with the event the rule would deliver;
and Retry waits are real sleeps, so they are scaled down (``retry_wait_scale``). With a
state dir, the buckets are written through to it (``state_dir.BucketMirror``), so an
acknowledged write survives a crash as it would on S3.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tiktok_destination.errors import ConfigurationError
from tiktok_destination.runs.layout import (
    RUNS_PREFIX,
    PlanPaths,
    RunPaths,
    execution_report_key,
)

from .state_dir import INBOX_BUCKET_DIR, STATE_BUCKET_DIR, BucketMirror

REGION = "us-east-1"
ACCOUNT = "123456789012"
INBOX_BUCKET = "tiktok-destination-inbox-local"
STATE_BUCKET = "tiktok-destination-state-local"
RATE_LIMIT_TABLE = "tiktok-destination-rate-limit-local"
CONFIG_KEY = "config/destinations.toml"
SECRET_PREFIX = "tiktok-destination/"  # noqa: S105 - a name prefix, not a secret
STATE_MACHINE_NAME = "tiktok-destination"
LOCAL_APP_ID = "local-app"
LOCAL_APP_SECRET = "local-app-secret"  # noqa: S105 - the emulator's own app, not a credential


def project_root() -> Path:
    """The SAM bundle root: an env override, the working tree, or the source checkout."""
    candidates = [os.environ.get("TIKTOK_DESTINATION_ROOT", ""), str(Path.cwd())]
    candidates.append(str(Path(__file__).resolve().parents[2]))
    for candidate in candidates:
        if (
            candidate
            and (Path(candidate) / "template.yaml").exists()
            and (Path(candidate) / "statemachine").is_dir()
        ):
            return Path(candidate)
    raise ConfigurationError(
        "cannot find template.yaml and statemachine/: run from the repository root or set "
        "TIKTOK_DESTINATION_ROOT"
    )


# ------------------------------------------------------------- template.yaml
class _CfnLoader:
    """A YAML loader that keeps CloudFormation's short tags as ``{"Fn::X": value}``."""

    @staticmethod
    def load(text: str) -> dict[str, Any]:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
            name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
            if isinstance(node, yaml.ScalarNode):
                value: Any = loader.construct_scalar(node)
                if suffix == "GetAtt":
                    value = value.split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
            return {name: value}

        Loader.add_multi_constructor("!", construct)
        loaded: dict[str, Any] = yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader subclass
        return loaded


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str


@dataclass
class Bundle:
    root: Path
    functions: dict[str, FunctionSpec]
    definition_path: Path
    substitutions: dict[str, str]  # ${Name} -> function or bucket logical id

    @classmethod
    def load(cls, root: Path) -> Bundle:
        template = _CfnLoader.load((root / "template.yaml").read_text())
        globals_fn = (template.get("Globals") or {}).get("Function") or {}
        functions: dict[str, FunctionSpec] = {}
        machine: dict[str, Any] | None = None
        for logical_id, resource in (template.get("Resources") or {}).items():
            props = resource.get("Properties") or {}
            if resource.get("Type") == "AWS::Serverless::Function":
                functions[logical_id] = FunctionSpec(
                    logical_id,
                    root / str(props["CodeUri"]),
                    str(props.get("Handler") or globals_fn.get("Handler", "app.lambda_handler")),
                )
            elif resource.get("Type") == "AWS::Serverless::StateMachine":
                machine = props
        if machine is None:
            raise ConfigurationError("template.yaml has no AWS::Serverless::StateMachine")
        substitutions: dict[str, str] = {}
        for name, value in (machine.get("DefinitionSubstitutions") or {}).items():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                substitutions[name] = str(value["Fn::GetAtt"][0])
            elif isinstance(value, dict) and "Ref" in value:
                substitutions[name] = str(value["Ref"])
        return cls(root, functions, root / str(machine["DefinitionUri"]), substitutions)


# ------------------------------------------------------------ in-process λ
class _Context:
    """The parts of the Lambda context object Powertools reads."""

    def __init__(self, function_name: str):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


class InProcessLambdas:
    """Maps moto function names to our handlers and answers ``invoke`` in-process.

    Handlers log through Powertools' logger, whose handler is pointed at ``log_stream``.
    ``sys.stdout`` is never swapped: Map children run on several threads at once, and a
    process-wide redirect from one of them captures (and, on exit, misplaces) everyone's.
    """

    def __init__(self, bundle: Bundle, log_stream: Any):
        self.bundle = bundle
        self.log_stream = log_stream
        self.handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self.specs: dict[str, FunctionSpec] = {}
        self.invocations: list[tuple[str, str]] = []  # (function, outcome)
        self.faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def register(self, function_name: str, spec: FunctionSpec) -> None:
        self.specs[function_name] = spec

    def load(self, function_name: str, spec: FunctionSpec) -> None:
        module_file, attr = spec.handler.rsplit(".", 1)
        path = spec.code_dir / f"{module_file.replace('.', '/')}.py"
        module_name = f"tiktok_destination_fn_{spec.logical_id}"
        with self._load_lock:  # the first calls of a Map's function arrive together
            module = sys.modules.get(module_name)
            if module is None:
                module_spec = importlib.util.spec_from_file_location(module_name, path)
                if module_spec is None or module_spec.loader is None:
                    raise ConfigurationError(f"cannot load handler {path}")
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)
                sys.modules[module_name] = module
            self.handlers[function_name] = getattr(module, attr)

    def _route_handler_logs(self) -> None:
        # Powertools binds its stream once, when the first handler module is imported; a
        # later deployment in the same process must still get its own handlers' logs.
        for handler in logging.getLogger("tiktok-destination").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is not self.log_stream:
                handler.setStream(self.log_stream)

    def inject_fault(
        self,
        function: str,
        exc: BaseException,
        *,
        times: int = 1,
        after: int = 0,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Tests: after ``after`` matching invocations, the next ``times`` raise ``exc``.

        ``function`` is part of the function name (e.g. "AudienceFunction"); ``when`` narrows
        it by event (e.g. only ``map`` actions).
        """
        with self._lock:
            self.faults.append(_Fault(function, exc, times, after, when))

    def _take_fault(self, function_name: str, event: dict[str, Any]) -> BaseException | None:
        with self._lock:
            for fault in self.faults:
                if fault.function not in function_name or fault.times <= 0:
                    continue
                if fault.when is not None and not fault.when(event):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                return fault.exc
        return None

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, Any]) -> bytes:
        event = json.loads(body) if isinstance(body, str | bytes) and body else (body or {})
        try:
            if function_name not in self.handlers:
                self.load(function_name, self.specs[function_name])
            handler = self.handlers[function_name]
            fault = self._take_fault(function_name, event)
            if fault is not None:
                raise fault
            self._route_handler_logs()
            result = handler(event, _Context(function_name))
        except Exception as exc:
            self.invocations.append((function_name, type(exc).__name__))
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        self.invocations.append((function_name, "ok"))
        return json.dumps(result).encode()


@dataclass
class _Fault:
    function: str
    exc: BaseException
    times: int
    after: int
    when: Callable[[dict[str, Any]], bool] | None


# ----------------------------------------------------------------- results
@dataclass
class RunResult:
    status: str
    execution_arn: str
    report: dict[str, Any] | None
    error: str | None = None
    cause: str | None = None
    output: dict[str, Any] | None = None
    states: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class LocalDestination:
    """Deploys the bundle into moto and runs inputs through it.

    ``with LocalDestination(state_dir=...) as local: local.run_file(...)``. With
    ``state_dir`` the state bucket (configuration, snapshots, registry, reports) and the
    inbox are loaded from that directory and every write reaches it before the S3 call
    returns, so runs build on each other, and survive a crash, like in AWS.
    """

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        tiktok_base_url: str,
        root: Path | None = None,
        retry_wait_scale: float = 0.01,
        progress: Callable[[str], None] | None = None,
        log_stream: Any | None = None,
        poll_interval: float = 0.05,
        environment: dict[str, str] | None = None,
    ):
        self.root = root or project_root()
        self.bundle = Bundle.load(self.root)
        self.state_dir = state_dir
        self.tiktok_base_url = tiktok_base_url
        self.retry_wait_scale = retry_wait_scale
        self.progress = progress or (lambda _msg: None)
        self.log_stream = log_stream if log_stream is not None else io.StringIO()
        self.poll_interval = poll_interval
        self.extra_environment = environment or {}
        self.lambdas = InProcessLambdas(self.bundle, self.log_stream)
        self.mirror = (
            BucketMirror(
                state_dir, {STATE_BUCKET: STATE_BUCKET_DIR, INBOX_BUCKET: INBOX_BUCKET_DIR}
            )
            if state_dir is not None
            else None
        )
        self._stack = contextlib.ExitStack()
        self.state_machine_arn = ""

    # ---------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalDestination:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        from moto import mock_aws
        from moto.awslambda.models import LambdaFunction
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

        env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "STATE_BUCKET": STATE_BUCKET,
            "INBOX_BUCKET": INBOX_BUCKET,
            "CONFIG_KEY": CONFIG_KEY,
            "SECRET_PREFIX": SECRET_PREFIX,
            "TIKTOK_BASE_URL": self.tiktok_base_url,
            "RATE_LIMIT_TABLE": RATE_LIMIT_TABLE,
            "POWERTOOLS_SERVICE_NAME": "tiktok-destination",
            "POWERTOOLS_METRICS_NAMESPACE": "tiktok-destination",
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            # Runs here overlap only when started side by side in one process (tests):
            # a run waiting for another run's lease need not wait AWS's minute.
            "LEASE_WAIT_SECONDS": "1",
            **self.extra_environment,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        self._stack.callback(_restore_env, saved)
        for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            if var in os.environ:
                saved_var = os.environ.pop(var)
                self._stack.callback(os.environ.__setitem__, var, saved_var)

        self._stack.enter_context(
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        )
        # moto logs every failed state at ERROR with the whole parse tree; our report and
        # the workflow action already say what failed, in words.
        # moto's request interceptor logs every passed-through URL at DEBUG, and
        # oauth2/advertiser/get/ carries the app secret in its query.
        responses_logger = logging.getLogger("responses")
        responses_level = responses_logger.level
        responses_logger.setLevel(logging.WARNING)
        self._stack.callback(responses_logger.setLevel, responses_level)
        moto_logger = logging.getLogger("moto.stepfunctions")
        previous_level = moto_logger.level
        moto_logger.setLevel(logging.CRITICAL)
        self._stack.callback(moto_logger.setLevel, previous_level)
        lambdas = self.lambdas

        def invoke(fn: Any, body: Any, request_headers: Any, response_headers: Any) -> bytes:
            return lambdas.invoke(fn.function_name, body, response_headers)

        original_invoke = LambdaFunction.invoke
        LambdaFunction.invoke = invoke  # type: ignore[method-assign,assignment]
        self._stack.callback(setattr, LambdaFunction, "invoke", original_invoke)
        original_time = retrier_decl.time
        retrier_decl.time = _ScaledTime(self.retry_wait_scale)  # type: ignore[assignment]
        self._stack.callback(setattr, retrier_decl, "time", original_time)

        from tiktok_destination.adapters import metrics, secrets
        from tiktok_destination.adapters import s3 as storage

        log_stream = self.log_stream

        def emf_to_handler_log(line: str) -> None:
            log_stream.write(line + "\n")

        self._stack.callback(setattr, metrics, "emf_sink", metrics.emf_sink)
        metrics.emf_sink = emf_to_handler_log
        storage.s3_client.cache_clear()
        self._stack.callback(storage.s3_client.cache_clear)
        secrets.clear_cache()
        self._stack.callback(secrets.clear_cache)
        self._deploy()
        if self.mirror is not None:
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.s3.models import s3_backends

            self.mirror.load(s3_backends[DEFAULT_ACCOUNT_ID]["aws"])
            self._stack.callback(self.mirror.install())

    def _deploy(self) -> None:
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INBOX_BUCKET, STATE_BUCKET):
            s3.create_bucket(Bucket=bucket)
        # The app-wide rate limiter's table, as template.yaml's RateLimitTable.
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=RATE_LIMIT_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="tiktok-destination-local",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as zf:
            zf.writestr("app.py", "# the local runner calls the real handler in-process\n")
        arns: dict[str, str] = {}
        for logical_id, spec in self.bundle.functions.items():
            name = f"tiktok-destination-{logical_id}"
            arns[logical_id] = lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": code.getvalue()},
            )["FunctionArn"]
            self.lambdas.register(name, spec)
        definition = self.bundle.definition_path.read_text()
        values = {**arns, "StateBucket": STATE_BUCKET, "InboxBucket": INBOX_BUCKET}
        for name, logical_id in self.bundle.substitutions.items():
            definition = definition.replace("${" + name + "}", values[logical_id])
        sfn = boto3.client("stepfunctions", region_name=REGION)
        self.state_machine_arn = sfn.create_state_machine(
            name=STATE_MACHINE_NAME, definition=definition, roleArn=role, type="STANDARD"
        )["stateMachineArn"]
        boto3.client("sns", region_name=REGION)  # topic stays unset locally: EventBridge only

    # -------------------------------------------------------------- setup
    def put_config(self, text: str | bytes) -> None:
        from tiktok_destination.config.loader import load_config

        load_config(text, source="--config")  # fail here, with the field, not mid-run
        body = text.encode() if isinstance(text, str) else text
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=STATE_BUCKET, Key=CONFIG_KEY, Body=body
        )

    def put_secret(self, name: str, value: dict[str, Any]) -> None:
        sm = boto3.client("secretsmanager", region_name=REGION)
        try:
            sm.create_secret(Name=name, SecretString=json.dumps(value))
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))
        from tiktok_destination.adapters import secrets

        secrets.clear_cache()

    def put_token(self, credential: str, token: str, advertiser_ids: list[str]) -> None:
        self.put_secret(
            f"{SECRET_PREFIX}credentials/{credential}",
            {
                "access_token": token,
                "advertiser_ids": advertiser_ids,
                "scope": [],
                "authorized_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    def put_app(self, app_id: str, secret: str, state_key: str | None = None) -> None:
        self.put_secret(
            f"{SECRET_PREFIX}app",
            {"app_id": app_id, "secret": secret, "state_key": state_key or uuid.uuid4().hex},
        )

    def drop(self, file: Path, destination: str, data_template: str) -> dict[str, Any]:
        """Put ``file`` in the inbox as the S3 drop would; return the EventBridge event."""
        key = f"inbox/{destination}/{data_template}/{file.name}"
        s3 = boto3.client("s3", region_name=REGION)
        s3.upload_file(str(file), INBOX_BUCKET, key)
        head = s3.head_object(Bucket=INBOX_BUCKET, Key=key)
        return s3_object_created_event(
            INBOX_BUCKET, key, str(head["ETag"]).strip('"'), int(head["ContentLength"])
        )

    def drop_export(
        self, folder: Path, destination: str, data_template: str, *, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Put every file under ``folder`` in the inbox as one export in parts,
        ``inbox/<destination>/<data_template>/<name>/<path in folder>``, in key order;
        return each object's EventBridge event (a warehouse's parts land the same way)."""
        prefix = f"inbox/{destination}/{data_template}/{name or folder.name}/"
        s3 = boto3.client("s3", region_name=REGION)
        events = []
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = prefix + file.relative_to(folder).as_posix()
            s3.upload_file(str(file), INBOX_BUCKET, key)
            head = s3.head_object(Bucket=INBOX_BUCKET, Key=key)
            events.append(
                s3_object_created_event(
                    INBOX_BUCKET, key, str(head["ETag"]).strip('"'), int(head["ContentLength"])
                )
            )
        return events

    # ---------------------------------------------------------------- run
    def run_export(
        self,
        folder: Path,
        destination: str,
        data_template: str,
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run a folder as one export, with the completion rules of a console start: its
        manifest when it has one, its marker when the template asks for one, else the
        folder as it is."""
        if not self.drop_export(folder, destination, data_template):
            raise ConfigurationError(f"{folder} holds no files to send")
        return self.start(
            {
                "bucket": INBOX_BUCKET,
                "key": f"inbox/{destination}/{data_template}/{folder.name}/",
                "destination": destination,
                "data_template": data_template,
                **(extra or {}),
            }
        )

    def run_file(
        self, file: Path, destination: str, data_template: str, extra: dict[str, Any] | None = None
    ) -> RunResult:
        event = self.drop(file, destination, data_template)
        if extra:
            # Extra orchestration input (event_set_id, test_event_code) rides on a console-
            # style start, the same shape a data engineer would type.
            detail = event["detail"]
            event = {
                "bucket": detail["bucket"]["name"],
                "key": detail["object"]["key"],
                "destination": destination,
                "data_template": data_template,
                **extra,
            }
        return self.start(event)

    def rerun(self, run_id: str, extra: dict[str, Any] | None = None) -> RunResult:
        run = self.state_json(RunPaths(run_id).run)
        if run is None:
            raise ConfigurationError(
                f"no run {run_id} in the local state bucket: check the id in the failed "
                "run's report, and pass the same --state-dir"
            )
        event: dict[str, Any] = {
            "bucket": run["source"]["bucket"],
            "key": run["source"]["key"],
            "destination": run["destination"],
            "data_template": run["data_template"],
        }
        template = run.get("template") or {}
        if template.get("event_set_id_source") == "orchestration input":
            event["event_set_id"] = template.get("event_set_id")
        if template.get("test_event_code"):
            event["test_event_code"] = template["test_event_code"]
        # e.g. allow_mass_removal: it applies to one execution, so it is never carried over
        return self.start({**event, **(extra or {})})

    def start(self, execution_input: dict[str, Any]) -> RunResult:
        return self.wait(self.begin(execution_input))

    def begin(self, execution_input: dict[str, Any]) -> str:
        """Start an execution without waiting for it (runs side by side, as on AWS)."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        return str(
            sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=f"local-{uuid.uuid4().hex[:12]}",
                input=json.dumps(execution_input),
            )["executionArn"]
        )

    def wait(self, arn: str) -> RunResult:
        """Follow an execution to its end, showing progress, and collect its report."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        seen = 0
        entered: list[str] = []
        plan: dict[str, Any] = {}
        shown_done = -1
        next_look = 0.0
        run_id_shown = False
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            running = desc["status"] == "RUNNING"
            if running and time.monotonic() < next_look:
                time.sleep(self.poll_interval)
                continue
            # moto answers the whole history every time, and serializing it holds the GIL
            # the execution's own threads need: a long run's history costs more with each
            # state, so once the run id is shown (promptly: a user who interrupts the run
            # needs it), look again only after ten times what this look took. The look
            # after the end always reads it all.
            looked = time.monotonic()
            history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            for event in history[seen:]:
                details = event.get("stateEnteredEventDetails")
                if details:
                    entered.append(details["name"])
                    self.progress(f"→ {details['name']}")
                exited = event.get("stateExitedEventDetails") or {}
                if exited.get("name") == "Preflight":
                    run_id = (json.loads(exited.get("output") or "{}").get("run") or {}).get(
                        "run_id"
                    )
                    if run_id:
                        # Shown early: after an interruption, `rerun RUN_ID` picks it up.
                        self.progress(f"  run id {run_id}")
                        run_id_shown = True
                if exited.get("name") in ("ChunkAudience", "ChunkEvents"):
                    state = json.loads(exited.get("output") or "{}")
                    plan = {**state.get("chunk", {}), "run_id": state["run"]["run_id"]}
            seen = len(history)
            if not running:
                break
            if plan and entered and entered[-1] in ("MapAudienceBatches", "SendEventBatches"):
                # Long maps: show batches done, read from the done markers the children write.
                prefix = PlanPaths(RunPaths(plan["run_id"]).plan(plan["plan_id"])).done_prefix
                done = len(self.state_keys(prefix))
                if done != shown_done:
                    self.progress(f"  {done}/{plan.get('batches', '?')} batches done")
                    shown_done = done
            if run_id_shown:
                now = time.monotonic()
                next_look = now + 10 * (now - looked)
            time.sleep(self.poll_interval)
        output = json.loads(desc["output"]) if desc.get("output") else None
        report = None
        if output and isinstance(output.get("report"), dict):
            report = self.state_json(output["report"]["report_key"])
        elif desc["status"] == "SUCCEEDED":
            # e.g. a superseded run: it wrote a report of its own saying it sent nothing
            report = self.state_json(execution_report_key(arn))
        error = cause = None
        if desc["status"] != "SUCCEEDED":
            error, cause = desc.get("error"), desc.get("cause")
            report = self._failed_report(arn)
        return RunResult(desc["status"], arn, report, error, cause, output, entered)

    def _failed_report(self, execution_arn: str) -> dict[str, Any] | None:
        # Notify wrote the report; find it by the execution id it records.
        s3 = boto3.client("s3", region_name=REGION)
        direct = self.state_json(execution_report_key(execution_arn))
        if direct:
            return direct
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=STATE_BUCKET, Prefix=RUNS_PREFIX):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/report.json"):
                    report = self.state_json(obj["Key"])
                    if report and report.get("execution_id") == execution_arn:
                        return report
        return None

    def state_json(self, key: str) -> Any | None:
        s3 = boto3.client("s3", region_name=REGION)
        try:
            body = s3.get_object(Bucket=STATE_BUCKET, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def state_text(self, key: str) -> str | None:
        s3 = boto3.client("s3", region_name=REGION)
        try:
            return str(s3.get_object(Bucket=STATE_BUCKET, Key=key)["Body"].read().decode())
        except s3.exceptions.NoSuchKey:
            return None

    def state_keys(self, prefix: str = "") -> list[str]:
        s3 = boto3.client("s3", region_name=REGION)
        paginator = s3.get_paginator("list_objects_v2")
        return [
            obj["Key"]
            for page in paginator.paginate(Bucket=STATE_BUCKET, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]


def s3_object_created_event(bucket: str, key: str, etag: str, size: int) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object (what the rule hands the machine)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag},
            "reason": "PutObject",
        },
    }


class _ScaledTime:
    """Stands in for the ``time`` module in moto's retrier so Retry waits are shortened."""

    def __init__(self, scale: float):
        self.scale = scale

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds * self.scale))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


__all__ = ["LocalDestination", "RunResult", "s3_object_created_event"]
