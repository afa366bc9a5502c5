"""Fault switches: injected errors, late answers, late requests, latency and the rate limit."""

from __future__ import annotations

from collections import deque

from .base import EmulatorBase
from .model import _Delay, _Fault, _normalize_path


class Faults(EmulatorBase):
    """What a test switches on to see a client survive TikTok at its worst."""

    def fail_next(
        self,
        path: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` requests to ``path`` (e.g. "segment/mapping/") fail.

        With ``code``: HTTP 200 and that TikTok code. With ``http_status``: that HTTP status
        (e.g. 503) and no envelope, like a gateway error.
        """
        if (code is None) == (http_status is None):
            raise ValueError("fail_next needs exactly one of code= or http_status=")
        if times < 1:
            raise ValueError("times must be at least 1")
        key = _normalize_path(path)
        with self._lock:
            self._faults.setdefault(key, deque()).append(_Fault(code, http_status, times))

    def delay_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold back the answer to the next ``times`` requests to ``path`` by ``seconds``.

        The request takes effect first and only its answer is late, as when TikTok creates
        an audience but answers after the client's timeout (unlike ``latency``, which
        waits before handling every request).
        """
        self._queue_delay(self._delays, path, seconds, times)

    def hold_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Apply the next ``times`` requests to ``path`` only ``seconds`` after they arrive.

        As when TikTok creates an audience after the client's timeout: the client gave up,
        a lookup right then finds nothing, and the audience appears later anyway (unlike
        ``delay_next``, whose request takes effect at once and only its answer is late).
        """
        self._queue_delay(self._holds, path, seconds, times)

    def _queue_delay(
        self, queues: dict[str, deque[_Delay]], path: str, seconds: float, times: int
    ) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be positive")
        if times < 1:
            raise ValueError("times must be at least 1")
        key = _normalize_path(path)
        with self._lock:
            queues.setdefault(key, deque()).append(_Delay(seconds, times))

    def clear_faults(self) -> None:
        """Drop pending fail_next faults, delays and holds, latency and the rate limit window."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._holds.clear()
            self._window.clear()
            self.latency = 0.0

    def _take_fault(self, key: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(key)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
            return fault

    def _take_delay(self, key: str, *, hold: bool = False) -> float:
        with self._lock:
            queue = (self._holds if hold else self._delays).get(key)
            if not queue:
                return 0.0
            delay = queue[0]
            delay.remaining -= 1
            if delay.remaining <= 0:
                queue.popleft()
            return delay.seconds

    def _admit(self) -> bool:
        """TikTok's QPS limit: at most ``qps_limit`` admitted requests in any 1-second window.

        A sliding window, as TikTok documents its API's rate calculation (see
        docs/tiktok-contract.md): a request is refused when ``qps_limit`` admitted ones
        arrived less than a second before it. Only admitted requests count, so N per second
        get in. Every request checked is recorded in ``arrivals``.
        """
        limit = self.qps_limit
        with self._lock:
            now = self.clock()
            if limit is not None:
                while self._window and now - self._window[0] >= 1.0:
                    self._window.popleft()
                if len(self._window) >= limit:
                    self.arrivals.append((now, False))
                    return False
                self._window.append(now)
            self.arrivals.append((now, True))
            return True
