"""Buttons on Slack end to end: the real slack-bolt / slack-sdk against the fake Slack, the real core
behind it. Answers carry Slack's feedback buttons and a regenerate button; an acting tool asks on a
Block Kit card; presses arrive as `block_actions` payloads (Socket Mode and HTTP) and are answered
privately with chat.postEphemeral."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.slack.adapter import SlackAdapter
from adapters.slack.buttons import button_blocks, parse_press
from adapters.slack.settings import SlackSettings
from bot.app import Core, open_core
from bot.config import Settings
from bot.http import HttpServer
from core.actions import ApprovalAction, FeedbackAction, RegenerateAction, answer_buttons, parse_action
from core.adapter import AdapterContext
from core.inbound import ConversationRef
from core.tools.base import Tool
from tests.approvalkit import Notes
from tests.corekit import RecordingObserver
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.slack_actions import buttons_of
from tests.fakes.slack_server import (
    ALICE,
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    Message,
    mention,
)
from tests.fakes.slack_validate import SlackError, check_blocks

CHANNEL = "C0GENERAL"
BOB = "U0BOB"
MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "slack" / "manifest.yaml"


@dataclass
class Bot:
    slack: FakeSlack
    llm: FakeLLMServer
    adapter: SlackAdapter
    http: HttpServer
    core: Core

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}/slack/events"

    async def mention(self, text: str) -> str:
        event = self.slack.user_message(CHANNEL, f"<@{BOT_USER}> {text}")
        await self.slack.push_event(mention(event))
        return str(event["ts"])

    def idle(self) -> bool:
        return not self.adapter._tasks and not any(m.streaming for m in self.slack.messages.values())

    def with_button(self, thread: str, kind: type) -> Message | None:
        """The bot's last message in `thread` showing a button of `kind` (an action class)."""
        for message in reversed(self.slack.bot_messages(CHANNEL, thread)):
            if any(isinstance(parse_action(value), kind) for value in buttons_of(message)):
                return message
        return None

    async def press(self, message: Message, kind: type, user: str = ALICE, *, http: bool = False) -> None:
        value = next(v for v in buttons_of(message) if isinstance(parse_action(v), kind))
        if kind is FeedbackAction:  # the 👍 half
            value = next(v for v in buttons_of(message) if v.endswith(":+"))
        payload = self.slack.click_payload(CHANNEL, message.ts, value, user=user, user_name=user.lower())
        if http:
            assert (await self.slack.post_click(self.events_url, payload))[0] == 200
        else:
            await self.slack.push_click(payload)

    def private_to(self, user: str) -> list[str]:
        return [e["text"] for e in self.slack.ephemerals if e["user"] == user]


@pytest.fixture
def slack_bot(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> Callable[..., contextlib.AbstractAsyncContextManager[Bot]]:
    @contextlib.asynccontextmanager
    async def start(
        mode: str = "socket", tools: Sequence[Tool] = (), core: dict[str, Any] | None = None, **slack: Any
    ) -> AsyncIterator[Bot]:
        fake = FakeSlack()
        await fake.start()
        values: dict[str, Any] = {
            "bot_token": BOT_TOKEN,
            "api_url": fake.api_url,
            "stream_interval": 0.02,
            "edit_interval": 0.02,
            "mode": mode,
        }
        values |= {"app_token": APP_TOKEN} if mode == "socket" else {"signing_secret": SIGNING_SECRET}
        settings = SlackSettings(_env_file=None, **(values | slack))
        http = HttpServer("127.0.0.1", 0)
        try:
            async with open_core(settings_for(**(core or {})), extra_tools=tools) as wired:
                adapter = SlackAdapter(
                    settings, AdapterContext(wired.router, http, observer=RecordingObserver())
                )
                await http.start()
                runner = asyncio.create_task(adapter.run())
                try:
                    await fake.wait_for(lambda: adapter.ready() or runner.done())
                    yield Bot(fake, llm_server, adapter, http, wired)
                finally:
                    runner.cancel()
                    await asyncio.gather(runner, return_exceptions=True)
                    await http.stop()
        finally:
            await fake.stop()

    return start


def script_tool_then_answer(llm: FakeLLMServer, text: str = "hello team") -> None:
    llm.script(
        "anthropic",
        Reply.text_then_tools("I will post it.", ("post_note", {"text": text})),
        Reply.text("Done: I posted the note."),
    )


def block_types(message: Message) -> list[str]:
    return [b["type"] for b in message.blocks or []]


# --- rendering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("native", [True, False])
async def test_an_answer_carries_the_feedback_row(slack_bot: Any, native: bool) -> None:
    async with slack_bot(native_streaming=native) as bot:
        thread = await bot.mention("hello")
        await bot.slack.wait_for(lambda: bot.with_button(thread, RegenerateAction) and bot.idle())
        [answer] = bot.slack.answer_messages(CHANNEL, thread)
        assert answer.text == "echo: hello"
        turn = await bot.core.store.get_turn(1)
        assert turn is not None
        assert buttons_of(answer) == [f"fb:{turn.id}:+", f"fb:{turn.id}:-", f"rg:{turn.id}"]
        if native:  # appended under the streamed text by chat.stopStream
            [stop] = bot.slack.calls_to("chat.stopStream")
            assert [b["type"] for b in stop.args["blocks"]] == ["context_actions", "actions"]
        else:  # the text as a markdown block, the rows under it, the text as the fallback
            assert block_types(answer) == ["markdown", "context_actions", "actions"]
            assert answer.blocks is not None and answer.blocks[0]["text"] == "echo: hello"
        feedback = (answer.blocks or [])[-2]["elements"][0]
        assert feedback["type"] == "feedback_buttons"
        assert feedback["positive_button"]["text"]["text"] == "👍"
        regenerate = (answer.blocks or [])[-1]["elements"][0]
        assert regenerate["type"] == "button" and "style" not in regenerate


async def test_answer_buttons_can_be_turned_off(slack_bot: Any) -> None:
    async with slack_bot(core={"bot_answer_buttons": False}, native_streaming=False) as bot:
        thread = await bot.mention("hello")
        await bot.slack.wait_for(
            lambda: bot.slack.answer_text(CHANNEL, thread) == "echo: hello" and bot.idle()
        )
        [answer] = bot.slack.answer_messages(CHANNEL, thread)
        assert buttons_of(answer) == [] and "markdown_text" in bot.slack.calls_to("chat.postMessage")[0].args


def test_the_fake_refuses_what_slack_refuses() -> None:
    good = button_blocks(answer_buttons(7))
    assert check_blocks(good) == good
    long_label = [
        {
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "x" * 76}}],
        }
    ]
    twice = [{"type": "actions", "elements": [dict(good[1]["elements"][0])] * 2}]
    no_value = [
        {
            **good[0],
            "elements": [
                {
                    **good[0]["elements"][0],
                    "negative_button": {"text": good[0]["elements"][0]["negative_button"]["text"]},
                }
            ],
        }
    ]
    icon = [
        {
            "type": "context_actions",
            "elements": [
                {"type": "icon_button", "icon": "refresh", "text": {"type": "plain_text", "text": "Again"}}
            ],
        }
    ]
    too_many = [
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": str(i)}, "action_id": f"a{i}"}
                for i in range(26)
            ],
        }
    ]
    big_value = [
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "ok"}, "value": "v" * 2001}
            ],
        }
    ]
    for blocks in (long_label, twice, no_value, icon, too_many, big_value):
        with pytest.raises(SlackError):
            check_blocks(blocks)


def test_a_press_outside_a_message_is_ignored() -> None:
    assert (
        parse_press({"type": "block_actions", "actions": [{"action_id": "bot_action_0", "value": "rg:1"}]})
        is None
    )
    assert parse_press({"type": "block_actions", "container": {"type": "view"}, "actions": []}) is None


def test_the_manifest_enables_interactivity() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert "chat:write" in manifest["oauth_config"]["scopes"]["bot"]  # chat.postEphemeral, chat.update


# --- approvals --------------------------------------------------------------------------------------


async def test_a_card_asks_and_only_the_asker_decides_once(slack_bot: Any) -> None:
    notes = Notes()
    async with slack_bot(tools=[notes.tool()]) as bot:
        script_tool_then_answer(bot.llm)
        thread = await bot.mention("post a note please")
        card = await bot.slack.wait_for(lambda: bot.with_button(thread, ApprovalAction))
        assert "post_note" in card.text and "hello team" in card.text
        [actions] = [b for b in card.blocks or [] if b["type"] == "actions"]
        assert [(e["text"]["text"], e.get("style")) for e in actions["elements"]] == [
            ("Approve", "primary"),
            ("Deny", "danger"),
            ("Always allow here", None),
        ]
        assert len({e["action_id"] for e in actions["elements"]}) == 3

        await bot.press(card, ApprovalAction, BOB)  # not the asker, not an admin
        await bot.slack.wait_for(lambda: bot.private_to(BOB))
        assert "Only the person who asked" in bot.private_to(BOB)[0]
        [refusal] = [e for e in bot.slack.ephemerals if e["user"] == BOB]
        assert refusal["channel"] == CHANNEL and refusal["thread_ts"] == thread
        assert bot.with_button(thread, ApprovalAction) is card and notes.posted == []

        approve = bot.slack.click_payload(CHANNEL, card.ts, buttons_of(card)[0], user=ALICE)
        await bot.slack.push_click(approve)
        await bot.slack.push_click(approve)  # the same press delivered again
        await bot.slack.wait_for(lambda: "Done: I posted the note." in bot.slack.answer_text(CHANNEL, thread))
        await bot.slack.wait_for(bot.idle)
        assert notes.posted == ["hello team"]
        assert bot.with_button(thread, ApprovalAction) is None  # the card lost its buttons
        assert "approved by alice" in card.text and block_types(card) == ["markdown"]
        assert [t for t in bot.private_to(ALICE)] == ["Approved: `post_note` runs now."]

        await bot.slack.push_click(approve | {"trigger_id": "another.press"})  # from a stale screen
        await bot.slack.wait_for(lambda: len(bot.private_to(ALICE)) == 2)
        assert "Already decided" in bot.private_to(ALICE)[1] and notes.posted == ["hello team"]
        answers = bot.slack.bot_messages(CHANNEL, thread)
        assert all(m.thread_ts == thread for m in answers)  # the answer went on in the same thread
        assert answers[-1].text.endswith("Done: I posted the note.")


async def test_a_press_over_http_denies(slack_bot: Any) -> None:
    notes = Notes()
    async with slack_bot(mode="http", tools=[notes.tool()]) as bot:
        script_tool_then_answer(bot.llm)
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> post a note")
        assert (await bot.slack.post_event(bot.events_url, mention(event)))[0] == 200
        card = await bot.slack.wait_for(lambda: bot.with_button(event["ts"], ApprovalAction))
        deny = bot.slack.click_payload(CHANNEL, card.ts, buttons_of(card)[1], user=ALICE)
        status, _ = await bot.slack.post_click(bot.events_url, deny, secret="wrong-secret")
        assert status == 401 and notes.posted == []
        assert (await bot.slack.post_click(bot.events_url, deny))[0] == 200
        await bot.slack.wait_for(lambda: bot.private_to(ALICE) and bot.idle())
        assert bot.private_to(ALICE) == ["Denied: `post_note` will not run."]
        assert notes.posted == [] and "denied by alice" in card.text


# --- feedback and regenerate ------------------------------------------------------------------------


async def test_a_thumbs_up_is_stored(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        thread = await bot.mention("rate me")
        answer = await bot.slack.wait_for(lambda: bot.with_button(thread, FeedbackAction))
        payload = bot.slack.click_payload(CHANNEL, answer.ts, buttons_of(answer)[0], user=BOB)
        press = parse_press(payload)
        assert press is not None and press.click.message_id == answer.ts  # the form post() returned
        assert press.click.ref == ConversationRef("slack", TEAM, CHANNEL, thread)  # as the question's
        assert (press.channel, press.user, press.thread_ts) == (CHANNEL, BOB, thread)
        await bot.slack.push_click(payload)
        await bot.slack.wait_for(lambda: bot.private_to(BOB))
        assert "👍" in bot.private_to(BOB)[0]
        now = datetime.now(UTC)
        totals = await bot.core.store.rating_totals(
            now - timedelta(hours=1), now + timedelta(hours=1), "channel"
        )
        assert [(t.key, t.up, t.down) for t in totals] == [(f"slack:{CHANNEL}", 1, 0)]
        turn = await bot.core.store.get_turn(1)
        assert turn is not None and turn.ref == ConversationRef("slack", TEAM, CHANNEL, thread)


async def test_regenerate_posts_a_new_answer_in_the_thread(slack_bot: Any) -> None:
    async with slack_bot(native_streaming=False) as bot:
        bot.llm.script("anthropic", Reply.text("First answer."), Reply.text("Second answer."))
        thread = await bot.mention("tell me something")
        first = await bot.slack.wait_for(lambda: bot.with_button(thread, RegenerateAction))
        await bot.press(first, RegenerateAction, BOB)  # not bob's question
        await bot.slack.wait_for(lambda: bot.private_to(BOB))
        assert "Only the person who asked" in bot.private_to(BOB)[0]
        await bot.press(first, RegenerateAction, http=False)
        await bot.slack.wait_for(lambda: bot.slack.answer_text(CHANNEL, thread).endswith("Second answer."))
        await asyncio.wait_for(bot.core.router.wait_idle(), 10)  # the new answer runs in the core
        texts = [m.text for m in bot.slack.answer_messages(CHANNEL, thread)]
        assert texts == ["First answer.", "Second answer."]
        second = bot.with_button(thread, RegenerateAction)
        assert second is not None and second.ts != first.ts and second.thread_ts == thread
        assert bot.private_to(ALICE) == ["Writing another answer…"]
