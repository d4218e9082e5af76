"""Retry with backoff, then fall over to the fallback model.

A stream that fails after some of its text has streamed is, for a caller that passes
`retry_after_text=True`, retried like any other retryable failure (same policy, then the fallback model).
Replaying the call sends the text again from its start, so the `AttemptFailed` of such an attempt says
`discarded_text=True`: the caller must take that attempt's text back (the agent emits `TextReset`) before
the next attempt's chunks arrive, or the user would see the same words twice. Only when every attempt of
every model has failed and the last one had streamed text does the call end in `StreamCutAfterOutput`
(the caller keeps that last attempt's partial text). Without `retry_after_text` (a caller that cannot take
text back) the first cut after text ends the call that way at once.
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
    """One failed call (recorded in usage); `next_step` says what happens now.

    `discarded_text`: the attempt had streamed text before it failed and the call goes on (a retry or the
    fallback), so that text is void: the next attempt streams the step from its start. Never set with
    "give_up" (then the last attempt's text stands as the partial answer)."""

    model: ModelId
    error: ProviderError
    latency_s: float
    next_step: str  # "retry", "fallback" or "give_up"
    delay_s: float = 0.0
    next_model: ModelId | None = None
    discarded_text: bool = False


@dataclass(frozen=True, slots=True)
class CallStarted:
    model: ModelId


FailoverEvent = Chunk | AttemptFailed | CallStarted


class StreamCutAfterOutput(ProviderError):
    """The stream failed after text reached the user, and no attempt left (or the caller cannot retry)."""


async def stream_with_failover(
    pool: ProviderPool,
    models: Sequence[ModelId],
    make_request: Callable[[ModelId], ProviderRequest],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    retry_after_text: bool = False,
) -> AsyncIterator[FailoverEvent]:
    """Stream one model step, trying `models` in order. Raises the last ProviderError if all fail
    (`StreamCutAfterOutput` if the last attempt had streamed text).

    `retry_after_text`: also retry (and fall over) attempts that failed after streaming text; the caller
    then handles `AttemptFailed.discarded_text`. Off, such a failure ends the call at once."""
    for index, model in enumerate(models):
        next_model = models[index + 1] if index + 1 < len(models) else None
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            emitted_text = False
            yield CallStarted(model)
            try:
                provider = await pool.acquire(model.provider)
                async for chunk in provider.stream(make_request(model)):
                    emitted_text = emitted_text or isinstance(chunk, TextChunk)
                    yield Chunk(model, chunk)
                return
            except ProviderError as error:
                latency = time.perf_counter() - started
                delay = policy.delay(attempt, error) if retry_after_text or not emitted_text else None
                if delay is not None:
                    yield AttemptFailed(
                        model, error, latency, "retry", delay_s=delay, discarded_text=emitted_text
                    )
                    await sleep(delay)
                    continue
                if next_model is None or (emitted_text and not retry_after_text):
                    yield AttemptFailed(model, error, latency, "give_up")
                    if emitted_text:
                        raise StreamCutAfterOutput(error.message, status=error.status) from error
                    raise
                yield AttemptFailed(
                    model, error, latency, "fallback", next_model=next_model, discarded_text=emitted_text
                )
                break
