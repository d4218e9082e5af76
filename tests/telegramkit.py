"""Shared pieces of the Telegram tests: the fake Bot API fixture and a running adapter with the real core."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.settings import TelegramSettings
from bot.app import Core, open_core
from bot.config import Settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.tools.base import Tool
from tests.corekit import RecordingObserver
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.ports import free_port

FAST = {"draft_interval": 0.05, "edit_interval": 0.05, "group_edit_interval": 0.05, "poll_timeout": 1}


@dataclass
class Bot:
    fake: FakeTelegram
    adapter: TelegramAdapter
    core: Core
    http: HttpServer
    observer: RecordingObserver


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def telegram_settings(fake: FakeTelegram, **values: Any) -> TelegramSettings:
    merged: dict[str, Any] = {"bot_token": TOKEN, "api_url": fake.base_url, **FAST, **values}
    return TelegramSettings(_env_file=None, **merged)


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeTelegram,
    settings: Settings,
    *,
    webhook: bool = False,
    extra_tools: Sequence[Tool] = (),
    **telegram: Any,
) -> AsyncIterator[Bot]:
    """The real adapter and core against `fake`; `extra_tools` join the built-in tools."""
    http = HttpServer("127.0.0.1", free_port())
    values: dict[str, Any] = dict(telegram)
    if webhook:
        url = f"http://127.0.0.1:{http.port}/telegram/webhook"
        values |= {"webhook_url": url, "webhook_secret": "s3cret-token_1"}
    async with open_core(settings, extra_tools=extra_tools) as core:
        observer = RecordingObserver()
        context = AdapterContext(core.router, http, settings.offered_models, observer=observer)
        adapter = TelegramAdapter(telegram_settings(fake, **values), context, admins=settings.admin_users)
        await http.start()
        task = asyncio.create_task(adapter.run())
        try:
            await fake.wait_for(lambda: adapter.ready() or task.done())
            if task.done():
                task.result()
            yield Bot(fake, adapter, core, http, observer)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await http.stop()
