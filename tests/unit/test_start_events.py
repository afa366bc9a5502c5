"""Preflight reads the EventBridge S3 ``Object Created`` event through Powertools' data class.

The sample in events/ is the event the inbox rule delivers; the key must come out exactly
as written (no URL decoding), and an event without bucket or key is a clear configuration
error, never a guess.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tiktok_destination.config.loader import load_config
from tiktok_destination.config.settings import Settings, load_settings
from tiktok_destination.errors import ConfigurationError
from tiktok_destination.inputs.formats import detect_format
from tiktok_destination.runs.starts import resolve_input

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(
    """
[credentials.acme]

[destinations.acme_audiences]
credential = "acme"
advertiser_id = "7000000000000000001"
kind = "custom_audience"

[data_templates.vip_customers]
destination = "acme_audiences"
audience_name = "VIP"
user_id_types = ["EMAIL"]
""",
    source="test",
)


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STATE_BUCKET", "state-bucket")
    return load_settings()


def sample() -> dict[str, Any]:
    loaded = json.loads((ROOT / "events" / "s3-object-created.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_sample_s3_event_names_its_object(settings: Settings) -> None:
    source = resolve_input(sample(), settings, CONFIG)
    assert source.bucket == "tiktok-destination-inboxbucket-1x2y3z4a5b6c"
    assert source.key == "inbox/acme_audiences/vip_customers/2026-11-24.csv"
    assert source.etag == "b1946ac92492d2347c6235b4d2611184"
    assert detect_format(source.key) == "csv"
    assert source.from_event and source.base == "inbox/acme_audiences/vip_customers/"
    destination, template = source.destination, source.data_template
    event_set_id, test_code = source.event_set_id, source.test_event_code
    assert (destination, template, event_set_id, test_code) == (
        "acme_audiences",
        "vip_customers",
        None,
        None,
    )


def test_the_key_is_used_as_sent_without_url_decoding(settings: Settings) -> None:
    event = sample()
    # "+" and ":" are legal in keys; decoding would turn "+" into a space: another object.
    key = "inbox/acme_audiences/vip_customers/vip+gold 2026-11-24T06:00:00.csv"
    event["detail"]["object"]["key"] = key
    source = resolve_input(event, settings, CONFIG)
    assert source.key == key


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("detail", "object", "key"), None),
        (("detail", "bucket"), None),
        (("detail",), None),
        (("detail", "object"), "not an object"),
    ],
)
def test_an_event_without_bucket_or_key_is_a_configuration_error(
    settings: Settings, path: tuple[str, ...], value: Any
) -> None:
    event = copy.deepcopy(sample())
    target = event
    for part in path[:-1]:
        target = target[part]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(ConfigurationError, match=r"detail\.bucket\.name / detail\.object\.key"):
        resolve_input(event, settings, CONFIG)


def test_an_event_without_etag_reads_it_from_the_object(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    event = sample()
    del event["detail"]["object"]["etag"]
    bucket = event["detail"]["bucket"]["name"]
    key = event["detail"]["object"]["key"]
    with mock_aws():
        from tiktok_destination.adapters import s3 as storage

        storage.s3_client.cache_clear()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        etag = s3.put_object(Bucket=bucket, Key=key, Body=b"Email\n")["ETag"].strip('"')
        source = resolve_input(event, settings, CONFIG)
        storage.s3_client.cache_clear()
    assert source.etag == etag


def test_a_url_encoded_key_is_read_as_the_object_it_names(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start relayed from S3's own notifications URL-encodes the key (Hive's "=" too)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    event = sample()
    bucket = event["detail"]["bucket"]["name"]
    stored = "inbox/acme_audiences/vip_customers/exp 1/dt=2026-12-07/part 0.csv"
    event["detail"]["object"]["key"] = (
        "inbox/acme_audiences/vip_customers/exp+1/dt%3D2026-12-07/part+0.csv"
    )
    with mock_aws():
        from tiktok_destination.adapters import s3 as storage

        storage.s3_client.cache_clear()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        etag = s3.put_object(Bucket=bucket, Key=stored, Body=b"Email\n")["ETag"].strip('"')
        source = resolve_input(event, settings, CONFIG)
        # A key that exists as sent is never decoded, even with a "%" in it.
        literal = "inbox/acme_audiences/vip_customers/100%25 vip.csv"
        s3.put_object(Bucket=bucket, Key=literal, Body=b"Email\n")
        event["detail"]["object"]["key"] = literal
        as_sent = resolve_input(event, settings, CONFIG)
        storage.s3_client.cache_clear()
    assert (source.key, source.etag) == (stored, etag)
    assert as_sent.key == literal
