"""TikTok Business API v1.3 access: one client for every call (see ``client.py``).

``client`` holds the calls, ``transport`` the paced, retrying HTTP under them,
``send_gate`` the last lateness check before a request leaves, ``codes`` what each answer
code becomes, ``bodies`` what a call sends, ``limits`` TikTok's limits and our defaults,
``names`` how TikTok shows an audience name.
"""

from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.limits import DEFAULT_BASE_URL, SANDBOX_BASE_URL
from tiktok_destination.adapters.tiktok.transport import CallStats, RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "SANDBOX_BASE_URL", "CallStats", "RetryPolicy", "TikTokClient"]
