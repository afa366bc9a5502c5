"""The handlers' logger and tracer, set up once per process at import.

Imported by the Lambda handlers only (``functions/*/app.py``): importing it configures
logging process-wide, which the domain package itself must not do.

- Logs: one Powertools JSON logger (``POWERTOOLS_SERVICE_NAME``, level from
  ``POWERTOOLS_LOG_LEVEL``/``LOG_LEVEL``). The domain modules log with stdlib ``logging``
  under ``tiktok_destination.*``; Lambda's root handler ignores their INFO lines and prints
  the rest as plain text, so they are routed into the Powertools logger: same JSON, same
  level, same request keys (run id, batch) as the handler's own lines. Third-party loggers
  (botocore, urllib3) are left alone: at DEBUG they print requests whole.
- Traces: one Powertools Tracer (X-Ray). It patches boto3 and requests, so every S3,
  Secrets Manager and TikTok call is a subsegment; X-Ray keeps the URL without its query
  string. Disabled outside Lambda and wherever ``POWERTOOLS_TRACE_DISABLED=true`` (the
  local default), so nothing tries to reach an X-Ray daemon there.

Metrics are emitted by the steps (see ``tiktok_destination.adapters.metrics``), not here.
"""

from __future__ import annotations

import logging
import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from tiktok_destination.adapters.metrics import DEFAULT_SERVICE

DOMAIN_LOGGER = "tiktok_destination"

# The service names the logger once per process: a module imported before the environment
# is set (a test collecting a handler) must not leave it "service_undefined".
_service = os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
logger = Logger(service=_service)
tracer = Tracer(service=_service)

# copy_config_to_registered_loggers only finds loggers that exist already.
logging.getLogger(DOMAIN_LOGGER)
copy_config_to_registered_loggers(source_logger=logger, include={DOMAIN_LOGGER})

__all__ = ["DOMAIN_LOGGER", "logger", "tracer"]
