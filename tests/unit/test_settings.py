"""Deployment settings from the environment: one QPS minimum for env, config and client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.audiences.ensure import CREATE_ATTEMPTS, lost_create_waits
from tiktok_destination.config.loader import load_config
from tiktok_destination.config.settings import MAX_TIKTOK_TIMEOUT, load_settings
from tiktok_destination.errors import ConfigurationError
from tiktok_destination.steps import make_client
from tiktok_destination_local.runner import _CfnLoader

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _state_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_BUCKET", "settings-test")


@pytest.mark.parametrize("raw", ["0.000001", "0.09", "0", "-1", "nan", "inf"])
def test_tiktok_qps_below_the_minimum_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TIKTOK_QPS", raw)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert info.value.message.startswith(f"environment variable TIKTOK_QPS={raw!r} ")
    assert "at least 0.1" in info.value.message
    assert "TikTokQps" in info.value.message


@pytest.mark.parametrize(("raw", "qps"), [("0.1", 0.1), ("2.5", 2.5), ("", 10.0)])
def test_tiktok_qps_at_or_above_the_minimum_is_used(
    monkeypatch: pytest.MonkeyPatch, raw: str, qps: float
) -> None:
    monkeypatch.setenv("TIKTOK_QPS", raw)
    assert load_settings().tiktok_qps == qps


def test_config_override_obeys_the_same_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOK_QPS", raising=False)
    config = load_config("[settings]\ntiktok_qps = 0.1\n")
    assert load_settings().with_config(config).tiktok_qps == 0.1
    with pytest.raises(ConfigurationError, match=r"tiktok_qps: .*at least 0\.1"):
        load_config("[settings]\ntiktok_qps = 0.000001\n")


@pytest.mark.parametrize("qps", [0.000001, -1.0, float("nan")])
def test_a_client_refuses_a_qps_that_would_look_like_a_hang(qps: float) -> None:
    # Run options reach the client directly (a run.json edited by hand, say).
    with pytest.raises(ConfigurationError, match=r"at least 0\.1"):
        TikTokClient("token", qps=qps)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MAPPING_BATCH_SIZE", "0"),
        ("MAPPING_BATCH_SIZE", "-5"),
        ("MAPPING_BATCH_SIZE", "10001"),
        ("EVENT_BATCH_SIZE", "0"),
        ("EVENT_BATCH_SIZE", "1001"),
    ],
)
def test_batch_sizes_outside_tiktoks_limits_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    high = "10,000" if name == "MAPPING_BATCH_SIZE" else "1,000"
    assert info.value.message == (
        f"environment variable {name}={raw!r} must be a whole number from 1 to {high}; "
        f"set it in that range, or leave it empty for the default {high}"
    )


@pytest.mark.parametrize(
    ("mapping", "events"), [("1", "1"), ("10000", "1000"), ("", ""), ("250", "500")]
)
def test_batch_sizes_within_tiktoks_limits_are_used(
    monkeypatch: pytest.MonkeyPatch, mapping: str, events: str
) -> None:
    monkeypatch.setenv("MAPPING_BATCH_SIZE", mapping)
    monkeypatch.setenv("EVENT_BATCH_SIZE", events)
    settings = load_settings()
    assert settings.mapping_batch_size == int(mapping or 10_000)
    assert settings.event_batch_size == int(events or 1_000)


@pytest.mark.parametrize(("raw", "used"), [("", 2_000_000), ("0", 0), ("5000000", 5_000_000)])
def test_diff_inline_members_is_read_with_its_default(
    monkeypatch: pytest.MonkeyPatch, raw: str, used: int
) -> None:
    monkeypatch.setenv("DIFF_INLINE_MEMBERS", raw)
    assert load_settings().diff_inline_members == used


@pytest.mark.parametrize("raw", ["-1", "many", "1000000001"])
def test_diff_inline_members_outside_its_range_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("DIFF_INLINE_MEMBERS", raw)
    with pytest.raises(ConfigurationError, match="DIFF_INLINE_MEMBERS"):
        load_settings()


@pytest.mark.parametrize(("raw", "timeout"), [("", 30.0), ("0.5", 0.5), ("50", 50.0)])
def test_tiktok_timeout_is_read_and_reaches_the_client(
    monkeypatch: pytest.MonkeyPatch, raw: str, timeout: float
) -> None:
    monkeypatch.setenv("TIKTOK_TIMEOUT_SECONDS", raw)
    settings = load_settings()
    assert settings.tiktok_timeout == timeout
    assert make_client(settings, "token").timeout == timeout


@pytest.mark.parametrize("raw", ["0", "-1", "50.5", "600", "nan", "soon"])
def test_a_tiktok_timeout_outside_its_range_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TIKTOK_TIMEOUT_SECONDS", raw)
    with pytest.raises(ConfigurationError, match="TIKTOK_TIMEOUT_SECONDS"):
        load_settings()


def test_lost_create_lookups_fit_the_audience_functions_timeout() -> None:
    # EnsureAudience's worst expected invocation at the largest timeout: CREATE_ATTEMPTS
    # rounds of (a create that waits the whole timeout + the lookup window's waits + one
    # listing per lookup, at most 4 pages of 100 audiences, allowed 2 s each).
    template = _CfnLoader.load((ROOT / "template.yaml").read_text(encoding="utf-8"))
    function_timeout = template["Resources"]["AudienceFunction"]["Properties"]["Timeout"]
    waits = lost_create_waits(MAX_TIKTOK_TIMEOUT)
    per_round = MAX_TIKTOK_TIMEOUT + sum(waits) + 2.0 * len(waits)
    assert CREATE_ATTEMPTS * per_round < function_timeout <= 900
