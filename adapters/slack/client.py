"""The one Slack Web API client of the adapter: a shared HTTP session (never one per message) and
429 handling, which slack-sdk does not do by default."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# A 429 on starting a stream is better answered by posting and editing at once than by waiting.
NO_RETRY_METHODS = ("chat.startStream",)


def _ignore(method: str) -> None:
    pass


class RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 after its Retry-After (the request is resent whole, so no text is lost); counts
    them for benchmarks and logs, and tells `on_rate_limited` (the method name) about each one. Methods
    with their own fallback are left to the caller."""

    def __init__(self, max_retry_count: int, on_rate_limited: Callable[[str], None] = _ignore) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.rate_limited = 0
        self._on_rate_limited = on_rate_limited

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        # Counted here, before the base class's retry budget check: every 429 response passes this
        # handler exactly once (the connection-error handler before it only takes raised errors),
        # including one that is not retried (chat.startStream) and the last one once retries are spent.
        if error is None and response is not None and response.status_code == 429:
            self.rate_limited += 1
            self._on_rate_limited(_method(request))
        return await super().can_retry_async(state=state, request=request, response=response, error=error)

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        method = _method(request)
        if method in NO_RETRY_METHODS:
            return False
        log.info("Slack rate-limited %s; retrying after Retry-After", method)
        return True


def _method(request: HttpRequest) -> str:
    return request.url.rsplit("/", 1)[-1]


def build_client(
    token: str, api_url: str, retries: int, on_rate_limited: Callable[[str], None] = _ignore
) -> tuple[AsyncWebClient, RateLimitRetry]:
    limiter = RateLimitRetry(retries, on_rate_limited)
    handlers: list[AsyncRetryHandler] = [*async_default_handlers(), limiter]
    base = api_url if api_url.endswith("/") else api_url + "/"
    return AsyncWebClient(token=token, base_url=base, retry_handlers=handlers), limiter
