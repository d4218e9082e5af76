"""One driver per surface for the contract suite: the real adapter and its real platform library against
the platform's fake server (the console against pipes), the real core behind, the fake LLM behind that.

A driver speaks for a user (`ask`) and reads back what the platform would show (`answer`, `private`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiosqlite

from adapters.console.adapter import ConsoleAdapter
from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from bot.app import Core, open_core
from bot.config import Settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.router import SurfaceFor
from core.storage import sqlite_path_from_url
from tests.corekit import RecordingObserver, eventually
from tests.discordkit import running_bot as running_discord
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_wire import FLAG_EPHEMERAL
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack, mention
from tests.fakes.telegram_server import FakeTelegram, parse_html
from tests.telegramkit import running_bot as running_telegram

SLACK_CHANNEL = "C0GENERAL"
TELEGRAM_CHAT = 4242  # a private chat with the user


class Driver(Protocol):
    platform: str
    limit: int  # the platform's limit for one message, in characters
    core: Core
    surface_for: SurfaceFor  # the adapter's: rebuilds a reply surface from a stored turn

    async def ask(self, text: str) -> str:
        """A user writes to the bot; returns a handle for the conversation's answer."""
        ...

    async def answer(self, handle: str) -> list[str]:
        """Once the answer is delivered: the texts of its messages in order (tool lines excluded)."""
        ...

    def shows_tool(self, handle: str, name: str) -> bool:
        """A tool call named `name` is (or was) visible with the answer."""
        ...

    async def private(self, handle: str) -> list[str]:
        """Once shown: what only the asker saw."""
        ...

    def public(self, handle: str) -> list[str]:
        """Every message anyone in the conversation can see from the bot."""
        ...

    def throttle_replies(self, times: int) -> None:
        """The platform answers the bot's next `times` reply calls with 429 and a short Retry-After."""
        ...


async def delivered_turns(core: Core) -> int:
    """Turns whose final text the platform accepted (the store's delivery state)."""
    path = sqlite_path_from_url(core.settings.database_url)
    async with (
        aiosqlite.connect(path) as db,
        db.execute("SELECT COUNT(*) FROM turns WHERE delivered_at IS NOT NULL") as cursor,
    ):
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def until_delivered(core: Core, count: int) -> None:
    for _ in range(1500):
        if await delivered_turns(core) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} turns delivered")


# --- Slack --------------------------------------------------------------------------------------------


@dataclass
class SlackDriver:
    fake: FakeSlack
    adapter: SlackAdapter
    core: Core
    surface_for: SurfaceFor
    platform: str = "slack"
    limit: int = 12_000
    asked: int = 0

    async def ask(self, text: str) -> str:
        event = self.fake.user_message(SLACK_CHANNEL, f"<@{BOT_USER}> {text}")
        await self.fake.push_event(mention(event))
        self.asked += 1
        return str(event["ts"])

    async def answer(self, handle: str) -> list[str]:
        await until_delivered(self.core, self.asked)
        await eventually(
            lambda: not any(m.streaming for m in self.fake.answer_messages(SLACK_CHANNEL, handle))
        )
        return [m.text for m in self.fake.answer_messages(SLACK_CHANNEL, handle)]

    def shows_tool(self, handle: str, name: str) -> bool:
        for message in self.fake.bot_messages(SLACK_CHANNEL, handle):
            tasks = [c for c in message.chunks if c.get("type") == "task_update"]
            if any(name in str(task) for task in tasks) or name in message.text:
                return True
        return False

    async def private(self, handle: str) -> list[str]:
        await eventually(lambda: self.fake.ephemerals)
        return [e["text"] for e in self.fake.ephemerals]

    def public(self, handle: str) -> list[str]:
        return [m.text for m in self.fake.bot_messages(SLACK_CHANNEL)]

    def throttle_replies(self, times: int) -> None:
        for method in ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage"):
            self.fake.fail(method, status=429, retry_after=0.05, times=times)


@contextlib.asynccontextmanager
async def slack(settings: Settings) -> AsyncIterator[SlackDriver]:
    fake = FakeSlack()
    await fake.start()
    values = {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "api_url": fake.api_url}
    slack_settings = SlackSettings(_env_file=None, stream_interval=0.02, edit_interval=0.02, **values)  # type: ignore[call-arg]
    http = HttpServer("127.0.0.1", 0)
    try:
        async with open_core(settings) as core:
            context = AdapterContext(core.router, http, observer=RecordingObserver())
            adapter = SlackAdapter(slack_settings, context)
            runner = asyncio.create_task(adapter.run())
            try:
                await fake.wait_for(lambda: adapter.ready() or runner.done())
                yield SlackDriver(fake, adapter, core, adapter.surface_for)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
    finally:
        await fake.stop()


# --- Telegram -----------------------------------------------------------------------------------------


@dataclass
class TelegramDriver:
    fake: FakeTelegram
    core: Core
    surface_for: SurfaceFor
    platform: str = "telegram"
    limit: int = 4096
    asked: int = 0
    seen: int = 0  # bot messages in the chat before the current question

    async def ask(self, text: str) -> str:
        self.seen = len(self.fake.bot_messages(TELEGRAM_CHAT))
        self.fake.user_says(self.fake.private_chat(TELEGRAM_CHAT), text)
        self.asked += 1
        return str(self.seen)

    async def answer(self, handle: str) -> list[str]:
        await until_delivered(self.core, self.asked)
        return [parse_html(m.text) for m in self.fake.bot_messages(TELEGRAM_CHAT)[int(handle) :]]

    def shows_tool(self, handle: str, name: str) -> bool:
        shown = [str(c.params.get("text", "")) for c in self.fake.calls if c.method in _TELEGRAM_SHOWS]
        return any(name in text for text in shown)

    async def private(self, handle: str) -> list[str]:
        await eventually(lambda: len(self.fake.bot_messages(TELEGRAM_CHAT)) > int(handle))
        return [parse_html(m.text) for m in self.fake.bot_messages(TELEGRAM_CHAT)[int(handle) :]]

    def public(self, handle: str) -> list[str]:
        return []  # a private chat: nobody else sees anything

    def throttle_replies(self, times: int) -> None:
        for method in ("sendMessage", "editMessageText", "sendMessageDraft"):
            self.fake.script_failure(method, retry_after=0.05, times=times)


_TELEGRAM_SHOWS = ("sendMessage", "editMessageText", "sendMessageDraft")


@contextlib.asynccontextmanager
async def telegram(settings: Settings) -> AsyncIterator[TelegramDriver]:
    fake = FakeTelegram()
    await fake.start()
    try:
        async with running_telegram(fake, settings) as bot:
            yield TelegramDriver(fake, bot.core, bot.adapter.surface_for)
    finally:
        await fake.stop()


# --- Discord ------------------------------------------------------------------------------------------


@dataclass
class DiscordDriver:
    fake: FakeDiscord
    core: Core
    surface_for: SurfaceFor
    platform: str = "discord"
    limit: int = 2000
    asked: int = 0
    interactions: dict[str, Any] = field(default_factory=dict)

    async def ask(self, text: str) -> str:
        """A mention in a channel: the answer goes to a thread opened from the message."""
        message = await self.fake.user_message(text, mention_bot=True)
        self.asked += 1
        return str(message["id"])

    async def answer(self, handle: str) -> list[str]:
        await until_delivered(self.core, self.asked)
        return [m["content"] for m in self.fake.bot_messages_in(int(handle)) if m["content"]]

    def shows_tool(self, handle: str, name: str) -> bool:
        return any(name in str(m.get("embeds")) for m in self.fake.bot_messages_in(int(handle)))

    async def private(self, handle: str) -> list[str]:
        """Private replies come from slash commands: the refused `/ask` of `ask_command`."""
        interaction = self.interactions[handle]
        await eventually(lambda: self.fake.followups(interaction))
        return [m["content"] for m in self.fake.followups(interaction) if m["flags"] & FLAG_EPHEMERAL]

    async def ask_command(self, text: str) -> str:
        interaction = await self.fake.slash("ask", {"prompt": text})
        self.interactions[str(interaction.id)] = interaction
        return str(interaction.id)

    def public(self, handle: str) -> list[str]:
        places = [self.fake.channel_id, *self.fake.threads_of.values()]
        return [m["content"] for place in places for m in self.fake.bot_messages_in(place)]

    def throttle_replies(self, times: int) -> None:
        self.fake.fail_next("POST", r"/channels/\d+/messages$", status=429, times=times)
        self.fake.fail_next("PATCH", r"/channels/\d+/messages/\d+$", status=429, times=times)


@contextlib.asynccontextmanager
async def discord(settings: Settings) -> AsyncIterator[DiscordDriver]:
    fake = FakeDiscord()
    await fake.start()
    try:
        async with running_discord(settings, fake) as bot:
            yield DiscordDriver(fake, bot.core, bot.adapter.surface_for)
    finally:
        await fake.stop()


# --- console ------------------------------------------------------------------------------------------


@dataclass
class ConsoleDriver:
    adapter: ConsoleAdapter
    core: Core
    surface_for: SurfaceFor
    stdout: io.StringIO
    stderr: io.StringIO
    platform: str = "console"
    limit: int = 1_000_000
    answers: dict[str, str] = field(default_factory=dict)

    async def ask(self, text: str) -> str:
        start = len(self.stdout.getvalue())
        await self.adapter._answer(self.adapter._message(text))
        handle = str(len(self.answers))
        self.answers[handle] = self.stdout.getvalue()[start:]
        return handle

    async def answer(self, handle: str) -> list[str]:
        await until_delivered(self.core, len(self.answers))
        return [self.answers[handle].rstrip("\n")]

    def shows_tool(self, handle: str, name: str) -> bool:
        return bool(re.search(rf"⚙ {re.escape(name)}\(", self.stderr.getvalue()))

    async def private(self, handle: str) -> list[str]:
        return [self.answers[handle].rstrip("\n")]

    def public(self, handle: str) -> list[str]:
        return []  # one reader

    def throttle_replies(self, times: int) -> None:
        pass  # a terminal has no rate limit


@contextlib.asynccontextmanager
async def console(settings: Settings) -> AsyncIterator[ConsoleDriver]:
    out, err = io.StringIO(), io.StringIO()
    async with open_core(settings) as core:
        adapter = ConsoleAdapter(
            core.router, stdin=io.StringIO(), stdout=out, stderr=err, interactive=False, user="alice"
        )
        yield ConsoleDriver(adapter, core, adapter.surface_for, out, err)


DRIVERS: dict[str, Callable[[Settings], contextlib.AbstractAsyncContextManager[Any]]] = {
    "slack": slack,
    "telegram": telegram,
    "discord": discord,
    "console": console,
}
