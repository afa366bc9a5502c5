"""Local emulator of the TikTok Business API v1.3 (see ``server.py``)."""

from tiktok_destination.emulator.server import TikTokEmulator, seed_demo, serve_forever

__all__ = ["TikTokEmulator", "seed_demo", "serve_forever"]
