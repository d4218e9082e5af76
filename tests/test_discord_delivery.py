"""Discord replies under failure: 429 storms, 5xx, thread creation failing, and answers delivered after a
restart from the stored reply address. Real discord.py against the fake Discord, the real core behind.

The fake scripts failures per route (`fail_next`: a 429 with Discord's `retry_after` body and headers,
or a 5xx); the tests assert on what Discord holds afterwards and on the calls the adapter made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from bot.config import Settings
from core.storage import open_store
from tests.discordkit import Bot, fake, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.llm_server import FakeLLMServer, Reply

__all__ = ["fake"]  # the fixture (tests/discordkit.py)

MESSAGES = r"^/channels/\d+/messages$"
MESSAGE = r"^/channels/\d+/messages/\d+$"
THREADS = r"^/channels/\d+/messages/\d+/threads$"
ORIGINAL = r"/messages/@original$"
FOLLOWUPS = r"^/webhooks/\d+/[^/]+$"
FOLLOWUP = r"^/webhooks/\d+/[^/]+/messages/\d+$"


def content(message: dict[str, Any] | None) -> str:
    return "" if message is None else message["content"]


def shown(fake: FakeDiscord, interaction: Interaction) -> str:
    return "".join(content(m) for m in [fake.original(interaction), *fake.followups(interaction)])


def in_channel(fake: FakeDiscord, channel: int) -> list[str]:
    return [content(m) for m in fake.bot_messages_in(channel)]


def long_answer(paragraphs: int) -> str:
    return "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 7 for i in range(paragraphs))


# --- rate limits and server errors ----------------------------------------------------------------


async def test_ask_under_a_429_storm_ends_with_exactly_the_reply(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    text = long_answer(12)  # two messages: the response and one followup
    assert 2000 < len(text) < 4000
    llm_server.script("anthropic", Reply.text(text, chunks=12, delay_s=0.02))
    fake.fail_next("PATCH", ORIGINAL, times=8, retry_after=0.05)
    fake.fail_next("POST", FOLLOWUPS, times=4, retry_after=0.05)
    fake.fail_next("PATCH", FOLLOWUP, times=4, retry_after=0.05)
    async with running_bot(settings_for(), fake) as bot:
        interaction = await fake.slash("ask", {"prompt": "write a lot"})
        await fake.wait_for(lambda: shown(fake, interaction) == text)
        await asyncio.sleep(0.3)  # nothing else arrives afterwards
    parts = [fake.original(interaction), *fake.followups(interaction)]
    assert len(parts) == 2 and shown(fake, interaction) == text
    assert not any("⚠️" in content(p) for p in parts)
    assert fake.received_429 >= 8 and not bot.observer.errors
    assert len(bot.observer.rate_limits) == fake.received_429  # each one reported once, none retried blindly


async def test_mention_under_a_429_storm_ends_with_exactly_the_reply(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    text = "Rate limits never eat my words, not even " + "many " * 30 + "of them."
    llm_server.script("anthropic", Reply.text(text, chunks=10, delay_s=0.02))
    fake.fail_next("POST", MESSAGES, times=5, retry_after=0.05)
    fake.fail_next("PATCH", MESSAGE, times=8, retry_after=0.05)
    async with running_bot(settings_for(), fake) as bot:
        message = await fake.user_message("tell me", mention_bot=True)
        thread = int(message["id"])
        await fake.wait_for(lambda: in_channel(fake, thread) == [text])
        await asyncio.sleep(0.3)
    assert in_channel(fake, thread) == [text] and in_channel(fake, fake.channel_id) == []
    assert not bot.observer.errors


async def test_typing_under_a_429_is_not_retried_in_a_loop(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    llm_server.script("anthropic", Reply.text("thought about it", chunks=2, delay_s=0.4))
    fake.fail_next("POST", r"/typing$", times=50, retry_after=0.05)
    async with running_bot(settings_for(), fake):
        await fake.user_message("think first", channel=dm)
        await fake.wait_for(lambda: in_channel(fake, dm) == ["thought about it"])
    typing = fake.calls_to("POST", r"/typing$")
    assert [c.status for c in typing] == [429]  # one attempt; discord.py alone would make five


async def test_final_message_post_failing_with_500_is_retried_and_delivered(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    llm_server.script("anthropic", Reply.text("worth the wait"))
    fake.fail_next("POST", rf"^/channels/{dm}/messages$", status=500, times=2)
    async with running_bot(settings_for(), fake) as bot:
        await fake.user_message("hello", channel=dm)
        await fake.wait_for(lambda: in_channel(fake, dm) == ["worth the wait"])
    posts = fake.calls_to("POST", rf"^/channels/{dm}/messages$")
    assert [c.status for c in posts] == [500, 500, 200] and not bot.observer.errors


async def test_thread_creation_failing_twice_then_working_answers_in_the_thread(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    fake.fail_next("POST", THREADS, status=500, times=2)
    async with running_bot(settings_for(), fake) as bot:
        message = await fake.user_message("open up", mention_bot=True)
        thread = int(message["id"])
        await fake.wait_for(lambda: in_channel(fake, thread) == ["echo: open up"])
    assert [c.status for c in fake.calls_to("POST", THREADS)] == [500, 500, 200]
    assert in_channel(fake, fake.channel_id) == [] and not bot.observer.errors


async def test_thread_discord_refuses_answers_in_place(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    fake.fail_next("POST", THREADS, status=403, times=5)
    async with running_bot(settings_for(), fake):
        message = await fake.user_message("no threads here", mention_bot=True)
        await fake.wait_for(lambda: in_channel(fake, fake.channel_id) == ["echo: no threads here"])
    assert len(fake.calls_to("POST", THREADS)) == 1 and fake.thread_of(int(message["id"])) is None


async def test_refused_mention_opens_no_thread(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(allowed_users="discord:someone-else"), fake):
        message = await fake.user_message("let me in", mention_bot=True)
        await fake.wait_for(lambda: len(fake.bot_messages_in(fake.channel_id)) == 1)
    [reply] = fake.bot_messages_in(fake.channel_id)
    assert "allow list" in reply["content"]
    assert reply["message_reference"]["message_id"] == message["id"]  # answers the asker's message
    assert fake.calls_to("POST", THREADS) == [] and fake.threads_of == {}
    assert fake.calls_to("POST", r"/typing$") == [] and llm_server.requests == []


# --- after a restart: the surface rebuilt from the stored reply address -----------------------------


async def recovered(bot: Bot) -> int:
    """What bot/serve.py does once connected (it waits for `ready`, 2 s later in discord.py; the guild
    and its threads are known as soon as it is in the cache)."""
    await bot.fake.wait_for(lambda: bot.adapter.client.get_guild(bot.fake.guild_id) is not None)
    return await bot.core.router.recover("discord", bot.adapter.surface_for)


async def test_undelivered_thread_answer_is_delivered_after_a_restart(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with running_bot(settings, fake):
        message = await fake.user_message("remember this", mention_bot=True)
        thread = int(message["id"])
        fake.fail_next("POST", rf"^/channels/{thread}/messages$", status=403, times=100)  # no access
        await fake.wait_for(lambda: fake.thread_of(thread) is not None)
        await fake.wait_for(lambda: len(fake.calls_to("POST", rf"^/channels/{thread}/messages$")) >= 1)
        await asyncio.sleep(0.2)
    assert in_channel(fake, thread) == []
    fake.clear_failures()
    threads_before = len(fake.calls_to("POST", THREADS))
    async with running_bot(settings, fake) as bot:
        assert await recovered(bot) == 1
        await fake.wait_for(lambda: "echo: remember this" in in_channel(fake, thread))
        await asyncio.sleep(0.2)
    assert in_channel(fake, thread) == ["echo: remember this"]
    assert len(fake.calls_to("POST", THREADS)) == threads_before  # the thread existed: not opened again
    assert in_channel(fake, fake.channel_id) == [] and len(llm_server.requests) == 1


async def test_answer_whose_thread_never_opened_opens_it_after_a_restart(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    fake.fail_next("POST", THREADS, status=503, times=1000)  # Discord is struggling...
    async with running_bot(settings, fake):
        message = await fake.user_message("plan the offsite", mention_bot=True)
        await fake.wait_for(lambda: len(fake.calls_to("POST", THREADS)) >= 3)  # the answer is stored
    thread = int(message["id"])
    assert fake.thread_of(thread) is None
    fake.clear_failures()  # ...and has recovered when the bot restarts
    async with running_bot(settings, fake) as bot:
        assert await recovered(bot) == 1
        await fake.wait_for(lambda: "echo: plan the offsite" in in_channel(fake, thread))
        await asyncio.sleep(0.2)
    assert in_channel(fake, thread) == ["echo: plan the offsite"]
    assert fake.channels[thread]["name"] == "plan the offsite"
    assert in_channel(fake, fake.channel_id) == [] and len(llm_server.requests) == 1


async def test_undelivered_ask_answer_replaces_the_thinking_response_after_a_restart(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    fake.fail_next("PATCH", ORIGINAL, status=403, times=100)
    async with running_bot(settings, fake):
        interaction = await fake.slash("ask", {"prompt": "still there?"})
        await fake.wait_for(lambda: len(fake.calls_for(interaction.id, "PATCH")) >= 1)
        await asyncio.sleep(0.2)
    assert content(fake.original(interaction)) == ""
    address = await _stored_address(settings, 1)
    assert json.loads(address) == {"channel": str(fake.channel_id), "original": str(interaction.original_id)}
    fake.clear_failures()
    async with running_bot(settings, fake) as bot:
        assert await recovered(bot) == 1
        await fake.wait_for(lambda: content(fake.original(interaction)) == "echo: still there?")
    edits = fake.calls_to("PATCH", rf"^/channels/{fake.channel_id}/messages/{interaction.original_id}$")
    assert len(edits) == 1  # through the channel route: the token is not stored
    assert fake.bot_messages_in(fake.channel_id) == [fake.original(interaction)]


async def _stored_address(settings: Settings, turn_id: int) -> str:
    """The reply address the adapter stored with a turn."""
    store = open_store(settings.database_url)
    await store.open()
    try:
        turn = await store.get_turn(turn_id)
    finally:
        await store.close()
    assert turn is not None
    return turn.reply_address
