"""Benchmark: N concurrent channel mentions through the Slack adapter. Prints numbers; asserts nothing.

Real slack-bolt / slack-sdk against the fake Slack (tests/fakes/slack_server.py) over Socket Mode, the
real core behind it, and an in-process provider that streams at a fixed token rate. For each N:

- added latency: event sent -> first answer text on the fake Slack, minus the provider's own time to
  first token (so what is left is Bolt, the adapter, the core and the Web API round trip), p50 / p99;
- Web API calls per reply, 429s the fake answered (it enforces a per-message append rate);
- whether every final Slack message is exactly the model's text;
- peak RSS of the process (bot, core, fake Slack and provider all live in this one process).

The fake Slack runs in a child process (its HTTP work would otherwise share the bot's event loop);
each N runs twice: mentions spread evenly over 2 s (N conversations in flight, steady arrival) and all at
once (a burst, e.g. redeliveries after an outage). CPU per reply is the bot process's (Bolt, adapter,
core, provider stub) user + system time divided by N.

Run: `python -m bench.slack_load` (`--sizes 10,100`, `--spreads 2,0`, `--tokens`, `--rate`, `--ttft`).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from pydantic import SecretStr

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from bot.app import open_core
from bot.config import load_settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.providers.base import ProviderChunk, ProviderRequest, StopChunk, TextChunk, UsageChunk
from tests.fakes.slack_actions import BOT_USER
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack, mention

SETUP_METHODS = {"auth.test", "apps.connections.open"}


class FixedRateProvider:
    """Streams `tokens` words at `rate` per second after `ttft` seconds; records its own timings."""

    name = "anthropic"

    def __init__(self, tokens: int, rate: float, ttft: float) -> None:
        self.tokens, self.rate, self.ttft = tokens, rate, ttft
        self.first_token_delay: dict[str, float] = {}  # question -> provider call to first token

    def answer(self, question: str) -> str:
        return "".join(f"{question.rsplit(maxsplit=1)[-1]}-word{i} " for i in range(self.tokens))

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[ProviderChunk, None]:
        called = time.perf_counter()
        question = request.messages[-1].text
        words = self.answer(question).split(" ")[:-1]
        await asyncio.sleep(self.ttft)
        for index, word in enumerate(words):
            if index == 0:
                self.first_token_delay[question] = time.perf_counter() - called
            else:
                await asyncio.sleep(1 / self.rate)
            yield TextChunk(word + " ")
        yield UsageChunk(input_tokens=50, output_tokens=self.tokens)
        yield StopChunk("end_turn")

    async def aclose(self) -> None:
        return None


def first_text_at(fake: FakeSlack, channel: str, thread: str) -> float | None:
    for call in fake.calls:
        if call.args.get("channel") != channel or call.error or call.args.get("thread_ts") != thread:
            continue
        if call.method == "chat.startStream" and any(
            c.get("type") == "markdown_text" for c in call.args.get("chunks") or []
        ):
            return call.at
        if call.method == "chat.postMessage" and (call.args.get("markdown_text") or call.args.get("text")):
            return call.at
    return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- the fake Slack, in its own process: its HTTP work must not compete with the bot's event loop ------
# time.perf_counter() is the system-wide monotonic clock on Linux, so both processes' stamps compare.


@dataclass
class Thread:
    channel: str
    ts: str
    question: str
    sent: float = 0.0
    first_text: float | None = None
    final_text: str = ""


async def _fake_session(conn: Connection) -> None:
    fake = FakeSlack()
    await fake.start()
    fake.rate_limit("chat.appendStream", per_second=4, burst=4, scope="ts")  # per stream message
    fake.rate_limit("chat.postMessage", per_second=1, burst=5, scope="channel")
    loop = asyncio.get_running_loop()
    conn.send(fake.api_url)
    n, spread = await loop.run_in_executor(None, conn.recv)
    channels = [f"C{i % 25:04d}" for i in range(n)]
    threads = [Thread(channels[i], "", f"question q{n}x{i}") for i in range(n)]
    for thread in threads:
        thread.ts = fake.user_message(thread.channel, f"<@{BOT_USER}> {thread.question}")["ts"]
    await fake.wait_for(lambda: fake.connections, within=30)
    before = len(fake.calls)

    async def push(thread: Thread, i: int) -> None:
        await asyncio.sleep(spread * i / n)  # arrivals evenly spread over `spread` seconds (0: a burst)
        event = fake.messages[f"{thread.channel}:{thread.ts}"].as_history() | {"channel": thread.channel}
        thread.sent = time.perf_counter()
        await fake.push_event(mention(event | {"team": "T0FAKE"}))

    await asyncio.gather(*(push(t, i) for i, t in enumerate(threads)))
    done = lambda: sum(1 for c in fake.calls[before:] if c.method == "chat.stopStream" and not c.error) >= n  # noqa: E731
    await fake.wait_for(done, within=600)
    for thread in threads:
        thread.first_text = first_text_at(fake, thread.channel, thread.ts)
        thread.final_text = fake.answer_text(thread.channel, thread.ts)
    conn.send((threads, len(fake.calls) - before, fake.rate_limited))
    await loop.run_in_executor(None, conn.recv)  # the bot has disconnected
    await fake.stop()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve_fake(conn: Connection) -> None:
    asyncio.run(_fake_session(conn))


async def run_once(n: int, provider: FixedRateProvider, folder: Path, spread: float) -> None:
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve_fake, args=(child,), daemon=True)
    process.start()
    loop = asyncio.get_running_loop()
    api_url = await loop.run_in_executor(None, parent.recv)
    core_settings = load_settings(
        _env_file=None, anthropic_api_key="bench", database_url=f"sqlite:///{folder / f'b-{n}-{spread}.db'}"
    )
    slack_settings = SlackSettings(
        _env_file=None,
        bot_token=SecretStr(BOT_TOKEN),
        app_token=SecretStr(APP_TOKEN),
        api_url=api_url,
    )
    async with open_core(core_settings, providers={"anthropic": provider}) as core:
        adapter = SlackAdapter(slack_settings, AdapterContext(core.router, HttpServer("127.0.0.1", 0)))
        runner = asyncio.create_task(adapter.run())
        while not adapter.ready():  # noqa: ASYNC110 - polling a plain flag, briefly, at start-up
            await asyncio.sleep(0.01)
        started, cpu_before = time.perf_counter(), _cpu_seconds()
        parent.send((n, spread))
        threads, calls, rate_limited = await loop.run_in_executor(None, parent.recv)
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    parent.send("bye")
    await loop.run_in_executor(None, process.join)
    added = [
        (t.first_text - t.sent - provider.first_token_delay[t.question]) * 1000
        for t in threads
        if t.first_text is not None and t.question in provider.first_token_delay
    ]
    exact = sum(t.final_text == provider.answer(t.question) for t in threads)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"N={n:>4} {'burst' if not spread else f'over {spread:.0f}s'}: added latency to first text "
        f"p50 {statistics.median(added):7.2f} ms  p99 {percentile(added, 0.99):7.2f} ms  | "
        f"API calls/reply {calls / n:4.2f}  | 429s {rate_limited}  | exact {exact}/{n}  | "
        f"bot CPU/reply {cpu / n * 1000:4.2f} ms  | wall {wall:5.2f}s  | bot peak RSS {rss_mb:5.1f} MB"
    )


async def main(sizes: list[int], tokens: int, rate: float, ttft: float, spreads: list[float]) -> None:
    provider = FixedRateProvider(tokens, rate, ttft)
    print(
        f"provider: {tokens} tokens at {rate:.0f}/s after {ttft * 1000:.0f} ms TTFT; "
        "stream append interval 0.5 s (default)"
    )
    with tempfile.TemporaryDirectory() as folder:
        for spread in spreads:
            for n in sizes:
                await run_once(n, provider, Path(folder), spread)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--ttft", type=float, default=0.2)
    parser.add_argument(
        "--spreads", default="2,0", help="seconds over which the N mentions arrive (0: burst)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    spreads = [float(s) for s in args.spreads.split(",")]
    asyncio.run(main(sizes, args.tokens, args.rate, args.ttft, spreads))
