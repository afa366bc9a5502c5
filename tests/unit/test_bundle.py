"""The deployable bundle holds together: template, state machine, error names and samples.

These checks catch the drift that only shows up at deploy time or on the first failed run:
a substitution the template no longer provides, a retried error name no handler raises, a
handler directory that moved, a sample event whose shape the state machine never sends.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tiktok_destination import errors
from tiktok_destination.config.resolved import ResolvedTemplate
from tiktok_destination.config.settings import load_settings
from tiktok_destination.runs.run import Run

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "destination.asl.json"
EVENTS = ROOT / "events"
SAMCONFIG = ROOT / "samconfig.toml"
REQUIREMENTS = ROOT / "layers" / "tiktok_destination" / "requirements.txt"

SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


# ------------------------------------------------------------------ loading
class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags into their long JSON form."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def _template() -> dict[str, Any]:
    loaded = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    assert isinstance(loaded, dict), "template.yaml is not a mapping"
    return loaded


def _asl() -> dict[str, Any]:
    loaded = json.loads(ASL.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _event(name: str) -> dict[str, Any]:
    loaded = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"events/{name} is not a JSON object"
    return loaded


def _states(container: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those inside Map processors and Parallel branches."""
    for name, state in container.get("States", {}).items():
        yield name, state
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _states(state[key])
        for branch in state.get("Branches", []):
            yield from _states(branch)


def _resources_of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r.get("Type") == type_}


def _state_machine(template: dict[str, Any]) -> dict[str, Any]:
    machines = _resources_of_type(template, "AWS::Serverless::StateMachine")
    assert len(machines) == 1, f"expected one state machine in template.yaml, found {machines}"
    return next(iter(machines.values()))["Properties"]


def _param_keys(parameters: dict[str, Any]) -> set[str]:
    """Payload keys a Parameters/ItemSelector block produces ("run.$" -> "run")."""
    return {k.removesuffix(".$") for k in parameters}


# ------------------------------------------------------------------ (1) cfn-lint
def test_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    assert cfn_lint.exists(), (
        f"{cfn_lint} is missing: install the dev extras (pip install -e .[dev])"
    )
    proc = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"cfn-lint found problems in template.yaml:\n{proc.stdout}{proc.stderr}"
    )


# ------------------------------------------------------------------ (2) asl-validator
def _asl_validator(path: Path) -> subprocess.CompletedProcess[str]:
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail(
            "npx is not on PATH: install Node.js (>= 18), then run `npm ci` in the repo root"
        )
    if not (ROOT / "node_modules" / ".bin" / "asl-validator").exists():
        pytest.fail(f"node_modules/ lacks asl-validator: run `npm ci` in {ROOT}")
    return subprocess.run(
        [npx, "--no-install", "asl-validator", "--json-path", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_state_machine_passes_asl_validator() -> None:
    proc = _asl_validator(ASL)
    assert proc.returncode == 0, (
        f"asl-validator rejected {ASL.relative_to(ROOT)}:\n{proc.stdout}{proc.stderr}"
    )
    assert "is valid" in proc.stdout


def test_asl_validator_really_rejects_a_broken_definition(tmp_path: Path) -> None:
    # Guards the check above: a validator that accepts everything would prove nothing.
    broken = _asl()
    broken["States"]["Validate"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    proc = _asl_validator(path)
    assert proc.returncode != 0
    assert "NoSuchState" in proc.stdout + proc.stderr


# ------------------------------------------------------------------ (3) substitutions
def test_every_substitution_is_provided_and_used() -> None:
    template = _template()
    machine = _state_machine(template)
    assert (ROOT / machine["DefinitionUri"]).resolve() == ASL
    provided = set(machine["DefinitionSubstitutions"])
    used = set(SUBSTITUTION.findall(ASL.read_text(encoding="utf-8")))
    assert used - provided == set(), (
        f"ASL uses ${{...}} that template.yaml does not provide: {sorted(used - provided)}"
    )
    assert provided - used == set(), (
        f"template.yaml provides substitutions the ASL never uses: {sorted(provided - used)}"
    )


def test_function_substitutions_point_at_functions_the_machine_may_invoke() -> None:
    template = _template()
    machine = _state_machine(template)
    functions = _resources_of_type(template, "AWS::Serverless::Function")
    invocable = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in machine["Policies"]
        if isinstance(p, dict) and "LambdaInvokePolicy" in p
    }
    for name, value in machine["DefinitionSubstitutions"].items():
        if name == "StateBucketName":
            assert value == {"Ref": "StateBucket"}, "ResultWriter exports to the state bucket"
            continue
        assert name.endswith("FunctionArn"), name
        target, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn", f"{name} must be !GetAtt {target}.Arn"
        assert target in functions, f"{name} points at {target}, which is not a function"
        assert target in invocable, f"state machine role lacks LambdaInvokePolicy for {target}"


def test_distributed_maps_export_their_results_instead_of_collecting_them() -> None:
    # At 100M members a Map has thousands to millions of children; their results collected
    # into the state would pass Step Functions' 256 KiB payload limit and fail the run.
    maps = {
        name: state
        for name, state in _states(_asl())
        if state.get("Type") == "Map"
        and state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
    }
    assert set(maps) == {
        "ValidateRanges",
        "DiffShards",
        "MapAudienceBatches",
        "SendEventBatches",
    }
    for name, state in maps.items():
        assert state.get("ResultWriter") == {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "${StateBucketName}", "Prefix": "map-results"},
        }, name
        # The Map's own output (the ResultWriter's pointer) is not kept either.
        assert "ResultPath" in state and state["ResultPath"] is None, name


# ------------------------------------------------------------------ (4) error names
def _error_names(kind: str) -> list[tuple[str, list[str]]]:
    """(state name, ErrorEquals) for every Retry or Catch rule in the definition."""
    return [
        (name, rule["ErrorEquals"])
        for name, state in _states(_asl())
        for rule in state.get(kind, [])
    ]


def _is_builtin(error: str) -> bool:
    return error.startswith(("States.", "Lambda."))


def test_every_custom_error_name_in_the_asl_is_a_destination_error() -> None:
    for kind in ("Retry", "Catch"):
        for state, names in _error_names(kind):
            for error in names:
                if _is_builtin(error):
                    continue
                cls = getattr(errors, error, None)
                assert isinstance(cls, type) and issubclass(cls, errors.DestinationError), (
                    f"{state}.{kind} matches {error!r}, but tiktok_destination.errors has no "
                    "such DestinationError class: no handler can raise it"
                )


def test_asl_retries_exactly_the_retriable_errors() -> None:
    retried = {
        error for _, names in _error_names("Retry") for error in names if not _is_builtin(error)
    }
    assert retried == set(errors.RETRIABLE_ERROR_NAMES)
    for name in errors.RETRIABLE_ERROR_NAMES:
        assert issubclass(getattr(errors, name), errors.RetriableError), name
    # Every RetriableError subclass is listed, so a new one cannot be forgotten in the ASL.
    subclasses = {errors.RetriableError, *_all_subclasses(errors.RetriableError)}
    assert {c.__name__ for c in subclasses} == set(errors.RETRIABLE_ERROR_NAMES)


def test_a_retry_rule_never_retries_only_some_retriable_errors() -> None:
    # A Task retrying TikTokUnavailable but not TikTokRateLimited would fail runs on a burst.
    for state, names in _error_names("Retry"):
        custom = {e for e in names if not _is_builtin(e)}
        if custom:
            assert custom == set(errors.RETRIABLE_ERROR_NAMES), (
                f"{state} retries {sorted(custom)}; it must retry all of "
                f"{list(errors.RETRIABLE_ERROR_NAMES)}"
            )


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found |= {sub, *_all_subclasses(sub)}
    return found


# ------------------------------------------------------------------ (5) code locations
def test_every_function_code_uri_holds_its_handler() -> None:
    template = _template()
    default_handler = template["Globals"]["Function"]["Handler"]
    functions = _resources_of_type(template, "AWS::Serverless::Function")
    assert len(functions) == 8
    missing: list[str] = []
    for name, resource in functions.items():
        props = resource["Properties"]
        module, func = props.get("Handler", default_handler).rsplit(".", 1)
        source = ROOT / props["CodeUri"] / f"{module}.py"
        if not source.is_file():
            missing.append(f"{name}: {source.relative_to(ROOT)} does not exist")
        elif not re.search(rf"^def {func}\(", source.read_text(encoding="utf-8"), re.MULTILINE):
            missing.append(f"{name}: {source.relative_to(ROOT)} defines no {func}()")
    assert not missing, "handlers missing:\n" + "\n".join(missing)


def test_layer_content_holds_the_package_and_its_requirements() -> None:
    template = _template()
    (layer,) = _resources_of_type(template, "AWS::Serverless::LayerVersion").values()
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "tiktok_destination" / "__init__.py").is_file()
    assert (content / "requirements.txt").resolve() == REQUIREMENTS
    assert layer["Metadata"]["BuildMethod"] == template["Globals"]["Function"]["Runtime"]


def test_layer_requirements_cover_the_runtime_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    required = {_dist_name(d) for d in pyproject["project"]["dependencies"]}
    listed = {
        _dist_name(line)
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    # phonenumberslite provides the same module; boto3 is pinned in the layer too, because
    # the runtime's copy may predate put_object(IfNoneMatch=...).
    listed = {"phonenumbers" if n == "phonenumberslite" else n for n in listed}
    assert required == listed


def _dist_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)", requirement)
    assert match, requirement
    return match.group(1).lower().replace("_", "-")


def test_template_environment_reaches_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Distinct values per parameter: a misspelt variable would fall back to a default and
    # show up as a mismatch here.
    params = {
        "ConfigKey": "cfg/test.toml",
        "TikTokBaseUrl": "https://tiktok.test/open_api/v1.3/",
        "TikTokQps": "7",
        "RejectThreshold": "0.35",
        "MappingBatchSize": "5000",
        "DefaultPhoneRegion": "GB",
        "SecretPrefix": "test-prefix/",
    }
    template = _template()
    assert set(params) <= set(template["Parameters"])
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for name, value in variables.items():
        if isinstance(value, dict):
            ref = value["Ref"]
            value = params.get(ref, f"<{ref}>")
        monkeypatch.setenv(name, str(value))
    settings = load_settings()
    assert settings.state_bucket == "<StateBucket>"
    assert settings.inbox_bucket == "<InboxBucket>"
    assert settings.notify_topic_arn == "<NotifyTopic>"
    assert settings.config_key == "cfg/test.toml"
    assert settings.tiktok_base_url == "https://tiktok.test/open_api/v1.3/"
    assert settings.tiktok_qps == 7.0
    assert settings.reject_threshold == 0.35
    assert settings.mapping_batch_size == 5000
    assert settings.default_phone_region == "GB"
    assert settings.secret_prefix == "test-prefix/"
    assert settings.event_bus_name == "default"


# ------------------------------------------------------------------ (6) sample events
def test_every_sample_event_is_a_json_object() -> None:
    names = sorted(p.name for p in EVENTS.glob("*.json"))
    assert len(names) >= 12
    for name in names:
        _event(name)


@pytest.mark.parametrize("name", ["s3-object-created.json", "events-object-created.json"])
def test_s3_samples_match_the_inbox_rule(name: str) -> None:
    template = _template()
    machine = _state_machine(template)
    (rule,) = machine["Events"].values()
    pattern = rule["Properties"]["Pattern"]
    event = _event(name)
    assert event["source"] in pattern["source"]
    assert event["detail-type"] in pattern["detail-type"]
    (prefix_rule,) = pattern["detail"]["object"]["key"]
    assert event["detail"]["object"]["key"].startswith(prefix_rule["prefix"])
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "InboxBucket"}]
    # The sample bucket looks like the name CloudFormation gives the samconfig stack's inbox
    # (<stack>-<logical id>-<random>, lower-case, at most 63 characters).
    stack = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))["default"]["global"]["parameters"][
        "stack_name"
    ]
    name = event["detail"]["bucket"]["name"]
    assert re.fullmatch(rf"{re.escape(stack.lower())}-inboxbucket-[a-z0-9]{{12}}", name), name
    assert len(name) <= 63


def test_schedule_sample_has_the_shape_the_schedule_sends() -> None:
    template = _template()
    target = template["Resources"]["DestinationSchedule"]["Properties"]["Target"]
    sent = json.loads(SUBSTITUTION.sub("x", target["Input"]["Fn::Sub"]))
    sample = _event("schedule.json")
    assert set(sample) == set(sent) == {"orchestration"}
    assert set(sample["orchestration"]) == set(sent["orchestration"])


# Sample file -> the state whose Parameters (or Map ItemSelector) build that payload.
STEP_SAMPLES = {
    "step-preflight.json": ("Preflight", "Parameters"),
    "step-validate.json": ("Validate", "Parameters"),
    "step-validate-range.json": ("ValidateRanges", "ItemSelector"),
    "step-validate-merge.json": ("MergeRanges", "Parameters"),
    "step-audience-ensure.json": ("EnsureAudience", "Parameters"),
    "step-chunk-audience.json": ("ChunkAudience", "Parameters"),
    "step-diff-shard.json": ("DiffShards", "ItemSelector"),
    "step-diff-collect.json": ("CollectShards", "Parameters"),
    "step-audience-map.json": ("MapAudienceBatches", "ItemSelector"),
    "step-chunk-events.json": ("ChunkEvents", "Parameters"),
    "step-events-send.json": ("SendEventBatches", "ItemSelector"),
    "step-report.json": ("Report", "Parameters"),
    "step-notify.json": ("Notify", "Parameters"),
    "step-failed.json": ("Failed", "Parameters"),
}


def test_every_task_has_a_step_sample() -> None:
    states = dict(_states(_asl()))
    covered = {state for state, _ in STEP_SAMPLES.values()}
    for name, state in states.items():
        if state["Type"] == "Task" and "Parameters" in state:
            assert name in covered, f"no events/step-*.json sample for state {name}"
    assert {p.name for p in EVENTS.glob("step-*.json")} == set(STEP_SAMPLES)


@pytest.mark.parametrize("name", sorted(STEP_SAMPLES))
def test_step_sample_has_the_keys_the_state_machine_sends(name: str) -> None:
    state_name, block = STEP_SAMPLES[name]
    states = dict(_states(_asl()))
    parameters = states[state_name][block]
    sample = _event(name)
    assert set(sample) == _param_keys(parameters)
    for key, value in parameters.items():
        if not key.endswith(".$"):
            assert sample[key] == value, f"{name}: {key} must be {value!r}"


def test_sample_runs_are_valid_run_payloads() -> None:
    runs = {
        path.name: _event(path.name)["run"]
        for path in EVENTS.glob("step-*.json")
        if "run" in _event(path.name)
    }
    runs["step-notify.json"] = _event("step-notify.json")["state"]["run"]
    assert len(runs) >= 6
    kinds = set()
    for name, payload in runs.items():
        run = Run.model_validate(payload)
        ResolvedTemplate.from_dict(run.template)
        assert run.source.key.startswith(f"inbox/{run.destination}/{run.data_template}/"), name
        kinds.add(run.kind)
    assert kinds == {"custom_audience", "offline_events"}
    # Map children get the run id only; it must name a run the samples describe.
    known = {r["run_id"] for r in runs.values()}
    for name in (
        "step-audience-map.json",
        "step-events-send.json",
        "step-validate-range.json",
        "step-diff-shard.json",
    ):
        assert _event(name)["run_id"] in known, name


def test_samples_keep_identifiers_as_strings() -> None:
    # 19-digit ids lose precision as JSON numbers in most consumers.
    id_fields = {"advertiser_id", "audience_id", "event_set_id"}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in id_fields and value is not None:
                    assert isinstance(value, str), f"{where}.{key} must be a string"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    for path in EVENTS.glob("*.json"):
        walk(_event(path.name), path.name)
