"""The Slack Web API clients of the adapter (one shared HTTP session, never one per message), their 429
handling, and how a failed call becomes the core's `DeliveryError`.

slack-sdk does not retry 429s by default; `RateLimitRetry` adds that, except for the reply methods
(`NO_RETRY_METHODS`): their 429s go straight to the core's presenter, which retries a final answer for
minutes and skips an interim update or a status instead (a library retrying them would feed a 429
storm). Reports, thread reads, file downloads and the like keep the SDK's retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from core.surface import DeliveryError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Calls that show a reply: the presenter decides whether and when to try them again.
NO_RETRY_METHODS = frozenset(
    {
        "chat.postMessage",
        "chat.update",
        "chat.delete",
        "chat.postEphemeral",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "assistant.threads.setStatus",
    }
)
# Slack error codes worth trying again (besides HTTP 429 and 5xx).
TRANSIENT_CODES = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "timeout",
    }
)


def _ignore(method: str) -> None:
    pass


class RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 after its Retry-After (the request is resent whole, so no text is lost); counts
    them for benchmarks and logs, and tells `on_rate_limited` (the method name) about each one. Methods
    in `no_retry` are left to the caller."""

    def __init__(
        self,
        max_retry_count: int,
        on_rate_limited: Callable[[str], None] = _ignore,
        no_retry: Collection[str] = (),
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.rate_limited = 0
        self._on_rate_limited = on_rate_limited
        self._no_retry = frozenset(no_retry)

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
        # including one that is not retried and the last one once retries are spent.
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
        if method in self._no_retry:
            return False
        log.info("Slack rate-limited %s; retrying after Retry-After", method)
        return True


def _method(request: HttpRequest) -> str:
    return request.url.rsplit("/", 1)[-1]


def build_client(
    token: str,
    api_url: str,
    retries: int,
    on_rate_limited: Callable[[str], None] = _ignore,
    *,
    no_retry: Collection[str] = (),
) -> tuple[AsyncWebClient, RateLimitRetry]:
    """A client retrying 429s up to `retries` times, except for the methods in `no_retry`."""
    client = AsyncWebClient(token=token)
    return client, configure_client(client, api_url, retries, on_rate_limited, no_retry=no_retry)


def configure_client(
    client: AsyncWebClient,
    api_url: str,
    retries: int,
    on_rate_limited: Callable[[str], None] = _ignore,
    *,
    no_retry: Collection[str] = (),
) -> RateLimitRetry:
    """Point a client (ours, or the one Bolt made for its app) at `api_url` with our 429 handling."""
    limiter = RateLimitRetry(retries, on_rate_limited, no_retry)
    handlers: list[AsyncRetryHandler] = [*async_default_handlers(), limiter]
    client.base_url = api_url if api_url.endswith("/") else api_url + "/"
    client.retry_handlers = handlers
    return limiter


# --- failures -------------------------------------------------------------------------------------


class SlackDeliveryError(DeliveryError):
    """A DeliveryError that keeps Slack's error code and HTTP status, for the stream's own decisions."""

    def __init__(
        self, message: str, *, transient: bool, retry_after: float | None, code: str, status: int
    ) -> None:
        # Slack's limits are per method and workspace, not per thread: a 429 holds every thread back.
        super().__init__(message, transient=transient, retry_after=retry_after, platform_wide=status == 429)
        self.code = code
        self.status = status


def error_code(error: SlackApiError) -> str:
    response: Any = error.response
    getter = getattr(response, "get", None)
    if not callable(getter):
        return ""
    with contextlib.suppress(Exception):
        return str(getter("error") or "")
    return ""


def status_code(error: SlackApiError) -> int:
    response: Any = error.response
    return int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)


def retry_after(headers: Any) -> float | None:
    """Retry-After (seconds) from response headers (a dict of strings or of lists), or None."""
    with contextlib.suppress(Exception):
        for name, value in dict(headers or {}).items():
            if str(name).lower() == "retry-after":
                raw = value[0] if isinstance(value, list | tuple) else value
                return max(0.0, float(raw))
    return None


def delivery_error(method: str, error: Exception) -> SlackDeliveryError:
    """A failed Web API call as the core sees it: transient for 429, 5xx, Slack's own "try again" codes,
    timeouts and lost connections; permanent otherwise. The message names the method and the error code,
    never a token."""
    if isinstance(error, SlackApiError):
        status, code = status_code(error), error_code(error)
        transient = status == 429 or status >= 500 or code in TRANSIENT_CODES
        wait = retry_after(getattr(error.response, "headers", None))
        return SlackDeliveryError(
            f"{method} failed: {code or f'HTTP {status}'}",
            transient=transient,
            retry_after=wait,
            code=code,
            status=status,
        )
    transient = isinstance(error, aiohttp.ClientError | TimeoutError)
    return SlackDeliveryError(
        f"{method} failed: {type(error).__name__}", transient=transient, retry_after=None, code="", status=0
    )


FAILURES = (SlackClientError, aiohttp.ClientError, TimeoutError)


async def call(method: str, request: Awaitable[T]) -> T:
    """Await one Web API call; a failure is raised as a SlackDeliveryError."""
    try:
        return await request
    except FAILURES as error:
        raise delivery_error(method, error) from error
