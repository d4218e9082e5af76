"""Slack payload parsing and the stream splitting rules: pure functions, recorded payload shapes."""

from __future__ import annotations

from adapters.slack.inbound import (
    as_command_text,
    defuse_mass_mentions,
    parse_message_event,
    slash_command_text,
    strip_mention,
    thread_context,
)
from adapters.slack.streamkit import cut_point, open_fence

BOT = "U0BOT"
BODY = {"team_id": "T1", "event_id": "Ev1"}
MENTION = {  # as Slack sends it (trimmed): https://docs.slack.dev/reference/events/app_mention
    "type": "app_mention",
    "user": "U0ALICE",
    "text": "<@U0BOT> what is 6*7?",
    "ts": "1700000001.000100",
    "channel": "C1",
    "team": "T1",
    "event_ts": "1700000001.000100",
}


def test_a_top_level_mention_opens_a_thread_under_itself() -> None:
    incoming = parse_message_event(BODY, MENTION, BOT)
    assert incoming is not None
    assert incoming.text == "what is 6*7?" and incoming.mentioned and not incoming.is_dm
    assert incoming.root == MENTION["ts"] and not incoming.in_existing_thread
    assert incoming.ref.key == "slack|T1|C1|1700000001.000100"
    assert incoming.inbound().event_id == "C1:1700000001.000100"  # same for app_mention and message


def test_thread_replies_dms_and_bots() -> None:
    reply = parse_message_event(BODY, {**MENTION, "type": "message", "thread_ts": "1700000000.000100"}, BOT)
    assert reply is not None and reply.in_existing_thread and reply.root == "1700000000.000100"
    dm = parse_message_event(BODY, {**MENTION, "type": "message", "channel": "D1", "channel_type": "im"}, BOT)
    assert dm is not None and dm.is_dm
    assert parse_message_event(BODY, {**MENTION, "bot_id": "B2"}, BOT) is None
    assert parse_message_event(BODY, {**MENTION, "user": BOT}, BOT) is None
    assert parse_message_event(BODY, {**MENTION, "subtype": "message_changed"}, BOT) is None
    assert parse_message_event(BODY, {**MENTION, "subtype": "file_share"}, BOT) is not None
    assert parse_message_event(BODY, {"type": "message", "text": "no user"}, BOT) is None


def test_mentions_and_command_words() -> None:
    assert strip_mention("<@U0BOT|bot> hi <@U0BOB>", BOT) == "hi <@U0BOB>"
    assert as_command_text("") == "/help"
    assert as_command_text("New") == "/new"
    assert as_command_text("model openai:gpt-4o") == "/model openai:gpt-4o"
    assert as_command_text("help me write a poem") == "help me write a poem"
    assert as_command_text("stop the presses") == "stop the presses"
    assert slash_command_text("  ") == "/help" and slash_command_text("usage") == "/usage"
    assert defuse_mass_mentions("ping <!channel> and <!here|here>") == "ping @channel and @here"


def test_thread_context_keeps_earlier_messages_in_order() -> None:
    messages = [
        {"ts": "1.0", "user": "U0BOB", "text": "deploy failed"},
        {"ts": "2.0", "user": "U0BOT", "bot_id": "B1", "text": "earlier bot answer"},
        {"ts": "3.0", "user": "U0ALICE", "text": "<@U0BOT> why?"},
        {"ts": "4.0", "user": "U0BOB", "text": "later"},
    ]
    context = thread_context(messages, "3.0", BOT, limit=10)
    assert context.splitlines()[1:] == ["<@U0BOB>: deploy failed", "bot: earlier bot answer"]
    assert thread_context(messages, "3.0", BOT, limit=1).splitlines()[1:] == ["bot: earlier bot answer"]
    assert thread_context(messages, "1.0", BOT, limit=10) == ""


def test_stream_messages_end_at_sensible_boundaries() -> None:
    text = "first paragraph here.\n\nsecond paragraph that is longer than the room"
    assert text[: cut_point(text, 40)] == "first paragraph here.\n\n"
    assert cut_point("x" * 100, 40) == 40
    assert open_fence("text\n```python\ncode") == "```python"
    assert open_fence("```\ncode\n```\n") is None
