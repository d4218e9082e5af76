"""Daily reports, announcements and the cost footer on Telegram: the real python-telegram-bot against the
fake Bot API (HTML checked with the fake's strict entity parser, the chart as a real multipart upload)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date

import pytest
from telegram.error import Forbidden

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.format import visible_length
from adapters.telegram.report import (
    MAX_CAPTION,
    fit_report_html,
    parse_destination,
    report_html,
)
from bot.app import open_core
from bot.config import Settings
from bot.http import HttpServer
from core.adapter import AdapterContext
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
from tests.fakes.telegram_files import PNG_SIGNATURE
from tests.fakes.telegram_server import FakeTelegram, parse_html
from tests.ports import free_port
from tests.telegramkit import fake, running_bot, telegram_settings

__all__ = ["fake"]

SettingsFor = Callable[..., Settings]
GROUP = -1001234567890
CHANNEL = -1009876543210
ALICE = 42
DAY = date(2025, 11, 4)  # a Tuesday


def png(width: int = 64, height: int = 32) -> bytes:
    """A small valid PNG (what render_chart produces, without needing matplotlib here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def totals(cost: float, requests: int, tokens_in: int = 1000, **more: float) -> Totals:
    return Totals(requests=requests, input_tokens=tokens_in, cost_usd=cost, **more)  # type: ignore[arg-type]


def sample_report(**changes: object) -> DailyReport:
    report = DailyReport(
        day=DAY,
        timezone="Europe/Berlin",
        totals=Totals(
            requests=120,
            input_tokens=1_200_000,
            output_tokens=300_000,
            cache_read_tokens=2_000_000,
            cache_write_tokens=100_000,
            cost_usd=12.34,
            unpriced_requests=2,
            cache_savings_usd=1.2,
        ),
        conversations=14,
        active_users=6,
        provider_errors=3,
        previous=totals(10.0, 100),
        by_platform=[Breakdown("slack", totals(8.0, 80)), Breakdown("telegram", totals(4.34, 40))],
        by_model=[Breakdown("anthropic:claude-sonnet-5-5", totals(12.34, 120))],
        by_channel=[Breakdown("slack:C0123<&>", totals(5.0, 50))],
        top_users=[Breakdown("telegram:42", totals(3.0, 30)), Breakdown("slack:U0123", totals(2.5, 20))],
        tools=[ToolStats("web_fetch", 12, 1), ToolStats("calculator", 5, 0)],
        budget=BudgetStatus(daily_cap_usd=15.0, spent_usd=12.34, users_over_cap=1),
        history=[DayPoint(DAY, {"slack": 8.0}, {"slack": 3_600_000})],
    )
    return replace(report, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def idle_adapter(
    fake: FakeTelegram, settings_for: SettingsFor
) -> AsyncIterator[Callable[[], TelegramAdapter]]:
    """Adapters that are never started: posting must work without run() (e.g. `bot report --post`)."""
    async with open_core(settings_for()) as core:

        def make() -> TelegramAdapter:
            context = AdapterContext(core.router, HttpServer("127.0.0.1", free_port()))
            return TelegramAdapter(telegram_settings(fake), context)

        yield make


async def test_a_report_is_an_html_message_with_the_chart_as_a_photo_replying_to_it(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    fake.group(GROUP)
    chart = png()
    async with running_bot(fake, settings_for()) as bot:
        await bot.adapter.post_report(str(GROUP), sample_report(), chart)
    message, photo = fake.bot_messages(GROUP)
    assert message.parse_mode == "HTML" and message.photo is None
    text = message.text
    assert text.startswith("📊 Daily usage · Tue 4 Nov 2025\nEurope/Berlin")
    assert "💵 Cost $12.34 · ▲ 23% vs. Mon 3 Nov" in text
    assert "💾 Prompt caching saved $1.20" in text
    assert "🧾 120 requests (▲ 20%) · 14 conversations · 6 active users" in text
    assert "1.2M in · 300k out · 2.0M cache read · 100k cache write" in text
    assert "3 failed provider calls" in text and "2 requests on models without a known price" in text
    assert "⚠️ Budget: $12.34 of $15.00 (82%) · 1 user reached their own cap" in text
    assert "• slack — $8.00 · 80 req · 1,000 tok" in text
    assert "• slack:C0123<&> — $5.00" in text  # escaped in the HTML, shown as is
    assert "• web_fetch — 12 calls · 1 failed" in text and "• calculator — 5 calls" in text
    assert "<b>By model</b>" in message.markup
    # The chart: a real multipart upload, a reply to the report, with a short HTML caption.
    assert photo.photo is not None and photo.photo.data == chart
    assert photo.photo.filename == "usage-14-days.png" and photo.reply_to == message.message_id
    assert photo.text.startswith("📈 Last 14 days up to Tue 4 Nov 2025") and len(photo.text) <= MAX_CAPTION
    upload = fake.calls_to("sendPhoto")[0]
    assert upload.params["parse_mode"] == "HTML" and not fake.statuses(400)


async def test_posting_without_a_running_adapter_uses_a_send_only_bot_that_never_polls(
    fake: FakeTelegram,
    idle_adapter: Callable[[], TelegramAdapter],
) -> None:
    fake.channel(CHANNEL, username="team_news")
    adapter = idle_adapter()
    await adapter.post_report("@team_news", sample_report(previous=None, budget=None), None)
    await adapter.post_announcement("@team_news", "**Heads up:** the team used *80%* of today's $20.00 cap.")
    report, announcement = fake.bot_messages(CHANNEL)
    assert "No data for Mon 3 Nov to compare with." in report.text and "Budget" not in report.text
    assert "💵 Cost $12.34\n" in report.text  # no change figures without the day before
    assert announcement.markup == "<b>Heads up:</b> the team used <i>80%</i> of today's $20.00 cap."
    assert not fake.calls_to("sendPhoto")  # no chart: no photo
    methods = {call.method for call in fake.calls}
    assert "getUpdates" not in methods and "setWebhook" not in methods and "getMe" in methods


async def test_a_long_report_is_trimmed_to_fit_and_an_empty_day_says_so(
    fake: FakeTelegram, idle_adapter: Callable[[], TelegramAdapter]
) -> None:
    many = [
        Breakdown(f"slack:C{i:04d}-" + "x" * 80, totals(12_345.6 + i, 123_456, 12_345_678)) for i in range(60)
    ]
    tools = [ToolStats("t" * 90, 1, 1)] * 60
    big = sample_report(by_platform=many, by_channel=many, top_users=many, by_model=many, tools=tools)
    assert visible_length(report_html(big)) > 4096  # ten rows per breakdown would be too long
    markup = fit_report_html(big)
    assert visible_length(markup) <= 4096 and "… and 54 more" in parse_html(markup)  # six rows each
    assert "x" * 80 not in markup  # long keys are shortened
    assert "… and 57 more" in parse_html(fit_report_html(big, limit=2500))  # three rows each
    fake.group(GROUP)
    adapter = idle_adapter()
    await adapter.post_report(str(GROUP), big, png())
    empty = sample_report(
        totals=Totals(), previous=None, by_platform=[], by_model=[], by_channel=[], top_users=[]
    )
    await adapter.post_report(str(GROUP), empty, None)
    long_post, _, quiet = fake.bot_messages(GROUP)
    assert len(long_post.text) <= 4096 and long_post.parse_mode == "HTML"
    assert "No activity: nobody used the bot that day." in quiet.text and "By platform" not in quiet.text


async def test_a_failed_report_raises_so_it_is_retried_but_a_failed_chart_does_not(
    fake: FakeTelegram,
    idle_adapter: Callable[[], TelegramAdapter],
) -> None:
    fake.group(GROUP)
    adapter = idle_adapter()
    fake.script_failure("sendPhoto", retry_after=None, description="IMAGE_PROCESS_FAILED")
    await adapter.post_report(str(GROUP), sample_report(), png())  # the report counts as posted
    assert [m.photo for m in fake.bot_messages(GROUP)] == [None]
    fake.remove_bot(GROUP)
    with pytest.raises(Forbidden):
        await adapter.post_report(str(GROUP), sample_report(), png())
    with pytest.raises(ValueError, match="not a Telegram chat"):
        await adapter.post_report("general", sample_report(), None)


async def test_the_days_answer_ratings_are_listed_and_left_out_when_nobody_rated(
    fake: FakeTelegram, idle_adapter: Callable[[], TelegramAdapter]
) -> None:
    fake.group(GROUP)
    rated = sample_report(
        ratings_by_model=[RatingRow("anthropic:claude-sonnet-5-5", 12, 3)],
        ratings_by_channel=[RatingRow("telegram:-100<1>", 4, 0)],
    )
    assert "Answer ratings" not in parse_html(report_html(sample_report()))
    adapter = idle_adapter()
    await adapter.post_report(str(GROUP), rated, None)
    text = fake.bot_messages(GROUP)[0].text
    section = text[text.index("Answer ratings") :]
    assert section.splitlines()[1:] == [
        "• By model anthropic:claude-sonnet-5-5: 👍 12 · 👎 3 (80% 👍)",
        "• In telegram:-100<1>: 👍 4 · 👎 0 (100% 👍)",
    ]
    assert "<code>anthropic:claude-sonnet-5-5</code>" in fake.bot_messages(GROUP)[0].markup


async def test_flood_waits_entity_fallback_and_forum_topics(
    fake: FakeTelegram, idle_adapter: Callable[[], TelegramAdapter]
) -> None:
    forum = fake.group(GROUP, forum=True)
    topic = fake.open_topic(forum, fake.user(ALICE))
    assert parse_destination(f"{GROUP}:{topic}") == (GROUP, topic)
    adapter = idle_adapter()
    fake.script_failure("sendMessage", retry_after=1)  # a 429: waited out, then posted
    fake.script_failure("sendMessage", retry_after=None, description="can't parse entities: bad tag")
    await adapter.post_report(f"{GROUP}:{topic}", sample_report(), png())
    message, photo = fake.bot_messages(GROUP)
    assert len(fake.statuses(429)) == 1
    assert message.parse_mode is None and message.text.startswith("📊 Daily usage")  # plain fallback
    assert message.thread_id == topic and photo.thread_id == topic and photo.reply_to == message.message_id


async def test_the_cost_footer_is_a_short_italic_line_under_the_answer(
    fake: FakeTelegram, llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("The answer is **42**."), Reply.text("Plain again."))
    async with running_bot(fake, settings_for(bot_cost_footer=True)):
        fake.user_says(fake.private_chat(ALICE), "what is 6*7?")
        await fake.wait_for(lambda: fake.bot_messages(ALICE))
    async with running_bot(fake, settings_for()):
        fake.user_says(fake.private_chat(ALICE), "again")
        await fake.wait_for(lambda: len(fake.bot_messages(ALICE)) == 2)
    with_footer, without = fake.bot_messages(ALICE)
    answer, footer = with_footer.markup.split("\n\n")
    assert answer == "The answer is <b>42</b>."
    assert footer.startswith("<i>") and footer.endswith("</i>") and " in · " in footer and "$" in footer
    assert without.markup == "Plain again."
