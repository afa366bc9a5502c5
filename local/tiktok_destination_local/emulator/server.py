"""A local emulator of the TikTok Business API v1.3: the endpoints this project calls.

It follows ``docs/tiktok-contract.md`` (paths, envelope, codes, limits, rate limiting) so that code
tested against it works against the real service, and it keeps the state a test needs to
check: audiences with their member hashes, events received, calls per endpoint. Switches
inject the faults a client must survive (5xx, rate-limit bursts, latency, answers that come
after the client gave up, requests applied after it gave up, revoked tokens, Analyst users).

This module puts the API areas together (``accounts``, ``audiences``, ``events``, ``faults``,
``state``, ``state_file``) and routes requests to them; ``transport`` is the HTTP server.
It never prints request lines or bodies: query strings carry app secrets and bodies carry
hashed personal data.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .accounts import AccountsApi
from .audiences import AudiencesApi
from .contract import _HTTP_REASONS, API_PREFIX, FAULT_MESSAGES, PORTAL_PATH, STATE_PATH
from .events import EventsApi
from .faults import Faults
from .model import _ApiError, _envelope, _html, _Request, _Response
from .state_file import StateFile
from .transport import _RequestHandler, _Server

Handler = Callable[["TikTokEmulator", "_Request"], dict[str, Any]]


class TikTokEmulator(AccountsApi, AudiencesApi, EventsApi, Faults, StateFile):
    """An in-process TikTok Business API server.

    ``emu = TikTokEmulator(); base_url = emu.start()`` (or ``with TikTokEmulator() as emu``)
    serves ``http://127.0.0.1:<port>/open_api/v1.3/``. Register the world first:
    ``set_app``, ``add_advertiser``, ``add_event_set``, ``add_token`` / ``authorize``.

    Options:
        qps_limit: more than this many admitted API requests in any 1-second window (a
            sliding window) answer 40100; None (default) switches rate limiting off.
        audience_limit: custom audiences per advertiser (TikTok: 400).
        max_ids_per_request: ``segment/mapping`` rows per request; more answer 40011.
        latency: seconds added to every request (also settable as ``emu.latency``).
        clock: wall-clock function (seconds); tests swap it to move time (auth_code expiry,
            48 h event deduplication, the rate-limit window).
        app_id, secret: shortcut for ``set_app``.
        portal_advertiser_ids: advertisers ``/portal/auth`` grants (None: all known).
        portal_role: the role ``/portal/auth`` grants.
        max_event_age_days: when set, events older than this are rejected (off by default).
    """

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving in a background thread; answer the base URL (ends with a slash)."""
        if self._server is not None:
            raise RuntimeError("TikTokEmulator is already running")
        server = _Server((self.host, self.port), _RequestHandler, self)
        self._server = server
        self.port = server.server_address[1]
        host = self.host
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = "127.0.0.1"
        self.base_url = f"http://{host}:{self.port}{API_PREFIX}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tiktok-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TikTokEmulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def portal_url(self) -> str:
        """The emulated authorization page (``/portal/auth``) of this server."""
        if self.base_url is None:
            raise RuntimeError("start() the emulator first")
        return self.base_url[: -len(API_PREFIX)] + PORTAL_PATH

    # ------------------------------------------------------------------ inspection
    def reset_counters(self) -> None:
        """Forget calls, calls_log, arrivals and the rate-limit window (not state or events)."""
        with self._lock:
            self.calls.clear()
            self.calls_log.clear()
            self.arrivals.clear()
            self._window.clear()

    def state_summary(self) -> dict[str, Any]:
        """A JSON-ready summary without hashes (served at ``/_emulator/state``)."""
        with self._lock:
            return {
                "advertisers": [
                    {
                        "advertiser_id": adv.advertiser_id,
                        "name": adv.name,
                        "audiences": [
                            {
                                "audience_id": a.audience_id,
                                "name": a.name,
                                "cover_num": len(a.members),
                            }
                            for a in self._audiences.values()
                            if a.advertiser_id == adv.advertiser_id
                        ],
                        "event_sets": [
                            {"event_set_id": k, "name": v} for k, v in adv.event_sets.items()
                        ],
                    }
                    for adv in self._advertisers.values()
                ],
                "events_received": len(self.received_events),
                "events_unique": len(self.events_by_key),
                "calls": dict(self.calls),
            }

    # ------------------------------------------------------------------ dispatch
    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        access_token: str | None,
        content_type: str,
        body: bytes,
    ) -> _Response:
        if path == STATE_PATH and method == "GET":
            payload = json.dumps(self.state_summary()).encode()
            return _Response(200, payload, 200)
        if path == PORTAL_PATH:
            key = "portal/auth"
            with self._lock:
                self.calls[key] += 1
            if method == "GET":
                with self._lock:
                    resp = self._portal(query)
                    if resp.status == 302 and not self._commit():
                        resp = _html(503, "The authorization could not be stored; try again.")
            else:
                resp = self._http_error(405, "Method Not Allowed", allow="GET")
            self._log(method, key, resp.log_code)
            return resp

        endpoint = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else None
        key = endpoint if endpoint is not None else path
        with self._lock:
            self.calls[key] += 1
        routes = _ROUTES.get(endpoint) if endpoint is not None else None
        if routes is None:
            hint = ""
            if endpoint is not None and (endpoint + "/") in _ROUTES:
                hint = " Paths end with a slash: did you mean " + API_PREFIX + endpoint + "/ ?"
            resp = self._http_error(404, f"Not Found: {path}.{hint}")
            self._log(method, key, 404)
            return resp
        handler = routes.get(method)
        if handler is None:
            resp = self._http_error(
                405, f"Method {method} not allowed on {path}", allow=", ".join(routes)
            )
            self._log(method, key, 405)
            return resp

        latency = self.latency
        if latency > 0:
            time.sleep(latency)

        late = self._take_delay(key, hold=True)
        if late > 0:
            time.sleep(late)
        held = self._take_delay(key)
        resp = self._answer(method, key, query, access_token, content_type, body, handler)
        if held > 0:
            time.sleep(held)
        return resp

    def _answer(
        self,
        method: str,
        key: str,
        query: dict[str, str],
        access_token: str | None,
        content_type: str,
        body: bytes,
        handler: Handler,
    ) -> _Response:
        fault = self._take_fault(key)
        if fault is not None and fault.http_status is not None:
            status = fault.http_status
            reason = _HTTP_REASONS.get(status, "Error")
            html = f"<html><body><h1>{status} {reason}</h1></body></html>"
            self._log(method, key, status)
            return _Response(status, html.encode(), status, content_type="text/html")
        if fault is not None and fault.code is not None:
            msg = FAULT_MESSAGES.get(fault.code, f"Injected error {fault.code}.")
            self._log(method, key, fault.code)
            return _envelope(fault.code, msg, {})

        if not self._admit():
            self._log(method, key, 40100)
            return _envelope(40100, "Requests made too frequently", {})

        req = _Request(method, key, query, access_token, content_type, body)
        try:
            with self._lock:
                data = handler(self, req)
                stored = method != "POST" or self._commit()
        except _ApiError as err:
            self._log(method, key, err.code)
            return _envelope(err.code, err.message, {})
        if not stored:
            self._log(method, key, 503)
            return self._http_error(503, "The change could not be stored; try again.")
        self._log(method, key, 0)
        return _envelope(0, "OK", data)

    def _log(self, method: str, key: str, code: int) -> None:
        with self._lock:
            self.calls_log.append((method, key, code))

    @staticmethod
    def _http_error(status: int, message: str, *, allow: str | None = None) -> _Response:
        body = {"code": status, "message": message, "request_id": secrets.token_hex(16), "data": {}}
        headers = [("Allow", allow)] if allow else []
        return _Response(status, json.dumps(body).encode(), status, headers=headers)


_ROUTES: dict[str, dict[str, Handler]] = {
    "dmp/custom_audience/list/": {"GET": TikTokEmulator._ep_audience_list},
    "dmp/custom_audience/get/": {"GET": TikTokEmulator._ep_audience_get},
    "segment/audience/": {"POST": TikTokEmulator._ep_segment_audience},
    "segment/mapping/": {"POST": TikTokEmulator._ep_segment_mapping},
    "event/track/": {"POST": TikTokEmulator._ep_event_track},
    "offline/get/": {"GET": TikTokEmulator._ep_offline_get},
    "user/info/": {"GET": TikTokEmulator._ep_user_info},
    "oauth2/advertiser/get/": {"GET": TikTokEmulator._ep_advertiser_get},
    "oauth2/access_token/": {"POST": TikTokEmulator._ep_access_token},
    "oauth2/revoke_token/": {"POST": TikTokEmulator._ep_revoke_token},
}
