"""Buttons on Discord end to end: real discord.py against the fake Discord, the real core behind it.

Answers carry 👍 / 👎 / regenerate, approval cards Approve / Deny / Always allow here, as one action row
of message components; presses arrive as MESSAGE_COMPONENT interactions (`fake.press`), are
acknowledged with type 6 first, and whatever the presser is told comes as an ephemeral followup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.discord.components import ButtonRow
from bot.config import Settings
from core.actions import Buttons, answer_buttons, approval_buttons
from core.storage.base import RatingTotals
from tests.approvalkit import Notes
from tests.discordkit import Bot, fake, running_bot
from tests.fakes import discord_components
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.discord_wire import FLAG_EPHEMERAL, ApiError
from tests.fakes.llm_server import FakeLLMServer, Reply

__all__ = ["fake"]  # the fixture (tests/discordkit.py)

SettingsFor = Callable[..., Settings]
FEEDBACK = ["👍", "👎", "🔄 Regenerate"]


def labels(fake: FakeDiscord, message_id: int | str) -> list[str]:
    return [label for label, _, _ in fake.buttons_on(message_id)]


def told(fake: FakeDiscord, press: Interaction) -> list[str]:
    """What the presser was told: the press's followups, each ephemeral."""
    replies = fake.followups(press)
    assert all(m["flags"] & FLAG_EPHEMERAL for m in replies)
    return [m["content"] for m in replies]


async def told_once(fake: FakeDiscord, press: Interaction) -> str:
    await fake.wait_for(lambda: len(fake.followups(press)) == 1)
    first = fake.calls_for(press.id)[0]
    assert first.path.endswith("/callback") and first.body["type"] == 6  # acknowledged first
    [text] = told(fake, press)
    return text


def card_in(fake: FakeDiscord, channel: int) -> dict[str, Any] | None:
    for message in fake.bot_messages_in(channel):
        if any(custom_id.startswith("ap:") for _, custom_id, _ in fake.buttons_on(message["id"])):
            return message
    return None


async def ratings(bot: Bot) -> list[RatingTotals]:
    now = datetime.now(UTC)
    return await bot.core.store.rating_totals(now - timedelta(hours=1), now + timedelta(hours=1), "channel")


# --- rendering --------------------------------------------------------------------------------------


def test_rendered_rows_pass_discords_component_rules() -> None:
    for buttons in (approval_buttons(2**62), answer_buttons(2**62)):
        rows = ButtonRow(buttons).to_components()
        discord_components.check({"components": rows})  # what the real API accepts
        [row] = rows
        assert row["type"] == 1 and [b["type"] for b in row["components"]] == [2, 2, 2]
    [row] = ButtonRow(approval_buttons(7)).to_components()
    assert [(b["label"], b["custom_id"], b["style"]) for b in row["components"]] == [
        ("Approve", "ap:7:y", 1),
        ("Deny", "ap:7:n", 4),
        ("Always allow here", "ap:7:a", 2),
    ]
    too_many = Buttons(tuple(answer_buttons(1).row * 3))
    assert len(ButtonRow(too_many).to_components()[0]["components"]) == 5  # one row holds five


def button(custom_id: str, label: str = "x") -> dict[str, Any]:
    return {"type": 2, "style": 2, "label": label, "custom_id": custom_id}


def row(*buttons: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(buttons)}


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([row(button(str(i))) for i in range(6)], "components"),  # six rows
        ([row(*(button(str(i)) for i in range(6)))], "components"),  # six buttons in a row
        ([row(button("a" * 101))], "custom_id"),
        ([row(button("a", "x" * 81))], "label"),
        ([row(button("a"), button("a"))], "COMPONENT_CUSTOM_ID_DUPLICATED"),
        ([button("a")], "type"),  # a button outside an action row
    ],
)
def test_the_fake_refuses_components_discord_refuses(rows: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(ApiError) as refused:
        discord_components.check({"components": rows})
    assert refused.value.status == 400 and refused.value.body["code"] == 50035
    assert field in str(refused.value.body["errors"])


async def test_answer_parts_have_no_buttons_but_the_last_one(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 7 for i in range(14))
    llm_server.script("anthropic", Reply.text(text, chunks=8))
    async with running_bot(settings_for(), fake):
        message = await fake.user_message("write a lot", mention_bot=True)
        thread = int(message["id"])
        await fake.wait_for(lambda: "".join(m["content"] for m in fake.bot_messages_in(thread)) == text)
        parts = fake.bot_messages_in(thread)
        await fake.wait_for(lambda: labels(fake, parts[-1]["id"]) == FEEDBACK)
    assert len(parts) == 2 and labels(fake, parts[0]["id"]) == []
    [(_, custom_id, style)] = fake.buttons_on(parts[-1]["id"])[:1]
    assert custom_id.startswith("fb:") and custom_id.endswith(":+") and style == 2


async def test_answer_buttons_can_be_turned_off(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(settings_for(bot_answer_buttons=False), fake):
        interaction = await fake.slash("ask", {"prompt": "plain"})
        await fake.wait_for(lambda: (fake.original(interaction) or {}).get("content") == "echo: plain")
    assert labels(fake, interaction.original_id or 0) == []


# --- ratings and regenerate ---------------------------------------------------------------------------


async def test_thumbs_up_in_a_dm_is_stored_and_acknowledged_privately(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    dm = fake.add_dm(fake.alice)
    async with running_bot(settings_for(), fake) as bot:
        await fake.user_message("hello", channel=dm)
        await fake.wait_for(lambda: any(labels(fake, m["id"]) for m in fake.bot_messages_in(dm)))
        [answer] = fake.bot_messages_in(dm)
        press = await fake.press(answer["id"], "👍")
        assert "👍" in await told_once(fake, press)
        assert [(r.key, r.up, r.down) for r in await ratings(bot)] == [(f"discord:{dm}", 1, 0)]
        down = await fake.press(answer["id"], "👎")
        assert "noted" in await told_once(fake, down)
        assert [(r.up, r.down) for r in await ratings(bot)] == [(0, 1)]  # their last rating counts
    assert fake.messages[int(answer["id"])]["content"] == "echo: hello"  # the answer is left alone


async def test_regenerate_posts_a_new_answer_below_the_old_one(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("first answer"), Reply.text("second answer"))
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "tell me"})
        await fake.wait_for(lambda: labels(fake, interaction.original_id or 0) == FEEDBACK)
        press = await fake.press(interaction.original_id or 0, "🔄 Regenerate")
        assert "another answer" in await told_once(fake, press)

        def answers() -> list[str]:
            return [m["content"] for m in fake.bot_messages_in(fake.channel_id)]

        await fake.wait_for(lambda: answers() == ["first answer", "second answer"])
        second = fake.bot_messages_in(fake.channel_id)[1]
        await fake.wait_for(lambda: labels(fake, second["id"]) == FEEDBACK)
    assert fake.buttons_on(second["id"]) != fake.buttons_on(interaction.original_id or 0)  # its own turn
    assert len(llm_server.requests) == 2


# --- approval cards -----------------------------------------------------------------------------------


async def test_card_refuses_others_runs_the_tool_once_for_the_asker_and_the_answer_continues(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("I will post it.", ("post_note", {"text": "hello team"})),
        Reply.text("Done: I posted the note."),
    )
    bob = fake.add_user("bob")
    async with running_bot(settings_for(), fake, extra_tools=[notes.tool()]):
        asked = await fake.user_message("post a note please", mention_bot=True)
        thread = int(asked["id"])
        await fake.wait_for(lambda: card_in(fake, thread) is not None)
        card = card_in(fake, thread)
        assert card is not None and "post_note" in card["content"] and "hello team" in card["content"]
        assert [(label, style) for label, _, style in fake.buttons_on(card["id"])] == [
            ("Approve", 1),
            ("Deny", 4),
            ("Always allow here", 2),
        ]
        refused = await fake.press(card["id"], "Approve", user=bob)
        assert "Only the person who asked" in await told_once(fake, refused)
        assert labels(fake, card["id"]) == ["Approve", "Deny", "Always allow here"]  # still waiting
        assert notes.posted == []

        first, second = await asyncio.gather(
            fake.press(card["id"], "Approve"), fake.press(card["id"], "Approve")
        )
        replies = sorted([await told_once(fake, first), await told_once(fake, second)])
        assert "Already decided" in replies[0] and "runs now" in replies[1]  # two presses, one decision

        def answered() -> bool:
            found = [m for m in fake.bot_messages_in(thread) if "Done: I posted the note." in m["content"]]
            return bool(found) and labels(fake, found[-1]["id"]) == FEEDBACK

        await fake.wait_for(answered)
        decided = fake.messages[int(card["id"])]
        assert "approved by alice" in decided["content"] and decided["components"] == []
    assert notes.posted == ["hello team"]


async def test_malformed_presses_are_skipped_with_one_warning_each(
    fake: FakeDiscord,
    llm_server: FakeLLMServer,
    settings_for: SettingsFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "first"})
        await fake.wait_for(lambda: labels(fake, interaction.original_id or 0) == FEEDBACK)
        answer = interaction.original_id or 0
        with caplog.at_level(logging.WARNING):
            await fake.press(
                answer, "👍", tamper=lambda p: p["data"].pop("custom_id")
            )  # discord.py refuses it
            no_user = await fake.press(answer, "👍", tamper=lambda p: p.pop("member"))
            await fake.wait_for(lambda: len(fake.calls_for(no_user.id)) == 1)
            foreign = await fake.press(answer, "👍", tamper=lambda p: p["data"].update(custom_id="zz:1"))
            assert "not one I know" in await told_once(fake, foreign)
        later = await fake.slash("ask", {"prompt": "still here?"})
        await fake.wait_for(lambda: (fake.original(later) or {}).get("content") == "echo: still here?")
    skipped = [r for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    assert len(skipped) == 2, [r.getMessage() for r in skipped]
    assert fake.followups(no_user) == []


# --- after a restart --------------------------------------------------------------------------------


async def test_buttons_of_an_earlier_run_still_work_after_a_restart(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for()
    async with running_bot(settings, fake):
        asked = await fake.user_message("remember me", mention_bot=True)
        thread = int(asked["id"])
        await fake.wait_for(lambda: any(labels(fake, m["id"]) for m in fake.bot_messages_in(thread)))
    [answer] = fake.bot_messages_in(thread)
    async with running_bot(settings, fake) as bot:  # a new client and process state, the same store
        await fake.wait_for(lambda: bot.adapter.client.get_guild(fake.guild_id) is not None)
        press = await fake.press(answer["id"], "👍")
        assert "👍" in await told_once(fake, press)
        assert [(r.up, r.down) for r in await ratings(bot)] == [(1, 0)]
        again = await fake.press(answer["id"], "🔄 Regenerate")
        assert "another answer" in await told_once(fake, again)
        await fake.wait_for(lambda: len(fake.bot_messages_in(thread)) == 2)
        await fake.wait_for(lambda: labels(fake, fake.bot_messages_in(thread)[1]["id"]) == FEEDBACK)
    assert [m["content"] for m in fake.bot_messages_in(thread)] == ["echo: remember me"] * 2
