"""Harness for the Discord adapter tests and benchmark: a fake Discord, the real core, the adapter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
from bot.app import Core, open_core
from bot.config import Settings
from core.adapter import AdapterContext
from core.tools.base import Tool
from tests.corekit import RecordingObserver
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscord


class SimClock:
    """A clock the test moves by hand (the interaction token's 15 minutes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoRoutes:
    def add_route(self, method: str, path: str, handler: Any) -> None:
        raise AssertionError("the Discord adapter mounts no HTTP routes")


@dataclass
class Bot:
    fake: FakeDiscord
    core: Core
    adapter: DiscordAdapter
    clock: SimClock
    observer: RecordingObserver


def discord_settings(fake: FakeDiscord, **overrides: Any) -> DiscordSettings:
    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "api_url": fake.api_url,
        "gateway_url": fake.gateway_url,
        "edit_interval": 0.2,
    }
    values.update(overrides)
    return DiscordSettings(_env_file=None, **values)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """The fake Discord (gateway + REST) on a free port, for one test."""
    server = FakeDiscord()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_bot(
    settings: Settings,
    fake: FakeDiscord,
    *,
    providers: dict[str, Any] | None = None,
    extra_tools: Sequence[Tool] = (),
    **discord_overrides: Any,
) -> AsyncIterator[Bot]:
    """Core + adapter connected to the fake, commands synced; stops everything on exit. `extra_tools`
    join the built-ins (an acting tool asks for approval by default)."""
    clock = SimClock()
    fake.identified.clear()  # a previous bot may have connected to this fake before
    async with open_core(settings, extra_tools, providers=providers) as core:
        observer = RecordingObserver()
        context = AdapterContext(core.router, NoRoutes(), settings.offered_models, observer=observer)
        adapter = DiscordAdapter(discord_settings(fake, **discord_overrides), context, clock=clock)
        task = asyncio.create_task(adapter.run())
        try:
            # Not adapter.ready(): discord.py waits 2 s for late guilds before it calls itself ready.
            # Events sent after the fake's READY + GUILD_CREATE are processed after them anyway.
            await fake.wait_for(lambda: fake.identified.is_set() or task.done())
            if task.done():
                task.result()  # raise the start-up error
            if adapter._settings.sync_commands:
                await fake.wait_for(lambda: bool(fake.commands))
            yield Bot(fake, core, adapter, clock, observer)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
