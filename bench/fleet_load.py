"""Benchmark: several replicas on one PostgreSQL database, under load.

Prints numbers; asserts nothing. Needs an empty PostgreSQL database:

    python -m bench.fleet_load --database-url postgresql://user@127.0.0.1:5432/bench

Each replica is a whole core (store, pool, fleet connection, router) as `bot run` opens it; they share
this process's CPU, as replicas on one small node would. Every conversation gets several messages in
quick succession, each sent to a random replica (and, with --duplicates, also to a second one, as a
Slack retry would be). The provider answers after --provider-ms with the number of user messages it
was shown, so the run can check that every answer saw all the earlier ones: the fleet answered each
conversation in order, and each event once.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack

from bot.app import Core, open_core
from bot.config import load_settings
from core.events import TurnDone
from core.inbound import ConversationRef, InboundMessage, Sender
from core.providers.base import ProviderChunk, ProviderRequest, StopChunk, TextChunk, UsageChunk


class CountingProvider:
    """Answers "seen N" (N = user messages in the request) after a fixed delay."""

    name = "anthropic"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        seen = sum(1 for m in request.messages if m.role == "user" and m.text.startswith("message "))
        await asyncio.sleep(self.delay_s)
        yield TextChunk(f"seen {seen}")
        yield UsageChunk(input_tokens=100, output_tokens=3)
        yield StopChunk("end_turn")

    async def aclose(self) -> None:
        return None


async def stored_order(url: str) -> dict[str, list[str]]:
    """Each conversation's message texts in the order their turns were stored (turn id order)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT conversation_key, text FROM turns ORDER BY id")
    finally:
        await conn.close()
    order: dict[str, list[str]] = {}
    for row in rows:
        order.setdefault(str(row[0]), []).append(str(row[1]))
    return order


async def deliver(core: Core, message: InboundMessage) -> str | None:
    """The answer text, or None when this replica dropped the event (another one claimed it)."""
    async for event in core.router.handle(message):
        if isinstance(event, TurnDone):
            return event.text
    return None


async def timed(core: Core, message: InboundMessage, started: float, latencies: list[float]) -> str | None:
    text = await deliver(core, message)
    if text is not None:
        latencies.append(time.perf_counter() - started)
    return text


async def conversation(
    cores: list[Core], index: int, messages: int, gap_s: float, duplicates: bool, latencies: list[float]
) -> tuple[str, dict[str, str], int]:
    """Send a conversation's messages; returns its key, the answer to each message text, and the count."""
    ref = ConversationRef("bench", "w", f"c{index}")
    sends: list[tuple[str, list[asyncio.Task[str | None]]]] = []
    await asyncio.sleep(random.uniform(0, gap_s))  # conversations start spread out, not in lockstep
    for n in range(1, messages + 1):
        message = InboundMessage(ref, Sender("u"), f"message {n}", uuid.uuid4().hex, is_dm=True)
        targets = random.sample(cores, 2 if duplicates and len(cores) > 1 else 1)
        started = time.perf_counter()
        tasks = [asyncio.create_task(timed(core, message, started, latencies)) for core in targets]
        sends.append((message.text, tasks))
        await asyncio.sleep(gap_s)  # the next message of this conversation follows shortly
    answers: dict[str, str] = {}
    for text, delivered in sends:
        for answer in await asyncio.gather(*delivered):
            if answer is not None:
                answers[text] = answer
    return ref.key, answers, messages


async def main(
    url: str, replicas: int, conversations: int, messages: int, provider_ms: float, gap_ms: float, dup: bool
) -> None:
    settings = load_settings(
        _env_file=None, anthropic_api_key="bench", database_url=url, database_pool_size=10
    )
    provider = CountingProvider(provider_ms / 1000)
    async with AsyncExitStack() as stack:
        cores = [
            await stack.enter_async_context(open_core(settings, providers={"anthropic": provider}))
            for _ in range(replicas)
        ]
        latencies: list[float] = []
        started = time.perf_counter()
        results = await asyncio.gather(
            *(conversation(cores, i, messages, gap_ms / 1000, dup, latencies) for i in range(conversations))
        )
        elapsed = time.perf_counter() - started
        stored = await stored_order(url)
    answered = sum(len(answers) for _, answers, _ in results)
    sent = sum(n for _, _, n in results)
    # Each answer must have seen exactly the messages stored before it: turn order held in the fleet.
    in_turn_order = sum(
        1
        for key, answers, _ in results
        if [answers.get(text) for text in stored[key]]
        == [f"seen {k}" for k in range(1, len(stored[key]) + 1)]
    )
    in_send_order = sum(
        1
        for key, answers, n in results
        if [answers.get(f"message {k}") for k in range(1, n + 1)] == [f"seen {k}" for k in range(1, n + 1)]
    )
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
    print(
        f"{replicas} replicas, {conversations} conversations x {messages} messages"
        f"{' (each delivered to 2 replicas)' if dup else ''} {gap_ms:.0f} ms apart,"
        f" provider {provider_ms:.0f} ms"
    )
    print(f"answers: {answered} for {sent} messages (each answered once: {answered == sent})")
    print(
        f"conversations answered in stored (turn) order: {in_turn_order}/{conversations};"
        f" in the order sent: {in_send_order}/{conversations}"
    )
    print(f"throughput: {answered / elapsed:.0f} turns/s over {elapsed:.2f} s")
    print(
        f"latency from send to answer: p50 {statistics.median(ms):.1f} ms  p99 {p99:.1f} ms"
        f"  max {ms[-1]:.1f} ms (includes queueing behind earlier messages of the same conversation)"
    )


def _seen(count: int) -> list[str | None]:
    return [f"seen {k}" for k in range(1, count + 1)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5, help="messages per conversation")
    parser.add_argument("--provider-ms", type=float, default=50.0)
    parser.add_argument("--gap-ms", type=float, default=20.0, help="between messages of a conversation")
    parser.add_argument("--duplicates", action="store_true", help="deliver every event to two replicas")
    args = parser.parse_args()
    asyncio.run(
        main(
            args.database_url,
            args.replicas,
            args.conversations,
            args.messages,
            args.provider_ms,
            args.gap_ms,
            args.duplicates,
        )
    )
