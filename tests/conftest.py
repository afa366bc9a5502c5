"""Shared fixtures: the TikTok emulator and the local deployment (moto + real handlers)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tiktok_destination.adapters import s3 as storage
from tiktok_destination.adapters.s3 import Bucket
from tiktok_destination_local.emulator import TikTokEmulator
from tiktok_destination_local.runner import (
    LOCAL_APP_ID,
    LOCAL_APP_SECRET,
    LocalDestination,
)


@contextmanager
def s3_bucket_on_moto(name: str) -> Iterator[Bucket]:
    """One S3 bucket on moto, for tests of the domain below the state machine.

    Sets dummy credentials and a region (never real ones), and drops the cached S3 client
    before and after so no other test's moto is reused."""
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(variable, value)
        storage.s3_client.cache_clear()
        try:
            with mock_aws():
                boto3.client("s3").create_bucket(Bucket=name)
                yield Bucket(name)
        finally:
            storage.s3_client.cache_clear()


ADVERTISER = "7000000000000000001"
EVENT_SET = "7100000000000000001"
TOKEN = "e2e-token-0f9d2c"

CONFIG = f"""
[settings]
mapping_batch_size = 4
reject_threshold = 0.5

[credentials.acme]

[destinations.acme_audiences]
credential = "acme"
advertiser_id = "{ADVERTISER}"
kind = "custom_audience"

[destinations.acme_offline]
credential = "acme"
advertiser_id = "{ADVERTISER}"
kind = "offline_events"

[data_templates.vip]
destination = "acme_audiences"
audience_name = "VIP customers"
user_id_types = ["EMAIL", "PHONE"]

[data_templates.purchases]
destination = "acme_offline"
event_set_id = "{EVENT_SET}"
"""


@pytest.fixture
def emulator() -> Iterator[TikTokEmulator]:
    # TikTok refuses events older than 28 days; with the check on, an event validate lets
    # through by mistake fails the e2e test instead of being accepted by a lenient emulator.
    with TikTokEmulator(max_event_age_days=28) as emu:
        emu.set_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        emu.add_advertiser(ADVERTISER, "Acme")
        emu.add_token(TOKEN, [ADVERTISER])
        emu.add_event_set(ADVERTISER, EVENT_SET, "Stores")
        yield emu


@pytest.fixture
def handler_logs() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def local(emulator: TikTokEmulator, handler_logs: io.StringIO) -> Iterator[LocalDestination]:
    with LocalDestination(
        tiktok_base_url=emulator.base_url or "", retry_wait_scale=0.0, log_stream=handler_logs
    ) as deployment:
        deployment.put_config(CONFIG)
        deployment.put_app(LOCAL_APP_ID, LOCAL_APP_SECRET)
        deployment.put_token("acme", TOKEN, [ADVERTISER])
        yield deployment


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path
