"""What TikTok allows and what we assume when a setting is absent, beside the client.

The batch limits are TikTok's (docs/tiktok-contract.md): a request over one is refused
whole, so settings and the configuration file are bounded by these same constants. The
defaults are the client's: the base URL, the per-attempt timeout and the pace.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_QPS",
    "DEFAULT_TIMEOUT",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_MAPPING_IDS",
    "MIN_QPS",
    "SANDBOX_BASE_URL",
]

DEFAULT_BASE_URL = "https://business-api.tiktok.com/open_api/v1.3/"
SANDBOX_BASE_URL = "https://sandbox-ads.tiktok.com/open_api/v1.3/"

#: seconds an HTTP attempt waits for TikTok (connect, then each read). A create TikTok
#: received may be applied after this, so the audience step keeps looking the name up for
#: twice as long before it creates again.
DEFAULT_TIMEOUT = 30.0
#: the slowest pacing a setting may ask for: below it a run's calls are hours apart and the
#: step looks hung (0 is allowed only in code, meaning "do not pace")
MIN_QPS = 0.1
#: ``segment/mapping`` identifiers per request (more answer 40011)
MAX_MAPPING_IDS = 10_000

#: Events API 2.0 rejects a whole request with more events than this.
MAX_EVENTS_PER_REQUEST = 1000
#: calls per second when nothing sets ``tiktok_qps``: the Basic tier's limit
DEFAULT_QPS = 10.0
