"""The Slack answer stream on its own: real slack-sdk against the fake Slack, driven the way the core's
presenter drives it (the whole answer so far on every `show`, then `finish`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import NO_RETRY_METHODS, build_client
from adapters.slack.stream import SlackStream
from adapters.slack.streamkit import StreamGate
from adapters.slack.target import ReplyTarget
from core.events import ToolFinished, ToolStarted
from core.surface import DeliveryError, Note, StreamClosed
from tests.fakes.slack_server import ALICE, BOT_TOKEN, TEAM, FakeSlack

CHANNEL = "C0GENERAL"


@dataclass
class Thread:
    slack: FakeSlack
    client: AsyncWebClient
    gate: StreamGate
    ts: str

    def stream(self, rollover_s: float = 200.0) -> SlackStream:
        target = ReplyTarget(CHANNEL, self.ts, ALICE, TEAM, False)
        return SlackStream(
            self.client, target, self.gate, rollover_s=rollover_s, clock=asyncio.get_running_loop().time
        )

    def texts(self) -> list[str]:
        return [m.text for m in self.slack.answer_messages(CHANNEL, self.ts)]


@pytest.fixture
async def thread() -> AsyncIterator[Thread]:
    fake = FakeSlack()
    await fake.start()
    client, _ = build_client(BOT_TOKEN, fake.api_url, 0, no_retry=NO_RETRY_METHODS)
    try:
        ts = fake.user_message(CHANNEL, "hi")["ts"]
        yield Thread(fake, client, StreamGate(asyncio.get_running_loop().time), ts)
    finally:
        await fake.stop()


async def test_only_what_is_new_is_appended_and_the_notes_ride_on_the_stop(thread: Thread) -> None:
    stream = thread.stream()
    await stream.show("Hello", "")
    await stream.show("Hello, world", "")
    await stream.show("Hello, world", "")  # nothing new: no call
    notes = [Note("info", "I hit the step limit"), Note("footer", "3 in · 2 out")]
    await stream.finish("Hello, world. Bye.", notes)
    await stream.finish("Hello, world. Bye.", notes)  # safe to repeat
    [message] = thread.slack.answer_messages(CHANNEL, thread.ts)
    assert message.text == "Hello, world. Bye.\n\n:information_source: _I hit the step limit_"
    assert message.blocks == [{"type": "context", "elements": [{"type": "mrkdwn", "text": "3 in · 2 out"}]}]
    assert [c.method for c in thread.slack.calls] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]


async def test_a_server_error_on_an_append_is_put_right_before_going_on(thread: Thread) -> None:
    stream = thread.stream()
    await stream.show("Hello ", "")
    thread.slack.fail("chat.appendStream", "internal_error", status=500)
    with pytest.raises(DeliveryError) as failed:
        await stream.show("Hello world, and more", "")
    assert failed.value.transient
    # It may have landed: the message is stopped and rewritten to what is known, then the rest follows.
    await stream.show("Hello world, and more", "")
    await stream.finish("Hello world, and more.", [])
    assert thread.texts() == ["Hello ", "world, and more."]
    [rewrite] = thread.slack.calls_to("chat.update")
    assert rewrite.args["markdown_text"] == "Hello "


async def test_a_final_stop_that_is_rate_limited_is_retried_as_is(thread: Thread) -> None:
    stream = thread.stream()
    await stream.show("Almost there", "")
    thread.slack.fail("chat.stopStream", status=429, retry_after=0.2)
    with pytest.raises(DeliveryError) as limited:
        await stream.finish("Almost there. Done.", [])
    assert limited.value.transient and limited.value.retry_after == 0.2
    await stream.finish("Almost there. Done.", [])
    assert thread.texts() == ["Almost there. Done."] and not thread.slack.calls_to("chat.update")


async def test_a_restarted_step_deletes_and_rewrites_what_it_took_back(thread: Thread) -> None:
    stream = thread.stream()
    first = "First paragraph. " * 400  # 6,800 characters
    taken_back = "Second paragraph, cut off half way " * 200  # 7,000: past the limit, a second message
    await stream.show(first + taken_back, "")
    assert len(thread.texts()) == 2
    await stream.show(first + "The retr", "")
    await stream.finish(first + "The retried step.", [])
    texts = thread.texts()
    assert "".join(texts) == first + "The retried step." and len(texts) == 2
    assert texts[0] == first  # rewritten back to the kept text
    assert len(thread.slack.deleted) == 1 and all(len(t) <= 12_000 for t in texts)


async def test_a_rewrite_ends_between_words(thread: Thread) -> None:
    stream = thread.stream()
    await stream.show("Hello wonderful", "")
    await stream.show("Hello world", "")  # the words agree up to "Hello wo"
    await stream.finish("Hello world!", [])
    assert thread.texts() == ["Hello ", "world!"]


async def test_a_code_block_cut_at_the_limit_is_closed_and_reopened(thread: Thread) -> None:
    stream = thread.stream()
    code = "```python\n" + "x = 1\n" * 2_500 + "```\nDone."
    await stream.show(code, "")
    await stream.finish(code, [])
    first, second = thread.texts()
    assert first.endswith("\n```") and second.startswith("```python\n")
    assert first.removesuffix("\n```") + second.removeprefix("```python\n") == code
    assert len(first) <= 12_000


async def test_an_old_stream_message_is_ended_and_the_answer_goes_on_in_a_new_one(thread: Thread) -> None:
    stream = thread.stream(rollover_s=0.05)
    await stream.show("one ", "")
    await asyncio.sleep(0.1)
    await stream.show("one two ", "")
    await stream.finish("one two three", [])
    assert thread.texts() == ["one ", "two three"]
    assert not any(m.streaming for m in thread.slack.answer_messages(CHANNEL, thread.ts))


async def test_tools_are_task_updates_inside_the_stream(thread: Thread) -> None:
    stream = thread.stream()
    await stream.show("Let me check.", "")
    assert await stream.tool_started(ToolStarted("call1", "clock", {"zone": "UTC"}))
    assert await stream.tool_finished(ToolFinished("call1", "clock", "12:00", False, 0.2))
    await stream.finish("Let me check. It is noon.", [])
    [message] = thread.slack.answer_messages(CHANNEL, thread.ts)
    tasks = [c for c in message.chunks if c["type"] == "task_update"]
    assert [t["status"] for t in tasks] == ["in_progress", "complete"] and tasks[1]["output"] == "12:00"
    assert message.text == "Let me check. It is noon."


async def test_a_rate_limited_start_closes_streams_for_everyone_until_retry_after(thread: Thread) -> None:
    thread.slack.fail("chat.startStream", status=429, retry_after=0.2)
    with pytest.raises(StreamClosed) as closed:
        await thread.stream().show("Hi", "")
    assert closed.value.shown == ""
    other = thread.stream()
    assert not await other.tool_started(ToolStarted("c", "clock", {}))  # no stream to put it in
    with pytest.raises(StreamClosed):
        await thread.stream().finish("Hi", [])
    assert len(thread.slack.calls_to("chat.startStream")) == 1  # the gate held the others back
    await asyncio.sleep(0.25)
    later = thread.stream()
    await later.show("Hi", "")
    await later.finish("Hi", [])
    assert thread.texts() == ["Hi"]


async def test_only_notes_and_no_text_are_left_to_a_post(thread: Thread) -> None:
    stream = thread.stream()
    with pytest.raises(StreamClosed) as closed:
        await stream.finish("", [Note("failure", "The model is down")])
    assert closed.value.shown == "" and not thread.slack.calls
