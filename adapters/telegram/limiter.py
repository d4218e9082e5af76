"""Flood control: Telegram's message budgets as token buckets, with chat actions and drafts kept out of them.

Telegram's flood limits are about messages (about 30/s per bot, 20/min per group). Every call that
names a chat waits for the bot-wide bucket (and a group's bucket) before it goes out, so the bot stays
inside those limits instead of collecting 429s. A typing indicator or a draft preview is ephemeral and
best effort: it goes straight out and never spends a group's message budget.

A 429 is not retried here by default (`max_retries=0`): the presenter decides (core/delivery.py: the
final text is retried for minutes, interim edits and typing are skipped). Callers outside a turn ask
for retries per call with PTB's `rate_limit_args` (reports: `rate_limit_args=3`). A chat that got a 429
stays paused until its wait is over, so later calls to it wait instead of collecting more 429s.

Every Bot API call but getUpdates passes through here, so it is also where each 429 is seen once and
reported to `on_rate_limited`.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

UNTHROTTLED = frozenset({"sendChatAction", "sendMessageDraft"})
GROUP_PERIOD_S = 60.0
_MAX_GROUP_LIMITERS = 512
Result = bool | dict[str, Any] | list[dict[str, Any]]
Callback = Callable[..., Coroutine[Any, Any, Result]]  # one HTTP request


class FloodLimiter(BaseRateLimiter[int]):
    def __init__(
        self,
        *,
        overall_max_rate: float,
        group_max_rate: float,
        max_retries: int = 0,
        on_rate_limited: Callable[[str], None] | None = None,
    ) -> None:
        self._overall = AsyncLimiter(overall_max_rate, 1.0)
        self._group_max_rate = group_max_rate
        self._groups: dict[int | str, AsyncLimiter] = {}
        self._max_retries = max_retries
        self._paused_until: dict[Any, float] = {}  # chat id -> loop time its 429 wait ends
        # Chats back from a 429: one call at a time until one lands, so the calls that waited it out do
        # not all go at once, collect 429s again and spend the group's budget on them.
        self._probing: dict[Any, asyncio.Lock] = {}
        self._on_rate_limited = on_rate_limited

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def would_wait(self, chat_id: int) -> bool:
        """True when a message to this chat would queue now: the bot-wide or the group budget is spent,
        or the chat is waiting out a 429."""
        if self._paused_until.get(chat_id, 0.0) > asyncio.get_running_loop().time():
            return True
        probe = self._probing.get(chat_id)
        if probe is not None and probe.locked():
            return True
        if not self._overall.has_capacity():
            return True
        group = self._groups.get(chat_id) if chat_id < 0 else None
        return group is not None and not group.has_capacity()

    async def process_request(
        self,
        callback: Callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Result:
        if endpoint in UNTHROTTLED:
            return await self._reported(endpoint, callback, args, kwargs)
        chat = data.get("chat_id")
        retries = self._max_retries if rate_limit_args is None else rate_limit_args
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            wait = self._paused_until.get(chat, 0.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._paused_until.pop(chat, None)  # expired: keep the map small
            probe = self._probing.get(chat)
            try:
                async with probe if probe is not None else contextlib.nullcontext():
                    if self._paused_until.get(chat, 0.0) > loop.time():
                        continue  # the call before this one was refused again: wait once more
                    async with self._budgets(chat):
                        result = await self._reported(endpoint, callback, args, kwargs)
            except RetryAfter as error:
                self._paused_until[chat] = loop.time() + retry_seconds(error) + 0.1
                self._probing.setdefault(chat, asyncio.Lock())
                attempt += 1
                if attempt > retries:
                    raise
                continue
            if probe is not None and self._probing.get(chat) is probe:
                del self._probing[chat]  # it landed: calls to this chat go in parallel again
            return result

    async def _reported(self, endpoint: str, callback: Callback, args: Any, kwargs: dict[str, Any]) -> Result:
        try:
            return await callback(*args, **kwargs)
        except RetryAfter:
            if self._on_rate_limited is not None:
                self._on_rate_limited(endpoint)
            raise

    @contextlib.asynccontextmanager
    async def _budgets(self, chat: Any) -> AsyncIterator[None]:
        if chat is None:  # getMe, setMyCommands, ...: no message budget
            yield
            return
        group = self._group(chat)
        async with contextlib.AsyncExitStack() as stack:
            if group is not None:
                await stack.enter_async_context(group)
            await stack.enter_async_context(self._overall)
            yield

    def _group(self, chat: Any) -> AsyncLimiter | None:
        """The budget of a group or channel (negative ids and @usernames), None for private chats."""
        with contextlib.suppress(TypeError, ValueError):
            chat = int(chat)
        if isinstance(chat, int) and chat > 0:
            return None
        if len(self._groups) > _MAX_GROUP_LIMITERS:  # forget idle groups (their buckets are full)
            for key, limiter in list(self._groups.items()):
                if key != chat and limiter.has_capacity(limiter.max_rate):
                    del self._groups[key]
        if chat not in self._groups:
            self._groups[chat] = AsyncLimiter(self._group_max_rate, GROUP_PERIOD_S)
        return self._groups[chat]


def retry_seconds(error: RetryAfter) -> float:
    """`RetryAfter.retry_after` without PTB's int-vs-timedelta deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
