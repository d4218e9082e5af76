"""Telegram end to end: the real python-telegram-bot against a fake Bot API, with the real core behind it.

Each test starts the real TelegramAdapter (long polling or webhook on the bot's aiohttp server) and the
real core (open_core + the fake LLM server), sends user messages through the fake's updates and checks
what the fake recorded: the calls made, and what each chat finally shows.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from functools import partial

import aiohttp

from adapters.telegram.format import to_html
from adapters.telegram.menu import ADMIN_COMMANDS
from adapters.telegram.outbox import SPLIT_CHARS
from bot.config import Settings
from core.commands import COMMANDS
from core.textsplit import split_text
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.telegram_server import BOT_USERNAME, TOKEN, FakeTelegram, parse_html
from tests.telegramkit import fake, running_bot

__all__ = ["fake"]  # the fixture, shared with test_telegram_report.py

SettingsFor = Callable[..., Settings]
ALICE = 42
GROUP = -1001234567890


def shows(markdown: str) -> str:
    """What Telegram displays for Markdown the model wrote (our HTML, parsed the fake's strict way)."""
    return parse_html(to_html(markdown))


async def final_texts(fake: FakeTelegram, chat_id: int, expected: list[str], within: float = 10.0) -> None:
    """Wait until the chat's bot messages show exactly `expected` (streaming finished)."""
    try:
        await fake.wait_for(lambda: [m.text for m in fake.bot_messages(chat_id)] == expected, within)
    except AssertionError:
        shown = [m.text[:200] for m in fake.bot_messages(chat_id)]
        raise AssertionError(f"chat {chat_id} shows {shown!r}, expected {expected!r}") from None


def answered_more(fake: FakeTelegram, chat_id: int, before: int) -> bool:
    return len(fake.bot_messages(chat_id)) > before


# --- private chats ------------------------------------------------------------------------------------


async def test_dm_streams_via_drafts_with_a_tool_call_then_sends_the_final_message(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "6*7"}), delay_s=0.35),
        Reply.text("The answer is **42**, as _calculated_.", chunks=4, delay_s=0.1),
    )
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "what is 6*7?")
        expected = "Let me compute.\n\nThe answer is **42**, as _calculated_."
        # ~4 s of scripted model delays, plus the first model call's SDK import when this test runs first
        await final_texts(fake, ALICE, [shows(expected)], within=20)
        message = fake.bot_messages(ALICE)[0]
        assert message.parse_mode == "HTML" and "<b>42</b>" in message.markup
        assert message.reply_to is None and message.edits == 0  # drafts streamed; one final message
        drafts = [text for chat, _, text in fake.drafts if chat == ALICE]
        assert drafts[0].startswith("Let me compute.")
        assert any("calculator(expression=6*7)" in d for d in drafts)  # the compact tool line
        assert len({draft_id for _, draft_id, _ in fake.drafts}) == 1  # one animated draft
        assert fake.calls_to("sendChatAction")[0].params["action"] == "typing"
        assert fake.calls.index(fake.calls_to("sendMessage")[0]) > fake.calls.index(
            fake.calls_to("sendMessageDraft")[-1]
        )  # no draft after the final message


async def test_edit_style_posts_then_edits_and_off_style_sends_once(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "First part of the answer. " * 8
    llm_server.script("anthropic", Reply.text(text, chunks=6, delay_s=0.08))
    async with running_bot(fake, settings_for(), stream_style="edit"):
        fake.user_says(fake.private_chat(ALICE), "hi")
        await final_texts(fake, ALICE, [shows(text)])
        assert fake.bot_messages(ALICE)[0].edits >= 1
        assert not fake.calls_to("sendMessageDraft")
    fake.calls.clear()
    llm_server.script("anthropic", Reply.text(text, chunks=6, delay_s=0.02))
    async with running_bot(fake, settings_for(), stream_style="off"):
        fake.user_says(fake.private_chat(7), "hi")
        await final_texts(fake, 7, [shows(text)])
        assert fake.bot_messages(7)[0].edits == 0 and not fake.calls_to("sendMessageDraft")


async def test_a_ten_thousand_character_answer_is_split_at_paragraphs_and_code_blocks(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    paragraph = "This paragraph explains one more detail of the answer, at some length. " * 6
    code = "```python\n" + "\n".join(f"print('line {i}')  # <tag> & more" for i in range(120)) + "\n```"
    text = "\n\n".join([paragraph] * 10 + [code] + [paragraph] * 10)[:10_000]
    assert len(text) == 10_000
    llm_server.script("anthropic", Reply.text(text, chunks=40, delay_s=0.005))
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "tell me everything")
        parts = split_text(text, SPLIT_CHARS)
        assert len(parts) >= 3
        assert any(a.endswith("```") and b.startswith("```python") for a, b in itertools.pairwise(parts))
        await final_texts(fake, ALICE, [shows(part) for part in parts])
        for message in fake.bot_messages(ALICE):
            assert len(message.text) <= 4096 and message.parse_mode == "HTML"
            assert message.markup.count("<pre>") == message.markup.count("</pre>")  # fences balanced


async def test_markdown_that_needs_escaping_renders_and_refused_entities_fall_back_to_plain_text(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    tricky = (
        "# Result\nUse `a < b && c > d` in snake_case_names, costs 1.5$ (approx.) [docs](https://x.org/?a=1&b=2)"
        '\n\n- one *item*\n- two\n\n```html\n<div class="x">&nbsp;</div>\n```\n\nDone! <not-a-tag> & co.'
    )
    llm_server.script("anthropic", Reply.text(tricky, chunks=5), Reply.text("**bold** answer"))
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "format this")
        await final_texts(fake, ALICE, [shows(tricky)])
        message = fake.bot_messages(ALICE)[0]
        assert '<div class="x">&nbsp;</div>' in message.text and "<not-a-tag> & co." in message.text
        assert '<a href="https://x.org/?a=1&amp;b=2">docs</a>' in message.markup
        fake.script_failure(
            "sendMessage", retry_after=None, description="can't parse entities: Unsupported start tag"
        )
        fake.user_says(fake.private_chat(ALICE), "again")
        await final_texts(fake, ALICE, [shows(tricky), "**bold** answer"])  # plain text, not lost
        assert fake.bot_messages(ALICE)[1].parse_mode is None


async def test_flood_429_mid_stream_is_waited_out_without_losing_text(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "A streamed answer that keeps going for a while. " * 6
    llm_server.script("anthropic", Reply.text(text, chunks=8, delay_s=0.05))
    fake.script_failure("editMessageText", retry_after=1, after=1)
    async with running_bot(fake, settings_for(), stream_style="edit") as bot:
        fake.user_says(fake.private_chat(ALICE), "go")
        await final_texts(fake, ALICE, [shows(text)])
        assert len(fake.statuses(429)) == 1
        assert bot.observer.rate_limits == [("telegram", "editMessageText")]
        assert not bot.observer.errors


async def test_a_draft_429_skips_previews_and_a_draft_error_falls_back_to_editing(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "Drafted answer with several chunks of text. " * 4
    llm_server.script("anthropic", Reply.text(text, chunks=6, delay_s=0.05), Reply.text(text, chunks=6))
    fake.script_failure("sendMessageDraft", retry_after=1)
    async with running_bot(fake, settings_for()) as bot:
        fake.user_says(fake.private_chat(ALICE), "one")
        await final_texts(fake, ALICE, [shows(text)])
        # Drafts bypass the flood queues, not the reporting: every 429 the fake sent is reported once.
        assert [m for _, m in bot.observer.rate_limits] == [c.method for c in fake.statuses(429)]
        assert ("telegram", "sendMessageDraft") in bot.observer.rate_limits
        fake.script_failure("sendMessageDraft", retry_after=None, description="TEXTDRAFT_PEER_INVALID")
        fake.user_says(fake.private_chat(ALICE), "two")
        await final_texts(fake, ALICE, [shows(text), shows(text)])


async def test_a_server_without_drafts_streams_by_editing_and_stops_asking(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "An answer from an older Bot API server. " * 6
    llm_server.script("anthropic", Reply.text(text, chunks=6, delay_s=0.05), Reply.text(text, chunks=6))
    fake.missing.add("sendMessageDraft")  # a self-hosted Bot API server from before drafts
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "one")
        await final_texts(fake, ALICE, [shows(text)])
        assert len(fake.calls_to("sendMessageDraft")) == 1 and fake.bot_messages(ALICE)[0].edits >= 1
        fake.user_says(fake.private_chat(ALICE), "two")
        await final_texts(fake, ALICE, [shows(text), shows(text)])
        assert len(fake.calls_to("sendMessageDraft")) == 1  # switched off for good


async def test_provider_errors_and_cut_streams_end_with_a_clear_message(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    broken = Reply.cut(after_chunks=2)  # a cut stream is retried once (bot_retry_attempts=2): cut both
    llm_server.script("anthropic", Reply.server_error(), Reply.server_error(), broken, broken)
    async with running_bot(fake, settings_for()) as bot:
        fake.user_says(fake.private_chat(ALICE), "first")
        await fake.wait_for(lambda: fake.bot_messages(ALICE))
        assert "could not get an answer from the model" in fake.bot_messages(ALICE)[0].text
        fake.user_says(fake.private_chat(ALICE), "second")
        await fake.wait_for(lambda: len(fake.bot_messages(ALICE)) == 2)
        cut = fake.bot_messages(ALICE)[1].text
        assert cut.startswith("this answer") and "cut off" in cut
        assert TOKEN not in str([m.text for m in fake.bot_messages(ALICE)])
        assert not bot.observer.errors  # the provider failed, not Telegram


async def test_a_final_message_telegram_refuses_is_reported_as_a_platform_error(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("You will never see this."))
    fake.script_failure("sendMessage", retry_after=None, description="chat not found")
    async with running_bot(fake, settings_for(), stream_style="off") as bot:
        fake.user_says(fake.private_chat(ALICE), "hello?")
        await fake.wait_for(lambda: bot.observer.errors)
        assert bot.observer.errors == [("telegram", "platform_api")]
        assert not fake.bot_messages(ALICE) and not bot.observer.rate_limits
        group = fake.group(GROUP)
        fake.remove_bot(GROUP)  # 403 Forbidden: the chat's choice, not a delivery failure
        fake.user_says(group, f"@{BOT_USERNAME} still there?")
        await fake.wait_for(lambda: fake.statuses(403))
        await asyncio.sleep(0.2)
        assert bot.observer.errors == [("telegram", "platform_api")]


async def test_stop_ends_a_streaming_answer_and_other_chats_are_not_held_up(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("word " * 200, chunks=100, delay_s=0.05))
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "long answer please")
        await fake.wait_for(lambda: any(chat == ALICE and text for chat, _, text in fake.drafts))
        fake.user_says(fake.private_chat(7, "Bob"), "quick question")  # answered while Alice's streams
        await final_texts(fake, 7, [shows("echo: quick question")])
        assert not fake.bot_messages(ALICE)
        fake.user_says(fake.private_chat(ALICE), "/stop")
        await fake.wait_for(lambda: any("Stopped." in m.text for m in fake.bot_messages(ALICE)))
        texts = [m.text for m in fake.bot_messages(ALICE)]
        assert "Stopping the current answer." in texts
        assert any(t.startswith("word word") and t.endswith("⏹ Stopped.") for t in texts)


async def test_a_final_message_that_fails_once_is_sent_again_and_lands_once(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("Delivered after all."), Reply.text("This one too."))
    async with running_bot(fake, settings_for(), stream_style="off") as bot:
        fake.script_failure("sendMessage", drop=True)  # the connection drops before Telegram answers
        fake.user_says(fake.private_chat(ALICE), "one")
        await final_texts(fake, ALICE, ["Delivered after all."])
        fake.script_failure("sendMessage", retry_after=None, status=500)
        fake.user_says(fake.private_chat(ALICE), "two")
        await final_texts(fake, ALICE, ["Delivered after all.", "This one too."])
        assert [c.status for c in fake.calls_to("sendMessage")] == [0, 200, 500, 200]
        assert not bot.observer.errors


async def test_typing_under_429_is_not_retried_in_a_loop(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("Thought about it.", delay_s=1.2))
    fake.script_failure("sendChatAction", retry_after=0.2, times=50)
    async with running_bot(fake, settings_for()) as bot:
        fake.user_says(fake.private_chat(ALICE), "think hard")
        await final_texts(fake, ALICE, [shows("Thought about it.")])
        # One try per typing interval (4 s), never a retry into the 429s; the answer is not held up.
        assert [c.status for c in fake.calls_to("sendChatAction")] == [429]
        assert bot.observer.rate_limits == [("telegram", "sendChatAction")] and not bot.observer.errors


# --- groups -------------------------------------------------------------------------------------------


async def test_group_mention_and_reply_to_the_bot_continue_one_conversation(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    group = fake.group(GROUP)
    async with running_bot(fake, settings_for()):
        fake.user_says(group, "just chatting, not for the bot")
        fake.user_says(group, "/new@other_bot")
        question = fake.user_says(group, f"@{BOT_USERNAME} what is the plan?")
        await final_texts(fake, GROUP, [shows("echo: what is the plan?")])
        answer = fake.bot_messages(GROUP)[0]
        assert answer.reply_to == question and len(llm_server.requests) == 1
        assert not fake.calls_to("sendMessageDraft")  # drafts are for private chats only
        # (A follow-up that arrives while the first turn is still being stored shows "I will answer
        # this once I finish..." until its answer replaces it: wait for the answers themselves.)
        fake.user_says(group, "and after that?", reply_to=answer.message_id)
        await final_texts(fake, GROUP, [shows("echo: what is the plan?"), shows("echo: and after that?")])
        history = llm_server.bodies("anthropic")[-1]["messages"]
        assert len(history) == 3  # the first exchange and the follow-up: one session
        fake.user_says(group, f"@{BOT_USERNAME} unrelated question")  # a new chain: a new session
        await fake.wait_for(lambda: fake.bot_messages(GROUP)[-1].text == "echo: unrelated question")
        assert len(llm_server.bodies("anthropic")[-1]["messages"]) == 1


async def test_a_reply_continues_its_conversation_after_a_restart_and_on_another_replica(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    group = fake.group(GROUP)
    settings = settings_for()
    async with running_bot(fake, settings):  # the bot that answered first...
        fake.user_says(group, f"@{BOT_USERNAME} what is the plan?")
        await final_texts(fake, GROUP, [shows("echo: what is the plan?")])
    answer = fake.bot_messages(GROUP)[0]
    async with running_bot(fake, settings):  # ...is gone; a fresh process gets the reply
        fake.user_says(group, "and after that?", reply_to=answer.message_id)
        await final_texts(fake, GROUP, [shows("echo: what is the plan?"), shows("echo: and after that?")])
    history = llm_server.bodies("anthropic")[-1]["messages"]
    assert len(history) == 3  # the first exchange came along: the same conversation


async def test_a_group_reply_under_a_429_storm_ends_with_exactly_the_models_reply(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    text = "A group answer that streams in many chunks, **formatted**. " * 12
    llm_server.script("anthropic", Reply.text(text, chunks=12, delay_s=0.05))
    fake.script_failure("sendMessage", retry_after=0.3, times=4)
    fake.script_failure("editMessageText", retry_after=0.3, times=4)
    group = fake.group(GROUP)
    async with running_bot(fake, settings_for()) as bot:
        question = fake.user_says(group, f"@{BOT_USERNAME} explain it all")
        await final_texts(fake, GROUP, [shows(text)])  # all of it, and no failure line under it
        for _ in range(200):  # the store hears that the answer landed
            turn = await bot.core.store.get_turn(1)
            if turn is not None and turn.delivered_at is not None:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the answer was never marked delivered")
        assert [m.text for m in fake.bot_messages(GROUP)] == [shows(text)]
        assert fake.bot_messages(GROUP)[0].reply_to == question
        assert len(fake.statuses(429)) >= 4  # the storm happened...
        assert not bot.observer.errors  # ...and nothing was reported undelivered


async def test_surface_for_rebuilds_the_reply_surface_of_a_stored_turn(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    forum = fake.group(GROUP, forum=True)
    topic = fake.open_topic(forum, fake.user(ALICE))
    async with running_bot(fake, settings_for()) as bot:
        question = fake.user_says(forum, f"@{BOT_USERNAME} where am I?", sender=fake.user(ALICE), topic=topic)
        fake.user_says(fake.private_chat(7, "Bob"), "and me?")
        await fake.wait_for(lambda: fake.bot_messages(GROUP) and fake.bot_messages(7))
        for turn_id in (1, 2):
            turn = await bot.core.store.get_turn(turn_id)
            assert turn is not None and turn.reply_address
            chat = int(turn.ref.channel)
            surface = bot.adapter.surface_for(turn.ref, turn.reply_address)
            await surface.post("Posted **again** through the stored address.")
            await surface.private("A reply just for the asker.")
            again, private = fake.bot_messages(chat)[-2:]
            assert again.text == "Posted again through the stored address." and again.parse_mode == "HTML"
            first = fake.bot_messages(chat)[0]
            assert (again.thread_id, again.reply_to) == (private.thread_id, private.reply_to)
            assert (again.thread_id, again.reply_to) == (first.thread_id, first.reply_to)
        assert (
            fake.bot_messages(GROUP)[-1].thread_id == topic
            and fake.bot_messages(GROUP)[-1].reply_to == question
        )
        assert fake.bot_messages(7)[-1].reply_to is None


async def test_forum_topic_is_its_own_conversation(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    forum = fake.group(GROUP, forum=True)
    alice = fake.user(ALICE)
    topic_a, topic_b = fake.open_topic(forum, alice), fake.open_topic(forum, alice)
    async with running_bot(fake, settings_for()):
        answers = [shows("echo: first in A")]
        fake.user_says(forum, f"@{BOT_USERNAME} first in A", sender=alice, topic=topic_a)
        await final_texts(fake, GROUP, answers)
        fake.user_says(forum, f"@{BOT_USERNAME} second in A", sender=alice, topic=topic_a)
        await final_texts(fake, GROUP, answers := [*answers, shows("echo: second in A")])
        assert len(llm_server.bodies("anthropic")[-1]["messages"]) == 3
        fake.user_says(forum, f"@{BOT_USERNAME} first in B", sender=alice, topic=topic_b)
        await final_texts(fake, GROUP, [*answers, shows("echo: first in B")])
        assert len(llm_server.bodies("anthropic")[-1]["messages"]) == 1
        threads = [m.thread_id for m in fake.bot_messages(GROUP)]
        assert threads == [topic_a, topic_a, topic_b]
        assert all(c.params.get("message_thread_id") for c in fake.calls_to("sendChatAction"))


# --- commands, access, dedupe -------------------------------------------------------------------------


async def test_commands_are_registered_and_answered_in_private_chats_and_groups(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    group = fake.group(GROUP)
    async with running_bot(fake, settings_for()):
        names = [c["command"] for c in fake.commands]
        assert set(names) == ({"start"} | {c.name for c in COMMANDS}) - ADMIN_COMMANDS  # /report: admins
        assert {"help", "new", "model", "usage", "stop"} <= set(names)
        chat = fake.private_chat(ALICE)
        for command in ("/start", "/help", "/new", "/model", "/usage", "/stop", "/nonsense", "/"):
            fake.user_says(chat, command)
            await fake.wait_for(partial(answered_more, fake, ALICE, len(fake.bot_messages(ALICE))))
        texts = [m.text for m in fake.bot_messages(ALICE)]
        assert texts[0].startswith("I answer questions") and texts[1] == texts[0]
        assert texts[2].startswith("Started a fresh conversation")
        assert texts[3].startswith("This conversation uses anthropic:claude-sonnet-5-5")
        assert "today" in texts[4].lower() or "usage" in texts[4].lower()
        assert texts[5] == "Nothing is running in this conversation."
        assert texts[6] == "Unknown command /nonsense. Try /help."
        assert texts[7] == "echo: /"  # a lone slash is a message, not a command
        fake.user_says(group, f"/help@{BOT_USERNAME}")
        await fake.wait_for(lambda: fake.bot_messages(GROUP))
        assert fake.bot_messages(GROUP)[0].text.startswith("I answer questions")


async def test_a_user_outside_the_allow_list_is_refused(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for(allowed_users=["telegram:1000"])):
        fake.user_says(fake.private_chat(ALICE), "hello?")
        await fake.wait_for(lambda: fake.bot_messages(ALICE))
        assert "not on this bot's allow list" in fake.bot_messages(ALICE)[0].text
        assert "telegram:42" in fake.bot_messages(ALICE)[0].text
        assert not llm_server.requests


async def test_a_duplicate_update_is_answered_once_even_after_a_restart(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    settings = settings_for()
    update, _ = fake.message_update(fake.private_chat(ALICE), "only once")
    async with running_bot(fake, settings):
        fake.push(update)
        fake.push(update)  # redelivered at once
        await final_texts(fake, ALICE, [shows("echo: only once")])
    async with running_bot(fake, settings):  # a restart, then Telegram redelivers it again
        fake.push(update)
        fake.user_says(fake.private_chat(ALICE), "next")
        await final_texts(fake, ALICE, [shows("echo: only once"), shows("echo: next")])
    assert len(llm_server.requests) == 2


# --- webhook ------------------------------------------------------------------------------------------


async def test_webhook_mode_checks_the_secret_and_answers_updates(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    async with running_bot(fake, settings_for(), webhook=True) as bot:
        assert fake.webhook is not None and fake.webhook["secret_token"] == "s3cret-token_1"
        url = fake.webhook["url"]
        update, _ = fake.message_update(fake.private_chat(ALICE), "forged")
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=update) as response:
                assert response.status == 403  # no secret header
            wrong = {"X-Telegram-Bot-Api-Secret-Token": "guess"}
            async with session.post(url, json=update, headers=wrong) as response:
                assert response.status == 403
        fake.user_says(fake.private_chat(ALICE), "via webhook")
        await final_texts(fake, ALICE, [shows("echo: via webhook")])
        assert 200 in fake.deliveries and bot.adapter.ready()
        assert not fake.calls_to("getUpdates")
