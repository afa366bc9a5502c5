"""S3 adapter: the only module (with ``secrets``) that touches boto3 for data.

Objects are streamed to and from local files (Lambda's ``/tmp``) so no step ever holds a
whole input, snapshot or batch list in memory.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tiktok_destination.errors import InputRejected


@functools.cache
def s3_client() -> Any:
    # Created on first use, not at import: the local runner starts moto before any call.
    return boto3.client("s3")


#: error codes of a read of an object that is not there
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
#: error codes of a conditional write (If-None-Match / If-Match) that lost
PRECONDITION_CODES = frozenset({"412", "PreconditionFailed", "ConditionalRequestConflict"})


def error_code(err: ClientError) -> str:
    """The AWS error code of a botocore ``ClientError`` ("" when it has none)."""
    return str(err.response.get("Error", {}).get("Code", ""))


def _is_missing(err: ClientError) -> bool:
    return error_code(err) in MISSING_CODES


class Bucket:
    """One S3 bucket, with the handful of operations the steps need."""

    def __init__(self, name: str, client: Any | None = None):
        self.name = name
        self._client = client

    @property
    def s3(self) -> Any:
        return self._client or s3_client()

    def uri(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def get_json(self, key: str) -> Any | None:
        try:
            body = self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as err:
            if _is_missing(err):
                return None
            raise
        return json.loads(body)

    def put_json(self, key: str, value: Any) -> None:
        self.s3.put_object(
            Bucket=self.name,
            Key=key,
            # NaN/Infinity are not JSON: fail on write rather than store what TikTok refuses.
            Body=json.dumps(value, indent=1, sort_keys=True, allow_nan=False).encode(),
            ContentType="application/json",
        )

    def get_json_and_etag(self, key: str) -> tuple[Any | None, str | None]:
        """The object's JSON and its ETag (as S3 sends it, quoted), or ``(None, None)``.

        A body that is not JSON reads as ``{}``: the caller decides what a damaged object
        means (a lease treats it as stale)."""
        try:
            got = self.s3.get_object(Bucket=self.name, Key=key)
        except ClientError as err:
            if _is_missing(err):
                return None, None
            raise
        try:
            value = json.loads(got["Body"].read())
        except ValueError:
            value = {}
        return value, str(got["ETag"])

    def put_json_if(
        self, key: str, value: Any, *, if_none_match: bool = False, if_match: str | None = None
    ) -> bool:
        """A conditional ``put_json``: only if absent, or only if the ETag is still
        ``if_match``. False when another writer got there first (or the object went)."""
        condition = {"IfNoneMatch": "*"} if if_none_match else {}
        if if_match is not None:
            condition["IfMatch"] = if_match
        try:
            self.s3.put_object(
                Bucket=self.name,
                Key=key,
                Body=json.dumps(value, indent=1, sort_keys=True).encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as err:
            if error_code(err) in PRECONDITION_CODES | MISSING_CODES:
                return False
            raise
        return True

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete the object only if it is still the version ``etag`` names."""
        try:
            self.s3.delete_object(Bucket=self.name, Key=key, IfMatch=etag)
        except ClientError as err:
            if error_code(err) in PRECONDITION_CODES | MISSING_CODES:
                return False
            raise
        return True

    def put_text(self, key: str, text: str, content_type: str = "text/plain") -> None:
        self.s3.put_object(Bucket=self.name, Key=key, Body=text.encode(), ContentType=content_type)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            data: bytes = self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        except ClientError as err:
            if _is_missing(err):
                return None
            raise
        return data

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.s3.head_object(Bucket=self.name, Key=key)
        except ClientError as err:
            if _is_missing(err):
                return None
            raise
        return head

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def etag(self, key: str) -> str | None:
        head = self.head(key)
        return str(head["ETag"]).strip('"') if head else None

    def download(self, key: str, path: Path) -> Path:
        try:
            self.s3.download_file(self.name, key, str(path))
        except ClientError as err:
            if _is_missing(err):
                raise InputRejected(
                    f"{self.uri(key)} does not exist (it may have been deleted or moved "
                    "after the run started)"
                ) from None
            raise
        return path

    def upload(self, path: Path, key: str, content_type: str = "text/plain") -> None:
        self.s3.upload_file(str(path), self.name, key, ExtraArgs={"ContentType": content_type})

    def list(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
            yield from page.get("Contents", [])

    def count(self, prefix: str) -> int:
        """How many objects are under ``prefix`` (e.g. a plan's done markers)."""
        return sum(1 for _ in self.list(prefix))

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.name, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        keys = [{"Key": obj["Key"]} for obj in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.name, Delete={"Objects": keys[start : start + 1000]})


def scratch_dir() -> Path:
    """A private working directory under the system temp dir (``/tmp`` on Lambda)."""
    return Path(tempfile.mkdtemp(prefix="tiktok-destination-"))
