"""Benchmark: N concurrent `/ask` interactions against the fake Discord, the real core behind the adapter.

Prints numbers; asserts nothing. Run with `python -m bench.discord_load` (`--sizes 10,100,500`).

Two shapes of load, each with one conversation per channel:

- burst: all N interactions are sent back to back (within a few ms), zero-latency provider. This is
  the worst case: every reply queues behind the CPU work of the ones before it.
- steady: N interactions arrive evenly over 2 s while a fixed-rate provider streams each answer for
  4 s (40 chunks, 0.1 s apart), so all N are in flight at once and answers are edited at the adapter's
  cadence (REST calls per reply and 429s then reflect real streaming).
- steady-adapter-only: the same, with the core replaced by a stub streaming the same text at the same
  rate, to show how much of the latency is the core (its SQLite store serialises writes).

The fake Discord (tests/fakes/discord_server.py) runs in a child process, so its own work does not
count against the adapter; it timestamps each INTERACTION_CREATE it sends and the first REST call that
makes answer text visible. The bot process holds discord.py, the adapter and the core, with a
zero-latency provider (bench/core_overhead.py), so everything measured is added latency:

- ack: dispatch -> the deferral reaches Discord (must stay far below Discord's 3 s)
- first text: dispatch -> the first edit carrying answer text (what the user waits for)
- core: the router admitting the message -> the first TextDelta (to tell core from adapter time)
- REST calls per reply, 429s received (the fake enforces per-route buckets like Discord's),
  whether every final message is exactly the model's text, and the bot process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
from bench.core_overhead import ZeroLatencyProvider
from bot.app import open_core
from bot.config import load_settings
from core.adapter import AdapterContext
from core.events import AgentEvent, TextDelta, TurnDone
from core.inbound import InboundMessage
from core.present import Outcome, Presenter
from core.providers.base import Provider, ProviderChunk, ProviderRequest, StopChunk, TextChunk, UsageChunk
from core.router import Admission, Router
from core.surface import Surface

BURST_CHUNKS = 20
STEADY_CHUNKS, STEADY_INTERVAL_S, STEADY_SPREAD_S = 40, 0.1, 2.0


def expected_text(chunks: int) -> str:
    return "token " * chunks


class FixedRateProvider:
    """Streams `chunks` tokens `interval_s` apart (first one at once); the answer the model 'types'."""

    name = "anthropic"

    def __init__(self, chunks: int, interval_s: float) -> None:
        self.chunks = chunks
        self.interval_s = interval_s

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        for index in range(self.chunks):
            if index:
                await asyncio.sleep(self.interval_s)
            yield TextChunk("token ")
        yield UsageChunk(input_tokens=100, output_tokens=self.chunks)
        yield StopChunk("end_turn")

    async def aclose(self) -> None:
        return None


# --- the fake Discord, in a child process -----------------------------------------------------------


def _fake_main(conn: Connection, channels: int) -> None:
    asyncio.run(_serve_fake(conn, channels))


async def _serve_fake(conn: Connection, channels: int) -> None:
    from tests.fakes.discord_server import FakeDiscord

    fake = FakeDiscord(channels_per_guild=channels)
    await fake.start()
    conn.send((fake.api_url, fake.gateway_url))
    loop = asyncio.get_running_loop()
    channel_ids = [int(c["id"]) for c in fake.channels.values() if c["type"] == 0]
    while True:
        command, argument = await loop.run_in_executor(None, conn.recv)
        if command == "stop":
            break
        if command == "ready":  # the bot has connected and synced its commands
            await fake.wait_for(lambda: fake.identified.is_set() and bool(fake.commands), guard_s=60)
            conn.send(True)
        elif command == "fire":
            count, spread_s = argument  # one conversation per channel, spread evenly over spread_s
            fired = []
            started = loop.time()
            for index in range(count):
                delay = started + spread_s * index / count - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                fired.append(await fake.slash("ask", {"prompt": f"q{index}"}, channel=channel_ids[index]))
            conn.send([i.id for i in fired])
        elif command == "stats":
            conn.send(_stats(fake, *argument))
    await fake.stop()


def _stats(fake: Any, ids: list[int], expected: str) -> dict[str, Any]:
    interactions = [fake.interactions[i] for i in ids]
    done = [i for i in interactions if (fake.original(i) or {}).get("content") == expected]
    acks: list[float] = []
    for interaction in interactions:
        callback = next((c for c in fake.calls_for(interaction.id) if c.path.endswith("/callback")), None)
        if callback is not None:
            acks.append(callback.at - interaction.dispatched_at)
    first = [i.first_content_at - i.dispatched_at for i in interactions if i.first_content_at is not None]
    calls = [len(fake.calls_for(i.id)) for i in interactions]
    sent = [i.dispatched_at for i in interactions]
    return {
        "sent_over": max(sent) - min(sent),
        "done": len(done),
        "acks": acks,
        "first": first,
        "calls": calls,
        "r429": fake.received_429,
        "exact": len(done) == len(interactions),
    }


class FakeProcess:
    def __init__(self, channels: int) -> None:
        self._conn, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_fake_main, args=(child, channels), daemon=True
        )
        self._process.start()
        self.api_url, self.gateway_url = self._conn.recv()

    async def ask(self, command: str, argument: Any = None) -> Any:
        return await asyncio.to_thread(self._request, command, argument)

    def _request(self, command: str, argument: Any) -> Any:
        self._conn.send((command, argument))
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send(("stop", None))
        self._process.join(timeout=5)


# --- the bot process -------------------------------------------------------------------------------


def _time_core(router: Router, samples: list[float]) -> None:
    """Record the router admitting a message -> its first TextDelta, to separate core time from adapter
    time (the presenter asks `router.events` for what the admission yields)."""
    admit, events = router.admit, router.events
    started: dict[str, float] = {}

    async def timed_admit(message: InboundMessage) -> Admission:
        started[message.event_id] = time.perf_counter()
        return await admit(message)

    async def timed_events(admission: Admission) -> AsyncIterator[AgentEvent]:
        began = started.pop(admission.message.event_id, None)
        async for event in events(admission):
            if began is not None and isinstance(event, TextDelta):
                samples.append(time.perf_counter() - began)
                began = None
            yield event

    setattr(router, "admit", timed_admit)  # noqa: B010 - instrumenting one instance for the benchmark
    setattr(router, "events", timed_events)  # noqa: B010


def _stub_core(router: Router, chunks: int) -> None:
    """Replace the core with a stream of the same text at the same rate, shown by the same presenter:
    what is left is the presenter, the adapter, discord.py and aiohttp (to tell their cost from the
    core's SQLite store)."""

    async def streamed() -> AsyncIterator[AgentEvent]:
        for index in range(chunks):
            if index:
                await asyncio.sleep(STEADY_INTERVAL_S)
            yield TextDelta("token ")
        yield TurnDone(expected_text(chunks))

    async def answer(message: InboundMessage, surface: Surface) -> Outcome:
        return await Presenter(surface, pressure=router.pressure(message.ref.platform)).present(streamed())

    setattr(router, "answer", answer)  # noqa: B010 - instrumenting one instance for the benchmark


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else float("nan")


def line(name: str, samples: list[float]) -> str:
    if not samples:
        return f"{name:<11} (none)"
    return (
        f"{name:<11} p50 {pct(samples, 0.5):7.2f} ms  p99 {pct(samples, 0.99):7.2f} ms"
        f"  max {max(samples) * 1000:7.2f} ms  mean {statistics.fmean(samples) * 1000:7.2f} ms"
    )


async def run_size(n: int, mode: str, folder: Path) -> None:
    fake = FakeProcess(channels=n)
    steady = mode.startswith("steady")
    chunks = STEADY_CHUNKS if steady else BURST_CHUNKS
    provider: Provider = (
        FixedRateProvider(chunks, STEADY_INTERVAL_S) if steady else ZeroLatencyProvider(BURST_CHUNKS)
    )
    settings = load_settings(
        _env_file=None, anthropic_api_key="bench", database_url=f"sqlite:///{folder / f'{mode}-{n}.db'}"
    )
    discord_settings = DiscordSettings.model_validate(
        {
            "bot_token": "fake-discord-bot-token.secret",
            "api_url": fake.api_url,
            "gateway_url": fake.gateway_url,
        }
    )
    core_samples: list[float] = []
    expected = expected_text(chunks)
    try:
        async with open_core(settings, providers={"anthropic": provider}) as core:
            _time_core(core.router, core_samples)
            if mode.endswith("adapter-only"):
                _stub_core(core.router, chunks)
            adapter = DiscordAdapter(discord_settings, AdapterContext(core.router, _NoRoutes()))
            task = asyncio.create_task(adapter.run())
            await fake.ask("ready")
            await _wait_done(fake, await fake.ask("fire", (min(n, 5), 0.0)), expected)  # warm-up
            core_samples.clear()
            ids = await fake.ask("fire", (n, STEADY_SPREAD_S if steady else 0.0))
            stats = await _wait_done(fake, ids, expected)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        fake.stop()
    report(n, mode, stats, core_samples)


async def _wait_done(
    fake: FakeProcess, ids: list[int], expected: str, guard_s: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + guard_s
    while True:
        stats: dict[str, Any] = await fake.ask("stats", (ids, expected))
        if stats["done"] == len(ids) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)


def report(n: int, mode: str, stats: dict[str, Any], core_samples: list[float]) -> None:
    calls = stats["calls"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{mode}: N = {n} concurrent /ask (sent over {stats['sent_over'] * 1000:.0f} ms)")
    print(line("ack", stats["acks"]))
    print(line("first text", stats["first"]))
    print(line("core", core_samples))
    print(f"REST calls per reply: mean {statistics.fmean(calls):.2f}  max {max(calls)}")
    print(f"429s received: {stats['r429']}")
    print(f"final messages exactly the model's text: {stats['done']}/{n}")
    print(f"peak RSS of the bot process so far: {rss_mb:.1f} MB")


class _NoRoutes:
    def add_route(self, method: str, path: str, handler: Any) -> None:
        raise AssertionError("the Discord adapter mounts no HTTP routes")


async def main(sizes: list[int], modes: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for mode in modes:
            for n in sizes:
                await run_size(n, mode, Path(folder))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated N values")
    parser.add_argument(
        "--modes", default="steady,steady-adapter-only,burst", help="steady, steady-adapter-only, burst"
    )
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.modes.split(",")))
