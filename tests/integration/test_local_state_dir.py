"""The local state dir holds every acknowledged object write, and gives it back unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig

from tiktok_destination_local.runner import INBOX_BUCKET, STATE_BUCKET, LocalDestination

MB = 1024 * 1024


def local(state_dir: Path) -> LocalDestination:
    # Nothing here calls TikTok: the URL is never used.
    return LocalDestination(state_dir=state_dir, tiktok_base_url="http://127.0.0.1:9/")


def test_writes_reach_the_state_dir_before_the_call_returns_and_load_back_as_they_were(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    big = tmp_path / "export.csv"
    big.write_bytes(os.urandom(6 * MB))
    key = "inbox/acme_audiences/vip/export.csv"
    with local(state_dir):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.put_object(Bucket=STATE_BUCKET, Key="runs/r1/run.json", Body=b'{"run_id": "r1"}')
        assert (state_dir / "state-bucket" / "runs/r1/run.json").read_bytes() == b'{"run_id": "r1"}'
        s3.put_object(Bucket=STATE_BUCKET, Key="runs/r1/pending.json", Body=b"{}")
        s3.delete_object(Bucket=STATE_BUCKET, Key="runs/r1/pending.json")
        assert not (state_dir / "state-bucket" / "runs/r1/pending.json").exists()
        # A multipart upload's ETag is not the MD5 of the bytes, and the inbox object's ETag
        # is part of the run id: it must come back as it was, or rerun would be a new run.
        s3.upload_file(
            str(big),
            INBOX_BUCKET,
            key,
            Config=TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB),
        )
        etag = s3.head_object(Bucket=INBOX_BUCKET, Key=key)["ETag"]
        assert etag.endswith('-2"')
        assert (state_dir / "inbox-bucket" / key).read_bytes() == big.read_bytes()

    with local(state_dir):
        s3 = boto3.client("s3", region_name="us-east-1")
        assert s3.head_object(Bucket=INBOX_BUCKET, Key=key)["ETag"] == etag
        body = s3.get_object(Bucket=INBOX_BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(big.read_bytes()).digest()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=STATE_BUCKET)["Contents"]]
        assert keys == ["runs/r1/run.json"]
        # Overwritten by a plain put: the old multipart ETag must not stick to the new bytes.
        s3.put_object(Bucket=INBOX_BUCKET, Key=key, Body=b"email\n")
        plain = s3.head_object(Bucket=INBOX_BUCKET, Key=key)["ETag"]

    with local(state_dir):
        s3 = boto3.client("s3", region_name="us-east-1")
        assert s3.head_object(Bucket=INBOX_BUCKET, Key=key)["ETag"] == plain
        assert plain == '"' + hashlib.md5(b"email\n", usedforsecurity=False).hexdigest() + '"'
