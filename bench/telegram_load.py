"""Benchmark: N concurrent Telegram private chats against the fake Bot API, with the real core behind it.

Prints numbers; asserts nothing. Run with `python -m bench.telegram_load` (every N and style, each in a
fresh process so peak RSS is per run) or `--n 500 --style draft` for one run.

The real TelegramAdapter (python-telegram-bot, long polling) talks to the fake Bot API from
tests/fakes/telegram_server.py with Telegram-like flood control switched on (about 1 message/s per chat
with short bursts, 30/s per bot). The provider answers instantly (bench.core_overhead.ZeroLatencyProvider),
so every millisecond measured is the adapter, PTB, the core and the local HTTP hops.

Two loads: a burst (all N chats write at the same moment) and a steady state (the N chats write one
after another at 20 messages/s, below Telegram's 30 messages/s bot-wide limit, so replies can keep up).

- added latency: from the update being queued at the fake to the first call that shows text in that chat
  (a draft, or the first sendMessage in edit style), p50/p99
- final: from the update to the final message, p50/p99 (in draft style bounded by the 30 messages/s
  bot-wide limit when N chats all finish at once)
- Bot API calls per reply (everything except getUpdates and start-up calls), 429s received,
  whether every final message equals the model's text exactly, peak RSS of the whole process
  (the fake server and the core included)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.format import to_html
from adapters.telegram.settings import TelegramSettings
from bench.core_overhead import ZeroLatencyProvider
from bot.app import open_core
from bot.config import load_settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from tests.fakes.telegram_server import TOKEN, FakeTelegram, Flood, parse_html

START_UP_CALLS = {"getMe", "setMyCommands", "deleteWebhook", "getUpdates"}
MODEL_TEXT = "token " * 20  # what ZeroLatencyProvider answers


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def first_visible(fake: FakeTelegram, chat_ids: set[int]) -> dict[int, float]:
    seen: dict[int, float] = {}
    for call in fake.calls:
        chat = call.params.get("chat_id")
        shows_text = call.method in ("sendMessageDraft", "sendMessage") and call.params.get("text")
        if shows_text and call.status == 200 and chat in chat_ids and chat not in seen:
            seen[chat] = call.at
    return seen


async def run(n: int, style: str, rate: float | None) -> dict[str, Any]:
    fake = FakeTelegram()
    fake.flood = Flood()
    await fake.start()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            _env_file=None, anthropic_api_key="bench", database_url=f"sqlite:///{Path(folder) / 'b.db'}"
        )
        async with open_core(settings, providers={"anthropic": ZeroLatencyProvider()}) as core:
            tg = TelegramSettings.model_validate(
                {"bot_token": TOKEN, "api_url": fake.base_url, "stream_style": style}
            )
            adapter = TelegramAdapter(tg, AdapterContext(core.router, HttpServer("127.0.0.1", 0)))
            task = asyncio.create_task(adapter.run())
            while not adapter.ready():  # noqa: ASYNC110 (no event to wait on: ready() is a poll)
                await asyncio.sleep(0.01)
            try:
                return await measure(fake, n, rate)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await fake.stop()


async def measure(fake: FakeTelegram, n: int, rate: float | None) -> dict[str, Any]:
    """All N chats write at once (burst), or one after another at `rate` messages/s (steady state)."""
    chats = [fake.private_chat(1_000_000 + i, f"User{i}") for i in range(n)]
    chat_ids = {chat["id"] for chat in chats}
    before = len(fake.calls)
    pushed: dict[int, float] = {}
    started = time.monotonic()
    for index, chat in enumerate(chats):
        if rate is not None:
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
        pushed[chat["id"]] = time.monotonic()
        fake.user_says(chat, "hello")
    expected_text = parse_html(to_html(MODEL_TEXT))

    while len(fake.messages) < n:  # noqa: ASYNC110 (a cheap poll that does not load the measured loop)
        await asyncio.sleep(0.05)
    finals = {chat_id: fake.bot_messages(chat_id) for chat_id in chat_ids}
    visible = first_visible(fake, chat_ids)
    calls = [c for c in fake.calls[before:] if c.method not in START_UP_CALLS]
    first = [(visible[c] - pushed[c]) * 1000 for c in chat_ids if c in visible]
    final = [(finals[c][0].sent_at - pushed[c]) * 1000 for c in chat_ids]
    exact = all(
        len(m) == 1 and m[0].text == expected_text and m[0].markup == to_html(MODEL_TEXT)
        for m in finals.values()
    )
    return {
        "first_p50": percentile(first, 0.5),
        "first_p99": percentile(first, 0.99),
        "final_p50": percentile(final, 0.5),
        "final_p99": percentile(final, 0.99),
        "calls_per_reply": len(calls) / n,
        "by_method": {m: sum(c.method == m for c in calls) / n for m in sorted({c.method for c in calls})},
        "429s": sum(c.status == 429 for c in fake.calls),
        "exact": exact,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(n: int, style: str, rate: float | None, result: dict[str, Any]) -> None:
    methods = ", ".join(f"{m} {v:.2f}" for m, v in result["by_method"].items())
    load = f"steady {rate:g}/s" if rate else "burst"
    print(
        f"N={n:>3} {style:<5} {load:<11}  first text p50 {result['first_p50']:7.1f} ms"
        f"  p99 {result['first_p99']:7.1f} ms"
        f"  | final p50 {result['final_p50']:8.1f} ms  p99 {result['final_p99']:8.1f} ms"
        f"  | calls/reply {result['calls_per_reply']:.2f} ({methods})"
        f"  | 429s {result['429s']}  | exact {result['exact']}  | peak RSS {result['rss_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, help="one run with this many chats (default: 10, 100, 500)")
    parser.add_argument("--style", choices=("draft", "edit"), default=None)
    parser.add_argument("--rate", type=float, help="steady state: messages per second (default: burst)")
    args = parser.parse_args()
    if args.n is not None:
        style = args.style or "draft"
        report(args.n, style, args.rate, asyncio.run(run(args.n, style, args.rate)))
        return
    for style in (args.style,) if args.style else ("draft", "edit"):
        for rate in (None, 20.0):
            for n in (10, 100, 500):  # a fresh process per run: peak RSS is per run
                command = [sys.executable, "-m", "bench.telegram_load", "--n", str(n), "--style", style]
                subprocess.run(command + (["--rate", str(rate)] if rate else []), check=True)


if __name__ == "__main__":
    main()
