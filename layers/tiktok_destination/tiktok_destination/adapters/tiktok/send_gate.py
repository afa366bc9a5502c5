"""The send gate: the pacer's lateness rule, checked again as a request is about to leave.

A pacer lets a call go on time, but the call reaches the network only after its request is
prepared and its connection made; a call held up past its slot in between must not leave
(``LATE_TOLERANCE`` in :mod:`tiktok_destination.adapters.rate_limit` says why). requests
offers no hook that late, so the client's own session uses urllib3 connections that run the
gate of the current attempt just before they send.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["SEND_GATE", "gated_session"]

#: run just before the request of the attempt in this thread leaves (None: not paced)
SEND_GATE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "tiktok_send_gate", default=None
)


def _check_send_gate(conn: HTTPConnection) -> None:
    # The pacer's lateness rule again, as the request's first byte is about to leave. Between
    # the pacer's wake and here lie the request's preparation and, on a new connection, the
    # TCP and TLS handshakes: a CPU-starved or GIL-bound process (the local default runs
    # every Lambda and the emulator in one) stretched that to 0.9 s in issue 15's trials,
    # enough to land an 11th call inside TikTok's second. The handshakes are done first, so
    # that only the send and the network are left of the way to TikTok, and a call that is
    # late by then waits for a new slot here, its connection kept open.
    gate = SEND_GATE.get()
    if gate is None:
        return
    if conn.sock is None:  # urllib3 2's is_closed; 1.26 has only the socket
        conn.connect()
    gate()


class _GatedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _check_send_gate(self)
        super().request(*args, **kwargs)


class _GatedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _check_send_gate(self)
        super().request(*args, **kwargs)


class _GatedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GatedHTTPConnection


class _GatedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GatedHTTPSConnection


class _GatedAdapter(HTTPAdapter):
    """requests' adapter, with connections that check the send gate before each request."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GatedHTTPPool, "https": _GatedHTTPSPool}


def gated_session() -> requests.Session:
    """A session whose every request passes the send gate first."""
    session = requests.Session()
    session.mount("https://", _GatedAdapter())
    session.mount("http://", _GatedAdapter())
    return session
