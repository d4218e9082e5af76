"""Bad input on Slack never hurts the bot: malformed and odd events, text Python cannot encode, garbage
on the socket or the events endpoint, and no start-up warning that is not the user's problem. The real
slack-bolt / slack-sdk against the fake Slack, the real core behind it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from tests.fakes.slack_server import ALICE, APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack, mention
from tests.test_slack_adapter import CHANNEL, DM, slack_bot

__all__ = ["slack_bot"]


def dm_event(slack: FakeSlack, text: Any = "", **changes: Any) -> dict[str, Any]:
    """A DM `message` event (stored in the fake, so its thread exists), with fields changed or removed
    (a value of None removes the field; `text` may be anything, as a malformed event's)."""
    event = slack.user_message(DM, "") | {"text": text} | changes
    return {key: value for key, value in event.items() if value is not None}


def answers_in(slack: FakeSlack, thread_ts: str) -> str:
    return slack.answer_text(DM, thread_ts)


async def test_no_bolt_warning_when_slack_bot_token_is_in_the_environment(
    slack_bot: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Docker and systemd set SLACK_BOT_TOKEN in the environment, which Bolt reads by itself.
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    caplog.set_level(logging.WARNING)
    async with slack_bot() as bot:
        event = bot.slack.user_message(DM, "hello")
        await bot.slack.push_event(event)
        assert await bot.answer(event["ts"], DM) == "echo: hello"  # Bolt's client talks to the fake
        assert bot.adapter.client is bot.adapter.app.client
    assert not [r for r in caplog.records if r.name.startswith("slack")]


async def test_malformed_and_odd_events_are_acknowledged_and_never_lose_the_next_message(
    slack_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with slack_bot() as bot:
        slack = bot.slack
        no_text = dm_event(slack, text=None)  # a DM with no text and no files: help, not the model
        not_text = dm_event(slack, text={"rich": "object"})  # text that is not a string: no words
        ignored = [
            dm_event(slack, "someone", user=None),  # no sender
            dm_event(slack, "no channel", channel=None),
            dm_event(slack, "odd ts", ts=1700000000.5),
            dm_event(
                slack,
                subtype="message_changed",
                message={"type": "message", "user": ALICE, "text": "edited", "ts": "1.000001"},
                previous_message={"type": "message", "user": ALICE, "text": "before", "ts": "1.000001"},
            ),
            dm_event(slack, subtype="message_deleted", deleted_ts="1.000001"),
        ]
        odd_thread = {**mention(slack.user_message(CHANNEL, f"<@{BOT_USER}> hi")), "thread_ts": 17}
        odd_files = dm_event(slack, "look", subtype="file_share", files=["x", {"id": 3}, None])
        for event in [no_text, not_text, *ignored, odd_thread, odd_files]:
            assert await slack.push_event(event)  # each one acknowledged (else Slack redelivers)
        last = slack.user_message(DM, "still listening?")
        await slack.push_event(last)
        assert await bot.answer(last["ts"], DM) == "echo: still listening?"
        await bot.answer(odd_files["ts"], DM)
        assert answers_in(slack, no_text["ts"]).startswith("I answer questions")
        assert answers_in(slack, not_text["ts"]).startswith("I answer questions")
        assert answers_in(slack, odd_files["ts"]).startswith("echo: look")
        assert await bot.answer(odd_thread["ts"]) == "echo: hi"  # a bad thread_ts: a thread of its own
        model_saw = [str(body["messages"][-1]) for body in bot.llm.bodies("anthropic")]
    assert len(model_saw) == 3 and not any("rich" in t or "edited" in t for t in model_saw)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_unencodable_and_huge_text_is_answered_and_stored(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        slack = bot.slack
        # JSON can carry "\ud800" (half a UTF-16 pair) and NUL: strings no database stores as they are.
        broken = dm_event(slack, "half \ud800 a pair and a \x00 NUL")
        huge = dm_event(slack, "y" * 100_000)
        for event in (broken, huge):
            await slack.push_event(event)
        answer = await bot.answer(broken["ts"], DM)
        assert answer.startswith("echo: half") and answer.endswith("NUL")
        await bot.answer(huge["ts"], DM)
        for event in (broken, huge):  # stored with the event's claim: a redelivery is not answered again
            assert not await bot.core.store.claim_event("slack", f"{DM}:{event['ts']}")
        assert len(bot.llm.requests) == 2


async def test_garbage_on_the_socket_and_the_events_endpoint_does_no_harm(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        slack = bot.slack
        assert slack._ws is not None
        for frame in (
            "not json",
            "[]",
            json.dumps({"type": "events_api", "envelope_id": "e1"}),
            json.dumps({"type": "events_api", "envelope_id": "e2", "payload": {"type": "event_callback"}}),
            json.dumps({"type": "slash_commands", "envelope_id": "e3", "payload": {}}),
        ):
            await slack._ws.send_str(frame)
        event = slack.user_message(DM, "after the garbage")
        await slack.push_event(event)
        assert await bot.answer(event["ts"], DM) == "echo: after the garbage"
    async with slack_bot(mode="http") as bot:
        reader, writer = await asyncio.open_connection("127.0.0.1", bot.http.port)
        body = b'{"text": "\xff\xfe not UTF-8"}'
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status = await reader.readline()
        writer.close()
        await writer.wait_closed()
        assert status.split()[1] == b"400"
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> and then a real one")
        assert (await bot.slack.post_event(bot.events_url, mention(event)))[0] == 200
        assert await bot.answer(event["ts"]) == "echo: and then a real one"
