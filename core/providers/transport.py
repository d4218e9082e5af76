"""What a transport failure was, whichever HTTP transport the SDK used.

The SDKs' aiohttp transport maps every `aiohttp.ClientConnectionError` to httpx's `ConnectTimeout`,
so a refused connection would read "did not answer in time". The exception chain still holds the
original error: an OS-level connection error that is not a timeout means "could not connect".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from core.providers.base import ProviderError


def timed_out(exc: BaseException, looks_like_timeout: bool) -> bool:
    """`looks_like_timeout`: what the SDK's exception type says; the chain's root cause overrides it."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, TimeoutError):
            return True
        if isinstance(cause, OSError):
            return False  # refused, reset, unreachable: not a timeout
        cause = cause.__cause__ or cause.__context__
    return looks_like_timeout


class StallWatch:
    """Ends a response body that has sent nothing for `limit_s` (an answer that stalls mid-stream).

    It stands in for aiohttp's `sock_read` timeout, which cancels and re-arms a timer on every network
    read (about 200 per reply: 6% of the event loop at 1,000 streams): the reader stamps the time of
    each read, and one timer looks at the stamp every quarter of the limit. On a stall `close` is
    called (closing the body makes the pending read fail) and `stalled` tells the reader why."""

    __slots__ = ("_close", "_closing", "_handle", "_limit", "_loop", "last", "stalled")

    def __init__(self, limit_s: float, close: Callable[[], Awaitable[object]]) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit_s
        self._close = close
        self._closing: asyncio.Future[object] | None = None
        self.last = self._loop.time()
        self.stalled = False
        self._handle = self._loop.call_later(limit_s / 4, self._check)

    def error(self, who: str) -> ProviderError:
        return ProviderError(f"{who} stopped sending the answer for {self._limit:g}s", retryable=True)

    def saw_data(self) -> None:
        self.last = self._loop.time()

    def _check(self) -> None:
        idle = self._loop.time() - self.last
        if idle < self._limit:
            self._handle = self._loop.call_later(min(self._limit - idle, self._limit / 4), self._check)
            return
        self.stalled = True
        self._closing = asyncio.ensure_future(self._close())

    async def aclose(self) -> None:
        self._handle.cancel()
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing
