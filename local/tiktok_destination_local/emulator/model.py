"""The emulated world's records, the error answer and the small helpers every area uses."""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .contract import API_PREFIX


class _ApiError(Exception):
    """A TikTok error answer: HTTP 200 with a non-zero code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> _ApiError:
    return _ApiError(40002, message)


def _refuse_constant(name: str) -> float:
    # Python's json reads NaN/Infinity; strict JSON parsers (TikTok's) refuse them.
    raise ValueError(f"{name} is not JSON")


def _new_id() -> str:
    """A 19-digit numeric string, like TikTok's advertiser / audience / event set ids."""
    return str(secrets.randbelow(9 * 10**18) + 10**18)


def _fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class _Advertiser:
    advertiser_id: str
    name: str
    event_sets: dict[str, str] = field(default_factory=dict)


@dataclass
class _Audience:
    audience_id: str
    advertiser_id: str
    name: str
    created: float
    members: set[str] = field(default_factory=set)
    is_valid: bool = True
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Token:
    token: str
    advertiser_ids: list[str]
    role: str
    user: dict[str, Any]
    revoked: bool = False


@dataclass
class _AuthCode:
    advertiser_ids: list[str]
    role: str
    user: dict[str, Any] | None
    issued: float
    used: bool = False


@dataclass
class _Fault:
    code: int | None
    http_status: int | None
    remaining: int


@dataclass
class _Delay:
    seconds: float
    remaining: int


@dataclass
class _Request:
    method: str
    endpoint: str
    query: dict[str, str]
    access_token: str | None
    content_type: str
    body: bytes


@dataclass
class _Response:
    status: int
    body: bytes
    log_code: int
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _envelope(code: int, message: str, data: dict[str, Any]) -> _Response:
    body = {"code": code, "message": message, "request_id": secrets.token_hex(16), "data": data}
    return _Response(200, json.dumps(body).encode(), code)


def _html(status: int, message: str) -> _Response:
    page = f"<html><body><h1>Authorization failed</h1><p>{message}</p></body></html>"
    return _Response(status, page.encode(), status, content_type="text/html")


def _normalize_path(path: str) -> str:
    """ "segment/mapping/", "/segment/mapping/" and the full API path all name one endpoint."""
    path = urlsplit(path).path if "://" in path else path
    if path.startswith(API_PREFIX):
        return path[len(API_PREFIX) :]
    return path.lstrip("/")
