"""TikTokClient against a real local HTTP server with scripted answers (no mocks of requests)."""

from __future__ import annotations

import itertools
import json
import random
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from urllib3.connection import HTTPConnection

from tiktok_destination.adapters.tiktok.bodies import track_body
from tiktok_destination.adapters.tiktok.client import TikTokClient
from tiktok_destination.adapters.tiktok.codes import advice
from tiktok_destination.adapters.tiktok.limits import DEFAULT_BASE_URL
from tiktok_destination.adapters.tiktok.transport import CallStats, RetryPolicy
from tiktok_destination.errors import (
    AdvertiserNotFound,
    ConfigurationError,
    DestinationError,
    FatalError,
    InvalidCredentials,
    MissingAdvertiserPermissions,
    OAuthError,
    RetriableError,
    TikTokRateLimited,
    TikTokRequestRejected,
    TikTokUnavailable,
    TikTokWriteConflict,
)

TOKEN = "tok-7f3a9c1e5b2d4f6a8c0e"
SECRET = "app-secret-91b2c3d4e5"
ADVERTISER = "7012345678901234567"
EVENT_SET = "7234567890123456789"
AUDIENCE = "7345678901234567890"
PREFIX = "/open_api/v1.3/"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


def envelope(
    code: int = 0, data: Any = None, message: str = "OK", request_id: str = "rid-1"
) -> Reply:
    payload: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if data is not None:
        payload["data"] = data
    return Reply(body=json.dumps(payload).encode())


@dataclass
class FakeTikTok:
    base_url: str
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


@pytest.fixture
def server() -> Iterator[FakeTikTok]:
    fake = FakeTikTok(base_url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # header and body go out as separate writes

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            with lock:
                fake.requests.append(
                    Recorded(
                        method=self.command,
                        path=split.path,
                        query=parse_qs(split.query),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
                reply = fake.replies.popleft() if fake.replies else envelope(data={})
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}{PREFIX}"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


class FakeClock:
    """Monotonic fake time: sleeping advances it, so pacing is measurable and instant."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(server: FakeTikTok, **kwargs: Any) -> TikTokClient:
    kwargs.setdefault("qps", 0)
    kwargs.setdefault("sleep", lambda _s: None)
    kwargs.setdefault("retry", RetryPolicy(max_retries=2))
    kwargs.setdefault("timeout", 5.0)
    return TikTokClient(TOKEN, base_url=server.base_url, **kwargs)


# ------------------------------------------------------------------ transport shape
def test_get_sends_token_header_slash_path_and_json_list_params(server: FakeTikTok) -> None:
    server.script(envelope(data={"event_set_list": [{"event_set_id": EVENT_SET, "name": "crm"}]}))
    # base_url without the trailing slash must still produce .../offline/get/
    client = TikTokClient(TOKEN, base_url=server.base_url.rstrip("/"), qps=0, sleep=lambda _s: None)

    sets = client.event_sets(ADVERTISER, [EVENT_SET])

    assert sets == [{"event_set_id": EVENT_SET, "name": "crm"}]
    req = server.last
    assert req.method == "GET"
    assert req.path == PREFIX + "offline/get/"
    assert req.headers["access-token"] == TOKEN
    assert "authorization" not in req.headers
    assert req.query["advertiser_id"] == [ADVERTISER]
    assert req.query["event_set_ids"] == [f'["{EVENT_SET}"]']
    assert json.loads(req.query["event_set_ids"][0]) == [EVENT_SET]


def test_get_serializes_tuple_and_dict_params_as_json(server: FakeTikTok) -> None:
    client = make_client(server)

    client.get(
        "/dmp/custom_audience/get",
        {"ids": ("1", "2"), "filtering": {"a": 1}, "x": None, "on": True, "off": False},
    )

    req = server.last
    assert req.path == PREFIX + "dmp/custom_audience/get/"
    assert json.loads(req.query["ids"][0]) == ["1", "2"]
    assert json.loads(req.query["filtering"][0]) == {"a": 1}
    assert "x" not in req.query
    # JSON booleans, as TikTok reads them, not Python's "True"
    assert (req.query["on"], req.query["off"]) == (["true"], ["false"])


def test_post_sends_json_body_and_content_type(server: FakeTikTok) -> None:
    client = make_client(server)
    batch = [[{"id": "a" * 64, "audience_ids": [AUDIENCE]}, {}]]

    client.map_audience(ADVERTISER, "add", ["EMAIL_SHA256", "PHONE_SHA256"], batch)

    req = server.last
    assert req.method == "POST"
    assert req.path == PREFIX + "segment/mapping/"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["access-token"] == TOKEN
    assert json.loads(req.body) == {
        "advertiser_ids": [ADVERTISER],
        "action": "add",
        "id_schema": ["EMAIL_SHA256", "PHONE_SHA256"],
        "batch_data": batch,
    }


def test_map_audience_rejects_unknown_action_without_calling(server: FakeTikTok) -> None:
    client = make_client(server)
    with pytest.raises(ValueError, match="'add' or 'delete'"):
        client.map_audience(ADVERTISER, "replace", ["EMAIL_SHA256"], [])  # type: ignore[arg-type]
    assert server.requests == []


# ------------------------------------------------------------------ success envelopes
def test_success_returns_data_and_missing_data_is_empty(server: FakeTikTok) -> None:
    server.script(envelope(data={"display_name": "ops"}), envelope(data=None))
    client = make_client(server)

    assert client.user_info() == {"display_name": "ops"}
    assert client.get("user/info/") == {}
    assert server.requests[0].path == PREFIX + "user/info/"
    assert client.stats.partial_messages == []


def test_partial_success_20001_is_success_and_recorded(server: FakeTikTok) -> None:
    server.script(envelope(code=20001, data={"x": 1}, message="2 events were rejected"))
    client = make_client(server)

    assert client.track_events(EVENT_SET, [{"event": "Purchase"}]) == {"x": 1}
    assert client.stats.partial_messages == ["2 events were rejected"]
    assert client.stats.calls == 1
    assert client.stats.retries == 0


def test_track_events_body(server: FakeTikTok) -> None:
    client = make_client(server)
    event = {"event": "Purchase", "event_time": 1700000000, "event_id": "o-1"}

    client.track_events(EVENT_SET, [event], test_event_code="TEST123")
    client.track_events(EVENT_SET, [event])

    first, second = (json.loads(r.body) for r in server.requests)
    assert server.requests[0].path == PREFIX + "event/track/"
    assert first == {
        "event_source": "offline",
        "event_source_id": EVENT_SET,
        "data": [event],
        "test_event_code": "TEST123",
    }
    assert "test_event_code" not in second


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_number_is_never_sent(server: FakeTikTok, number: float) -> None:
    client = make_client(server)
    event = {"event": "Purchase", "event_id": "o-1", "properties": {"value": number}}

    with pytest.raises(TikTokRequestRejected, match="NaN or infinite") as raised:
        client.track_events(EVENT_SET, [event])
    assert server.requests == []
    assert "event/track/" in raised.value.message


def test_track_events_sends_the_one_body_builder_and_its_limit(server: FakeTikTok) -> None:
    # The send path builds its body with bodies.track_body: 1,001 events never leave.
    client = make_client(server)
    event = {"event": "Purchase", "event_time": 1700000000, "event_id": "o-1"}

    client.track_events(EVENT_SET, [event] * 1000)
    with pytest.raises(ValueError, match="1001 events"):
        client.track_events(EVENT_SET, [event] * 1001)
    with pytest.raises(ValueError, match="19-digit"):
        client.track_events("123", [event])

    assert len(server.requests) == 1
    assert json.loads(server.requests[0].body) == track_body(
        EVENT_SET, [event] * 1000, test_event_code=None
    )


def test_create_audience_returns_string_id_even_from_json_number(server: FakeTikTok) -> None:
    # A 19-digit JSON number must come back exactly, as a string.
    server.script(
        Reply(
            body=b'{"code":0,"message":"OK","request_id":"r","data":'
            b'{"audience_id":7345678901234567890}}'
        )
    )
    client = make_client(server)

    audience_id = client.create_audience(ADVERTISER, "Loyal buyers")

    assert audience_id == AUDIENCE
    assert json.loads(server.last.body) == {
        "advertiser_id": ADVERTISER,
        "action": "create",
        "custom_audience_name": "Loyal buyers",
    }
    assert server.last.path == PREFIX + "segment/audience/"


def test_create_audience_without_id_is_fatal_not_retried(server: FakeTikTok) -> None:
    server.script(envelope(data={}))
    client = make_client(server)
    with pytest.raises(TikTokRequestRejected, match="audience_id"):
        client.create_audience(ADVERTISER, "x")
    assert client.stats.calls == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=503, body=b"upstream down", content_type="text/plain"),
        envelope(code=50000, message="System error"),
    ],
    ids=["http-503", "code-50000"],
)
def test_create_audience_is_not_resent_after_an_uncertain_answer(
    server: FakeTikTok, reply: Reply
) -> None:
    # TikTok may have created the audience: a blind re-send could make a second one.
    server.script(reply, envelope(data={"audience_id": AUDIENCE}))
    client = make_client(server, retry=RetryPolicy(max_retries=3))

    with pytest.raises(TikTokUnavailable):
        client.create_audience(ADVERTISER, "x")

    assert client.stats.calls == 1
    assert client.stats.retries == 0


def test_create_audience_is_retried_after_a_rate_limit(server: FakeTikTok) -> None:
    # A rate-limit answer says nothing was done, so sending again is safe.
    server.script(
        envelope(code=40100, message="too frequent"), envelope(data={"audience_id": AUDIENCE})
    )
    client = make_client(server, retry=RetryPolicy(max_retries=3))

    assert client.create_audience(ADVERTISER, "x") == AUDIENCE
    assert client.stats.calls == 2


def test_iter_audiences_walks_all_pages(server: FakeTikTok) -> None:
    def page(n: int, items: list[dict[str, Any]]) -> Reply:
        info = {"page": n, "page_size": 100, "total_number": 3, "total_page": 2}
        return envelope(data={"page_info": info, "list": items})

    server.script(
        page(1, [{"audience_id": "1", "name": "a"}, {"audience_id": "2", "name": "b"}]),
        page(2, [{"audience_id": "3", "name": "c"}]),
    )
    client = make_client(server)

    names = [a["name"] for a in client.iter_audiences(ADVERTISER)]

    assert names == ["a", "b", "c"]
    assert [r.query["page"] for r in server.requests] == [["1"], ["2"]]
    assert all(r.path == PREFIX + "dmp/custom_audience/list/" for r in server.requests)
    assert server.requests[0].query["page_size"] == ["100"]
    assert client.stats.by_endpoint == {"dmp/custom_audience/list/": 2}


def test_iter_audiences_stops_on_empty_page(server: FakeTikTok) -> None:
    server.script(envelope(data={"page_info": {"total_page": 0}, "list": []}))
    client = make_client(server)
    assert list(client.iter_audiences(ADVERTISER)) == []
    assert len(server.requests) == 1


def test_authorized_advertisers_and_exchange_auth_code(server: FakeTikTok) -> None:
    server.script(
        envelope(data={"list": [{"advertiser_id": ADVERTISER, "advertiser_name": "Shop"}]}),
        envelope(data={"access_token": "new", "advertiser_ids": [ADVERTISER], "scope": [4]}),
    )
    client = make_client(server)

    advertisers = client.authorized_advertisers("app-1", SECRET)
    token_data = TikTokClient.exchange_auth_code(
        "app-1", SECRET, "code-xyz", base_url=server.base_url, sleep=lambda _s: None
    )

    assert advertisers == [{"advertiser_id": ADVERTISER, "advertiser_name": "Shop"}]
    listing, exchange = server.requests
    assert listing.path == PREFIX + "oauth2/advertiser/get/"
    assert listing.query == {"app_id": ["app-1"], "secret": [SECRET]}
    assert token_data["advertiser_ids"] == [ADVERTISER]
    assert exchange.path == PREFIX + "oauth2/access_token/"
    assert "access-token" not in exchange.headers
    assert json.loads(exchange.body) == {
        "app_id": "app-1",
        "secret": SECRET,
        "auth_code": "code-xyz",
    }


# ------------------------------------------------------------------ code table
FATAL_CODES = [
    (40001, MissingAdvertiserPermissions, "Analyst"),
    (40301, MissingAdvertiserPermissions, "Admin or Operator"),
    (40102, InvalidCredentials, "Re-authorize"),
    (40104, InvalidCredentials, "Re-authorize"),
    (40105, InvalidCredentials, "Re-authorize"),
    (40106, InvalidCredentials, "Re-authorize"),
    (40300, AdvertiserNotFound, "advertiser_id"),
    (40101, OAuthError, "app_id and secret"),
    (40110, OAuthError, "app_id and secret"),
    (40113, OAuthError, "app_id and secret"),
    (40000, TikTokRequestRejected, "parameter"),
    (40002, TikTokRequestRejected, "parameter"),
    (40007, TikTokRequestRejected, "does not exist"),
    (40011, TikTokRequestRejected, "batch size"),
    (41234, TikTokRequestRejected, "check the request"),
    # named by no source found: not retried as a rate limit any more
    (40133, TikTokRequestRejected, "check the request"),
    # codes TikTok's SDK does not name, between its database/storage codes (52000-52204)
    (52004, TikTokRequestRejected, "check the request"),
    (52205, TikTokRequestRejected, "check the request"),
    (50999, TikTokRequestRejected, "check the request"),
]


@pytest.mark.parametrize(("code", "exc_cls", "advice"), FATAL_CODES)
def test_fatal_codes_map_to_their_class_without_retry(
    server: FakeTikTok, code: int, exc_cls: type[DestinationError], advice: str
) -> None:
    server.script(envelope(code=code, message=f"TikTok says {code}", request_id="rid-fatal"))
    client = make_client(server)

    with pytest.raises(exc_cls) as info:
        client.post("segment/mapping", {"x": 1})

    exc = info.value
    assert type(exc) is exc_cls
    assert isinstance(exc, FatalError)
    assert exc.code == code
    assert exc.request_id == "rid-fatal"
    text = str(exc)
    assert "segment/mapping/" in text
    assert str(code) in text
    assert f"TikTok says {code}" in text
    assert advice in text
    assert client.stats.calls == 1
    assert client.stats.retries == 0


RETRIABLE_CODES = [
    (40016, TikTokRateLimited),
    (40100, TikTokRateLimited),
    (40132, TikTokRateLimited),  # REQUEST_FREQUENCY_LIMITED in TikTok's SDK
    (50000, TikTokUnavailable),
    (50002, TikTokUnavailable),
    (51000, TikTokUnavailable),
    (51999, TikTokUnavailable),
    (60001, TikTokUnavailable),
    (61000, TikTokUnavailable),
    (40202, TikTokWriteConflict),
]


@pytest.mark.parametrize(("code", "exc_cls"), RETRIABLE_CODES)
def test_retriable_codes_exhaust_retries_then_raise_their_class(
    server: FakeTikTok, code: int, exc_cls: type[DestinationError]
) -> None:
    server.script(*(envelope(code=code, message="busy", request_id=f"r{i}") for i in range(4)))
    client = make_client(server, retry=RetryPolicy(max_retries=3))

    with pytest.raises(exc_cls) as info:
        client.get("dmp/custom_audience/list/", {"advertiser_id": ADVERTISER})

    exc = info.value
    assert type(exc) is exc_cls
    assert isinstance(exc, RetriableError)
    assert exc.code == code
    assert exc.request_id == "r3"  # the last attempt's id
    assert "dmp/custom_audience/list/" in str(exc)
    assert str(code) in str(exc)
    assert client.stats.calls == 4
    assert client.stats.retries == 3
    assert client.stats.by_endpoint == {"dmp/custom_audience/list/": 4}


def test_retry_then_success_counts_retries_and_waits_out_rate_limit(
    server: FakeTikTok,
) -> None:
    server.script(
        envelope(code=50002, message="server error"),
        envelope(code=40100, message="Requests made too frequently"),
        envelope(data={"ok": True}),
    )
    fake = FakeClock()
    policy = RetryPolicy(max_retries=5, backoff_base=0.01, backoff_max=0.05, rate_limit_wait=1.0)
    client = make_client(server, retry=policy, sleep=fake.sleep, clock=fake.clock)

    assert client.post("segment/mapping/", {"x": 1}) == {"ok": True}

    assert client.stats.calls == 3
    assert client.stats.retries == 2
    assert len(fake.sleeps) == 2
    assert 0 <= fake.sleeps[0] <= 0.05  # plain backoff, capped
    assert fake.sleeps[1] >= 1.0  # rate limit: wait out the second
    assert client.stats.as_dict() == {
        "calls": 3,
        "retries": 2,
        "rate_limited": 1,
        "by_endpoint": {"segment/mapping/": 3},
        "partial_messages": [],
    }


def test_rate_limit_answers_are_counted_also_when_retries_run_out(server: FakeTikTok) -> None:
    server.script(
        envelope(code=50002, message="server error"),
        envelope(code=40100, message="Requests made too frequently"),
        envelope(code=40100, message="Requests made too frequently"),
    )
    fake = FakeClock()
    policy = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05, rate_limit_wait=0.1)
    client = make_client(server, retry=policy, sleep=fake.sleep, clock=fake.clock)

    with pytest.raises(TikTokRateLimited):
        client.post("segment/mapping/", {"x": 1})

    # The server error is a retry but not a rate limit; the last answer counts too.
    assert (client.stats.calls, client.stats.retries, client.stats.rate_limited) == (3, 2, 2)


def test_backoff_never_exceeds_cap() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=2.0)
    rng = random.Random(7)
    waits = [policy.backoff(n, rng) for n in range(1, 30) for _ in range(20)]
    assert all(0.0 <= w <= 2.0 for w in waits)
    assert max(waits) > 1.0  # exponential growth actually reaches the cap region


# ------------------------------------------------------------------ HTTP level
def test_http_5xx_is_retried_then_succeeds(server: FakeTikTok) -> None:
    server.script(
        Reply(status=503, body=b"upstream down", content_type="text/plain"),
        envelope(data={"ok": 1}),
    )
    client = make_client(server)

    assert client.get("user/info/") == {"ok": 1}
    assert client.stats.calls == 2
    assert client.stats.retries == 1


def test_http_5xx_exhausted_raises_unavailable(server: FakeTikTok) -> None:
    server.script(*(Reply(status=502, body=b"bad gateway") for _ in range(3)))
    client = make_client(server, retry=RetryPolicy(max_retries=2))

    with pytest.raises(TikTokUnavailable, match="HTTP 502") as info:
        client.get("user/info/")
    assert info.value.code is None
    assert client.stats.calls == 3


def test_http_4xx_is_fatal_wrong_path(server: FakeTikTok) -> None:
    server.script(Reply(status=404, body=b"not found", content_type="text/plain"))
    client = make_client(server)

    with pytest.raises(TikTokRequestRejected, match="wrong path or method") as info:
        client.get("no/such/endpoint")
    assert "no/such/endpoint/" in str(info.value)
    assert client.stats.calls == 1


def test_non_json_body_is_retriable_unavailable(server: FakeTikTok) -> None:
    server.script(
        *(Reply(body=b"<html>maintenance</html>", content_type="text/html") for _ in range(3))
    )
    client = make_client(server, retry=RetryPolicy(max_retries=2))

    with pytest.raises(TikTokUnavailable, match="not TikTok's JSON envelope"):
        client.get("user/info/")
    assert client.stats.calls == 3
    assert client.stats.retries == 2


def test_connection_error_is_retriable_and_hides_secret_query() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: every attempt is refused.
    client = TikTokClient(
        TOKEN,
        base_url=f"http://127.0.0.1:{port}{PREFIX}",
        qps=0,
        retry=RetryPolicy(max_retries=1),
        sleep=lambda _s: None,
        timeout=2.0,
    )

    with pytest.raises(TikTokUnavailable) as info:
        client.authorized_advertisers("app-1", SECRET)
    text = str(info.value)
    assert "oauth2/advertiser/get/" in text
    assert "ConnectionError" in text
    assert SECRET not in text
    assert TOKEN not in text
    assert client.stats.calls == 2


def test_unusable_base_url_is_configuration_error() -> None:
    client = TikTokClient(TOKEN, base_url="business-api.tiktok.com/open_api/v1.3", qps=0)
    with pytest.raises(ConfigurationError, match="base_url"):
        client.user_info()


# ------------------------------------------------------------------ pacing
@pytest.mark.parametrize(("qps", "n"), [(10.0, 12), (3.0, 7), (1.0, 4)])
def test_pacing_never_exceeds_qps(server: FakeTikTok, qps: float, n: int) -> None:
    fake = FakeClock()
    client = make_client(server, qps=qps, sleep=fake.sleep, clock=fake.clock)

    start = fake.now
    starts = []
    for _ in range(n):
        client.get("user/info/")
        starts.append(fake.now)

    assert fake.now - start >= (n - 1) / qps - 1e-9
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g >= 1 / qps - 1e-9 for g in gaps)
    assert len(server.requests) == n


def test_pacing_does_not_sleep_when_calls_are_already_spaced(server: FakeTikTok) -> None:
    fake = FakeClock()
    client = make_client(server, qps=2.0, sleep=fake.sleep, clock=fake.clock)
    client.get("user/info/")
    fake.now += 5.0  # idle time is not banked into a burst, nor slept again
    client.get("user/info/")
    client.get("user/info/")
    # One interval at 2 QPS: half a second plus the pacing headroom.
    assert fake.sleeps == [pytest.approx(0.5 * 1.2)]


def test_qps_zero_disables_pacing(server: FakeTikTok) -> None:
    fake = FakeClock()
    client = make_client(server, qps=0, sleep=fake.sleep, clock=fake.clock)
    for _ in range(5):
        client.get("user/info/")
    assert fake.sleeps == []


def test_retries_are_paced_too(server: FakeTikTok) -> None:
    server.script(envelope(code=50000), envelope(data={}))
    fake = FakeClock()
    policy = RetryPolicy(backoff_base=0.0, backoff_max=0.0)  # no backoff: pacing alone
    client = make_client(server, qps=4.0, retry=policy, sleep=fake.sleep, clock=fake.clock)
    client.get("user/info/")
    assert fake.now - 1000.0 >= 0.25 - 1e-9


def test_a_call_stalled_between_its_slot_and_the_send_takes_a_new_slot(
    server: FakeTikTok, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 15: the pacer let the call go on time, then the process stalled (CPU-starved,
    # GIL-bound) for 0.5 s while the request was prepared. It left that late anyway, next
    # to the call of the following slot: three calls inside one second at 2 QPS.
    fake = FakeClock()
    client = make_client(server, qps=2.0, sleep=fake.sleep, clock=fake.clock)
    arrivals: list[float] = []  # fake time at which each request reached the server

    class Stamped(list[Recorded]):
        def append(self, item: Recorded) -> None:
            arrivals.append(fake.now)
            super().append(item)

    server.requests = Stamped()
    stalls = [0.5]
    real_prepare = requests.Session.prepare_request

    def stalling_prepare(self: requests.Session, request: requests.Request) -> Any:
        if stalls:
            fake.now += stalls.pop()
        return real_prepare(self, request)

    monkeypatch.setattr(requests.Session, "prepare_request", stalling_prepare)
    for _ in range(3):
        client.get("user/info/")

    assert len(arrivals) == 3, "the stalled call was sent once, in a later slot"
    assert client.stats.calls == 3
    # TikTok's count at 2 QPS: any third call is at least a second after the first.
    spans = [b - a for a, b in zip(arrivals, arrivals[2:], strict=False)]
    assert min(spans) >= 1.0, arrivals


def test_a_slow_handshake_does_not_make_the_call_late_nor_cost_its_connection(
    server: FakeTikTok, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every new connection takes 0.5 s to open (a slow TLS handshake to TikTok). The call
    # waits for a new slot on the open connection rather than going late, and the next
    # slot's call reuses it: a missed slot must not cost the handshake again.
    fake = FakeClock()
    client = make_client(server, qps=2.0, sleep=fake.sleep, clock=fake.clock)
    arrivals: list[float] = []

    class Stamped(list[Recorded]):
        def append(self, item: Recorded) -> None:
            arrivals.append(fake.now)
            super().append(item)

    server.requests = Stamped()
    connects: list[float] = []
    real_connect = HTTPConnection.connect

    def slow_connect(self: HTTPConnection) -> None:
        fake.now += 0.5
        connects.append(fake.now)
        real_connect(self)

    monkeypatch.setattr(HTTPConnection, "connect", slow_connect)
    for _ in range(3):
        client.get("user/info/")

    assert len(connects) == 1
    assert len(arrivals) == 3
    assert arrivals[0] - 1000.0 == pytest.approx(0.6), "the first slot passed during the handshake"
    assert min(b - a for a, b in zip(arrivals, arrivals[2:], strict=False)) >= 1.0, arrivals


# ------------------------------------------------------------------ secrets never leak
@pytest.mark.parametrize(
    "reply",
    [
        envelope(code=40105, message=f"Access token {TOKEN} is invalid"),
        envelope(code=40001, message=f"no permission for {TOKEN}"),
        envelope(code=40002, message=f"bad param: {TOKEN}"),
        envelope(code=40100, message=f"too frequent ({TOKEN})"),
        envelope(code=20001, message=f"partial for {TOKEN}"),
        Reply(status=401, body=TOKEN.encode()),
        Reply(status=500, body=TOKEN.encode()),
        Reply(body=TOKEN.encode()),
    ],
)
def test_token_never_in_exception_message(server: FakeTikTok, reply: Reply) -> None:
    server.script(*([reply] * 3))
    client = make_client(server, retry=RetryPolicy(max_retries=2))

    try:
        client.post("segment/mapping/", {"batch_data": [[{"id": "secret-hash"}]]})
    except DestinationError as exc:
        assert TOKEN not in str(exc)
        assert "secret-hash" not in str(exc)  # request bodies are never quoted
    else:
        # 20001 succeeds; the recorded partial message is redacted too.
        assert client.stats.partial_messages == ["partial for ***"]


def test_exchange_auth_code_errors_hide_secret_and_code(server: FakeTikTok) -> None:
    server.script(envelope(code=40113, message=f"auth_code code-xyz invalid for {SECRET}"))
    with pytest.raises(OAuthError) as info:
        TikTokClient.exchange_auth_code(
            "app-1", SECRET, "code-xyz", base_url=server.base_url, sleep=lambda _s: None
        )
    assert SECRET not in str(info.value)
    assert "code-xyz" not in str(info.value)
    assert info.value.code == 40113


def test_logs_carry_no_token_or_body(server: FakeTikTok, caplog: pytest.LogCaptureFixture) -> None:
    server.script(envelope(code=50000, message=f"x {TOKEN}"), envelope(data={}))
    client = make_client(server)
    with caplog.at_level("DEBUG", logger="tiktok_destination.adapters.tiktok.transport"):
        client.post("segment/mapping/", {"batch_data": [[{"id": "secret-hash"}]]})
    assert caplog.records, "retries must be logged"
    for record in caplog.records:
        line = record.getMessage()
        assert TOKEN not in line
        assert "secret-hash" not in line
    assert any("segment/mapping/" in r.getMessage() for r in caplog.records)


def test_defaults() -> None:
    assert DEFAULT_BASE_URL == "https://business-api.tiktok.com/open_api/v1.3/"
    policy = RetryPolicy()
    assert (policy.max_retries, policy.backoff_base, policy.backoff_max) == (5, 0.5, 20.0)
    assert policy.rate_limit_wait == 1.0
    assert CallStats().as_dict() == {
        "calls": 0,
        "retries": 0,
        "rate_limited": 0,
        "by_endpoint": {},
        "partial_messages": [],
    }


def test_a_rejection_without_a_tiktok_code_gets_no_code_hint() -> None:
    # An answer with no envelope (an HTTP 4xx) has no code; no code's hint may be borrowed.
    assert advice(TikTokRequestRejected, None, 1) == ""
    assert advice(TikTokRequestRejected, 40011, 1) == (
        "Too many IDs in one request: lower the batch size."
    )
