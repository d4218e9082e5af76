"""Flood control: PTB's AIORateLimiter for messages, with chat actions and drafts kept out of its queues.

Telegram's flood limits are about messages (about 30/s per bot, 20/min per group). AIORateLimiter
throttles every call that names a chat, so a typing indicator or a draft preview would spend a group's
message budget and wait behind other chats' messages. Those two are ephemeral and best-effort: they go
straight out, and a 429 on them is reported to the caller, who skips them instead of queueing.

Every Bot API call but getUpdates passes through the limiter, so it is also where each 429 is seen once
(a RetryAfter per 429 response, retried or not) and reported to `on_rate_limited`.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from telegram.error import RetryAfter
from telegram.ext import AIORateLimiter

T = TypeVar("T")

UNTHROTTLED = frozenset({"sendChatAction", "sendMessageDraft"})
Callback = Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]]  # one request


class FloodLimiter(AIORateLimiter):
    """AIORateLimiter, plus: a chat that got a 429 stays paused until its wait is over, even when the
    request that got it was cancelled (AIORateLimiter lifts its pause as soon as its retry is cancelled,
    e.g. when a streamed edit is superseded by the final one). `on_rate_limited` hears the endpoint of
    every 429."""

    def __init__(
        self, *args: Any, on_rate_limited: Callable[[str], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._paused_until: dict[Any, float] = {}
        self._on_rate_limited = on_rate_limited

    def would_wait(self, chat_id: int) -> bool:
        """True when a message to this chat would queue now: the bot-wide or the group budget is spent,
        or the chat is waiting out a 429."""
        loop = asyncio.get_running_loop()
        if self._paused_until.get(chat_id, 0.0) > loop.time() or not self._retry_after_event.is_set():
            return True
        if self._base_limiter is not None and not self._base_limiter.has_capacity():
            return True
        group = self._group_limiters.get(chat_id) if chat_id < 0 else None
        return group is not None and not group.has_capacity()

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        if self._on_rate_limited is not None:
            callback = _reporting(callback, partial(self._on_rate_limited, endpoint))
        if endpoint in UNTHROTTLED:
            return await callback(*args, **kwargs)
        chat = data.get("chat_id")
        loop = asyncio.get_running_loop()
        wait = self._paused_until.get(chat, 0.0) - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._paused_until.get(chat, 0.0) <= loop.time():
            self._paused_until.pop(chat, None)  # expired: keep the map small

        async def noting_pauses(*a: Any, **kw: Any) -> bool | dict[str, Any] | list[dict[str, Any]]:
            try:
                return await callback(*a, **kw)
            except RetryAfter as error:
                self._paused_until[chat] = loop.time() + retry_seconds(error) + 0.1
                raise

        return await super().process_request(noting_pauses, args, kwargs, endpoint, data, rate_limit_args)


def _reporting(callback: Callback, report: Callable[[], None]) -> Callback:
    """`callback` (one HTTP request), calling `report` when Telegram answers it with a 429."""

    async def call(*args: Any, **kwargs: Any) -> bool | dict[str, Any] | list[dict[str, Any]]:
        try:
            return await callback(*args, **kwargs)
        except RetryAfter:
            report()
            raise

    return call


def retry_seconds(error: RetryAfter) -> float:
    """`RetryAfter.retry_after` without PTB's int-vs-timedelta deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run `call`, waiting out 429s (the limiter retries too; this is the last line for final text)."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except RetryAfter as error:
            await asyncio.sleep(retry_seconds(error) + 0.1)
    return await call()
