"""The demo world (fake app, advertiser, event set, token) and the foreground server."""

from __future__ import annotations

import time
from typing import Any

from .server import TikTokEmulator

DEMO_APP_ID = "7300000000000000001"
DEMO_SECRET = "emulator-secret"  # noqa: S105 - a fixed fake secret for the local emulator
DEMO_ADVERTISER_ID = "7000000000000000001"
DEMO_EVENT_SET_ID = "7100000000000000001"
DEMO_TOKEN = "emulator-access-token"  # noqa: S105 - a fixed fake token for the local emulator
#: the last line serve_forever prints: from then on a Ctrl-C (SIGINT) stops it cleanly
READY_LINE = "Press Ctrl-C to stop."


def seed_demo(emu: TikTokEmulator) -> dict[str, str]:
    """Register a demo app, advertiser, offline event set and Admin token; answer them."""
    emu.set_app(DEMO_APP_ID, DEMO_SECRET)
    emu.add_advertiser(DEMO_ADVERTISER_ID, "Demo Advertiser")
    emu.add_event_set(DEMO_ADVERTISER_ID, DEMO_EVENT_SET_ID, "Demo Offline Events")
    emu.add_token(DEMO_TOKEN, [DEMO_ADVERTISER_ID])
    if emu.portal_advertiser_ids is None:
        emu.portal_advertiser_ids = [DEMO_ADVERTISER_ID]
    return {
        "app_id": DEMO_APP_ID,
        "secret": DEMO_SECRET,
        "advertiser_id": DEMO_ADVERTISER_ID,
        "event_set_id": DEMO_EVENT_SET_ID,
        "access_token": DEMO_TOKEN,
    }


def serve_forever(host: str, port: int, *, seed: bool = True, **options: Any) -> None:
    """Run the emulator in the foreground: print the base URL, block until Ctrl-C.

    ``options`` go to ``TikTokEmulator``; ``seed`` registers the demo app, advertiser,
    event set and token (fake values, printed so a local client can use them).
    """
    emu = TikTokEmulator(host, port, **options)
    demo = seed_demo(emu) if seed else None
    base_url = emu.start()
    try:
        # Printed inside the try: once "Press Ctrl-C to stop." is out, the emulator answers
        # and a Ctrl-C stops it cleanly, so a script (or a test) can wait for that line.
        print(f"TikTok emulator listening on {base_url}", flush=True)
        print(f"  authorization page: {emu.portal_url}", flush=True)
        if demo:
            for key, value in demo.items():
                print(f"  {key}: {value}", flush=True)
        print(READY_LINE, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
