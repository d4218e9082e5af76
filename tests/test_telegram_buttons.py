"""Telegram buttons end to end: inline keyboards under answers and approval cards, presses as callback
queries (long polling and webhook), through the real python-telegram-bot, the real core and the fake
Bot API (which validates every keyboard as Telegram does and delivers presses in Telegram's shape)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adapters.telegram.clicks import GONE
from bot.config import Settings
from core.actions import parse_action
from core.clicks import NOT_MINE
from tests.approvalkit import Notes
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.telegram_keyboards import CallbackAnswer
from tests.fakes.telegram_server import BOT_USERNAME, BotMessage, FakeTelegram
from tests.telegramkit import Bot, fake, running_bot

__all__ = ["fake"]

SettingsFor = Callable[..., Settings]
ALICE = 42
MALLORY = 666
GROUP = -1001234567890
FEEDBACK_LABELS = ["👍", "👎", "🔄 Regenerate"]


def script_tool_then_answer(server: FakeLLMServer) -> None:
    server.script(
        "anthropic",
        Reply.text_then_tools("I will post it.", ("post_note", {"text": "hello team"})),
        Reply.text("Done: I posted the note."),
    )


async def answer_of(fake: FakeTelegram, query_id: str) -> CallbackAnswer:
    answer: CallbackAnswer = await fake.wait_for(lambda: fake.callbacks.answers.get(query_id))
    return answer


async def card_in(fake: FakeTelegram, chat_id: int) -> BotMessage:
    """The bot's message in `chat_id` that shows approval buttons."""

    def card() -> BotMessage | None:
        for message in fake.bot_messages(chat_id):
            if any(data.startswith("ap:") for _, data in message.buttons()):
                return message
        return None

    found: BotMessage = await fake.wait_for(card)
    return found


async def last_with_keyboard(fake: FakeTelegram, chat_id: int) -> BotMessage:
    def shown() -> BotMessage | None:
        messages = fake.bot_messages(chat_id)
        return messages[-1] if messages and messages[-1].keyboard else None

    found: BotMessage = await fake.wait_for(shown)
    return found


async def ratings(bot: Bot) -> list[tuple[str, int, int]]:
    now = datetime.now(UTC)
    totals = await bot.core.store.rating_totals(now - timedelta(hours=1), now + timedelta(hours=1), "model")
    return [(t.key, t.up, t.down) for t in totals]


async def idle(bot: Bot) -> None:
    await asyncio.wait_for(bot.core.router.wait_idle(), 10)


# --- rendering ----------------------------------------------------------------------------------------


async def test_a_split_group_answer_has_the_feedback_row_on_its_last_part_only(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    long = "\n\n".join(["A paragraph of the long answer, repeated to pass the limit. " * 8] * 12)
    llm_server.script("anthropic", Reply.text(long, chunks=6, delay_s=0.02))
    group = fake.group(GROUP)
    async with running_bot(fake, settings_for()) as bot:
        fake.user_says(group, f"@{BOT_USERNAME} tell me a lot")
        last = await last_with_keyboard(fake, GROUP)
        await idle(bot)
        parts = fake.bot_messages(GROUP)
        assert len(parts) >= 2 and [m.keyboard for m in parts[:-1]] == [None] * (len(parts) - 1)
        assert [label for label, _ in last.buttons()] == FEEDBACK_LABELS
        actions = [parse_action(data) for _, data in last.buttons()]
        assert all(action is not None for action in actions)
        sent = [c.params for c in fake.calls_to("sendMessage") + fake.calls_to("editMessageText")]
        assert any("reply_markup" in params for params in sent)


async def test_a_dm_answer_streamed_as_drafts_ends_with_the_keyboard_and_it_can_be_turned_off(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("Here you go.", chunks=3, delay_s=0.05))
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "hi")
        answer = await last_with_keyboard(fake, ALICE)
        assert answer.text == "Here you go." and answer.edits == 0  # drafts, then one final message
        assert [label for label, _ in answer.buttons()] == FEEDBACK_LABELS
    async with running_bot(fake, settings_for(bot_answer_buttons=False)):
        fake.user_says(fake.private_chat(7), "hi")
        await fake.wait_for(lambda: [m.text for m in fake.bot_messages(7)] == ["echo: hi"])
        assert fake.bot_messages(7)[0].keyboard is None


# --- approvals ----------------------------------------------------------------------------------------


async def test_approval_card_in_a_forum_topic_refuses_others_and_runs_once_for_the_asker(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    script_tool_then_answer(llm_server)
    group = fake.group(GROUP, forum=True)
    alice, mallory = fake.user(1, "Alice"), fake.user(MALLORY, "Mallory")
    topic = fake.open_topic(group, alice)
    settings = settings_for(bot_approvers="asker")
    async with running_bot(fake, settings, extra_tools=[notes.tool()]) as bot:
        question = fake.user_says(group, f"@{BOT_USERNAME} post a note please", sender=alice, topic=topic)
        card = await card_in(fake, GROUP)
        assert "post_note" in card.text and "hello team" in card.text
        assert card.thread_id == topic and card.reply_to == question
        assert [label for label, _ in card.buttons()] == ["Approve", "Deny", "Always allow here"]
        assert notes.posted == []

        refused = await answer_of(fake, fake.press(GROUP, card.message_id, mallory, label="Approve"))
        assert refused.show_alert and "Only the person who asked" in refused.text
        assert fake.messages[(GROUP, card.message_id)].keyboard == card.keyboard  # still waiting
        assert notes.posted == []

        first = fake.press(GROUP, card.message_id, alice, label="Approve")
        second = fake.press(GROUP, card.message_id, alice, label="Approve")  # a double tap
        answers = [await answer_of(fake, first), await answer_of(fake, second)]
        assert sorted(a.show_alert for a in answers) == [False, True]
        assert any("runs now" in a.text and "`" not in a.text for a in answers)
        assert any("Already decided" in a.text for a in answers)

        await fake.wait_for(lambda: any("Done: I posted" in m.text for m in fake.bot_messages(GROUP)))
        done = await last_with_keyboard(fake, GROUP)
        await idle(bot)
        assert notes.posted == ["hello team"]  # exactly once
        decided = fake.messages[(GROUP, card.message_id)]
        assert decided.keyboard is None and "approved by Alice" in decided.text
        assert "Done: I posted the note." in done.text
        assert done.thread_id == topic and done.reply_to == question  # same topic, same question
        assert [label for label, _ in done.buttons()] == FEEDBACK_LABELS


async def test_deny_in_a_reply_chain_keeps_the_tool_from_running(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    notes = Notes()
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("I will post it.", ("post_note", {"text": "hello team"})),
        Reply.text("Understood, I did not post it."),
    )
    group = fake.group(GROUP)
    alice = fake.user(1, "Alice")
    async with running_bot(fake, settings_for(), extra_tools=[notes.tool()]) as bot:
        fake.user_says(group, f"@{BOT_USERNAME} post a note please", sender=alice)
        card = await card_in(fake, GROUP)
        answer = await answer_of(fake, fake.press(GROUP, card.message_id, alice, label="Deny"))
        assert not answer.show_alert and "Denied" in answer.text
        await fake.wait_for(lambda: any("did not post it" in m.text for m in fake.bot_messages(GROUP)))
        await idle(bot)
        assert notes.posted == []
        assert fake.messages[(GROUP, card.message_id)].keyboard is None


# --- feedback and regenerate ----------------------------------------------------------------------------


async def test_thumbs_up_is_stored_and_regenerate_posts_a_new_answer(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("First answer."), Reply.text("Second answer."))
    alice = fake.user(ALICE, "Alice")
    async with running_bot(fake, settings_for()) as bot:
        fake.user_says(fake.private_chat(ALICE), "tell me something")
        first = await last_with_keyboard(fake, ALICE)
        await idle(bot)
        thanks = await answer_of(fake, fake.press(ALICE, first.message_id, alice, label="👍"))
        assert not thanks.show_alert and "👍" in thanks.text
        now = datetime.now(UTC)
        totals = await bot.core.store.rating_totals(
            now - timedelta(hours=1), now + timedelta(hours=1), "model"
        )
        assert [(t.key, t.up, t.down) for t in totals] == [("anthropic:claude-sonnet-5-5", 1, 0)]

        again = await answer_of(fake, fake.press(ALICE, first.message_id, alice, label="🔄"))
        assert not again.show_alert and again.text
        await fake.wait_for(lambda: [m.text for m in fake.bot_messages(ALICE)][-1] == "Second answer.")
        await idle(bot)
        texts = [m.text for m in fake.bot_messages(ALICE)]
        assert texts == ["First answer.", "Second answer."]  # a new message; the first one stays
        assert fake.bot_messages(ALICE)[-1].keyboard is not None
        sent = llm_server.bodies("anthropic")[-1]["messages"]
        assert [m["role"] for m in sent] == ["user"]  # the replaced answer is not in the history


async def test_presses_on_gone_messages_and_unknown_buttons_are_answered_and_change_nothing(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    alice = fake.user(ALICE, "Alice")
    async with running_bot(fake, settings_for()) as bot:
        fake.user_says(fake.private_chat(ALICE), "hi")
        answer = await last_with_keyboard(fake, ALICE)
        await idle(bot)
        gone = await answer_of(fake, fake.press_gone(ALICE, answer.message_id, alice, "fb:1:+"))
        assert gone.show_alert and gone.text == GONE
        forged = fake.callbacks.update(alice, {"chat": fake.chats[ALICE]}, "fb:1:+", ALICE)  # no message_id
        fake.push_raw(forged)  # PTB cannot parse it: skipped, the batch goes on
        inline = fake.callbacks.update(alice, {}, "fb:1:+", ALICE)
        query = inline["callback_query"]
        del query["message"]
        query["inline_message_id"] = "AAAAAQ"  # a press in inline mode: no message of ours
        fake.push_raw(inline)
        bogus = fake.messages[(ALICE, answer.message_id)]
        bogus.keyboard = [[{"text": "?", "callback_data": "zz:1"}]]  # a button we never sent
        strange = await answer_of(fake, fake.press(ALICE, answer.message_id, alice, action="zz:1"))
        assert strange.show_alert and strange.text == NOT_MINE
        assert (await answer_of(fake, str(query["id"]))).text == GONE
        fake.user_says(fake.private_chat(ALICE), "still there?")
        await fake.wait_for(lambda: fake.bot_messages(ALICE)[-1].text == "echo: still there?")
        assert await ratings(bot) == []


# --- webhook --------------------------------------------------------------------------------------------


async def test_a_press_in_webhook_mode_is_answered(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    alice = fake.user(ALICE, "Alice")
    async with running_bot(fake, settings_for(), webhook=True) as bot:
        assert fake.webhook is not None
        fake.user_says(fake.private_chat(ALICE), "hi")
        answer = await last_with_keyboard(fake, ALICE)
        await idle(bot)
        down = await answer_of(fake, fake.press(ALICE, answer.message_id, alice, label="👎"))
        assert not down.show_alert and "👎" in down.text
        now = datetime.now(UTC)
        totals = await bot.core.store.rating_totals(
            now - timedelta(hours=1), now + timedelta(hours=1), "model"
        )
        assert [(t.up, t.down) for t in totals] == [(0, 1)]
        assert not fake.calls_to("getUpdates")
