"""Secrets Manager adapter: TikTok tokens and app credentials.

Read through Powertools Parameters so warm Lambdas reuse a value for ``max_age`` seconds
instead of calling Secrets Manager on every batch; written (by the OAuth callback) in place,
so a re-authorized credential keeps its secret's name. Values never reach logs or messages.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tiktok_destination.adapters.s3 import error_code
from tiktok_destination.config.settings import Settings
from tiktok_destination.errors import InvalidCredentials

# Short enough that a re-authorized token reaches warm map Lambdas within a minute; long
# enough that a run's hundreds of batches do not each call Secrets Manager.
SECRET_MAX_AGE = 60


def _get_secret_json(name: str, *, fresh: bool = False) -> dict[str, Any] | None:
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        value = parameters.get_secret(name, max_age=SECRET_MAX_AGE, force_fetch=fresh)
    except GetParameterError:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def load_access_token(settings: Settings, credential: str, *, fresh: bool = False) -> str:
    """The credential's TikTok access token, or InvalidCredentials saying how to authorize.

    ``fresh`` bypasses the cache: preflight uses it so a run started right after a
    re-authorization checks the new token, not a cached revoked one.
    """
    name = settings.credential_secret_name(credential)
    secret = _get_secret_json(name, fresh=fresh)
    token = (secret or {}).get("access_token")
    if not token or not isinstance(token, str):
        raise InvalidCredentials(
            f"no TikTok access token stored for credential '{credential}' (secret {name}): "
            f"authorize it with `tiktok-destination auth-link --credential {credential}` "
            "and complete the TikTok consent screen"
        )
    return token


def load_credential(settings: Settings, credential: str) -> dict[str, Any] | None:
    return _get_secret_json(settings.credential_secret_name(credential))


def load_app(settings: Settings) -> dict[str, Any] | None:
    return _get_secret_json(settings.app_secret_name)


def clear_cache() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()


@functools.cache
def secretsmanager_client() -> Any:
    # Created on first use, not at import: tests and the local runner start moto first.
    return boto3.client("secretsmanager")


class SecretNotWritable(Exception):
    """Secrets Manager refused to update the secret (it is probably scheduled for deletion)."""


def put_secret_json(name: str, value: dict[str, Any], *, description: str) -> None:
    """Replace the secret's value in place, creating the secret (with ``description``) the
    first time; SecretNotWritable when Secrets Manager refuses the update."""
    client = secretsmanager_client()
    text = json.dumps(value)
    try:
        client.put_secret_value(SecretId=name, SecretString=text)
        return
    except ClientError as err:
        code = error_code(err)
        if code == "InvalidRequestException":
            raise SecretNotWritable(name) from None
        if code != "ResourceNotFoundException":
            raise
    try:
        client.create_secret(Name=name, SecretString=text, Description=description)
    except ClientError as err:
        # Another callback created it in between: ours is the newer authorization.
        if error_code(err) != "ResourceExistsException":
            raise
        client.put_secret_value(SecretId=name, SecretString=text)
