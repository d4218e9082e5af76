"""Benchmark: the core's own overhead per turn, and turn preparation against history length.

Prints numbers; asserts nothing. Run with `make bench` (or `python -m bench.core_overhead`).

- Overhead per turn: router.handle() from an inbound message to TurnDone, with a zero-latency provider
  (so everything measured is the core: dedupe, access, session, SQLite writes, usage row, events).
- Turn preparation: from router.handle() to the provider holding the finished wire request (the
  Anthropic provider's own request builder runs inside the fake), at 10, 100 and 1,000 prior turns.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path

from bot.app import Core, open_core
from bot.config import load_settings
from core.conversation import Message
from core.events import TurnDone
from core.inbound import ConversationRef, InboundMessage, Sender
from core.providers.anthropic import build_params
from core.providers.base import ProviderChunk, ProviderRequest, StopChunk, TextChunk, UsageChunk


class ZeroLatencyProvider:
    """Answers instantly, but builds the real Anthropic wire request first, as the real provider does."""

    name = "anthropic"

    def __init__(self, chunks: int = 20) -> None:
        self.chunks = chunks
        self.prepared_at = 0.0

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        build_params(request)
        self.prepared_at = time.perf_counter()
        for _ in range(self.chunks):
            yield TextChunk("token ")
        yield UsageChunk(input_tokens=100, output_tokens=self.chunks)
        yield StopChunk("end_turn")

    async def aclose(self) -> None:
        return None


def inbound(ref: ConversationRef, text: str) -> InboundMessage:
    return InboundMessage(ref, Sender("bench-user"), text, uuid.uuid4().hex, is_dm=True)


async def one_turn(core: Core, ref: ConversationRef, text: str) -> float:
    started = time.perf_counter()
    async for event in core.router.handle(inbound(ref, text)):
        if isinstance(event, TurnDone):
            break
    return time.perf_counter() - started


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"mean {statistics.fmean(ms):.3f} ms  p50 {statistics.median(ms):.3f} ms  p99 {p99:.3f} ms"


async def bench_overhead(core: Core, turns: int, sessions: int) -> None:
    refs = [ConversationRef("bench", "w", f"c{i}") for i in range(sessions)]
    for ref in refs:  # warm-up: sessions loaded, SQLite pages hot
        await one_turn(core, ref, "warm up")
    samples = [await one_turn(core, refs[i % sessions], f"question {i}") for i in range(turns)]
    print(f"core overhead per turn ({turns} turns, {sessions} sessions): {summary(samples)}")


async def seed(core: Core, ref: ConversationRef, prior_turns: int) -> None:
    state = await core.sessions.get(ref)
    pairs: list[Message] = []
    for i in range(prior_turns):
        pairs += [
            Message.user(f"earlier question number {i}"),
            Message.assistant(f"earlier answer number {i}"),
        ]
    await core.sessions.append(state, pairs)


async def bench_preparation(core: Core, provider: ZeroLatencyProvider, history: int, repeats: int) -> float:
    ref = ConversationRef("bench", "w", f"history-{history}")
    await seed(core, ref, history)
    samples: list[float] = []
    for i in range(repeats):
        started = time.perf_counter()
        async for event in core.router.handle(inbound(ref, f"next question {i}")):
            if isinstance(event, TurnDone):
                break
        samples.append(provider.prepared_at - started)
    print(f"turn preparation at {history:>5} prior turns: {summary(samples)}")
    return statistics.median(samples)


async def main(turns: int, sessions: int, repeats: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        settings = load_settings(_env_file=None, anthropic_api_key="bench", database_url=url)
        print(f"store: {url.split(':', 1)[0]}")
        provider = ZeroLatencyProvider()
        async with open_core(settings, providers={"anthropic": provider}) as core:
            await bench_overhead(core, turns, sessions)
            medians = {h: await bench_preparation(core, provider, h, repeats) for h in (10, 100, 1000)}
    print(f"preparation ratio 1,000 vs 10 prior turns (p50): {medians[1000] / medians[10]:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--database-url",
        help="measure on this store instead of a fresh SQLite file, e.g. an empty PostgreSQL database",
    )
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.sessions, args.repeats, args.database_url))
