"""Retry with backoff, then fall over to the fallback model.

A call is retried only while nothing of it has reached the user: once text has streamed, replaying the
call would show the same words twice, so a cut-off after that point fails the turn (keeping the text).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from core.models import ModelId
from core.providers.base import ProviderChunk, ProviderError, ProviderRequest, TextChunk
from core.providers.pool import ProviderPool


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # tries per model, the first included
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_retry_after_s: float = 60.0  # a longer Retry-After means: go to the fallback now

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before retry number `attempt` (1-based), or None to stop retrying."""
        if not error.retryable or attempt >= self.attempts:
            return None
        if error.retry_after is not None:
            wait = float(error.retry_after)
            return wait if wait <= self.max_retry_after_s else None
        backoff = min(self.base_delay_s * 2.0 ** (attempt - 1), self.max_delay_s)
        return backoff * (0.75 + random.random() * 0.25)  # jitter so replicas do not retry in lockstep


@dataclass(frozen=True, slots=True)
class Chunk:
    model: ModelId
    chunk: ProviderChunk


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    """One failed call (recorded in usage); `next_step` says what happens now."""

    model: ModelId
    error: ProviderError
    latency_s: float
    next_step: str  # "retry", "fallback" or "give_up"
    delay_s: float = 0.0
    next_model: ModelId | None = None


@dataclass(frozen=True, slots=True)
class CallStarted:
    model: ModelId


FailoverEvent = Chunk | AttemptFailed | CallStarted


class StreamCutAfterOutput(ProviderError):
    """The stream failed after text reached the user; not retried."""


async def stream_with_failover(
    pool: ProviderPool,
    models: Sequence[ModelId],
    make_request: Callable[[ModelId], ProviderRequest],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[FailoverEvent]:
    """Stream one model step, trying `models` in order. Raises the last ProviderError if all fail."""
    for index, model in enumerate(models):
        next_model = models[index + 1] if index + 1 < len(models) else None
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            emitted_text = False
            yield CallStarted(model)
            try:
                provider = pool.get(model.provider)
                async for chunk in provider.stream(make_request(model)):
                    emitted_text = emitted_text or isinstance(chunk, TextChunk)
                    yield Chunk(model, chunk)
                return
            except ProviderError as error:
                latency = time.perf_counter() - started
                if emitted_text:
                    yield AttemptFailed(model, error, latency, "give_up")
                    raise StreamCutAfterOutput(error.message, status=error.status) from error
                delay = policy.delay(attempt, error)
                if delay is not None:
                    yield AttemptFailed(model, error, latency, "retry", delay_s=delay)
                    await sleep(delay)
                    continue
                if next_model is None:
                    yield AttemptFailed(model, error, latency, "give_up")
                    raise
                yield AttemptFailed(model, error, latency, "fallback", next_model=next_model)
                break
