"""A local emulator of the TikTok Business API v1.3, split by API area.

- ``server``: ``TikTokEmulator`` (options, lifecycle, routing) put together from the areas;
- ``accounts``: OAuth, advertisers, event sets, tokens and the authorization page;
- ``audiences``: custom audiences and segment/mapping;
- ``events``: offline event sets and event/track;
- ``faults``: injected errors, late answers, latency and the rate limit;
- ``state``, ``state_file``: the world as data, and as a file that survives a kill;
- ``contract``: what the emulator knows of TikTok (tables, limits, codes) and its sources;
- ``base``, ``model``: the shared world, records and request checks; ``transport``: HTTP;
- ``demo``: the demo world and ``tiktok-destination emulator``'s foreground server.

Stdlib only: it runs inside unit tests, in the local demo and as ``tiktok-destination
emulator``. It imports nothing from ``tiktok_destination``, the package it tests.
"""

from .contract import (
    API_PREFIX,
    CURRENCIES,
    ID_TYPES,
    SERVER_SIDE_CODES,
    STANDARD_EVENTS,
    STATE_VERSION,
    THROTTLE_CODES,
)
from .demo import seed_demo, serve_forever
from .server import TikTokEmulator

__all__ = [
    "API_PREFIX",
    "CURRENCIES",
    "ID_TYPES",
    "SERVER_SIDE_CODES",
    "STANDARD_EVENTS",
    "STATE_VERSION",
    "THROTTLE_CODES",
    "TikTokEmulator",
    "seed_demo",
    "serve_forever",
]
