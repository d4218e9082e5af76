"""The Slack adapter end to end: real slack-bolt / slack-sdk against the fake Slack on 127.0.0.1, the real
core behind it, the fake LLM server behind that."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from adapters.slack.target import ReplyTarget
from bot.app import Core, open_core
from bot.config import Settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.inbound import ConversationRef
from tests.corekit import RecordingObserver
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.slack_server import (
    ALICE,
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    mention,
)

CHANNEL = "C0GENERAL"
DM = "D0ALICE"


@dataclass
class Bot:
    slack: FakeSlack
    llm: FakeLLMServer
    adapter: SlackAdapter
    http: HttpServer
    observer: RecordingObserver
    core: Core

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/slack/events"

    async def mention(self, text: str, *, channel: str = CHANNEL, thread_ts: str | None = None) -> str:
        """A person mentions the bot; returns the thread the reply goes to."""
        event = self.slack.user_message(channel, f"<@{BOT_USER}> {text}", thread_ts=thread_ts)
        await self.slack.push_event(mention(event))
        return thread_ts or event["ts"]

    async def answer(self, thread_ts: str, channel: str = CHANNEL) -> str:
        """Wait for the finished reply in a thread; return its text."""
        await self.slack.wait_for(lambda: self.finished(channel, thread_ts))
        return self.slack.answer_text(channel, thread_ts)

    def finished(self, channel: str, thread_ts: str) -> bool:
        messages = self.slack.answer_messages(channel, thread_ts)
        return bool(messages) and all(not m.streaming for m in messages) and not self.adapter._tasks


@pytest.fixture
def slack_bot(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> Callable[..., contextlib.AbstractAsyncContextManager[Bot]]:
    @contextlib.asynccontextmanager
    async def start(
        mode: str = "socket", core: dict[str, Any] | None = None, fake: FakeSlack | None = None, **slack: Any
    ) -> AsyncIterator[Bot]:
        """A bot on a fake Slack of its own, or on `fake` (the caller's, kept running: a restart)."""
        own = fake is None
        if fake is None:
            fake = FakeSlack(stream_ttl_s=slack.pop("stream_ttl_s", 300.0))
            await fake.start()
        values: dict[str, Any] = {
            "bot_token": BOT_TOKEN,
            "api_url": fake.api_url,
            "stream_interval": 0.02,
            "edit_interval": 0.02,
            "mode": mode,
        }
        values |= {"app_token": APP_TOKEN} if mode == "socket" else {"signing_secret": SIGNING_SECRET}
        settings = SlackSettings(_env_file=None, **(values | slack))  # type: ignore[call-arg]
        http = HttpServer("127.0.0.1", 0)
        async with open_core(settings_for(**(core or {}))) as wired:
            observer = RecordingObserver()
            adapter = SlackAdapter(settings, AdapterContext(wired.router, http, observer=observer))
            await http.start()
            runner = asyncio.create_task(adapter.run())
            try:
                await fake.wait_for(lambda: adapter.ready() or runner.done())
                yield Bot(fake, llm_server, adapter, http, observer, wired)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                await http.stop()
                if own:
                    await fake.stop()

    return start


def user_texts(llm: FakeLLMServer) -> list[str]:
    """Every user message text the model saw in its last request."""
    messages = llm.bodies("anthropic")[-1]["messages"]
    out: list[str] = []
    for message in messages:
        content = message["content"]
        if message["role"] == "user":
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            out += [b["text"] for b in blocks if b.get("type") == "text"]
    return out


# --- conversations ----------------------------------------------------------------------------


async def test_channel_mention_streams_a_threaded_reply_with_the_tool_call(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.llm.script(
            "anthropic",
            Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "6*7"})),
            Reply.text("The answer is **42**.", chunks=3),
        )
        thread = await bot.mention("what is 6*7?")
        assert await bot.answer(thread) == "Let me compute.\n\nThe answer is **42**."
        assert len(bot.slack.bot_messages(CHANNEL, thread)) == 1  # the tool call is inside the stream
        start = bot.slack.calls_to("chat.startStream")[0].args
        assert start["thread_ts"] == thread and start["channel"] == CHANNEL
        assert start["recipient_user_id"] == ALICE and start["recipient_team_id"]
        tasks = [
            c
            for m in bot.slack.answer_messages(CHANNEL, thread)
            for c in m.chunks
            if c["type"] == "task_update"
        ]
        assert [t["status"] for t in tasks] == ["in_progress", "complete"]
        assert "6*7" in tasks[0]["details"] and tasks[1]["output"] == "42"
        assert bot.slack.calls_to("assistant.threads.setStatus")[0].args["thread_ts"] == thread
        assert len(bot.slack.calls_to("chat.stopStream")) == 1


async def test_dm_is_answered_in_its_own_thread(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        event = bot.slack.user_message(DM, "hello there")
        await bot.slack.push_event(event)
        assert await bot.answer(event["ts"], DM) == "echo: hello there"
        start = bot.slack.calls_to("chat.startStream")[0].args
        assert "recipient_user_id" not in start  # not needed in a DM


async def test_thread_follow_up_without_mention_continues_the_session(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        thread = await bot.mention("remember the number 7")
        await bot.answer(thread)
        follow = bot.slack.user_message(CHANNEL, "what number was it?", thread_ts=thread)
        await bot.slack.push_event(follow)
        await bot.slack.wait_for(lambda: len(bot.slack.answer_messages(CHANNEL, thread)) == 2)
        await bot.answer(thread)
        assert user_texts(bot.llm) == ["remember the number 7", "what number was it?"]
        # Top-level chatter in the channel is not for the bot.
        await bot.slack.push_event(bot.slack.user_message(CHANNEL, "lunch?"))
        await asyncio.sleep(0.1)
        assert len(bot.llm.requests) == 2


async def test_require_mention_ignores_thread_replies_without_one(slack_bot: Any) -> None:
    async with slack_bot(require_mention=True) as bot:
        thread = await bot.mention("hi")
        await bot.answer(thread)
        await bot.slack.push_event(bot.slack.user_message(CHANNEL, "and then?", thread_ts=thread))
        await asyncio.sleep(0.1)
        assert len(bot.llm.requests) == 1


async def test_mention_inside_an_unseen_thread_reads_its_earlier_messages(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        root = bot.slack.user_message(CHANNEL, "Our deploy failed with error E42", user="U0BOB")["ts"]
        bot.slack.user_message(CHANNEL, "I think it is the database migration", thread_ts=root)
        thread = await bot.mention("can you summarise this?", thread_ts=root)
        await bot.answer(thread)
        assert bot.slack.calls_to("conversations.replies")[0].args["ts"] == root
        seen = user_texts(bot.llm)[0]
        assert "E42" in seen and "database migration" in seen and seen.endswith("can you summarise this?")


# --- commands ---------------------------------------------------------------------------------


async def test_slash_command_is_acked_and_answered_ephemerally(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        ack = await bot.slack.push_command("help")
        assert ack["envelope_id"]
        await bot.slack.wait_for(lambda: bot.slack.responses)
        response = bot.slack.responses[0]
        assert response["response_type"] == "ephemeral" and "/new" in response["text"]
        await bot.slack.push_command("")  # bare /ai: help
        await bot.slack.push_command("model")
        await bot.slack.push_command("teleport now")
        await bot.slack.wait_for(lambda: len(bot.slack.responses) == 4)
        texts = [r["text"] for r in bot.slack.responses]
        assert sum("/new" in t for t in texts) == 2  # answered concurrently: in any order
        assert any("claude-sonnet-5-5" in t for t in texts)
        assert any("Unknown command /teleport" in t for t in texts)
        assert all(r["response_type"] == "ephemeral" for r in bot.slack.responses)
        assert not bot.llm.requests


async def test_words_to_the_bot_are_commands_and_an_empty_mention_gets_help(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        await bot.mention("")
        await bot.slack.wait_for(lambda: bot.slack.ephemerals)
        assert "/new" in bot.slack.ephemerals[0]["text"] and bot.slack.ephemerals[0]["user"] == ALICE
        dm = bot.slack.user_message(DM, "new")
        await bot.slack.push_event(dm)
        await bot.slack.wait_for(lambda: bot.slack.bot_messages(DM))
        assert "fresh conversation" in bot.slack.bot_messages(DM)[0].text
        assert not bot.llm.requests  # "help me" would be a question; "new" alone is the command


async def test_refusals_are_ephemeral(slack_bot: Any) -> None:
    async with slack_bot(core={"allowed_users": ["slack:U0SOMEONE"]}) as bot:
        await bot.mention("hi")
        await bot.slack.wait_for(lambda: bot.slack.ephemerals)
        assert "allow list" in bot.slack.ephemerals[0]["text"]
        assert not bot.slack.bot_messages(CHANNEL) and not bot.llm.requests


# --- delivery ---------------------------------------------------------------------------------


async def test_redelivered_events_get_one_reply(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> once please")
        await bot.slack.push_event(mention(event), event_id="Ev1")
        await bot.slack.push_event(mention(event), event_id="Ev1", retry_attempt=1)  # a retry
        await bot.slack.push_event(event, event_id="Ev2")  # the same mention as a `message` event
        await bot.answer(event["ts"])
        await bot.slack.disconnect()  # socket refresh, then Slack redelivers
        await bot.slack.wait_for(lambda: bot.slack.connections == 2)
        await bot.slack.push_event(mention(event), event_id="Ev1", retry_attempt=2)
        await asyncio.sleep(0.1)
        assert len(bot.llm.requests) == 1
        assert len(bot.slack.calls_to("chat.startStream")) == 1


async def test_own_and_other_bots_messages_are_ignored(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        thread = await bot.mention("hi")
        await bot.answer(thread)
        calls = len(bot.slack.calls)
        own = bot.slack.user_message(CHANNEL, "echo: hi", user=BOT_USER, thread_ts=thread, bot=True)
        other = bot.slack.user_message(
            CHANNEL, f"<@{BOT_USER}> loop?", user="U0OTHERBOT", thread_ts=thread, bot=True
        )
        await bot.slack.push_event(own)
        await bot.slack.push_event(other)
        await bot.slack.push_event(mention(other))
        await asyncio.sleep(0.1)
        assert len(bot.llm.requests) == 1 and len(bot.slack.calls) == calls


async def test_home_opened_in_messages_tab_suggests_prompts_without_thread(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        event = {
            "type": "app_home_opened",
            "user": ALICE,
            "channel": DM,
            "tab": "messages",
            "event_ts": "1.0",
        }
        await bot.slack.push_event(event)
        await bot.slack.push_event({**event, "tab": "home"})
        await bot.slack.wait_for(lambda: bot.slack.calls_to("assistant.threads.setSuggestedPrompts"))
        call = bot.slack.calls_to("assistant.threads.setSuggestedPrompts")[0]
        assert "thread_ts" not in call.args and call.error is None and len(call.args["prompts"]) <= 4


# --- limits and failures ----------------------------------------------------------------------


async def test_429_on_append_is_retried_without_losing_text(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        text = "".join(f"sentence {i}. " for i in range(40))
        bot.llm.script("anthropic", Reply.text(text, chunks=20, delay_s=0.01))
        bot.slack.fail("chat.appendStream", status=429, retry_after=0, error="ratelimited")
        thread = await bot.mention("talk")
        assert await bot.answer(thread) == text
        appends = bot.slack.calls_to("chat.appendStream")
        # Not retried by the SDK: the presenter's next update carries the same text on, and more.
        assert appends[0].status == 429 and appends[1].status == 200
        assert appends[1].args["chunks"][0]["text"].startswith(appends[0].args["chunks"][0]["text"])
        assert bot.observer.rate_limits == [("slack", "chat.appendStream")]
        assert bot.slack.rate_limited == 1 and not bot.observer.errors


async def test_429_on_start_stream_falls_back_to_post_and_update(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        text = "A fine answer, in several parts."
        bot.llm.script("anthropic", Reply.text(text, chunks=4, delay_s=0.01))
        bot.slack.fail("chat.startStream", status=429, retry_after=1, error="ratelimited")
        thread = await bot.mention("hi")
        await bot.slack.wait_for(
            lambda: bot.slack.answer_text(CHANNEL, thread) == text and not bot.adapter._tasks
        )
        assert bot.slack.calls_to("chat.postMessage")
        assert len(bot.slack.calls_to("chat.startStream")) == 1  # the fallback does not hammer it
        assert bot.observer.rate_limits == [("slack", "chat.startStream")]  # not retried, still counted


async def test_every_429_is_reported_once_even_when_the_retries_run_out(slack_bot: Any) -> None:
    async with slack_bot(native_streaming=False, rate_limit_retries=1) as bot:
        bot.llm.script("anthropic", Reply.text("Worth the wait.", chunks=2))
        bot.slack.fail("chat.postMessage", status=429, retry_after=0, times=2)
        thread = await bot.mention("hi")
        await bot.slack.wait_for(
            lambda: bot.slack.answer_text(CHANNEL, thread) == "Worth the wait." and not bot.adapter._tasks
        )
        # Reply calls are not retried by the SDK (the presenter retries the final text): both reported.
        assert bot.observer.rate_limits == [("slack", "chat.postMessage")] * 2
        assert bot.slack.rate_limited == 2 and not bot.observer.errors


async def test_a_reply_slack_refuses_is_reported_as_a_platform_error(slack_bot: Any) -> None:
    async with slack_bot(native_streaming=False) as bot:
        bot.slack.fail("chat.postMessage", error="channel_not_found", times=100)
        thread = await bot.mention("hi")
        await bot.slack.wait_for(lambda: bool(bot.observer.errors) and not bot.adapter._tasks)
        assert not bot.slack.answer_text(CHANNEL, thread)
        assert bot.observer.errors == [("slack", "platform_api")]  # once per failed reply
        assert not bot.observer.rate_limits


async def test_an_expired_stream_continues_in_a_new_message(slack_bot: Any) -> None:
    async with slack_bot(stream_ttl_s=0.15) as bot:
        text = "".join(f"word{i} " for i in range(30))
        bot.llm.script("anthropic", Reply.text(text, chunks=15, delay_s=0.03))
        thread = await bot.mention("slow one")
        assert await bot.answer(thread) == text
        errors = [c.error for c in bot.slack.calls_to("chat.appendStream")]
        assert "message_not_in_streaming_state" in errors
        assert len(bot.slack.answer_messages(CHANNEL, thread)) >= 2


async def test_a_20000_character_answer_is_split_within_slack_limits(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        paragraph = "This is a sentence of a long answer about nothing in particular. " * 10 + "\n\n"
        text = (paragraph * 40)[:20_000]
        bot.llm.script("anthropic", Reply.text(text, chunks=10))
        thread = await bot.mention("write a lot")
        assert await bot.answer(thread) == text
        messages = bot.slack.answer_messages(CHANNEL, thread)
        assert len(messages) == 2 and all(len(m.text) <= 12_000 for m in messages)
        assert messages[0].text.endswith("\n\n")  # cut at a paragraph break


async def test_provider_failure_tells_the_user(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.llm.script("anthropic", *[Reply.server_error(500)] * 4)
        thread = await bot.mention("hi")
        await bot.answer(thread)
        [line] = bot.slack.bot_messages(CHANNEL, thread)
        assert line.text.startswith(":warning: _") and "model" in line.text  # Slack small print
        assert "sk-ant" not in str(bot.slack.calls)
        assert not bot.observer.errors  # the provider failed, not Slack: bot_errors counts it elsewhere


async def test_cut_stream_keeps_partial_text_and_says_so(slack_bot: Any) -> None:
    async with slack_bot(core={"bot_retry_attempts": 1}) as bot:
        bot.llm.script("anthropic", Reply.cut(after_chunks=2, text="partial words then nothing"))
        thread = await bot.mention("hi")
        text = await bot.answer(thread)
        partial, line = text.split("\n\n")
        assert "partial words then nothing".startswith(partial) and partial
        assert line.startswith(":warning: _The answer was cut off")
        assert len(bot.slack.bot_messages(CHANNEL, thread)) == 1  # the note rode on chat.stopStream


async def test_post_and_update_mode_shows_tools_as_context_lines(slack_bot: Any) -> None:
    async with slack_bot(native_streaming=False) as bot:
        bot.llm.script(
            "anthropic",
            Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "2+3"})),
            Reply.text("It is 5.", chunks=2),
        )
        thread = await bot.mention("2+3?")
        await bot.slack.wait_for(
            lambda: bot.slack.answer_text(CHANNEL, thread).endswith("It is 5.") and not bot.adapter._tasks
        )
        messages = bot.slack.bot_messages(CHANNEL, thread)
        assert [m.text for m in bot.slack.answer_messages(CHANNEL, thread)] == ["Let me compute.", "It is 5."]
        tool_line = next(m for m in messages if m not in bot.slack.answer_messages(CHANNEL, thread))
        assert tool_line.text.startswith(":white_check_mark: *calculator*") and "· 5" in tool_line.text
        assert not bot.slack.calls_to("chat.startStream")


# --- HTTP mode --------------------------------------------------------------------------------


async def test_http_mode_answers_signed_events_and_rejects_bad_signatures(slack_bot: Any) -> None:
    async with slack_bot(mode="http") as bot:
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> over http")
        status, _ = await bot.slack.post_event(bot.events_url, mention(event), secret="wrong-secret")
        assert status == 401
        stale = await bot.slack.post_event(bot.events_url, mention(event), timestamp=1_600_000_000)
        assert stale[0] == 401
        assert (await bot.slack.post_event(bot.events_url, mention(event), event_id="EvH"))[0] == 200
        assert (await bot.slack.post_event(bot.events_url, mention(event), event_id="EvH", retry_num=1))[
            0
        ] == 200
        assert await bot.answer(event["ts"]) == "echo: over http"
        assert len(bot.llm.requests) == 1
        status, _ = await bot.slack.post_command(bot.events_url, "usage")
        assert status == 200
        await bot.slack.wait_for(lambda: bot.slack.responses)
        assert bot.slack.responses[0]["response_type"] == "ephemeral"


# --- the presenter's seam: retries, rewrites, storage before the ack -------------------------------


async def test_a_tool_call_before_any_text_starts_the_stream_with_its_task(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.llm.script(
            "anthropic",
            Reply.tool_calls(("calculator", {"expression": "6*7"})),
            Reply.text("The answer is **42**.", chunks=3),
        )
        thread = await bot.mention("what is 6*7?")
        assert await bot.answer(thread) == "The answer is **42**."
        (answer,) = bot.slack.bot_messages(CHANNEL, thread)  # the tool call is inside the stream
        kinds = [chunk["type"] for chunk in answer.chunks]
        assert kinds[0] == "task_update" and "markdown_text" in kinds
        assert len(bot.slack.calls_to("chat.startStream")) == 1


async def test_a_429_storm_on_a_hundred_mentions_still_ends_with_exactly_each_answer(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.slack.fail("chat.startStream", status=429, retry_after=0.2, times=40)
        bot.slack.fail("chat.update", status=429, retry_after=0.2, times=60)
        events = [bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> question {i}") for i in range(100)]
        await asyncio.gather(*(bot.slack.push_event(mention(e)) for e in events))

        def answered() -> bool:
            return not bot.adapter._tasks and all(
                bot.slack.answer_text(CHANNEL, e["ts"]) == f"echo: question {i}" for i, e in enumerate(events)
            )

        await bot.slack.wait_for(answered, within=30)
        assert bot.slack.rate_limited >= 40  # the storm happened
        for i, event in enumerate(events):
            messages = bot.slack.bot_messages(CHANNEL, event["ts"])
            assert [m.text for m in messages if m.text.strip()] == [f"echo: question {i}"]
            assert not any(m.streaming for m in messages)
        shown = [m.text for m in bot.slack.messages.values() if m.bot]
        assert not any("Something went wrong" in t or t.startswith("re:") or ":warning:" in t for t in shown)
        assert not bot.observer.errors
        turns = [await bot.core.store.get_turn(n) for n in range(1, 101)]
        assert all(t is not None and t.delivered_at is not None for t in turns)


async def test_a_rate_limited_thread_status_is_not_retried(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.slack.fail("assistant.threads.setStatus", status=429, retry_after=0.2, times=1_000)
        threads = [await bot.mention(f"q{i}") for i in range(3)]
        for i, thread in enumerate(threads):
            assert await bot.answer(thread) == f"echo: q{i}"
        calls = bot.slack.calls_to("assistant.threads.setStatus")
        # At most once per turn (skipped while Slack asks to wait), never retried by the SDK.
        assert 1 <= len(calls) <= 3 and len({c.args["thread_ts"] for c in calls}) == len(calls)
        assert bot.observer.methods()["assistant.threads.setStatus"] == len(calls)
        assert not bot.observer.errors


async def test_without_a_thread_status_a_placeholder_shows_the_bot_is_on_it(slack_bot: Any) -> None:
    async with slack_bot(native_streaming=False) as bot:
        bot.slack.fail("assistant.threads.setStatus", "missing_scope", times=1_000)  # no agent features
        thread = await bot.mention("hello")
        assert await bot.answer(thread) == "echo: hello"
        [answer] = bot.slack.bot_messages(CHANNEL, thread)
        placeholder = bot.slack.calls_to("chat.postMessage")[0]
        assert placeholder.args["markdown_text"] == "…" and answer.edits >= 1


async def test_server_errors_on_the_final_post_are_retried_until_it_lands(slack_bot: Any) -> None:
    async with slack_bot(native_streaming=False) as bot:
        bot.slack.fail("chat.postMessage", "internal_error", status=500, times=2)
        thread = await bot.mention("hello")
        assert await bot.answer(thread) == "echo: hello"
        posts = bot.slack.calls_to("chat.postMessage")
        assert [p.status for p in posts] == [500, 500, 200]
        assert not bot.observer.errors
        turn = await bot.core.store.get_turn(1)
        assert turn is not None and turn.delivered_at is not None


async def test_a_restarted_model_step_rewrites_the_stream(slack_bot: Any) -> None:
    async with slack_bot(core={"bot_retry_attempts": 2}) as bot:
        bot.llm.script(
            "anthropic",
            Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "2+3"})),
            Reply.cut(after_chunks=2, text="Wrong words that are taken back").with_(delay_s=0.05),
            Reply.text("It is 5.", chunks=2),
        )
        thread = await bot.mention("2+3?")
        assert await bot.answer(thread) == "Let me compute.\n\nIt is 5."
        shown = [m.text for m in bot.slack.bot_messages(CHANNEL, thread)]
        assert not any("Wrong" in t for t in shown)
        rewrites = [c for c in bot.slack.calls_to("chat.update") if not c.error]
        assert rewrites and rewrites[0].args["markdown_text"].startswith("Let me compute.")


async def test_the_event_is_stored_before_it_is_acknowledged(slack_bot: Any) -> None:
    async with slack_bot(mode="http") as bot:
        bot.llm.script("anthropic", Reply.text("Slowly, slowly.", chunks=2, delay_s=0.2))
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> take your time")
        status, _ = await bot.slack.post_event(bot.events_url, mention(event))
        assert status == 200
        # The 200 went out after the core stored the turn with the event's claim.
        key = f"{CHANNEL}:{event['ts']}"
        assert not await bot.core.store.claim_event("slack", key)
        turn = await bot.core.store.get_turn(1)
        assert turn is not None and turn.event_id == key and turn.text == "take your time"
        assert turn.status in ("pending", "running")  # stored first, answered after
        assert await bot.answer(event["ts"]) == "Slowly, slowly."
    async with slack_bot() as bot:  # Socket Mode: the ack waits for the listener in the same way
        other = "C0OTHER"  # the same database, a new fake Slack: its first ts again
        event = bot.slack.user_message(other, f"<@{BOT_USER}> and over the socket")
        await bot.slack.push_event(mention(event))
        assert not await bot.core.store.claim_event("slack", f"{other}:{event['ts']}")
        assert await bot.answer(event["ts"], other) == "echo: and over the socket"


async def test_an_answer_slack_did_not_take_is_delivered_after_a_restart(slack_bot: Any) -> None:
    fake = FakeSlack()
    await fake.start()
    try:
        async with slack_bot(fake=fake, native_streaming=False, thread_context_messages=0) as bot:
            root = fake.user_message(CHANNEL, "a thread", user="U0BOB")["ts"]
            fake.fail("chat.postMessage", "channel_not_found", times=1_000)  # the answer cannot land
            await bot.mention("remember me", thread_ts=root)
            await fake.wait_for(lambda: bot.observer.errors and not bot.adapter._tasks)
            turn = await bot.core.store.get_turn(1)
            assert turn is not None and turn.answer == "echo: remember me" and turn.delivered_at is None
            target = ReplyTarget.from_address(turn.ref, turn.reply_address)
            assert target == ReplyTarget(CHANNEL, root, ALICE, TEAM, False, in_thread=True)
        fake._failures.clear()  # Slack is back; so is the bot, on the same database
        async with slack_bot(fake=fake) as bot:
            calls = len(fake.calls)
            surface = bot.adapter.surface_for(turn.ref, turn.reply_address)
            assert len(fake.calls) == calls  # built without calling Slack
            await surface.private("just for you")
            assert fake.ephemerals[-1]["user"] == ALICE and fake.ephemerals[-1]["thread_ts"] == root
            assert await bot.core.router.recover("slack", bot.adapter.surface_for) == 1
            await fake.wait_for(lambda: fake.answer_text(CHANNEL, root) == "echo: remember me")
            for _ in range(200):
                recovered = await bot.core.store.get_turn(1)
                if recovered is not None and recovered.delivered_at is not None:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the recovered answer was not marked delivered")
            assert [m.thread_ts for m in fake.bot_messages(CHANNEL)] == [root]
    finally:
        await fake.stop()


def test_a_reply_address_round_trips_and_old_turns_fall_back_to_their_ref() -> None:
    target = ReplyTarget("C1", "171.1", "U1", "T2", False, in_thread=True)
    ref = ConversationRef("slack", "T1", "C1", "171.1")
    assert ReplyTarget.from_address(ref, target.address()) == target
    assert ReplyTarget.from_address(ref, "") == ReplyTarget("C1", "171.1", "", "T1", False)
    assert ReplyTarget.from_address(ref, "not json").user == ""
