"""The Telegram flood limiter (adapters/telegram/limiter.py) around PTB's own RetryAfter: how many
calls go out while and after a chat is told to wait."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import pytest
from telegram.error import RetryAfter

from adapters.telegram.limiter import FloodLimiter

GROUP = -1001
# Sub-second waits need a timedelta retry_after, which PTB 22 warns about reading (a future default).
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_after_a_429_one_call_probes_before_the_waiting_ones_go_again() -> None:
    limiter = FloodLimiter(overall_max_rate=1000, group_max_rate=1000, max_retries=50)
    storm_until = time.monotonic() + 0.3
    refused = landed = 0

    async def send() -> bool:
        nonlocal refused, landed
        await asyncio.sleep(0.005)
        if time.monotonic() < storm_until:
            refused += 1
            raise RetryAfter(timedelta(milliseconds=50))
        landed += 1
        return True

    async def call() -> object:
        return await limiter.process_request(send, (), {}, "sendMessage", {"chat_id": GROUP}, None)

    results = await asyncio.gather(*(call() for _ in range(20)))
    assert results == [True] * 20 and landed == 20
    # The first round is refused whole (20); after that one call per wait (~0.15 s) until the storm
    # ends, not all 20 again each time.
    assert refused <= 20 + 4, refused


async def test_a_chat_that_is_waiting_out_a_429_counts_as_backlogged() -> None:
    limiter = FloodLimiter(overall_max_rate=1000, group_max_rate=1000, max_retries=0)

    async def refused() -> bool:
        raise RetryAfter(timedelta(milliseconds=200))

    assert not limiter.would_wait(GROUP)
    with contextlib.suppress(RetryAfter):
        await limiter.process_request(refused, (), {}, "sendMessage", {"chat_id": GROUP}, None)
    assert limiter.would_wait(GROUP) and not limiter.would_wait(GROUP - 1)
