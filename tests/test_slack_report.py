"""Reports, announcements and cost footers in Slack: the real slack-sdk (files_upload_v2 included)
against the fake Slack on 127.0.0.1. Reports are `DailyReport` literals, independent of the builder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError

from adapters.slack.adapter import SlackAdapter
from adapters.slack.client import NO_RETRY_METHODS, build_client
from adapters.slack.report import report_blocks
from adapters.slack.settings import SlackSettings
from adapters.slack.streamkit import StreamGate
from adapters.slack.surface import SlackSurface
from adapters.slack.target import ReplyTarget
from bot.app import open_core
from bot.config import Settings
from bot.http import HttpServer
from core.adapter import AdapterContext
from core.events import AgentEvent, TextDelta, TurnDone
from core.present import Presenter
from core.reports.model import (
    Breakdown,
    BudgetStatus,
    DailyReport,
    DayPoint,
    RatingRow,
    ToolStats,
    Totals,
)
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.slack_server import ALICE, APP_TOKEN, BOT_TOKEN, BOT_USER, TEAM, FakeSlack, mention

REPORTS = "C0REPORTS"
CHANNEL = "C0GENERAL"
# A real 1x1 PNG: the fake stores bytes as given, the test checks they arrive whole.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


def totals(cost: float, requests: int, tokens: int = 1000) -> Totals:
    return Totals(requests, tokens, tokens // 4, tokens * 2, tokens // 10, cost, 0, cost / 10)


REPORT = DailyReport(
    day=date(2026, 3, 3),
    timezone="Europe/Berlin",
    totals=Totals(42, 120_000, 30_500, 400_000, 12_000, 12.3456, 2, 1.08),
    conversations=17,
    active_users=5,
    provider_errors=3,
    previous=totals(10.0, 40),
    by_platform=[Breakdown("slack", totals(9.0, 30)), Breakdown("telegram", totals(3.3456, 12))],
    by_model=[Breakdown("anthropic:claude-sonnet-5-5", totals(12.3456, 42))],
    by_channel=[
        Breakdown("slack:C0GENERAL", totals(9.0, 30)),
        Breakdown("telegram:-100123", totals(3.0, 12)),
    ],
    top_users=[Breakdown(f"slack:U0USER{i}", totals(2.0 - i / 10, 8 - i)) for i in range(7)],
    tools=[ToolStats("calculator", 12, 1), ToolStats("fetch_url", 4, 0)],
    budget=BudgetStatus(daily_cap_usd=15.0, spent_usd=12.3456, users_over_cap=1),
    history=[DayPoint(date(2026, 3, 3), {"slack": 9.0}, {"slack": 1000})],
)
EMPTY = DailyReport(date(2026, 3, 4), "UTC", Totals(), 0, 0, 0, None)


@dataclass
class Bot:
    slack: FakeSlack
    llm: FakeLLMServer
    adapter: SlackAdapter


@pytest.fixture
def slack_bot(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> Callable[..., contextlib.AbstractAsyncContextManager[Bot]]:
    @contextlib.asynccontextmanager
    async def start(core: dict[str, Any] | None = None, **slack: Any) -> AsyncIterator[Bot]:
        fake = FakeSlack()
        await fake.start()
        values: dict[str, Any] = {
            "bot_token": BOT_TOKEN,
            "app_token": APP_TOKEN,
            "api_url": fake.api_url,
            "stream_interval": 0.02,
            "edit_interval": 0.02,
        }
        settings = SlackSettings(_env_file=None, **(values | slack))  # type: ignore[call-arg]
        async with open_core(settings_for(**(core or {}))) as wired:
            adapter = SlackAdapter(settings, AdapterContext(wired.router, HttpServer("127.0.0.1", 0)))
            runner = asyncio.create_task(adapter.run())
            try:
                await fake.wait_for(lambda: adapter.ready() or runner.done())
                yield Bot(fake, llm_server, adapter)
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                await fake.stop()

    return start


def texts(blocks: list[dict[str, Any]]) -> str:
    """All visible text of a message's blocks, in order."""
    out: list[str] = []
    for block in blocks:
        if block.get("text"):
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return "\n".join(out)


# --- reports --------------------------------------------------------------------------------------


async def test_report_is_block_kit_with_the_chart_uploaded_into_the_channel(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        await bot.adapter.post_report(REPORTS, REPORT, PNG)
        [post] = bot.slack.calls_to("chat.postMessage")
        assert post.args["channel"] == REPORTS
        assert post.args["text"].startswith("Usage report for 2026-03-03: $12.35, 42 requests")
        [message] = bot.slack.bot_messages(REPORTS)
        blocks = message.blocks or []
        assert blocks[0] == {
            "type": "header",
            "text": {"type": "plain_text", "text": "Daily usage · Tue 03 Mar 2026", "emoji": True},
        }
        assert [b["type"] for b in blocks] == [
            "header", "section", "divider", "section", "section", "section", "section", "context",
        ]  # fmt: skip
        shown = texts(blocks)
        for expected in (
            "*Cost*\n$12.35 (▲ 23% vs day before)",
            "*Requests*\n42 (▲ 5% vs day before)",
            "*Conversations*\n17",
            "*Active users*\n5",
            "*Tokens in / out*\n120.0k / 30.5k",
            "*Cache read / write*\n400.0k / 12.0k",
            "*Saved by caching*\n$1.08",
            "*Provider errors*\n3",
            "• slack: $9.00 · 30 req",
            "• anthropic:claude-sonnet-5-5: $12.35",
            "• <#C0GENERAL>: $9.00",  # a Slack channel is a link; others stay text
            "• telegram:-100123: $3.00",
            "• `U0USER0`: $2.00",  # users are never @-mentioned: no daily pings
            "_… and 2 more_",
            "`calculator` 12 (1 failed), `fetch_url` 4",
            ":large_orange_circle: *Budget:* $12.35 of $15.00 (82%) · 1 user hit their own cap",
            "Day 2026-03-03 in Europe/Berlin · 2 requests with unknown prices not in the cost",
        ):
            assert expected in shown, expected
        assert "<@" not in shown

        [ticket] = bot.slack.calls_to("files.getUploadURLExternal")
        assert ticket.args["filename"] == "usage-2026-03-03.png" and ticket.args["length"] == str(len(PNG))
        [chart] = bot.slack.shared_files(REPORTS)
        assert chart.data == PNG and chart.title == "Usage, 14 days to 2026-03-03"
        assert chart.alt_txt and chart.thread_ts is None
        order = [c.method for c in bot.slack.calls if c.method.startswith(("chat.", "files."))]
        assert order == ["chat.postMessage", "files.getUploadURLExternal", "files.completeUploadExternal"]


async def test_empty_day_and_no_chart_posts_one_short_message(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        await bot.adapter.post_report(REPORTS, EMPTY, None)
        [message] = bot.slack.bot_messages(REPORTS)
        assert message.text == "Usage report for 2026-03-04: no activity."
        assert "No activity that day." in texts(message.blocks or [])
        assert not bot.slack.calls_to("files.getUploadURLExternal") and not bot.slack.files


async def test_the_days_ratings_are_in_the_report(slack_bot: Any) -> None:
    rated = replace(
        REPORT,
        ratings_by_model=[RatingRow("anthropic:claude-sonnet-5-5", 3, 1)],
        ratings_by_channel=[RatingRow("slack:C0GENERAL", 3, 1)],
    )
    async with slack_bot() as bot:
        await bot.adapter.post_report(REPORTS, rated, None)
        [message] = bot.slack.bot_messages(REPORTS)  # the fake checked the blocks as Slack does
        shown = texts(message.blocks or [])
        assert ":thumbsup: *Answer ratings*" in shown
        assert "• By model `anthropic:claude-sonnet-5-5`: 👍 3 · 👎 1 (75% 👍)" in shown
        assert "• In `slack:C0GENERAL`: 👍 3 · 👎 1 (75% 👍)" in shown
    assert "Answer ratings" not in texts(report_blocks(REPORT))  # nobody rated: no section


async def test_a_failed_post_raises_so_the_day_can_be_retried(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        bot.slack.fail("chat.postMessage", "not_in_channel")
        with pytest.raises(SlackApiError):
            await bot.adapter.post_report(REPORTS, REPORT, PNG)
        assert not bot.slack.calls_to("files.getUploadURLExternal")


async def test_a_failed_chart_upload_keeps_the_posted_report(
    slack_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_bot() as bot:
        bot.slack.fail("files.completeUploadExternal", "missing_scope")
        with caplog.at_level(logging.WARNING):
            await bot.adapter.post_report(REPORTS, REPORT, PNG)  # no exception: no second report
        assert len(bot.slack.bot_messages(REPORTS)) == 1 and not bot.slack.shared_files(REPORTS)
        assert "chart upload failed: missing_scope" in caplog.text and BOT_TOKEN not in caplog.text


def test_long_breakdowns_stay_within_block_kit_limits() -> None:
    wide = [Breakdown("slack:" + "x" * 900, totals(1.0, 1)) for _ in range(40)]
    report = replace(REPORT, by_model=wide, by_channel=wide, top_users=wide, by_platform=wide)
    blocks = report_blocks(report)
    assert len(blocks) <= 50
    for block in blocks:
        assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        assert len(block.get("text", {}).get("text", "")) <= 3000


async def test_announcement_is_markdown_without_mass_mentions(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        await bot.adapter.post_announcement(REPORTS, "**Heads up** <!channel>: 80% of today's budget used.")
        [call] = bot.slack.calls_to("chat.postMessage")
        assert call.args["channel"] == REPORTS
        assert call.args["markdown_text"] == "**Heads up** @channel: 80% of today's budget used."


# --- cost footer ----------------------------------------------------------------------------------


async def test_footer_rides_under_a_streamed_answer(slack_bot: Any) -> None:
    async with slack_bot(core={"bot_cost_footer": True}) as bot:
        bot.llm.script("anthropic", Reply.text("Forty-two.", chunks=2))
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> what is 6*7?")
        await bot.slack.push_event(mention(event))
        await bot.slack.wait_for(lambda: bot.slack.calls_to("chat.stopStream") and not bot.adapter._tasks)
        [answer] = bot.slack.answer_messages(CHANNEL, event["ts"])
        assert answer.text == "Forty-two."
        footer, *buttons = answer.blocks or []  # the answer's buttons come under the footer
        assert footer["type"] == "context" and " in · " in footer["elements"][0]["text"]
        assert [b["type"] for b in buttons] == ["context_actions", "actions"]
        assert len(bot.slack.bot_messages(CHANNEL, event["ts"])) == 1  # no extra message


async def test_footer_is_small_print_under_the_answer_when_posting_and_editing(slack_bot: Any) -> None:
    async with slack_bot(core={"bot_cost_footer": True}, native_streaming=False) as bot:
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> hello")
        await bot.slack.push_event(mention(event))
        await bot.slack.wait_for(
            lambda: (
                "out tokens" in "".join(m.text for m in bot.slack.bot_messages(CHANNEL, event["ts"]))
                and not bot.adapter._tasks
            )
        )
        [answer] = bot.slack.bot_messages(CHANNEL, event["ts"])
        text, footer = answer.text.split("\n\n")
        assert text == "echo: hello"
        assert footer.startswith("_") and footer.endswith("_") and "out tokens" in footer


async def test_no_footer_by_default(slack_bot: Any) -> None:
    async with slack_bot() as bot:
        event = bot.slack.user_message(CHANNEL, f"<@{BOT_USER}> hello")
        await bot.slack.push_event(mention(event))
        await bot.slack.wait_for(lambda: bot.slack.calls_to("chat.stopStream") and not bot.adapter._tasks)
        blocks = bot.slack.calls_to("chat.stopStream")[0].args.get("blocks") or []
        assert "context" not in [b["type"] for b in blocks]  # only the answer's buttons


@pytest.mark.parametrize("native", [True, False])
async def test_the_footer_is_escaped_and_shown_once(native: bool) -> None:
    fake = FakeSlack()
    await fake.start()
    client, _ = build_client(BOT_TOKEN, fake.api_url, 0, no_retry=NO_RETRY_METHODS)
    try:
        thread = fake.user_message(CHANNEL, "hi")["ts"]
        settings = SlackSettings(
            _env_file=None,  # type: ignore[call-arg]
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=fake.api_url,
            native_streaming=native,
            stream_interval=0.01,
            edit_interval=0.01,
        )
        gate = StreamGate(asyncio.get_running_loop().time)
        surface = SlackSurface(client, ReplyTarget(CHANNEL, thread, ALICE, TEAM, False), settings, gate)
        footer = "10 in · 2 out <tokens> · $0.0010"
        outcome = await Presenter(surface).present(
            _events(TextDelta("Done."), TurnDone("Done.", footer=footer))
        )
        assert outcome.delivered
        [answer] = fake.bot_messages(CHANNEL, thread)
        if native:  # a context block under the streamed answer, in mrkdwn
            assert answer.text == "Done."
            assert [e["text"] for b in answer.blocks or [] for e in b["elements"]] == [
                "10 in · 2 out &lt;tokens&gt; · $0.0010"
            ]
        else:  # small print in the answer's Markdown
            assert answer.text == f"Done.\n\n_{footer}_" and not answer.blocks
    finally:
        await fake.stop()


async def _events(*events: AgentEvent) -> AsyncIterator[AgentEvent]:
    for event in events:
        yield event
