"""The `post_message` tool end to end: the real adapters (slack-sdk, python-telegram-bot) against the
fake Slack and fake Bot API, reached through `bot.destinations.Posters` as `bot run` wires it, plus the
input and refusal cases the model must get a clear error text for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackSettings
from bot.app import build_tools, open_core
from bot.config import Settings
from bot.destinations import Posters, allowed_channels
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.inbound import ConversationRef
from core.tools.base import ToolContext
from core.tools.builtins import post_message_tool
from core.tools.builtins.post_message import MAX_TEXT_CHARS
from core.tools.policy import ToolPolicy
from core.tools.registry import ToolRegistry
from tests import discordkit
from tests.fakes.discord_server import BOT_TOKEN as DISCORD_TOKEN
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.slack_actions import BOT_USER
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack, mention
from tests.fakes.telegram_server import TOKEN, FakeTelegram
from tests.telegramkit import fake, running_bot

__all__ = ["fake"]

SettingsFor = Callable[..., Settings]
GENERAL, NEWS = "C0GENERAL", "C0NEWS"
SLACK_CTX = ToolContext(ConversationRef("slack", "T0FAKE", GENERAL), "U0ALICE")
ALICE = 42
NEWS_CHAT = -1009876543210


@contextlib.asynccontextmanager
async def slack_running(settings: Settings) -> AsyncIterator[tuple[FakeSlack, SlackAdapter, ToolRegistry]]:
    """The fake Slack, a connected SlackAdapter on the real core whose tools include `post_message`
    through a `Posters` filled with that adapter (as `serve` fills it), and that registry."""
    slack = FakeSlack()
    await slack.start()
    posters = Posters()
    tools = [post_message_tool(posters)]
    slack_settings = SlackSettings(
        _env_file=None,
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        api_url=slack.api_url,
        stream_interval=0.02,
        edit_interval=0.02,
    )
    async with open_core(settings, extra_tools=tools) as core:
        adapter = SlackAdapter(slack_settings, AdapterContext(core.router, HttpServer("127.0.0.1", 0)))
        posters.add_adapters([adapter])
        runner = asyncio.create_task(adapter.run())
        try:
            await slack.wait_for(lambda: adapter.ready() or runner.done())
            yield slack, adapter, ToolRegistry(tools)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await slack.stop()


async def test_slack_the_model_posts_markdown_to_another_channel(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(
        "anthropic",
        Reply.tool_calls(("post_message", {"channel": NEWS, "text": "**v2 is out** <!channel>"})),
        Reply.text("I posted it in #news."),
    )
    settings = settings_for(bot_tool_policy="post_message=allow")
    async with slack_running(settings) as (slack, _, _):
        event = slack.user_message(GENERAL, f"<@{BOT_USER}> announce v2 in #news")
        await slack.push_event(mention(event))
        await slack.wait_for(lambda: "posted it" in slack.answer_text(GENERAL, event["ts"]))
        [posted] = slack.bot_messages(NEWS)
        assert posted.thread_ts is None  # a new message in that channel, not a thread reply
        call = next(c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == NEWS)
        assert call.args["markdown_text"] == "**v2 is out** @channel"  # no mass mention from a model
    second = llm_server.bodies("anthropic")[1]
    result = second["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and "Posted to C0NEWS on slack" in str(result["content"])
    assert not result.get("is_error")


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("not_in_channel", "the bot is not a member of that channel: someone has to invite it first"),
        (
            "channel_not_found",
            "no such channel, or the bot cannot see it (Slack: channel_not_found)",
        ),
        ("is_archived", "that channel is archived"),
        ("fatal_error", "could not post to C0NEWS: chat.postMessage failed: fatal_error"),
    ],
)
async def test_slack_refusals_reach_the_model_as_clear_tool_errors(
    settings_for: SettingsFor, code: str, says: str
) -> None:
    async with slack_running(settings_for()) as (slack, _, tools):
        slack.fail("chat.postMessage", code)
        outcome = await tools.run("post_message", {"channel": NEWS, "text": "hello"}, SLACK_CTX)
        assert outcome.is_error and says in outcome.output, outcome.output
        assert BOT_TOKEN not in outcome.output
        assert not slack.bot_messages(NEWS)


async def test_slack_a_server_error_is_called_temporary(settings_for: SettingsFor) -> None:
    async with slack_running(settings_for()) as (slack, _, tools):
        slack.fail("chat.postMessage", "internal_error", status=500, times=10)
        outcome = await tools.run("post_message", {"channel": NEWS, "text": "hello"}, SLACK_CTX)
        assert outcome.is_error and "temporary failure" in outcome.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"channel": NEWS, "text": "   "}, "text is empty"),
        (
            {"channel": NEWS, "text": "x" * (MAX_TEXT_CHARS + 1)},
            "4,001 characters; the limit is 4,000",
        ),
        ({"channel": " ", "text": "hi"}, "channel is empty"),
        ({"channel": "C0 NEWS", "text": "hi"}, "one channel id"),
        ({"channel": NEWS}, "invalid input"),
        ({"channel": NEWS, "text": "hi", "when": "now"}, "invalid input"),
        ({"channel": 12, "text": "hi"}, "invalid input"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_posted(
    settings_for: SettingsFor, args: dict[str, Any], says: str
) -> None:
    async with slack_running(settings_for()) as (slack, _, tools):
        outcome = await tools.run("post_message", args, SLACK_CTX)
        assert outcome.is_error and says in outcome.output, outcome.output
        assert not slack.calls_to("chat.postMessage")


async def test_a_platform_without_a_poster_and_a_channel_off_the_allow_list_are_refused() -> None:
    sent: list[tuple[str, str]] = []

    async def post(channel: str, text: str) -> None:
        sent.append((channel, text))

    posters = Posters()
    posters.add("slack", post)
    console = ToolContext(ConversationRef("console", "local", "alice"), "alice")
    outcome = await ToolRegistry([post_message_tool(posters)]).run(
        "post_message", {"channel": "general", "text": "hi"}, console
    )
    assert outcome.is_error and "not available on console" in outcome.output
    check = allowed_channels(["slack:C0NEWS", "-1001", "slack:workspace:T0FAKE"])
    tools = ToolRegistry([post_message_tool(posters, check)])
    outcome = await tools.run("post_message", {"channel": "C0RANDOM", "text": "hi"}, SLACK_CTX)
    assert outcome.is_error and "(ALLOWED_CHANNELS)" in outcome.output
    outcome = await tools.run("post_message", {"channel": NEWS, "text": " hi "}, SLACK_CTX)
    assert not outcome.is_error
    assert sent == [(NEWS, "hi")]
    assert check is not None and check("telegram", "-1001:7") and check("discord", "<#-1001>")
    assert allowed_channels([" ", ""]) is None  # no list: no limit


def test_post_message_is_an_acting_tool_offered_by_bot_run_only(settings_for: SettingsFor) -> None:
    settings = settings_for()
    assert "post_message" not in build_tools(settings)  # `bot chat`: no other channel to post to
    registry = build_tools(settings, [post_message_tool(Posters())])  # as `bot run` adds it
    tool = registry.get("post_message")
    assert tool is not None and not tool.read_only
    # An acting tool: with no BOT_TOOL_POLICY rule a person approves each post.
    assert ToolPolicy().decide(tool.name, tool.read_only, SLACK_CTX.ref) == "ask"
    spec = next(s for s in registry.specs() if s.name == "post_message")
    assert "channel id as the platform shows it" in spec.description


async def test_allowed_channels_limit_where_it_posts(settings_for: SettingsFor) -> None:
    posted: list[str] = []

    async def post(channel: str, text: str) -> None:
        posted.append(channel)

    posters = Posters()
    posters.add("slack", post)
    settings = settings_for(allowed_channels="slack:C0GENERAL,C0NEWS")
    tool = post_message_tool(posters, allowed_channels(settings.allowed_channels))  # as `bot run` builds it
    registry = build_tools(settings, [tool])
    for channel in (NEWS, "C0RANDOM"):
        await registry.run("post_message", {"channel": channel, "text": "hi"}, SLACK_CTX)
    assert posted == [NEWS]


# --- Telegram --------------------------------------------------------------------------------------


async def test_telegram_a_post_waits_for_approval_then_reaches_the_channel(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    fake.channel(NEWS_CHAT, username="team_news")
    llm_server.script(
        "anthropic",
        Reply.tool_calls(("post_message", {"channel": "@team_news", "text": "**Standup** moved to 10:00"})),
        Reply.text("Posted in @team_news."),
    )
    posters = Posters()
    async with running_bot(fake, settings_for(), extra_tools=[post_message_tool(posters)]) as bot:
        posters.add_adapters([bot.adapter])
        fake.user_says(fake.private_chat(ALICE), "tell @team_news standup moves to 10")

        def card() -> Any:
            return next((m for m in fake.bot_messages(ALICE) if m.keyboard), None)

        shown = await fake.wait_for(card)
        assert "post_message" in shown.text and "@team_news" in shown.text
        assert not fake.bot_messages(NEWS_CHAT)  # nothing posted before a person approves
        fake.press(ALICE, shown.message_id, fake.user(ALICE, "Alice"), label="Approve")
        await fake.wait_for(lambda: any("Posted in @team_news." in m.text for m in fake.bot_messages(ALICE)))
        [posted] = fake.bot_messages(NEWS_CHAT)
        assert posted.markup == "<b>Standup</b> moved to 10:00" and posted.parse_mode == "HTML"
        decided = fake.messages[(ALICE, shown.message_id)]
        assert decided.keyboard is None and "approved by Alice" in decided.text


async def test_telegram_refusals_reach_the_model_as_clear_tool_errors(
    fake: FakeTelegram, settings_for: SettingsFor
) -> None:
    fake.channel(NEWS_CHAT, username="team_news")
    fake.remove_bot(NEWS_CHAT)
    posters = Posters()
    tools = ToolRegistry([post_message_tool(posters)])
    ctx = ToolContext(ConversationRef("telegram", "", str(ALICE)), str(ALICE))
    async with running_bot(fake, settings_for()) as bot:
        posters.add_adapters([bot.adapter])
        cases = {
            "-1001111111111": "could not post to -1001111111111: BadRequest: Chat not found",
            str(NEWS_CHAT): "Forbidden: bot is not a member of the channel chat",
            "general": "'general' is not a telegram channel id: use a chat id such as -1001234567890",
        }
        for channel, says in cases.items():
            outcome = await tools.run("post_message", {"channel": channel, "text": "hi"}, ctx)
            assert outcome.is_error and says in outcome.output, outcome.output
            assert TOKEN not in outcome.output
        assert not fake.bot_messages(NEWS_CHAT)


# --- Discord ---------------------------------------------------------------------------------------


async def test_discord_posts_to_a_channel_id_and_names_what_is_wrong_otherwise(
    settings_for: SettingsFor,
) -> None:
    server = FakeDiscord()
    await server.start()
    posters = Posters()
    tools = ToolRegistry([post_message_tool(posters)])
    ctx = ToolContext(ConversationRef("discord", "1", "2"), "3")
    try:
        async with discordkit.running_bot(settings_for(), server, sync_commands=False) as bot:
            posters.add_adapters([bot.adapter])
            target = f"<#{server.channel_id}>"  # a pasted channel mention works too
            outcome = await tools.run("post_message", {"channel": target, "text": "**hi** @everyone"}, ctx)
            assert not outcome.is_error, outcome.output
            [posted] = server.bot_messages_in(server.channel_id)
            assert posted["content"].startswith("**hi**")
            cases = {
                "999999999999999999": "Discord answered 404 (10003: Unknown Channel)",
                "#general": "'#general' is not a discord channel id: use the numeric channel id",
            }
            for channel, says in cases.items():
                outcome = await tools.run("post_message", {"channel": channel, "text": "hi"}, ctx)
                assert outcome.is_error and says in outcome.output, outcome.output
                assert DISCORD_TOKEN not in outcome.output
    finally:
        await server.stop()
