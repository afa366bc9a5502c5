"""Run options for tests that build a Run by hand instead of through Preflight."""

from __future__ import annotations

from typing import Any

from tiktok_destination.runs.run import RunOptions


def run_options(**overrides: Any) -> RunOptions:
    """The options Preflight resolves with no environment overrides and no ``[settings]``
    (see config/settings.py's defaults), with ``overrides`` on top."""
    values: dict[str, Any] = {
        "reject_threshold": 0.2,
        "mapping_batch_size": 10_000,
        "event_batch_size": 1_000,
        "tiktok_qps": 10.0,
        "default_phone_region": "US",
    }
    return RunOptions(**(values | overrides))
