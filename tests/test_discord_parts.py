"""The Discord adapter's small pure parts: formatting, embeds, invite URL, names, dedupe memory."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import discord
import pytest

from adapters.discord.address import ReplyAddress, ThreadPlan
from adapters.discord.commands import model_choices
from adapters.discord.flows import starter_text, thread_name
from adapters.discord.format import to_discord, tool_embed
from adapters.discord.inbound import RecentIds, strip_mention
from adapters.discord.invite import PERMISSIONS, InviteError, fetch_application_id, invite_url
from core.inbound import ConversationRef
from tests.discordkit import discord_settings, fake
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_wire import check_embeds

__all__ = ["fake"]  # the fixture (tests/discordkit.py)


def test_deep_headings_become_bold_but_code_is_untouched() -> None:
    text = "# Title\n#### Detail ####\nbody\n```\n#### not a heading\n```"
    assert to_discord(text) == "# Title\n**Detail**\nbody\n```\n#### not a heading\n```"
    assert to_discord("plain **markdown** stays") == "plain **markdown** stays"


def test_tool_embed_stays_inside_discord_limits_for_huge_inputs() -> None:
    arguments = {f"arg{i}": "x" * 5000 for i in range(30)}
    embed = tool_embed("n" * 500, arguments, "error", duration_s=1.234, output="```" + "y" * 10_000)
    payload = embed.to_dict()
    check_embeds([dict(payload)])  # the fake's validation is Discord's: raises when over a limit
    assert payload["color"] == 0xE74C3C and payload["footer"]["text"] == "failed in 1.23 s"
    assert payload["fields"][0]["value"].count("```") == 2  # the output cannot close its own block


def test_invite_url_asks_for_exactly_the_needed_permissions() -> None:
    url = urlparse(invite_url(1234))
    query = parse_qs(url.query)
    assert url.netloc == "discord.com" and query["client_id"] == ["1234"]
    assert query["scope"] == ["bot applications.commands"]
    needed = discord.Permissions(
        view_channel=True,
        send_messages=True,
        embed_links=True,
        attach_files=True,
        read_message_history=True,
        create_public_threads=True,
        send_messages_in_threads=True,
    )
    assert query["permissions"] == [str(needed.value)] and PERMISSIONS == needed.value == 309237763072


async def test_fetch_application_id_uses_the_api_url_and_hides_the_token(fake: FakeDiscord) -> None:
    assert await fetch_application_id(discord_settings(fake)) == fake.application_id
    with pytest.raises(InviteError) as raised:
        await fetch_application_id(discord_settings(fake, bot_token="not-the-token"))
    assert "401" in str(raised.value) and "not-the-token" not in str(raised.value)


def test_thread_names_and_starters_fit_discord_limits() -> None:
    assert thread_name("\n  Plan the offsite \nmore") == "Plan the offsite"
    assert len(thread_name("x" * 500)) == 100
    assert thread_name("   ") == "Conversation"

    class Person:
        display_name = "Alice"

    assert len(starter_text(Person(), "y" * 5000)) == 2000  # type: ignore[arg-type]


def test_model_choices_filter_and_cap() -> None:
    offered = [f"openai:model-{i}" for i in range(40)]
    assert len(model_choices(offered, "")) == 25
    assert [c.value for c in model_choices(offered, "MODEL-3")][:2] == ["openai:model-3", "openai:model-30"]
    assert [c.value for c in model_choices(offered, "def")] == ["default"]


def test_mentions_are_stripped_and_recent_ids_are_bounded() -> None:
    assert strip_mention("<@42> hello <@!42>", 42) == "hello"
    recent = RecentIds(size=2)
    assert recent.first_time(1) and not recent.first_time(1)
    assert recent.first_time(2) and recent.first_time(3)
    assert recent.first_time(1)  # forgotten once out of the window: the core's store still dedupes


def test_reply_address_round_trips_and_old_turns_fall_back_to_their_conversation() -> None:
    plan = ThreadPlan(1, 2, "Plan the offsite ü", "**Alice** started a conversation:\n>>> Plan")
    address = ReplyAddress(1, reply_to=3, original=4, thread=plan)
    ref = ConversationRef("discord", "9", "1", "2")
    assert ReplyAddress.loads(address.dumps(), ref) == address
    assert ReplyAddress.loads(ReplyAddress(7).dumps(), ref) == ReplyAddress(7)
    assert ReplyAddress.loads("", ref) == ReplyAddress(2)  # stored before reply addresses: its thread
    assert ReplyAddress.loads("{}", ConversationRef("discord", "", "5")) == ReplyAddress(5)
