"""The contract every surface keeps, run over each platform on its fake server (and the console).

One suite, the same cases everywhere: the final text is exactly the model's reply, long replies are
split within the platform's limit, tool calls are shown, refusals stay private, a cut model stream is
answered in full, 429s on the reply calls change nothing the user ends up with, and a stored answer is
delivered to the same place through the adapter's reply address after a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiosqlite
import pytest

from bot.config import Settings
from core.storage import sqlite_path_from_url
from tests.contract.drivers import DRIVERS, Driver, until_delivered
from tests.fakes.llm_server import FakeLLMServer, Reply

PLATFORMS = sorted(DRIVERS)


@pytest.fixture(params=PLATFORMS)
async def platform(
    request: pytest.FixtureRequest, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> AsyncIterator[Callable[..., Any]]:
    """A factory: `async with platform(**core_settings) as driver`."""

    def start(**overrides: Any) -> Any:
        return DRIVERS[request.param](settings_for(**overrides))

    yield start


def flat(text: str) -> str:
    return " ".join(text.split())


def long_reply(limit: int) -> str:
    size = min(int(limit * 2.5), 30_000)
    paragraphs, n = [], 0
    while sum(len(p) + 2 for p in paragraphs) < size:
        n += 1
        paragraphs.append(f"Paragraph {n} says something plain and useful about step {n} of the plan.")
    return "\n\n".join(paragraphs)


async def test_the_final_text_is_exactly_the_models_reply(
    platform: Callable[..., Any], llm_server: FakeLLMServer
) -> None:
    reply = "Deploys go out on Tuesdays after the standup, and rollbacks take ten minutes."
    llm_server.script("anthropic", Reply.text(reply, chunks=6))
    driver: Driver
    async with platform() as driver:
        handle = await driver.ask("when do we deploy?")
        assert await driver.answer(handle) == [reply]


async def test_a_long_reply_is_split_within_the_platforms_limit(
    platform: Callable[..., Any], llm_server: FakeLLMServer
) -> None:
    driver: Driver
    async with platform() as driver:
        reply = long_reply(driver.limit)
        llm_server.script("anthropic", Reply.text(reply, chunks=40))
        parts = await driver.answer(await driver.ask("write the whole plan"))
        assert all(len(part) <= driver.limit for part in parts)
        assert flat(" ".join(parts)) == flat(reply)  # parts split between paragraphs
        if driver.limit < len(reply):
            assert len(parts) > 1


async def test_tool_calls_are_shown_and_the_answer_follows(
    platform: Callable[..., Any], llm_server: FakeLLMServer
) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "6*7"})),
        Reply.text("It is 42.", chunks=2),
    )
    driver: Driver
    async with platform() as driver:
        handle = await driver.ask("what is 6*7?")
        parts = await driver.answer(handle)
        assert driver.shows_tool(handle, "calculator")
        assert flat(" ".join(parts)) == "Let me compute. It is 42."


async def test_refusals_stay_private(platform: Callable[..., Any], llm_server: FakeLLMServer) -> None:
    driver: Any
    async with platform(allowed_users="nobody:someone-else") as driver:
        ask = driver.ask_command if driver.platform == "discord" else driver.ask
        handle = await ask("let me in")
        private = await driver.private(handle)
        assert any("allow list" in text for text in private)
        assert driver.public(handle) == []
    assert llm_server.requests == []


async def test_a_cut_model_stream_is_answered_in_full(
    platform: Callable[..., Any], llm_server: FakeLLMServer
) -> None:
    reply = "one two three four five six seven eight nine ten"
    llm_server.script("anthropic", Reply.cut(after_chunks=3, text=reply), Reply.text(reply, chunks=5))
    driver: Driver
    async with platform() as driver:
        parts = await driver.answer(await driver.ask("count to ten"))
        assert parts == [reply]


async def test_429s_on_the_reply_calls_leave_the_final_text_exact(
    platform: Callable[..., Any], llm_server: FakeLLMServer
) -> None:
    reply = "The build is green and the release notes are in the wiki."
    llm_server.script("anthropic", Reply.text(reply, chunks=8))
    driver: Driver
    async with platform() as driver:
        driver.throttle_replies(3)
        parts = await driver.answer(await driver.ask("status?"))
        assert parts == [reply]  # no failure line, nothing missing


async def test_a_stored_answer_reaches_the_same_place_after_a_restart(
    platform: Callable[..., Any], llm_server: FakeLLMServer
) -> None:
    """The answer landed but the bot died before it recorded that: the next start delivers it again,
    through the adapter's stored reply address, to the same conversation, and removes the message the
    dead process had shown it in: the user is left with one copy."""
    reply = "Here is the answer you asked for."
    llm_server.script("anthropic", Reply.text(reply, chunks=3))
    driver: Driver
    async with platform() as driver:
        handle = await driver.ask("please answer")
        assert await driver.answer(handle) == [reply]
        async with aiosqlite.connect(sqlite_path_from_url(driver.core.settings.database_url)) as db:
            await db.execute("UPDATE turns SET delivered_at = NULL, owner = 0")  # a crashed process's
            await db.commit()
        assert await driver.core.router.recover(driver.platform, driver.surface_for) == 1
        await until_delivered(driver.core, 1)
        await driver.core.router.wait_idle()
        if driver.platform != "console":  # the console's handle is the answer it printed
            assert await driver.answer(handle) == [reply]
