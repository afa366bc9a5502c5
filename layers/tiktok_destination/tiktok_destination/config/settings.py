"""Deployment settings, read from the environment (set by template.yaml or the local runner).

The configuration document's ``[settings]`` table may override the run-shaping ones
(threshold, batch sizes, QPS, phone region); infrastructure names come only from here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tiktok_destination.adapters.tiktok.limits import (
    DEFAULT_BASE_URL,
    DEFAULT_QPS,
    DEFAULT_TIMEOUT,
    MAX_EVENTS_PER_REQUEST,
    MAX_MAPPING_IDS,
    MIN_QPS,
)
from tiktok_destination.adapters.tiktok.transport import RetryPolicy
from tiktok_destination.errors import ConfigurationError

if TYPE_CHECKING:
    from tiktok_destination.config.document import Config

DEFAULT_RANGE_BYTES = 256 * 1024 * 1024
DEFAULT_DIFF_INLINE_MEMBERS = 2_000_000
#: the longest TIKTOK_TIMEOUT_SECONDS: EnsureAudience's lost-create lookups wait twice the
#: timeout per create, and three such rounds must fit the AudienceFunction's 600 s
#: (audience.CREATE_ATTEMPTS; tests/unit/test_settings.py checks the sum)
MAX_TIKTOK_TIMEOUT = 50.0


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name}={raw!r} is not a number") from None


def _qps(name: str, default: float) -> float:
    value = _float(name, default)
    # "not >=" also refuses nan; inf would switch pacing off.
    if not MIN_QPS <= value < math.inf:
        raise ConfigurationError(
            f"environment variable {name}={os.environ.get(name, '')!r} must be a number of "
            f"at least {MIN_QPS} (calls per second to TikTok); set the template parameter "
            "TikTokQps, e.g. 10"
        )
    return value


def _timeout(name: str, default: float) -> float:
    value = _float(name, default)
    if not 0 < value <= MAX_TIKTOK_TIMEOUT:
        raise ConfigurationError(
            f"environment variable {name}={os.environ.get(name, '')!r} must be a number of "
            f"seconds above 0 and at most {MAX_TIKTOK_TIMEOUT:g}; leave it empty for the "
            f"default {default:g}"
        )
    return value


def _int(name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(
            f"environment variable {name}={raw!r} is not a whole number"
        ) from None
    # A batch size outside TikTok's per-request limit fails every batch at send time.
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigurationError(
            f"environment variable {name}={raw!r} must be a whole number from {low:,} to "
            f"{high:,}; set it in that range, or leave it empty for the default {default:,}"
        )
    return value


@dataclass(frozen=True)
class Settings:
    state_bucket: str
    inbox_bucket: str
    config_key: str
    tiktok_base_url: str
    tiktok_qps: float
    secret_prefix: str
    reject_threshold: float
    mapping_batch_size: int
    event_batch_size: int
    default_phone_region: str
    notify_topic_arn: str
    event_bus_name: str
    tiktok_max_retries: int
    tiktok_backoff_base: float
    tiktok_backoff_max: float
    #: seconds one HTTP attempt to TikTok waits for the answer
    tiktok_timeout: float = DEFAULT_TIMEOUT
    #: backstop expiry of a run's lease when Step Functions cannot say whether its holder
    #: still runs (a live holder keeps its lease however long it takes)
    lease_ttl_seconds: int = 21_600
    #: a run of another file waits this long between tries for the lease...
    lease_wait_seconds: int = 60
    #: ...this many times, then fails with the workflow action RunInProgress
    lease_max_waits: int = 60
    #: DynamoDB table of the app-wide rate limiter; empty: each client paces itself alone
    rate_limit_table: str = ""
    #: validate splits a larger input into ranges of about this many bytes (ranges.py): at
    #: the measured ~70 us per row and ~50-100 bytes per row, one child validates 256 MiB
    #: (about 3-5M rows) in well under Lambda's 15 minutes
    validate_range_bytes: int = DEFAULT_RANGE_BYTES
    #: an audience of at most this many members (validated plus committed) is diffed in the
    #: Chunk Lambda itself; a larger one by a Map of one child per shard: at ~3 us a member
    #: and 78 bytes of /tmp three times over, 2M members take seconds and ~0.5 GiB
    diff_inline_members: int = DEFAULT_DIFF_INLINE_MEMBERS

    @property
    def app_secret_name(self) -> str:
        """The TikTok app's ``app_id``/``secret`` and the OAuth state signing key."""
        return f"{self.secret_prefix}app"

    def credential_secret_name(self, credential: str) -> str:
        return f"{self.secret_prefix}credentials/{credential}"

    def retry_policy(self) -> RetryPolicy:
        """The TikTok client's in-process retries (the state machine retries on top)."""
        return RetryPolicy(
            max_retries=self.tiktok_max_retries,
            backoff_base=self.tiktok_backoff_base,
            backoff_max=self.tiktok_backoff_max,
            rate_limit_wait=min(1.0, self.tiktok_backoff_max),
        )

    def with_config(self, config: Config) -> Settings:
        """Apply the configuration document's ``[settings]`` overrides."""
        s = config.settings
        return replace(
            self,
            reject_threshold=(
                s.reject_threshold if s.reject_threshold is not None else self.reject_threshold
            ),
            mapping_batch_size=s.mapping_batch_size or self.mapping_batch_size,
            event_batch_size=s.event_batch_size or self.event_batch_size,
            tiktok_qps=s.tiktok_qps or self.tiktok_qps,
            default_phone_region=s.default_phone_region or self.default_phone_region,
        )


def load_settings() -> Settings:
    state_bucket = os.environ.get("STATE_BUCKET", "")
    if not state_bucket:
        raise ConfigurationError(
            "environment variable STATE_BUCKET is not set: it names the bucket that holds "
            "configuration, run state and reports (template.yaml sets it)"
        )
    return Settings(
        state_bucket=state_bucket,
        inbox_bucket=os.environ.get("INBOX_BUCKET", ""),
        config_key=os.environ.get("CONFIG_KEY", "config/destinations.toml"),
        tiktok_base_url=os.environ.get("TIKTOK_BASE_URL", "") or DEFAULT_BASE_URL,
        tiktok_qps=_qps("TIKTOK_QPS", DEFAULT_QPS),
        secret_prefix=os.environ.get("SECRET_PREFIX", "tiktok-destination/"),
        reject_threshold=_float("REJECT_THRESHOLD", 0.2),
        mapping_batch_size=_int("MAPPING_BATCH_SIZE", MAX_MAPPING_IDS, low=1, high=MAX_MAPPING_IDS),
        event_batch_size=_int(
            "EVENT_BATCH_SIZE", MAX_EVENTS_PER_REQUEST, low=1, high=MAX_EVENTS_PER_REQUEST
        ),
        default_phone_region=os.environ.get("DEFAULT_PHONE_REGION", "") or "US",
        notify_topic_arn=os.environ.get("NOTIFY_TOPIC_ARN", ""),
        event_bus_name=os.environ.get("EVENT_BUS_NAME", "") or "default",
        tiktok_max_retries=_int("TIKTOK_MAX_RETRIES", 5),
        tiktok_backoff_base=_float("TIKTOK_BACKOFF_BASE", 0.5),
        tiktok_backoff_max=_float("TIKTOK_BACKOFF_MAX", 20.0),
        tiktok_timeout=_timeout("TIKTOK_TIMEOUT_SECONDS", DEFAULT_TIMEOUT),
        lease_ttl_seconds=_int("LEASE_TTL_SECONDS", 21_600),
        lease_wait_seconds=_int("LEASE_WAIT_SECONDS", 60),
        lease_max_waits=_int("LEASE_MAX_WAITS", 60),
        rate_limit_table=os.environ.get("RATE_LIMIT_TABLE", ""),
        validate_range_bytes=_range_bytes(),
        diff_inline_members=_int(
            "DIFF_INLINE_MEMBERS", DEFAULT_DIFF_INLINE_MEMBERS, low=0, high=1_000_000_000
        ),
    )


def _range_bytes() -> int:
    value = _int("VALIDATE_RANGE_BYTES", DEFAULT_RANGE_BYTES)
    if value < 1:
        raise ConfigurationError(
            f"environment variable VALIDATE_RANGE_BYTES={value} must be a positive number of "
            "bytes (the size of input one validate child reads, e.g. 268435456 for 256 MiB)"
        )
    return value
