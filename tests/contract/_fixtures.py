"""Loading the documented samples in ``fixtures/`` and replaying them to our client."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

FIXTURES = Path(__file__).parent / "fixtures"
PREFIX = "/open_api/v1.3/"


def load(name: str) -> dict[str, Any]:
    """A fresh copy of ``fixtures/<name>.json`` (tests may edit it)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(data)


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Replay(BaseAdapter):
    """A requests transport that answers each call with the next documented response.

    Mounted on the session handed to ``TikTokClient``, so the client's real request
    building (URL, query encoding, headers, JSON body) is what gets recorded.
    """

    answers: list[dict[str, Any]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **_kwargs: Any
    ) -> requests.Response:
        split = urlsplit(request.url or "")
        raw = request.body
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        self.sent.append(
            Sent(
                method=request.method or "",
                path=split.path,
                query={k: v[-1] for k, v in parse_qs(split.query).items()},
                headers=dict(request.headers),
                body=json.loads(text) if text else None,
            )
        )
        resp = requests.Response()
        resp.status_code = 200
        resp.headers["Content-Type"] = "application/json"
        resp._content = json.dumps(self.answers.pop(0)).encode("utf-8")
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def replay_session(*answers: dict[str, Any]) -> tuple[requests.Session, Replay]:
    adapter = Replay(answers=list(answers))
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter
