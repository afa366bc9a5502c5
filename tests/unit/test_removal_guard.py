"""The removal guard: the decision, its settings at every level, and the run-level override."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.run_options import run_options
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination.audiences.audience import check_removal, removal_blocked
from tiktok_destination.config.document import ResolvedTemplate, load_config
from tiktok_destination.config.settings import load_settings
from tiktok_destination.errors import ConfigurationError, MassRemovalBlocked
from tiktok_destination.runs.preflight import build_run
from tiktok_destination.runs.run import Run, Source
from tiktok_destination.runs.workflow_actions import ACTIONS, action_for_error

ADV = "7000000000000000001"
ESET = "7100000000000000001"

BASE = f"""
[settings]

[credentials.acme]

[destinations.aud]
credential = "acme"
advertiser_id = "{ADV}"
kind = "custom_audience"

[destinations.aud.defaults]

[destinations.evt]
credential = "acme"
advertiser_id = "{ADV}"
kind = "offline_events"

[data_templates.vip]
destination = "aud"
audience_name = "VIP customers"

[data_templates.sales]
destination = "evt"
event_set_id = "{ESET}"
"""


def config_with(settings: str = "", defaults: str = "", template: str = "") -> str:
    return (
        BASE.replace("[settings]\n", f"[settings]\n{settings}\n")
        .replace("[destinations.aud.defaults]\n", f"[destinations.aud.defaults]\n{defaults}\n")
        .replace(
            'audience_name = "VIP customers"\n', f'audience_name = "VIP customers"\n{template}\n'
        )
    )


def resolved(text: str) -> ResolvedTemplate:
    return load_config(text).resolve("aud", "vip")


# ------------------------------------------------------------------ the decision
@pytest.mark.parametrize(
    ("current", "removed", "share", "min_audience", "blocked"),
    [
        pytest.param(999, 999, 0.5, 1000, False, id="under-1000-exempt"),
        pytest.param(1000, 501, 0.5, 1000, True, id="at-1000-guarded"),
        pytest.param(1000, 500, 0.5, 1000, False, id="exactly-at-the-share"),
        pytest.param(1200, 600, 0.5, 1000, False, id="exactly-half-of-1200"),
        pytest.param(1200, 601, 0.5, 1000, True, id="one-over-half-of-1200"),
        pytest.param(100, 57, 0.57, 0, False, id="exact-decimal-share-not-binary-float"),
        pytest.param(100, 58, 0.57, 0, True, id="one-over-a-decimal-share"),
        pytest.param(5000, 5000, 1.0, 1000, False, id="share-1-turns-it-off"),
        pytest.param(5000, 1, 0.0, 1000, True, id="share-0-blocks-any-removal"),
        pytest.param(5000, 0, 0.0, 1000, False, id="nothing-removed"),
        pytest.param(10, 10, 0.5, 0, True, id="min-0-guards-small-audiences"),
        pytest.param(0, 0, 0.5, 0, False, id="empty-audience"),
    ],
)
def test_removal_blocked(
    current: int, removed: int, share: float, min_audience: int, blocked: bool
) -> None:
    assert removal_blocked(current, removed, max_share=share, min_audience=min_audience) is blocked


def make_run(options: dict[str, Any] | None = None, **template: Any) -> Run:
    text = config_with(template="\n".join(f"{k} = {v}" for k, v in template.items()))
    return Run(
        run_id="0123456789abcdef",
        execution_id="arn:aws:states:us-east-1:123456789012:execution:sm:x",
        kind="custom_audience",
        state_bucket="state",
        source=Source(bucket="inbox", key="inbox/aud/vip/day2.csv", etag="e", format="csv"),
        destination="aud",
        data_template="vip",
        template=resolved(text).as_dict(),
        started_at="2026-11-26T00:00:00+00:00",
        options=run_options(**(options or {})),
    )


def test_check_removal_raises_with_the_numbers_and_the_fix() -> None:
    with pytest.raises(MassRemovalBlocked) as info:
        check_removal(make_run(), current=1200, removed=900, added=30)
    err = info.value
    assert err.details == {
        "current_members": 1200,
        "would_remove": 900,
        "would_add": 30,
        "max_removal_share": 0.5,
        "mass_removal_min_audience": 1000,
    }
    for part in (
        "current size 1,200",
        "would remove 900 (75.0%)",
        "would add 30",
        "max_removal_share 0.5",
        "s3://inbox/inbox/aud/vip/day2.csv",
        '"allow_mass_removal": true',
    ):
        assert part in err.message, err.message
    assert action_for_error(type(err).__name__) is ACTIONS["MassRemovalBlocked"]


def test_check_removal_allowed_by_the_execution_input_reports_the_override() -> None:
    run = make_run({"allow_mass_removal": True})
    assert check_removal(run, current=1200, removed=900, added=30) is True
    # Under the share nothing was overridden, allowed or not.
    assert check_removal(run, current=1200, removed=100, added=30) is False
    assert check_removal(make_run(), current=1200, removed=100, added=30) is False


def test_check_removal_uses_the_templates_settings() -> None:
    assert (
        check_removal(make_run(max_removal_share=1), current=1200, removed=1200, added=0) is False
    )
    with pytest.raises(MassRemovalBlocked):
        check_removal(make_run(mass_removal_min_audience=10), current=20, removed=15, added=0)


def test_the_action_tells_how_to_proceed() -> None:
    action = ACTIONS["MassRemovalBlocked"]
    text = " ".join(action.steps)
    for needle in (
        "rejects file",
        "allow_mass_removal",
        "--allow-mass-removal",
        "max_removal_share",
    ):
        assert needle in text, needle


# ------------------------------------------------------------------ configuration
def test_defaults_are_half_and_1000() -> None:
    template = resolved(BASE)
    assert (template.max_removal_share, template.mass_removal_min_audience) == (0.5, 1000)


def test_template_beats_destination_defaults_beats_settings() -> None:
    settings = "max_removal_share = 0.2\nmass_removal_min_audience = 10"
    defaults = "max_removal_share = 0.3\nmass_removal_min_audience = 20"
    template = "max_removal_share = 0.4\nmass_removal_min_audience = 30"
    only_settings = resolved(config_with(settings=settings))
    assert (only_settings.max_removal_share, only_settings.mass_removal_min_audience) == (0.2, 10)
    with_defaults = resolved(config_with(settings=settings, defaults=defaults))
    assert (with_defaults.max_removal_share, with_defaults.mass_removal_min_audience) == (0.3, 20)
    everywhere = resolved(config_with(settings=settings, defaults=defaults, template=template))
    assert (everywhere.max_removal_share, everywhere.mass_removal_min_audience) == (0.4, 30)
    # 0 is a value, not "unset": a template may guard every removal.
    zero = resolved(
        config_with(settings="max_removal_share = 0.9", template="max_removal_share = 0")
    )
    assert zero.max_removal_share == 0


def test_a_whole_number_share_is_accepted() -> None:
    assert resolved(config_with(template="max_removal_share = 1")).max_removal_share == 1.0


@pytest.mark.parametrize(
    ("where", "table"),
    [
        ("settings", "[settings]"),
        ("defaults", "[destinations.aud.defaults]"),
        ("template", "[data_templates.vip]"),
    ],
)
@pytest.mark.parametrize("value", ["1.5", "-0.1", '"0.5"', "true", "nan"])
def test_invalid_share_names_table_field_and_range(where: str, table: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(config_with(**{where: f"max_removal_share = {value}"}))
    (line,) = info.value.message.splitlines()
    assert line.startswith(f"config.toml: {table} max_removal_share: "), line
    assert "a number from 0 to 1" in line and "max_removal_share = 0.5" in line


@pytest.mark.parametrize("value", ["-1", "1000.5", '"1000"'])
def test_invalid_min_audience_names_the_field(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(config_with(settings=f"mass_removal_min_audience = {value}"))
    (line,) = info.value.message.splitlines()
    assert line.startswith("config.toml: [settings] mass_removal_min_audience: "), line
    assert "mass_removal_min_audience = 1000" in line


def test_the_guard_does_not_apply_to_offline_events() -> None:
    text = (
        BASE.replace(
            f'event_set_id = "{ESET}"\n', f'event_set_id = "{ESET}"\nmax_removal_share = 1\n'
        )
        + "\n[destinations.evt.defaults]\nmass_removal_min_audience = 5\n"
    )
    with pytest.raises(ConfigurationError) as info:
        load_config(text)
    lines = info.value.message.splitlines()
    assert (
        "config.toml: [destinations.evt.defaults] mass_removal_min_audience: does not apply to "
        'kind = "offline_events" destinations; remove it' in lines
    )
    assert (
        "config.toml: [data_templates.sales] max_removal_share: does not apply to "
        'kind = "offline_events" destinations; remove it' in lines
    )


def test_a_run_payload_from_before_the_guard_still_loads() -> None:
    payload = resolved(config_with(template="max_removal_share = 0.9")).as_dict()
    del payload["max_removal_share"], payload["mass_removal_min_audience"]
    again = ResolvedTemplate.from_dict(payload)
    assert (again.max_removal_share, again.mass_removal_min_audience) == (0.5, 1000)


# ------------------------------------------------------------------ the execution input
@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STATE_BUCKET": "state",
        "INBOX_BUCKET": "inbox",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from tiktok_destination.adapters import s3 as storage

    storage.s3_client.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("state", "inbox"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="state", Key="config/destinations.toml", Body=BASE.encode())
        s3.put_object(Bucket="inbox", Key="inbox/aud/vip/day2.csv", Body=b"email\n")
        yield Bucket("state")
    storage.s3_client.cache_clear()


CONSOLE = {"bucket": "inbox", "key": "inbox/aud/vip/day2.csv"}
S3_EVENT = {
    "detail-type": "Object Created",
    "detail": {"bucket": {"name": "inbox"}, "object": {"key": "inbox/aud/vip/day2.csv"}},
}


@pytest.mark.parametrize("start", [CONSOLE, S3_EVENT], ids=["console", "s3-event"])
def test_allow_mass_removal_is_a_run_option_not_part_of_the_run_id(
    deployed: Bucket, start: dict[str, Any]
) -> None:
    settings = load_settings()
    plain = build_run(dict(start), "exec-1", settings, deployed)
    allowed = build_run({**start, "allow_mass_removal": True}, "exec-2", settings, deployed)
    assert plain.options.allow_mass_removal is False
    assert allowed.options.allow_mass_removal is True
    # The same input is the same run: a re-run with the flag continues the blocked one.
    assert allowed.run_id == plain.run_id


@pytest.mark.parametrize("value", ["true", 1, "yes", None])
def test_allow_mass_removal_must_be_a_json_boolean(deployed: Bucket, value: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_run({**CONSOLE, "allow_mass_removal": value}, "exec", load_settings(), deployed)
    message = info.value.message
    assert message.startswith("execution input: allow_mass_removal: must be true or false")
