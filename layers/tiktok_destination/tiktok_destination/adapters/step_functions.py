"""Step Functions adapter: whether an execution still runs.

Asked by the lease rule (``runs/leases.py``) to free the lease of an execution that was
aborted or crashed at once, instead of waiting for the lease to expire.
"""

from __future__ import annotations

import logging

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tiktok_destination.adapters.s3 import error_code

logger = logging.getLogger(__name__)

#: codes of an execution Step Functions does not know (e.g. a local run whose process was killed)
_UNKNOWN_EXECUTION = frozenset({"ExecutionDoesNotExist", "InvalidArn"})


def execution_is_running(execution_arn: str) -> bool | None:
    """Whether a Step Functions execution still runs; None when it cannot be asked."""
    try:
        status = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn)
    except ClientError as err:
        if error_code(err) in _UNKNOWN_EXECUTION:
            return False
        logger.warning("cannot tell whether the lease holder runs", extra={"code": error_code(err)})
        return None
    except BotoCoreError:
        return None
    return str(status.get("status")) == "RUNNING"
