"""TikTok Business API v1.3 access: one client for every call (see ``client.py``)."""

from tiktok_destination.adapters.tiktok.client import (
    DEFAULT_BASE_URL,
    SANDBOX_BASE_URL,
    CallStats,
    RetryPolicy,
    TikTokClient,
)

__all__ = ["DEFAULT_BASE_URL", "SANDBOX_BASE_URL", "CallStats", "RetryPolicy", "TikTokClient"]
