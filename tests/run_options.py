"""Run options for tests that build a Run by hand instead of through Preflight."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

from tiktok_destination.config.settings import load_settings
from tiktok_destination.runs.run import RunOptions


def run_options(**overrides: Any) -> RunOptions:
    """The options Preflight resolves with no environment overrides and no ``[settings]``
    (config/settings.py's defaults, read from an empty environment), ``overrides`` on top."""
    with mock.patch.dict(os.environ, {"STATE_BUCKET": "state"}, clear=True):
        defaults = RunOptions.resolve(load_settings())
    return defaults.model_copy(update=overrides)
