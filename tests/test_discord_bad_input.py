"""Bad input on Discord never hurts the bot: real discord.py against the fake Discord, the real core.

Gateway payloads discord.py cannot parse are skipped (logged once) and the next message is answered; a
message that carries a guild id is a guild message even when the gateway never described that guild;
slash commands Discord sends with unexpected options (an outdated command list, an integer where a
string was declared) get a reply that says what is wrong, never a "thinking…" left hanging.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from discord.voice_client import VoiceClient

from bot.config import Settings
from tests.discordkit import fake, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.discord_wire import snowflake
from tests.fakes.llm_server import FakeLLMServer

__all__ = ["fake"]  # the fixture (tests/discordkit.py)


def content(message: dict[str, Any] | None) -> str:
    return "" if message is None else str(message["content"])


def shown(fake: FakeDiscord, interaction: Interaction) -> str:
    """Everything the user was shown for an interaction: its response and followups."""
    return " ".join(content(m) for m in [fake.original(interaction), *fake.followups(interaction)])


async def settled(fake: FakeDiscord, interaction: Interaction) -> str:
    """Wait until the interaction got a visible response (not just "thinking…")."""
    await fake.wait_for(lambda: shown(fake, interaction).strip() != "")
    return shown(fake, interaction)


# --- payloads discord.py cannot parse --------------------------------------------------------------


async def test_unparsable_gateway_payloads_are_skipped_and_logged_once(
    fake: FakeDiscord,
    llm_server: FakeLLMServer,
    settings_for: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in a fresh process without PyNaCl and davey: discord.py would warn about voice at start.
    monkeypatch.setattr(VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(VoiceClient, "warn_dave", True)
    dm = fake.add_dm(fake.alice)
    caplog.set_level(logging.WARNING)
    async with running_bot(settings_for(), fake) as bot:
        await fake.dispatch("MESSAGE_CREATE", {"id": str(snowflake())})  # only an id
        await fake.dispatch("MESSAGE_UPDATE", {"id": str(snowflake()), "channel_id": str(dm)})  # partial
        await fake.user_message("still there?", channel=dm)
        await fake.wait_for(lambda: [content(m) for m in fake.bot_messages_in(dm)] == ["echo: still there?"])
        assert not bot.adapter.client.is_closed()  # still connected
    skipped = [r for r in caplog.records if "could not parse" in r.getMessage()]
    assert [r.getMessage().split(" ")[0] for r in skipped] == ["Discord", "Discord"]
    assert "MESSAGE_CREATE" in skipped[0].getMessage() and "MESSAGE_UPDATE" in skipped[1].getMessage()
    assert all(r.exc_info is None for r in skipped)  # one line each, not a traceback
    assert bot.observer.errors == [("discord", "unparsable_event")] * 2
    assert len(llm_server.requests) == 1
    assert not [r for r in caplog.records if "voice" in r.getMessage()]  # we never use voice


# --- DM or guild: decided from the payload ---------------------------------------------------------


async def test_a_message_from_an_unannounced_guild_is_no_dm_and_the_allow_list_applies(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    hidden_guild = fake.add_guild("never announced", announced=False)
    hidden = fake.add_channel(hidden_guild, "elsewhere")
    settings = settings_for(allowed_channels=f"discord:{fake.channel_id}")
    async with running_bot(settings, fake):
        await fake.user_message("plain words, no mention", channel=hidden)  # a DM would be answered
        await fake.user_message("answer me", channel=hidden, mention_bot=True)
        await fake.wait_for(lambda: len(fake.bot_messages_in(hidden)) == 1)
        await fake.user_message("allowed here", channel=fake.channel_id, mention_bot=True)
        await fake.wait_for(lambda: any(fake.bot_messages_in(t) for t in fake.threads_of.values()))
    [refusal] = fake.bot_messages_in(hidden)
    assert "not enabled in this channel" in content(refusal)
    assert f"discord:{hidden}" in content(refusal)
    assert len(llm_server.requests) == 1  # only the allowed channel's question reached the model


async def test_a_message_from_an_unannounced_guild_is_answered_in_place_when_allowed(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    hidden_guild = fake.add_guild("never announced", announced=False)
    hidden = fake.add_channel(hidden_guild, "elsewhere")
    settings = settings_for(allowed_channels=f"discord:workspace:{hidden_guild}")
    async with running_bot(settings, fake):
        await fake.user_message("hello from afar", channel=hidden, mention_bot=True)
        await fake.wait_for(lambda: len(fake.bot_messages_in(hidden)) == 1)
    # In the channel itself: discord.py knows nothing of it, so no thread is opened there.
    assert content(fake.bot_messages_in(hidden)[0]) == "echo: hello from afar"
    assert len(llm_server.requests) == 1


# --- slash commands with unexpected options ----------------------------------------------------------


async def test_ask_with_an_integer_option_is_answered(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": 42})
        await fake.wait_for(lambda: content(fake.original(interaction)) == "echo: 42")


async def test_an_unknown_command_says_the_command_list_is_updating(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("summarize", {"text": "hi"}, registered=False)
        text = await settled(fake, interaction)
    assert "/summarize" in text and "command list" in text
    assert "Sorry, that command failed." not in text
    assert not llm_server.requests


async def test_a_missing_option_says_what_is_missing(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {})
        text = await settled(fake, interaction)
        other = await fake.slash("ask", {"question": "renamed option"})
        other_text = await settled(fake, other)
    for said in (text, other_text):
        assert "/ask" in said and "prompt" in said and "Sorry, that command failed." not in said
    assert not llm_server.requests


async def test_many_bad_interactions_leave_the_adapter_serving(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake) as bot:
        bad = [
            await fake.slash("ask", {"prompt": True}),
            await fake.slash("ask", {"prompt": 1.5}),
            await fake.slash("model", {"name": 7}),
            await fake.slash("nope", registered=False),
        ]
        await asyncio.gather(*(settled(fake, i) for i in bad))
        good = await fake.slash("ask", {"prompt": "and now?"})
        await fake.wait_for(lambda: content(fake.original(good)) == "echo: and now?")
        assert not bot.adapter.client.is_closed()  # still connected
    assert content(fake.original(bad[0])) == "echo: True"
