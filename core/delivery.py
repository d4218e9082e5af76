"""How platform calls are retried: the final text until it lands, everything else not at all.

A final answer is what the user waits for, so its calls are retried on every transient failure (429,
5xx, timeouts, lost connections) for minutes, honouring Retry-After. Interim edits and cosmetic calls
(typing, status) are skipped instead: a later edit or the final one shows the same text, and retrying
them would only feed a 429 storm. `Pressure` remembers a platform's latest Retry-After so every
conversation on it holds back its optional calls until then; a per-conversation limit (Discord's
channel buckets, Telegram's per-chat flood limit) holds back that conversation only.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from core.surface import DeliveryError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FinalRetry:
    """Backoff for final deliveries: 0.5 s doubling to 30 s, or what Retry-After says, for 15 minutes."""

    deadline_s: float = 15 * 60.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        delay = min(self.base_delay_s * 2.0 ** (attempt - 1), self.max_delay_s)
        return delay * (0.75 + random.random() * 0.25)  # jitter: many finals must not retry in lockstep


class Pressure:
    """A platform's rate-limit state, shared by its conversations: optional calls wait until it is calm."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._until = 0.0

    def _now(self) -> float:
        return (self._clock or asyncio.get_running_loop().time)()

    def hit(self, retry_after: float | None) -> None:
        if retry_after:
            self._until = max(self._until, self._now() + retry_after)

    def calm(self) -> bool:
        return self._now() >= self._until

    def wait_s(self) -> float:
        return max(0.0, self._until - self._now())

    def note(self, error: DeliveryError) -> None:
        self.hit(error.retry_after)


class ConversationPressure:
    """One conversation's view: its own rate-limit state plus its platform's. A 429 counts for the
    conversation (a per-chat or per-channel limit) unless the platform says it is bot-wide."""

    def __init__(
        self,
        platform: Pressure,
        clock: Callable[[], float] | None = None,
        backlogged: Callable[[], bool] = lambda: False,
    ) -> None:
        self._platform = platform
        self._own = Pressure(clock)
        self._backlogged = backlogged  # the adapter's own limiter would queue a call now

    def calm(self) -> bool:
        """Optional calls may go out: no 429 wait is running and nothing would queue."""
        return self.unthrottled() and not self._backlogged()

    def unthrottled(self) -> bool:
        """No 429 wait is running (calls that spend no message budget, like typing, may go out)."""
        return self._own.calm() and self._platform.calm()

    def wait_s(self) -> float:
        return max(self._own.wait_s(), self._platform.wait_s())

    def note(self, error: DeliveryError) -> None:
        (self._platform if error.platform_wide else self._own).hit(error.retry_after)


RateState = Pressure | ConversationPressure


async def deliver(
    call: Callable[[], Awaitable[T]],
    what: str,
    policy: FinalRetry,
    pressure: RateState,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call` until it succeeds; a transient DeliveryError is retried after Retry-After or backoff
    until `policy.deadline_s` has passed. A permanent error (or the deadline) raises the last error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.deadline_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except DeliveryError as error:
            pressure.note(error)
            wait = error.retry_after if error.retry_after is not None else policy.backoff(attempt)
            if not error.transient or loop.time() + wait > deadline:
                raise
            log.info("%s failed (%s); retrying in %.1fs (attempt %d)", what, error, wait, attempt)
            await sleep(wait)


async def optional(call: Callable[[], Awaitable[object]], what: str, pressure: RateState) -> bool:
    """Run a call that may be skipped (interim edit, typing, status): not under pressure, never retried.
    False when it was skipped or failed (logged at debug level)."""
    if not pressure.calm():
        return False
    try:
        await call()
    except DeliveryError as error:
        pressure.note(error)
        log.debug("%s skipped: %s", what, error)
        return False
    return True
