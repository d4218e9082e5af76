"""kill -9 and restart: `bot run` (a real process: python-telegram-bot, the core, SQLite) polls the fake
Bot API, is SIGKILLed right after it fetched ten messages, and started again on the same database.
Every message is answered exactly once, in full: what was stored is answered by the router's recovery,
what was not is still with Telegram (never confirmed) and fetched again.

While the first process runs, the fake never lets an answer through (sends hang without effect), so an
answer cannot land just before the kill: what is checked is inbound durability, not the unavoidable
at-least-once window between a message landing and the store hearing of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.ports import free_port
from tests.telegramkit import fake
from tests.test_telegram import shows

__all__ = ["fake"]

CHATS = range(1_000, 1_010)
SENDS = ("sendMessage", "editMessageText")


def bot_env(fake: FakeTelegram, llm_server: FakeLLMServer, database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TELEGRAM_", "DISCORD_"))}
    return env | {
        "ANTHROPIC_API_KEY": "sk-ant-test-secret-key",
        "ANTHROPIC_BASE_URL": llm_server.anthropic_base_url,
        "BOT_MODEL": "anthropic:claude-sonnet-5-5",
        "DATABASE_URL": f"sqlite:///{database}",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(free_port()),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": fake.base_url,
        "TELEGRAM_POLL_TIMEOUT": "1",
        "TELEGRAM_DRAFT_INTERVAL": "0.05",
        "LOG_LEVEL": "INFO",
    }


@contextlib.asynccontextmanager
async def bot_process(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=log.parent, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def polling(fake: FakeTelegram, process: asyncio.subprocess.Process, log: Path) -> None:
    polls = len(fake.polls)
    for _ in range(600):
        if len(fake.polls) > polls:
            return
        assert process.returncode is None, output(log)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the bot never polled:\n{output(log)}")


def output(log: Path) -> str:
    return log.read_text(errors="replace")


def stored_turns(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        (count,) = db.execute("SELECT count(*) FROM turns").fetchone()
    return int(count)


@pytest.mark.parametrize("kill_when", ["fetched", "confirmed"])
async def test_ten_messages_survive_a_kill_9_and_are_answered_exactly_once(
    fake: FakeTelegram, llm_server: FakeLLMServer, tmp_path: Path, kill_when: str
) -> None:
    env = bot_env(fake, llm_server, tmp_path / "bot.db")
    log = tmp_path / "bot.log"
    killed = asyncio.Event()
    async with bot_process(env, log) as first:
        await polling(fake, first, log)
        fake.stall(*SENDS)
        for chat in CHATS:
            fake.user_says(fake.private_chat(chat, f"User{chat}"), f"message {chat}")
        update_ids = {update["update_id"] for update in fake._pending}

        def kill() -> None:
            if not killed.is_set():
                first.send_signal(signal.SIGKILL)
                killed.set()

        def after_served(served: list[int]) -> None:
            if update_ids <= set(served):
                kill()  # right after the batch was written to the bot

        async def on_confirm(updates: list[dict[str, Any]]) -> None:
            if update_ids <= {update["update_id"] for update in updates}:
                kill()  # Telegram has forgotten them: from here on only the store has them

        if kill_when == "fetched":
            fake.after_served = after_served
        else:
            fake.on_confirm = on_confirm
        await asyncio.wait_for(killed.wait(), 30)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
    fake.after_served = fake.on_confirm = None
    fake.stalled.clear()
    if kill_when == "confirmed":  # Telegram forgot them only once the store had every one of them
        assert stored_turns(tmp_path / "bot.db") == len(CHATS)

    async with bot_process(env, log) as second:
        await polling(fake, second, log)

        def answered() -> list[list[str]]:
            return [[m.text for m in fake.bot_messages(chat)] for chat in CHATS]

        expected = [[shows(f"echo: message {chat}")] for chat in CHATS]
        try:
            await fake.wait_for(lambda: answered() == expected, within=30)
        except AssertionError:
            raise AssertionError(f"{answered()}\n{output(log)}") from None
        await asyncio.sleep(0.5)  # nothing more arrives
        assert answered() == expected
