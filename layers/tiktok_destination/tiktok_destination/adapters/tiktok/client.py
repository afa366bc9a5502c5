"""The one client for TikTok's Business API v1.3: a method per call this destination makes.

Everything that talks to TikTok goes through :class:`TikTokClient`, on the paced, retrying
transport of :mod:`~tiktok_destination.adapters.tiktok.transport`. Request bodies are built
by :mod:`~tiktok_destination.adapters.tiktok.bodies`, which enforces TikTok's request limits;
what each call sends and answers is in ``docs/tiktok-contract.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import requests

from tiktok_destination.adapters.tiktok.bodies import (
    audience_create_body,
    encode_param,
    mapping_body,
    track_body,
)
from tiktok_destination.adapters.tiktok.limits import DEFAULT_BASE_URL
from tiktok_destination.adapters.tiktok.transport import RetryPolicy, TikTokTransport
from tiktok_destination.errors import TikTokRequestRejected

__all__ = ["TikTokClient"]

#: where ``offline/get/`` puts the event sets, in the order they are looked for
_EVENT_SET_LIST_KEYS = ("event_set_list", "list")


# pragma: no mutate block
class TikTokClient(TikTokTransport):
    """The calls of TikTok's Business API this destination makes, for one access token.

    Built like its transport (see :class:`TikTokTransport` for pacing, retries, timeouts).
    """

    # ------------------------------------------------------------------ audiences
    def list_audiences(
        self, advertiser_id: str, *, page: int = 1, page_size: int = 100
    ) -> dict[str, Any]:
        """One page of ``dmp/custom_audience/list/``: ``{"page_info": {...}, "list": [...]}``."""
        return self.get(
            "dmp/custom_audience/list/",
            {"advertiser_id": advertiser_id, "page": page, "page_size": page_size},
        )

    def iter_audiences(self, advertiser_id: str) -> Iterator[dict[str, Any]]:
        """Every custom audience of the advertiser, across all pages."""
        page = 1
        page_size = 100
        while True:
            data = self.list_audiences(advertiser_id, page=page, page_size=page_size)
            items = data.get("list") or []
            yield from items
            page_info = data.get("page_info") or {}
            total_page = page_info.get("total_page")
            if not items:
                return
            if total_page is not None:
                if page >= int(total_page):
                    return
            elif len(items) < page_size:
                return
            page += 1

    def create_audience(self, advertiser_id: str, name: str) -> str:
        """Create a partner audience (the only kind ``segment/mapping`` may write to).

        A create is not idempotent: after a timeout or 5xx it raises TikTokUnavailable
        without sending again, since TikTok may have created the audience; the caller
        looks the name up before creating again.
        """
        data = self.post(
            "segment/audience/",
            audience_create_body(advertiser_id, name),
            idempotent=False,
        )
        audience_id = data.get("audience_id")
        if audience_id is None or isinstance(audience_id, float) or audience_id == "":
            # Not retriable: a retry would create a second audience with the same name.
            raise TikTokRequestRejected(
                "TikTok POST segment/audience/ answered success without data.audience_id; "
                "look the audience up by name in Ads Manager before running again.",
            )
        return str(audience_id)

    def map_audience(
        self,
        advertiser_id: str,
        action: Literal["add", "delete"],
        id_schema: Sequence[str],
        batch_data: Sequence[Sequence[Mapping[str, Any]]],
    ) -> dict[str, Any]:
        """Add or delete members: one inner list per person, aligned with ``id_schema``."""
        return self.post(
            "segment/mapping/", mapping_body(advertiser_id, action, id_schema, batch_data)
        )

    # ------------------------------------------------------------------ events
    def track_events(
        self,
        event_set_id: str,
        data: Sequence[Mapping[str, Any]],
        *,
        test_event_code: str | None = None,
    ) -> dict[str, Any]:
        """Send offline events (Events API 2.0); at most 1,000 per call."""
        # One body builder (bodies.track_body), so its 1,000-event limit guards this path.
        return self.post(
            "event/track/", track_body(event_set_id, data, test_event_code=test_event_code)
        )

    def event_sets(self, advertiser_id: str, event_set_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The advertiser's offline event sets among ``event_set_ids``."""
        data = self.get(
            "offline/get/",
            {"advertiser_id": advertiser_id, "event_set_ids": list(event_set_ids)},
        )
        # TikTok's SDK gateway spec (yml_files/offline_get.yml) answers data.event_set_list;
        # data.list is accepted too, since a wrong guess here would fail every offline run.
        for key in _EVENT_SET_LIST_KEYS:
            if key in data:
                found = data[key]
                if found is None:
                    return []
                if isinstance(found, list):
                    return [s for s in found if isinstance(s, dict)]
        seen = ", ".join(sorted(map(str, data))) or "none"
        raise TikTokRequestRejected(
            "TikTok GET offline/get/ answered success without a list of event sets: expected "
            f"data.event_set_list or data.list (a list), saw keys: {seen}. TikTok may have "
            "changed the answer's shape; report it with this message.",
        )

    # ------------------------------------------------------------------ identity
    def user_info(self) -> dict[str, Any]:
        """The authorizing user: a cheap check that the token still works."""
        return self.get("user/info/")

    def authorized_advertisers(self, app_id: str, secret: str) -> list[dict[str, Any]]:
        """Advertisers this token may act for: ``[{advertiser_id, advertiser_name}, ...]``."""
        data = self._call(
            "GET",
            "oauth2/advertiser/get/",
            params={"app_id": encode_param(app_id), "secret": encode_param(secret)},
            body=None,
            secrets=(secret,),
        )
        return list(data.get("list") or [])

    @classmethod
    def exchange_auth_code(
        cls,
        app_id: str,
        secret: str,
        auth_code: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Trade an OAuth ``auth_code`` for ``{access_token, advertiser_ids, scope}``.

        Sent without an ``Access-Token`` header. The default retry policy is short: this
        runs inside the OAuth callback, which has seconds, not minutes, to answer.
        """
        client = cls(
            "",
            base_url=base_url,
            qps=0,
            retry=retry if retry is not None else RetryPolicy(max_retries=2, backoff_max=2.0),
            timeout=timeout,
            session=session,
            sleep=sleep,
        )
        client._send_token = False
        try:
            return client._call(
                "POST",
                "oauth2/access_token/",
                params=None,
                body={"app_id": app_id, "secret": secret, "auth_code": auth_code},
                secrets=(secret, auth_code),
            )
        finally:
            client.close()
