"""Daily reports, announcements and the cost footer on Discord: real discord.py against the fake Discord.

Reports are `DailyReport` literals (no dependency on the builder); the fake takes the message the way
Discord does (JSON, or multipart/form-data with payload_json + files[0]), checks embed limits and
attachment references, and keeps the uploaded bytes, so the tests read back what a channel would show.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import discord
import pytest

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.format import small_print
from adapters.discord.report import BadDestination, channel_id
from adapters.discord.surfaces import ChannelSurface, discord_text
from bot.app import open_core
from bot.config import Settings
from core.adapter import AdapterContext
from core.events import AgentEvent, TextDelta, TurnDone
from core.present import Presenter
from core.reports.model import Breakdown, BudgetStatus, DailyReport, DayPoint, RatingRow, ToolStats, Totals
from core.surface import Note
from tests.discordkit import NoRoutes, discord_settings, fake, running_bot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.llm_server import FakeLLMServer, Reply

__all__ = ["fake"]  # the fixture (tests/discordkit.py)


def png(width: int = 64, height: int = 32) -> bytes:
    """A small valid PNG (grey pixels), made by hand so the test needs no matplotlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def sample_report(**overrides: Any) -> DailyReport:
    totals = Totals(
        requests=120,
        input_tokens=250_000,
        output_tokens=40_000,
        cache_read_tokens=1_200_000,
        cache_write_tokens=90_000,
        cost_usd=12.5,
        unpriced_requests=2,
        cache_savings_usd=3.24,
    )
    values: dict[str, Any] = {
        "day": date(2026, 3, 14),
        "timezone": "Europe/Berlin",
        "totals": totals,
        "conversations": 31,
        "active_users": 7,
        "provider_errors": 3,
        "previous": Totals(requests=100, cost_usd=10.0),
        "by_platform": [
            Breakdown("discord", Totals(requests=80, cost_usd=9.0, input_tokens=1000)),
            Breakdown("slack", Totals(requests=40, cost_usd=3.5)),
        ],
        "by_model": [Breakdown("anthropic:claude-sonnet-5-5", Totals(requests=120, cost_usd=12.5))],
        "by_channel": [
            Breakdown("discord:123456789012345678", Totals(requests=60, cost_usd=7.0)),
            Breakdown("slack:C0123", Totals(requests=40, cost_usd=3.5)),
        ],
        "top_users": [
            Breakdown("discord:223456789012345678", Totals(requests=50, cost_usd=6.0)),
            Breakdown("slack:U0123", Totals(requests=20, cost_usd=2.0)),
        ],
        "tools": [ToolStats("web_search", 14, 1), ToolStats("calculator", 5, 0)],
        "budget": BudgetStatus(daily_cap_usd=15.0, spent_usd=12.5, users_over_cap=1),
        "history": [DayPoint(date(2026, 3, 13), {"discord": 10.0}, {"discord": 5000})],
    }
    values.update(overrides)
    return DailyReport(**values)


def fields(message: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in message["embeds"][0].get("fields", [])}


# --- reports ----------------------------------------------------------------------------------------


async def test_report_is_one_embed_with_the_chart_uploaded_as_its_image(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    chart = png()
    async with running_bot(settings_for(), fake) as bot:
        await bot.adapter.post_report(str(fake.channel_id), sample_report(), chart)
    [message] = fake.bot_messages_in(fake.channel_id)
    [embed] = message["embeds"]
    assert embed["title"] == "📊 Daily usage · Sat 14 Mar 2026"
    assert "**$12.50** spent · **120** requests" in embed["description"]
    assert "▲ 25% cost, ▲ 20% requests vs. the day before" in embed["description"]
    assert embed["color"] == 0xF1C40F  # past 80% of the team's cap
    got = fields(message)
    assert got["Requests"] == "120" and got["Conversations"] == "31" and got["Active users"] == "7"
    assert got["Provider errors"] == "3" and got["Tool calls"] == "19" and got["Tool failures"] == "1"
    assert "Cache read **1.2M**" in got["Tokens"] and "Caching saved **$3.24**" in got["Tokens"]
    assert got["By platform"].startswith("discord — **$9.00** · 80 req")
    assert "`claude-sonnet-5-5` (anthropic)" in got["By model"]
    assert (
        got["Top channels"].startswith("<#123456789012345678>") and "slack · `C0123`" in got["Top channels"]
    )
    assert got["Top users"].startswith("<@223456789012345678>")
    assert "`web_search` 14 (1 failed)" in got["Tools"]
    assert "83%" in got["Budget"] and "$12.50 of $15.00" in got["Budget"] and "1 user hit" in got["Budget"]
    assert embed["footer"]["text"].startswith("Day in Europe/Berlin")
    # The chart went up as files[0] of a multipart body and is what the embed shows.
    [attachment] = message["attachments"]
    assert attachment["filename"] == "usage-2026-03-14.png" and attachment["content_type"] == "image/png"
    assert (attachment["width"], attachment["height"]) == (64, 32)
    assert embed["image"]["url"] == attachment["url"]
    assert fake.uploads[attachment["id"]] == chart
    [call] = [c for c in fake.calls_for(fake.channel_id, "POST") if c.path.endswith("/messages")]
    assert call.body["attachments"] == [
        {
            "id": 0,
            "filename": "usage-2026-03-14.png",
            "description": "Cost and tokens over the last 14 days, stacked by platform",
        }
    ]


async def test_the_days_answer_ratings_are_a_field_of_the_report(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    report = sample_report(
        ratings_by_model=[RatingRow("anthropic:claude-sonnet-5-5", 12, 3)],
        ratings_by_channel=[RatingRow("discord:123456789012345678", 4, 1)],
    )
    async with running_bot(settings_for(), fake) as bot:
        await bot.adapter.post_report(str(fake.channel_id), report, None)
        await bot.adapter.post_report(str(fake.channel_id), sample_report(), None)
    rated, unrated = fake.bot_messages_in(fake.channel_id)
    value = fields(rated)["Answer ratings"]
    assert "`anthropic:claude-sonnet-5-5`: 👍 12 · 👎 3 (80% 👍)" in value
    assert "`discord:123456789012345678`: 👍 4 · 👎 1" in value
    assert list(fields(rated)).index("Answer ratings") < list(fields(rated)).index("Budget")
    assert "Answer ratings" not in fields(unrated)  # nobody rated: no field


async def test_without_attach_files_permission_the_report_goes_out_without_chart(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    fake.no_attach.add(fake.channel_id)
    async with running_bot(settings_for(), fake) as bot:
        await bot.adapter.post_report(str(fake.channel_id), sample_report(), png())
    [message] = fake.bot_messages_in(fake.channel_id)
    assert message["attachments"] == [] and "image" not in message["embeds"][0]
    assert fields(message)["Requests"] == "120"


async def test_empty_day_and_no_chart(fake: FakeDiscord, settings_for: Callable[..., Settings]) -> None:
    report = sample_report(totals=Totals(), previous=None, by_platform=[], tools=[], budget=None)
    async with running_bot(settings_for(), fake) as bot:
        await bot.adapter.post_report(f"<#{fake.channel_id}>", report, None)
    [message] = fake.bot_messages_in(fake.channel_id)
    assert message["embeds"][0]["description"] == "No activity on this day."
    assert message["attachments"] == [] and "fields" not in message["embeds"][0]


async def test_huge_breakdowns_stay_inside_discord_embed_limits(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    many = [Breakdown(f"slack:{'C' * 300}{n}", Totals(requests=n, cost_usd=n)) for n in range(40)]
    tools = [ToolStats("t" * 200 + str(n), n, n) for n in range(40)]
    report = sample_report(by_model=many, by_channel=many, top_users=many, by_platform=many, tools=tools)
    async with running_bot(settings_for(), fake) as bot:
        await bot.adapter.post_report(str(fake.channel_id), report, png())
    [message] = fake.bot_messages_in(fake.channel_id)  # the fake refuses embeds over Discord's limits
    for name in ("By platform", "By model", "Top channels", "Top users", "Tools"):
        lines = fields(message)[name].split("\n")
        assert len(lines) == 6 and lines[-1] == "-# …and 35 more", name


async def test_report_from_an_adapter_that_is_not_running_uses_rest_only(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    """`bot report --post`: no gateway connection, just a REST login and the message."""
    async with open_core(settings_for()) as core:
        adapter = DiscordAdapter(discord_settings(fake), AdapterContext(core.router, NoRoutes()))
        await adapter.post_report(str(fake.channel_id), sample_report(), png())
    assert not fake.identified.is_set() and not fake.commands
    [message] = fake.bot_messages_in(fake.channel_id)
    assert message["attachments"][0]["content_type"] == "image/png"
    assert [c.path for c in fake.calls] == [
        "/users/@me",
        "/oauth2/applications/@me",
        f"/channels/{fake.channel_id}/messages",
    ]


async def test_failures_reach_the_caller_so_the_scheduler_can_retry(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake) as bot:
        with pytest.raises(discord.NotFound):  # e.g. a deleted channel: the claim is released
            await bot.adapter.post_report("999999999999999999", sample_report(), png())
        with pytest.raises(BadDestination):
            await bot.adapter.post_report("#usage", sample_report(), None)
        with pytest.raises(discord.NotFound):
            await bot.adapter.post_announcement("999999999999999999", "hello")


def test_destination_parsing() -> None:
    assert channel_id(" 123456789012345678 ") == channel_id("<#123456789012345678>") == 123456789012345678
    with pytest.raises(BadDestination):
        channel_id("general")


# --- announcements -----------------------------------------------------------------------------------


async def test_announcement_is_posted_and_split_at_2000(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    warning = "⚠️ The team has used **82%** of today's $15.00 budget.\n\n" + "More detail. " * 200
    async with running_bot(settings_for(), fake) as bot:
        await bot.adapter.post_announcement(str(fake.channel_id), warning)
    messages = fake.bot_messages_in(fake.channel_id)
    assert len(messages) == 2 and all(len(m["content"]) <= 2000 for m in messages)
    assert messages[0]["content"].startswith("⚠️ The team has used **82%**")


# --- the cost footer -----------------------------------------------------------------------------------


async def scripted(*events: AgentEvent) -> AsyncIterator[AgentEvent]:
    for event in events:
        yield event


async def test_footer_is_subtext_under_the_answer(
    fake: FakeDiscord, settings_for: Callable[..., Settings]
) -> None:
    footer = "1.2k tokens · $0.0123"
    async with running_bot(settings_for(), fake) as bot:
        surface = ChannelSurface(bot.adapter.client, fake.channel_id, bot.adapter.capabilities)
        await Presenter(surface).present(
            scripted(TextDelta("Hello!"), TurnDone("Hello!", footer=footer)), working=False
        )
        await Presenter(surface).present(scripted(TextDelta("Hi."), TurnDone("Hi.")), working=False)
    contents = [m["content"] for m in fake.bot_messages_in(fake.channel_id)]
    assert contents == ["Hello!\n\n-# 1.2k tokens · $0.0123", "Hi."]


def test_notes_are_small_print_outside_an_open_code_block() -> None:
    notes = [small_print(Note("failure", "cut off")), small_print(Note("footer", "5  tokens\n· $0.01"))]
    assert notes == ["-# ⚠️ cut off", "-# 5 tokens\n-# · $0.01"]
    cut_off = "\n\n".join(["```py\nx = 1", *notes])
    assert discord_text(cut_off) == "```py\nx = 1\n```\n\n-# ⚠️ cut off\n\n-# 5 tokens\n-# · $0.01"
    assert discord_text("```py\nx = 1\n```\n\n-# 5 tokens") == "```py\nx = 1\n```\n\n-# 5 tokens"
    assert discord_text("no notes\n```") == "no notes\n```"  # still streaming: left alone


async def test_cost_footer_end_to_end_when_enabled(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.text("Paris.", chunks=2), Reply.text("Berlin.", chunks=2))
    async with running_bot(settings_for(bot_cost_footer=True), fake):
        asked = await fake.slash("ask", {"prompt": "capital of France?"})
        await fake.wait_for(lambda: "\n\n-# " in (fake.original(asked) or {}).get("content", ""))
    answer, footer = (fake.original(asked) or {})["content"].split("\n\n-# ")
    assert answer == "Paris." and "tokens · $" in footer
    async with running_bot(settings_for(), fake):  # off by default
        plain = await fake.slash("ask", {"prompt": "capital of Germany?"})
        await fake.wait_for(lambda: (fake.original(plain) or {}).get("content") == "Berlin.")
